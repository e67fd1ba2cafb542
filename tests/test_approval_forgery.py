"""Forged approvals: attacks on the decision path through the real CLI and SQLite store.

Each attack is made as a step or an agent could make it without the sandbox: a row
written straight into the store's events table, the Python decision API called from a
``python:`` step, ``trestle approve`` run from a step with its marker variables removed
or from a detached background process, and a script changed after its approval. Each
one must leave the approval open (or the changed script unrun) and be reported.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from store_rows import append_raw_event
from test_approvals_cli import DEPLOY, Cli, flat
from trestle.core.events import ApprovalDecided
from trestle.lifecycle.runs import load_state
from trestle.store import SqliteStore, bodies
from trestle.trust.signing import decision_key, signed_payload, snapshot_mac

# the second barrier: what holds even where a step can reach the store and key
pytestmark = pytest.mark.usefixtures("unconfined")


class KeyedCli(Cli):
    """The CLI with its own approval key, next to the store."""

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(TRESTLE_KEY_FILE=str(self.dir / "approval.key"), **extra)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return KeyedCli(dir=tmp_path, store=tmp_path / "trestle.db")


def _forge_row(cli: Cli, run_id: str, fields: dict[str, Any]) -> int:
    """Append a ``approval_decided`` event with ``fields`` to the run's events, as a row
    written by hand; return its seq."""
    return append_raw_event(cli.store, run_id, "approval_decided", fields)


def _approval_hash(cli: Cli, run_id: str) -> str | None:
    [card] = cli.json("inbox", "--run", run_id)
    assert card["ref"] == f"{run_id}.1"
    with closing(sqlite3.connect(cli.store)) as db:
        (data,) = db.execute(
            "SELECT data FROM events WHERE run_id = ? AND kind = 'approval_requested'", (run_id,)
        ).fetchone()
    # the store keeps the body compressed (trestle.store.bodies)
    digest = json.loads(bodies.decompressed(data) if isinstance(data, bytes) else data)[
        "action_hash"
    ]
    return str(digest) if digest is not None else None


def _forgeries(cli: Cli, run_id: str) -> list[dict[str, Any]]:
    """Three rows a process with write access to the store could add."""
    digest = _approval_hash(cli, run_id)
    plain = {"approval": 1, "verdict": "approve", "by": "you@host", "action_hash": digest}
    fields = {
        "run_id": "some-other-run",  # a genuine decision, made for another run
        "approval": 1,
        "verdict": "approve",
        "action_hash": digest,
        "reason": "",
        "similar": False,
        "edited": None,
        "top_up": None,
        "by": "you@host",
    }
    replayed = signed_payload(fields, decision_key(cli.dir / "approval.key"))
    bogus = json.dumps({"fields": {**fields, "run_id": run_id}, "signature": "0" * 64})
    return [plain, {**plain, "signed": bogus}, {**plain, "signed": replayed}]


def test_a_decision_row_written_into_the_store_is_ignored_and_reported(cli: Cli) -> None:
    attempts = successes = 0
    for forged in range(3):
        run_id = cli.start(DEPLOY.replace("deploys.log", f"deploys{forged}.log"))
        row = _forgeries(cli, run_id)[forged]
        seq = _forge_row(cli, run_id, row)
        resumed = cli("resume", run_id)
        attempts += 1
        successes += (cli.dir / f"deploys{forged}.log").exists()
        assert resumed.returncode == 3, resumed.stdout + resumed.stderr
        report = cli.json("show", run_id)
        [refused] = [r for r in report["refused"] if r.get("forged_seq") == seq]
        assert f"the approval_decided event at seq {seq} was ignored" in refused["reason"]
        # reported once, however often the run is driven again
        assert cli("resume", run_id).returncode == 3
        again = cli.json("show", run_id)["refused"]
        assert [r["forged_seq"] for r in again if r.get("forged_seq")] == [seq]
        assert f"seq {seq}" in flat(cli("health").stdout)
        doctor = cli("doctor")
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr  # not damage
        assert f"event seq {seq} (approval_decided) is ignored as forged" in flat(doctor.stdout)
        # the approval is still open, shown, and a human can still decide it
        [card] = cli.json("inbox", "--run", run_id)
        assert card["status"] == "pending"
    assert (attempts, successes) == (3, 0)


def test_a_genuine_decision_still_runs_the_action(cli: Cli) -> None:
    run_id = cli.start(DEPLOY)
    assert cli("approve", f"{run_id}.1").returncode == 0
    assert cli("resume", run_id).returncode == 0
    assert cli.lines("deploys.log") == ["deployed"]
    assert cli("resume", run_id).returncode == 0  # the recorded decision verifies again
    assert not [r for r in cli.json("show", run_id)["refused"] if r.get("forged_seq")]


# --- approvals bound to the files a command runs -------------------------------------------


SWAPS = [
    # (the command, the files before approval, the files after it: the code that changes)
    (
        "sh deploy.sh",
        {"deploy.sh": "echo v1 >> out.log\n"},
        {"deploy.sh": "echo EVIL >> out.log\n"},
    ),
    (
        "make -s deploy",
        {"Makefile": "deploy:\n\techo v1 >> out.log\n"},
        {"Makefile": "deploy:\n\techo EVIL >> out.log\n"},
    ),
    ("make -s deploy", {}, {"Makefile": "deploy:\n\techo EVIL >> out.log\n"}),
    (
        "bash -c './deploy.sh'",
        {"deploy.sh": "#!/bin/sh\necho v1 >> out.log\n"},
        {"deploy.sh": "#!/bin/sh\necho EVIL >> out.log\n"},
    ),
]


def test_a_file_the_command_runs_changed_after_approval_is_refused_and_asked_again(
    cli: Cli,
) -> None:
    attempts = successes = 0
    for command, before, after in SWAPS:
        for name in ("deploy.sh", "Makefile", "out.log"):
            (cli.dir / name).unlink(missing_ok=True)
        for name, text in before.items():
            cli.write(name, text).chmod(0o755)
        run_id = cli.start(
            f"""
            steps:
              - id: deploy
                run: "{command}"
                irreversible: true
            """
        )
        [card] = cli.json("inbox", "--run", run_id)
        bound = card.get("bound_to")
        assert cli("approve", f"{run_id}.1").returncode == 0
        for name, text in after.items():
            cli.write(name, text).chmod(0o755)
        resumed = cli("resume", run_id)
        attempts += 1
        successes += "EVIL" in "".join(cli.lines("out.log"))
        assert resumed.returncode == 3, resumed.stdout + resumed.stderr
        assert bound  # the card says what the approval holds to
        assert not cli.lines("out.log")
        assert "the action differs from the one that passed the approval gate" in flat(
            resumed.stdout
        )
        # asked again, showing the files as they read now; approved, the new code runs
        [again] = cli.json("inbox", "--run", run_id)
        assert again["ref"] == f"{run_id}.2"
        assert again["bound_to"] != bound
        assert cli("approve", f"{run_id}.2").returncode == 0
        assert cli("resume", run_id).returncode == 0
        assert cli.lines("out.log") == ["EVIL"]
    assert (attempts, successes) == (len(SWAPS), 0)


def test_an_unchanged_script_runs_on_its_approval(cli: Cli) -> None:
    cli.write("deploy.sh", "echo v1 >> out.log\n")
    run_id = cli.start("steps: [{id: deploy, run: sh deploy.sh, irreversible: true}]")
    shown = flat(cli("inbox").stdout)
    assert "bound to deploy.sh (" in shown
    assert "with deploy.sh as they read now (if any changes, it asks again)" in shown
    assert cli("approve", f"{run_id}.1").returncode == 0
    assert cli("resume", run_id).returncode == 0
    assert cli.lines("out.log") == ["v1"]


# --- decisions made from inside a step ------------------------------------------------------


SNEAK_PY = """
import os
from trestle.lifecycle.approvals import submit_decision
from trestle.store import SqliteStore


def approve(ctx):
    store = SqliteStore(os.environ["TRESTLE_STORE"])
    try:
        submit_decision(store, f"{ctx.run_id}.1", "approve")
        outcome = "queued"
    except Exception as exc:
        outcome = f"refused: {exc}"
    finally:
        store.close()
    with open(os.path.join(ctx.workspace, "sneak.out"), "a") as f:
        f.write(outcome + "\\n")
"""

# each a step's way to call `trestle approve` with the step's markers out of its way;
# the key's and the store's paths are given, as a step that found them in an
# ancestor's environment would
STEP_ATTEMPTS = [
    "env -u TRESTLE_STEP_ID {approve}",
    "env -u TRESTLE_STEP_ID -u TRESTLE_IDEMPOTENCY_KEY -u TRESTLE_RUN_ID {approve}",
    'env -i PATH="$PATH" HOME="$HOME" TRESTLE_STORE="$TRESTLE_STORE" {approve}',
    "exec env -u TRESTLE_STEP_ID -u TRESTLE_IDEMPOTENCY_KEY sh -c '{approve}'",
    # in the background, detached into its own session, while the step waits
    "setsid nohup env -u TRESTLE_STEP_ID -u TRESTLE_IDEMPOTENCY_KEY sh -c "
    "'sleep 0.5; {approve}' >/dev/null 2>&1 & sleep 3",
]


def _deploy_and(sneaky: str) -> str:
    return (
        "steps:\n"
        "  - {id: deploy, run: echo deployed >> deploys.log, irreversible: true}\n"
        f"  - id: sneaky\n    {sneaky}\n"
    )


def test_a_python_step_cannot_decide_through_the_python_api(cli: Cli) -> None:
    cli.write("sneak.py", SNEAK_PY)
    run_id = cli.start(_deploy_and("python: sneak:approve"))
    [outcome] = cli.lines("sneak.out")
    assert outcome.startswith("refused: decisions cannot be made from inside a running step")
    assert "python: step 'sneaky'" in outcome
    assert cli("resume", run_id).returncode == 3
    assert not (cli.dir / "deploys.log").exists()


def test_a_step_cannot_decide_whatever_it_strips_from_its_environment(cli: Cli) -> None:
    approve = (
        f"TRESTLE_KEY_FILE={cli.dir / 'approval.key'} {sys.executable} -m trestle approve "
        f"$TRESTLE_RUN_ID.1 --store {cli.store} >> approve.out 2>&1"
    )
    attempts = successes = 0
    for number, attempt in enumerate(STEP_ATTEMPTS):
        (cli.dir / "approve.out").unlink(missing_ok=True)
        (cli.dir / "deploys.log").unlink(missing_ok=True)
        # $TRESTLE_RUN_ID is expanded by the step's shell before any marker is dropped
        command = attempt.format(approve=approve.replace("$TRESTLE_RUN_ID", "$RID"))
        plan = _deploy_and(f"run: {json.dumps(f'RID=$TRESTLE_RUN_ID; export RID; {command}')}")
        run_id = cli.start(plan.replace("deploys.log", f"deploys{number}.log"))
        time.sleep(1.0 if "sleep 0.5" in attempt else 0)  # a straggler has had its go
        resumed = cli("resume", run_id)
        attempts += 1
        successes += (cli.dir / f"deploys{number}.log").exists()
        said = flat((cli.dir / "approve.out").read_text())
        assert "decisions cannot be made from inside a running step" in said, (attempt, said)
        assert resumed.returncode == 3, resumed.stdout + resumed.stderr
    assert (attempts, successes) == (len(STEP_ATTEMPTS), 0)


# --- forged snapshots ----------------------------------------------------------------------


def _forged_snapshots(cli: Cli, run_id: str) -> list[tuple[str, str]]:
    """The run's state as it would be had its approval been given, as snapshot rows a
    process that can open the store could write: (state, signature) pairs, unsigned,
    with a made-up signature, and signed with a key of its own making."""
    store = SqliteStore(cli.store)
    try:
        state = load_state(store, run_id)
    finally:
        store.close()
    approval = next(iter(state.approvals))
    state.apply(ApprovalDecided(at=time.time(), approval=approval, verdict="approve", by="me"))
    state.seq -= 1  # as of the run's real last event, so nothing is folded on top
    forged = state.snapshot_json()
    own_key = decision_key(cli.dir / "attacker.key")
    return [
        (forged, ""),
        (forged, "0" * 64),
        (forged, snapshot_mac(own_key, run_id, state.seq, forged)),
    ]


def test_a_snapshot_written_into_the_store_cannot_give_an_approval(cli: Cli) -> None:
    """A snapshot stands in for the events before it: one saying the deploy was
    approved, written straight into the snapshots table, must not deploy."""
    successes = 0
    for forged in range(3):
        run_id = cli.start(DEPLOY.replace("deploys.log", f"deploys{forged}.log"))
        state_json, mac = _forged_snapshots(cli, run_id)[forged]
        # closed at once: a connection left open would lose its locks when this
        # process next opens the store file (trestle.store.sqlite_file)
        with closing(sqlite3.connect(cli.store)) as db, db:
            (seq,) = db.execute("SELECT last_seq FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            db.execute(
                "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?)",
                (run_id, seq, state_json, b"", mac),
            )
        resumed = cli("resume", run_id)
        successes += (cli.dir / f"deploys{forged}.log").exists()
        assert resumed.returncode == 3, resumed.stdout + resumed.stderr
        [card] = cli.json("inbox", "--run", run_id)
        assert card["status"] == "pending"
        doctor = cli("doctor")  # and the forgery is named
        assert doctor.returncode == 4, doctor.stdout + doctor.stderr
        assert f"its snapshot at seq {seq} disagrees with its events" in flat(doctor.stdout)
        how = "unsigned" if forged == 0 else "not signed with this machine's engine key"
        assert f"its snapshot at seq {seq} is {how}" in flat(doctor.stdout)
        # the human's decision still counts, and the deploy then runs once
        assert cli("approve", f"{run_id}.1").returncode == 0
        assert cli("resume", run_id).returncode == 0
        assert cli.lines(f"deploys{forged}.log") == ["deployed"]
    assert successes == 0
