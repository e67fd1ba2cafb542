"""Who may decide an approval: the operator's approver rules, judged against a decision.

A rule (``[[policy.approvers]]`` in ``trestle.toml``) covers the approvals that meet its
criteria (tier, tags, paths, commands, steps, tools, MCP servers) and names approver
groups (``[policy.groups]``: a name for each member's public key). A decision counts
for such an approval only if the key its request was signed with is a member of one
of the groups of every rule that covers it; ``approvals = N`` asks for N distinct such
members, none of them the run's starter. Identities are keys: a name typed with the
decision counts for nothing here, the name the operator's group gives the key does.

A raise of a stopped run's budget (:func:`judge_raise`) is covered by the rules that
cover the run's budget approvals (no criteria, or the tag ``budget``), and an approve
``--similar`` reaches a later action only where no other rule covers it
(:func:`similar_reaches`).

Only the operator's policy (recorded in ``RunCreated``) is read: a plan cannot name
approvers. Pure: the signature is checked where the keys can be read, and the verified
key handed in, so every engine reaches the same verdict.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from trestle.core.escalation import groups_at, not_yet
from trestle.core.policy import (
    ActionFacts,
    ApproverRule,
    CommandShape,
    Policy,
    command_pattern_matches,
    command_shape,
    path_glob_matches,
    workspace_path,
)
from trestle.core.state import RunState
from trestle.core.step_state import ApprovalState

Outcome = Literal["decide", "endorse", "refuse"]


@dataclass(frozen=True)
class Judgement:
    """What a decision signed with one key does to an approval: decides it, counts as
    one approver of several (``endorse``), or is refused (``reason`` says who may
    decide). ``name`` is the name the operator's groups give the key."""

    outcome: Outcome
    reason: str = ""
    name: str | None = None


def covering(state: RunState, a: ApprovalState) -> tuple[ApproverRule, ...]:
    """The operator's approver rules that cover approval ``a``."""
    policy = state.operator_policy
    if policy is None or not policy.approvers:
        return ()
    facts = _facts(state, a)
    tier = a.decision.tier if a.decision is not None else None
    return tuple(r for r in policy.approvers if _covers(r, facts, tier))


def judge(
    state: RunState,
    a: ApprovalState,
    signer: str | None,
    verdict: object,
    at: float | None = None,
) -> Judgement:
    """What a ``verdict`` signed with key ``signer`` (None: no verified key) does to
    approval ``a``, recorded by the run's driver at time ``at`` (the time on the event
    it writes; None: before any deadline). Without a rule covering it, any decision the
    decision path signed decides, as before approvers existed. A rule's escalation
    groups count only from its deadline on (:mod:`trestle.core.escalation`)."""
    rules = covering(state, a)
    if not rules:
        return Judgement("decide")
    policy = state.operator_policy
    assert policy is not None
    who = may_decide(policy, rules)
    if signer is None:
        return Judgement("refuse", f"not signed with an approver's key; {who}")
    for rule in rules:
        if _name(policy, groups_at(rule, a, at), signer) is None:
            groups = " or ".join(repr(g) for g in rule.groups)
            why = f"{_short(signer)} is not in group {groups}"
            early = next((g for g in rule.escalate_to if _name(policy, (g,), signer)), None)
            if early is not None and at is not None:  # an escalation group, too soon
                why = f"{_name(policy, (early,), signer)} {not_yet(rule, a, early, at)}"
            return Judgement("refuse", f"{why}; {who}")
    name = _name(policy, groups_at(rules[0], a, at), signer)
    need = max(rule.approvals for rule in rules)
    if verdict == "reject" or need == 1:
        return Judgement("decide", name=name)
    if verdict != "approve":
        return Judgement(
            "refuse",
            f"an approval that needs {need} approvers is approved as asked or rejected, "
            "not edited or approved with --similar",
            name,
        )
    if signer == state.started_by:
        return Judgement(
            "refuse",
            f"{name} started the run, and it needs {need} approvers other than its starter; {who}",
            name,
        )
    if signer in a.endorsed_by:
        return Judgement(
            "refuse", f"{name} already approved; it needs {need} distinct approvers; {who}", name
        )
    if len(a.endorsed_by) + 1 < need:
        return Judgement("endorse", name=name)
    return Judgement("decide", name=name)


def may_decide(policy: Policy, rules: Iterable[ApproverRule]) -> str:
    """Who may decide, in words: ``who may decide: release (alice, bob), 2 of them``."""
    parts = []
    need = 1
    for rule in rules:
        need = max(need, rule.approvals)
        for group in rule.groups:
            members = ", ".join(sorted(policy.groups.get(group, {}))) or "no members"
            part = f"{group} ({members})"
            if part not in parts:
                parts.append(part)
    many = f", {need} distinct approvers other than the run's starter" if need > 1 else ""
    return f"who may decide: {' or '.join(parts)}{many}"


def member_name(policy: Policy | None, key: str | None) -> str | None:
    """The name any of the operator's groups gives ``key``, or None."""
    if policy is None or key is None:
        return None
    return _name(policy, policy.groups, key)


def shown_decider(name: str | None, signer: str | None, by: str) -> str:
    """Who made a decision, as the record names them: the groups' ``name`` for the key
    it was signed with, else what the decision path said (``by``). A decision through
    ``trestle mcp serve`` (``by`` is ``mcp:CLIENT:USER@HOST``) names its client too:
    ``alice (mcp:cursor)``, or the key's short form where no group names it."""
    if not by.startswith("mcp:"):
        return name or by
    client = by.removeprefix("mcp:").rpartition(":")[0] or by.removeprefix("mcp:")
    if name is not None:
        return f"{name} (mcp:{client})"
    if signer is not None:
        return f"{short_key(signer)} ({by})"
    return by


def raise_rules(state: RunState) -> tuple[ApproverRule, ...]:
    """The rules that cover a raise of the run's budget after a hard stop: those that
    would cover its budget approvals (a top-up at a soft limit), which have no step,
    command or path: rules without criteria, and rules naming the tag ``budget``."""
    policy = state.operator_policy
    if policy is None:
        return ()
    facts = _Facts(None, None, ("budget",), None, ())
    return tuple(r for r in policy.approvers if _covers(r, facts, None))


def judge_raise(state: RunState, signer: str | None) -> Judgement:
    """What a raise of the budget signed with key ``signer`` does: it is one person's
    act, so it needs a member of a group of every rule that covers it
    (:func:`raise_rules`), one who did not start the run where a rule asks for
    several approvers."""
    rules = raise_rules(state)
    if not rules:
        return Judgement("decide")
    policy = state.operator_policy
    assert policy is not None
    # one member raises; where a rule asks for several, the starter may not be that one
    who = may_decide(policy, [r.model_copy(update={"approvals": 1}) for r in rules])
    if any(r.approvals > 1 for r in rules):
        who += ", other than the run's starter"
    if signer is None:
        return Judgement("refuse", f"not signed with an approver's key; {who}")
    for rule in rules:
        if _name(policy, rule.groups, signer) is None:
            groups = " or ".join(repr(g) for g in rule.groups)
            return Judgement("refuse", f"{_short(signer)} is not in group {groups}; {who}")
    name = _name(policy, rules[0].groups, signer)
    if signer == state.started_by and any(r.approvals > 1 for r in rules):
        return Judgement("refuse", f"{name} started the run; {who}", name)
    return Judgement("decide", name=name)


def similar_reaches(
    state: RunState, granted: int, name: str, tool: str | None, facts: ActionFacts, tier: str | None
) -> bool:
    """Whether the ``--similar`` of approval ``granted`` may approve a later action
    (step or tool ``name``, its ``facts``): only when every approver rule that covers
    the later action covered the granted approval too, so that its decider counted
    for each of them. ``--similar`` is refused where a rule asks for several."""
    a = state.approvals.get(granted)
    if a is None:
        return False
    later = _Facts(name, tool, facts.tags, facts.command, facts.paths)
    policy = state.operator_policy
    rules = policy.approvers if policy is not None else ()
    granted_rules = covering(state, a)
    return all(r in granted_rules for r in rules if _covers(r, later, tier))


def short_key(key: str) -> str:
    """A public key as a record shows it: its first 24 characters."""
    return f"{key[:24]}…" if len(key) > 24 else key


def _name(policy: Policy, groups: Iterable[str], key: str) -> str | None:
    """The name one of ``groups`` gives ``key``, or None when none lists it."""
    for group in groups:
        for name, member in policy.groups.get(group, {}).items():
            if member == key:
                return name
    return None


def _short(key: str) -> str:
    return f"key {short_key(key)}"


@dataclass(frozen=True)
class _Facts:
    name: str | None
    tool: str | None
    tags: tuple[str, ...]
    command: str | None
    paths: tuple[str, ...]


def _facts(state: RunState, a: ApprovalState) -> _Facts:
    """What the rules match an approval on: its step's or its tool call's facts."""
    if a.ask is not None:
        f: ActionFacts = a.ask.facts
        return _Facts(a.step, a.ask.tool, f.tags, f.command, f.paths)
    if a.step is None or a.step not in state.steps:
        # a budget approval is matched as the tag `budget` (see raise_rules)
        return _Facts(a.step, None, ("budget",) if a.subject == "budget" else (), None, ())
    step = state.step_spec(a.step)
    command = str(step.run) if step.run is not None else None
    paths: tuple[str, ...] = ()
    if step.write is not None:
        paths = (str(step.write.path),)
    elif command is not None:
        paths = command_shape(command).writes
    return _Facts(a.step, None, step.tags, command, paths)


def _covers(rule: ApproverRule, facts: _Facts, tier: str | None) -> bool:
    """Whether every criterion the rule gives matches (within one, any value)."""
    checks = (
        not rule.tiers or tier in rule.tiers,
        not rule.tags or any(t in facts.tags for t in rule.tags),
        not rule.steps or _glob_any(rule.steps, facts.name),
        not rule.tools or _glob_any(rule.tools, facts.tool),
        not rule.mcp_servers or any(f"mcp:{s}" in facts.tags for s in rule.mcp_servers),
        not rule.paths or _path_any(rule.paths, facts.paths),
        not rule.commands or _command_any(rule.commands, facts.command),
    )
    return all(checks)


def _glob_any(globs: Iterable[str], name: str | None) -> bool:
    return name is not None and any(path_glob_matches(g, name) for g in globs)


def _path_any(globs: Iterable[str], paths: Iterable[str]) -> bool:
    for path in paths:
        inside = workspace_path(path)
        if inside is not None and any(path_glob_matches(g, inside) for g in globs):
            return True
    return False


def _command_any(patterns: Iterable[str], command: str | None) -> bool:
    if command is None:
        return False
    shape: CommandShape = command_shape(command)
    texts = dict.fromkeys((shape.command, *shape.parts, *shape.nested, *shape.runs))
    return any(command_pattern_matches(p, t) for t in texts for p in patterns)
