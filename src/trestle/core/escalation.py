"""Deadlines on approvals, and who else may decide once one passes.

An approver rule with ``deadline = "4h"`` and ``escalate_to = ["ops-leads"]`` lets the
members of ``ops-leads`` decide the approvals it covers from four hours after each was
asked. Both times are the run driver's own: the ask is the ``approval_requested``
event's time, the decision the time the driver records on the event it writes
(``approval_decided``), so a fold of the same events reaches the same verdict, and a
decider cannot move the clock by claiming a time.

Pure: the caller hands in the time to judge at.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from trestle.core.durations import clock_time
from trestle.core.policy import ApproverRule
from trestle.core.step_state import ApprovalState


def opens_at(rule: ApproverRule, a: ApprovalState) -> float | None:
    """When ``rule``'s escalation opens for approval ``a``, or None without a deadline."""
    return None if rule.deadline is None else a.requested_at + rule.deadline


def groups_at(rule: ApproverRule, a: ApprovalState, at: float | None) -> tuple[str, ...]:
    """The groups whose members count for ``rule`` on approval ``a`` at time ``at``
    (None: no time known, so no escalation is open)."""
    opens = opens_at(rule, a)
    if at is None or opens is None or at < opens:
        return rule.groups
    return tuple(dict.fromkeys((*rule.groups, *rule.escalate_to)))


@dataclass(frozen=True)
class Deadline:
    """The earliest deadline of the rules covering an approval, and who may decide
    too once it passes (empty: the deadline is shown, nobody else is added)."""

    at: float
    escalate_to: tuple[str, ...]

    def describe(self, now: float) -> str:
        """``decide by 14:05 UTC; then ops-leads may decide too``, or past it
        ``overdue since 14:05 UTC; ops-leads may decide too``."""
        when = clock_time(self.at, near=now)
        also = " or ".join(self.escalate_to)
        if now >= self.at:
            return f"overdue since {when}" + (f"; {also} may decide too" if also else "")
        return f"decide by {when}" + (f"; then {also} may decide too" if also else "")


def deadline(rules: Iterable[ApproverRule], a: ApprovalState) -> Deadline | None:
    """The first deadline among ``rules`` (those covering ``a``), or None."""
    timed = [(at, rule) for rule in rules if (at := opens_at(rule, a)) is not None]
    if not timed:
        return None
    first = min(at for at, _ in timed)
    groups = (g for at, rule in timed if at == first for g in rule.escalate_to)
    return Deadline(at=first, escalate_to=tuple(dict.fromkeys(groups)))


def not_yet(rule: ApproverRule, a: ApprovalState, group: str, at: float) -> str:
    """Why a member of escalation group ``group`` may not decide at ``at``, after
    their name: ``is in group 'ops-leads', which may decide from 14:05 UTC (after the
    deadline)``."""
    opens = opens_at(rule, a)
    assert opens is not None, "only a rule with a deadline escalates"
    when = clock_time(opens, near=at)
    return f"is in group {group!r}, which may decide from {when} (after the deadline)"
