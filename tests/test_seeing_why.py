"""Seeing why a step failed: the end of its output and its failed checks wherever a
failure is shown, `trestle output` for all of it, and one note for unchecked steps.

The first part drives the real console script on a plan whose 'build' fails twice
printing a distinctive line to stderr and whose 'check' runs but fails its check. The
second part renders the views at a fixed width from hand-written events.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from test_cli import RUN_LINE, Cli, render
from trestle.cli.render import steps_table
from trestle.core.events import (
    ActionResult,
    AnyEvent,
    RunCreated,
    StepAttemptEnded,
    StepStarted,
)
from trestle.core.report import build_report
from trestle.core.state import fold
from trestle.core.step_state import output_tail
from trestle.formats.planfile import parse_plan

FAILING_SCRIPT = """\
i=1
while [ $i -le 12 ]; do echo "compiling unit $i"; i=$((i + 1)); done
echo "ZEBRA-7: linker exploded in unit 12" >&2
exit 3
"""
FULL_OUTPUT = "".join(f"compiling unit {i}\n" for i in range(1, 13)) + (
    "ZEBRA-7: linker exploded in unit 12\n"
)
TAIL = [f"compiling unit {i}" for i in range(9, 13)] + ["ZEBRA-7: linker exploded in unit 12"]

PLAN = """\
    goal: see why it failed
    steps:
      - id: fetch
        write: {path: src/main.txt, content: "hello\\n"}
      - id: prep
        run: echo prepared
      - id: lint
        run: "true"
      - id: build
        needs: [fetch, prep]
        run: sh fail.sh
        retries: 1
        backoff: {initial: 0}
      - id: check
        run: echo looked for go.txt
        verify:
          - file_exists: go.txt
"""


class FailedRun:
    """The plan run once; its outputs read by the tests."""

    def __init__(self, cli: Cli) -> None:
        cli.write("fail.sh", FAILING_SCRIPT)
        cli.write("plan.yaml", PLAN)
        self.cli = cli
        self.result = cli("run", "plan.yaml", "--report-json", "report.json")
        match = RUN_LINE.fullmatch(self.result.stdout.splitlines()[0])
        assert match, self.result.stdout
        self.run_id = match.group(1)
        self.report = json.loads((cli.dir / "report.json").read_text())

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.cli(*args)


@pytest.fixture(scope="module")
def failed(tmp_path_factory: pytest.TempPathFactory) -> FailedRun:
    """One run shared by the tests, which only read it."""
    where = tmp_path_factory.mktemp("failed")
    return FailedRun(Cli(where, where / "t.db"))


def tail_block(indent: str) -> list[str]:
    return [f"{indent}output ends:", *(f"{indent}  | {line}" for line in TAIL)]


def follows(lines: list[str], block: list[str]) -> bool:
    """``block`` appears in ``lines`` as consecutive lines."""
    return any(lines[i : i + len(block)] == block for i in range(len(lines)))


def test_the_report_of_run_shows_why_each_step_failed(failed: FailedRun) -> None:
    assert failed.result.returncode == 3, failed.result.stderr
    lines = [line.rstrip() for line in failed.result.stdout.splitlines()]
    run = failed.run_id

    report = lines[lines.index("why steps failed:") :]
    assert follows(
        report,
        [
            "  'build' attempt 2: exit code 3",
            *tail_block("    "),
            f"    full output: trestle output {run} build",
        ],
    )
    # a check that failed: which one, what it expected and what it found
    assert follows(
        report,
        [
            "  'check' attempt 1: its action succeeded, but 1 check failed",
            "    ✗ go.txt exists: expected exists, got missing",
            "    output ends:",
            "      | looked for go.txt",
            f"    full output: trestle output {run} check",
        ],
    )
    assert "compiling unit 8" not in failed.result.stdout.split("why steps failed:")[1]


def test_the_progress_lines_show_each_failed_attempts_output(failed: FailedRun) -> None:
    lines = [line.rstrip() for line in failed.result.stdout.splitlines()]
    run = failed.run_id

    for attempt in (1, 2):
        assert follows(
            lines,
            [
                f"failed   build (attempt {attempt}): exit code 3",
                *tail_block("         "),
                f"         full output: trestle output {run} build --attempt {attempt}",
            ],
        )


def test_the_report_json_carries_the_failed_attempt_and_its_output_tail(
    failed: FailedRun,
) -> None:
    steps = {s["id"]: s for s in failed.report["steps"]}

    assert steps["build"]["failed_attempt"] == 2
    assert steps["build"]["output_tail"] == "\n".join(TAIL)
    assert steps["build"]["error"] == "exit code 3"
    assert steps["check"]["failed_attempt"] == 1
    assert steps["check"]["checks"] == [
        {"check": "go.txt exists", "expected": "exists", "actual": "missing", "passed": False}
    ]
    # a step that succeeded has no failure to show
    assert (steps["prep"]["failed_attempt"], steps["prep"]["output_tail"]) == (None, "")


def test_show_shows_the_tail_and_the_command_for_all_of_it(failed: FailedRun) -> None:
    shown = failed("show", failed.run_id)

    assert shown.returncode == 0, shown.stderr
    lines = [line.rstrip() for line in shown.stdout.splitlines()]
    assert follows(lines, tail_block("    "))
    assert f"    full output: trestle output {failed.run_id} build" in lines
    assert "    ✗ go.txt exists: expected exists, got missing" in lines
    data = failed.cli.json("show", failed.run_id)
    assert {s["id"]: s["output_tail"] for s in data["steps"]}["build"] == "\n".join(TAIL)


def test_log_shows_each_failed_attempts_tail(failed: FailedRun) -> None:
    logged = failed("log", failed.run_id)

    assert logged.returncode == 0, logged.stderr
    details = [line.split("│")[-2].rstrip() for line in logged.stdout.splitlines() if "│" in line]
    for attempt in (1, 2):
        assert follows(
            details,
            [
                " failed; action failed; exit code 3",
                *tail_block(" "),
                f" full output: trestle output {failed.run_id} build --attempt {attempt}",
            ],
        )


def test_dlq_shows_each_failed_attempts_tail(failed: FailedRun) -> None:
    listed = failed("dlq")

    assert listed.returncode == 0, listed.stderr
    lines = [line.rstrip() for line in listed.stdout.splitlines()]
    assert follows(
        lines,
        [
            *tail_block("        "),
            f"        full output: trestle output {failed.run_id} build --attempt 2",
        ],
    )
    assert f"        full output: trestle output {failed.run_id} check --attempt 1" in lines


def test_health_shows_each_dead_letters_failed_checks_and_tail(failed: FailedRun) -> None:
    checked = failed("health")

    assert checked.returncode == 1, checked.stderr  # it waits for a human
    lines = [line.rstrip() for line in checked.stdout.splitlines()]
    run = failed.run_id
    assert follows(
        lines,
        [
            *tail_block("    "),
            f"    full output: trestle output {run} build --attempt 2",
        ],
    )
    assert follows(
        lines,
        [
            "    ✗ go.txt exists: expected exists, got missing",
            "    output ends:",
            "      | looked for go.txt",
            f"    full output: trestle output {run} check --attempt 1",
        ],
    )
    as_json = failed("health", "--json")
    assert as_json.returncode == 1, as_json.stderr
    waits = {w["step"]: w for w in json.loads(as_json.stdout)[0]["waiting"]}
    assert waits["build"]["output_tail"] == "\n".join(TAIL)
    assert waits["check"]["failed_checks"][0]["actual"] == "missing"


def test_output_prints_an_attempts_output_exactly(failed: FailedRun) -> None:
    last = failed("output", failed.run_id, "build")
    first = failed("output", failed.run_id, "build", "--attempt", "1")
    wrote = failed("output", failed.run_id, "fetch")

    assert (last.returncode, last.stdout, last.stderr) == (0, FULL_OUTPUT, "")
    assert (first.returncode, first.stdout) == (0, FULL_OUTPUT)
    # piped, it adds nothing: not even the newline the write's summary lacks
    assert (wrote.returncode, wrote.stdout) == (0, "wrote 6 characters to src/main.txt")


def test_output_names_what_it_cannot_find(failed: FailedRun) -> None:
    run = failed.run_id

    no_attempt = failed("output", run, "build", "--attempt", "3")
    no_step = failed("output", run, "biuld")

    assert no_attempt.returncode == 2
    assert no_attempt.stderr.strip() == (
        f"error: run {run!r}: step 'build' has no attempt 3 that ended (attempts that ended: 1, 2)"
    )
    assert no_step.returncode == 2
    assert no_step.stderr.strip() == (
        f"error: run {run!r} has no step 'biuld' (did you mean 'build'?)"
    )


def test_steps_without_checks_are_noted_once(failed: FailedRun) -> None:
    notes = [item for item in failed.report["to_check"] if "no verify checks" in item]

    assert notes == [
        "no verify checks: only the exit status says 'prep' and 'lint' worked; "
        "'fetch' wrote its file, which no check looked at."
    ]


# --- rendered from events ---------------------------------------------------------------


def test_output_tail_keeps_the_last_lines_within_a_size() -> None:
    assert output_tail("a\nb\nc\nd\ne\nf\ng\n\n\n") == "c\nd\ne\nf\ng"
    assert output_tail("one line") == "one line"
    assert output_tail("") == ""
    assert output_tail("x" * 1000) == "…" + "x" * 399
    assert output_tail("progress 10%\rprogress 100%\rdone") == "progress 10%\nprogress 100%\ndone"


NOTE_PLAN = parse_plan(
    """
    steps:
      - {id: a, run: make a}
      - {id: b, python: "json:dumps"}
      - {id: c, write: {path: c.txt, content: c}}
      - {id: d, write: {path: d.txt, content: d}}
      - {id: e, run: make e, verify: [{file_exists: e}]}
    """
)


def succeeded(step: str, at: float) -> list[AnyEvent]:
    return [
        StepStarted(at=at, step=step, attempt=1, key=f"r1/{step}/1"),
        StepAttemptEnded(
            at=at, step=step, attempt=1, ok=True, action=ActionResult(status="ok", exit_code=0)
        ),
    ]


def test_the_unchecked_note_says_what_each_kind_of_step_rests_on() -> None:
    events: list[AnyEvent] = [RunCreated(at=0.0, run_id="r1", plan=NOTE_PLAN, workspace="/ws")]
    for step in "abcd":
        events += succeeded(step, 1.0)

    to_check = build_report(fold(events)).to_check

    assert [item for item in to_check if "verify" in item] == [
        "no verify checks: only the exit status says 'a' worked; only returning without "
        "an error says 'b' worked; 'c' and 'd' wrote their files, which no check looked at."
    ]


def test_the_live_view_shows_the_end_of_a_failed_attempts_output() -> None:
    plan = parse_plan("steps:\n  - {id: build, run: make, retries: 1}\n")
    action = ActionResult(
        status="failed", exit_code=2, error="exit code 2", output="cc main.c\nmain.c:3: error\n"
    )
    state = fold(
        [
            RunCreated(at=0.0, run_id="r1", plan=plan, workspace="/ws"),
            StepStarted(at=1.0, step="build", attempt=1, key="r1/build/1"),
            StepAttemptEnded(at=2.0, step="build", attempt=1, ok=False, action=action),
        ]
    )

    assert render(steps_table(state)).splitlines()[3:6] == [
        "│ build │ attempt failed │ 1       │ exit code 2       │",
        "│       │                │         │ | cc main.c       │",
        "│       │                │         │ | main.c:3: error │",
    ]
