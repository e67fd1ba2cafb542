"""How an agent run's plan grows: pure functions from what happened to the steps to add.

Round 1 keeps the model's step ids; later rounds prefix them (``r2.fix``), and a
revision's steps get ``t1.``, ``t2.`` ..., so ids never collide across rounds. The
steps around them have fixed names: ``review`` / ``review-2``, ``validate`` /
``validate-2``, ``plan-2``, ``revise-1``.
"""

from __future__ import annotations

from trestle.agentplan.planning import runtime_plan
from trestle.core.budget import Budget, Dimension, Limit, hard_level
from trestle.core.events import PlanExtended, RequestRefused, RequirementAdded
from trestle.core.plan import CARVED, AgentTask, ChildAgent, CommandCheck, Step
from trestle.core.policy import TIER_ORDER, ActionFacts, Policy, Tier, TierDecision, classify
from trestle.core.records.agent import AgentPlan, AgentSettings, planning_step
from trestle.core.state import RunState
from trestle.presentation.wording import folded, one_line


def delegation_share(state: RunState, plan: AgentPlan) -> Budget | None:
    """What each step the model delegates may spend: of every hard limit the run has
    (raises included), an equal part of what is neither spent nor held, one part kept
    for the run's own work. None when the plan delegates nothing or nothing is limited."""
    delegated = sum(1 for s in plan.steps if s.delegate)
    budget = state.plan.budget
    if not delegated or budget is None:
        return None
    shares: dict[str, Limit] = {}
    for dim in CARVED:
        hard = hard_level(budget, state.tally, dim)
        if hard is None:
            continue
        used = state.tally.spent.get(dim, 0.0) + state.tally.reserved.get(dim, 0.0)
        part = max(hard - used, 0.0) / (delegated + 1)
        shares[dim] = Limit(hard=part if part > 0 else LEAST_SHARE[dim])
    return Budget.model_validate(shares) if shares else None


# a share is never zero (a limit must be above 0): a child with nothing left stops at once
LEAST_SHARE: dict[Dimension, float] = {"steps": 1.0, "tokens": 1.0, "cost": 0.01, "seconds": 1.0}


def numbered(base: str, round: int) -> str:
    """``validate`` in round 1, ``validate-2`` in round 2."""
    return base if round == 1 else f"{base}-{round}"


def review_id(round: int, revision: int | None = None) -> str:
    """The review step an accepted plan of ``round`` (or of revision ``revision``) adds
    first: once it exists, that plan was recorded."""
    return f"review-t{revision}" if revision is not None else numbered("review", round)


def current_round(state: RunState) -> int:
    """The newest plan round the run has reached."""
    return max((s.agent.round for s in state.plan.steps if s.agent is not None), default=1)


def plan_added(
    plan: AgentPlan,
    *,
    by: str,
    goal: str,
    settings: AgentSettings,
    round: int,
    revision: int | None = None,
    validate: str | None = None,
    also_needed: tuple[str, ...] = (),
    commands: list[ModelCommand] | None = None,
    share: Budget | None = None,
    at: float,
) -> PlanExtended:
    """The steps an accepted plan adds: a review, its steps, and the acceptance step.

    A revision (``revision`` = its number) adds no acceptance step of its own: the
    round's ``validate`` step, which has not started, waits for its steps too.
    ``also_needed``: steps the acceptance step waits for besides the plan's (revisions
    the user asked for while this plan was being made). ``commands``: the commands the
    model wrote that the plan will run (:func:`model_commands`), for its review.
    ``share``: the budget each step the model delegates carves from the run's
    (:func:`delegation_share`).
    """
    prefix = f"t{revision}." if revision is not None else ("" if round == 1 else f"r{round}.")
    review = review_id(round, revision)
    own = {s.id for s in plan.steps}

    def rename(step_id: str) -> str:
        return prefix + step_id if step_id in own else step_id  # else: an existing step

    steps = []
    worker = ChildAgent(max_turns=settings.max_turns, plan_approval=settings.plan_approval)
    made = runtime_plan(
        plan,
        goal=goal,
        retries=settings.step_retries,
        round=round,
        worker=worker,
        share=share,
    )
    for step in made.steps:
        needs = tuple(map(rename, step.needs)) or (review,)
        steps.append(step.model_copy(update={"id": rename(step.id), "needs": needs}))
    ids = tuple(s.id for s in steps)
    first = review_step(review, plan, needs=(by,), settings=settings, commands=commands)
    added: list[Step] = [first, *steps]
    needs_added: dict[str, tuple[str, ...]] = {}
    if revision is None:
        added.append(
            Step(
                id=numbered("validate", round),
                description="acceptance checks for the goal",
                agent=AgentTask(role="validate", objective=goal, round=round),
                needs=(review, *ids, *also_needed),
                idempotent=True,
            )
        )
    elif validate is not None:
        needs_added[validate] = ids
    return PlanExtended(at=at, by=by, steps=tuple(added), needs_added=needs_added, agent_plan=plan)


class ModelCommand:
    """A shell command the model wrote that the plan will run, and its tier."""

    def __init__(self, where: str, command: str, decision: TierDecision) -> None:
        self.where, self.command, self.decision = where, command, decision

    def line(self) -> str:
        shown = one_line(self.command)
        return f"- {self.where}: `{shown}` ({self.decision.tier}: {self.decision.reason})"


def model_commands(
    plan: AgentPlan,
    test_command: str | None,
    policies: tuple[Policy | None, Policy | None],
    *,
    run_id: str,
) -> list[ModelCommand]:
    """The plan's verify commands and the model's test command, each tiered by the
    policy as if it were a step of its own: they run in the workspace like any step."""
    found = [
        (f"{s.id} verify[{i}]", c.command)
        for s in plan.steps
        for i, c in enumerate(s.verify)
        if isinstance(c, CommandCheck)
    ]
    if test_command:
        found.append(("acceptance test command", test_command))
    plan_policy, operator = policies
    return [
        ModelCommand(
            where,
            command,
            classify(
                ActionFacts(nature="command", name=where, command=command),
                plan=plan_policy,
                operator=operator,
                run_id=run_id,
                action_key=f"model-command:{where}",
            ),
        )
        for where, command in found
    ]


def review_step(
    step_id: str,
    plan: AgentPlan,
    *,
    needs: tuple[str, ...],
    settings: AgentSettings,
    commands: list[ModelCommand] | None = None,
) -> Step:
    """The human's look at a plan before it runs (by policy: ``plan_approval``).

    The commands the model wrote are part of what is approved: they are listed in the
    review's objective (so the approval's hash covers them, and the card shows them),
    and the review takes the highest tier among them and ``plan_approval``: a plan
    whose check would push, publish or run what cannot be read waits for a human even
    when plans are otherwise approved automatically.
    """
    commands = commands or []
    # what the model wrote is each on one line of the card: its summary and objectives
    # folded, its commands with their line breaks shown as escapes. A command written as
    # "pytest -q`" + newline + "- fix verify[1]: `true" was listed as two commands, and
    # an objective or a summary wrote list items and headings the card seemed to say
    summary = folded(plan.summary)
    lines = [summary] if summary else []
    for s in plan.steps:
        after = f" (after {', '.join(s.needs)})" if s.needs else ""
        lines.append(f"- {s.id}: {folded(s.objective)}{after}")
    objective = summary or "the plan"
    if commands:
        listed = "\n".join(c.line() for c in commands)
        lines.append("commands the model wrote, run in the workspace:\n" + listed)
        runs = "\n".join(f"- {one_line(c.command)}" for c in commands)
        objective += "\ncommands it runs:\n" + runs
    tiers: list[Tier] = ["confirm" if settings.plan_approval == "confirm" else "auto"]
    tiers += [c.decision.tier for c in commands]
    return Step(
        id=step_id,
        description="approve the plan:\n" + "\n".join(lines),
        agent=AgentTask(role="review", objective=objective),
        needs=needs,
        approval=max(tiers, key=TIER_ORDER.__getitem__),
        idempotent=True,
        reasoning=plan.summary,
    )


def replan_added(state: RunState, *, by: str, round: int, failure: str, at: float) -> PlanExtended:
    """After failed acceptance checks: a planning step for the next round."""
    objective = (
        f"{state.plan.goal}\n\nThe acceptance checks failed after round {round}:\n{failure}\n"
        "Plan the work that is still needed."
    )
    step = planning_step(numbered("plan", round + 1), objective, needs=(by,), round=round + 1)
    return PlanExtended(at=at, by=by, steps=(step,))


def requirement_added(
    state: RunState, text: str, *, by: str, request_id: int, now: float
) -> list[RequirementAdded | PlanExtended | RequestRefused]:
    """A user's requirement, and where it joins the plan; or its refusal.

    Before the round's planning step starts, the planner simply reads it. Once a plan
    exists, a ``revise`` step plans the extra work, and the round's acceptance step
    waits for it. After acceptance has begun the run takes no more requirements: the
    request is refused, saying so.
    """
    round = current_round(state)
    planner = numbered("plan", round)
    validate = numbered("validate", round)
    added = RequirementAdded(at=now, text=text, by=by, request_id=request_id)
    if state.steps[planner].status == "pending":
        return [added]
    if validate in state.steps and state.steps[validate].status != "pending":
        status = state.steps[validate].status
        why = (
            f"the acceptance step {validate!r} is {status}, no longer waiting: the run "
            "takes no more requirements once acceptance has begun; start a new run for it"
        )
        refusal = RequestRefused(
            at=now, request_id=request_id, request="tell", text=text, reason=why
        )
        return [refusal]
    number = len(state.requirements) + 1
    revise = planning_step(
        f"revise-{number}",
        text,
        needs=(numbered("review", round),) if validate in state.steps else (planner,),
        round=round,
        revision=True,
    )
    needs_added = {validate: (revise.id,)} if validate in state.steps else {}
    extension = PlanExtended(at=now, by="tell", steps=(revise,), needs_added=needs_added)
    return [added, extension]
