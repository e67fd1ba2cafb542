"""Following a run on Temporal says what is true, on the real dev server: ``resume``
follows the execution it woke, not the end the store held before; a child's approval
wakes its Temporal root; a queue no worker polls is named within seconds (or, asked
not to wait, exits 10); a worker may start before its store exists; a workflow whose
task keeps failing (a damaged blob) is named as such, not taken for a missing worker;
a worker killed mid-step, still listed as polling, is doubted once its workflow's task
waits untaken, and a decision whose workflow no worker takes up (its worker was killed
while the run waited) names the worker to start; Trestle's search attributes find runs
in Temporal's own listing."""

from __future__ import annotations

import asyncio
import select
from pathlib import Path

import pytest
from temporalio.client import Client

from forked_cli import run_trestle, start_trestle
from temporal_helpers import Workers, step_process_running, wait_for
from test_cli import Cli, run_id_of
from trestle.engines.temporal.connect import converter
from trestle.lifecycle import doorbell
from trestle.lifecycle.approvals import queue_decision
from trestle.store import SqliteStore

pytestmark = pytest.mark.slow

SHIP = """\
    goal: ship once
    steps:
      - id: build
        run: echo built > built.txt
      - id: ship
        needs: [build]
        run: echo shipped >> shipped.txt
        irreversible: true
"""


def listed(address: str, query: str, blobs: Path) -> list[str]:
    """The workflow ids ``temporal workflow list --query QUERY`` finds."""

    async def ask() -> list[str]:
        client = await Client.connect(address, data_converter=converter(blobs))
        return [w.id async for w in client.list_workflows(query)]

    return asyncio.run(ask())


def flat(text: str) -> str:
    return " ".join(text.split())


def test_resume_follows_the_execution_it_woke_and_runs_are_searchable(
    cli: Cli, workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    workers.start()
    plan = cli.write("plan.yaml", SHIP)
    waiting = workers.run("run", plan, "--no-live", "--no-prompt", *workers.flags())
    assert waiting.returncode == 3, waiting.stdout + waiting.stderr
    run_id = run_id_of(waiting)
    said = flat(waiting.stdout)
    assert "goes on by itself once the decision is queued" in said, said
    assert "trestle resume" not in said  # a decision's signal wakes the workflow
    blobs = cli.store.parent / "blobs"
    waiting_query = "TrestleStatus = 'needs_human' AND TrestleWaitingSteps = 'ship'"
    wait_for(lambda: listed(workers.address, waiting_query, blobs) == [run_id], what="search")
    # a decision queued that nothing told the workflow of: `resume` wakes it, and
    # follows it past the needs_human the store still holds
    monkeypatch.setattr(doorbell, "_provided", {"temporal": lambda *_: False})
    queue_decision(SqliteStore(cli.store), f"{run_id}.1", "approve")
    resumed = workers.run("resume", run_id, "--no-live", "--no-prompt")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (cli.dir / "shipped.txt").read_text() == "shipped\n"
    done = "TrestleStatus = 'succeeded' AND TrestleGoal = 'ship once'"
    wait_for(lambda: listed(workers.address, done, blobs) == [run_id], what="search")


APPROVING_CHILD = """\
    steps:
      - id: ship
        run: echo shipped >> shipped.txt
        approval: confirm
"""

DELEGATING = """\
    goal: release through a child
    steps:
      - id: release
        delegate:
          goal: ship it
          plan: child.yaml
"""


def test_a_childs_approval_wakes_its_temporal_root(cli: Cli, workers: Workers) -> None:
    workers.start()
    cli.write("child.yaml", APPROVING_CHILD)
    plan = cli.write("plan.yaml", DELEGATING)
    waiting = workers.run("run", plan, "--no-live", "--no-prompt", *workers.flags())
    assert waiting.returncode == 3, waiting.stdout + waiting.stderr
    root = run_id_of(waiting)
    child = f"{root}.release.1"
    said = flat(waiting.stdout)
    assert f"waits on its child run {child}" in said and "trestle resume" not in said, said
    approved = workers.run("approve", f"{child}.1")
    assert approved.returncode == 0, approved.stdout + approved.stderr
    # the root's workflow heard, took the child up again, and the child recorded it
    assert f"run {child} recorded {child}.1 as approved" in flat(approved.stdout)
    store = SqliteStore(cli.store)
    wait_for(lambda: store.run(root).status == "succeeded", what="the root to end")
    assert (cli.dir / "shipped.txt").read_text() == "shipped\n"


def test_a_queue_no_worker_polls_is_named_at_once(cli: Cli, workers: Workers) -> None:
    plan = cli.write("plan.yaml", "goal: g\nsteps:\n  - id: a\n    run: echo a >> a.txt\n")
    refused = workers.run(
        "run", plan, "--no-live", "--no-prompt", "--no-wait-for-worker", *workers.flags()
    )
    assert refused.returncode == 10, refused.stdout + refused.stderr
    command = f"`trestle worker --engine temporal --address {workers.address} --task-queue"
    assert f"no worker polls task queue {workers.queue}" in refused.stderr
    assert command in flat(refused.stderr)
    run_id = run_id_of(refused)
    recorded = SqliteStore(cli.store).run(run_id).last_seq
    short = run_trestle(
        ["resume", run_id, "--no-live", "--no-prompt", "--no-wait-for-worker"],
        cwd=cli.dir,
        env={**workers.env, "TRESTLE_TEMPORAL_HEARTBEAT": "0.3"},
        timeout=60,
    )
    assert short.returncode == 2, short.stdout + short.stderr
    assert "$TRESTLE_TEMPORAL_HEARTBEAT='0.3' is shorter than 1 s" in flat(short.stderr)
    assert SqliteStore(cli.store).run(run_id).last_seq == recorded
    watching = workers.start_run("watch", run_id)  # says the same, from Temporal
    assert watching.stderr is not None
    assert f"no worker polls task queue {workers.queue}" in watching.stderr.readline()
    watching.kill()
    watching.communicate()
    resuming = workers.start_run("resume", run_id, "--no-live", "--no-prompt")
    assert resuming.stderr is not None
    line = resuming.stderr.readline()  # within seconds, and it waits
    assert f"run {run_id} waits for one: {command}" in line, line
    workers.start()
    out, err = resuming.communicate(timeout=120)
    assert resuming.returncode == 0, out + err
    assert (cli.dir / "a.txt").read_text() == "a\n"  # the run ran once, when one came


def test_a_worker_started_before_its_store_waits_for_it(tmp_path: Path, address: str) -> None:
    cli = Cli(tmp_path, tmp_path / ".trestle" / "trestle.db")
    env = {k: v for k, v in cli.env().items() if k != "TRESTLE_STORE"}
    pool = Workers(cli, address)
    pool.env = env
    worker = start_trestle(
        ["worker", *pool.flags()],
        cwd=tmp_path,
        env=env,
    )
    pool.running.append(worker)
    try:
        assert worker.stderr is not None
        said = worker.stderr.readline()
        assert "no store yet" in said and "waiting for the first run started here" in said
        assert not cli.store.exists()  # it creates none of its own
        plan = cli.write("plan.yaml", "goal: g\nsteps:\n  - id: a\n    run: 'true'\n")
        ran = pool.run("run", plan, "--no-live", "--no-prompt", *pool.flags())
        assert ran.returncode == 0, ran.stdout + ran.stderr
    finally:
        pool.stop()


def test_a_worker_passes_over_a_store_no_run_of_yours_was_started_in(
    tmp_path: Path, address: str
) -> None:
    """A step can write ``src/.trestle/trestle.db`` in its workspace, holding a run of
    its own making: a worker started in ``src/`` waits, saying why, and serves nothing
    from it."""
    planted = tmp_path / "src" / ".trestle" / "trestle.db"
    planted.parent.mkdir(parents=True)
    SqliteStore(planted).close()
    cli = Cli(tmp_path / "src", planted)
    env = {k: v for k, v in cli.env().items() if k != "TRESTLE_STORE"}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")  # no store used yet
    pool = Workers(cli, address)
    worker = start_trestle(
        ["worker", *pool.flags()],
        cwd=cli.dir,
        env=env,
    )
    pool.running.append(worker)
    try:
        assert worker.stderr is not None
        ready, _, _ = select.select([worker.stderr], [], [], 30)
        assert ready, "the worker said nothing: it took the planted store"
        said = worker.stderr.readline()
        assert f"{planted} is the nearest store from here, but no run of yours" in said
        assert "waiting for a run of yours to be started in it" in said
        assert worker.poll() is None
    finally:
        pool.stop()


BIG_THEN_SHIP = """\
    goal: carry a big file, then ship
    steps:
      - id: big
        write: {path: big.txt, content: "%s"}
      - id: ship
        needs: [big]
        run: echo shipped >> shipped.txt
        irreversible: true
"""


def test_a_damaged_blob_is_named_and_not_taken_for_a_missing_worker(
    cli: Cli, workers: Workers
) -> None:
    first = workers.start()
    plan = cli.write("plan.yaml", BIG_THEN_SHIP % ("x" * 5000))
    waiting = workers.run("run", plan, "--no-live", "--no-prompt", *workers.flags())
    assert waiting.returncode == 3, waiting.stdout + waiting.stderr
    run_id = run_id_of(waiting)
    first.terminate()
    first.wait()
    damaged = list((cli.store.parent / "blobs").glob("*/*"))
    assert damaged, "nothing went to the blob store"
    for blob in damaged:
        blob.write_bytes(b"not what it was")
    workers.start()  # a worker without the workflow in its cache: it replays the history
    resuming = workers.start_run("resume", run_id, "--no-live", "--no-prompt")
    assert resuming.stderr is not None
    said = resuming.stderr.readline()  # the first word it says: no "no worker ..."
    assert f"run {run_id} does not go on: its workflow's task failed" in said, said
    assert "is damaged" in said
    assert SqliteStore(cli.store).run(run_id).status == "needs_human"  # nothing recorded
    assert not (cli.dir / "shipped.txt").exists()


def test_a_childs_share_waits_for_its_siblings_on_temporal_too(cli: Cli, workers: Workers) -> None:
    """Three children of $0.40 under a hard $1.00: two fit at once, the third waits
    for their shares (each spent $0.30) and then fits: the run ends well."""
    workers.start()
    for tag in "abc":
        cli.write(f"{tag}.yaml", f"steps:\n  - id: spend\n    run: echo {tag} >> spent.txt\n"
                  "    cost: 0.3\n")  # fmt: skip
    steps = "".join(
        f"  - id: child-{tag}\n    delegate:\n      goal: spend {tag}\n      plan: {tag}.yaml\n"
        "      budget: {cost: {hard: 0.4}}\n"
        for tag in "abc"
    )
    plan = cli.write("plan.yaml", "budget:\n  cost: {hard: 1.0}\nsteps:\n" + steps)
    ran = workers.run("run", plan, "--no-live", "--no-prompt", *workers.flags())
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "waits child-c: its child's share would spend $1.20 of $1.00" in flat(ran.stdout)
    assert sorted((cli.dir / "spent.txt").read_text().split()) == ["a", "b", "c"]


def test_watch_follows_the_store_alone_when_temporal_cannot_be_reached(cli: Cli) -> None:
    plan = cli.write("plan.yaml", "goal: g\nsteps:\n  - id: a\n    run: 'true'\n")
    unreached = ("--engine", "temporal", "--address", "127.0.0.1:1")
    started = cli("run", plan, "--no-live", "--no-prompt", *unreached)
    assert started.returncode == 2, started.stdout + started.stderr  # recorded, not started
    run_id = run_id_of(started)
    assert (
        f"nothing of run {run_id} was started on Temporal: `trestle resume {run_id}` goes on "
        "once Temporal answers at 127.0.0.1:1"
    ) in flat(started.stderr)
    watching = start_trestle(
        ["watch", run_id_of(started)],
        cwd=cli.dir,
        env=cli.env(),
    )
    assert watching.stderr is not None
    try:
        said = watching.stderr.readline()
        assert "cannot reach Temporal at 127.0.0.1:1" in said, said
        assert "following the store alone" in said
    finally:
        watching.kill()
        watching.communicate()


def test_a_decision_no_worker_takes_up_names_the_worker_to_start(
    cli: Cli, workers: Workers
) -> None:
    worker = workers.start()
    plan = cli.write("plan.yaml", SHIP.replace("irreversible: true", "approval: confirm"))
    waiting = workers.run("run", plan, "--no-live", "--no-prompt", *workers.flags())
    assert waiting.returncode == 3, waiting.stdout + waiting.stderr
    run_id = run_id_of(waiting)
    worker.kill()  # SIGKILL while the run waits on its approval: Temporal lists it still
    worker.wait()
    approved = workers.run("approve", f"{run_id}.1")
    assert approved.returncode == 0, approved.stdout + approved.stderr
    command = (
        f"trestle worker --engine temporal --address {workers.address} "
        f"--task-queue {workers.queue} --store {cli.store}"
    )
    assert (
        "has not read it yet; `trestle log "
        f"{run_id}` will show whether it was applied or refused. No worker has taken the "
        f"workflow's task since the request woke it: if none runs on task queue "
        f"{workers.queue} (a worker killed still counts as polling for a while), start one: "
        f"`{command}`"
    ) in flat(approved.stdout), approved.stdout
    workers.start("--store", str(cli.store))  # as printed; the run goes on by itself
    store = SqliteStore(cli.store)
    wait_for(lambda: store.run(run_id).status == "succeeded", what="the run to succeed")
    assert (cli.dir / "shipped.txt").read_text() == "shipped\n"


def test_a_worker_killed_mid_step_is_doubted_once_its_workflows_task_waits(
    cli: Cli, workers: Workers
) -> None:
    worker = workers.start()
    plan = cli.write("plan.yaml", "goal: g\nsteps:\n  - id: slow\n    run: sleep 3\n")
    following = workers.start_run("run", plan, "--no-live", "--no-prompt", *workers.flags())
    store = SqliteStore(cli.store)
    wait_for(lambda: store.runs(), what="the run to be created")
    run_id = store.runs()[0].run_id
    wait_for(lambda: step_process_running(f"{run_id}/slow/1"), what="the step to start")
    worker.kill()  # Temporal lists it as polling for 90 s more
    worker.wait()
    assert following.stderr is not None
    said = following.stderr.readline()  # before: nothing for 90 s
    command = (
        f"trestle worker --engine temporal --address {workers.address} "
        f"--task-queue {workers.queue} --store {cli.store}"
    )
    assert said.strip() == (
        f"no worker has taken the task of run {run_id}'s workflow for 12 s: if none runs "
        f"on task queue {workers.queue} at {workers.address} (a worker killed still counts "
        f"as polling for a while), start one: `{command}` (Ctrl-C stops waiting, not the run)"
    )
    workers.start("--store", str(cli.store))  # as printed
    out, err = following.communicate(timeout=120)
    assert following.returncode in (0, 3), out + err  # re-run, or escalated to a human
