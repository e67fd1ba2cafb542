"""A wide plan is folded and decided in time linear in its steps: a fan-out's join is
not checked against every need at each start and end of the steps it waits for, and
the steps waiting for a slot under a parallelism cap are not each looked at again at
every pass of the decider, while a failed or blocked need still blocks what needs it."""

from __future__ import annotations

import pytest

from trestle.core import decider
from trestle.core.decider import decide
from trestle.core.events import (
    ActionResult,
    AnyEvent,
    RunCreated,
    StepAttemptEnded,
    StepBlocked,
    StepFailed,
    StepStarted,
)
from trestle.core.plan import Plan, Step
from trestle.core.state import RunState


def _fan_out(width: int) -> RunState:
    """root -> ``width`` parallel steps ``w0``... -> join."""
    middle = tuple(f"w{i}" for i in range(width))
    plan = Plan(
        goal="g",
        steps=(
            Step(id="root", run="true"),
            *(Step(id=sid, run="true", needs=("root",)) for sid in middle),
            Step(id="join", run="true", needs=middle),
        ),
    )
    return RunState.from_created(RunCreated(at=1.0, run_id="r", plan=plan, workspace="/w"))


def _ended(sid: str, ok: bool = True) -> StepAttemptEnded:
    action = ActionResult(status="ok") if ok else ActionResult(status="failed", exit_code=1)
    return StepAttemptEnded(at=3.0, step=sid, attempt=1, ok=ok, action=action)


def test_a_fan_out_is_folded_without_looking_at_every_need_of_its_join(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # each start and end of a parallel step touches the join: looking at all of its
    # needs each time would be 64 x 64 lookups
    state = _fan_out(64)
    middle = [s.id for s in state.plan.steps[1:-1]]
    looked: list[str] = []
    real = RunState.blocking_root

    def counted(self: RunState, need: str) -> str | None:
        looked.append(need)
        return real(self, need)

    monkeypatch.setattr(RunState, "blocking_root", counted)
    for sid in ("root", *middle):
        state.apply(StepStarted(at=2.0, step=sid, attempt=1, key=f"r/{sid}/1"))
    state.apply(_ended("root"))
    for sid in middle:
        state.apply(_ended(sid))
    assert state.frontier() == ["join"]
    assert looked == []  # nothing failed: no need can block the join for good


def test_a_need_that_fails_for_good_still_puts_its_dependent_up_for_blocking() -> None:
    state = _fan_out(3)
    for sid in ("root", "w0", "w1", "w2"):
        state.apply(StepStarted(at=2.0, step=sid, attempt=1, key=f"r/{sid}/1"))
        if sid == "root":
            state.apply(_ended("root"))
    state.apply(_ended("w1", ok=False))
    assert state.frontier() == ["w1"]  # its retry is decided; the join waits
    state.apply(StepFailed(at=4.0, step="w1", reason="gave up", dead_lettered=False))
    rebuilt = state.model_copy(deep=True)
    rebuilt.reindex()
    assert state.frontier() == rebuilt.frontier() == ["join"]  # to be blocked by w1


def test_a_blocked_need_puts_its_dependent_up_for_blocking_too() -> None:
    # as a state read from elsewhere may hold it: a step blocked, no failure in the run
    state = _fan_out(3)
    state.apply(StepStarted(at=2.0, step="root", attempt=1, key="r/root/1"))
    state.apply(_ended("root"))
    state.apply(StepStarted(at=2.0, step="w0", attempt=1, key="r/w0/1"))
    state.apply(StepBlocked(at=3.0, step="w1", by="elsewhere", reason="needs a failed step"))
    assert state.status_counts().get("failed") is None
    assert "join" in state.frontier()


def test_steps_waiting_for_a_slot_are_not_looked_at_again_at_every_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = Plan(
        goal="g", parallelism=4, steps=tuple(Step(id=f"s{i}", run="true") for i in range(200))
    )
    state = RunState.from_created(RunCreated(at=1.0, run_id="r", plan=plan, workspace="/w"))
    looked: list[str] = []
    real = decider._when_needs_met

    def counted(p: decider._Pass, sid: str) -> list[AnyEvent]:
        looked.append(sid)
        return real(p, sid)

    monkeypatch.setattr(decider, "_when_needs_met", counted)
    started = 0
    while started < 200:
        decided = decide(state, 2.0)
        assert [e.kind for e in decided] == ["step_started"] * 4
        for event in decided:
            state.apply(event)
        assert decide(state, 2.0) == []  # full: nothing else starts, and none is looked at
        for event in decided:
            assert isinstance(event, StepStarted)
            state.apply(_ended(event.step))
        started += 4
    # each pass looks at the steps it starts and at no other
    assert len(looked) == 200


def test_a_full_pass_still_blocks_what_needs_a_failed_step() -> None:
    plan = Plan(
        goal="g",
        parallelism=1,
        steps=(
            Step(id="a", run="true"),
            Step(id="b", run="true"),
            Step(id="c", run="true", needs=("a",)),
        ),
    )
    state = RunState.from_created(RunCreated(at=1.0, run_id="r", plan=plan, workspace="/w"))
    state.apply(StepStarted(at=2.0, step="a", attempt=1, key="r/a/1"))
    state.apply(_ended("a", ok=False))
    state.apply(StepFailed(at=3.0, step="a", reason="gave up", dead_lettered=False))
    state.apply(StepStarted(at=3.0, step="b", attempt=1, key="r/b/1"))  # the one slot
    assert [(e.kind, getattr(e, "step", None)) for e in decide(state, 4.0)] == [
        ("step_blocked", "c")
    ]
