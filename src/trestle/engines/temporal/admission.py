"""What a Trestle workflow admits from a running attempt: the records its own work makes,
and an outcome that is about it.

A seal (:mod:`.seals`) says a worker sent it; this says the attempt could have. An
attempt records only what its action makes as it goes (an agent's model and tool
calls, its plan; a delegation's child run), each about its own step: never a decision,
a new step from a step that does not plan, the end of an attempt, nor any event the
driver itself makes (a start, a retry, a cancel, a budget raised). Its outcome is how
this host confines commands, then the end of that very attempt (or probe). Pure: the
workflow calls it.
"""

from __future__ import annotations

from collections.abc import Sequence

from trestle.core.events import (
    AnyEvent,
    PlanExtended,
    SandboxChosen,
    StepAttemptEnded,
    StepProbed,
    StepProbeStarted,
    StepStarted,
)
from trestle.core.state import RunState

# an agent step's conversation and tools, as the agent runtime records them
AGENT_RECORDS = frozenset(
    {
        "round_opened",
        "model_called",
        "model_call_reserved",
        "model_call_held",
        "call_alone_asked",  # an approved command call, before it runs alone
        "tool_call_started",
        "tool_call_ended",
        "board_written",
        "message_sent",
        "messages_delivered",
        "reminder_injected",
        "context_compressed",
        "conversation_saved",
        "phase_entered",
        "findings_recorded",
        "plan_proposed",
    }
)
# and while its child's approved command runs alone, the hold of this run for it
DELEGATION_RECORDS = frozenset(
    {"child_run_started", "child_run_ended", "call_alone_asked", "alone_released"}
)
# the agent roles whose attempt adds steps: a plan (or a revision), and the acceptance
# checks that failed and plan another round
PLANNING_ROLES = ("plan", "validate")


def may_record(state: RunState, sid: str) -> frozenset[str]:
    """The event kinds step ``sid``'s running attempt may record."""
    step = state.step_spec(sid)
    if step.delegate is not None:
        return DELEGATION_RECORDS
    if step.agent is None:
        return frozenset()  # a command, a write, a python step: its outcome says it all
    if step.agent.role in PLANNING_ROLES:
        return AGENT_RECORDS | {"plan_extended"}
    return AGENT_RECORDS


def unrecordable(state: RunState, sid: str, events: Sequence[AnyEvent]) -> str | None:
    """Why step ``sid``'s running attempt may not record ``events``, or None."""
    if not events:
        return "no events"
    allowed = may_record(state, sid)
    for event in events:
        if event.kind not in allowed:
            return f"a {event.kind} event is not one step {sid!r}'s attempt records"
        named = event.by if isinstance(event, PlanExtended) else getattr(event, "step", None)
        if named != sid:
            return f"its {event.kind} event is about step {named!r}, not {sid!r}"
    return None


def misreported(
    announced: StepStarted | StepProbeStarted, events: Sequence[AnyEvent]
) -> str | None:
    """Why ``events`` are not the outcome of the ``announced`` attempt or probe, or None."""
    if not events:
        return "it holds no events"
    *before, last = events
    if any(not isinstance(e, SandboxChosen) for e in before):
        return "it holds more than how commands were confined and how the attempt ended"
    if isinstance(announced, StepStarted):
        if not (
            isinstance(last, StepAttemptEnded)
            and (last.step, last.attempt) == (announced.step, announced.attempt)
        ):
            return f"it does not end attempt {announced.attempt} of step {announced.step!r}"
    elif not (isinstance(last, StepProbed) and last.step == announced.step):
        return f"it does not end the probe of step {announced.step!r}"
    return None
