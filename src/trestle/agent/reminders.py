"""Goal reminders: the goal, rules, scope and progress, restated while the agent works.

Long tool loops drift: after forty turns of test output, the goal is far up the
conversation (or summarised away). So every ``every_turns`` model turns, and at each
phase boundary, the runtime appends a reminder as a user message: the phase and what
it is for, the goal, the rules, the scope, the current step and the plan's status.

:func:`reminder_due` says when; :func:`goal_reminder` builds the message together with
a :class:`ReminderRecord` to store as an event, so a replayed run shows the model the
same reminders at the same turns. Pure: the turn number is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from trestle.agent.context import REMINDER_HEADER
from trestle.agent.phases import allowed_natures
from trestle.core.conversation import Message
from trestle.core.plan import Plan
from trestle.core.record import Record
from trestle.core.records.agent import Phase, Pins, ReminderPolicy, ReminderReason, ReminderRecord

OBJECTIVE_WIDTH = 100  # characters of a step's objective shown in the plan status


PHASE_PURPOSE: Mapping[Phase, str] = {
    Phase.UNDERSTAND: "find out what the goal needs; change nothing, then report your findings",
    Phase.PLAN: "propose the plan as one JSON object; every step verifiable and within scope",
    Phase.EXECUTE: "work on the current step only, then call finish; its checks will judge it",
    Phase.VALIDATE: "the acceptance checks judge the whole goal; change nothing",
    Phase.DONE: "the run is over",
}


def reminder_due(
    policy: ReminderPolicy,
    *,
    turn: int,
    last_reminder_turn: int | None,
    phase_changed: bool = False,
) -> ReminderReason | None:
    """Why a reminder is due before model turn ``turn``, or None if none is.

    Args:
        policy: when reminders are due.
        turn: the number (1-based) of the model turn about to happen.
        last_reminder_turn: the turn before which the last reminder went in; None if
            there was none (turns are then counted from the start).
        phase_changed: a phase began since the last model turn.
    """
    if phase_changed and policy.at_phase_boundary:
        return "phase_boundary"
    if policy.every_turns and turn - (last_reminder_turn or 0) >= policy.every_turns:
        return "interval"
    return None


# --- plan progress ---------------------------------------------------------------------


class StepProgress(Record):
    """One plan step as a reminder shows it."""

    id: str
    objective: str = ""
    status: str = "pending"  # a runtime step status: pending, running, succeeded, ...


def plan_progress(plan: Plan, statuses: Mapping[str, str]) -> tuple[StepProgress, ...]:
    """Each step of ``plan`` with its status (``pending`` when ``statuses`` lacks it)."""
    return tuple(
        StepProgress(id=s.id, objective=s.description, status=statuses.get(s.id, "pending"))
        for s in plan.steps
    )


def plan_status(progress: Sequence[StepProgress], *, current_step: str | None = None) -> str:
    """The plan's progress as the few lines that go into pins and reminders."""
    if not progress:
        return "no plan yet"
    done = sum(1 for p in progress if p.status in ("succeeded", "skipped"))
    head = f"{done} of {len(progress)} steps done"
    if current_step is not None:
        head += f"; current step: {current_step!r}"
    lines = [head]
    for p in progress:
        objective = p.objective.replace("\n", " ").strip()
        if len(objective) > OBJECTIVE_WIDTH:
            objective = objective[: OBJECTIVE_WIDTH - 3] + "..."
        marker = "  <- current" if p.id == current_step else ""
        lines.append(f"- [{p.status}] {p.id}: {objective}{marker}".rstrip())
    return "\n".join(lines)


# --- the reminder ----------------------------------------------------------------------


class Reminder(Record):
    """The message to append before the next model turn, and its record."""

    message: Message
    record: ReminderRecord


def goal_reminder(
    pins: Pins,
    *,
    phase: Phase,
    turn: int,
    reason: ReminderReason,
    current_step: StepProgress | None = None,
) -> Reminder:
    """Build the reminder for model turn ``turn``.

    Args:
        pins: goal, rules, scope and plan status (the same facts compression keeps).
        phase: the current phase; the reminder says what it is for and what it allows.
        turn: the number (1-based) of the model turn about to happen.
        reason: why now (see :func:`reminder_due`).
        current_step: the step being worked on, in EXECUTE.
    """
    natures = ", ".join(sorted(allowed_natures(phase))) or "none"
    lines = [
        REMINDER_HEADER,
        f"Phase: {phase} - {PHASE_PURPOSE[phase]} (tools allowed: {natures}).",
        f"Goal: {pins.goal}",
    ]
    lines += [f"Requirement: {text}" for text in pins.requirements]
    lines += [f"Rule: {rule}" for rule in pins.rules]
    lines += [f"Scope: {glob}" for glob in pins.scope] or ["Scope: the whole workspace"]
    if current_step is not None:
        lines.append(f"Current step: {current_step.id!r}: {current_step.objective}")
    lines += ["Plan status:", pins.plan_status or "no plan yet"]
    lines.append("Stay on this goal: do what the current phase and step need, nothing else.")
    text = "\n".join(lines)
    record = ReminderRecord(
        turn=turn,
        phase=phase,
        reason=reason,
        step_id=current_step.id if current_step is not None else None,
        text=text,
    )
    return Reminder(message=Message.user(text), record=record)
