"""The operator's approver groups and two-person rule on the Temporal engine: the real
dev server, a real ``trestle worker``, and each person's ``trestle approve`` with their
own identity key. The workflow judges each decision as the local engine does."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from forked_cli import run_trestle
from store_rows import append_raw_event
from temporal_helpers import Workers, wait_for
from test_cli import Cli, run_id_of
from trestle.store import SqliteStore
from trestle.trust.identity import with_identity
from trestle.trust.signing import decision_key, signed_payload

pytestmark = pytest.mark.slow

DEPLOY = """\
    goal: release
    steps:
      - id: deploy
        run: echo deployed >> deploys.log
        irreversible: true
"""


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    (tmp_path / "ws").mkdir()
    return Cli(tmp_path / "ws", tmp_path / "trestle.db")


def _as(cli: Cli, workers: Workers, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``trestle`` as ``name``: their own config directory, the shared decision key."""
    env = {**workers.env, "XDG_CONFIG_HOME": str(cli.dir.parent / "people" / name)}
    return run_trestle(args, cwd=cli.dir, env=env, timeout=120)


def _said(result: subprocess.CompletedProcess[str]) -> str:
    return " ".join((result.stdout + result.stderr).split())


@pytest.fixture
def workers(cli: Cli, address: str) -> Iterator[Workers]:
    pool = Workers(
        cli,
        address,
        TRESTLE_TEMPORAL_HEARTBEAT="2",
        TRESTLE_KEY_FILE=str(cli.dir.parent / "approval.key"),
        XDG_CONFIG_HOME=str(cli.dir.parent / "people" / "sam"),  # the starter's
    )
    try:
        yield pool
    finally:
        pool.stop()


def _deploy_waiting(cli: Cli, workers: Workers, toml: Path) -> str:
    """DEPLOY started on Temporal under the accepted ``toml``, waiting on its deploy."""
    digest = hashlib.sha256(toml.read_bytes()).hexdigest()
    workers.start()
    plan = cli.write("plan.yaml", DEPLOY)
    waiting = workers.run(
        "run", plan, "--no-live", "--no-prompt", "--accept-policy", digest, *workers.flags()
    )
    assert waiting.returncode == 3, waiting.stdout + waiting.stderr
    return run_id_of(waiting)


def test_two_members_other_than_the_starter_decide_on_temporal(cli: Cli, workers: Workers) -> None:
    keys = {
        n: _as(cli, workers, n, "policy", "identity").stdout.strip()
        for n in ("sam", "alice", "bob", "mallory")
    }
    toml = cli.write(
        "trestle.toml",
        "[policy.groups.release]\n"
        + "".join(f'{n} = "{keys[n]}"\n' for n in ("sam", "alice", "bob"))
        + '\n[[policy.approvers]]\ngroups = ["release"]\nsteps = ["deploy"]\napprovals = 2\n',
    )
    run_id = _deploy_waiting(cli, workers, toml)
    ref = f"{run_id}.1"

    said = {n: _said(_as(cli, workers, n, "approve", ref)) for n in ("mallory", "sam", "alice")}
    assert "is not in group 'release'; who may decide: release (alice, bob, sam)" in said["mallory"]
    assert "sam started the run, and it needs 2 approvers other than its starter" in said["sam"]
    assert "counted alice's approve" in said["alice"], said
    again = _said(_as(cli, workers, "alice", "approve", ref))
    assert "alice already approved; it needs 2 distinct approvers" in again
    assert not (cli.dir / "deploys.log").exists()

    done = _as(cli, workers, "bob", "approve", ref)
    assert f"recorded {ref} as approved by bob" in " ".join(done.stdout.split()), done.stdout
    store = SqliteStore(cli.store)
    wait_for(lambda: store.run(run_id).status == "succeeded", what="the run to end")
    assert (cli.dir / "deploys.log").read_text() == "deployed\n"


def test_only_a_member_raises_a_stopped_budget_on_temporal(cli: Cli, workers: Workers) -> None:
    """A raise the rules cover: an outsider refused at the CLI, their event written into
    the store ignored by the workflow's load, a member's raise lets the run go on."""
    alice = _as(cli, workers, "alice", "policy", "identity").stdout.strip()
    _as(cli, workers, "mallory", "policy", "identity")
    toml = cli.write(
        "trestle.toml",
        f'[policy.groups.finance]\nalice = "{alice}"\n\n'
        '[[policy.approvers]]\ngroups = ["finance"]\ntags = ["budget"]\n',
    )
    digest = hashlib.sha256(toml.read_bytes()).hexdigest()
    workers.start()
    plan = cli.write(
        "plan.yaml",
        "goal: g\nbudget:\n  steps: {hard: 1}\nsteps:\n"
        "  - id: a\n    run: echo a >> done.log\n"
        "  - id: b\n    run: echo b >> done.log\n    needs: [a]\n",
    )
    stopped = workers.run(
        "run", plan, "--no-live", "--no-prompt", "--accept-policy", digest, *workers.flags()
    )
    assert stopped.returncode == 6, stopped.stdout + stopped.stderr
    run_id = run_id_of(stopped)
    refused = _as(cli, workers, "mallory", "budget", run_id, "--add", "steps=1")
    assert refused.returncode == 2 and "who may decide: finance (alice)" in _said(refused)

    store = SqliteStore(cli.store)
    stop_seq = max(e.seq for e in store.events(run_id) if e.event.kind == "budget_exhausted")
    fields = {"run_id": run_id, "kind": "budget", "add": {"steps": 1.0}, "reason": "", "by": "m"}
    fields, identity = with_identity(
        {**fields, "stop_seq": stop_seq},
        cli.dir.parent / "people" / "mallory" / "trestle" / "identity.key",
    )
    signed = signed_payload(
        fields, decision_key(cli.dir.parent / "approval.key"), identity=identity
    )
    row = {"add": {"steps": 1.0}, "by": "m", "stop_seq": stop_seq, "signed": signed}
    seq = append_raw_event(cli.store, run_id, "budget_raised", row)

    raised = _as(cli, workers, "alice", "budget", run_id, "--add", "steps=1")
    assert raised.returncode == 0, _said(raised)
    wait_for(lambda: store.run(run_id).status == "succeeded", what="the run to end")
    assert (cli.dir / "done.log").read_text() == "a\nb\n"
    shown = _as(cli, workers, "alice", "show", run_id, "--json")
    assert f'"forged_seq": {seq}' in shown.stdout, shown.stdout


def test_an_escalation_group_waits_for_the_deadline_on_temporal(cli: Cli, workers: Workers) -> None:
    """The workflow judges an escalation group's decision by its own clock
    (``workflow.now()``), as the local engine does by the driver's."""
    keys = {n: _as(cli, workers, n, "policy", "identity").stdout.strip() for n in ("alice", "lena")}
    toml = cli.write(
        "trestle.toml",
        f'[policy.groups.release]\nalice = "{keys["alice"]}"\n'
        f'[policy.groups.leads]\nlena = "{keys["lena"]}"\n'
        '\n[[policy.approvers]]\ngroups = ["release"]\ndeadline = "1h"\n'
        'escalate_to = ["leads"]\n',
    )
    run_id = _deploy_waiting(cli, workers, toml)
    early = _said(_as(cli, workers, "lena", "approve", f"{run_id}.1"))
    assert "lena is in group 'leads', which may decide from" in early, early
    assert "(after the deadline); who may decide: release (alice)" in early
    assert not (cli.dir / "deploys.log").exists()
