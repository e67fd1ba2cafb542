"""A raise of a stopped run's budget under the operator's approver rules, through the
real CLI and SQLite store, each person with their own identity key.

The rules that cover a run's budget approvals (here ``tags = ["budget"]``) cover its
raises too: someone outside their groups is refused at ``trestle budget --add``, and a
``budget_raised`` event written straight into the store with the shared decision key
and an outsider's own identity is ignored when the run is folded to act.
"""

from __future__ import annotations

import hashlib
import tomllib

import pytest

from store_rows import append_raw_event
from test_approvals_cli import flat
from test_approver_groups import Person, people
from test_budget_raise import chain
from trestle.core.approvers import Judgement, judge_raise
from trestle.core.events import RunCreated
from trestle.core.plan import Plan
from trestle.core.policy import Policy
from trestle.core.state import RunState
from trestle.store import SqliteStore
from trestle.trust.identity import with_identity
from trestle.trust.signing import decision_key, signed_payload

__all__ = ["people"]  # the fixture, shared
pytestmark = pytest.mark.usefixtures("unconfined")


def _stopped(sam: Person, policy: str) -> str:
    """A run of three steps its hard limit of one stops (exit 6), under ``policy``."""
    toml = sam.write("trestle.toml", policy)
    sam.write("plan.yaml", chain(3, "budget:\n  steps: {hard: 1}\n"))
    digest = hashlib.sha256(toml.read_bytes()).hexdigest()
    result = sam("run", "plan.yaml", "--accept-policy", digest)
    assert result.returncode == 6, result.stdout + result.stderr
    return result.stdout.splitlines()[0].split()[1]


def _stop_seq(sam: Person, run_id: str) -> int:
    store = SqliteStore(sam.store)
    try:
        return max(e.seq for e in store.events(run_id) if e.event.kind == "budget_exhausted")
    finally:
        store.close()


def test_only_a_member_raises_a_budget_the_rules_cover(people: dict[str, Person]) -> None:
    sam, alice, mallory = people["sam"], people["alice"], people["mallory"]
    run_id = _stopped(
        sam,
        f'[policy.groups.finance]\nalice = "{alice.key()}"\n\n'
        '[[policy.approvers]]\ngroups = ["finance"]\ntags = ["budget"]\n',
    )
    refused = mallory("budget", run_id, "--add", "steps=2")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    said = flat(refused.stderr)
    assert "you may not raise its budget" in said and "who may decide: finance (alice)" in said
    assert not [e for e in sam.json("log", run_id) if e["kind"] == "budget_raised"]

    # the event itself, signed with the shared decision key and mallory's own key
    mallory.key()
    fields = {
        "run_id": run_id,
        "kind": "budget",
        "add": {"steps": 2.0},
        "reason": "",
        "by": "alice",
        "stop_seq": _stop_seq(sam, run_id),
    }
    fields, identity = with_identity(fields, mallory.identity_file())
    signed = signed_payload(
        fields, decision_key(sam.dir.parent / "approval.key"), identity=identity
    )
    row = {"add": {"steps": 2.0}, "by": "alice", "stop_seq": fields["stop_seq"], "signed": signed}
    seq = append_raw_event(sam.store, run_id, "budget_raised", row)
    sam("resume", run_id)
    assert sam.lines("done.log") == ["s1"]
    [ignored] = [r for r in sam.json("show", run_id)["refused"] if r.get("forged_seq") == seq]
    assert "may not raise this run's budget" in ignored["reason"]
    assert "who may decide: finance (alice)" in ignored["reason"]

    raised = alice("budget", run_id, "--add", "steps=2")
    assert raised.returncode == 0, raised.stdout + raised.stderr
    resumed = sam("resume", run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert sam.lines("done.log") == ["s1", "s2", "s3"]
    [event] = [e for e in sam.json("log", run_id) if e["kind"] == "budget_raised"][-1:]
    assert event["by"] == "alice"


def test_a_rule_with_criteria_of_actions_does_not_cover_a_raise(
    people: dict[str, Person],
) -> None:
    sam, alice, mallory = people["sam"], people["alice"], people["mallory"]
    run_id = _stopped(
        sam,
        f'[policy.groups.release]\nalice = "{alice.key()}"\n\n'
        '[[policy.approvers]]\ngroups = ["release"]\ncommands = ["echo s*"]\n',
    )
    raised = mallory("budget", run_id, "--add", "steps=2")
    assert raised.returncode == 0, raised.stdout + raised.stderr


def test_a_raise_under_a_two_person_rule_needs_one_member_not_the_starter() -> None:
    """Pure: a raise is one person's act, so ``approvals = 2`` asks for one member who
    did not start the run."""
    olga, rita = "ed25519:" + "ab" * 32, "ed25519:" + "cd" * 32
    toml = (
        f'[policy.groups.finance]\nolga = "{olga}"\nrita = "{rita}"\n'
        '[[policy.approvers]]\ngroups = ["finance"]\napprovals = 2\n'
    )
    policy = Policy.model_validate(tomllib.loads(toml)["policy"])
    plan = Plan.model_validate({"goal": "g", "steps": [{"id": "a", "run": "true"}]})
    created = RunCreated(
        at=0, run_id="r", plan=plan, workspace="/w", operator_policy=policy, started_by=olga
    )
    state = RunState.from_created(created)
    assert judge_raise(state, rita) == Judgement("decide", name="rita")
    refused = judge_raise(state, olga)
    assert refused.outcome == "refuse"
    assert refused.reason == (
        "olga started the run; who may decide: finance (olga, rita), other than the run's starter"
    )
