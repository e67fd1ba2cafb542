"""Recorded runs as monitor observations: shell classification, the three file formats,
bad input, Trestle events from a real agent run, and the synthetic corpus."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent_helpers import (
    FIX_STEP,
    agent_settings,
    call,
    drive,
    findings_json,
    plan_json,
    sample_workspace,
    start_run,
)
from trestle.core.errors import ConfigError
from trestle.core.events import StoredEvent
from trestle.models import ModelResponse, ScriptedModel, ToolCall, Usage
from trestle.monitors.corpus import load_corpus
from trestle.monitors.importers import load_trajectory_file, outcome_of
from trestle.monitors.shell import classify_command, classify_tool_call
from trestle.monitors.stream import EventTrace, observations_from_events
from trestle.monitors.trace import StepEnd, Turn
from trestle.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "monitor_corpus"
SCRIPT = ROOT / "scripts" / "make_monitor_corpus.py"

# --- shell commands -------------------------------------------------------------------

COMMANDS: list[tuple[str, str, str, tuple[str, ...]]] = [
    # reads keep the file, not the range
    ("cat src/x.py", "read", "src/x.py", ()),
    ("head -n 50 src/x.py", "read", "src/x.py", ()),
    ("tail -20 ./src/x.py", "read", "src/x.py", ()),
    ("sed -n '10,40p' ./src/x.py", "read", "src/x.py", ()),
    ("nl -ba src/x.py | sed -n '10,20p'", "read", "src/x.py", ()),
    ("grep -rn 'def foo' src/", "read", "src", ()),
    ("grep -n -A 3 foo a.py", "read", "a.py", ()),
    ('grep -rn "foo" --include=*.py .', "read", ".", ()),
    ("rg foo -g '*.py' src", "read", "src", ()),
    ("find . -name '*.py' | head", "read", ".", ()),
    ("ls -la", "read", ".", ()),
    ("ls src/ && cat src/a.py", "read", "src", ()),
    ("cat src/x.py 2>/dev/null | grep foo", "read", "src/x.py", ()),
    ("git diff", "read", ".", ()),
    # SWE-agent's own commands
    ("open src/x.py 100", "read", "src/x.py", ()),
    ("goto 120", "read", "src/open.py", ()),
    ("scroll_down", "read", "src/open.py", ()),
    ("search_file foo", "read", "src/open.py", ()),
    ("search_dir foo src", "read", "src", ()),
    ("find_file x.py", "read", ".", ()),
    (
        "str_replace_editor view /testbed/src/x.py  --view_range 10 40",
        "read",
        "/testbed/src/x.py",
        (),
    ),
    (
        "str_replace_editor str_replace /testbed/src/x.py --old_str 'a\nb' --new_str 'c > d'",
        "edit",
        "/testbed/src/x.py",
        ("/testbed/src/x.py",),
    ),
    (
        "str_replace_editor create /testbed/repro.py --file_text 'print(1)'",
        "edit",
        "/testbed/repro.py",
        ("/testbed/repro.py",),
    ),
    (
        "edit 10:12\n    if a > b:\n        return 1\nend_of_edit",
        "edit",
        "src/open.py",
        ("src/open.py",),
    ),
    # edits
    ("sed -i 's/a/b/' src/x.py", "edit", "src/x.py", ("src/x.py",)),
    ("cat > f.py <<'EOF'\nx = 1 > 2\nEOF", "edit", "f.py", ("f.py",)),
    ("echo hi > notes.txt", "edit", "notes.txt", ("notes.txt",)),
    ("tee -a log.txt", "edit", "log.txt", ("log.txt",)),
    (
        "patch -p1 <<'EOF'\n--- a/src/x.py\n+++ b/src/x.py\n@@ -1 +1 @@\nEOF",
        "edit",
        "src/x.py",
        ("src/x.py",),
    ),
    ("git apply fix.diff", "edit", "git apply fix.diff", ()),
    ("python - <<'PY'\nopen('src/y.py', 'w').write('x')\nPY", "edit", "src/y.py", ("src/y.py",)),
    ('python -c \'open("a.txt","w").write("x")\'', "edit", "a.txt", ("a.txt",)),
    ("mkdir -p tests/new", "edit", "tests/new", ("tests/new",)),
    # edit wins over test in a chain
    ("cd src && sed -i 's/a/b/' x.py && python -m pytest", "edit", "x.py", ("x.py",)),
    # tests: the command, normalised
    ("pytest tests/test_x.py -q 2>&1 | tail -20", "test", "pytest tests/test_x.py -q", ()),
    ("cd /testbed && python -m pytest -x  tests", "test", "python -m pytest -x tests", ()),
    ("tox -e py311", "test", "tox -e py311", ()),
    ("python reproduce.py", "test", "python reproduce.py", ()),
    ("python3 tests/test_x.py", "test", "python tests/test_x.py", ()),
    ("timeout 60 pytest -q", "test", "pytest -q", ()),
    # finishing
    ("submit", "finish", "", ()),
    (
        "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && git add -A && git diff --cached",
        "finish",
        "",
        (),
    ),
    # anything else: a run of the normalised command
    ("pip install -e .", "run", "pip install -e .", ()),
    ("FOO=1 python3 setup.py build", "run", "python setup.py build", ()),
    ('python -c "import x\nprint(x)"', "run", "python -c import x print(x)", ()),
]


@pytest.mark.parametrize(("command", "kind", "target", "writes"), COMMANDS)
def test_shell_commands_are_classified_by_their_most_consequential_part(
    command: str, kind: str, target: str, writes: tuple[str, ...]
) -> None:
    found = classify_command(command, open_file="src/open.py")
    assert (found.kind, found.target, found.writes) == (kind, target, writes)


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("read_file", '{"path": "./calc.py", "start_line": 3}', ("read", "calc.py", ())),
        ("list_files", '{"directory": "src/"}', ("read", "src", ())),
        ("list_files", "{}", ("read", ".", ())),
        ("search_text", '{"pattern": "add", "directory": "src"}', ("read", "src", ())),
        ("git_diff", '{"paths": ["a.py", "b.py"]}', ("read", "a.py b.py", ())),
        ("write_file", '{"path": "new.py", "content": ""}', ("edit", "new.py", ("new.py",))),
        (
            "edit_file",
            '{"path": "calc.py", "old": "-", "new": "+"}',
            ("edit", "calc.py", ("calc.py",)),
        ),
        ("run_command", '{"command": "sed -i s/a/b/ calc.py"}', ("edit", "calc.py", ("calc.py",))),
        ("run_command", '{"command": "ls"}', ("read", ".", ())),
        ("run_tests", "", ("test", "run_tests", ())),
        ("finish", '{"summary": "done"}', ("finish", "", ())),
        ("bash", '{"command": "pytest -q"}', ("test", "pytest -q", ())),
        ("read_file", '{"path": ', ("read", "", ())),  # broken JSON: what it would have been
        ("teleport", "{}", ("other", "teleport", ())),
    ],
)
def test_tool_calls_are_classified_from_name_and_arguments(
    tool: str, arguments: str, expected: tuple[str, str, tuple[str, ...]]
) -> None:
    assert tuple(classify_tool_call(tool, arguments)) == expected


# --- SWE-agent ------------------------------------------------------------------------

FORMAT_COMPLAINT = (
    "Your output was not formatted correctly. You must always include one discussion and "
    "one command as part of your response."
)


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def swe_traj(exit_status: str = "submitted", *, autosubmitted: bool = False) -> dict[str, Any]:
    steps = [
        ("open src/calc.py", "[File: src/calc.py (20 lines total)]\n1:def add(a, b):"),
        ("", FORMAT_COMPLAINT),  # output it could not parse: no action
        ("goto 5", "5:    return a - b"),
        ("edit 5:5\n    return a + b\nend_of_edit", "File updated."),
        ("python -m pytest tests -q", "1 passed in 0.01s"),
        ("submit", "diff --git a/src/calc.py b/src/calc.py"),
    ]
    trajectory: list[dict[str, Any]] = [
        {
            "action": a,
            "observation": o,
            "thought": f"thought {i}",
            "response": f"r{i}",
            "execution_time": 0.5,
            "state": {"open_file": "n/a"},
        }
        for i, (a, o) in enumerate(steps)
    ]
    if autosubmitted:
        trajectory.append(
            {
                "action": "",
                "observation": "Exited (autosubmitted)",
                "thought": "Exit due to cost limit",
                "response": "Exit due to cost limit",
                "execution_time": 0.0,
            }
        )
    history: list[dict[str, Any]] = [
        {"role": "system", "content": "S" * 100},
        {"role": "user", "content": "D" * 300, "is_demo": True},
        {"role": "assistant", "content": "demo answer", "is_demo": True},
        {"role": "user", "content": "<pr_description>\nadd() subtracts\n</pr_description>\nfix it"},
    ]
    for i, (action, observation) in enumerate(steps):
        if action:  # re-asked format errors never reach the history
            history.append({"role": "assistant", "content": f"answer {i}", "action": action})
            history.append({"role": "user", "content": observation})
    config = {"agent": {"model": {"per_instance_cost_limit": 3.0, "per_instance_call_limit": 0}}}
    return {
        "trajectory": trajectory,
        "history": history,
        "info": {
            "exit_status": exit_status,
            "model_stats": {
                "instance_cost": 0.6,
                "tokens_sent": 9000,
                "tokens_received": 300,
                "api_calls": 6,
            },
        },
        "replay_config": json.dumps(config),
    }


def test_a_swe_agent_trajectory_becomes_turns_with_costs_spread_by_prompt_length(
    tmp_path: Path,
) -> None:
    run = load_trajectory_file(write_json(tmp_path / "calc.traj", swe_traj()))

    assert (run.name, run.source, run.exit_status, run.outcome) == (
        "calc.traj",
        "swe-agent",
        "submitted",
        "succeeded",
    )
    assert (run.calls, run.cost) == (6, 0.6)
    turns = run.turns
    assert [t.problem for t in turns] == [None, "no_action", None, None, None, None]
    kinds = [(a.kind, a.target, a.writes) for t in turns for a in t.actions]
    assert kinds == [
        ("read", "src/calc.py", ()),
        ("read", "src/calc.py", ()),  # goto acts on the open file
        ("edit", "src/calc.py", ("src/calc.py",)),
        ("test", "python -m pytest tests -q", ()),
        ("finish", "", ()),
    ]
    assert [t.actions[0].tool for t in turns if t.actions] == [
        "open",
        "goto",
        "edit",
        "bash",
        "submit",
    ]
    assert [t.seq for t in turns] == [1, 2, 3, 4, 5, 6]
    assert turns[0].text == "thought 0" and turns[0].seconds == 0.5
    # each call's share grows with the conversation it sent; the shares add up
    costs = [t.cost for t in turns]
    assert sum(costs) == pytest.approx(0.6)
    assert costs[1] == costs[2]  # the re-asked call sent the prompt of the next answer
    assert costs == sorted(costs) and costs[0] < costs[-1]
    assert sum(t.tokens for t in turns) == pytest.approx(9300, abs=6)
    assert run.facts.goal == "add() subtracts"
    assert (run.facts.cost_limit, run.facts.turn_limit) == (3.0, None)  # 0 means no limit


def test_a_swe_agent_autosubmission_after_a_limit_is_exhausted_and_not_a_turn(
    tmp_path: Path,
) -> None:
    data = swe_traj("submitted (exit_cost)", autosubmitted=True)
    run = load_trajectory_file(write_json(tmp_path / "limit.traj", data))
    assert run.outcome == "exhausted"
    assert len(run.turns) == 6


def test_swe_agent_format_errors_are_found_in_the_next_query_too(tmp_path: Path) -> None:
    several = "Your last output included multiple tool calls!\nPlease make sure ..."
    none = "Your last output did not use any tool calls!\nPlease make sure ..."
    data = {
        "trajectory": [
            {"action": "", "observation": "", "response": "two calls", "thought": "", "query": []},
            {
                "action": "",
                "observation": "",
                "response": "no call",
                "thought": "",
                "query": [{"role": "user", "content": several}],
            },
            {
                "action": "ls",
                "observation": "a.py",
                "response": "ls",
                "thought": "",
                "query": [{"role": "user", "content": none}],
            },
        ],
        "info": {"exit_status": "exit_format"},
    }
    run = load_trajectory_file(write_json(tmp_path / "fmt.traj", data))
    assert [t.problem for t in run.turns] == ["several_actions", "no_action", None]
    assert run.outcome == "failed"


# --- mini-swe-agent -------------------------------------------------------------------


EXACTLY_ONE = "Please always provide EXACTLY ONE action in triple backticks"
SUBMIT = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"


def mini_traj() -> dict[str, Any]:
    def answer(text: str, cost: float) -> dict[str, Any]:
        usage = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
        return {
            "role": "assistant",
            "content": text,
            "extra": {"cost": cost, "response": {"usage": usage}},
        }

    return {
        "info": {
            "exit_status": "LimitsExceeded",
            "model_stats": {"instance_cost": 0.1, "api_calls": 5},
            "config": {"agent": {"step_limit": 5, "cost_limit": 0}},
        },
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {
                "role": "user",
                "content": "Please solve this issue: add() subtracts.\n\n## Recommended Workflow",
            },
            answer("THOUGHT: look\n\n```bash\ncat calc.py\n```", 0.01),
            {
                "role": "user",
                "content": "<returncode>0</returncode>\n<output>\ndef add(a, b):\n</output>",
            },
            answer("THOUGHT: two\n\n```bash\nls\n```\n\n```bash\npwd\n```", 0.02),
            {
                "role": "user",
                "content": f"{EXACTLY_ONE}, found 2 actions.",
            },
            answer("THOUGHT: none", 0.02),
            {
                "role": "user",
                "content": f"{EXACTLY_ONE}, found 0 actions.",
            },
            answer(
                "THOUGHT: fix\n\n```bash\nsed -i 's/-/+/' calc.py && python -m pytest -q\n```", 0.02
            ),
            {
                "role": "user",
                "content": "<returncode>1</returncode>\n<output>\n1 failed\n</output>",
            },
            answer("THOUGHT: again\n\n```bash\npython -m pytest -q\n```", 0.03),
            {
                "role": "user",
                "content": "The command <command>pytest</command> timed out and has been killed.",
            },
            {"role": "user", "content": ""},
        ],
        "trajectory_format": "mini-swe-agent-1",
    }


def test_a_mini_swe_agent_trajectory_becomes_turns_with_recorded_costs(tmp_path: Path) -> None:
    run = load_trajectory_file(write_json(tmp_path / "calc.traj.json", mini_traj()))

    assert (run.source, run.exit_status, run.outcome, run.calls) == (
        "mini-swe-agent",
        "LimitsExceeded",
        "exhausted",
        5,
    )
    turns = run.turns
    assert [t.problem for t in turns] == [None, "several_actions", "no_action", None, None]
    assert [t.cost for t in turns] == [0.01, 0.02, 0.02, 0.02, 0.03]
    assert [t.tokens for t in turns] == [110] * 5
    assert [t.seq for t in turns] == [3, 5, 7, 9, 11]
    read, edit, test = turns[0].actions[0], turns[3].actions[0], turns[4].actions[0]
    assert (read.kind, read.target, read.ok, read.output) == (
        "read",
        "calc.py",
        True,
        "def add(a, b):\n",
    )
    assert (edit.kind, edit.writes, edit.ok, edit.error) == (
        "edit",
        ("calc.py",),
        False,
        "exit code 1",
    )
    assert (test.kind, test.ok, test.error) == ("test", False, "timeout")
    assert run.facts.goal == "add() subtracts."
    assert (run.facts.turn_limit, run.facts.cost_limit) == (5, None)


def test_mini_swe_agent_v2_tool_calls_and_exit_message(tmp_path: Path) -> None:
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "bash", "arguments": json.dumps({"command": "cat calc.py"})},
    }
    data: dict[str, Any] = {
        "info": {"model_stats": {"instance_cost": 0.05, "api_calls": 2}},
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "<task>make add() add</task>"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {
                "role": "tool",
                "tool_call_id": "c1",
                "content": "<returncode>0</returncode>\n<output>\nx\n</output>",
            },
            {
                "role": "assistant",
                "content": f"done\n\n```mswea_bash_command\n{SUBMIT}\n```",
                "extra": {"actions": [{"command": "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"}]},
            },
            {
                "role": "exit",
                "content": "",
                "extra": {"exit_status": "Submitted", "submission": ""},
            },
        ],
    }
    run = load_trajectory_file(write_json(tmp_path / "v2.traj.json", data))
    assert (run.exit_status, run.outcome, run.facts.goal) == (
        "Submitted",
        "succeeded",
        "make add() add",
    )
    assert [a.kind for t in run.turns for a in t.actions] == ["read", "finish"]
    first = len("sys") + len("<task>make add() add</task>")  # the prompt of each call
    second = first + len(data["messages"][3]["content"])
    shares = [0.05 * first / (first + second), 0.05 * second / (first + second)]
    assert [t.cost for t in run.turns] == pytest.approx(shares)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("submitted", "succeeded"),
        ("Submitted", "succeeded"),
        ("exit_cost", "exhausted"),
        ("submitted (exit_context)", "exhausted"),
        ("LimitsExceeded", "exhausted"),
        ("exit_format", "failed"),
        ("early_exit", "failed"),
        ("submitted (exit_format)", "failed"),
        (None, "unknown"),
    ],
)
def test_exit_statuses_map_to_outcomes(status: str | None, outcome: str) -> None:
    assert outcome_of(status) == outcome


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("broken.traj", "{not json", "not JSON"),
        ("broken.json.gz", "not gzip at all", "cannot read it"),
        ("empty.traj.json", "", "not JSON"),
        ("odd.json", '{"hello": 1}', "unknown trajectory format"),
        ("odd.traj", '{"history": []}', "missing key 'trajectory'"),
        ("odd.traj.json", '{"info": {}}', "missing key 'messages'"),
        (
            "entry.traj",
            '{"trajectory": [{"action": "ls"}]}',
            "trajectory[0]: missing key 'observation'",
        ),
        ("list.traj", '{"trajectory": {}}', "'trajectory' must be a list"),
        (
            "cost.traj",
            '{"trajectory": [], "info": {"model_stats": {"instance_cost": "x"}}}',
            "info.model_stats.instance_cost must be a number",
        ),
        ("role.traj.json", '{"messages": [{"content": "x"}]}', "messages[0]: missing key 'role'"),
        ("events.json", '[{"seq": 1, "kind": "no_such_event", "at": 0}]', "event [0] (seq 1"),
        ("seq.json", '[{"seq": "1", "kind": "run_finished"}]', "'seq' must be an integer"),
    ],
)
def test_bad_files_are_config_errors_naming_the_file_and_the_problem(
    tmp_path: Path, name: str, text: str, says: str
) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_trajectory_file(path)
    assert str(caught.value).startswith(str(path))
    assert says in str(caught.value)
    assert caught.value.exit_code == 2


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it"):
        load_trajectory_file(tmp_path / "nowhere.traj")


# --- Trestle events -------------------------------------------------------------------


def scripted_run(tmp_path: Path) -> list[StoredEvent]:
    """A real agent run: an unknown tool, bad JSON and finish alongside another call."""
    workspace = sample_workspace(tmp_path)
    bad_json = ModelResponse(
        tool_calls=(ToolCall(id="c1", name="read_file", arguments='{"path": '),),
        finish_reason="tool_calls",
    )
    two = ModelResponse(
        tool_calls=(
            ToolCall(id="c1", name="run_tests", arguments="{}"),
            ToolCall(id="c2", name="finish", arguments=json.dumps({"summary": "fixed"})),
        ),
        finish_reason="tool_calls",
        usage=Usage(input_tokens=100, output_tokens=20, cost=0.5),
    )
    replies: list[ModelResponse | str] = [
        call("read_file", path="calc.py"),
        findings_json(),
        plan_json(FIX_STEP, summary="fix add"),
        call("teleport", to="calc.py"),
        bad_json,
        call("edit_file", path="calc.py", old="a - b", new="a + b", usage=Usage(cost=0.25)),
        two,
    ]
    store = SqliteStore(tmp_path / "runs.db")
    try:
        run_id = start_run(store, workspace, settings=agent_settings(max_turns=12))
        drive(store, run_id, ScriptedModel(replies))
        return list(store.events(run_id))
    finally:
        store.close()


def test_a_trestle_run_log_imports_as_turns_and_step_ends(tmp_path: Path) -> None:
    stored = scripted_run(tmp_path)
    log = [{"seq": s.seq, **s.event.model_dump(mode="json")} for s in stored]  # trestle log --json
    run = load_trajectory_file(write_json(tmp_path / "run.json", log))

    assert (run.source, run.outcome, run.exit_status) == ("trestle", "succeeded", "succeeded")
    turns = run.turns
    assert [t.index for t in turns] == list(range(7))
    fix = [t for t in turns if t.step == "fix"]
    assert [t.problem for t in fix] == ["unknown_tool", "unparseable", None, "several_actions"]
    assert [a.kind for a in fix[2].actions] == ["edit"]
    assert fix[2].actions[0].writes == ("calc.py",) and fix[2].actions[0].ok is True
    assert [a.kind for a in fix[3].actions] == ["test", "finish"]
    assert fix[0].actions[0].writes == () and fix[0].actions[0].ok is False
    assert run.cost == pytest.approx(0.75)
    ends = [o for o in run.observations if isinstance(o, StepEnd)]
    fix_end = next(e for e in ends if e.step == "fix")
    assert (fix_end.ok, fix_end.claimed_done, fix_end.calls) == (True, True, 4)
    assert fix_end.cost == pytest.approx(0.75)
    assert fix_end.seconds >= 0 and fix_end.failed_checks == ()
    assert run.facts.goal == "make add() return the sum"
    assert run.facts.objectives["fix"] == "add() returns the sum"
    assert "understand" in run.facts.objectives and run.facts.turn_limit == 12


def test_the_event_trace_is_incremental_and_json_lines_read_alike(tmp_path: Path) -> None:
    stored = scripted_run(tmp_path)
    whole, facts = observations_from_events(stored)
    trace = EventTrace()
    fed = [o for s in stored for o in trace.feed(s.seq, s.event)] + trace.flush()
    assert fed == whole and trace.facts == facts
    lines = [json.dumps({"seq": s.seq, "event": s.event.model_dump(mode="json")}) for s in stored]
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert load_trajectory_file(path).observations == tuple(whole)
    # a turn is complete as soon as its last tool call has ended
    first_turn = next(o for o in whole if isinstance(o, Turn))
    ended = next(s for s in stored if s.seq == first_turn.actions[0].seq)
    assert ended.event.kind == "tool_call_ended"


# --- the corpus -----------------------------------------------------------------------


def test_the_corpus_generator_is_deterministic_and_matches_the_committed_corpus(
    tmp_path: Path,
) -> None:
    for out in (tmp_path / "a", tmp_path / "b"):
        subprocess.run(
            [sys.executable, str(SCRIPT), "--out", str(out)], check=True, capture_output=True
        )
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    assert files == sorted(
        p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file()
    )
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
        assert (tmp_path / "a" / rel).read_bytes() == (CORPUS / rel).read_bytes(), rel
    size = sum((CORPUS / rel).stat().st_size for rel in files)
    assert size < 3_200_000


def test_every_corpus_file_imports_and_is_labelled() -> None:
    runs, labels = load_corpus(CORPUS)
    assert len(runs) >= 120 and set(labels) == {r.name for r in runs}
    assert {r.source for r in runs} == {"swe-agent", "mini-swe-agent"}
    outcomes = {r.outcome for r in runs}
    assert outcomes == {"succeeded", "exhausted", "failed"}
    problems = {p for label in labels.values() for p in label.problems}
    assert problems == {
        "loop",
        "near_loop",
        "format",
        "cost",
        "drift",
        "no_edit",
        "test_rerun",
        "hallucinated",
    }
    for run in runs:
        assert run.turns, run.name
        assert run.facts.turn_limit and run.facts.cost_limit and run.facts.goal, run.name
        label = labels[run.name]
        if "format" in label.problems:
            assert any(t.problem in ("no_action", "several_actions") for t in run.turns)
        if label.outcome == "exhausted" and "cost" not in label.problems:
            assert len(run.turns) == run.facts.turn_limit, run.name
        if "cost" in label.problems:
            assert run.cost > run.facts.cost_limit, run.name
        if label.outcome == "succeeded":
            assert run.cost < run.facts.cost_limit and run.turns[-1].actions[0].kind == "finish"
