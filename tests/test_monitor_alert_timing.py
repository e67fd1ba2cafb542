"""When an alert takes effect: an alert raised on a turn is recorded, and acted on,
before the next model call (docs/monitors.md), wherever the engine judges the turn.

Real engine, real SQLite store and workspace; the model is a function that looks, at
each call, at what a second connection to the store holds and at what it was sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agent_helpers import (
    FIX_STEP,
    GOAL,
    agent_settings,
    call,
    drive,
    findings_json,
    of_kind,
    plan_json,
    recorded,
    sample_workspace,
    state_of,
)
from trestle.core.conversation import Message, ToolSchema
from trestle.core.events import AlertRaised
from trestle.core.records.agent import bootstrap_plan
from trestle.core.records.monitors import Alert, MonitorAction, MonitorSettings
from trestle.lifecycle.runs import create_run
from trestle.models import FunctionModel, ModelResponse
from trestle.monitors.alerts import Monitor
from trestle.monitors.trace import Observation, RunFacts, Turn
from trestle.store import SqliteStore

SAID = "calc.py was read in step fix"


class MarkMonitor:
    """Warns once, on the first turn of step ``fix`` that reads calc.py."""

    name = "mark"

    def __init__(self) -> None:
        self.raised = False

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        if self.raised or not isinstance(item, Turn) or item.step != "fix":
            return []
        if not any(a.tool == "read_file" and a.target == "calc.py" for a in item.actions):
            return []
        self.raised = True
        return [
            Alert(
                monitor=self.name,
                kind="marked",
                severity="warning",
                message=SAID,
                evidence=(item.seq,),
                suggestion="Edit it now.",
                step=item.step,
                round=item.round,
                turn=item.index,
            )
        ]


class Watcher:
    """The model: the scripted replies, and at each call whether the store held the
    alert and whether the request carried it."""

    def __init__(self, path: Path, run_id: str, replies: list[ModelResponse | str]) -> None:
        self.reader = SqliteStore(path)  # a connection of its own: only what is committed
        self.run_id = run_id
        self.replies = replies
        self.seen: list[tuple[bool, bool]] = []  # (stored, told) at each call

    def answer(
        self, messages: Sequence[Message], tools: Sequence[ToolSchema]
    ) -> ModelResponse | str:
        stored = of_kind(recorded(self.reader, self.run_id), AlertRaised)
        told = any(SAID in str(m.content) for m in messages)
        self.seen.append((any(a.alert.kind == "marked" for a in stored), told))
        return self.replies[len(self.seen) - 1]


def run(tmp_path: Path, action: MonitorAction) -> tuple[SqliteStore, str, Watcher]:
    path = tmp_path / "store.db"
    store = SqliteStore(path)
    run_id = create_run(
        store,
        bootstrap_plan(GOAL),
        workspace=sample_workspace(tmp_path),
        agent=agent_settings(),
        monitors=MonitorSettings(kinds={"marked": action}),
    )
    watcher = Watcher(
        path,
        run_id,
        [
            call("read_file", path="calc.py"),
            findings_json(),
            plan_json(FIX_STEP, summary="fix add"),
            call("read_file", path="calc.py", call_id="r1"),  # turn N: the alert
            call("edit_file", path="calc.py", old="a - b", new="a + b"),  # turn N+1
            call("finish", summary="add() adds", claims=["test_add passes"]),
        ],
    )

    def monitors(settings: MonitorSettings) -> list[Monitor]:
        return [MarkMonitor()]

    model = FunctionModel(watcher.answer)
    drive(store, run_id, model, monitors=monitors)
    return store, run_id, watcher


def test_an_alert_on_a_reading_turn_is_recorded_and_told_before_the_next_call(
    tmp_path: Path,
) -> None:
    store, run_id, watcher = run(tmp_path, "inject")
    assert state_of(store, run_id).finished == "succeeded"
    # calls 1-4 (up to turn N's) were made before the alert; call 5 (turn N+1) found
    # it committed and carried it to the model
    assert watcher.seen == [(False, False)] * 4 + [(True, True), (True, True)]
    [raised] = of_kind(recorded(store, run_id), AlertRaised)
    assert raised.action == "inject" and raised.alert.kind == "marked"


def test_a_stop_raised_on_a_reading_turn_holds_the_next_call(tmp_path: Path) -> None:
    store, run_id, watcher = run(tmp_path, "stop")
    state = state_of(store, run_id)
    assert state.finished == "stopped"
    assert len(watcher.seen) == 4  # turn N+1's call was never made
    assert (tmp_path / "ws" / "calc.py").read_text(encoding="utf-8").count("a - b") == 1
    [raised] = of_kind(recorded(store, run_id), AlertRaised)
    assert raised.action == "stop"
