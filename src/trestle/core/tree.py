"""Delegation's pure half: what a delegating step's child run is, and what it reports.

A step with ``delegate:`` hands its work to a child run (:mod:`trestle.engines.delegation`
drives it). The child is made here from the parent's state alone, so a resumed parent
makes the same child:

- its id is ``PARENT.STEP.ROUND`` (:func:`trestle.core.events.child_run_id`): a crash
  re-run of the step resumes the same child; a failed attempt or a human's retry
  opens a new round, and so a new child;
- it works within the parent. Its write scope is inside the parent's (refused
  otherwise), it runs under the parent's policy and operator policy, an agent child's
  tools are among the parent's, and its budget is the delegation's (the parent holds
  that much in reserve while the child runs);
- its failures are its parent's to handle: the child's plan does not dead-letter, so
  a failed child ends ``partial`` and the delegating step's retries and escalation
  apply;
- it shares its parent's group (blackboard and mailboxes), unless its plan names one;
- an agent child starts with a handoff packet (:func:`handed`): the delegation's goal,
  acceptance criteria and constraints, and what the parent found, decided and
  produced, the rest by reference for ``fetch_artifact``;
- trees are at most :data:`MAX_DEPTH` deep.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from trestle.core.errors import ConfigError
from trestle.core.events import ActionResult, RunStatus, StoredEvent, TreeLink, child_run_id
from trestle.core.globs import glob_regex
from trestle.core.packets import sender_packet
from trestle.core.plan import Delegation, Plan
from trestle.core.policy import Policy, Scope, effective_policy
from trestle.core.records.agent import AgentSettings, bootstrap_plan
from trestle.core.report import build_report
from trestle.core.state import RunState

MAX_DEPTH = 8
WILDCARDS = re.compile(r"[*?\[]")
REPORT_LINES = 40  # of the child's report, in the delegating step's output


class DelegationError(ConfigError):
    """A delegation asks for more than its parent has (scope, tools, depth, model)."""


@dataclass(frozen=True)
class ChildSpec:
    """Everything the child run is created with."""

    run_id: str
    plan: Plan
    link: TreeLink
    operator_policy: Policy | None
    agent: AgentSettings | None


def child_spec(parent: RunState, sid: str, parent_tools: Collection[str]) -> ChildSpec:
    """The child that step ``sid`` of ``parent`` delegates to in its current round.

    ``parent_tools`` are the tool names the parent may use (an agent parent's own
    list, else every tool there is): an agent child's tools must be among them.

    Raises:
        DelegationError: the child would reach beyond its parent.
    """
    delegation = parent.step_spec(sid).delegate
    if delegation is None:
        raise DelegationError(f"step {sid!r} delegates nothing")
    st = parent.steps[sid]
    link = _link(parent, sid, st.round)
    scope = _narrowed_scope(parent, delegation, sid)
    policy = _policy(parent.plan.policy, scope)
    operator = _operator_policy(parent.operator_policy, scope)
    run_id = child_run_id(parent.run_id, sid, st.round)
    if delegation.plan is not None:
        plan = delegation.plan.model_copy(
            update={
                "goal": delegation.goal,
                "policy": policy,
                "budget": delegation.budget or delegation.plan.budget,
                "escalate": False,
                "group": delegation.plan.group or parent.plan.group,
            }
        )
        return ChildSpec(run_id, plan, link, operator, None)
    settings = _agent_settings(parent, delegation, sid, scope, parent_tools)
    plan = bootstrap_plan(delegation.goal, policy=policy, budget=delegation.budget)
    plan = plan.model_copy(update={"escalate": False, "group": parent.plan.group})
    return ChildSpec(run_id, plan, link, operator, settings)


def handed(
    spec: ChildSpec, delegation: Delegation, parent_events: Sequence[StoredEvent]
) -> ChildSpec:
    """``spec`` with the handoff packet an agent child starts with, built from its
    parent's record (``parent_events``, from its ``RunCreated`` on). The packet leaves
    out the constraints the child's rules hold already: they are pinned once."""
    if spec.agent is None:
        return spec
    packet = sender_packet(
        parent_events,
        goal=delegation.goal,
        acceptance=delegation.acceptance,
        constraints=delegation.constraints,
    )
    rules = set(spec.agent.rules)
    packet = packet.model_copy(
        update={"constraints": tuple(c for c in packet.constraints if c not in rules)}
    )
    agent = spec.agent.model_copy(update={"handoff": packet})
    return ChildSpec(spec.run_id, spec.plan, spec.link, spec.operator_policy, agent)


def _link(parent: RunState, sid: str, round: int) -> TreeLink:
    above = parent.parent
    path = (*(above.path if above is not None else ()), f"{sid}#{round}")
    depth = len(path)
    if depth > MAX_DEPTH:
        raise DelegationError(
            f"step {sid!r} would make a child {depth} levels below the root run; "
            f"delegation trees are at most {MAX_DEPTH} deep"
        )
    root = above.root if above is not None else parent.run_id
    return TreeLink(parent=parent.run_id, step=sid, round=round, root=root, path=path)


def parent_scope(parent: RunState) -> tuple[str, ...]:
    """The globs the parent may write (empty: the whole workspace)."""
    if parent.agent is not None and parent.agent.scope:
        return parent.agent.scope
    policy = effective_policy(plan=parent.plan.policy, operator=parent.operator_policy)
    return policy.scope.write_paths


def _narrowed_scope(parent: RunState, delegation: Delegation, sid: str) -> tuple[str, ...]:
    """The child's write scope: the delegation's, each glob inside the parent's."""
    outer = _writable(parent, sid)
    if not delegation.scope:
        return outer
    if outer:
        for glob in delegation.scope:
            if not any(glob_within(glob, allowed) for allowed in outer):
                raise DelegationError(
                    f"step {sid!r} gives its child the scope {glob!r}, which is not "
                    f"within the parent's {list(outer)!r}; name paths inside it"
                )
    return delegation.scope


def _writable(parent: RunState, sid: str) -> tuple[str, ...]:
    """What the parent may write unasked: an agent parent's ``--scope`` within the
    operator's ``write_paths`` where both are set (the agent's alone became the child's
    operator scope, and a child wrote unasked where its parent was asked)."""
    outer = parent_scope(parent)
    if parent.agent is None or not parent.agent.scope:
        return outer
    policy = effective_policy(plan=parent.plan.policy, operator=parent.operator_policy)
    operator = policy.scope.write_paths
    if not operator:
        return outer
    both = _overlap(outer, operator)
    if not both:
        raise DelegationError(
            f"step {sid!r} delegates, but its run may write nothing unasked: its scope "
            f"{list(outer)!r} lies outside the operator's write_paths {list(operator)!r}"
        )
    return both


def _overlap(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    """The globs of ``a`` and ``b`` that lie within one of the other's: what both allow,
    or less where two globs only partly overlap (never more)."""
    inside = [g for g in a if any(glob_within(g, o) for o in b)]
    inside += [o for o in b if any(glob_within(o, g) for g in a)]
    return tuple(dict.fromkeys(inside))


def glob_within(inner: str, outer: str) -> bool:
    """Is every path ``inner`` matches also matched by ``outer``? Answered safely: a
    ``False`` may be too strict for exotic globs, a ``True`` is never wrong."""
    if inner == outer:
        return True
    wildcard = WILDCARDS.search(inner)
    if wildcard is None:  # a plain path
        return re.fullmatch(glob_regex(outer), inner) is not None
    if outer == "**":
        return True
    if outer.endswith("/**") and not WILDCARDS.search(outer[:-3]):
        # everything inner matches begins with its literal part, under outer's folder
        return inner[: wildcard.start()].startswith(outer[:-2])
    return False


def _policy(plan_policy: Policy | None, scope: tuple[str, ...]) -> Policy | None:
    """The parent's plan policy, with the child's write scope."""
    if not scope:
        return plan_policy
    base = plan_policy or Policy()
    narrowed = base.scope.model_copy(update={"write_paths": scope})
    return base.model_copy(update={"scope": Scope.model_validate(narrowed.model_dump())})


def _operator_policy(policy: Policy | None, scope: tuple[str, ...]) -> Policy | None:
    """The operator's policy with the child's write scope, where it sets one: it wins
    over the plan's wherever it sets a field, so a child given ``notes/**`` by its
    delegation wrote ``src/`` unasked under a ``trestle.toml`` that let its parent."""
    if policy is None or not scope or "write_paths" not in policy.scope.model_fields_set:
        return policy
    fields = {f: getattr(policy.scope, f) for f in policy.scope.model_fields_set}
    narrowed = Scope.model_validate({**fields, "write_paths": scope})
    return policy.model_copy(update={"scope": narrowed})


def _agent_settings(
    parent: RunState,
    delegation: Delegation,
    sid: str,
    scope: tuple[str, ...],
    parent_tools: Collection[str],
) -> AgentSettings:
    child = delegation.agent
    assert child is not None  # Delegation's validator: a plan or an agent
    above = parent.agent
    model = child.model or (above.model if above is not None else None)
    if model is None:
        raise DelegationError(
            f"step {sid!r} delegates to an agent but names no model, and its run is "
            "not an agent run whose model the child could use: give 'agent: model:'"
        )
    allowed = above.tools if above is not None and above.tools is not None else parent_tools
    if child.tools is not None:
        extra = sorted(set(child.tools) - set(allowed))
        if extra:
            raise DelegationError(
                f"step {sid!r} gives its child the tools {extra}, which its parent does "
                f"not have; choose among {sorted(allowed)}"
            )
    rules = (*(above.rules if above is not None else ()), *child.rules, *delegation.constraints)
    same_model = above is not None and child.model in (None, above.model)
    max_tokens = child.max_tokens or (above.max_tokens if above is not None else None)
    return AgentSettings(
        model=model,
        base_url=child.base_url or (above.base_url if same_model and above else None),
        api_key_env=child.api_key_env or (above.api_key_env if same_model and above else None),
        scope=scope,
        rules=rules,
        test_command=child.test_command,
        max_turns=child.max_turns,
        plan_approval=child.plan_approval,
        **({"max_tokens": max_tokens} if max_tokens is not None else {}),
        tools=child.tools if child.tools is not None else above.tools if above else None,
    )


def child_result(child: RunState, spent_note: str = "") -> ActionResult:
    """What the delegating step's attempt ends with, from the child as it stands."""
    status: RunStatus | None = child.finished
    output = child_report_text(child)
    if spent_note:
        output += f"\n{spent_note}"
    if status == "succeeded":
        return ActionResult(status="ok", output=output)
    if status == "needs_human":
        why = f"child run {child.run_id} waits for a human: {waiting_for(child)}"
        return ActionResult(status="deferred", output=output, error=why)
    what = status or "not finished"
    return ActionResult(
        status="failed", output=output, error=f"child run {child.run_id} ended {what}"
    )


def waiting_for(child: RunState) -> str:
    """What a child waiting on a human waits for, in words."""
    pending = [
        f"approval #{number} ({a.subject}{' of ' + a.step if a.step else ''})"
        for number, a in child.approvals.items()
        if a.status == "pending" and a.blocking
    ]
    dead = [sid for sid, st in child.steps.items() if st.dead_lettered and st.status == "failed"]
    escalated = [sid for sid, st in child.steps.items() if st.status == "escalated"]
    grand = [f"child run {c}" for c in child.waiting_children().values()]
    parts = [
        *pending,
        *(f"dead letter {s!r}" for s in dead),
        *(f"escalated step {s!r}" for s in escalated),
        *grand,
    ]
    return ", ".join(parts) or "a decision"


def child_report_text(child: RunState) -> str:
    """The child's report, short: its status, each step's outcome, what to check."""
    report = build_report(child)
    lines = [f"child run {child.run_id}: {report.status} ({child.plan.goal})"]
    for step in report.steps:
        line = f"  {step.id}: {step.category}"
        if step.reason:
            line += f" ({step.reason})"
        lines.append(line)
    lines += [f"  check: {item}" for item in report.to_check]
    if len(lines) > REPORT_LINES:
        hidden = len(lines) - REPORT_LINES
        lines = [*lines[:REPORT_LINES], f"  ... {hidden} more lines: trestle show {child.run_id}"]
    return "\n".join(lines)
