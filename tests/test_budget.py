"""Budgets that pause and ask, and stop at hard limits: through the engine and the CLI.

Runs are recorded in a fresh SQLite file and driven by :class:`LocalEngine` with real
shell steps. Limits on steps and dollars are judged from the durable events (how many
attempts ever started, how many were in flight at once); the seconds limit runs on an
injected clock that the steps themselves move forward, so no test depends on how fast
the machine is. The last tests run the real ``trestle`` command for exit codes 3 and 6.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from forked_cli import run_trestle
from trestle.core.budget import Dimension
from trestle.core.card import build_card
from trestle.core.events import (
    AnyEvent,
    ApprovalRequested,
    BudgetExhausted,
    StepAttemptEnded,
    StepStarted,
)
from trestle.core.report import build_report
from trestle.core.state import RunState
from trestle.engines.attempts import Clock
from trestle.engines.local import LocalEngine
from trestle.formats.planfile import parse_plan
from trestle.lifecycle.approvals import inbox, submit_decision
from trestle.lifecycle.runs import create_run
from trestle.store import SqliteStore

POLL = 0.02


class Harness:
    """A workspace, a SQLite file, and engines on an optional injected clock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.workspace = root / "ws"
        self.workspace.mkdir()
        self.store = SqliteStore(root / "trestle.db")
        self._engines: list[LocalEngine] = []

    def create(self, text: str, *, now: float | None = None) -> str:
        source = self.root / "plan.yaml"
        source.write_text(textwrap.dedent(text), encoding="utf-8")
        plan = parse_plan(source.read_text("utf-8"), source=str(source), base_dir=self.root)
        return create_run(self.store, plan, workspace=self.workspace, plan_path=source, now=now)

    def run(self, run_id: str, clock: Clock | None = None) -> RunState:
        if clock is None:
            engine = LocalEngine(self.store, poll_interval=POLL)
        else:
            engine = LocalEngine(self.store, poll_interval=POLL, clock=clock)
        self._engines.append(engine)
        return asyncio.run(engine.run(run_id))

    def events(self, run_id: str) -> list[AnyEvent]:
        return [e.event for e in self.store.events(run_id)]

    def lines(self, name: str) -> list[str]:
        path = self.workspace / name
        return path.read_text("utf-8").splitlines() if path.exists() else []

    def top_up(self, run_id: str, amount: float | None = None) -> None:
        """Approve the run's open budget pause, as a human would."""
        submit_decision(self.store, self._budget_ref(run_id), "approve", top_up=amount)

    def refuse(self, run_id: str, reason: str) -> None:
        submit_decision(self.store, self._budget_ref(run_id), "reject", reason=reason)

    def _budget_ref(self, run_id: str) -> str:
        [card] = [c for c in inbox(self.store, run_id=run_id) if c.subject == "budget"]
        return card.ref

    def close(self) -> None:
        for engine in self._engines:
            engine.close()
        self.store.close()


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.close()


def budget_asks(events: list[AnyEvent]) -> list[str]:
    """What each budget pause asked, in order."""
    return [
        e.breach.describe()
        for e in events
        if isinstance(e, ApprovalRequested) and e.subject == "budget" and e.breach is not None
    ]


def starts(events: list[AnyEvent]) -> list[str]:
    return [e.step for e in events if isinstance(e, StepStarted)]


def most_in_flight(events: list[AnyEvent]) -> int:
    """The most attempts that were running at once, by the event stream."""
    running = most = 0
    for e in events:
        if isinstance(e, StepStarted):
            running += 1
            most = max(most, running)
        elif isinstance(e, StepAttemptEnded):
            running -= 1
    return most


def chain(n: int, budget: str) -> str:
    """A plan of ``n`` steps in a row, each appending its id to ``done.log``."""
    steps = "".join(
        f"  - id: s{i}\n    run: echo s{i} >> done.log\n"
        + (f"    needs: [s{i - 1}]\n" if i > 1 else "")
        for i in range(1, n + 1)
    )
    return f"goal: count to {n}\n{textwrap.dedent(budget)}steps:\n{steps}"


# --- soft limits pause and ask -----------------------------------------------------------


def test_a_soft_steps_limit_pauses_and_each_top_up_lets_the_run_go_on(h: Harness) -> None:
    run_id = h.create(chain(5, "budget:\n  steps: {soft: 2}\n"))
    state = h.run(run_id)

    assert state.finished == "needs_human"
    assert h.lines("done.log") == ["s1", "s2"]
    assert budget_asks(h.events(run_id)) == [
        "would spend 3 steps of 2 steps (soft steps limit); continue with +1 step?"
    ]
    card = build_card(state, 1)
    assert (card.subject, card.step, card.action, card.blocking) == ("budget", None, None, True)
    assert card.rule == "budget.steps.soft"
    assert card.why == budget_asks(h.events(run_id))[0]
    assert (card.goal, card.done, card.remaining) == ("count to 5", ["s1", "s2"], 3)
    assert card.on_approve == "the steps limit rises by the top-up and the run goes on"
    assert card.on_reject == ("the run stops; steps not yet started are reported as not started")
    assert build_report(state).exit_code == 3

    h.top_up(run_id)  # the default top-up: half the soft level
    state = h.run(run_id)
    assert h.lines("done.log") == ["s1", "s2", "s3"]
    assert budget_asks(h.events(run_id))[1] == (
        "would spend 4 steps of 3 steps (soft steps limit); continue with +1 step?"
    )

    h.top_up(run_id, 10)
    state = h.run(run_id)
    assert state.finished == "succeeded"
    assert h.lines("done.log") == ["s1", "s2", "s3", "s4", "s5"]
    assert [a.status for a in state.approvals.values()] == ["approved", "approved"]


def independent(n: int, budget: str, run: str = "echo $TRESTLE_STEP_ID >> started.log") -> str:
    """``n`` steps that may all run at once, each estimated at one dollar."""
    steps = "".join(
        f"  - id: p{i}\n    cost: 1.0\n    timeout: 60\n    run: {json.dumps(run)}\n"
        for i in range(1, n + 1)
    )
    return f"parallelism: 8\n{textwrap.dedent(budget)}steps:\n{steps}"


def test_a_soft_cost_limit_takes_the_top_up_given_and_a_refusal_stops_the_run(
    h: Harness,
) -> None:
    run_id = h.create(independent(6, "budget:\n  cost: {soft: 3, top_up: 2}\n"))
    h.run(run_id)
    assert len(h.lines("started.log")) == 3
    assert budget_asks(h.events(run_id)) == [
        "would spend $4.00 of $3.00 (soft cost limit); continue with +$2.00?"
    ]

    h.top_up(run_id, 1.0)  # less than offered: one more dollar
    h.run(run_id)
    assert len(h.lines("started.log")) == 4
    assert budget_asks(h.events(run_id))[1] == (
        "would spend $5.00 of $4.00 (soft cost limit); continue with +$2.00?"
    )

    h.refuse(run_id, "that is enough for today")
    state = h.run(run_id)
    assert state.finished == "stopped"
    assert len(h.lines("started.log")) == 4
    report = build_report(state)
    assert (report.status, report.exit_code) == ("stopped", 6)
    assert report.counts["done"] == 4 and report.counts["never_started"] == 2
    never = [s.id for s in report.steps if s.category == "never_started"]
    assert len(never) == 2 and not set(never) & set(h.lines("started.log"))
    assert report.to_check[0] == (
        "the run was stopped by its budget: would spend $5.00 of $4.00 (soft cost limit); "
        "continue with +$2.00?: top-up refused: that is enough for today."
    )


# --- hard limits stop --------------------------------------------------------------------


def test_a_hard_limit_stops_the_run_with_a_report(h: Harness) -> None:
    run_id = h.create(chain(4, "budget:\n  cost: {hard: 2}\n").replace("run:", "cost: 1\n    run:"))
    state = h.run(run_id)

    assert state.finished == "stopped"
    assert h.lines("done.log") == ["s1", "s2"]
    [stop] = [e for e in h.events(run_id) if isinstance(e, BudgetExhausted)]
    assert (stop.dimension, stop.reason) == ("cost", "would spend $3.00 of $2.00 (hard cost limit)")
    assert budget_asks(h.events(run_id)) == []  # a hard limit does not ask
    report = build_report(state)
    assert (report.exit_code, report.counts["never_started"]) == (6, 2)
    assert h.run(run_id).finished == "stopped"  # and driving it again starts nothing
    assert h.lines("done.log") == ["s1", "s2"]


# a step that waits until three steps have started: the three run at the same time
TOGETHER = (
    "echo $TRESTLE_STEP_ID >> started.log; "
    'while [ "$(wc -l < started.log)" -lt 3 ]; do sleep 0.02; done'
)


@pytest.mark.parametrize("dimension", ["cost", "steps"])
def test_parallel_steps_never_overshoot_a_hard_limit(h: Harness, dimension: Dimension) -> None:
    run_id = h.create(independent(10, f"budget:\n  {dimension}: {{hard: 3}}\n", TOGETHER))
    state = h.run(run_id)

    events = h.events(run_id)
    assert len(starts(events)) == 3 and len(h.lines("started.log")) == 3
    assert most_in_flight(events) == 3  # reserved before dispatch, not after the fact
    assert len([e for e in events if isinstance(e, BudgetExhausted)]) == 1
    assert state.finished == "stopped"
    assert state.tally.spent.get(dimension, 0.0) == 3
    assert state.tally.reserved.get("cost", 0.0) == 0


def test_parallel_steps_pause_together_at_a_soft_limit(h: Harness) -> None:
    run_id = h.create(independent(8, "budget:\n  cost: {soft: 3, top_up: 3}\n", TOGETHER))
    h.run(run_id)
    events = h.events(run_id)
    assert (len(starts(events)), most_in_flight(events)) == (3, 3)
    assert len(budget_asks(events)) == 1  # one pause for the run, not one per step

    h.top_up(run_id)
    state = h.run(run_id)
    assert len(h.lines("started.log")) == 6
    assert state.finished == "needs_human" and len(budget_asks(h.events(run_id))) == 2
    assert state.tally.spent["cost"] == 6


# --- seconds, on an injected clock -------------------------------------------------------


class StepClock:
    """Time that moves 60 s for each line the steps add to ``ticks.log``, plus whatever
    the test adds by hand (time that passes while no process drives the run)."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.idle = 0.0

    def __call__(self) -> float:
        return 1_000_000.0 + 60.0 * len(self.h.lines("ticks.log")) + self.idle


def test_a_seconds_limit_counts_only_the_time_the_run_is_driven(h: Harness) -> None:
    clock = StepClock(h)
    plan = chain(5, "budget:\n  seconds: {soft: 150, top_up: 100}\n")
    run_id = h.create(plan.replace(">> done.log", ">> done.log; echo >> ticks.log"), now=clock())
    state = h.run(run_id, clock)

    # s1 starts at 0 s, s2 at 60 s, s3 at 120 s; s4 would start at 180 s
    assert h.lines("done.log") == ["s1", "s2", "s3"]
    assert state.finished == "needs_human"
    assert budget_asks(h.events(run_id)) == [
        "would spend 180 s of 150 s (soft seconds limit); continue with +100 s?"
    ]

    clock.idle += 10_000  # nobody drives the run for hours; that is not spending
    h.top_up(run_id)
    state = h.run(run_id, clock)
    assert state.finished == "succeeded"
    assert h.lines("done.log") == ["s1", "s2", "s3", "s4", "s5"]
    assert state.active_seconds == 300


def test_a_hard_seconds_limit_stops_the_run(h: Harness) -> None:
    clock = StepClock(h)
    plan = chain(4, "budget:\n  seconds: {hard: 100}\n")
    run_id = h.create(plan.replace(">> done.log", ">> done.log; echo >> ticks.log"), now=clock())
    state = h.run(run_id, clock)

    assert state.finished == "stopped"
    assert h.lines("done.log") == ["s1", "s2"]
    [stop] = [e for e in h.events(run_id) if isinstance(e, BudgetExhausted)]
    assert stop.reason == "would spend 120 s of 100 s (hard seconds limit)"


# --- the CLI: exit 3 while paused, exit 6 when stopped -----------------------------------


def trestle(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TRESTLE_STORE"}
    env.update(COLUMNS="200", NO_COLOR="1", TERM="dumb", TRESTLE_STORE=str(cwd / "t.db"))
    return run_trestle(args, cwd=cwd, env=env)


def test_the_cli_pauses_with_exit_3_and_stops_with_exit_6(tmp_path: Path) -> None:
    plan = chain(4, "budget:\n  cost: {soft: 1.5, top_up: 0.5}\n").replace(
        "run:", "cost: 1\n    run:"
    )
    (tmp_path / "plan.yaml").write_text(plan)

    paused = trestle(tmp_path, "run", "plan.yaml")
    assert paused.returncode == 3, paused.stderr
    run_id = paused.stdout.split()[1]
    ask = "would spend $2.00 of $1.50 (soft cost limit); continue with +$0.50?"
    assert f"PAUSED   budget ({run_id}.1): {ask}" in paused.stdout
    shown = trestle(tmp_path, "inbox")
    assert f"approval {run_id}.1" in shown.stdout and ask in shown.stdout

    approved = trestle(tmp_path, "approve", f"{run_id}.1", "--top-up", "1")
    assert approved.returncode == 0, approved.stderr
    again = trestle(tmp_path, "resume", run_id)
    assert again.returncode == 3, again.stderr
    assert (tmp_path / "done.log").read_text().split() == ["s1", "s2"]
    assert "would spend $3.00 of $2.50 (soft cost limit)" in again.stdout

    rejected = trestle(tmp_path, "reject", f"{run_id}.2", "--reason", "over budget")
    assert rejected.returncode == 0, rejected.stderr
    stopped = trestle(tmp_path, "resume", run_id, "--report-json", "report.json")
    assert stopped.returncode == 6, stopped.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["status"], report["exit_code"]) == ("stopped", 6)
    categories = {s["id"]: s["category"] for s in report["steps"]}
    assert categories == {"s1": "done", "s2": "done", "s3": "never_started", "s4": "never_started"}
    assert "top-up refused: over budget" in report["to_check"][0]


def test_the_cli_stops_at_a_hard_limit_with_exit_6(tmp_path: Path) -> None:
    plan = chain(3, "budget:\n  steps: {hard: 1}\n")
    (tmp_path / "plan.yaml").write_text(plan)
    result = trestle(tmp_path, "run", "plan.yaml")
    assert result.returncode == 6, result.stderr
    assert "STOPPED  budget: would spend 2 steps of 1 step (hard steps limit)" in result.stdout
    assert "finished stopped" in result.stdout
    assert (tmp_path / "done.log").read_text().split() == ["s1"]


def test_the_documented_budget_example_is_a_valid_plan() -> None:
    docs = Path(__file__).parent.parent / "docs" / "approvals.md"
    blocks = re.findall(r"```yaml\n(.*?)```", docs.read_text("utf-8"), flags=re.DOTALL)
    [example] = [b for b in blocks if "budget:" in b]
    plan = parse_plan(example, source="docs/approvals.md")
    assert plan.budget is not None and plan.budget.cost is not None
    assert (plan.budget.cost.soft, plan.budget.cost.hard, plan.budget.cost.step_up) == (5, 8, 2)
    assert plan.budget.steps is not None and plan.budget.steps.hard == 40
