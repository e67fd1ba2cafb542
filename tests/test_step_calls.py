"""A step's tool calls as its state keeps them: rows pointing into the distinct
decisions, read back as the gates ``trestle show --json`` lists, from a snapshot of
either form."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

from typer.testing import CliRunner

from agent_helpers import drive, fix_replies, sample_workspace, start_run
from trestle.cli.app import app
from trestle.core.events import Gate
from trestle.core.policy import TierDecision
from trestle.core.report import build_report
from trestle.core.step_state import CallGate, StepState
from trestle.lifecycle.runs import Tail, load_state
from trestle.models.scripted import ScriptedModel
from trestle.store import SqliteStore
from trestle.trust.signing import decision_key, snapshot_mac

READ = TierDecision(tier="auto", source="default", reason="a read is auto by default")
EDIT = TierDecision(tier="log", source="default", reason="writes 'calc.py', so logged")


def _step(calls: int) -> StepState:
    step = StepState()
    for turn in range(1, calls + 1):
        decision = EDIT if turn % 10 == 0 else READ
        approval = 7 if turn == 5 else None
        gate = Gate(decision=decision, action_hash=f"{turn:064x}", approval=approval)
        step.record_call(1 + turn // 50, turn, f"c{turn}", "read_file", gate)
    return step


def test_calls_keep_each_gate_and_store_each_decision_once() -> None:
    step = _step(100)
    assert step.call_decisions == [READ, EDIT]
    calls = step.calls()
    assert len(calls) == 100
    assert calls[4] == CallGate(
        round=1,
        turn=5,
        call_id="c5",
        tool="read_file",
        gate=Gate(decision=READ, action_hash=f"{5:064x}", approval=7),
    )
    assert calls[9].gate.decision == EDIT and calls[99].round == 3


def test_a_snapshot_reads_back_the_same_calls_and_goes_on_indexing() -> None:
    step = _step(30)
    restored = StepState.model_validate_json(step.model_dump_json())
    assert restored == step and restored.calls() == step.calls()
    later = Gate(decision=EDIT, action_hash="f" * 64)
    restored.record_call(2, 31, "c31", "edit_file", later)
    step.record_call(2, 31, "c31", "edit_file", later)
    assert restored.call_decisions == [READ, EDIT]  # not a third, repeated decision
    assert restored == step


def test_a_snapshot_that_lists_calls_as_gates_still_reads() -> None:
    step = _step(12)
    written_before = json.loads(step.model_dump_json())
    written_before["tool_calls"] = [call.model_dump(mode="json") for call in step.calls()]
    del written_before["call_decisions"]
    read = StepState.model_validate_json(json.dumps(written_before))
    assert read.calls() == step.calls()
    assert read.call_decisions == [READ, EDIT]


def test_a_run_whose_snapshot_lists_calls_as_gates_is_healthy_and_shows_them(
    tmp_path: Path,
) -> None:
    """A store written before calls were kept as rows: its signed snapshot still
    stands in for the events (the doctor finds nothing wrong) and the report lists
    the same calls."""
    store = SqliteStore(tmp_path / "store.db")
    run_id = start_run(store, sample_workspace(tmp_path))
    drive(store, run_id, ScriptedModel(fix_replies()))
    state = load_state(store, run_id)
    store.close()
    before = build_report(state).model_dump(mode="json")
    assert [c["tool"] for s in before["steps"] for c in s["tool_calls"]] == [
        "read_file",
        "edit_file",
        "finish",
    ]
    written_before = json.loads(state.snapshot_json())
    for step in written_before["steps"].values():
        step["tool_calls"] = [
            call.model_dump(mode="json") for call in StepState.model_validate(step).calls()
        ]
        del step["call_decisions"]
    old = json.dumps(written_before)
    mac = snapshot_mac(decision_key(), run_id, state.seq, old)
    with closing(sqlite3.connect(tmp_path / "store.db")) as db, db:
        db.execute(
            "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?)",
            (run_id, state.seq, old, b"", mac),
        )
    reopened = SqliteStore(tmp_path / "store.db")
    tail = Tail()
    try:
        read = load_state(reopened, run_id, tail=tail)
    finally:
        reopened.close()
    assert tail.snapshot is not None and tail.after == state.seq  # the snapshot was used
    assert build_report(read).model_dump(mode="json") == before
    doctor = CliRunner().invoke(app, ["doctor", "--store", str(tmp_path / "store.db")])
    assert doctor.exit_code == 0, doctor.output
    assert "disagrees" not in doctor.output
