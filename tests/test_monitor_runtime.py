"""Monitors on live runs: alerts are events, and the run's policy acts on them.

Real engine, real SQLite store, real workspace and pytest; only the model is scripted.
The scripted agent reads the same file again and again with the same result, which the
behavioural monitors must notice; what happens next is the policy's choice.
"""

from __future__ import annotations

import asyncio
import json
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
from trestle.core.conversation import MAX_CALLS
from trestle.core.events import (
    AlertRaised,
    ApprovalRequested,
    ReminderInjected,
    RoundOpened,
    StepFailed,
    ToolCallEnded,
)
from trestle.core.plan import Plan, Step
from trestle.core.records.agent import bootstrap_plan
from trestle.core.records.monitors import Alert, MonitorSettings
from trestle.core.report import build_report
from trestle.engines.local import LocalEngine
from trestle.lifecycle.approvals import submit_decision
from trestle.lifecycle.runs import create_run, dead_letters
from trestle.models import ModelResponse, ScriptedModel, ToolCall
from trestle.monitors.alerts import Monitor
from trestle.monitors.catalog import default_monitors
from trestle.monitors.loops import RepeatMonitor
from trestle.monitors.trace import Observation, RunFacts
from trestle.store import SqliteStore

LOOPS = 4  # reads of the same file with the same result: a warning, not yet critical


def looping_replies(loops: int = LOOPS) -> list[ModelResponse | str]:
    """UNDERSTAND and PLAN as usual, then an execute step that keeps re-reading calc.py
    before it edits and finishes."""
    return [
        call("read_file", path="calc.py"),
        findings_json(),
        plan_json(FIX_STEP, summary="fix add"),
        *[call("read_file", path="calc.py", call_id=f"r{i}") for i in range(loops)],
        call("edit_file", path="calc.py", old="a - b", new="a + b"),
        call("finish", summary="add() adds", claims=["test_add passes"]),
    ]


def start(tmp_path: Path, monitors: MonitorSettings | None) -> tuple[SqliteStore, str]:
    store = SqliteStore(tmp_path / "store.db")
    run_id = create_run(
        store,
        bootstrap_plan(GOAL),
        workspace=sample_workspace(tmp_path),
        agent=agent_settings(),
        monitors=monitors,
    )
    return store, run_id


def alerts(store: SqliteStore, run_id: str) -> list[AlertRaised]:
    return of_kind(recorded(store, run_id), AlertRaised)


def test_a_looping_agent_is_told_what_the_monitor_saw_and_goes_on(tmp_path: Path) -> None:
    store, run_id = start(tmp_path, None)  # the defaults: a warning is injected
    model = ScriptedModel(looping_replies())
    drive(store, run_id, model)

    assert state_of(store, run_id).finished == "succeeded"
    raised = [a for a in alerts(store, run_id) if a.alert.step == "fix"]
    assert raised, "the repeated read was not noticed"
    told = [a for a in raised if a.action == "inject"]
    assert told and told[0].alert.severity == "warning"
    corrections = [
        e
        for e in of_kind(recorded(store, run_id), ReminderInjected)
        if e.record.reason == "monitor"
    ]
    assert [c.record.alert for c in corrections] == [told[0].alert.key]
    # the very next model request carries the correction
    assert any(m.content == corrections[0].record.text for r in model.requests for m in r.messages)
    # the evidence points at recorded events of the step
    events = {s.seq: s.event for s in store.events(run_id)}
    assert all(getattr(events[seq], "step", None) == "fix" for seq in told[0].alert.evidence)
    report = build_report(state_of(store, run_id))
    assert any(a.kind == told[0].alert.kind and a.action == "inject" for a in report.alerts)


def test_a_pause_waits_for_a_human_and_an_approval_lets_the_run_go_on(tmp_path: Path) -> None:
    store, run_id = start(tmp_path, MonitorSettings(actions={"warning": "pause"}))
    model = ScriptedModel(looping_replies())
    drive(store, run_id, model)

    state = state_of(store, run_id)
    assert state.finished == "needs_human"
    asked = of_kind(recorded(store, run_id), ApprovalRequested)
    pause = [a for a in asked if a.subject == "alert"]
    assert len(pause) == 1 and pause[0].alert is not None
    assert any(pause[0].approval == n for n in state.approvals)
    report = build_report(state)
    assert any("a monitor paused the run" in line for line in report.to_check)

    submit_decision(store, f"{run_id}.{pause[0].approval}", "approve", by="tester")
    drive(store, run_id, model)
    assert state_of(store, run_id).finished == "succeeded"
    keys = [a.alert.key for a in alerts(store, run_id)]
    assert len(keys) == len(set(keys)), "a resumed run raised a recorded alert again"


def test_rejecting_a_pause_stops_the_run_with_its_report(tmp_path: Path) -> None:
    store, run_id = start(tmp_path, MonitorSettings(actions={"warning": "pause"}))
    model = ScriptedModel(looping_replies())
    drive(store, run_id, model)
    number = next(
        a.approval for a in of_kind(recorded(store, run_id), ApprovalRequested) if a.alert
    )
    submit_decision(store, f"{run_id}.{number}", "reject", by="tester", reason="it loops")
    drive(store, run_id, model)
    state = state_of(store, run_id)
    assert state.finished == "stopped"
    assert state.stopped is not None and "it loops" in state.stopped
    assert build_report(state).exit_code == 6


def test_a_stop_action_ends_the_run_at_once(tmp_path: Path) -> None:
    store, run_id = start(tmp_path, MonitorSettings(actions={"warning": "stop"}))
    drive(store, run_id, ScriptedModel(looping_replies()))
    state = state_of(store, run_id)
    assert state.finished == "stopped"
    assert state.stopped is not None and state.stopped.startswith("stopped by the")
    assert (tmp_path / "ws" / "calc.py").read_text(encoding="utf-8").count("a - b") == 1
    to_check = build_report(state).to_check
    assert to_check[0].startswith("the run was stopped by the")


def test_a_replan_action_restarts_the_step_told_why(tmp_path: Path) -> None:
    store, run_id = start(tmp_path, MonitorSettings(actions={"warning": "replan"}))
    replies = looping_replies()
    # the second round goes straight to the fix
    replies += [
        call("edit_file", path="calc.py", old="a - b", new="a + b"),
        call("finish", summary="add() adds", claims=["test_add passes"]),
    ]
    model = ScriptedModel(replies[: 3 + LOOPS] + replies[-2:])
    drive(store, run_id, model)
    state = state_of(store, run_id)
    assert state.finished == "succeeded"
    fix = state.steps["fix"]
    assert fix.failed_attempts == 1 and fix.round == 2
    second = [e for e in of_kind(recorded(store, run_id), RoundOpened) if e.step == "fix"][-1]
    assert second.round == 2 and second.failure is not None and "monitor" in second.failure


class EchoMonitor:
    """Sees what the repeat monitor sees, as a note of its own kind, on the same event."""

    name = "echo"

    def __init__(self) -> None:
        self.inner = RepeatMonitor()

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        return [
            a.model_copy(update={"monitor": "echo", "kind": "echo_repeat", "severity": "info"})
            for a in self.inner.observe(item, facts)
        ]


def test_an_action_set_for_a_kind_survives_its_alert_being_merged(tmp_path: Path) -> None:
    # the echo's note merges into the repeat's warning (inject by default), but its
    # kind is set to replan: the merged alert takes the stronger action, and replans
    store, run_id = start(tmp_path, MonitorSettings(kinds={"echo_repeat": "replan"}))
    replies = looping_replies()
    replies += [
        call("edit_file", path="calc.py", old="a - b", new="a + b"),
        call("finish", summary="add() adds", claims=["test_add passes"]),
    ]
    model = ScriptedModel(replies[: 3 + LOOPS] + replies[-2:])

    def monitors(settings: MonitorSettings) -> list[Monitor]:
        return [*default_monitors(settings), EchoMonitor()]

    drive(store, run_id, model, monitors=monitors)
    [raised] = [a for a in alerts(store, run_id) if a.alert.kind == "repeated_action"]
    assert raised.action == "replan"
    assert [(m.monitor, m.kind, m.severity) for m in raised.alert.merged] == [
        ("echo", "echo_repeat", "info")
    ]
    state = state_of(store, run_id)
    assert state.finished == "succeeded"
    assert state.steps["fix"].failed_attempts == 1 and state.steps["fix"].round == 2


def test_a_silent_step_is_cancelled_and_dead_lettered(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db")
    (tmp_path / "ws").mkdir()
    plan = Plan(
        goal="a step that hangs",
        steps=(
            Step(id="hang", run="sleep 60", retries=3),
            Step(id="after", run="true", needs=("hang",)),
        ),
    )
    run_id = create_run(
        store, plan, workspace=tmp_path / "ws", monitors=MonitorSettings(stall_after=0.5)
    )
    engine = LocalEngine(store, poll_interval=0.05)
    try:
        asyncio.run(engine.run(run_id))
    finally:
        engine.close()
    state = state_of(store, run_id)
    assert state.steps["hang"].status == "failed" and state.steps["hang"].dead_lettered
    assert state.steps["hang"].failed_attempts == 1, "a stalled step must not be retried"
    failed = of_kind(recorded(store, run_id), StepFailed)
    assert "stalled" in failed[0].reason
    stalled = [a for a in alerts(store, run_id) if a.alert.kind == "stalled"]
    assert len(stalled) == 1 and stalled[0].alert.step == "hang"
    assert [(e.run_id, e.step) for e in dead_letters(store)] == [(run_id, "hang")]


def test_monitors_can_be_switched_off(tmp_path: Path) -> None:
    store, run_id = start(tmp_path, MonitorSettings(enabled=False))
    drive(store, run_id, ScriptedModel(looping_replies()))
    assert state_of(store, run_id).finished == "succeeded"
    assert alerts(store, run_id) == []


def test_a_streak_of_malformed_tool_calls_is_noticed_live(tmp_path: Path) -> None:
    store, run_id = start(tmp_path, None)
    bad = [
        ModelResponse(
            tool_calls=(ToolCall(id=f"b{i}", name="edit_file", arguments="{'path': calc.py"),),
            finish_reason="tool_calls",
        )
        for i in range(3)
    ]
    replies = looping_replies(0)
    model = ScriptedModel([*replies[:3], *bad, *replies[3:]])
    drive(store, run_id, model)
    assert state_of(store, run_id).finished == "succeeded"
    kinds = [(a.alert.kind, a.alert.severity) for a in alerts(store, run_id)]
    # three malformed turns are a note each way (a format streak warns at five), but
    # three identical unusable calls with nothing changed between are a repeat
    assert ("unparseable", "info") in kinds and ("repeated_action", "warning") in kinds
    assert ("format_streak", "warning") not in kinds


def calls_at_once(name: str, count: int, **arguments: object) -> ModelResponse:
    """One answer that calls ``name`` ``count`` times."""
    return ModelResponse(
        tool_calls=tuple(
            ToolCall(id=f"m{i}", name=name, arguments=json.dumps(arguments)) for i in range(count)
        ),
        finish_reason="tool_calls",
    )


def test_calls_past_the_most_one_answer_may_make_are_answered_not_run(tmp_path: Path) -> None:
    store, run_id = start(tmp_path, MonitorSettings(enabled=False))
    replies = looping_replies(0)
    reads = calls_at_once("read_file", MAX_CALLS + 3, path="calc.py")
    model = ScriptedModel([*replies[:3], reads, *replies[3:]])
    drive(store, run_id, model)
    assert state_of(store, run_id).finished == "succeeded"
    ran = [
        e for e in recorded(store, run_id) if isinstance(e, ToolCallEnded) and e.tool == "read_file"
    ]
    assert len(ran) == 1 + MAX_CALLS  # UNDERSTAND's read, then the answer's first MAX_CALLS
    sent = model.requests[-2].messages  # the request after that answer
    told = [m.content for m in sent if m.role == "tool" and "Not run" in (m.content or "")]
    assert len(told) == 3 and f"at most {MAX_CALLS} tool calls" in told[0]
