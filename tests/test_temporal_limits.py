"""What Temporal refuses or closes, on the real dev server: a search attribute value past
2 KiB (a long non-ASCII goal, many steps waiting on a human) made Temporal terminate the
run's workflow before its step ran; a command following a run whose workflow Temporal
closed waited for ever without a word; ``trestle resume``, as then printed, waited up
to a minute in silence for the closed workflow's lease to lapse; and attempts started
together on a run of thousands of steps were lost by their live worker, each waiting
for the store to load the run before its first heartbeat; and a step announced as the
history reached its limit, carried undispatched while the ceiling stopped the others,
was taken by the next execution for one lost mid-step and escalated, never having run;
and a batch committed by a workflow task Temporal then closed wedged its run."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from temporal_helpers import Workers, assert_history_agrees, history, queried_status, wait_for
from test_cli import Cli, run_id_of
from trestle.core.events import StepAttemptLost, StepStarted
from trestle.engines.temporal.connect import converter
from trestle.store import SqliteStore

pytestmark = pytest.mark.slow


def blobs(cli: Cli) -> Path:
    return cli.store.parent / "blobs"


def test_a_long_goal_in_three_byte_characters_runs(cli: Cli, workers: Workers) -> None:
    workers.start()
    plan = cli.write(
        "plan.yaml",
        f"""\
        goal: "{"日" * 2000}"
        steps:
          - id: one
            run: echo hi > hi.txt
    """,
    )
    result = workers.run("run", plan, "--no-live", "--no-prompt", *workers.flags(), timeout=40)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (cli.dir / "hi.txt").read_text() == "hi\n"


def test_a_hundred_steps_waiting_on_a_human_are_reported(cli: Cli, workers: Workers) -> None:
    workers.start()
    steps = "".join(
        f"""
          - id: ship-to-the-customer-region-{n:03}
            run: echo {n} >> shipped.txt
            irreversible: true"""
        for n in range(100)
    )
    plan = cli.write("plan.yaml", f"goal: ship everywhere\nsteps:{steps}\n")
    waiting = workers.run("run", plan, "--no-live", "--no-prompt", *workers.flags(), timeout=40)
    assert waiting.returncode == 3, waiting.stdout + waiting.stderr
    assert not (cli.dir / "shipped.txt").exists()
    asked = queried_status(workers.address, run_id_of(waiting), blobs(cli))
    assert (asked["status"], asked["counts"]) == ("needs_human", {"awaiting_approval": 100})


def test_a_workflow_temporal_terminates_ends_the_following_with_a_word(
    cli: Cli, workers: Workers
) -> None:
    workers.start()
    plan = cli.write(
        "plan.yaml",
        """\
        goal: be cut short
        steps:
          - id: slow
            run: sleep 4; echo done >> done.txt
    """,
    )
    following = workers.start_run("run", plan, "--no-live", "--no-prompt", *workers.flags())
    assert following.stdout is not None
    first = following.stdout.readline()
    run_id = first.split()[1]
    store = SqliteStore(cli.store)
    wait_for(
        lambda: any(isinstance(s.event, StepStarted) for s in store.events(run_id)),
        what="the step to start",
    )

    async def terminate() -> None:
        client = await Client.connect(workers.address, data_converter=converter(blobs(cli)))
        # any client chooses the reason: its lines are not the follower's to print
        reason = f"by an operator\nrun {run_id}: succeeded, nothing to do (exit 0)"
        await client.get_workflow_handle(run_id).terminate(reason=reason)

    asyncio.run(terminate())
    out, err = following.communicate(timeout=40)
    assert following.returncode == 12, out + err
    assert f"run {run_id} is not driven: Temporal closed its workflow (terminated: by an " in err
    assert "by an operator\\nrun " in err
    assert not any(line.startswith(f"run {run_id}: succeeded") for line in err.splitlines())
    assert f"`trestle resume {run_id}`" in err


def test_resume_after_temporal_closed_the_workflow_says_at_once_what_it_waits_for(
    cli: Cli, workers: Workers
) -> None:
    workers.start()
    plan = cli.write("plan.yaml", "goal: g\nsteps:\n  - id: slow\n    run: sleep 30\n")
    following = workers.start_run("run", plan, "--no-live", "--no-prompt", *workers.flags())
    store = SqliteStore(cli.store)
    wait_for(lambda: store.runs(), what="the run to be created")
    run_id = store.runs()[0].run_id
    wait_for(
        lambda: any(isinstance(s.event, StepStarted) for s in store.events(run_id)),
        what="the step to start",
    )

    async def terminate() -> None:
        client = await Client.connect(workers.address, data_converter=converter(blobs(cli)))
        await client.get_workflow_handle(run_id).terminate(reason="by an operator")

    asyncio.run(terminate())
    assert following.wait(timeout=40) == 12
    held = store.lease(run_id)
    assert held is not None and held.owner.host == "temporal"
    recorded = store.run(run_id).last_seq
    resumed = workers.start_run("resume", run_id, "--no-live", "--no-prompt")
    assert resumed.stderr is not None
    said = resumed.stderr.readline()
    # said while the old lease still holds, before the new execution could record
    assert time.time() < held.expires_at and store.run(run_id).last_seq == recorded
    assert store.lease(run_id) == held
    waits = int(said.split("at most ")[1].split(" s")[0])
    assert 0 < waits <= 60, said
    assert (
        f"run {run_id}: its last workflow ended holding the run's lease; the new one waits "
        f"for it to lapse, at most {waits} s more, then goes on (Ctrl-C stops waiting, not "
        "the run)"
    ) == said.strip()
    # and its worker stops when told while it waits: the lease was asked for by a
    # local activity retried for ever, which held SIGTERM up as long as the lease held
    time.sleep(2)  # the new execution is asking for the lease by now
    [worker] = workers.running
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)  # never ended before the lease lapsed
    assert time.time() < held.expires_at


def test_attempts_started_together_on_a_run_of_thousands_of_steps_are_not_lost(
    cli: Cli, workers: Workers
) -> None:
    width = 64
    workers.start("--max-attempts", str(width))
    waiting = "".join(f"  - {{id: w{i:04d}, needs: [gate], run: 'true'}}\n" for i in range(4000))
    wide = "".join(
        f"  - {{id: s{i:02d}, run: echo s{i:02d} >> ledger.txt}}\n" for i in range(width)
    )
    plan = cli.write(
        "plan.yaml",
        f"goal: g\nparallelism: {width + 1}\nsteps:\n"
        f"  - {{id: gate, approval: confirm, run: 'true'}}\n{waiting}{wide}",
    )
    result = workers.run("run", plan, "--no-live", "--no-prompt", *workers.flags())
    assert result.returncode == 3, result.stdout + result.stderr  # the gate waits
    store = SqliteStore(cli.store)
    events = [s.event for s in store.events(run_id_of(result))]
    # before: 18 of 32 lost, by a worker that was alive, and escalated to a human, each
    # waiting for the others' loads before its first heartbeat; then some of 64 at the
    # 2 s heartbeat, reaching the worker's loop 0.1 s apart (see WORKER_SWITCH_INTERVAL)
    assert [e for e in events if isinstance(e, StepAttemptLost)] == []
    assert [e.kind for e in events].count("step_attempt_ended") == width
    ledger = (cli.dir / "ledger.txt").read_text().split()
    assert sorted(ledger) == [f"s{i:02d}" for i in range(width)]


def test_work_announced_at_the_history_limit_runs_once_not_escalated(
    cli: Cli, address: str
) -> None:
    workers = Workers(
        cli, address, TRESTLE_TEMPORAL_HEARTBEAT="2", TRESTLE_TEMPORAL_HISTORY_LIMIT="20"
    )
    steps = "".join(
        f"  - {{id: p{i:02d}, idempotent: true, run: sleep {0.3 + 0.25 * i:.2f}}}\n"
        f"  - {{id: q{i:02d}, needs: [p{i:02d}], run: echo q{i:02d} >> ledger.txt}}\n"
        for i in range(12)
    )
    plan = cli.write("plan.yaml", f"goal: g\nsteps:\n{steps}")
    try:
        workers.start()
        result = workers.run("run", plan, "--no-live", "--no-prompt", *workers.flags())
    finally:
        workers.stop()
    # before: exit 3, a q step lost ('not the running one; not performed') and escalated
    assert result.returncode == 0, result.stdout + result.stderr
    store = SqliteStore(cli.store)
    kinds = {s.event.kind for s in store.events(run_id_of(result))}
    assert "run_interrupted" in kinds  # the ceiling was reached, and stopped p steps
    assert not kinds & {"step_attempt_lost", "step_escalated"}
    assert sorted((cli.dir / "ledger.txt").read_text().split()) == [f"q{i:02d}" for i in range(12)]


FORCE_CLOSE = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_FORCE_CLOSE_COMMAND


def task_failures(workers: Workers, run_id: str, cli: Cli) -> list[int]:
    """Why each of the run's workflow tasks failed so far, as its history records it."""
    return [
        e.workflow_task_failed_event_attributes.cause
        for e in asyncio.run(history(workers.address, run_id, blobs(cli)))
        if isinstance(e, HistoryEvent) and e.HasField("workflow_task_failed_event_attributes")
    ]


def test_a_commit_whose_workflow_task_temporal_closed_is_adopted_not_made_again(
    cli: Cli, workers: Workers
) -> None:
    """Temporal closes a workflow task under which more than 100 events arrived. One that
    had committed a batch was made again by the next task, which folded more endings
    into a longer batch at the same seqs: the store refused it, and the commit was
    retried for ever, the run silent."""
    width = 64
    # Temporal's own heartbeat timeout (10 s), not the suite's 2 s: 64 attempts begun at
    # once on two cores, their first beats came later than 2 s, and one was lost
    workers.env["TRESTLE_TEMPORAL_HEARTBEAT"] = "10"
    workers.start("--max-attempts", str(width))
    # each command says it began, then waits for the test's word (at most 120 s)
    wait = "n=0; while [ ! -e go ] && [ $n -lt 1200 ]; do sleep 0.1; n=$((n+1)); done"
    steps = "".join(
        f"  - {{id: s{i:02d}, run: 'echo {i} >> began.txt; {wait}; echo s{i:02d} >> ledger.txt'}}\n"
        for i in range(width)
    )
    plan = cli.write("plan.yaml", f"goal: g\nparallelism: {width}\nsteps:\n{steps}")
    following = workers.start_run("run", plan, "--no-live", "--no-prompt", *workers.flags())
    store = SqliteStore(cli.store)
    wait_for(lambda: store.runs(), what="the run to be created")
    run_id = store.runs()[0].run_id

    def lines(name: str) -> int:
        path = cli.dir / name
        return len(path.read_text().split()) if path.exists() else 0

    # every command under way: the store may be held now. Held sooner, an attempt not
    # yet begun waited for it behind the worker's lease renewal, on the worker's one
    # store thread, and the test for the attempt (4 minutes on a loaded machine)
    wait_for(lambda: lines("began.txt") == width, timeout=240, what="every command to begin")
    # the first ending's commit waits for the store while the others' 128 events arrive
    held = sqlite3.connect(cli.store, timeout=10)
    held.execute("BEGIN IMMEDIATE")
    try:
        (cli.dir / "go").touch()
        wait_for(lambda: lines("ledger.txt") == width, timeout=120, what="every step's effect")
        # their endings reach Temporal, which closes the workflow task they arrive under
        # once more than 100 events wait on it: the store is held until it has (held a
        # fixed second after the last effect, it was let go too soon on a loaded machine,
        # and the task the test is about was never closed)
        closing = time.monotonic() + 120
        while FORCE_CLOSE not in task_failures(workers, run_id, cli):
            assert time.monotonic() < closing, "Temporal never closed the endings' workflow task"
            time.sleep(1)  # each look reads the whole history
    finally:
        held.rollback()
        held.close()
    out, err = following.communicate(timeout=90)
    assert following.returncode == 0, out + err
    ledger = sorted((cli.dir / "ledger.txt").read_text().split())
    assert ledger == [f"s{i:02d}" for i in range(width)]  # each once
    kinds = [s.event.kind for s in store.events(run_id)]
    assert kinds.count("step_attempt_ended") == width
    assert not {"step_attempt_lost", "step_escalated"} & set(kinds)
    assert FORCE_CLOSE in task_failures(workers, run_id, cli)
    assert_history_agrees(workers, run_id)  # the closed task's batch is in it, adopted
