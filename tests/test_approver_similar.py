"""``approve --similar`` under the operator's approver rules (pure: the state, the gate
and the driver's judgement of a signed request).

A ``--similar`` approval reaches a later action only where every rule covering that
action covered the approval it came from; an approval that needs two approvers is
never approved with ``--similar``.
"""

from __future__ import annotations

import tomllib
from typing import Any

from trestle.core.events import ApprovalDecided, ApprovalRefused, ApprovalRequested, RunCreated
from trestle.core.gate import judge as gate_judge
from trestle.core.plan import Plan
from trestle.core.policy import Policy
from trestle.core.state import RunState
from trestle.lifecycle.approvals import decided
from trestle.store.base import Request

OLGA = "ed25519:" + "ab" * 32
RITA = "ed25519:" + "cd" * 32

POLICY = f"""
[policy.groups.ops]
olga = "{OLGA}"
[policy.groups.release]
rita = "{RITA}"
[[policy.approvers]]
groups = ["release"]
commands = ["echo deployed*"]
approvals = {{approvals}}
[[policy.approvers]]
groups = ["ops"]
tags = ["prod"]
"""


def _run(approvals: int, steps: list[dict[str, Any]]) -> RunState:
    policy = Policy.model_validate(tomllib.loads(POLICY.format(approvals=approvals))["policy"])
    plan = Plan.model_validate({"goal": "g", "steps": steps})
    return RunState.from_created(
        RunCreated(at=0, run_id="r", plan=plan, workspace="/w", operator_policy=policy)
    )


def _ask(state: RunState, sid: str) -> None:
    """The gate's verdict on ``sid`` recorded as its approval 1, pending."""
    verdict = gate_judge(state, sid, 1)
    assert verdict.gate is None, "it asks"
    state.apply(
        ApprovalRequested(
            at=1,
            approval=1,
            subject="action",
            step=sid,
            action_hash=verdict.action_hash,
            decision=verdict.decision,
            similar_key=verdict.similar_key,
        )
    )


def _fields(state: RunState, signer: str) -> dict[str, Any]:
    a = state.approvals[1]
    return {
        "run_id": "r",
        "approval": 1,
        "verdict": "approve",
        "action_hash": a.action_hash,
        "files": None,
        "reason": "",
        "similar": True,
        "edited": None,
        "top_up": None,
        "by": "rita@host",
        "signer": signer,
    }


DEPLOY = {"run": "echo deployed", "irreversible": True}


def test_a_similar_approval_does_not_reach_an_action_another_rule_covers() -> None:
    steps = [
        {"id": "eu", **DEPLOY},
        {"id": "us", **DEPLOY, "needs": ["eu"]},
        {"id": "prod", **DEPLOY, "needs": ["eu"], "tags": ["prod"]},
    ]
    state = _run(1, steps)
    _ask(state, "eu")
    request = Request(id=1, run_id="r", kind="decision", step="eu", reason="", created_at=1)
    event = decided(state, request, _fields(state, RITA), 2)
    assert isinstance(event, ApprovalDecided) and event.similar and event.by == "rita"
    state.apply(event)
    assert gate_judge(state, "us", 1).gate is not None  # the same rule: rita counted
    assert gate_judge(state, "prod", 1).gate is None  # ops covers it too: it asks


def test_an_approval_that_needs_two_approvers_is_not_approved_with_similar() -> None:
    state = _run(2, [{"id": "eu", **DEPLOY}])
    _ask(state, "eu")
    request = Request(id=1, run_id="r", kind="decision", step="eu", reason="", created_at=1)
    event = decided(state, request, _fields(state, RITA), 2)
    assert isinstance(event, ApprovalRefused)
    assert "not edited or approved with --similar" in event.reason
