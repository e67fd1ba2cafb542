"""An agent's plan in the progress output: the steps it added, then their waves and
critical path (needs on steps the run already had left out), not one line."""

from __future__ import annotations

from trestle.cli.render import event_line
from trestle.core.events import PlanExtended, StoredEvent
from trestle.core.plan import Step


def shown(*steps: Step) -> list[str]:
    event = PlanExtended(at=1.0, by="plan", steps=steps)
    line = event_line(StoredEvent(run_id="r1", seq=5, event=event))
    assert line is not None
    return line.splitlines()


def test_an_added_plan_is_shown_with_its_waves_and_critical_path() -> None:
    assert shown(
        Step(id="review", run="true", needs=("understand",)),  # a step the run had
        Step(id="fix", run="true", needs=("review",)),
        Step(id="docs", run="true", needs=("review",)),
        Step(id="test", run="true", needs=("fix",)),
        Step(id="validate", run="true", needs=("test", "docs")),
    ) == [
        "plan     plan added: review, fix, docs, test, validate",
        "         wave 1: review",
        "         wave 2: fix | docs",
        "         wave 3: test",
        "         wave 4: validate",
        "         critical path: review -> fix -> test -> validate (4 steps)",
    ]


def test_one_added_step_stays_one_line() -> None:
    assert shown(Step(id="revise-1", run="true")) == ["plan     plan added: revise-1"]
