"""What the CLI says matches what happened and what will happen, through the real
``trestle`` with its output piped: resume's promise after an interrupt, an interrupted
run in ``runs`` and ``health``, reasons never cut with "…", no empty or "None"
sentences, and a cancelled run's steps counted as cancelled."""

from __future__ import annotations

import hashlib
import signal
import time
from pathlib import Path

import pytest

from forked_cli import Started, start_trestle
from test_cli import Cli, flat, run_id_of, table_rows


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path, tmp_path / "t.db")


def wait_for(*paths: Path, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not all(p.exists() for p in paths):
        assert time.monotonic() < end, f"{paths} never all appeared"
        time.sleep(0.05)


def driven(cli: Cli, plan: str) -> tuple[Started, str]:
    """``trestle run`` in the background; its run id once it has printed it."""
    plan_file = cli.write("plan.yaml", plan)
    driver = start_trestle(["run", plan_file, "--no-live"], cwd=cli.dir, env=cli.env())
    assert driver.stdout is not None
    return driver, driver.stdout.readline().split()[1]


STOPPED_PLAN = """\
    goal: stop me
    steps:
      - id: blind
        run: touch blind.txt; sleep 30
      - id: safe
        run: test -f safe.txt || { touch safe.txt; sleep 30; }
        idempotent: true
"""


def test_an_interrupted_run_says_what_resume_will_do_and_is_listed_as_interrupted(
    cli: Cli,
) -> None:
    driver, run_id = driven(cli, STOPPED_PLAN)
    wait_for(cli.dir / "blind.txt", cli.dir / "safe.txt")
    driver.send_signal(signal.SIGTERM)
    driver.communicate(timeout=60)
    assert driver.returncode == 143

    # resume runs 'safe' again; 'blind' (no checks, not idempotent) goes to a human
    shown = flat(cli("show", run_id).stdout)
    assert (
        "the run was interrupted (SIGTERM); it stopped mid-step 'safe', which resume runs "
        "again; and 'blind', which resume does not run again: it has no verify checks and "
        "is not idempotent, so whether it took effect goes to a human: continue with "
        f"`trestle resume {run_id}`."
    ) in shown
    assert "'blind', 'safe' mid-step, which resume probes and runs again" not in shown

    listed = cli("runs")
    [row] = table_rows(listed.stdout)
    assert row[:2] == [run_id, "interrupted"]
    assert (
        f"run {run_id} was interrupted by SIGTERM: continue with `trestle resume {run_id}`"
    ) in listed.stdout

    health = cli("health")
    assert f"{run_id} interrupted: stop me" in health.stdout
    assert f"  interrupted by SIGTERM: continue with `trestle resume {run_id}`" in health.stdout

    resumed = cli("resume", run_id)
    assert resumed.returncode == 3  # 'blind' waits on a human; 'safe' ran again
    [row] = table_rows(cli("runs").stdout)
    assert row[:2] == [run_id, "needs human"]


def test_an_interrupted_step_with_checks_is_said_to_be_done_if_they_pass(cli: Cli) -> None:
    """It was said to be probed and run again; its checks passed, and it was not."""
    driver, run_id = driven(
        cli,
        "steps:\n  - id: slow\n    run: echo x >> out.txt; sleep 30\n"
        "    verify:\n      - file_exists: out.txt\n",
    )
    wait_for(cli.dir / "out.txt")
    driver.send_signal(signal.SIGTERM)
    driver.communicate(timeout=60)
    assert driver.returncode == 143
    assert (
        "it stopped mid-step 'slow', which resume marks done if its checks pass and "
        "otherwise runs again: continue with"
    ) in flat(cli("show", run_id).stdout)

    assert cli("resume", run_id).returncode == 0
    assert (cli.dir / "out.txt").read_text() == "x\n"  # done, not run again


def test_running_a_plan_again_after_its_driver_was_killed_names_the_run_left(
    cli: Cli,
) -> None:
    """Run again after a ``kill -9``, the plan started over in silence, and the run
    left behind waited unseen; a run of another plan is not named."""
    # the second run finds the file the first one made and ends at once
    driver, run_id = driven(
        cli, "steps:\n  - id: a\n    run: test -f a || { touch a; sleep 30; }\n"
    )
    wait_for(cli.dir / "a")
    driver.kill()
    driver.communicate(timeout=60)
    cli.write("other.yaml", "steps:\n  - id: a\n    run: 'true'\n")
    assert "note:" not in cli("run", "other.yaml", "--no-live").stderr

    again = cli("run", "plan.yaml", "--no-live")
    assert flat(again.stderr) == (
        f"note: run {run_id} lost its driver (it was killed, or its machine stopped): "
        f"continue with `trestle resume {run_id}`; this is a new run."
    )
    assert run_id_of(again) != run_id


def test_the_report_a_signal_ends_with_calls_the_run_interrupted_not_running(cli: Cli) -> None:
    driver, run_id = driven(cli, STOPPED_PLAN)
    wait_for(cli.dir / "blind.txt", cli.dir / "safe.txt")
    driver.send_signal(signal.SIGINT)
    out, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, err
    assert f"run {run_id}: interrupted" in out
    assert f"run {run_id}: running" not in out
    assert f"interrupted by SIGINT; continue with `trestle resume {run_id}`" in flat(err)


def test_the_log_says_a_probed_step_without_checks_had_none_not_that_they_failed(
    cli: Cli,
) -> None:
    driver, run_id = driven(cli, STOPPED_PLAN)
    wait_for(cli.dir / "blind.txt", cli.dir / "safe.txt")
    driver.send_signal(signal.SIGTERM)
    driver.communicate(timeout=60)
    assert cli("resume", run_id).returncode == 3
    probed = [row for row in table_rows(cli("log", run_id).stdout) if row[2] == "step_probed"]
    assert [(row[3], row[5]) for row in probed if row[3] == "blind"] == [("blind", "no checks")]


def test_a_cancelled_runs_stopped_step_is_counted_as_cancelled_not_retry_wait(
    cli: Cli,
) -> None:
    driver, run_id = driven(cli, STOPPED_PLAN)
    wait_for(cli.dir / "blind.txt", cli.dir / "safe.txt")
    assert cli("cancel", run_id, "--reason", "wrong branch").returncode == 0
    driver.communicate(timeout=60)
    [row] = table_rows(cli("runs").stdout)
    assert row[:3] == [run_id, "cancelled", "2 cancelled"]
    assert "retry wait" not in cli("runs").stdout


def test_piped_output_never_cuts_a_reason(cli: Cli) -> None:
    reason = "the freeze is on until monday, wait for the release manager to sign off"
    cli.write("plan.yaml", "steps:\n  - {id: deploy, approval: confirm, run: 'true'}\n")
    run_id = run_id_of(cli("run", "plan.yaml"))
    assert cli("reject", f"{run_id}.1", "--reason", reason).returncode == 0
    resumed = cli("resume", run_id)
    shown = cli("show", run_id)
    for out in (resumed.stdout, shown.stdout):
        assert "…" not in out
        assert ["deploy", "failed", "0", f"rejected by {by(cli, run_id)}: {reason}"] in (
            table_rows(out)
        )


def by(cli: Cli, run_id: str) -> str:
    [decided] = [e for e in cli.json("log", run_id) if e["kind"] == "approval_decided"]
    return str(decided["by"])


def test_a_delegation_without_checks_is_named_in_the_unchecked_note(cli: Cli) -> None:
    cli.write("child.yaml", "steps:\n  - {id: c, run: 'true'}\n")
    cli.write(
        "plan.yaml",
        "steps:\n  - id: child\n    delegate: {plan: child.yaml, goal: do the child}\n",
    )
    done = cli("run", "plan.yaml")
    assert done.returncode == 0, done.stderr
    out = flat(done.stdout)
    assert "no verify checks: only the child run finishing says 'child' worked." in out
    assert "no verify checks: ." not in out


def test_a_step_that_failed_before_any_attempt_says_why_without_counting(cli: Cli) -> None:
    cli.write("child.yaml", "steps:\n  - {id: c, run: 'true'}\n")
    cli.write(
        "plan.yaml",
        "max_children: 0\nsteps:\n"
        "  - id: child\n    delegate: {plan: child.yaml, goal: do the child}\n",
    )
    done = cli("run", "plan.yaml")
    run_id = run_id_of(done)
    why = "it would create child run #1, and the plan allows 0 (max_children)"
    for out in (flat(done.stdout), flat(cli("health").stdout)):
        assert f"failed: {why}" in out
        assert "0 attempts" not in out and "None" not in out
    assert f"'child' failed: {why}. Fix the cause, then `trestle retry {run_id} child`" in (
        flat(done.stdout)
    )


def test_a_run_whose_driver_was_killed_is_listed_as_interrupted_with_the_command(
    cli: Cli,
) -> None:
    driver, run_id = driven(cli, STOPPED_PLAN)
    wait_for(cli.dir / "blind.txt", cli.dir / "safe.txt")
    driver.kill()  # SIGKILL: the driver records nothing
    driver.communicate(timeout=60)

    listed = cli("runs")
    [row] = table_rows(listed.stdout)
    assert row[:2] == [run_id, "interrupted"]
    resume = f"continue with `trestle resume {run_id}`"
    assert (
        f"run {run_id} lost its driver (it was killed, or its machine stopped): {resume}"
    ) in flat(listed.stdout)
    assert cli.json("runs")[0]["driver_lost"] is True
    shown = flat(cli("show", run_id).stdout)
    assert f"run {run_id} lost its driver (it was killed, or its machine stopped): {resume}" in (
        shown
    )
    assert cli.json("show", run_id)["driver_lost"] is True

    health = flat(cli("health").stdout)
    assert f"{run_id} interrupted: stop me" in health
    assert (
        f"interrupted by the loss of its driver (it was killed, or its machine stopped): {resume}"
        in (health)
    )
    assert "step blind running for" in health and f"driver gone: `trestle resume {run_id}`" in (
        health
    )


def test_a_run_its_budget_stopped_waits_in_health_with_the_commands_that_move_it(
    cli: Cli,
) -> None:
    cli.write(
        "plan.yaml",
        "goal: spend\nbudget:\n  steps: {hard: 1}\nsteps:\n"
        "  - {id: a, run: 'true'}\n  - {id: b, run: 'true', needs: [a]}\n",
    )
    run_id = run_id_of(cli("run", "plan.yaml"))
    health = flat(cli("health").stdout)
    assert f"{run_id} stopped: spend" in health
    assert (
        "waits for a human: budget stop: stopped by its budget: would spend 2 steps of 1 "
        f"step (hard steps limit); `trestle budget {run_id} --add steps=1` (or more), "
        f"then `trestle resume {run_id}`"
    ) in health
    assert cli("budget", run_id, "--add", "steps=1").returncode == 0
    assert cli("resume", run_id).returncode == 0
    assert run_id not in cli("health").stdout  # it finished: nothing waits


def test_a_monitor_pause_ends_the_alerts_sentence_before_the_next(cli: Cli) -> None:
    cli.write("trestle.toml", "[monitors]\nstall_after = 1\n[monitors.kinds]\nstalled = 'pause'\n")
    written = hashlib.sha256((cli.dir / "trestle.toml").read_bytes()).hexdigest()
    assert cli("policy", "accept", "--sha256", written).returncode == 0
    cli.write("plan.yaml", "steps:\n  - {id: hang, run: sleep 30}\n")
    paused = flat(cli("run", "plan.yaml").stdout)
    assert "has shown no sign of life for 1 s since event 4. Look at `trestle log" in paused


def test_a_step_whose_driver_was_killed_is_shown_as_interrupted_not_in_progress(
    cli: Cli,
) -> None:
    driver, run_id = driven(cli, STOPPED_PLAN)
    wait_for(cli.dir / "blind.txt", cli.dir / "safe.txt")
    driver.kill()  # kill -9: no interrupt is recorded, the lease is left to expire
    driver.communicate(timeout=60)

    shown = cli("show", run_id).stdout
    rows = table_rows(shown)
    for sid in ("blind", "safe"):  # in the live table, then in the report
        assert rows.count([sid, "interrupted: driver lost", "1", ""]) == 2
    assert "in progress" not in shown and "running" not in shown
    assert f"run {run_id}: interrupted" in shown
    assert "steps: 2 interrupted: driver lost\n" in shown
    [row] = table_rows(cli("runs").stdout)
    assert row[:2] == [run_id, "interrupted"]
    assert f"{run_id} interrupted: stop me" in cli("health").stdout


def test_an_alert_card_counts_the_attempts_its_step_made(cli: Cli) -> None:
    cli.write("trestle.toml", "[monitors]\nstall_after = 1\n[monitors.kinds]\nstalled = 'pause'\n")
    written = hashlib.sha256((cli.dir / "trestle.toml").read_bytes()).hexdigest()
    assert cli("policy", "accept", "--sha256", written).returncode == 0
    cli.write("plan.yaml", "steps:\n  - {id: hang, run: 'sleep 30'}\n")
    run_id = run_id_of(cli("run", "plan.yaml"))

    [card] = cli.json("inbox")
    assert (card["run_id"], card["subject"], card["step"]) == (run_id, "alert", "hang")
    assert card["attempts"] == 1
    inbox = flat(cli("inbox").stdout)
    assert "attempts 1; last error: stalled: no sign of life for 1s" in inbox


def test_an_interrupted_child_is_said_to_be_continued_from_its_root(cli: Cli) -> None:
    """A delegated child is never resumed on its own (``trestle resume CHILD`` is
    refused): ``trestle runs`` names its tree's root, and that command continues it."""
    driver, run_id = driven(
        cli,
        "goal: hand it down\nsteps:\n  - id: hand\n    delegate:\n      goal: slow work\n"
        "      plan:\n        steps:\n          - id: slow\n"
        "            run: echo x >> out.txt; sleep 30\n"
        "            verify:\n              - file_exists: out.txt\n",
    )
    wait_for(cli.dir / "out.txt")
    driver.send_signal(signal.SIGTERM)
    driver.communicate(timeout=60)
    child = f"{run_id}.hand.1"

    listed = cli("runs").stdout
    assert f"continue its tree with `trestle resume {run_id}`" in flat(listed)
    assert f"`trestle resume {child}`" not in flat(listed)
    health = flat(cli("health").stdout)
    assert f"continue its tree with `trestle resume {run_id}`" in health
    assert f"`trestle resume {child}`" not in health
    assert cli("resume", child).returncode == 2  # as it says: refused, naming the root
    assert cli("resume", run_id).returncode == 0
