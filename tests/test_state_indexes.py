"""``RunState``'s indexes (its private attributes) are read straight from where pydantic
keeps them (``trestle.core.state._Index``): they read and change as before, a copy
keeps its own, and a state not yet set up has none rather than someone else's."""

from __future__ import annotations

import pytest

from trestle.core.events import RunCreated, StepStarted
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
