"""An agent run's settings and the plan it starts with.

An agent run is a plan run whose plan grows as the agent works. It starts with two
steps, ``understand`` and ``plan``. When the model's plan is accepted, the ``plan``
step adds a ``review`` step (the human's look at the plan, by policy), the plan's own
steps and a ``validate`` step (the acceptance checks) that needs all of them. A failed
acceptance adds a ``plan`` step for the next round, and so on, at most ``max_replans``
times. A requirement the user adds mid-run adds a ``revise`` step the same way.

The settings are recorded in the run's first event, so a resumed run (in another
process, after a crash) works exactly as the one that started it. Secrets are not:
an API key comes from the environment each time.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trestle.agent.context import ContextBudget
from trestle.agent.defaults import DEFAULT_MAX_TOKENS, DEFAULT_STEP_TIMEOUT
from trestle.agent.phases import DEFAULT_MAX_REPLANS, Phase
from trestle.agent.planning import DEFAULT_MAX_ATTEMPTS, DEFAULT_STEP_RETRIES
from trestle.agent.reminders import ReminderPolicy
from trestle.core.budget import Budget
from trestle.core.handoff import HandoffPacket
from trestle.core.plan import AgentRole, AgentTask, Plan, Step
from trestle.core.policy import Policy
from trestle.core.record import Record

ROLE_PHASE: dict[AgentRole, Phase] = {
    "understand": Phase.UNDERSTAND,
    "plan": Phase.PLAN,
    "review": Phase.PLAN,
    "execute": Phase.EXECUTE,
    "validate": Phase.VALIDATE,
}

RESERVED_IDS = frozenset({"understand", "plan", "review", "validate"})  # round 1 uses them


class AgentSettings(Record):
    """How an agent run works; recorded with the run.

    Attributes:
        model: the model as ``PROVIDER:MODEL`` (``openai:gpt-4o-mini``), or a name a
            caller-supplied model answers to.
        base_url: an OpenAI-compatible server's API root (vLLM, Ollama, llama.cpp).
        api_key_env: the environment variable that holds the provider's key, when it
            is not the provider's own (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``). The
            name is recorded, never the key: a resume reads the variable again.
        scope: globs the agent may write; empty means the whole workspace.
        rules: rules the agent is reminded of throughout.
        test_command: the shell command that runs the project's tests: ``run_tests``
            runs it, and it is the default acceptance check.
        max_turns: model turns one step may take before its attempt fails.
        max_plan_attempts: plans the model may propose per planning step.
        max_replans: re-plans after failed acceptance checks before a human decides.
        step_retries: retries of an execute step whose checks fail.
        plan_approval: ``confirm`` asks a human to approve each plan; ``auto`` does not.
        reminders: when the goal is re-injected.
        context: the context budget compression keeps the conversation within.
        max_tokens: the most tokens one model answer may have: sent to the provider as
            its cap, and reserved (with the prompt) against the budget before each call.
        temperature: the sampling temperature, if any.
        tools: the tools (by name) the model is offered and may call; None: all of the
            performer's. ``finish`` is always offered where a step can end.
        step_timeout: the wall-clock seconds one attempt of an agent step may take
            (a step's own ``timeout`` wins); past it the attempt is cancelled and
            ends as ``timeout``, retried like a command that timed out. None: no limit.
        handoff: the packet another agent handed this run (``trestle.core.handoff``): every
            conversation's first message shows it, and its goal, acceptance criteria
            and constraints are pinned through every compression.
    """

    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    scope: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    test_command: str | None = None
    max_turns: int = Field(default=30, ge=1, le=10_000)
    max_plan_attempts: int = Field(default=DEFAULT_MAX_ATTEMPTS, ge=1, le=20)
    max_replans: int = Field(default=DEFAULT_MAX_REPLANS, ge=0, le=20)
    step_retries: int = Field(default=DEFAULT_STEP_RETRIES, ge=0, le=20)
    plan_approval: Literal["confirm", "auto"] = "confirm"
    reminders: ReminderPolicy = ReminderPolicy()
    context: ContextBudget = ContextBudget(limit=100_000)
    max_tokens: int | None = Field(default=DEFAULT_MAX_TOKENS, gt=0)
    temperature: float | None = None
    step_timeout: float | None = Field(default=DEFAULT_STEP_TIMEOUT, gt=0, allow_inf_nan=False)
    tools: tuple[str, ...] | None = None
    handoff: HandoffPacket | None = None


def bootstrap_plan(
    goal: str,
    *,
    workspace: str = ".",
    policy: Policy | None = None,
    budget: Budget | None = None,
    parallelism: int = 4,
) -> Plan:
    """The plan every agent run starts with: understand, then plan."""
    steps = (
        Step(
            id="understand",
            description="read the code and learn how to test the goal",
            agent=AgentTask(role="understand", objective=goal),
            retries=1,
            idempotent=True,
        ),
        planning_step("plan", goal, needs=("understand",), round=1),
    )
    return Plan(
        goal=goal,
        workspace=workspace,
        steps=steps,
        policy=policy,
        budget=budget,
        parallelism=parallelism,
        checkpoints="every_step",
    )


def planning_step(
    step_id: str, objective: str, *, needs: tuple[str, ...], round: int, revision: bool = False
) -> Step:
    """A step in which the model proposes a plan (or a revision of one)."""
    what = "revise the plan" if revision else "plan the work as steps with checks"
    return Step(
        id=step_id,
        description=what,
        agent=AgentTask(role="plan", objective=objective, round=round),
        needs=needs,
        retries=1,
        idempotent=True,
    )
