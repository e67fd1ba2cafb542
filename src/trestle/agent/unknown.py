"""A tool call whose outcome is unknown and which may have destroyed something.

A server that died or hung in a call (or a driver that died while the call was out)
leaves its outcome unknown. The effect ledger's rule: probe first, re-run only what is
idempotent, otherwise ask a human. An MCP server cannot be asked what a call did, so
a call of a tool that may destroy (:attr:`~trestle.tools.base.Tool.escalates`) goes to
a human before the step goes on: the step pauses with a request to approve going on,
bound to this very call (its step, tool, arguments and idempotency key). Approved, the
model is told the outcome is unknown and a human let the step go on; rejected, the
attempt fails with the human's reason.
"""

from __future__ import annotations

from trestle.core.events import ToolAsk
from trestle.core.gate import NOT_SIMILAR
from trestle.core.policy import ActionFacts, TierDecision, action_hash
from trestle.core.state import RunState
from trestle.core.step_state import ApprovalState

SOURCE = "unknown_outcome"


class Decided:
    """What a human decided about going on after the call, if anything yet."""

    def __init__(self, approval: ApprovalState | None) -> None:
        self.approval = approval

    @property
    def approved(self) -> bool:
        return self.approval is not None and self.approval.status in ("approved", "modified")

    @property
    def rejected(self) -> bool:
        return self.approval is not None and self.approval.status == "rejected"


def unknown_hash(step: str, tool: str, arguments: str, key: str) -> str:
    """What the human's decision is bound to: this call, not another like it."""
    payload = {"step": step, "tool": tool, "arguments": arguments, "unknown_outcome": key}
    return action_hash(payload)


def decided(state: RunState, step: str, digest: str) -> Decided:
    """The latest decided approval of going on after the call ``digest`` names."""
    found = None
    for approval in state.approvals.values():
        if (
            approval.subject == "tool"
            and approval.step == step
            and approval.action_hash == digest
            and approval.status != "pending"
        ):
            found = approval
    return Decided(found)


def unknown_ask(
    tool: str, arguments: str, facts: ActionFacts | None, digest: str, why: str
) -> ToolAsk:
    """The request a human is shown: the call, and why its outcome is unknown."""
    facts = facts or ActionFacts(nature="call", name=tool)
    reason = f"{why}; it may have destroyed something and cannot be re-run or asked about"
    return ToolAsk(
        tool=tool,
        arguments=arguments,
        facts=facts,
        decision=TierDecision(tier="confirm", source=SOURCE, reason=reason),
        action_hash=digest,
        similar_key=f"{NOT_SIMILAR}:{digest}",
    )
