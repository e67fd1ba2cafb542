"""The critical path used, not only shown: under a parallelism cap the pure decider
gives the free slots to the ready steps with the longest remaining path first, then
to plan order. Every step here takes one tick; a run's makespan is the ticks it takes
(counted, never timed)."""

from __future__ import annotations

from trestle.core.decider import decide
from trestle.core.events import ActionResult, RunCreated, RunFinished, StepAttemptEnded, StepStarted
from trestle.core.plan import Plan, Step, critical_path, remaining_path
from trestle.core.state import RunState

START = 1_700_000_000.0


def step(sid: str, *needs: str) -> Step:
    return Step(id=sid, run="true", needs=needs)


def ticks(plan: Plan) -> list[list[str]]:
    """The steps started in each tick: every attempt started in a tick ends (ok) at
    its end, and the next tick starts what is then ready."""
    state = RunState.from_created(RunCreated(at=START, run_id="r1", plan=plan, workspace="/ws"))
    started: list[list[str]] = []
    while state.finished is None:
        now: list[str] = []
        while decided := decide(state, START):
            for event in decided:
                state.apply(event)
                if isinstance(event, StepStarted):
                    now.append(event.step)
                assert not isinstance(event, RunFinished) or event.status == "succeeded"
        if state.finished is not None:
            break
        assert now, "nothing started and the run did not finish"
        started.append(now)
        for sid in now:
            state.apply(
                StepAttemptEnded(
                    at=START,
                    step=sid,
                    attempt=1,
                    ok=True,
                    action=ActionResult(status="ok", exit_code=0),
                )
            )
    return started


# two quick steps first in the file, then a chain of three
SIDE_STEPS_FIRST = Plan(
    goal="cap",
    parallelism=2,
    steps=(step("x1"), step("x2"), step("c1"), step("c2", "c1"), step("c3", "c2")),
)


def test_the_remaining_path_counts_the_longest_chain_of_dependents() -> None:
    assert remaining_path(SIDE_STEPS_FIRST) == {"x1": 1, "x2": 1, "c1": 3, "c2": 2, "c3": 1}


def test_under_a_cap_the_critical_path_starts_first_and_the_run_ends_sooner() -> None:
    """In plan order x1 and x2 would take both slots, and the chain would then run
    alone: 4 ticks. With the chain first the run takes 3, its critical path's length."""
    assert ticks(SIDE_STEPS_FIRST) == [["c1", "x1"], ["c2", "x2"], ["c3"]]
    assert len(ticks(SIDE_STEPS_FIRST)) == len(critical_path(SIDE_STEPS_FIRST)) == 3


def test_equal_paths_keep_plan_order_and_the_order_is_the_same_every_time() -> None:
    plan = Plan(
        goal="ties",
        parallelism=1,
        steps=(step("b1"), step("a1"), step("b2", "b1"), step("a2", "a1")),
    )
    assert ticks(plan) == [["b1"], ["a1"], ["b2"], ["a2"]]
    assert all(ticks(plan) == ticks(plan) for _ in range(3))


def test_a_longer_branch_wins_over_a_wider_one() -> None:
    """'deep' heads a chain of 3; 'wide' feeds three leaves (a path of 2): the chain
    starts first even though 'wide' unlocks more steps."""
    plan = Plan(
        goal="deep or wide",
        parallelism=1,
        steps=(
            step("wide"),
            step("w1", "wide"),
            step("w2", "wide"),
            step("w3", "wide"),
            step("deep"),
            step("d1", "deep"),
            step("d2", "d1"),
        ),
    )
    assert ticks(plan)[0] == ["deep"]
    # without a cap nothing waits: every ready step starts in the first tick
    uncapped = plan.model_copy(update={"parallelism": 32})
    assert ticks(uncapped)[0] == ["deep", "wide"]
    assert len(ticks(uncapped)) == 3


def test_expected_durations_weigh_the_path_where_the_plan_gives_them() -> None:
    """By steps the chain (2) would go first; by expected duration the 60 s step
    outweighs the chain's 5 s + 5 s. A step without one counts as the mean given."""
    plan = Plan(
        goal="durations",
        parallelism=1,
        steps=(
            Step(id="c1", run="true", expected_duration=5),
            Step(id="c2", run="true", needs=("c1",), expected_duration=5),
            Step(id="slow", run="true", expected_duration=60),
            Step(id="unsaid", run="true"),
        ),
    )
    mean = (5 + 5 + 60) / 3
    assert remaining_path(plan) == {"c1": 10, "c2": 5, "slow": 60, "unsaid": mean}
    assert ticks(plan) == [["slow"], ["unsaid"], ["c1"], ["c2"]]
