"""What the inbox says of a card beyond the card itself: a decision already queued on
it (made here or with the CLI) that the run records only when it next runs, or one
that does not verify and that the run will refuse; and whether approving "similar"
would cover anything more than the card's own action."""

from __future__ import annotations

import json

from trestle.core.card import HandoffCard
from trestle.core.gate import command_signature
from trestle.core.policy import Policy
from trestle.store.base import Store
from trestle.trust.identity import decision_fields
from trestle.trust.signing import decision_key

VERDICTS = {"approve": "approved", "reject": "rejected", "modify": "approved as edited"}


def queued_decisions(
    store: Store, run_id: str, key: bytes | None = None, policy: Policy | None = None
) -> dict[int, str]:
    """For each approval of the run with a decision queued and not yet recorded: the
    decision in words (its verdict, by whom, and that the run records it when it next
    runs). A step's process can write to the store, so what a request says is believed
    only when its signature verifies with this user's key (``key``, by default theirs);
    another is named as one the run will refuse. A request whose payload names no
    approval is left out: the run refuses it, and the card stays open.

    By whom: the name the operator's approver groups (``policy``, the run's) give the
    key it was signed with, when its identity signature verifies and a group lists the
    key; else the ``by`` it was queued with (the typed name, or dashboard:NAME)."""
    key = key if key is not None else decision_key()
    found: dict[int, str] = {}
    for request in store.pending_requests(run_id):
        if request.kind != "decision":
            continue
        try:
            number = int(json.loads(request.payload)["fields"]["approval"])
        except (ValueError, KeyError, TypeError):
            continue
        fields = decision_fields(request.payload, key)
        if fields is None:
            found[number] = (
                f"a decision on it is queued (request {request.id}) that is not signed with "
                f"this user's key: the run refuses it when it next runs (trestle resume "
                f"{run_id}); decide after that"
            )
            continue
        said = VERDICTS.get(str(fields.get("verdict")), str(fields.get("verdict")))
        by = member(policy, fields.get("signer")) or str(fields.get("by") or "")
        who = f" by {by}" if by else ""
        found[number] = (
            f"decided: {said}{who} (request {request.id}), waiting for the run to record "
            f"it when it next runs: trestle resume {run_id}"
        )
    return found


def covers_more(card: HandoffCard) -> bool:
    """Whether "also approve similar" would approve anything beyond this action: not for
    a review after the fact, a budget or an alert, and not for a command that is not one
    plain simple command (each such command is asked on its own)."""
    if not card.similar or card.action is None:
        return False
    if card.action.command is not None:
        return command_signature(card.action.command) is not None
    return True


def member(policy: Policy | None, signer: object) -> str | None:
    """The name the operator's approver groups give the key ``signer``, or None."""
    if policy is None or not isinstance(signer, str):
        return None
    for members in policy.groups.values():
        for name, key in members.items():
            if key == signer:
                return name
    return None
