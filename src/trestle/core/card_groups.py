"""The inbox as a reviewer reads it: cards one ``approve --similar`` decides shown as
one group, each card's age, and the command that decides what is shown.

Pure, over the cards :func:`trestle.core.card.build_card` makes (their ``group`` says
which group each belongs to, :mod:`trestle.core.approval_groups`); the CLI, the MCP
server and the dashboard all list the inbox through :func:`grouped`.
"""

from __future__ import annotations

from dataclasses import dataclass

from trestle.core.card import Action, HandoffCard
from trestle.core.durations import describe_duration
from trestle.core.escalation import Deadline


@dataclass(frozen=True)
class CardGroup:
    """One entry of the inbox: ``head`` shown in full, ``others`` one line each."""

    head: HandoffCard
    others: tuple[HandoffCard, ...] = ()

    @property
    def cards(self) -> tuple[HandoffCard, ...]:
        return (self.head, *self.others)

    def decide(self, *, mcp: bool = False) -> str:
        """The one command that decides everything the entry shows."""
        ref = self.head.ref
        if mcp:
            if not self.others:
                return f"decide: approve(ref={ref!r})  |  reject(ref={ref!r}, reason=...)"
            return (
                f"decide all {len(self.cards)}: approve(ref={ref!r}, similar=true)  |  "
                "or each on its own by its ref"
            )
        if not self.others:
            return f"decide: trestle approve {ref}  |  trestle reject {ref} --reason ..."
        return (
            f"decide all {len(self.cards)}: trestle approve {ref} --similar --group "
            f"{self.head.group}  |  or each on its own: trestle approve|reject REF"
        )


def grouped(cards: list[HandoffCard]) -> list[CardGroup]:
    """``cards`` (oldest first) as inbox entries: a group where its first card stood,
    each card once."""
    members: dict[str, list[HandoffCard]] = {}
    order: list[str | HandoffCard] = []
    for card in cards:
        if card.group is None:
            order.append(card)
            continue
        if card.group not in members:
            members[card.group] = []
            order.append(card.group)
        members[card.group].append(card)
    out = []
    for entry in order:
        if isinstance(entry, HandoffCard):
            out.append(CardGroup(entry))
        else:
            head, *others = members[entry]
            out.append(CardGroup(head, tuple(others)))
    return out


def member_line(card: HandoffCard) -> str:
    """One other member of a group: its ref, its step, and what differs (the path,
    command or call its action names)."""
    return f"{card.ref}  step {card.step}: {_what(card.action)}"


def _what(action: Action | None) -> str:
    if action is None:
        return "no action"
    if action.path is not None:
        return f"write {action.path}"
    if action.command is not None:
        return f"run {action.command}"
    if action.call is not None:
        return f"call {action.call}"
    return action.kind


def waiting(card: HandoffCard, now: float) -> str:
    """``waiting 3h 12m``: how long the card has waited since the run asked."""
    return f"waiting {describe_duration(now - card.requested_at)}"


def due(card: HandoffCard, now: float) -> str:
    """The card's deadline in words (empty without one), ``overdue`` once past."""
    if card.deadline_at is None:
        return ""
    return Deadline(card.deadline_at, tuple(card.escalate_to)).describe(now)
