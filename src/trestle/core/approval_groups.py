"""Groups of pending approvals that one ``approve --similar`` decides together.

Review at scale fails through fatigue: ten cards that differ only in the file each
write touches are one decision, not ten. An approval's group is every approval of the
same run, still pending, that ``--similar`` on it would also approve: a blocking
action with the same similar-key (:func:`trestle.core.gate.similar_key`: the rule that
asked, the nature, the command signature or folder), covered by the same approver
rules, none of which needs more than one approver (a two-person approval is approved
as asked, one card at a time). A group never spans runs: ``--similar`` is a grant
within one run.

The group's id is a digest of its members as they stand (number and action hash), so
a decision that names the id decides exactly the group that was shown, or is refused
when it changed. Pure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from trestle.core.approvers import covering
from trestle.core.approvers import judge as judge_approver
from trestle.core.gate import NOT_SIMILAR
from trestle.core.policy import action_hash
from trestle.core.state import RunState
from trestle.core.step_state import ApprovalState


def groupable(state: RunState, a: ApprovalState) -> bool:
    """Whether ``a`` can be decided with others: a pending step action, asked for a
    reason ``--similar`` extends to, that one approver may decide."""
    if a.status != "pending" or not a.blocking or a.subject != "action" or a.step is None:
        return False
    if a.similar_key is None or a.similar_key.rsplit("|", 1)[-1] == NOT_SIMILAR:
        return False
    return all(rule.approvals == 1 for rule in covering(state, a))


def members(state: RunState, number: int) -> tuple[int, ...]:
    """The approvals ``approve --similar`` of approval ``number`` decides now, itself
    first, the others in the order they were asked; just ``(number,)`` when alone."""
    a = state.approvals[number]
    if not groupable(state, a):
        return (number,)
    rules = covering(state, a)
    others = [
        n
        for n, other in state.approvals.items()
        if n != number
        and other.similar_key == a.similar_key
        and groupable(state, other)
        and covering(state, other) == rules
    ]
    return (number, *others)


def group_id(state: RunState, numbers: Iterable[int]) -> str:
    """The id of the group of ``numbers``: the same while its members and their actions
    stay the same (the order does not count)."""
    listed = sorted(numbers)
    text = "|".join([state.run_id, *(f"{n}:{state.approvals[n].action_hash}" for n in listed)])
    return "g" + hashlib.sha256(text.encode()).hexdigest()[:10]


def signed_members(state: RunState, number: int) -> list[dict[str, Any]]:
    """The group of approval ``number`` (but itself) as a decision signs it: each
    member's number, action hash and the files its card showed."""
    return [
        {
            "approval": n,
            "action_hash": state.approvals[n].action_hash,
            "files": state.approvals[n].files,
        }
        for n in members(state, number)[1:]
    ]


def group_problem(
    state: RunState, number: int, signed: object, signer: str | None, at: float
) -> tuple[tuple[int, ...], str | None]:
    """The approvals a signed group (``signed``, as :func:`signed_members` made it) has
    approval ``number``'s approve decide too, and why it cannot (None: it can). Each
    member must still be in the group, with the action and files the decider saw,
    and the signer (judged at the driver's time ``at``) must be one who may decide it.
    One problem refuses the whole decision: what one act decides is exactly what the
    group showed."""
    if signed is None or signed == []:
        return (), None
    if not isinstance(signed, list) or not all(isinstance(m, Mapping) for m in signed):
        return (), "its group is not a list of approvals"
    now = set(members(state, number))
    covered: list[int] = []
    for member in signed:
        n = member.get("approval")
        other = state.approvals.get(n) if isinstance(n, int) else None
        if other is None or n is None or n == number or n in covered:
            return (), f"its group names approval {n!r}, which is not a member"
        ref = f"{state.run_id}.{n}"
        if n not in now:
            return (), f"{ref} is no longer in the group ({other.status}): look again"
        step = state.step_spec(other.step) if other.step is not None else None
        if (
            member.get("action_hash") != other.action_hash
            or step is None
            or action_hash(step.action_payload()) != other.action_hash
        ):
            return (), f"the action of {ref} changed since it was shown: look again"
        if (member.get("files") or {}) != (other.files or {}):
            return (), f"not a decision on the files {ref}'s card showed"
        who = judge_approver(state, other, signer, "approve", at)
        if who.outcome != "decide":
            return (), f"{ref}: {who.reason}"
        covered.append(n)
    return tuple(covered), None
