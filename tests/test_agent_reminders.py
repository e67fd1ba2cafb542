"""Goal reminders: when they are due, what they say, and the record stored with them."""

from __future__ import annotations

import pytest

from trestle.agent import (
    REMINDER_HEADER,
    Phase,
    Pins,
    ReminderPolicy,
    ReminderRecord,
    StepProgress,
    check_pins,
    goal_reminder,
    plan_progress,
    plan_status,
    reminder_due,
    runtime_plan,
)
from trestle.core.records.agent import AgentPlan
from trestle.models import Message

PINS = Pins(
    goal="make parse() accept empty input",
    rules=("never push",),
    scope=("src/**",),
    plan_status="1 of 2 steps done",
)


@pytest.mark.parametrize(
    ("policy", "turn", "last", "phase_changed", "expected"),
    [
        (ReminderPolicy(every_turns=3), 1, None, False, None),
        (ReminderPolicy(every_turns=3), 3, None, False, "interval"),
        (ReminderPolicy(every_turns=3), 5, 3, False, None),
        (ReminderPolicy(every_turns=3), 6, 3, False, "interval"),
        (ReminderPolicy(every_turns=3), 4, 3, True, "phase_boundary"),
        (ReminderPolicy(every_turns=3, at_phase_boundary=False), 4, 3, True, None),
        (ReminderPolicy(every_turns=0), 500, None, False, None),
        (ReminderPolicy(every_turns=0), 2, None, True, "phase_boundary"),
    ],
)
def test_reminders_are_due_every_n_turns_and_at_phase_boundaries(
    policy: ReminderPolicy, turn: int, last: int | None, phase_changed: bool, expected: str | None
) -> None:
    got = reminder_due(policy, turn=turn, last_reminder_turn=last, phase_changed=phase_changed)
    assert got == expected


def test_plan_status_lists_every_step_and_marks_the_current_one() -> None:
    progress = [
        StepProgress(id="fix", objective="Fix the off-by-one", status="succeeded"),
        StepProgress(id="cover", objective="Cover\nempty input " + "x" * 200, status="running"),
        StepProgress(id="docs", objective="", status="pending"),
    ]
    text = plan_status(progress, current_step="cover")
    lines = text.splitlines()
    assert lines[0] == "1 of 3 steps done; current step: 'cover'"
    assert lines[1] == "- [succeeded] fix: Fix the off-by-one"
    assert lines[2].startswith("- [running] cover: Cover empty input xxx")
    assert lines[2].endswith("...  <- current") and len(lines[2]) < 140
    assert lines[3] == "- [pending] docs:"
    assert plan_status([]) == "no plan yet"


def test_plan_progress_reads_a_runtime_plan() -> None:
    agent_plan = AgentPlan.model_validate(
        {
            "steps": [
                {"id": "a", "objective": "first", "verify": [{"command": "pytest"}]},
                {"id": "b", "objective": "second", "needs": ["a"], "verify": [{"command": "x"}]},
            ]
        }
    )
    plan = runtime_plan(agent_plan, goal="g")
    progress = plan_progress(plan, {"a": "succeeded"})
    assert progress == (
        StepProgress(id="a", objective="first", status="succeeded"),
        StepProgress(id="b", objective="second", status="pending"),
    )


def test_a_reminder_restates_goal_rules_scope_step_and_status() -> None:
    step = StepProgress(id="cover", objective="Cover empty input", status="running")
    reminder = goal_reminder(
        PINS, phase=Phase.EXECUTE, turn=9, reason="interval", current_step=step
    )
    message = reminder.message
    assert message.role == "user" and message.content.startswith(REMINDER_HEADER)
    text = message.content
    for expected in (
        "Phase: EXECUTE - work on the current step only",
        "tools allowed: call, command, read, test, write",
        f"Goal: {PINS.goal}",
        "Rule: never push",
        "Scope: src/**",
        "Current step: 'cover': Cover empty input",
        "Plan status:\n1 of 2 steps done",
    ):
        assert expected in text
    # a reminder is not a pin: compression keeps the pinned message, not reminders
    assert check_pins([message], PINS) != []
    assert reminder.record == ReminderRecord(
        turn=9, phase=Phase.EXECUTE, reason="interval", step_id="cover", text=text
    )
    assert ReminderRecord.model_validate_json(reminder.record.model_dump_json()) == reminder.record


def test_reminders_in_read_only_phases_say_so() -> None:
    reminder = goal_reminder(
        Pins(goal="g"), phase=Phase.UNDERSTAND, turn=1, reason="phase_boundary"
    )
    text = reminder.message.content
    assert "Phase: UNDERSTAND - find out what the goal needs; change nothing" in text
    assert "tools allowed: read, test" in text
    assert "Scope: the whole workspace" in text and "no plan yet" in text
    assert "Current step" not in text and reminder.record.step_id is None
    assert reminder.message == Message.user(text)
