"""``RunState``'s indexes (its private attributes) are read straight from where pydantic
keeps them (``trestle.core.state._Index``): they read and change as before, a copy
keeps its own, and a state not yet set up has none rather than someone else's."""

from __future__ import annotations

import pytest

from trestle.core.events import (
    ActionResult,
    RunCreated,
    StepAttemptEnded,
    StepBlocked,
    StepFailed,
    StepStarted,
)
from trestle.core.plan import Plan, Step
from trestle.core.state import RunState


def _state() -> RunState:
    plan = Plan(goal="g", steps=(Step(id="a", run="true"), Step(id="b", run="true", needs=("a",))))
    return RunState.from_created(RunCreated(at=1.0, run_id="r", plan=plan, workspace="/w"))


def test_the_indexes_read_and_follow_the_events() -> None:
    state = _state()
    assert state.frontier() == ["a"] and state.in_flight == 0
    state.apply(StepStarted(at=2.0, step="a", attempt=1, key="r/a/1"))
    assert state.frontier() == [] and state.in_flight == 1
    assert state.position("b") == 1 and state.status_counts() == {"pending": 1, "running": 1}


def test_a_copy_keeps_indexes_of_its_own() -> None:
    state = _state()
    copy = state.model_copy(deep=True)
    state.apply(StepStarted(at=2.0, step="a", attempt=1, key="r/a/1"))
    assert copy.frontier() == ["a"] and copy.in_flight == 0
    assert state.frontier() == [] and state.in_flight == 1


def test_a_state_not_set_up_has_no_indexes() -> None:
    bare = RunState.__new__(RunState)
    with pytest.raises(AttributeError):
        bare.position("a")
    assert not hasattr(bare, "_frontier")


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
