"""The behavioural monitors, each on hand-built runs: where they fire, and where they must not."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trestle.core.errors import ConfigError
from trestle.core.records.monitors import Alert
from trestle.monitors import fingerprint
from trestle.monitors.alerts import Monitor
from trestle.monitors.fingerprint import command_shape, failure_fingerprint, observation_lines
from trestle.monitors.format import FormatMonitor
from trestle.monitors.loops import CycleMonitor, RepeatMonitor, behaviour_monitors, near_key
from trestle.monitors.monologue import MonologueMonitor
from trestle.monitors.progress import ExplorationMonitor, ProgressMonitor
from trestle.monitors.reruns import TestRerunMonitor
from trestle.monitors.trace import Action, Malformed, RunFacts, Turn

# --- building runs by hand -------------------------------------------------------------


def act(
    kind: str,
    arguments: str,
    *,
    target: str = "",
    tool: str = "bash",
    output: str = "",
    ok: bool | None = True,
    error: str | None = None,
    writes: tuple[str, ...] = (),
) -> Action:
    """An action without its seq yet (a :class:`Run` gives it one)."""
    return Action.model_validate(
        {
            "seq": 0,
            "tool": tool,
            "kind": kind,
            "arguments": arguments,
            "target": target,
            "ok": ok,
            "output": output,
            "error": error,
            "writes": writes,
        }
    )


def numbered(path: str, first: int, last: int) -> str:
    """A view of lines ``first``..``last`` of a made-up file, with line numbers."""
    return "\n".join(f"{n:6}\t{path} line {chr(97 + n % 26)}{n // 26}" for n in range(first, last))


def view(path: str, first: int = 1, last: int = 40) -> Action:
    """An editor view of ``path`` lines ``first``..``last``."""
    arguments = json.dumps({"command": "view", "path": path, "view_range": [first, last]})
    return act(
        "read", arguments, target=path, tool="editor", output=numbered(path, first, last + 1)
    )


def edit(path: str, new: str) -> Action:
    arguments = json.dumps({"command": "str_replace", "path": path, "old": "x", "new": new})
    return act("edit", arguments, target=path, tool="editor", output="edited", writes=(path,))


PYTEST_FAIL = """\
============ FAILURES ============
____ test_parse ____
    def test_parse():
>       assert parse("1,2") == [1, 2]
E       AssertionError: assert [1] == [1, 2]
E         at <Parser object at {address}>
tests/test_parse.py:{line}: AssertionError
FAILED tests/test_parse.py::test_parse - AssertionError: assert [1] == [1, 2]
======= 1 failed, 4 passed in {seconds}s ======="""


def pytest_run(
    address: str = "0x7f3a", line: int = 12, seconds: str = "0.31", fails: str = "[1]"
) -> Action:
    output = PYTEST_FAIL.format(address=address, line=line, seconds=seconds).replace("[1]", fails)
    return act("test", "python -m pytest -q tests/test_parse.py", output=output, ok=False)


class Run:
    """Turns with increasing seqs: each turn takes a seq, then each of its actions one."""

    def __init__(self, step: str = "", round: int = 1) -> None:
        self.step, self.round = step, round
        self.turns: list[Turn] = []
        self.seq = 0

    def turn(
        self, *actions: Action, text: str = "Let me look.", problem: Malformed | None = None
    ) -> Turn:
        self.seq += 1
        seq = self.seq
        placed = []
        for action in actions:
            self.seq += 1
            placed.append(action.model_copy(update={"seq": self.seq}))
        turn = Turn(
            index=len(self.turns),
            seq=seq,
            step=self.step,
            round=self.round,
            text=text,
            actions=tuple(placed),
            problem=problem,
        )
        self.turns.append(turn)
        return turn


def feed(monitor: Monitor, turns: Sequence[Turn], facts: RunFacts | None = None) -> list[Alert]:
    facts = facts or RunFacts()
    return [alert for turn in turns for alert in monitor.observe(turn, facts)]


def summary(alerts: list[Alert]) -> list[tuple[str, str, int | None]]:
    return [(alert.kind, alert.severity, alert.turn) for alert in alerts]


# --- near-keys -------------------------------------------------------------------------

NEAR = [
    (view("src/a.py", 1, 50), view("src/a.py", 40, 90)),
    (view("src/a.py"), act("read", "cat -n src/a.py | sed -n 5,9p", target="src/a.py")),
    (view("./src/a.py"), view("src/a.py")),
    (
        act("read", '{"command": "view", "path": "a.py", "view_range": [1, 50]}', tool="ed"),
        act("read", '{"view_range": [60, 90], "command": "view", "path": "a.py"}', tool="ed"),
    ),
    (act("run", 'grep -rn "foo" src | head -20'), act("run", "grep -n  -r foo src | head -50")),
    (act("test", "pytest -x -q tests/a.py"), act("test", "pytest -q -x tests/a.py")),
    (act("run", "python -c 'print(1)'"), act("run", 'python -c "print(2)"')),
    (act("run", '{"command": "ls -la src"}'), act("run", "ls -al  src")),
    (act("run", "", target="head -n 5 f"), act("run", "", target="head f -n 10")),
    (
        act("other", '{"query": "foo", "limit": 10}', tool="search"),
        act("other", '{"limit": 20, "query": "foo"}', tool="search"),
    ),
    (edit("src/a.py", "return 1"), edit("src/a.py", "return 1")),
    (act("finish", "{}"), act("finish", '{"summary": "done"}')),
]

NOT_NEAR = [
    (view("src/a.py"), view("src/b.py")),
    (act("run", "grep foo src"), act("run", "grep bar src")),
    (act("run", "grep foo src"), act("run", "grep src foo")),
    (act("run", "pytest tests/a.py"), act("test", "pytest tests/a.py")),
    (act("run", "python3 x.py"), act("run", "python2 x.py")),
    (edit("src/a.py", "return 1"), edit("src/a.py", "return 2")),
    (edit("src/a.py", "return 1"), edit("src/b.py", "return 1")),
    (
        act("other", '{"query": "foo"}', tool="search"),
        act("other", '{"query": "foo"}', tool="lookup"),
    ),
    (
        act("other", '{"query": "foo"}', tool="search"),
        act("other", '{"query": "bar"}', tool="search"),
    ),
]


@pytest.mark.parametrize(("a", "b"), NEAR)
def test_near_equal_actions_share_a_near_key(a: Action, b: Action) -> None:
    assert near_key(a) == near_key(b)


@pytest.mark.parametrize(("a", "b"), NOT_NEAR)
def test_actions_that_differ_in_substance_do_not(a: Action, b: Action) -> None:
    assert near_key(a) != near_key(b)


def test_command_shapes_drop_only_trivia() -> None:
    assert command_shape("grep -rn 'x' . | head -20") == "grep -n -r x . | head -#"
    assert command_shape("sed -n 10,20p a.py && ls") == "sed -n #,#p a.py && ls"
    assert command_shape("find . -name '*.py' -type f") == "find -name -type . *.py f"


def test_overlapping_views_of_a_file_share_their_lines() -> None:
    cat_n = "    12\tdef f():\n    13\t    return 2\n"
    swe_open = "[File: a.py (40 lines total)]\n12:def f():\n13:    return 2\n"
    assert observation_lines(cat_n) <= observation_lines(swe_open)
    assert observation_lines("took 0.52s at 2024-05-01T10:00:01Z") == observation_lines(
        "took 1.7s at 2024-06-02T11:20:00Z"
    )


def test_a_failure_fingerprint_ignores_timings_addresses_and_shifted_lines() -> None:
    a = failure_fingerprint(pytest_run().output)
    b = failure_fingerprint(pytest_run(address="0x55aa01", line=30, seconds="1.02").output)
    assert a == b
    assert "FAILED tests/test_parse.py::test_parse - AssertionError: assert [1] == [1, 2]" in a
    assert failure_fingerprint(pytest_run(fails="[2]").output) != a
    assert failure_fingerprint("===== 5 passed in 0.2s =====") == ()
    assert failure_fingerprint("make: *** [all] Error 2\n", failed=True) != ()


def _texts_of(pieces: list[str]) -> st.SearchStrategy[str]:
    """Texts of up to 40 of ``pieces``, in any order and repeated."""
    return st.lists(st.sampled_from(pieces), max_size=40).map("".join)


# pieces that make and unmake timestamps, durations, addresses and temp paths
_VOLATILE_PIECES = [
    *"0123456789",
    *"-:.,T Z+sm\nxaf/_",
    "0x",
    "µs",
    "ms",
    "sec",
    "/tmp/",
    "/private/tmp/",
    "/var/folders/",
    "2024-05-01",
    "10:00:01",
]


@settings(max_examples=500, deadline=None)
@given(_texts_of(_VOLATILE_PIECES))
def test_the_volatile_parts_come_out_as_by_every_pattern_in_turn(text: str) -> None:
    # the patterns are skipped where their literal part is missing: never a change
    plain = text
    for pattern, mark in (
        (fingerprint._TIMESTAMP, "<time>"),
        (fingerprint._ADDRESS, "<addr>"),
        (fingerprint._DURATION, "<dur>"),
        (fingerprint._TEMP_PATH, "<tmp>"),
    ):
        plain = pattern.sub(mark, plain)
    assert fingerprint._without_volatile(text) == plain


# digits, word characters of every kind around them, the units and dots after, hex
_NUMBER_PIECES = [*"0123456789٣._ aZéfx\n", "s", "ms", "us", "µs", "sec", "secs", "seconds", "0x"]


@settings(max_examples=500, deadline=None)
@given(_texts_of(_NUMBER_PIECES))
def test_numbers_durations_and_addresses_are_found_as_the_patterns_written_plainly_find_them(
    text: str,
) -> None:
    # the patterns begin with the digit for speed; written with the assertion first:
    number = re.compile(r"(?<![A-Za-z_])\d+(?:\.\d+)*")
    duration = re.compile(r"\b\d+(?:\.\d+)?\s?(?:s|ms|us|µs|sec|secs|seconds)\b")
    assert fingerprint._NUMBER.sub("#", text) == number.sub("#", text)
    assert fingerprint._DURATION.sub("<dur>", text) == duration.sub("<dur>", text)
    address = re.compile(r"\b0x[0-9a-fA-F]+\b")
    assert fingerprint._ADDRESS.sub("<addr>", text) == address.sub("<addr>", text)


# pieces that make and unmake line-number prefixes, numbers and whitespace, with every
# character str.splitlines splits at
_LINE_PIECES = [
    *"0123456789",
    *" \t:|.#_-aZ\n\r\x0b\x0c\x1c\x85\u2028\u00a0\u3000",
    "  12\t",
    "path.py:3:",
    "python3",
]


@settings(max_examples=500, deadline=None)
@given(_texts_of(_LINE_PIECES))
def test_an_observations_lines_are_as_every_pattern_run_on_every_line_makes_them(
    text: str,
) -> None:
    # lines without a digit skip the patterns, whitespace is squashed by str.split
    squash = re.compile(r"\s+")
    expected = set()
    for raw in fingerprint._without_volatile(text).splitlines():
        line = fingerprint._NUMBER.sub("#", fingerprint._LINE_PREFIX.sub("", raw))
        line = squash.sub(" ", line).strip()
        if line:
            digest = hashlib.blake2b(line.encode("utf-8", "surrogatepass"), digest_size=8)
            expected.add(int.from_bytes(digest.digest(), "big"))
    assert observation_lines(text) == frozenset(expected)


# ASCII text: the ASCII pieces above, with every character str.isspace takes that they
# lack (\x1d to \x1f), DEL, NUL and quotes
_ASCII_PIECES = sorted(
    {p for p in (*_VOLATILE_PIECES, *_NUMBER_PIECES, *_LINE_PIECES) if p.isascii()}
    | set("\x1d\x1e\x1f\x7f\x00'\"")
)


@pytest.mark.parametrize("escape", sorted(fingerprint._ASCII_CLASSES))
def test_each_spelled_out_class_holds_the_ascii_characters_its_escape_matches(escape: str) -> None:
    spelled = re.compile(f"[{fingerprint._ASCII_CLASSES[escape]}]")
    unicode = re.compile(f"\\{escape}")
    for char in map(chr, range(128)):
        assert bool(spelled.fullmatch(char)) == bool(unicode.fullmatch(char)), (escape, char)


@settings(max_examples=500, deadline=None)
@given(_texts_of(_ASCII_PIECES))
def test_ascii_text_is_matched_by_each_patterns_ascii_twin_as_by_the_pattern(text: str) -> None:
    assert text.isascii()
    for pattern, twin in zip(fingerprint._ANY_TEXT, fingerprint._ascii_text(), strict=True):
        assert twin is not pattern
        assert [m.span() for m in twin.finditer(text)] == [m.span() for m in pattern.finditer(text)]
        for line in text.splitlines():
            found, expected = twin.match(line), pattern.match(line)
            assert (found and found.span()) == (expected and expected.span())


# --- RepeatMonitor ----------------------------------------------------------------------


def test_the_same_call_with_the_same_result_warns_at_three_and_escalates() -> None:
    run = Run()
    ls = act("run", "ls src", output="a.py\nb.py")
    for _ in range(7):
        run.turn(ls, text="Listing again, phrased anew.")
    alerts = feed(RepeatMonitor(), run.turns)
    assert summary(alerts) == [
        ("repeated_action", "warning", 2),
        ("repeated_action", "critical", 4),
    ]
    warning = alerts[0]
    assert warning.evidence == (1, 2, 3, 4, 5, 6)  # three turns and their actions
    assert "3 times" in warning.message and "`ls src`" in warning.message
    assert warning.suggestion.startswith("You have run `ls src` 3 times")


def test_volatile_output_does_not_make_a_result_new() -> None:
    run = Run()
    for n in range(3):
        run.turn(act("run", "date; ls", output=f"Mon 10:0{n}:00\na.py\nbuilt in 0.{n}s"))
    assert summary(feed(RepeatMonitor(), run.turns)) == [("repeated_action", "warning", 2)]


def test_rereading_a_file_two_or_three_times_as_it_changes_is_healthy() -> None:
    run = Run()
    for n in range(4):
        run.turn(act("read", "cat a.py", target="a.py", output=f"x = {n}\n"))
        run.turn(edit("a.py", f"x = {n + 1}"))
    assert feed(RepeatMonitor(), run.turns) == []


def test_the_same_call_failing_the_same_way_is_a_repeated_failure() -> None:
    run = Run()
    for n in range(3):  # the error is the same, only the line it is raised at differs
        trace = f'  File "src/m.py", line {10 + n}, in build\nValueError: bad value'
        run.turn(act("run", "python build.py", ok=False, output=trace))
    [alert] = feed(RepeatMonitor(), run.turns)
    assert (alert.kind, alert.severity, alert.turn) == ("repeated_failure", "warning", 2)
    assert "failed the same way 3 times" in alert.message
    assert alert.evidence == (1, 2, 3, 4, 5, 6)


def test_the_same_call_failing_differently_each_time_is_learning_not_repeating() -> None:
    run = Run()
    for n in range(5):
        run.turn(act("run", "make build", ok=False, output=f"error in module m{n}"))
    assert feed(RepeatMonitor(), run.turns) == []


def test_a_change_to_the_workspace_starts_the_repeat_counts_again() -> None:
    # re-running a script after each edit checks the edit: not a repeat
    run = Run()
    for n in range(4):
        run.turn(act("test", "python repro.py", ok=False, output="AssertionError: 1 != 2"))
        run.turn(act("test", "python repro.py", ok=False, output="AssertionError: 1 != 2"))
        run.turn(edit("src/calc.py", f"attempt {n}"))
    assert feed(RepeatMonitor(), run.turns) == []


def test_repeats_are_counted_per_call_within_a_turn() -> None:
    run = Run()
    a, b = act("run", "ls", output="x"), act("run", "pwd", output="/")
    for _ in range(3):
        run.turn(a, b)
    alerts = feed(RepeatMonitor(), run.turns)
    assert [(x.turn, x.evidence[-1]) for x in alerts] == [(2, 8), (2, 9)]


# --- CycleMonitor ----------------------------------------------------------------------


def test_a_two_step_alternation_warns_on_its_third_lap() -> None:
    run = Run()
    for n in range(6):  # each view shifted by a line: nothing much new
        run.turn(view("a.py", n, n + 30))
        run.turn(view("b.py", n, n + 30))
    alerts = feed(CycleMonitor(), run.turns)
    assert summary(alerts) == [
        ("action_cycle", "warning", 5),
        ("action_cycle", "critical", 11),
    ]
    assert "3 times round the same 2-step lap: read:a.py -> read:b.py" in alerts[0].message
    assert alerts[0].evidence == tuple(range(1, 13))


def test_a_six_step_lap_with_shifting_ranges_and_reworded_reasoning() -> None:
    run = Run()
    for lap in range(4):
        shift = lap  # each lap's views show a line or two not shown before
        run.turn(view("src/parse.py", 1 + shift, 60 + shift), text=f"Reason {lap}a")
        run.turn(act("run", f"grep -n tokens src/lex.py | head -{20 + lap}"), text=f"R {lap}b")
        run.turn(view("src/lex.py", 100 - shift, 140), text=f"Maybe {lap}")
        run.turn(view("src/parse.py", 200 + shift, 240), text=f"Hmm {lap}")
        run.turn(act("test", f"pytest -q tests/test_parse.py --maxfail={lap + 1}"), text="?")
        run.turn(view("tests/test_parse.py"), text=f"Let me think again ({lap})")
    alerts = feed(CycleMonitor(), run.turns)
    assert summary(alerts) == [
        ("action_cycle", "warning", 11),
        ("action_cycle", "critical", 17),
    ]
    assert "6-step lap" in alerts[0].message and "2 times" in alerts[0].message
    assert len(alerts[0].evidence) == 24 and alerts[0].evidence[-1] == run.turns[11].seq + 1


def test_paging_through_two_files_in_turn_is_reading_not_a_cycle() -> None:
    # each view shows lines never shown before: the agent is reading, not circling
    run = Run()
    for n in range(6):
        run.turn(view("a.py", n * 10, n * 10 + 30))
        run.turn(view("b.py", n * 5, n * 5 + 30))
    assert feed(CycleMonitor(), run.turns) == []


def test_the_reasoning_text_does_not_matter() -> None:
    def build(words: str) -> list[Turn]:
        run = Run()
        for n in range(9):
            run.turn(view("a.py", n, n + 9), text=f"{words} {n}")
            run.turn(act("run", "ls"), text=words * n)
            run.turn(view("c.py"), text="")
        return run.turns

    assert feed(CycleMonitor(), build("alpha")) == feed(CycleMonitor(), build("beta gamma"))
    assert feed(CycleMonitor(), build("alpha")) != []


def test_paging_through_one_file_and_edit_test_loops_are_not_cycles() -> None:
    run = Run()
    for n in range(10):
        run.turn(view("big.py", 50 * n, 50 * n + 50))
    for n in range(10):
        run.turn(edit("big.py", f"fix attempt {n}"))
        run.turn(pytest_run())
    assert feed(CycleMonitor(), run.turns) == []


def test_a_short_cross_check_between_two_files_is_healthy() -> None:
    run = Run()
    run.turn(view("a.py"))
    run.turn(view("b.py"))
    run.turn(view("a.py", 30, 70))
    run.turn(view("b.py", 10, 50))
    run.turn(edit("a.py", "fixed"))
    run.turn(view("b.py"))
    assert feed(CycleMonitor(), run.turns) == []


def test_repeating_the_same_edit_is_a_cycle() -> None:
    run = Run()
    for _ in range(3):
        run.turn(edit("a.py", "same"))
        run.turn(pytest_run())
        run.turn(view("a.py"))
    assert summary(feed(CycleMonitor(), run.turns)) == [("action_cycle", "warning", 5)]


def test_cycle_thresholds_are_checked() -> None:
    with pytest.raises(ConfigError, match="CycleMonitor"):
        CycleMonitor(shortest_lap=5, longest_lap=3)
    run = Run()
    for _ in range(2):
        run.turn(view("a.py"))
        run.turn(view("b.py"))
    assert summary(feed(CycleMonitor(min_span=4), run.turns)) == [("action_cycle", "warning", 3)]


# --- MonologueMonitor -------------------------------------------------------------------


def test_reasoning_without_acting_warns_then_escalates() -> None:
    run = Run()
    run.turn(act("run", "ls"))
    for n in range(7):
        run.turn(text=f"I should think about this more ({n}).")
    alerts = feed(MonologueMonitor(), run.turns)
    assert summary(alerts) == [("monologue", "warning", 3), ("monologue", "critical", 6)]
    assert alerts[0].evidence == (3, 4, 5)
    assert "take one concrete action" in alerts[0].suggestion


def test_an_action_ends_a_monologue_and_format_errors_are_not_one() -> None:
    run = Run()
    for _ in range(3):
        run.turn(text="thinking")
        run.turn(text="more thinking")
        run.turn(act("run", "ls"))
    for _ in range(4):
        run.turn(text="no action block", problem="no_action")
    assert feed(MonologueMonitor(), run.turns) == []


# --- ProgressMonitor ---------------------------------------------------------------------


def test_re_viewing_known_lines_without_editing_is_no_progress() -> None:
    run = Run()
    run.turn(view("a.py", 1, 100))
    for n in range(26):
        run.turn(view("a.py", 1 + n % 7, 60 + n % 5), text=f"Looking again {n}")
    alerts = feed(ProgressMonitor(), run.turns)
    assert summary(alerts) == [("no_progress", "warning", 12), ("no_progress", "critical", 24)]
    assert alerts[0].evidence == tuple(range(3, 27))  # the 12 turns and their actions
    assert "12 actions in a row" in alerts[0].message


def test_reading_many_new_files_is_progress() -> None:
    run = Run()
    for n in range(30):
        run.turn(view(f"src/m{n}.py", 1, 30))
    assert feed(ProgressMonitor(), run.turns) == []


def test_an_edit_restarts_the_count() -> None:
    run = Run()
    run.turn(view("a.py", 1, 100))
    for n in range(40):
        run.turn(view("a.py", 1, 50))
        if n % 10 == 9:
            run.turn(edit("a.py", f"change {n}"))
    assert feed(ProgressMonitor(), run.turns) == []


def test_a_failed_edit_is_not_progress() -> None:
    run = Run()
    failed = act("edit", "old not found", target="a.py", ok=False, output="no match for old")
    for _ in range(13):
        run.turn(failed)
    # the first failure was news; the twelve after it are not
    assert summary(feed(ProgressMonitor(), run.turns)) == [("no_progress", "warning", 12)]


# --- ExplorationMonitor ------------------------------------------------------------------


def test_going_over_the_same_files_past_45_percent_of_the_limit_without_an_edit() -> None:
    run = Run()
    for n in range(70):
        run.turn(view(f"src/m{n % 17}.py", n, n + 40))
    facts = RunFacts(turn_limit=100)
    alerts = feed(ExplorationMonitor(), run.turns, facts)
    assert summary(alerts) == [("no_edit", "warning", 44), ("no_edit", "critical", 59)]
    assert alerts[0].message == "45 of 100 turns used without any edit (45 reads of 17 files)"
    assert "edit src/m" in alerts[0].suggestion


def test_reading_new_files_all_along_is_one_grade_less_alarming() -> None:
    run = Run()
    for n in range(70):
        run.turn(view(f"src/m{n}.py"))
    alerts = feed(ExplorationMonitor(), run.turns, RunFacts(turn_limit=100))
    assert summary(alerts) == [("no_edit", "warning", 59)]


def test_a_long_exploration_that_edits_by_a_third_is_healthy() -> None:
    for limit in (30, 60, 100, 150):
        run = Run()
        for n in range(limit // 3):
            run.turn(view(f"pkg/file_{n}.py"))
        run.turn(edit("pkg/file_0.py", "fix"))
        for n in range(limit - limit // 3 - 1):
            run.turn(view(f"pkg/file_{n}.py"))
        assert feed(ExplorationMonitor(), run.turns, RunFacts(turn_limit=limit)) == []


def test_without_a_limit_the_floor_applies() -> None:
    run = Run()
    for n in range(45):
        run.turn(view(f"m{n % 10}.py"))
    alerts = feed(ExplorationMonitor(), run.turns)
    assert summary(alerts) == [("no_edit", "warning", 24), ("no_edit", "critical", 39)]
    assert alerts[0].message.startswith("25 turns used")


def test_a_small_limit_still_waits_for_the_minimum_and_a_failed_edit_counts() -> None:
    run = Run()
    for n in range(12):
        run.turn(view(f"m{n % 3}.py"))
    assert summary(feed(ExplorationMonitor(), run.turns, RunFacts(turn_limit=12))) == [
        ("no_edit", "warning", 9),
        ("no_edit", "critical", 10),
    ]
    tried = Run()
    for n in range(30):
        tried.turn(view(f"m{n}.py"))
        if n == 5:
            tried.turn(act("edit", "bad", target="m1.py", ok=False))
    assert feed(ExplorationMonitor(), tried.turns) == []
    with pytest.raises(ConfigError, match="ExplorationMonitor"):
        ExplorationMonitor(warning_fraction=0.6, critical_fraction=0.5)


# --- TestRerunMonitor --------------------------------------------------------------------


def test_the_same_failure_after_ever_changing_edits() -> None:
    run = Run()
    run.turn(pytest_run())
    for n in range(6):
        run.turn(edit("src/parse.py", f"attempt {n}"), text=f"New idea {n}")
        run.turn(pytest_run(address=f"0x{n}f00", line=12 + n, seconds=f"0.{n}"))
    alerts = feed(TestRerunMonitor(), run.turns)
    assert summary(alerts) == [
        ("same_test_failure", "warning", 4),
        ("same_test_failure", "critical", 8),
    ]
    test_seqs = [t.actions[0].seq for t in run.turns if t.actions[0].kind == "test"]
    assert set(test_seqs[:3]) <= set(alerts[0].evidence)
    assert alerts[0].suggestion.startswith("Your edits are not changing the failure")
    assert "failed the same way 3 times" in alerts[0].message


def test_a_failure_that_changes_between_runs_does_not_alert() -> None:
    run = Run()
    for n in range(8):
        run.turn(pytest_run(fails=f"[{n}]"))
        run.turn(edit("src/parse.py", f"attempt {n}"))
    assert feed(TestRerunMonitor(), run.turns) == []


def test_reruns_need_edits_between_and_a_pass_starts_over() -> None:
    run = Run()
    for _ in range(4):
        run.turn(pytest_run())  # no edits: the repeat monitor's business
    run.turn(edit("a.py", "one"))
    run.turn(pytest_run())
    run.turn(edit("a.py", "two"))
    passing = act("test", "python -m pytest -q tests/test_parse.py", output="5 passed in 0.1s")
    run.turn(passing)
    run.turn(edit("a.py", "three"))
    run.turn(pytest_run())
    run.turn(edit("a.py", "four"))
    run.turn(pytest_run())
    assert feed(TestRerunMonitor(), run.turns) == []


def test_a_script_whose_traceback_survives_the_edits() -> None:
    traceback = (
        "Traceback (most recent call last):\n"
        '  File "/repo/reproduce.py", line {line}, in <module>\n'
        "ValueError: bad token ','\n"
    )
    run = Run()
    for n in range(3):
        output = traceback.format(line=3 + n)
        run.turn(act("run", "python reproduce.py", ok=None, output=output))
        run.turn(edit("lex.py", f"try {n}"))
    run.turn(act("run", "python reproduce.py", ok=None, output="[1, 2]"))
    alerts = feed(TestRerunMonitor(), run.turns)
    assert summary(alerts) == [("same_test_failure", "warning", 4)]
    assert "ValueError: bad token ','" in alerts[0].message


# --- all of them --------------------------------------------------------------------------


def test_behaviour_monitors_are_fresh_and_distinct() -> None:
    first, second = behaviour_monitors(), behaviour_monitors()
    names = [monitor.name for monitor in first]
    assert len(set(names)) == len(names) == 6
    assert all(a is not b for a, b in zip(first, second, strict=True))


def test_alerts_carry_the_step_and_round_of_their_turn() -> None:
    run = Run(step="fix-parser", round=2)
    for _ in range(3):
        run.turn(act("run", "ls", output="same"))
    [alert] = feed(RepeatMonitor(), run.turns)
    assert (alert.step, alert.round, alert.turn) == ("fix-parser", 2, 2)


POOL = [
    view("a.py", 1, 20),
    view("a.py", 10, 30),
    view("b.py"),
    edit("a.py", "one"),
    edit("a.py", "two"),
    pytest_run(),
    pytest_run(fails="[3]"),
    act("run", "ls", output="a.py b.py"),
    act("run", "make", ok=False, output="error"),
    act("finish", "{}"),
]
PROBLEMS: list[Malformed | None] = [None, None, None, "empty", "unparseable", "no_action"]


@st.composite
def runs(draw: st.DrawFn) -> list[Turn]:
    run = Run(step=draw(st.sampled_from(["", "s"])))
    for _ in range(draw(st.integers(0, 60))):
        problem = draw(st.sampled_from(PROBLEMS))
        picks = draw(st.lists(st.sampled_from(POOL), max_size=0 if problem else 2))
        run.turn(*picks, text=draw(st.sampled_from(["", "hm", "let me see"])), problem=problem)
    return run.turns


def every_monitor() -> list[Monitor]:
    return [FormatMonitor(), *behaviour_monitors()]


@settings(max_examples=60, deadline=None)
@given(runs(), st.sampled_from([None, 30, 80]))
def test_monitors_are_deterministic_and_never_repeat_themselves(
    turns: list[Turn], limit: int | None
) -> None:
    facts = RunFacts(turn_limit=limit)
    once = [feed(monitor, turns, facts) for monitor in every_monitor()]
    again = [feed(monitor, turns, facts) for monitor in every_monitor()]
    assert once == again
    keys = [alert.key for alerts in once for alert in alerts]
    assert len(keys) == len(set(keys))
    for alerts in once:
        for alert in alerts:
            assert alert.evidence == tuple(sorted(set(alert.evidence)))
            assert alert.turn is not None and alert.suggestion and alert.message
