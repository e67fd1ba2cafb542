"""What the agent's model is told, per role. Plain functions of recorded facts, so a
replayed conversation is built from the very same text."""

from __future__ import annotations

import functools
import json
from typing import Literal

from trestle.agent.phases import findings_json_schema
from trestle.agentplan.planning import agent_plan_json_schema
from trestle.core.conversation import MAX_CALLS
from trestle.core.plan import AgentTask, Step, describe_check
from trestle.core.records.agent import Findings
from trestle.core.records.monitors import Alert

SYSTEM = (
    "You are a careful coding agent working inside Trestle, a runtime that enforces "
    "phases: UNDERSTAND, PLAN, EXECUTE, VALIDATE. Work only through the tools offered; "
    "each phase offers only the tools it allows, and every call passes an approval gate. "
    "Read before you change. Keep changes small and within scope. Never claim something "
    "is done or true unless you checked it."
)

NO_TOOL_USE = (
    "You answered without calling a tool. Call a tool to make progress, or call finish "
    "when the step's objective is met."
)
EMPTY_REPLY = "Your reply was empty. Call a tool, or call finish when the step is done."
TOO_MANY_CALLS = (
    f"Not run: one reply may make at most {MAX_CALLS} tool calls, and this one was past "
    "them. Call it again if it is still needed."
)
CUT_SHORT = (
    "Your reply was cut off by the output token limit. Continue with shorter replies "
    "and smaller tool arguments."
)


def understand_task(goal: str, requirements: list[str], test_command: str | None) -> str:
    lines = [f"Goal: {goal}", *_requirements(requirements)]
    lines += [
        "",
        "Phase UNDERSTAND. Look around with the read-only tools: find the code the goal "
        "concerns, and how to test it.",
    ]
    if test_command:
        lines.append(f"The project's test command is: {test_command} (run_tests runs it).")
    lines += [
        "When you understand enough to plan, answer WITHOUT a tool call, with one JSON "
        "object (no prose) that follows this JSON Schema:",
        _schema_text("findings"),
    ]
    return "\n".join(lines)


def plan_task(
    task: AgentTask,
    *,
    goal: str,
    findings: Findings | None,
    requirements: list[str],
    scope: tuple[str, ...],
    revision: bool,
    steps_so_far: list[Step],
    failure: str | None = None,
) -> str:
    lines = [f"Goal: {goal}", *_requirements(requirements)]
    if failure:
        lines += ["", f"An earlier attempt at this plan failed: {failure}"]
    if findings is not None:
        lines += ["", "Findings from UNDERSTAND:", findings.model_dump_json(exclude_defaults=True)]
    if revision:
        lines += [
            "",
            f"The user added a requirement while the plan runs: {task.objective}",
            "Plan ONLY the extra steps it needs. Your steps may need existing steps by id:",
            *(
                f"- {s.id}: {s.description.splitlines()[0] if s.description else ''}"
                for s in steps_so_far
            ),
        ]
    elif task.round > 1:
        lines += ["", task.objective]
    scope_text = ", ".join(scope) if scope else "the whole workspace"
    lines += [
        "",
        "Phase PLAN. Break the work into steps with ids, needs (a dependency graph: "
        "independent steps run in parallel), the files each changes or creates, and "
        "verify checks that pass only if the step worked.",
        f"Files you may change: {scope_text}.",
        "Answer WITHOUT a tool call, with one JSON object (no prose) that follows this "
        "JSON Schema:",
        _schema_text("plan"),
    ]
    return "\n".join(lines)


def execute_task(step: Step, task: AgentTask, failure: str | None, attempt_number: int) -> str:
    lines = [f"Current step {step.id!r}: {task.objective}"]
    if task.files:
        lines.append(f"Files it may change: {', '.join(task.files)}")
    if task.new_files:
        lines.append(f"Files it creates: {', '.join(task.new_files)}")
    if step.verify:
        lines.append("It is done when these checks pass:")
        lines += [f"- {describe_check(c)}" for c in step.verify]
    if step.reasoning:
        lines.append(f"Why: {step.reasoning}")
    if failure:
        lines += [
            "",
            f"Attempt {attempt_number - 1} failed: {failure}",
            "Try a different approach; do not repeat what failed.",
        ]
    lines += [
        "",
        "Phase EXECUTE. Do this step and only this step, then call finish with a "
        "summary and the claims its checks will confirm.",
    ]
    return "\n".join(lines)


def _requirements(requirements: list[str]) -> list[str]:
    return [f"Also required (added by the user): {r}" for r in requirements]


def told_requirement(text: str) -> str:
    """What a step's conversation under way is told when a human adds a requirement
    to the run (``trestle tell``)."""
    return (
        f"A human added a requirement to this run while you work (trestle tell): {text}\n"
        "Take it into account from here on where it concerns this step."
    )


def correction(alert: Alert) -> str:
    """What the agent is told when a monitor's alert calls for a correction."""
    return (
        f"A run monitor noticed a problem ({alert.kind.replace('_', ' ')}): {alert.message}\n"
        f"{alert.suggestion}"
    )


@functools.cache
def _schema_text(answer: Literal["findings", "plan"]) -> str:
    """The JSON Schema of the ``findings`` or ``plan`` answer, as shown: made once a
    process, since pydantic takes milliseconds to build one and every attempt shows it."""
    return json.dumps(findings_json_schema() if answer == "findings" else agent_plan_json_schema())
