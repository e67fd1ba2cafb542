"""``trestle log --follow`` / ``trestle watch`` and ``trestle prune``, through the real
console script: a run driven by one process, followed from another; old runs pruned
from a real store and its shadow git store."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest

from forked_cli import Started, start_trestle
from test_cli import Cli, flat, run_id_of

SLOW_PLAN = """\
    goal: take a while
    steps:
      - id: first
        run: sleep 0.6
      - id: second
        needs: [first]
        run: sleep 0.6 && echo done > out.txt
        verify:
          - file_exists: out.txt
"""

FAILING_PLAN = """\
    goal: fail slowly
    steps:
      - id: wait
        run: sleep 0.5
      - id: broken
        needs: [wait]
        run: exit 3
"""

IRREVERSIBLE_PLAN = """\
    goal: ask first
    checkpoints: irreversible
    steps:
      - id: prepare
        run: sleep 0.3
      - id: deploy
        needs: [prepare]
        run: echo deployed
        irreversible: true
"""


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path, tmp_path / "t.db")


def start(cli: Cli, plan: str) -> tuple[Started, str]:
    """A run driven in another process; returns it once its id is printed."""
    cli.write("plan.yaml", plan)
    proc = start_trestle(
        ["run", "plan.yaml", "--no-live", "--no-prompt"], cwd=cli.dir, env=cli.env()
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    match = re.fullmatch(r"run (\S+)", first)
    assert match, first
    return proc, match.group(1)


def wait_for(proc: Started, text: str) -> None:
    """Read the process's stdout until a line holds ``text``."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if text in line:
            return
    raise AssertionError(f"{text!r} never came; exit {proc.wait()}")


def lines_of(text: str) -> list[str]:
    """Follow lines without their seq and clock: ``#3    12:00:01 start ...``."""
    return [re.sub(r"^#\d+\s+\d\d:\d\d:\d\d ", "", line) for line in text.splitlines()]


# --- following ----------------------------------------------------------------------------


def test_following_a_live_run_prints_each_event_and_ends_with_its_code(cli: Cli) -> None:
    proc, run_id = start(cli, SLOW_PLAN)
    try:
        followed = cli("log", run_id, "--follow")
    finally:
        driver_out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, driver_out
    assert followed.returncode == 0, followed.stderr
    assert followed.stderr == ""
    lines = lines_of(followed.stdout)
    assert lines[0].startswith("run created")
    progress = [line for line in lines if line.split()[0] in ("start", "done", "finished")]
    assert progress == [
        "start    first (attempt 1)",
        "done     first (attempt 1)",
        "start    second (attempt 1)",
        "done     second (attempt 1)",
        "finished succeeded",
    ]
    assert lines[-1] == "finished succeeded"
    # every recorded event is one line, numbered from 1 with no gap
    seqs = [int(line.split()[0][1:]) for line in followed.stdout.splitlines()]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) == len(cli.json("log", run_id))


def test_watch_is_follow_and_a_dead_lettered_run_exits_3(cli: Cli) -> None:
    proc, run_id = start(cli, FAILING_PLAN)
    try:
        watched = cli("watch", run_id)
    finally:
        proc.communicate(timeout=60)
    assert proc.returncode == 3
    assert watched.returncode == 3, watched.stderr
    lines = lines_of(watched.stdout)
    failed = [line for line in lines if line.startswith("FAILED   broken: ")]
    assert len(failed) == 1 and failed[0].endswith(" [dead-letter queue]"), lines
    assert lines[-1] == "finished needs human"


def test_following_a_run_that_waits_for_a_human_exits_3(cli: Cli) -> None:
    proc, run_id = start(cli, IRREVERSIBLE_PLAN)
    try:
        followed = cli("watch", run_id)
    finally:
        proc.communicate(timeout=60)
    assert followed.returncode == 3, followed.stderr
    lines = lines_of(followed.stdout)
    assert any(line.startswith(f"APPROVE? deploy ({run_id}.1)") for line in lines), lines
    assert lines[-1] == "finished needs human"


def test_following_a_finished_run_prints_it_all_and_exits_at_once(cli: Cli) -> None:
    cli.write("plan.yaml", FAILING_PLAN)
    run_id = run_id_of(cli("run", "plan.yaml", "--no-live"))
    as_lines = cli("log", run_id, "-f")
    assert as_lines.returncode == 3
    as_json = cli("log", run_id, "--follow", "--json")
    assert as_json.returncode == 3
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert records == cli.json("log", run_id)[: len(records)]
    assert len(records) == len(as_lines.stdout.splitlines())
    assert records[-1]["kind"] == "run_finished"


def test_following_an_unknown_run_is_bad_input(cli: Cli) -> None:
    cli.write("plan.yaml", FAILING_PLAN)
    cli("run", "plan.yaml", "--no-live")
    result = cli("watch", "no-such-run")
    assert result.returncode == 2
    assert "no run 'no-such-run'" in result.stderr


def test_ctrl_c_stops_following_quietly_with_130(cli: Cli) -> None:
    proc, run_id = start(cli, SLOW_PLAN.replace("sleep 0.6", "sleep 30", 1))
    follower = subprocess.Popen(
        cli.argv("watch", run_id),
        cwd=cli.dir,
        env=cli.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: a suite started in the background (`make test &`) hands
        # its children SIGINT ignored, and Python then never raises KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_for(follower, "start    first")
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=30)
        assert follower.returncode == 130
        assert err == ""
        assert proc.poll() is None  # the run goes on
    finally:
        proc.send_signal(2)
        proc.communicate(timeout=60)
    assert proc.returncode == 130


def test_following_ends_when_the_driver_is_interrupted(cli: Cli) -> None:
    proc, run_id = start(cli, SLOW_PLAN.replace("sleep 0.6", "sleep 30", 1))
    follower = start_trestle(["watch", run_id], cwd=cli.dir, env=cli.env())
    wait_for(follower, "start    first")
    time.sleep(0.2)
    proc.send_signal(15)  # SIGTERM
    proc.communicate(timeout=60)
    out, err = follower.communicate(timeout=30)
    assert follower.returncode == 143
    assert "INTERRUPTED by SIGTERM" in out
    assert f"run {run_id} was interrupted by SIGTERM; continue with `trestle resume {run_id}`" in (
        " ".join(err.split())
    )


# --- pruning ------------------------------------------------------------------------------

CHECKPOINTED_PLAN = """\
    goal: leave checkpoints
    checkpoints: every_step
    steps:
      - id: make
        run: echo made > made.txt
"""

DAY = 86400.0


def finished_run(cli: Cli, plan: str, name: str) -> str:
    cli.write(name, plan)
    return run_id_of(cli("run", name, "--no-live", "--no-prompt"))


def backdate(cli: Cli, run_id: str, days: float) -> None:
    """Make a run's last event ``days`` older, as time would."""
    with closing(sqlite3.connect(cli.store)) as db, db:
        db.execute(
            "UPDATE runs SET updated_at = updated_at - ? WHERE run_id = ?", (days * DAY, run_id)
        )


def shadow_refs(cli: Cli) -> list[str]:
    out = subprocess.run(
        ["git", "--git-dir", str(cli.dir / "shadow.git"), "for-each-ref", "--format=%(refname)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def test_prune_removes_old_finished_runs_with_their_checkpoints_and_keeps_the_rest(
    cli: Cli,
) -> None:
    old = finished_run(cli, CHECKPOINTED_PLAN, "old.yaml")
    recent = finished_run(cli, CHECKPOINTED_PLAN, "recent.yaml")
    waiting = finished_run(cli, IRREVERSIBLE_PLAN, "waiting.yaml")
    backdate(cli, old, 40)
    backdate(cli, waiting, 40)
    old_events = len(cli.json("log", old))
    assert {ref.split("/")[2] for ref in shadow_refs(cli)} == {old, recent}

    dry = cli("prune", "--older-than", "30d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0].startswith(f"would remove run {old} (succeeded, last event ")
    assert lines[0].endswith(f", {old_events} events)")
    assert lines[1] == (
        f"kept 1 run older than 30d that could still go on: {waiting} (needs human) "
        "(--include-unfinished removes it)"
    )
    assert re.fullmatch(
        rf"would remove 1 run, {old_events} events; the store is [\d,]+ bytes "
        r"\(dry run: nothing removed\)",
        lines[2],
    )
    assert len(cli.json("runs")) == 3

    pruned = cli("prune", "--older-than", "30d")
    assert pruned.returncode == 0, pruned.stderr
    lines = pruned.stdout.splitlines()
    assert lines[0].startswith(f"removed run {old} (succeeded, ")
    summary = re.fullmatch(
        rf"removed 1 run, {old_events} events, 2 checkpoints; "
        r"the store went from ([\d,]+) to ([\d,]+) bytes",
        lines[2],
    )
    assert summary, lines[2]
    before, after = (int(n.replace(",", "")) for n in summary.groups())
    assert after <= before  # a few small runs share pages; the store suite shows it shrink
    assert {r["run_id"] for r in cli.json("runs")} == {recent, waiting}
    gone = cli("log", old)
    assert gone.returncode == 2 and f"no run {old!r}" in gone.stderr
    assert {ref.split("/")[2] for ref in shadow_refs(cli)} == {recent}
    assert cli("checkpoints", recent).stdout.count(" make attempt 1 ") == 2

    again = cli("prune", "--older-than", "30d", "--include-unfinished", "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert [r["run_id"] for r in report["runs"]] == [waiting]
    assert report["runs"][0]["status"] == "needs_human"
    assert report["checkpoints"] == 0
    assert [r["run_id"] for r in cli.json("runs")] == [recent]


def test_prune_keeps_a_run_a_live_process_drives(cli: Cli) -> None:
    proc, run_id = start(cli, SLOW_PLAN.replace("sleep 0.6", "sleep 30", 1))
    try:
        wait_for(proc, "start    first")
        time.sleep(1.0)  # its process recorded too: nothing more until the sleep ends
        backdate(cli, run_id, 40)
        result = cli("prune", "--older-than", "30d", "--include-unfinished")
        assert result.returncode == 0, result.stderr
        assert f"kept 1 run a live process drives: {run_id}" in result.stdout
        assert "removed 0 runs" in result.stdout
    finally:
        proc.send_signal(2)
        proc.communicate(timeout=60)
    assert [r["run_id"] for r in cli.json("runs")] == [run_id]


def test_prune_keeps_a_run_taken_up_after_it_was_chosen(cli: Cli) -> None:
    # a `trestle resume` between prune's choice and its deletion: the run's events and
    # checkpoints were deleted under its driver, whose attempt then ran with no record
    from trestle.lifecycle.lease import this_process
    from trestle.operations.prune import choose, prune
    from trestle.store import SqliteStore

    names = ("t", "a", "l")
    taken, asked, left = (finished_run(cli, CHECKPOINTED_PLAN, f"{n}.yaml") for n in names)
    for run_id in (taken, asked, left):
        backdate(cli, run_id, 40)
    refs = shadow_refs(cli)
    store = SqliteStore(cli.store)
    try:
        chosen = choose(store, older_than=30 * DAY, now=time.time())
        assert sorted(r.run_id for r in chosen.remove) == sorted((taken, asked, left))
        lease = store.acquire_lease(taken, this_process(), ttl=60.0, now=time.time())
        store.add_request(asked, "retry", "make", "once more", now=time.time())
        done = prune(store, chosen.remove)
        assert sorted(r.run_id for r in done.driven) == sorted((taken, asked))
        assert [r.run_id for r in done.runs] == [left]
        held = store.lease(taken)
        assert held is not None and held.token == lease.token
        again = prune(store, chosen.remove)  # a second prune of the same choice, late
        assert again.runs == [] and store.lease(left) is None
    finally:
        store.close()
    assert sorted(r["run_id"] for r in cli.json("runs")) == sorted((taken, asked))
    assert [r for r in shadow_refs(cli) if taken in r] == [r for r in refs if taken in r]


@pytest.mark.parametrize("age", ["30", "thirty days", "30x", "-1d", ""])
def test_prune_refuses_an_age_it_cannot_read(cli: Cli, age: str) -> None:
    result = cli("prune", "--older-than", age)
    assert result.returncode == 2
    assert "Invalid value for --older-than" in flat(result.stderr)
    assert "expected a number and a unit (s, m, h, d or w), like 30d, 12h or 90m" in flat(
        result.stderr
    )


def test_prune_with_nothing_old_removes_nothing(cli: Cli) -> None:
    run_id = finished_run(cli, CHECKPOINTED_PLAN, "plan.yaml")
    result = cli("prune", "--older-than", "90m")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("removed 0 runs, 0 events")
    assert [r["run_id"] for r in cli.json("runs")] == [run_id]


def test_prune_goes_on_past_what_a_killed_prune_left(cli: Cli) -> None:
    # a prune killed while git packed the refs left a ref's lock (of a run it kept), and
    # gc's pid file: every later prune failed half-way, "remove the file manually", after
    # it had deleted a run's events, so that run's checkpoints were kept for ever
    old = finished_run(cli, CHECKPOINTED_PLAN, "old.yaml")
    kept = finished_run(cli, CHECKPOINTED_PLAN, "kept.yaml")
    backdate(cli, old, 40)
    git_dir = cli.dir / "shadow.git"
    [after] = [
        r
        for r in shadow_refs(cli)
        if r.startswith(f"refs/trestle/{kept}/") and r.endswith("/after")
    ]
    (git_dir / f"{after}.lock").write_text("")
    (git_dir / "refs" / "trestle" / old / "stray.lock").write_text("")
    (git_dir / "gc.pid").write_text(f"{os.getpid()} {socket.gethostname()}")  # alive
    pruned = cli("prune", "--older-than", "30d")
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert {ref.split("/")[2] for ref in shadow_refs(cli)} == {kept}
    assert [r["run_id"] for r in cli.json("runs")] == [kept]
    assert cli("checkpoints", kept).stdout.count(" make attempt 1 ") == 2
