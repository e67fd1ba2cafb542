"""The start-to-close timeout Temporal is given for a step's attempt: a backstop a
minute past the step's own timeout, which the attempt enforces itself; none for an
agent step, whose attempt may wait at a command a human approved for the run."""

from __future__ import annotations

from datetime import timedelta

from trestle.core.plan import AgentTask, Step
from trestle.engines.temporal.workflow import NO_TIMEOUT, backstop


def test_a_command_steps_backstop_is_a_minute_past_its_timeout() -> None:
    assert backstop(Step(id="build", run="make", timeout=30)) == timedelta(seconds=90)
    assert backstop(Step(id="build", run="make")) == NO_TIMEOUT


def test_an_agent_steps_attempt_is_not_ended_by_temporal_while_it_waits_for_the_run() -> None:
    """Its wait to run an approved command alone moves its own deadline on (see
    ``StepSession.alone``): a backstop fixed at scheduling would end it a minute into
    such a wait, as a lost attempt, and the call would be asked again."""
    task = AgentTask(role="execute", objective="deploy")
    assert backstop(Step(id="publish", agent=task, timeout=30)) == NO_TIMEOUT
