"""Who may approve what: the operator's approver groups and the two-person rule, through
the real CLI and SQLite store, with each person's own key in their own config directory.

The decision key is shared (``TRESTLE_KEY_FILE``: the deployment's decision path), the
identity keys are not: a decision counts for a group only if its identity signature
verifies with a key the accepted ``trestle.toml`` lists in that group.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from store_rows import append_raw_event
from test_approvals_cli import DEPLOY, Cli, flat
from trestle.core.approvers import Judgement, covering, judge
from trestle.core.errors import ConfigError
from trestle.core.events import ApprovalRequested, RunCreated, ToolAsk
from trestle.core.plan import Plan
from trestle.core.policy import ActionFacts, Policy, TierDecision
from trestle.core.state import RunState
from trestle.formats.policyfile import load_policy
from trestle.store import SqliteStore
from trestle.trust.identity import decision_fields, public_key, with_identity
from trestle.trust.signing import decision_key, signed_payload

# the second barrier: what holds even where a step can reach the store and key
pytestmark = pytest.mark.usefixtures("unconfined")


@dataclass(frozen=True)
class Person(Cli):
    """``trestle`` as one person: their own config directory (identity key, accepted
    policies), the deployment's shared decision key."""

    name: str = ""

    def env(self, **extra: str) -> dict[str, str]:
        home = self.dir.parent / "people" / self.name
        return super().env(
            XDG_CONFIG_HOME=str(home),
            TRESTLE_KEY_FILE=str(self.dir.parent / "approval.key"),
            **extra,
        )

    def key(self) -> str:
        shown = self("policy", "identity")
        assert shown.returncode == 0, shown.stderr
        return shown.stdout.strip()

    def identity_file(self) -> Path:
        return self.dir.parent / "people" / self.name / "trestle" / "identity.key"


@pytest.fixture
def people(tmp_path: Path) -> dict[str, Person]:
    (tmp_path / "ws").mkdir()
    names = ("sam", "alice", "bob", "mallory")
    return {n: Person(dir=tmp_path / "ws", store=tmp_path / "trestle.db", name=n) for n in names}


def _policy(people: dict[str, Person], members: tuple[str, ...], approvals: int) -> str:
    keys = "\n".join(f'{n} = "{people[n].key()}"' for n in members)
    return f"""
        [policy.groups.release]
        {keys}

        [[policy.approvers]]
        groups = ["release"]
        commands = ["echo deployed*"]
        approvals = {approvals}
    """


def _start(starter: Person, policy: str) -> str:
    toml = starter.write("trestle.toml", policy)
    digest = hashlib.sha256(toml.read_bytes()).hexdigest()
    starter.write("plan.yaml", DEPLOY)
    result = starter("run", "plan.yaml", "--accept-policy", digest)
    assert result.returncode == 3, result.stdout + result.stderr
    return result.stdout.splitlines()[0].split()[1]


def _decide(person: Person, run_id: str, *args: str) -> None:
    result = person("approve", f"{run_id}.1", *args)
    assert result.returncode == 0, result.stdout + result.stderr


def _resume(starter: Person, run_id: str, expect: int) -> None:
    result = starter("resume", run_id)
    assert result.returncode == expect, result.stdout + result.stderr


def _refusals(person: Person, run_id: str) -> list[str]:
    return [r["reason"] for r in person.json("show", run_id)["refused"]]


def _export(person: Person) -> list[dict[str, Any]]:
    result = person("feedback", "export")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_only_a_member_of_the_group_decides(people: dict[str, Person]) -> None:
    sam, alice, mallory = people["sam"], people["alice"], people["mallory"]
    run_id = _start(sam, _policy(people, ("alice",), approvals=1))
    deploys = sam.dir / "deploys.log"

    # refused as it is made: queued, it would only be refused when the run folded it
    outsider = mallory("approve", f"{run_id}.1")
    assert outsider.returncode == 2
    assert "is not in group 'release'; who may decide: release (alice)" in flat(outsider.stderr)
    _queue_directly(sam, mallory, run_id)  # the run judges what reaches its queue again
    _resume(sam, run_id, 3)
    assert not deploys.exists()
    [why] = _refusals(sam, run_id)
    assert "is not in group 'release'; who may decide: release (alice)" in why
    assert "refused" in flat(sam("log", run_id).stdout) and "release (alice)" in sam(
        "log", run_id
    ).stdout.replace("\n", " ")

    # a decision event written straight into the store, signed with the shared decision
    # key and mallory's own identity: folded, it does not count
    digest = _requested_hash(sam, run_id)
    fields = {
        "run_id": run_id,
        "approval": 1,
        "verdict": "approve",
        "action_hash": digest,
        "files": None,
        "reason": "",
        "similar": False,
        "edited": None,
        "top_up": None,
        "by": "alice",
    }
    fields, identity = with_identity(fields, mallory.identity_file())
    payload = signed_payload(
        fields, decision_key(sam.dir.parent / "approval.key"), identity=identity
    )
    fields_row = {"approval": 1, "verdict": "approve", "by": "alice", "action_hash": digest}
    seq = append_raw_event(sam.store, run_id, "approval_decided", {**fields_row, "signed": payload})
    _resume(sam, run_id, 3)
    assert not deploys.exists()
    assert any(r.get("forged_seq") == seq for r in sam.json("show", run_id)["refused"])

    _decide(alice, run_id)
    _resume(sam, run_id, 0)
    assert deploys.read_text() == "deployed\n"
    rows = _export(sam)
    decided = [r for r in rows if r["act"] == "approve" and r["decision"] == "approved"]
    assert [r["by"] for r in decided] == ["alice"]  # the group's name for the key
    refused = [r for r in rows if r["decision"] == "refused"]
    assert refused and "who may decide: release (alice)" in refused[0]["refused_because"]


def _queue_directly(starter: Person, signer: Person, run_id: str) -> None:
    """An approve of ``run_id.1`` signed by ``signer``, put in the store's queue as
    anyone who may write the store could: the CLI refuses to queue one the run will."""
    fields = {
        "run_id": run_id,
        "approval": 1,
        "verdict": "approve",
        "action_hash": _requested_hash(starter, run_id),
        "files": None,
        "reason": "",
        "similar": False,
        "edited": None,
        "top_up": None,
        "by": signer.name,
    }
    fields, identity = with_identity(fields, signer.identity_file())
    key = decision_key(starter.dir.parent / "approval.key")
    store = SqliteStore(starter.store)
    try:
        payload = signed_payload(fields, key, identity=identity)
        store.add_request(run_id, "decision", "deploy", "", now=time.time(), payload=payload)
    finally:
        store.close()


def _requested_hash(person: Person, run_id: str) -> str:
    for event in person.json("log", run_id):
        if event.get("kind") == "approval_requested":
            return str(event["action_hash"])
    raise AssertionError("no approval requested")


def test_two_distinct_approvers_neither_the_starter(people: dict[str, Person]) -> None:
    sam, alice, bob = people["sam"], people["alice"], people["bob"]
    run_id = _start(sam, _policy(people, ("sam", "alice", "bob"), approvals=2))
    deploys = sam.dir / "deploys.log"

    own = sam("approve", f"{run_id}.1")  # in the group, but may not approve their own run
    assert own.returncode == 2
    assert "sam started the run, and it needs 2 approvers other than its starter" in flat(
        own.stderr
    )
    _decide(alice, run_id)  # one of two
    _resume(sam, run_id, 3)
    again = alice("approve", f"{run_id}.1")  # the same approver again does not make two
    assert again.returncode == 2
    assert "alice already approved; it needs 2 distinct approvers" in flat(again.stderr)
    _queue_directly(sam, sam, run_id)  # the run judges what reaches its queue again
    _resume(sam, run_id, 3)
    assert not deploys.exists()
    [refused] = _refusals(sam, run_id)
    assert "sam started the run, and it needs 2 approvers other than its starter" in refused
    [card] = sam.json("inbox", "--run", run_id)
    assert card["status"] == "pending"
    assert card["may_decide"] == (
        "release (alice, bob, sam), 2 distinct approvers other than the run's starter; "
        "approved so far by alice"
    )
    assert "may decide" in sam("inbox", "--run", run_id).stdout

    _decide(bob, run_id)
    _resume(sam, run_id, 0)
    assert deploys.read_text() == "deployed\n"
    _resume(sam, run_id, 0)  # the recorded decisions verify again when folded
    rows = _export(sam)
    [endorsed] = [r for r in rows if r["decision"] == "endorsed"]
    assert endorsed["by"] == "alice" and endorsed["signer"] == alice.key()
    [decided] = [r for r in rows if r["decision"] == "approved"]
    assert decided["approvers"] == ["alice", "bob"]
    assert "approved " in sam("log", run_id).stdout


def test_each_approver_queues_theirs_before_the_run_records_any(
    people: dict[str, Person],
) -> None:
    # nobody drives the run between the approves: the second was refused as "already
    # decided" before, so a two-person approval needed a resume between its two people
    sam, alice, bob, mallory = (people[n] for n in ("sam", "alice", "bob", "mallory"))
    run_id = _start(sam, _policy(people, ("sam", "alice", "bob", "mallory"), approvals=2))
    _decide(alice, run_id)
    again = alice("approve", f"{run_id}.1")
    assert again.returncode == 2
    assert "your decision on it is queued already" in flat(again.stderr)
    _decide(bob, run_id)
    third = mallory("approve", f"{run_id}.1")
    assert third.returncode == 2
    assert "was already decided; the run records it when it next runs" in flat(third.stderr)
    _resume(sam, run_id, 0)
    assert (sam.dir / "deploys.log").read_text() == "deployed\n"
    [decided] = [r for r in _export(sam) if r["decision"] == "approved"]
    assert decided["approvers"] == ["alice", "bob"]


def test_a_child_runs_starter_is_its_roots_not_whoever_resumed_the_parent(
    people: dict[str, Person],
) -> None:
    # the child recorded as its starter the key of the process that made it (alice,
    # who resumed the parent): sam, the root's starter, counted as one of the two
    sam, alice, bob = people["sam"], people["alice"], people["bob"]
    toml = sam.write("trestle.toml", _policy(people, ("sam", "alice", "bob"), approvals=2))
    sam.write(
        "child.yaml",
        "steps:\n  - {id: deploy, run: echo deployed >> deploys.log, irreversible: true}\n",
    )
    sam.write(
        "plan.yaml",
        "steps:\n  - {id: gate, run: 'true', approval: confirm}\n"
        "  - {id: release, needs: [gate], delegate: {goal: ship, plan: child.yaml}}\n",
    )
    digest = hashlib.sha256(toml.read_bytes()).hexdigest()
    started = sam("run", "plan.yaml", "--accept-policy", digest)
    assert started.returncode == 3, started.stdout + started.stderr
    run_id = started.stdout.splitlines()[0].split()[1]
    _decide(alice, run_id)  # the gate no rule covers
    _resume(alice, run_id, 3)  # alice's process makes the child
    child = f"{run_id}.release.1"
    own = sam("approve", f"{child}.1")
    assert own.returncode == 2
    assert "sam started the run, and it needs 2 approvers" in flat(own.stderr)
    assert alice("approve", f"{child}.1").returncode == 0
    _resume(alice, run_id, 3)
    assert not (sam.dir / "deploys.log").exists()
    assert bob("approve", f"{child}.1").returncode == 0
    _resume(alice, run_id, 0)
    assert (sam.dir / "deploys.log").read_text() == "deployed\n"


def test_a_decision_the_run_will_refuse_holds_no_place_in_the_queue(
    people: dict[str, Person],
) -> None:
    # the starter's approve, or a non-member's, queued before the approvers' own, made
    # them "already decided", then was refused when the run folded it
    sam, alice, bob, mallory = (people[n] for n in ("sam", "alice", "bob", "mallory"))
    run_id = _start(sam, _policy(people, ("sam", "alice", "bob"), approvals=2))
    _queue_directly(sam, sam, run_id)
    _queue_directly(sam, mallory, run_id)
    _decide(alice, run_id)
    _decide(bob, run_id)
    _resume(sam, run_id, 0)
    assert (sam.dir / "deploys.log").read_text() == "deployed\n"
    assert len(_refusals(sam, run_id)) == 2  # the two the run judged as it folded them


def test_a_plan_cannot_name_approvers(people: dict[str, Person]) -> None:
    sam = people["sam"]
    sam.write(
        "plan.yaml",
        """
        goal: g
        policy:
          groups: {release: {me: "ed25519:%s"}}
        steps:
          - id: a
            run: "true"
        """
        % ("0" * 64),
    )
    result = sam("run", "plan.yaml")
    assert result.returncode == 2
    assert "groups and approvers are the operator's" in result.stdout + result.stderr
    assert os.path.exists(sam.dir / "plan.yaml")


# --- which approvals a rule covers, and what the policy accepts (pure) ---------------------

KEY = "ed25519:" + "ab" * 32
OTHER = "ed25519:" + "cd" * 32


def _state(toml: str, step: dict[str, Any], tier: str = "confirm") -> RunState:
    """A run of one step whose approval 1 is pending, under the operator's ``toml``."""
    policy = Policy.model_validate(tomllib.loads(toml)["policy"])
    plan = Plan.model_validate({"goal": "g", "steps": [step]})
    state = RunState.from_created(
        RunCreated(at=0, run_id="r", plan=plan, workspace="/w", operator_policy=policy)
    )
    decision = TierDecision(tier=tier, source="irreversible", reason="asked")
    state.apply(
        ApprovalRequested(
            at=1, approval=1, subject="action", step=step["id"], action_hash="h", decision=decision
        )
    )
    return state


GROUPS = f"""
[policy.groups.ops]
olga = "{KEY}"
[policy.groups.release]
rita = "{OTHER}"
"""


@pytest.mark.parametrize(
    ("rule", "step", "covered"),
    [
        (
            'paths = ["infra/**"]',
            {"id": "w", "write": {"path": "infra/a/b.tf", "content": ""}},
            True,
        ),
        ('paths = ["infra/**"]', {"id": "w", "write": {"path": "src/a.py", "content": ""}}, False),
        ('paths = ["infra/**"]', {"id": "c", "run": "cp x infra/y"}, True),
        ('commands = ["git push*"]', {"id": "p", "run": "env A=1 git push origin"}, True),
        ('tags = ["prod"]', {"id": "t", "run": "true", "tags": ["prod"]}, True),
        ('tags = ["prod"]', {"id": "t", "run": "true"}, False),
        ('steps = ["deploy-*"]', {"id": "deploy-eu", "run": "true"}, True),
        ('tiers = ["log"]', {"id": "a", "run": "true"}, False),
        ("", {"id": "a", "run": "true"}, True),  # no criterion: every approval
    ],
)
def test_a_rule_covers_the_approvals_its_criteria_meet(
    rule: str, step: dict[str, Any], covered: bool
) -> None:
    state = _state(f'{GROUPS}\n[[policy.approvers]]\ngroups = ["ops"]\n{rule}\n', step)
    a = state.approvals[1]
    assert bool(covering(state, a)) is covered
    verdict = judge(state, a, OTHER, "approve")
    assert verdict.outcome == ("refuse" if covered else "decide")
    if covered:
        assert verdict.reason.endswith("who may decide: ops (olga)")
        assert judge(state, a, KEY, "approve") == Judgement("decide", name="olga")
        assert judge(state, a, None, "approve").outcome == "refuse"


@pytest.mark.parametrize(
    ("rule", "covered"),
    [
        ('tools = ["mcp__git__*"]', True),
        ('tools = ["edit_file"]', False),
        ('mcp_servers = ["git"]', True),
        ('mcp_servers = ["github"]', False),
        ('tags = ["mcp:git"]', True),
    ],
)
def test_a_rule_covers_a_tool_call_by_tool_and_mcp_server(rule: str, covered: bool) -> None:
    state = _state(f'{GROUPS}\n[[policy.approvers]]\ngroups = ["ops"]\n{rule}\n', AGENT_STEP)
    facts = ActionFacts(nature="command", name="mcp__git__push", tags=("mcp", "mcp:git"))
    decision = TierDecision(tier="confirm", source="tool.annotations", reason="asked")
    ask = ToolAsk(
        tool="mcp__git__push",
        arguments="{}",
        facts=facts,
        decision=decision,
        action_hash="t",
        similar_key="k",
    )
    state.apply(
        ApprovalRequested(at=2, approval=2, subject="tool", step="a", action_hash="t", ask=ask)
    )
    assert bool(covering(state, state.approvals[2])) is covered


AGENT_STEP = {"id": "a", "run": "true"}


def test_every_covering_rule_must_count_the_signer() -> None:
    rules = '[[policy.approvers]]\ngroups = ["ops"]\n[[policy.approvers]]\ngroups = ["release"]\n'
    state = _state(GROUPS + rules, {"id": "a", "run": "true"})
    verdicts = {judge(state, state.approvals[1], k, "approve").outcome for k in (KEY, OTHER)}
    assert verdicts == {"refuse"}


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        (
            '[[policy.approvers]]\ngroups = ["ops"]\n',
            "names group 'ops', which [policy.groups] does not define (defined: none)",
        ),
        (
            '[policy.groups.ops]\nolga = "olga@host"\n',
            "'olga@host' is not an approver's public key",
        ),
        (
            f'[policy.groups.ops]\nolga = "{KEY}"\n'
            '[[policy.approvers]]\ngroups = ["ops"]\napprovals = 0\n',
            "approvals",
        ),
    ],
)
def test_a_bad_approver_table_is_refused_naming_where(
    tmp_path: Path, toml: str, problem: str
) -> None:
    path = tmp_path / "trestle.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert str(path) in str(info.value) and problem in str(info.value)


def test_a_decision_names_a_signer_only_when_their_signature_verifies(tmp_path: Path) -> None:
    """Whoever holds the shared decision key can sign any fields with it; naming a
    member's public key as the signer still takes that member's private key."""
    key = decision_key(tmp_path / "approval.key")
    alice, mallory = tmp_path / "alice.key", tmp_path / "mallory.key"
    alice_key = public_key(alice)
    fields, identity = with_identity({"run_id": "r", "approval": 1}, alice)
    assert decision_fields(signed_payload(fields, key, identity=identity), key) == fields
    # mallory signs fields naming alice as the signer, with her own identity key
    claimed, theirs = with_identity({"run_id": "r", "approval": 1}, mallory)
    claimed["signer"] = alice_key
    forged = decision_fields(signed_payload(claimed, key, identity=theirs), key)
    assert forged is not None and forged["signer"] is None
    # alice's signature moved onto other fields does not verify either
    moved = decision_fields(signed_payload({**fields, "approval": 2}, key, identity=identity), key)
    assert moved is not None and moved["signer"] is None
    assert decision_fields(signed_payload(fields, key), key) == {**fields, "signer": None}
