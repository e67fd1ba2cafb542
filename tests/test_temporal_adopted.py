"""What a Temporal workflow keeps of a round whose commit found the store ahead (a
workflow task Temporal closed after its commit landed; see ``StoreAhead``): an event is
made again only while the store, loaded afresh, does not hold what it says; a start the
closed task committed is dispatched only if this drive decided it again, else taken for
lost and probed (a start in the store that no decision made must never run). The real
dev server's case (64 endings under one task) is in ``test_temporal_limits.py``."""

from __future__ import annotations

from trestle.core.events import (
    ActionResult,
    AnyEvent,
    Place,
    RunCreated,
    RunResumed,
    StepAttemptEnded,
    StepAttemptLost,
    StepProbed,
    StepProbeStarted,
    StepStarted,
    event_json,
)
from trestle.core.plan import Plan, Step
from trestle.core.state import RunState
from trestle.engines.temporal.workflow import StoreAhead
from trestle.engines.temporal.workflow import _adopted_starts as adopted_starts
from trestle.engines.temporal.workflow import _still_open as still_open


def _running() -> RunState:
    plan = Plan(goal="g", steps=(Step(id="a", run="true"),))
    state = RunState.from_created(RunCreated(at=1.0, run_id="r", plan=plan, workspace="/w"))
    state.apply(StepStarted(at=2.0, step="a", attempt=1, key="r/a/1"))
    return state


ENDED = StepAttemptEnded(at=3.0, step="a", attempt=1, ok=True, action=ActionResult(status="ok"))
LOST = StepAttemptLost(at=3.0, step="a", attempt=1, why="its worker stopped answering")


def test_an_outcome_is_made_again_while_its_attempt_still_runs_in_the_store() -> None:
    state = _running()
    assert still_open(state, ENDED, set()) and still_open(state, LOST, set())
    other = StepAttemptEnded(at=3.0, step="a", attempt=2, ok=True, action=ActionResult(status="ok"))
    assert not still_open(state, other, set())  # not the attempt the store holds running
    assert not still_open(state, LOST.model_copy(update={"step": "gone"}), set())


def test_an_outcome_the_closed_task_recorded_is_not_made_again() -> None:
    state = _running()
    state.apply(LOST.model_copy(update={"at": 2.5}))  # the closed task's, at its own time
    assert not still_open(state, LOST, set()) and not still_open(state, ENDED, set())


def test_a_probe_outcome_is_made_again_only_while_the_step_is_probed() -> None:
    state = _running()
    state.apply(LOST)
    probed = StepProbed(at=4.0, step="a", reason="unknown_outcome", passed=True)
    assert not still_open(state, probed, set())
    state.apply(StepProbeStarted(at=4.0, step="a", reason="unknown_outcome"))
    assert still_open(state, probed, set())
    state.apply(probed)
    assert not still_open(state, probed, set())


def test_a_drive_start_event_is_made_again_unless_its_kind_was_recorded() -> None:
    resumed = RunResumed(at=5.0, owner="temporal workflow r")
    assert still_open(_running(), resumed, set())
    assert not still_open(_running(), resumed, {"run_resumed"})


def _b_started_by_a_closed_task() -> tuple[RunState, StoreAhead, StepStarted]:
    plan = Plan(goal="g", steps=(Step(id="a", run="true"), Step(id="b", run="x", needs=("a",))))
    state = RunState.from_created(RunCreated(at=1.0, run_id="r", plan=plan, workspace="/w"))
    state.apply(StepStarted(at=2.0, step="a", attempt=1, key="r/a/1"))
    ended = ENDED.model_copy(update={"at": 3.0})
    b = StepStarted(at=3.0, step="b", attempt=1, key="r/b/1")
    first = state.seq + 1
    state.apply(ended)
    state.apply(b)
    return state, StoreAhead(first, [event_json(ended), event_json(b)]), b


def test_a_start_the_closed_task_committed_runs_if_this_drive_decided_it_too() -> None:
    state, ahead, b = _b_started_by_a_closed_task()
    decided: list[AnyEvent] = [ENDED, b.model_copy(update={"at": 3.5})]  # at its own time
    assert adopted_starts(state, ahead, {}, decided, 4.0) == ([b], [])


def test_a_start_in_the_store_unlike_the_one_decided_here_is_not_dispatched() -> None:
    state, ahead, b = _b_started_by_a_closed_task()
    # the store's start says nothing of where it runs; the one decided here does
    ours = b.model_copy(update={"at": 3.5, "ran_on": Place(host="elsewhere", pid=1, view="v")})
    again, unseen = adopted_starts(state, ahead, {}, [ENDED, ours], 4.0)
    assert again == [] and [e.kind for e in unseen] == ["step_attempt_lost"]


def test_a_start_in_the_store_no_decision_here_made_is_taken_for_lost_never_run() -> None:
    state, ahead, _ = _b_started_by_a_closed_task()
    again, unseen = adopted_starts(state, ahead, {}, [ENDED], 4.0)
    assert again == []
    assert [(e.kind, e.step, e.attempt) for e in unseen if isinstance(e, StepAttemptLost)] == [
        ("step_attempt_lost", "b", 1)
    ]
    state.apply(unseen[0])
    assert state.steps["b"].status != "running"  # probed next, as after a crash
