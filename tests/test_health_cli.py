"""``trestle health`` shows every run that waits on a human, and then exits 1.

A dead letter, an escalation, an approval or a pause holds a run until somebody acts;
health names each one with the command that moves it. The real console script runs
on real plan files against a real SQLite store.
"""

from __future__ import annotations

import json
from pathlib import Path

from test_cli import Cli, flat

DEAD_LETTER = """\
goal: build once the input is there
steps:
  - {id: build, run: test -f input.txt, retries: 0}
  - {id: ship, needs: [build], run: "true"}
"""

APPROVAL = """\
goal: release
steps:
  - {id: deploy, run: echo deployed >> deploys.log, irreversible: true}
"""


def test_a_dead_lettered_step_is_shown_and_health_exits_1(tmp_path: Path) -> None:
    cli = Cli(tmp_path, tmp_path / "t.db")
    cli.write("plan.yaml", DEAD_LETTER)
    ran = cli("run", "plan.yaml", "--no-live")
    assert ran.returncode == 3, ran.stdout + ran.stderr
    run_id = ran.stdout.split()[1]

    health = cli("health")

    assert health.returncode == 1, health.stdout + health.stderr
    text = flat(health.stdout)
    assert f"{run_id} needs human: build once the input is there" in text
    assert (
        "waits for a human: dead letter build: failed after 1 attempt: exit code 1; "
        f"`trestle retry {run_id} build` or `trestle skip {run_id} build --reason ...`"
    ) in text
    [shown] = json.loads(cli("health", "--json").stdout)
    assert [(w["kind"], w["step"]) for w in shown["waiting"]] == [("dead_letter", "build")]
    # its driver exited and released the lease: no heartbeat, not seconds since 1970
    assert (shown["driver_alive"], shown["heartbeat_age"]) == (False, None)
    assert "heartbeat" not in text

    # a skip queued but not applied: health says so and what applies it
    assert cli("skip", run_id, "build", "--reason", "built by hand").returncode == 0
    queued = cli("health")
    assert queued.returncode == 1
    assert (
        "waits for a human: queued: 1 request queued: no driver has applied or refused "
        f"it yet; `trestle resume {run_id}`"
    ) in flat(queued.stdout)

    assert cli("resume", run_id, "--no-live").returncode == 0
    settled = cli("health")
    assert settled.returncode == 0, settled.stdout
    assert "no active runs" in settled.stdout


def test_a_pending_approval_is_shown_and_health_exits_1(tmp_path: Path) -> None:
    cli = Cli(tmp_path, tmp_path / "t.db")
    cli.write("plan.yaml", APPROVAL)
    ran = cli("run", "plan.yaml", "--no-live", "--no-prompt")
    assert ran.returncode == 3, ran.stdout + ran.stderr
    run_id = ran.stdout.split()[1]

    health = cli("health")

    assert health.returncode == 1, health.stdout + health.stderr
    assert (
        f"waits for a human: approval deploy ({run_id}.1): 'deploy' is irreversible; "
        f"`trestle approve {run_id}.1` or `trestle reject {run_id}.1 --reason ...`"
    ) in flat(health.stdout)
