"""A step's tool calls as its state keeps them: rows pointing into the distinct
decisions, read back as the gates ``trestle show --json`` lists, from a snapshot of
either form."""

from __future__ import annotations

import json

from trestle.core.events import Gate
from trestle.core.policy import TierDecision
from trestle.core.step_state import CallGate, StepState

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
