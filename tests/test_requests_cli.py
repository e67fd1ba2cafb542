"""What ``trestle retry``/``skip``/``approve``/``reject`` say about the request they queue.

While a live process drives the run they wait for its outcome and print it (a refusal
is exit 2, with the reason); otherwise they say the request is queued and that the
next driver will apply or refuse it. The real console script runs in subprocesses
against a real SQLite store, and the driving ``trestle run`` is a process of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from forked_cli import run_trestle
from trestle.store import SqliteStore
from trestle.trust.signing import decision_key, signed_payload

PATIENCE = 60.0  # a guard against a hung child; nothing asserts how long anything takes


@dataclass(frozen=True)
class Cli:
    dir: Path
    store: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "TRESTLE_STORE"}
        env.update(COLUMNS="200", NO_COLOR="1", TERM="dumb", TRESTLE_STORE=str(self.store))
        return env

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_trestle(args, cwd=self.dir, env=self.env(), timeout=PATIENCE)

    def json(self, *args: str) -> Any:
        result = self(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "trestle", *args],
            cwd=self.dir,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    yield Cli(tmp_path, tmp_path / "trestle.db")


def flat(text: str) -> str:
    return " ".join(text.split())


def wait_for(what: str, ready: Callable[[], bool], driver: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + PATIENCE
    while not ready():
        assert driver.poll() is None, f"the driver exited before {what}"
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.05)


LIVE = """
    steps:
      - {id: build, run: test -f fixed, retries: 0}
      - {id: deploy, run: echo deployed >> deploys.log, irreversible: true}
      - {id: hold, run: "while [ ! -f release ]; do sleep 0.05; done"}
"""


def test_requests_to_a_live_run_say_what_became_of_them(cli: Cli) -> None:
    (cli.dir / "plan.yaml").write_text(textwrap.dedent(LIVE))
    driver = cli.start("run", "plan.yaml", "--no-live", "--no-prompt")
    try:
        wait_for("the run", lambda: cli.store.exists() and bool(cli.json("runs")), driver)
        run_id = cli.json("runs")[0]["run_id"]
        wait_for("build dead-lettered", lambda: bool(cli.json("dlq")), driver)
        wait_for("deploy's approval", lambda: bool(cli.json("inbox")), driver)
        (cli.dir / "fixed").touch()

        retried = cli("retry", run_id, "build", "--reason", "fixed is there now")
        approved = cli("approve", f"{run_id}.1")
        # by now 'build' succeeded or runs: the CLI refuses before anything is queued
        skipped = cli("skip", run_id, "build", "--reason", "too late")
    finally:
        (cli.dir / "release").touch()
        out, err = driver.communicate(timeout=PATIENCE)

    assert retried.returncode == 0, retried.stderr
    assert flat(retried.stdout) == (
        f"run {run_id} reopened 'build': it gets a fresh set of attempts"
    )
    assert approved.returncode == 0, approved.stderr
    assert flat(approved.stdout).startswith(f"run {run_id} recorded {run_id}.1 as approved by ")
    assert skipped.returncode == 2
    assert "cannot skip step 'build'" in flat(skipped.stderr)
    assert driver.returncode == 0, out + err
    assert (cli.dir / "deploys.log").read_text() == "deployed\n"


def test_a_request_nobody_drives_is_said_to_be_queued(cli: Cli) -> None:
    (cli.dir / "plan.yaml").write_text(textwrap.dedent(LIVE.replace("while", "until")))
    ran = cli("run", "plan.yaml", "--no-live", "--no-prompt")
    assert ran.returncode == 3, ran.stdout + ran.stderr
    run_id = cli.json("runs")[0]["run_id"]

    rejected = cli("reject", f"{run_id}.1", "--reason", "not today")
    skipped = cli("skip", run_id, "build", "--reason", "built by hand")

    later = f"it will be applied or refused when the run is resumed: `trestle resume {run_id}`"
    assert flat(rejected.stdout) == f"rejected {run_id}.1: queued (request 1); {later}"
    assert flat(skipped.stdout) == f"skip of 'build': queued (request 2); {later}"
    resumed = cli("resume", run_id, "--no-live", "--no-prompt")
    assert f"decided  {run_id}.1: reject by " in resumed.stdout
    assert "skipped  build: built by hand" in resumed.stdout


def test_the_inbox_card_says_why_an_earlier_decision_was_refused(cli: Cli) -> None:
    (cli.dir / "plan.yaml").write_text(textwrap.dedent(LIVE.replace("while", "until")))
    assert cli("run", "plan.yaml", "--no-live", "--no-prompt").returncode == 3
    run_id = cli.json("runs")[0]["run_id"]
    # a genuine decision, made for an action other than the one waiting now
    fields = {"run_id": run_id, "approval": 1, "verdict": "approve", "action_hash": "0" * 64}
    store = SqliteStore(cli.store)
    try:
        payload = signed_payload(fields, decision_key())
        store.add_request(run_id, "decision", "deploy", "", now=0.0, payload=payload)
    finally:
        store.close()
    assert cli("resume", run_id, "--no-live", "--no-prompt").returncode == 3

    inbox = cli("inbox")

    why = "the action changed since it was shown: ask again"
    assert f"refused a decision: {why}" in flat(inbox.stdout)
    [card] = cli.json("inbox")
    assert card["refused"] == [why]
    shown = cli.json("show", run_id)
    assert [(r["request"], r["approval"], r["reason"]) for r in shown["refused"]] == [
        ("decision", 1, why)
    ]
