"""``trestle tell`` changing an agent run's plan mid-run, end to end through the CLI.

Every command runs the real console script in a subprocess against a real SQLite
store and a real copy of the sample repository. The model is the demo's recorded
trajectory (``replay:``; no model is called) or the ``openai`` client talking to the
loopback chat completions server. Covered: ``--drop`` and ``--change`` of steps that
have not started, and each refusal (exit 2, nothing queued); a run its budget stopped
taking a requirement for its resume; a requirement told while a conversation goes on
reaching it at its next model turn, once, across a ``kill -9`` and a resume; an agent
run's plan shown as waves and its critical path.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from forked_cli import run_trestle
from trestle.agentplan.edits import change_refusal, step_changed
from trestle.core.events import RequestRefused, StepStarted
from trestle.demo import write_sample
from trestle.lifecycle.runs import load_state
from trestle.models import ToolCall
from trestle.store.sqlite import SqliteStore
from trestle.testing import OpenAIServer

RUN_LINE = re.compile(r"run (\d{8}-\d{6}-[0-9a-f]{4})\b")
PATIENCE = 120.0  # only a guard against a hung child; nothing asserts how long it takes
TRAJECTORY = Path(__file__).parents[1] / "src" / "trestle" / "demo" / "trajectory.json"
DEMO_GOAL = "make slugify() turn any title into a clean URL slug; the failing test shows how"
DEMO_TESTS = "python3 -m unittest discover -s tests -q"


@dataclass(frozen=True)
class Cli:
    dir: Path
    store: Path
    key_file: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("TRESTLE_STORE",)}
        env.update(
            COLUMNS="200",
            NO_COLOR="1",
            TERM="dumb",
            TRESTLE_STORE=str(self.store),
            TRESTLE_KEY_FILE=str(self.key_file),
            OPENAI_API_KEY="x",
        )
        return env

    def args(self, *args: str | Path) -> list[str]:
        return [sys.executable, "-m", "trestle", *map(str, args)]

    def __call__(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return run_trestle(args, cwd=self.dir, env=self.env(), timeout=PATIENCE)

    def json(self, *args: str | Path) -> Any:
        result = self(*args, "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(result.stdout)

    def events(self, run_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.json("log", run_id)
        return found


def flat(text: str) -> str:
    return " ".join(text.split())


def run_id_of(result: subprocess.CompletedProcess[str]) -> str:
    match = RUN_LINE.match(result.stdout)
    assert match, result.stdout + result.stderr
    return match.group(1)


@pytest.fixture
def cli(tmp_path: Path, _own_decision_key: Path) -> Cli:
    return Cli(tmp_path, tmp_path / "trestle.db", _own_decision_key)


def replayed_agent(cli: Cli, *more: str) -> subprocess.CompletedProcess[str]:
    """The demo's goal on a fresh sample, answered by the demo's recorded trajectory."""
    repo = write_sample(cli.dir / "repo")
    model = f"replay:{TRAJECTORY}"
    command = ["agent", DEMO_GOAL, "--repo", str(repo), "--model", model]
    return cli(*command, "--test-command", DEMO_TESTS, "--no-live", "--no-prompt", *more)


# --- --drop and --change --------------------------------------------------------------


def test_tell_drops_and_changes_steps_that_have_not_started(cli: Cli) -> None:
    # the run waits at its plan's review: fix-slugify, then cover-accents (which needs it)
    waiting = replayed_agent(cli)
    assert waiting.returncode == 3, waiting.stdout + waiting.stderr
    run_id = run_id_of(waiting)
    before = cli.events(run_id)
    a_step_that_started_is_refused(cli, run_id)

    refusals: dict[tuple[str, ...], str] = {
        ("--drop", "fix-slugify"): "dropping 'fix-slugify' would leave 'cover-accents' "
        "waiting for a step that never runs: drop that first, or change it instead",
        ("--drop", "validate"): "step 'validate' is the run's own acceptance step, not a "
        "step of the model's plan: only the plan's own steps can be changed or dropped",
        ("--drop", "fix-slugfy"): "the run has no step 'fix-slugfy' (did you mean 'fix-slugify'?)",
    }
    for args, why in refusals.items():
        refused = cli("tell", run_id, *args)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert flat(refused.stderr) == f"error: run {run_id!r}: {why}"
    usage: dict[tuple[str, ...], str] = {
        ("--change", "fix-slugify"): "--change fix-slugify: say the step's new objective: TEXT",
        ("--drop", "a", "--change", "b", "x"): "--drop and --change: one change per `trestle tell`",
    }
    for args, why in usage.items():
        refused = cli("tell", run_id, *args)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert flat(refused.stderr) == f"error: {why}"
    assert cli.events(run_id) == before  # nothing recorded, nothing queued for a driver

    dropped = cli("tell", run_id, "--drop", "cover-accents", "the fix is enough")
    assert dropped.returncode == 0, dropped.stdout + dropped.stderr
    assert flat(dropped.stdout).startswith("the drop of 'cover-accents': queued (request 1)")
    objective = "slugify keeps only the words of a title, joined by single dashes"
    changed = cli("tell", run_id, "--change", "fix-slugify", objective)
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert cli("approve", f"{run_id}.1").returncode == 0
    resumed = cli("resume", run_id, "--no-live", "--no-prompt")

    out = resumed.stdout
    assert resumed.returncode == 0, out + resumed.stderr
    assert "dropped  cover-accents by " in out and ": the fix is enough" in out
    assert f"changed  fix-slugify by {os.environ.get('USER', '')}".strip() in out
    events = cli.events(run_id)
    told = [e for e in events if e["kind"] == "plan_step_changed"]
    assert [(e["step"], e["change"], e["text"], e["request_id"]) for e in told] == [
        ("cover-accents", "drop", "the fix is enough", 1),
        ("fix-slugify", "objective", objective, 2),
    ]
    assert not any(e["kind"] == "step_started" and e["step"] == "cover-accents" for e in events)
    exported = cli("feedback", "export").stdout.splitlines()
    acts = {r["act"]: r for r in map(json.loads, exported) if r["act"] in ("drop", "change")}
    drop, change = acts["drop"], acts["change"]
    assert (drop["step"], drop["decision"], drop["reason"]) == (
        "cover-accents",
        "dropped",
        "the fix is enough",
    )
    assert drop["proposed"]["status"] == "pending"
    assert (change["step"], change["decision"], change["objective"]) == (
        "fix-slugify",
        "changed",
        objective,
    )
    was = "slugify drops punctuation and collapses runs of separators"
    assert change["proposed"]["objective"] == was
    assert change["next"]["step"] == "succeeded"
    logged = flat(cli("log", run_id).stdout)
    assert "plan_step_changed │ cover-accents │ │ dropped by " in logged
    assert "plan_step_changed │ fix-slugify │ │ new objective by " in logged
    shown = cli.json("show", run_id)
    steps = {s["id"]: s for s in shown["steps"]}
    assert steps["cover-accents"]["category"] == "skipped"
    assert steps["cover-accents"]["reason"].endswith(": the fix is enough")
    assert steps["fix-slugify"]["action"] == f"agent execute: {objective}"
    # the dropped step is left out of the plan's shape
    assert shown["shape"] == {
        "waves": [["understand"], ["plan"], ["review"], ["fix-slugify"], ["validate"]],
        "critical_path": ["understand", "plan", "review", "fix-slugify", "validate"],
    }
    text = cli("show", run_id).stdout
    assert "wave 4: fix-slugify" in text
    assert (
        "critical path: understand -> plan -> review -> fix-slugify -> validate (5 steps)" in text
    )

    # the run is over: nothing of its plan is left to change
    late = cli("tell", run_id, "--drop", "validate")
    assert late.returncode == 2
    assert flat(late.stderr) == (
        f"error: run {run_id!r} already finished (succeeded): nothing of its plan is left to change"
    )


def test_tell_refuses_to_change_a_plan_run(cli: Cli) -> None:
    (cli.dir / "plan.yaml").write_text("goal: hi\nsteps:\n  - id: a\n    run: 'true'\n")
    ran = cli("run", "plan.yaml", "--no-live", "--no-prompt")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    run_id = run_id_of(ran)

    refused = cli("tell", run_id, "--drop", "a")

    assert refused.returncode == 2
    assert "a plan run's steps are its plan file's" in flat(refused.stderr)


# --- a run its budget stopped ---------------------------------------------------------


def test_a_run_its_budget_stopped_takes_a_requirement_for_its_resume(cli: Cli) -> None:
    stopped = replayed_agent(cli, "--max-tokens", "200", "--stop-at-tokens", "2500")
    assert stopped.returncode == 6, stopped.stdout + stopped.stderr
    run_id = run_id_of(stopped)

    told = cli("tell", run_id, "also strip leading dashes")

    assert told.returncode == 0, told.stdout + told.stderr
    assert f"`trestle budget {run_id} --add DIM=N`" in flat(told.stdout)
    assert "requirement_added" not in [e["kind"] for e in cli.events(run_id)]
    assert cli("budget", run_id, "--add", "tokens=100000").returncode == 0
    resumed = cli("resume", run_id, "--no-live", "--no-prompt")
    assert resumed.returncode == 3, resumed.stdout + resumed.stderr  # at the plan's review
    assert "told     by " in resumed.stdout
    events = cli.events(run_id)
    [added] = [e for e in events if e["kind"] == "requirement_added"]
    assert added["text"] == "also strip leading dashes"
    # the understand step's conversation began before it: it is told at its next turn
    [reminder] = [
        e["record"]
        for e in events
        if e["kind"] == "reminder_injected" and e["record"]["reason"] == "requirement"
    ]
    assert reminder["step_id"] == "understand" and reminder["alert"] == "requirement:1"
    assert "also strip leading dashes" in reminder["text"]


# --- a requirement told while a conversation goes on -----------------------------------

CALC_TESTS = f"{sys.executable} -m unittest -q"
REQUIREMENT = "also keep add() free of side effects"


def call(call_id: str, name: str, **arguments: Any) -> ToolCall:
    return ToolCall(id=call_id, name=name, arguments=json.dumps(arguments))


def told_in(request_body: dict[str, Any]) -> int:
    """How many messages of a model request tell the requirement."""
    return sum(
        1
        for m in request_body["messages"]
        if m["role"] == "user"
        and REQUIREMENT in str(m.get("content"))
        and "trestle tell" in str(m.get("content"))
    )


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(model="test-model") as running:
        yield running


def test_a_requirement_reaches_the_conversation_once_across_a_kill(
    cli: Cli, server: OpenAIServer
) -> None:
    repo = cli.dir / "calc"
    repo.mkdir()
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (repo / "test_calc.py").write_text(
        "import unittest\n\nfrom calc import add\n\n\n"
        "class AddTest(unittest.TestCase):\n"
        "    def test_add(self) -> None:\n"
        "        self.assertEqual(add(2, 3), 5)\n"
    )
    # the understanding step's tests wait (in the workspace) until the test has told
    gate = (
        'if [ "$TRESTLE_STEP_ID" = understand ]; then touch waiting; '
        f"while [ ! -f told ]; do sleep 0.05; done; fi; {CALC_TESTS}"
    )
    server.queue_tool_calls(call("call_tests", "run_tests"))
    server.queue_text("{}", delay=PATIENCE)  # turn 2: the driver is killed while it waits
    command = ["agent", "make add() return the sum", "--repo", str(repo)]
    command += ["--model", "openai:test-model", "--base-url", server.base_url]
    command += ["--test-command", gate, "--auto-plan", "--max-tokens", "512"]
    driver = subprocess.Popen(
        cli.args(*command, "--no-live", "--no-prompt"),
        cwd=cli.dir,
        env=cli.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + PATIENCE
        while not (repo / "waiting").exists():
            assert driver.poll() is None, driver.communicate()
            assert time.monotonic() < deadline, "the understanding step never ran its tests"
            time.sleep(0.05)
        [row] = cli.json("runs")
        run_id = row["run_id"]
        told = cli("tell", run_id, REQUIREMENT)
        assert told.returncode == 0, told.stdout + told.stderr
        assert flat(told.stdout) == f"run {run_id} took the requirement: its planner reads it"
        (repo / "told").touch()
        while len(server.requests) < 2:
            assert driver.poll() is None, driver.communicate()
            assert time.monotonic() < deadline, "the second turn was never asked for"
            time.sleep(0.05)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.communicate(timeout=PATIENCE)

    # the turn after the tool's answer reads it, as a human's message
    assert told_in(server.requests[0].body) == 0
    assert told_in(server.requests[1].body) == 1
    findings = {
        "summary": "add() subtracts",
        "how_to_test": CALC_TESTS,
        "relevant_files": [{"path": "calc.py"}],
    }
    plan = {
        "summary": "fix add",
        "steps": [
            {
                "id": "fix-add",
                "objective": "add returns the sum",
                "files": ["calc.py"],
                "verify": [{"command": CALC_TESTS}],
            }
        ],
    }
    server.queue_text(json.dumps(findings))
    server.queue_text(json.dumps(plan))
    server.queue_tool_calls(
        call("call_edit", "edit_file", path="calc.py", old="a - b", new="a + b")
    )
    server.queue_tool_calls(call("call_finish", "finish", summary="add adds"))

    resumed = cli("resume", run_id, "--no-live", "--no-prompt")

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # the resumed turn 2 is asked again with the requirement told once, not twice
    assert told_in(server.requests[2].body) == 1
    events = cli.events(run_id)
    reminders = [
        e["record"]
        for e in events
        if e["kind"] == "reminder_injected" and e["record"]["reason"] == "requirement"
    ]
    assert [(r["step_id"], r["turn"], r["alert"]) for r in reminders] == [
        ("understand", 2, "requirement:1")
    ]
    # what the round recorded before the kill was replayed, not asked again
    called = [(e["step"], e["turn"]) for e in events if e["kind"] == "model_called"]
    assert called[:2] == [("understand", 1), ("understand", 2)]
    assert called.count(("understand", 1)) == 1
    # the planner, whose conversation began after it, has it in its opening instead
    assert all(told_in(r.body) == 0 for r in server.requests[3:])
    assert any(REQUIREMENT in json.dumps(r.body) for r in server.requests[3:4])
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"


def a_step_that_started_is_refused(cli: Cli, run_id: str) -> None:
    """The command refuses a step that is running or done; a change queued before its
    step started is judged again by the engine (either one) and refused, saying so."""
    store = SqliteStore(cli.store)
    try:
        state = load_state(store, run_id)
    finally:
        store.close()
    assert change_refusal(state, "fix-slugify", "objective", "again") is None
    started = StepStarted(at=state.updated_at, step="fix-slugify", attempt=1, key="k")
    state.apply(started)  # in memory only: the run's store is left as it is

    why = (
        "step 'fix-slugify' is running, not waiting to start: only a step that has not "
        "started can be changed or dropped"
    )
    assert change_refusal(state, "fix-slugify", "objective", "again") == why
    judged = step_changed(state, "fix-slugify", "drop", "", by="ann", request_id=7, now=1.0)
    assert isinstance(judged, RequestRefused)
    assert (judged.request, judged.step, judged.request_id, judged.reason) == (
        "drop",
        "fix-slugify",
        7,
        why,
    )
