"""Reviewer load: the inbox groups the cards one ``approve --similar`` decides, shows
each card's age and deadline, and an approver rule's escalation group may decide once
the deadline passed, judged by the time the run's driver records.

The grouping and the decision run through the real CLI and SQLite store; the deadline
is judged by the real decision path (signed requests, identity keys) at times the
test hands in, as a driver hands in its own clock.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from test_approvals_cli import Cli, flat
from test_notifications import Receiver, _drive, _notify_toml
from trestle.cli.app import app
from trestle.cli.render import card_view
from trestle.core.approvers import judge
from trestle.core.card import build_card
from trestle.core.events import ApprovalDecided, ApprovalRefused, ApprovalRequested, RunCreated
from trestle.core.notices import escalations
from trestle.core.plan import Plan
from trestle.core.policy import Policy, action_hash
from trestle.core.state import RunState
from trestle.formats.planfile import parse_plan
from trestle.formats.policyfile import parse_policy
from trestle.lifecycle.approvals import decided, forged, trusted_state
from trestle.lifecycle.runs import create_run
from trestle.store import SqliteStore
from trestle.store.base import Request
from trestle.trust.identity import decision_fields, public_key, with_identity
from trestle.trust.signing import decision_key, signed_payload

CONFIGS = """
    goal: write the three configs and release
    steps:
      - id: eu
        write: {path: conf/eu.toml, content: "region = 'eu'\\n"}
        irreversible: true
      - id: us
        write: {path: conf/us.toml, content: "region = 'us'\\n"}
        irreversible: true
      - id: ap
        write: {path: conf/ap.toml, content: "region = 'ap'\\n"}
        irreversible: true
      - id: release
        needs: [eu, us, ap]
        run: echo released
        irreversible: true
"""


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    (tmp_path / "ws").mkdir()
    return Cli(tmp_path / "ws", tmp_path / "trestle.db")


def _waiting_run(cli: Cli) -> str:
    cli.write("plan.yaml", CONFIGS)
    result = cli("run", "plan.yaml")
    assert result.returncode == 3, result.stdout + result.stderr
    return result.stdout.splitlines()[0].split()[1]


def test_similar_cards_are_one_group_and_one_decision_settles_it(cli: Cli) -> None:
    run_id = _waiting_run(cli)
    cards = cli.json("inbox", "--run", run_id)
    assert [c["step"] for c in cards] == ["eu", "us", "ap"]
    group = cards[0]["group"]
    assert group and all(c["group"] == group for c in cards)
    assert cards[0]["group_refs"] == [f"{run_id}.{n}" for n in (1, 2, 3)]
    assert cards[0]["action"]["path"] == "conf/eu.toml"  # each card's own JSON stays

    shown = cli("inbox", "--run", run_id).stdout
    assert shown.count(f"approval {run_id}.") == 1  # the group's first card, in full
    assert f"{run_id}.2  step us: write conf/us.toml" in shown
    assert f"{run_id}.3  step ap: write conf/ap.toml" in shown
    assert f"decide all 3: trestle approve {run_id}.1 --similar --group {group}" in flat(shown)
    assert "waiting" in shown

    stale = cli("approve", f"{run_id}.1", "--similar", "--group", "g0000000000")
    assert stale.returncode == 2
    assert "the group changed since 'g0000000000' was shown" in flat(stale.stderr)

    assert cli("approve", f"{run_id}.1", "--similar", "--group", group).returncode == 0
    resumed = cli("resume", run_id)
    assert resumed.returncode == 3, resumed.stdout + resumed.stderr  # the release still asks
    assert sorted(p.name for p in (cli.dir / "conf").iterdir()) == ["ap.toml", "eu.toml", "us.toml"]
    [left] = cli.json("inbox", "--run", run_id)
    assert (left["step"], left["group"]) == ("release", None)
    assert "with its group: approvals 2, 3" in flat(cli("log", run_id).stdout)
    exported = [json.loads(line) for line in cli("feedback", "export").stdout.splitlines()]
    [act] = [row for row in exported if row.get("covers")]
    assert (act["ref"], act["covers"]) == (f"{run_id}.1", [f"{run_id}.2", f"{run_id}.3"])

    again = cli("resume", run_id)  # the recorded decision folds the same way again
    assert again.returncode == 3
    assert cli.json("show", run_id)["refused"] == []
    assert [c["step"] for c in cli.json("inbox", "--run", run_id)] == ["release"]


def test_a_group_is_decided_only_by_approve_similar(cli: Cli) -> None:
    run_id = _waiting_run(cli)
    group = cli.json("inbox", "--run", run_id)[0]["group"]
    result = cli("approve", f"{run_id}.1", "--group", group)
    assert result.returncode == 2
    assert "a group is decided with approve --similar" in flat(result.stderr)
    # a plain approve decides its own card, and the others stay a group of two
    assert cli("approve", f"{run_id}.1").returncode == 0
    assert cli("resume", run_id).returncode == 3
    left = cli.json("inbox", "--run", run_id)
    assert [(c["step"], len(c["group_refs"])) for c in left] == [("us", 2), ("ap", 2)]


def test_the_dashboard_decides_the_group_it_showed(cli: Cli) -> None:
    # the approve form of a grouped card carries the group's id: a group that changed
    # after the page was shown is refused, not decided as it stands at the click
    import re

    from starlette.testclient import TestClient

    from dashboard_helpers import enter
    from trestle.dashboard.app import Settings, create_app
    from trestle.dashboard.security import Gate

    run_id = _waiting_run(cli)
    gate = Gate(user="op@box", hosts=frozenset({"testserver"}))
    client = TestClient(create_app(Settings(store=cli.store, gate=gate)), follow_redirects=False)
    enter(client, client.get(f"/login?token={gate.login_token}"))  # to the session's pages
    page = client.get("/inbox").text
    group = cli.json("inbox", "--run", run_id)[0]["group"]
    assert f'name="group" value="{group}"' in page
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    origin = {"origin": "http://testserver"}

    def approve(shown: str) -> str:
        form = {"csrf": csrf.group(1), "similar": "on", "group": shown}
        answer = client.post(f"/inbox/{run_id}.1/approve", data=form, headers=origin)
        assert answer.status_code == 303
        return client.get("/inbox").text

    assert "the group changed since &#39;g0000000000&#39; was shown" in approve("g0000000000")
    store = SqliteStore(cli.store)
    try:
        assert store.pending_requests(run_id) == []  # nothing queued
        approve(group)
        assert len(store.pending_requests(run_id)) == 1
    finally:
        store.close()
    assert cli("resume", run_id).returncode == 3
    assert [c["step"] for c in cli.json("inbox", "--run", run_id)] == ["release"]


# --- deadlines and escalation, judged at the driver's time ------------------------------

ASKED = datetime(2026, 3, 2, 10, 5, tzinfo=UTC).timestamp()
HOUR = 3600.0


def _policy(ops: str, leads: str, rule: str = 'deadline = "4h"\nescalate_to = ["leads"]') -> str:
    return f"""
[policy.groups.ops]
olga = "{ops}"
[policy.groups.leads]
lena = "{leads}"
[[policy.approvers]]
groups = ["ops"]
{rule}
"""


def _state(toml: str) -> RunState:
    """A run whose step ``deploy`` waits for approval 1, asked at :data:`ASKED`."""
    policy = Policy.model_validate(tomllib.loads(toml)["policy"])
    plan = Plan.model_validate(
        {"goal": "g", "steps": [{"id": "deploy", "run": "echo deployed", "irreversible": True}]}
    )
    state = RunState.from_created(
        RunCreated(at=0, run_id="r", plan=plan, workspace="/w", operator_policy=policy)
    )
    digest = action_hash(plan.step("deploy").action_payload())
    state.apply(
        ApprovalRequested(at=ASKED, approval=1, subject="action", step="deploy", action_hash=digest)
    )
    return state


def _signed(tmp_path: Path, state: RunState, identity: Path) -> tuple[Request, str]:
    fields: dict[str, Any] = {
        "run_id": "r",
        "approval": 1,
        "verdict": "approve",
        "action_hash": state.approvals[1].action_hash,
        "files": None,
        "reason": "",
        "similar": False,
        "edited": None,
        "top_up": None,
        "by": "whoever",
    }
    fields, signature = with_identity(fields, identity)
    payload = signed_payload(fields, decision_key(tmp_path / "approval.key"), identity=signature)
    request = Request(
        id=1,
        run_id="r",
        kind="decision",
        step="deploy",
        reason="",
        created_at=ASKED,
        payload=payload,
    )
    return request, payload


def test_an_escalation_member_decides_only_after_the_deadline(tmp_path: Path) -> None:
    key = decision_key(tmp_path / "approval.key")
    olga, lena = tmp_path / "olga.key", tmp_path / "lena.key"
    state = _state(_policy(public_key(olga), public_key(lena)))
    request, payload = _signed(tmp_path, state, lena)
    fields = decision_fields(payload, key)

    early = decided(state, request, fields, ASKED + 3 * HOUR)
    assert isinstance(early, ApprovalRefused)
    assert early.reason == (
        "lena is in group 'leads', which may decide from 14:05 UTC (after the deadline); "
        "who may decide: ops (olga)"
    )
    late = decided(state, request, fields, ASKED + 4 * HOUR)
    assert isinstance(late, ApprovalDecided) and late.by == "lena"

    # the fold re-judges by the time the driver recorded on the event: the same verdict
    assert forged(state, late, key) is None
    backdated = late.model_copy(update={"at": ASKED + 3 * HOUR})
    assert forged(state, backdated, key) is not None
    state.apply(late)
    assert state.approvals[1].status == "approved"
    # the rule's own group decides at any time; a key in neither group never does
    fresh = _state(_policy(public_key(olga), public_key(lena))).approvals[1]
    assert judge(state, fresh, public_key(olga), "approve", ASKED).outcome == "decide"
    stranger = public_key(tmp_path / "mallory.key")
    assert judge(state, fresh, stranger, "approve", ASKED + 99 * HOUR).outcome == "refuse"


def test_the_card_shows_its_age_and_deadline(tmp_path: Path) -> None:
    state = _state(_policy(public_key(tmp_path / "o.key"), public_key(tmp_path / "l.key")))
    card = build_card(state, 1)
    assert (card.requested_at, card.deadline_at) == (ASKED, ASKED + 4 * HOUR)
    assert card.escalate_to == ["leads"]

    def shown(now: float) -> str:
        out = Console(width=120, record=True, color_system=None)
        out.print(card_view(card, None, now))
        return flat(out.export_text())

    before = shown(ASKED + 3 * HOUR + 12 * 60)
    assert "waiting 3h 12m" in before
    assert "deadline decide by 14:05 UTC; then leads may decide too" in before
    after = shown(ASKED + 26 * HOUR)
    assert "waiting 1d 2h" in after
    assert "deadline overdue since 2026-03-02 14:05 UTC; leads may decide too" in after


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ('deadline = "4 hours"', "approvers[0].deadline: '4 hours' is not a duration"),
        ('deadline = "0m"', "approvers[0].deadline: '0m' is no time at all"),
        (
            'deadline = "4h"\nescalate_to = ["oncall"]',
            "approvers[0].escalate_to names group 'oncall', which [policy.groups] does not",
        ),
        ('escalate_to = ["leads"]', "approvers[0].escalate_to needs a deadline"),
    ],
)
def test_a_bad_deadline_or_escalation_is_refused_with_exit_2(
    cli: Cli, rule: str, problem: str
) -> None:
    key = "ed25519:" + "ab" * 32
    toml = cli.write("trestle.toml", _policy(key, key, rule))
    cli.write("plan.yaml", CONFIGS)
    digest = hashlib.sha256(toml.read_bytes()).hexdigest()
    result = cli("run", "plan.yaml", "--accept-policy", digest)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "trestle.toml" in result.stderr and problem in flat(result.stderr)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.close()


def test_a_sweep_tells_the_escalation_group_once_after_the_deadline(
    tmp_path: Path, receiver: Receiver
) -> None:
    _notify_toml(f"""
        [targets.leads]
        type = "webhook"
        url = "{receiver.url}/leads"
        groups = ["leads"]
    """)
    keys = {n: public_key(tmp_path / f"{n}.key") for n in ("olga", "lena")}
    operator = parse_policy(
        {
            "groups": {"ops": {"olga": keys["olga"]}, "leads": {"lena": keys["lena"]}},
            "approvers": [{"groups": ["ops"], "deadline": "1s", "escalate_to": ["leads"]}],
        },
        source="trestle.toml",
    )
    store = SqliteStore(tmp_path / "trestle.db")
    (tmp_path / "ws").mkdir()
    text = "goal: g\nsteps:\n  - {id: deploy, run: echo deployed, irreversible: true}\n"
    plan = parse_plan(textwrap.dedent(text), source="plan.yaml", base_dir=tmp_path)
    run_id = create_run(store, plan, workspace=tmp_path / "ws", operator_policy=operator)
    _drive(store, run_id, notifier=None)  # the ask itself notifies nobody here
    state = trusted_state(store, run_id)
    asked = state.approvals[1].requested_at
    assert escalations(state, asked + 0.5) == []  # not yet
    time.sleep(max(0.0, asked + 1.05 - time.time()))

    for _ in range(2):  # as cron runs it: the second sweep sends nothing new
        swept = CliRunner().invoke(app, ["notify", "sweep", "--store", str(store.path)])
        assert swept.exit_code == 0, swept.output
        assert "1 approval past its deadline" in swept.output
    [sent] = receiver.accepted
    assert receiver.paths == ["/hook/leads"]
    assert sent["kind"] == "approval" and sent["step"] == "deploy"
    assert "overdue for approval: leads may decide it now" in json.dumps(sent)


def test_a_sweep_without_targets_says_what_is_missing_and_exits_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    SqliteStore(tmp_path / "trestle.db").close()
    sweep = [
        sys.executable,
        "-m",
        "trestle",
        "notify",
        "sweep",
        "--store",
        str(tmp_path / "trestle.db"),
    ]

    def said() -> tuple[int, str]:
        done = subprocess.run(sweep, capture_output=True, text=True, timeout=60)
        return done.returncode, flat(done.stderr)

    code, missing = said()
    assert code == 2 and missing.startswith("error: no "), missing
    assert "notify.toml: nothing to sweep for" in missing
    _notify_toml("dashboard_url = 'http://127.0.0.1:8765'\n")
    code, empty = said()
    assert code == 2 and "notify.toml: names no target" in empty, empty


def test_a_decision_on_a_member_of_a_group_approved_and_queued_is_refused_at_once(
    cli: Cli,
) -> None:
    # the group's approve --similar decides .2 too: a reject of .2 behind it was told
    # "queued", then refused when the run folded it
    run_id = _waiting_run(cli)
    group = cli.json("inbox", "--run", run_id)[0]["group"]
    assert cli("approve", f"{run_id}.1", "--similar", "--group", group).returncode == 0
    late = cli("reject", f"{run_id}.2", "--reason", "not us")
    assert late.returncode == 2
    assert "was already decided; the run records it when it next runs" in flat(late.stderr)
    assert cli("approve", f"{run_id}.3").returncode == 2  # a member's own approve too
    assert cli("resume", run_id).returncode == 3
    assert cli.json("show", run_id)["refused"] == []
