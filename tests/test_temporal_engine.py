"""The Temporal engine on the real Temporal dev server, through the real ``trestle``
executable: the same plans end alike on both engines; approvals arrive by signal; a
worker killed with SIGKILL mid-step leaves no duplicated side effect; workers share a
queue; a cancel stops a running step; long runs continue as new; large payloads travel
as blob names; bad input is refused with a clear error."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload

from forked_cli import Started, run_trestle
from temporal_helpers import (
    Workers,
    assert_history_agrees,
    comparable,
    executions,
    history,
    perform_identities,
    queried_status,
    step_process_running,
    wait_for,
    workflow_status,
)
from test_cli import Cli, run_id_of
from trestle.core.events import RunCancelled, StepStarted
from trestle.engines.temporal.blobs import ENCODING, BlobCodec, BlobMissingError, Blobs
from trestle.store import SqliteStore
from trestle.trust.signing import config_dir

pytestmark = pytest.mark.slow


def blobs(cli: Cli) -> Path:
    return cli.store.parent / "blobs"


# --- the same plans end alike on both engines -------------------------------------------

PLANS = {
    "fan-out and in, with checks": """\
        goal: fan out and in
        steps:
          - id: fetch
            write: {path: src/a.txt, content: "a\\n"}
          - id: left
            needs: [fetch]
            run: echo left > left.txt
            verify:
              - file_contains: left.txt
                text: left
          - id: right
            needs: [fetch]
            run: echo right > right.txt
          - id: join
            needs: [left, right]
            run: cat left.txt right.txt > both.txt
            verify:
              - file_contains: both.txt
                text: right
    """,
    "a dead letter, and what it blocks": """\
        goal: fail honestly
        steps:
          - id: build
            run: echo trying >> tries.txt; exit 3
            retries: 1
            backoff: {initial: 0.1}
          - id: test
            needs: [build]
            run: "true"
          - id: lint
            run: "true"
            optional: true
    """,
    "an optional step fails, the run goes on": """\
        goal: optional failure
        steps:
          - id: spell
            run: exit 1
            optional: true
          - id: main
            run: echo ok > ok.txt
    """,
}


@pytest.mark.parametrize("name", list(PLANS))
def test_a_plan_ends_alike_on_both_engines(cli: Cli, workers: Workers, name: str) -> None:
    workers.start()
    reports, codes = {}, {}
    for engine in ("local", "temporal"):
        workspace = cli.dir / engine
        workspace.mkdir()
        plan = cli.write(f"{engine}/plan.yaml", PLANS[name])
        out = cli.dir / f"{engine}.json"
        flags = workers.flags() if engine == "temporal" else []
        result = workers.run("run", plan, "--no-live", "--no-prompt", "--report-json", out, *flags)
        codes[engine] = result.returncode
        assert out.exists(), result.stdout + result.stderr
        reports[engine] = comparable(json.loads(out.read_text()))
        files = sorted(p.name for p in workspace.iterdir())
        reports[engine]["files"] = files
        for written in ("tries.txt", "both.txt"):
            if (workspace / written).exists():
                reports[engine][written] = (workspace / written).read_text()
    assert codes["temporal"] == codes["local"]
    assert reports["temporal"] == reports["local"]


# --- approvals by signal ------------------------------------------------------------------

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


def test_an_approval_reaches_the_workflow_by_signal_and_the_run_goes_on(
    cli: Cli, workers: Workers
) -> None:
    workers.start()
    plan = cli.write("plan.yaml", SHIP)
    waiting = workers.run("run", plan, "--no-live", "--no-prompt", *workers.flags())
    assert waiting.returncode == 3, waiting.stdout + waiting.stderr
    run_id = run_id_of(waiting)
    assert not (cli.dir / "shipped.txt").exists()
    asked = queried_status(workers.address, run_id, blobs(cli))
    assert (asked["status"], asked["counts"]) == (
        "needs_human",
        {"awaiting_approval": 1, "succeeded": 1},
    )
    inbox = workers.run("inbox")
    assert f"approval {run_id}.1" in inbox.stdout and "'ship' is irreversible" in inbox.stdout
    approved = workers.run("approve", f"{run_id}.1")
    assert approved.returncode == 0, approved.stderr
    assert "approved" in approved.stdout
    store = SqliteStore(cli.store)
    wait_for(lambda: store.run(run_id).status == "succeeded", what="the approved run to end")
    assert (cli.dir / "shipped.txt").read_text() == "shipped\n"
    # the report said `trestle resume` after approving: following it changes nothing
    resumed = workers.run("resume", run_id, "--no-live", "--no-prompt")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (cli.dir / "shipped.txt").read_text() == "shipped\n"
    started = [s.event.step for s in store.events(run_id) if isinstance(s.event, StepStarted)]
    assert started == ["build", "ship"]
    assert_history_agrees(workers, run_id)  # `resume` started a second execution


def test_an_approval_on_a_worker_reaches_the_operators_webhook(cli: Cli, workers: Workers) -> None:
    """A worker's commit activity hands each batch to its notifier (docs/notifications.md)."""
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        config_dir().mkdir(parents=True, exist_ok=True)
        (config_dir() / "notify.toml").write_text(
            f'[targets.chat]\ntype = "webhook"\nurl = "{url}"\n', encoding="utf-8"
        )
        workers.start()
        plan = cli.write("plan.yaml", SHIP)
        waiting = workers.run("run", plan, "--no-live", "--no-prompt", *workers.flags())
        assert waiting.returncode == 3, waiting.stdout + waiting.stderr
        run_id = run_id_of(waiting)
        wait_for(lambda: bool(received), what="the approval's notice")
        [notice] = received
        assert (notice["kind"], notice["ref"]) == ("approval", f"{run_id}.1")
        assert notice["text"].startswith("Trestle: step 'ship' waits for approval")
    finally:
        server.shutdown()
        server.server_close()


# --- workers killed the way the world kills them -------------------------------------------

SLOW_EFFECT = """\
    goal: survive a worker
    steps:
      - id: slow
        run: sleep 4 && echo once >> effects.txt
        idempotent: true
        verify:
          - file_contains: effects.txt
            text: once
      - id: after
        needs: [slow]
        run: echo after > after.txt
"""


def kill_worker_mid_step(cli: Cli, workers: Workers, plan_text: str) -> tuple[str, Any]:
    """Start the run on one worker, SIGKILL that worker once the step has started,
    start another; return the run id and the command following the run."""
    first = workers.start()
    plan = cli.write("plan.yaml", plan_text)
    following = workers.start_run("run", plan, "--no-live", "--no-prompt", *workers.flags())
    store = SqliteStore(cli.store)
    wait_for(lambda: step_started(store), what="the step to start")
    run_id = store.runs()[0].run_id
    wait_for(lambda: step_process_running(f"{run_id}/"), what="the step's command to run")
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    workers.start()
    return store.runs()[0].run_id, following


def test_a_worker_killed_mid_step_is_replaced_and_the_effect_happens_once(
    cli: Cli, workers: Workers
) -> None:
    run_id, following = kill_worker_mid_step(cli, workers, SLOW_EFFECT)
    out, err = following.communicate(timeout=120)
    assert following.returncode == 0, out + err
    assert (cli.dir / "effects.txt").read_text() == "once\n"
    kinds = [s.event.kind for s in SqliteStore(cli.store).events(run_id)]
    assert "step_attempt_lost" in kinds  # noticed by the missing heartbeat
    assert "step_probed" in kinds  # checked (and its leftovers ended) before a re-run
    assert "worker stopped answering" in out


IRREVERSIBLE_NO_CHECKS = """\
    goal: a side effect nobody can check
    steps:
      - id: pay
        run: sleep 4 && echo paid >> payments.txt
        irreversible: true
"""


def test_an_irreversible_step_on_a_killed_worker_is_escalated_and_the_printed_advice_runs_it_once(
    cli: Cli, workers: Workers
) -> None:
    first = workers.start()
    plan = cli.write("plan.yaml", IRREVERSIBLE_NO_CHECKS)
    waiting = workers.run("run", plan, "--no-live", "--no-prompt", *workers.flags())
    assert waiting.returncode == 3, waiting.stdout + waiting.stderr
    run_id = run_id_of(waiting)
    assert workers.run("approve", f"{run_id}.1").returncode == 0
    store = SqliteStore(cli.store)
    wait_for(lambda: step_started(store, run_id), what="the approved step to start")
    wait_for(lambda: step_process_running(f"{run_id}/pay"), what="the step's command to run")
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    workers.start()
    wait_for(lambda: store.run(run_id).status == "needs_human", what="the escalation")
    shown = workers.run("show", run_id)
    advice = " ".join(shown.stdout.split())
    assert "If it took effect: `trestle skip" in advice, advice
    assert not (cli.dir / "payments.txt").exists()  # its process died with the worker
    # the operator sees nothing was paid and does exactly what the report says
    retry = re.search(r"if not: `(trestle retry [^`]+)`", advice)
    assert retry is not None, advice
    retried = workers.run(*retry.group(1).split()[1:], "--reason", "nothing was paid")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    resumed = workers.run("resume", run_id, "--no-live", "--no-prompt")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (cli.dir / "payments.txt").read_text() == "paid\n"


def step_started(store: SqliteStore, run_id: str | None = None) -> bool:
    runs = store.runs()
    if not runs:
        return False
    return any(isinstance(s.event, StepStarted) for s in store.events(run_id or runs[0].run_id))


# --- a python: callable past its timeout -----------------------------------------------------


def test_a_timed_out_callable_is_not_called_again_beside_itself_on_its_worker(
    cli: Cli, workers: Workers
) -> None:
    """The retries land on the same worker, which waits for the abandoned call to
    return (trestle.execution.outliving) and says so; before, ``begin 2`` came about
    3 s before ``end 1``."""
    workers.start()
    cli.write(
        "slow.py",
        "import time\n"
        "def pay(ctx):\n"
        "    with open(ctx.workspace / 'pay.log', 'a') as log:\n"
        "        log.write(f'begin {ctx.attempt}\\n')\n"
        "    time.sleep(6 if ctx.attempt == 1 else 0)\n"
        "    with open(ctx.workspace / 'pay.log', 'a') as log:\n"
        "        log.write(f'end {ctx.attempt}\\n')\n",
    )
    plan = cli.write(
        "plan.yaml",
        "goal: pay once at a time\nsteps:\n  - id: pay\n    python: slow:pay\n"
        "    timeout: 2\n    retries: 3\n    backoff: {initial: 0.05, factor: 1}\n",
    )
    result = workers.run("run", plan, "--no-live", "--no-prompt", *workers.flags())
    assert result.returncode == 0, result.stdout + result.stderr
    # attempt 1 ends its call before any other begins; those that waited past their
    # own timeout failed without calling, and the one after it ran
    calls = (cli.dir / "pay.log").read_text().split("\n")[:-1]
    assert calls[:2] == ["begin 1", "end 1"], calls
    (last,) = {line.split()[1] for line in calls[2:]}
    assert calls[2:] == [f"begin {last}", f"end {last}"]
    said = " ".join(result.stdout.split())
    assert "the step's next attempt in that process waits for it to return" in said
    assert "(one on another Temporal worker would not)" in said
    if last != "2":  # attempts before it waited for attempt 1 past their timeout
        assert "an earlier attempt's call of it still runs" in said


# --- workers sharing a queue ----------------------------------------------------------------


def test_workers_sharing_a_queue_each_take_attempts(cli: Cli, workers: Workers) -> None:
    for _ in range(2):
        workers.start("--max-attempts", "2")
    steps = "\n".join(
        f"      - id: s{i}\n        run: sleep 1 && echo s{i} >> done.txt" for i in range(8)
    )
    plan = cli.write("plan.yaml", f"goal: spread out\nsteps:\n{steps}\n")
    result = workers.run("run", plan, "--no-live", "--no-prompt", *workers.flags())
    assert result.returncode == 0, result.stdout + result.stderr
    done = (cli.dir / "done.txt").read_text().split()
    assert sorted(done) == sorted(f"s{i}" for i in range(8))
    identities = perform_identities(workers.address, run_id_of(result), blobs(cli))
    assert len(identities) == 8
    assert len(set(identities)) == 2  # each worker performed some of them


# --- cancel ------------------------------------------------------------------------------------


def _long_step_running(
    cli: Cli, workers: Workers, seconds: int
) -> tuple[Started, SqliteStore, str]:
    """A run on the workers whose one step sleeps ``seconds`` (then writes finished.txt),
    once the step has started: its following process, its store and its id."""
    workers.start()
    step = f"  - {{id: long, run: sleep {seconds} && echo finished > finished.txt}}\n"
    plan = cli.write("plan.yaml", "goal: cancel me\nsteps:\n" + step)
    following = workers.start_run("run", plan, "--no-live", "--no-prompt", *workers.flags())
    store = SqliteStore(cli.store)
    wait_for(lambda: step_started(store), what="the step to start")
    return following, store, store.runs()[0].run_id


def test_cancel_stops_a_running_step_and_ends_the_workflow(cli: Cli, workers: Workers) -> None:
    following, store, run_id = _long_step_running(cli, workers, 41)
    cancelled = workers.run("cancel", run_id, "--reason", "not needed")
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    out, err = following.communicate(timeout=60)
    assert following.returncode == 7, out + err
    ends = [s.event for s in store.events(run_id) if isinstance(s.event, RunCancelled)]
    assert [e.stopped for e in ends] == [("long",)]
    assert not (cli.dir / "finished.txt").exists()
    wait_for(
        lambda: workflow_status(workers.address, run_id, blobs(cli)) == "COMPLETED",
        what="the workflow to end",
    )


# the CLI's cancel with its driver's bell broken: the signal lost (the server away a
# moment, or its 10,000 signals spent by a flood)
BELL_LOST = """\
import sys
import trestle.lifecycle.cancel as cancel
cancel.ring = lambda *args, **kwargs: False
from trestle.cli.app import entry
sys.argv[0] = "trestle"
entry()
"""


def test_a_cancel_whose_nudge_was_lost_still_stops_the_running_step(
    cli: Cli, workers: Workers
) -> None:
    # the workflow read its queue only when nudged: the approved step it was to stop
    # ran to its end; it reads it at each renewal of its lease now (a third of 60 s)
    following, _, run_id = _long_step_running(cli, workers, 50)
    subprocess.run(
        [sys.executable, "-c", BELL_LOST, "cancel", run_id, "--reason", "unheard"],
        cwd=cli.dir,
        env=cli.env(),
        capture_output=True,
        timeout=120,
        check=False,
    )  # exit 0, or 5 if its patience ran out before the workflow's next read
    out, err = following.communicate(timeout=90)
    assert following.returncode == 7, out + err
    assert not (cli.dir / "finished.txt").exists()


# --- long runs and large payloads --------------------------------------------------------------


def test_a_long_run_continues_as_new_and_runs_each_step_once(cli: Cli, address: str) -> None:
    pool = Workers(cli, address, TRESTLE_TEMPORAL_HISTORY_LIMIT="60")
    try:
        pool.start()
        steps = "\n".join(
            f"      - id: s{i}\n        run: echo s{i} >> done.txt"
            + (f"\n        needs: [s{i - 1}]" if i else "")
            for i in range(20)
        )
        plan = cli.write("plan.yaml", f"goal: a long chain\nsteps:\n{steps}\n")
        result = pool.run("run", plan, "--no-live", "--no-prompt", *pool.flags())
        assert result.returncode == 0, result.stdout + result.stderr
        run_id = run_id_of(result)
        assert (cli.dir / "done.txt").read_text().split() == [f"s{i}" for i in range(20)]
        assert executions(address, run_id, blobs(cli)) >= 3
        started = [
            s.event.step
            for s in SqliteStore(cli.store).events(run_id)
            if isinstance(s.event, StepStarted)
        ]
        assert started == [f"s{i}" for i in range(20)]
        assert_history_agrees(pool, run_id)
    finally:
        pool.stop()


def test_large_payloads_travel_as_blob_names(cli: Cli, workers: Workers) -> None:
    workers.start()
    big = "x" * 300_000
    plan = cli.write(
        "plan.yaml",
        f"""\
        goal: carry a big file
        steps:
          - id: big
            write: {{path: big.txt, content: "{big}"}}
    """,
    )
    result = workers.run("run", plan, "--no-live", "--no-prompt", *workers.flags())
    assert result.returncode == 0, result.stdout + result.stderr
    assert (cli.dir / "big.txt").read_text() == big
    stored = list(blobs(cli).glob("*/*"))
    assert stored, "nothing went to the blob store"
    events = asyncio.run(history(workers.address, run_id_of(result), blobs(cli)))
    assert max(e.ByteSize() for e in events) < 20_000  # type: ignore[attr-defined]


# --- the blob codec ------------------------------------------------------------------------------


def test_the_codec_keeps_small_payloads_inline_and_checks_what_it_reads(tmp_path: Path) -> None:
    store = Blobs(tmp_path / "blobs")
    codec = BlobCodec(store, threshold=64)
    small = Payload(metadata={"encoding": b"json/plain"}, data=b'"hi"')
    large = Payload(metadata={"encoding": b"json/plain"}, data=b'"' + b"y" * 1000 + b'"')
    encoded = asyncio.run(codec.encode([small, large]))
    assert encoded[0] == small
    assert encoded[1].metadata["encoding"] == ENCODING and len(encoded[1].data) == 64
    assert asyncio.run(codec.decode(encoded)) == [small, large]
    digest = encoded[1].data.decode()
    store.path(digest).write_bytes(b"tampered")
    with pytest.raises(BlobMissingError, match="damaged"):
        asyncio.run(codec.decode(encoded))
    with pytest.raises(BlobMissingError, match="share one blob directory"):
        asyncio.run(BlobCodec(Blobs(tmp_path / "elsewhere")).decode(encoded))


# --- bad input ----------------------------------------------------------------------------------


def test_bad_engine_flags_are_refused_before_anything_is_recorded(cli: Cli) -> None:
    plan = cli.write("plan.yaml", SHIP)
    bogus = cli("run", plan, "--engine", "warp")
    assert bogus.returncode == 2 and "choose local or temporal" in bogus.stderr
    no_port = cli("run", plan, "--engine", "temporal", "--address", "somewhere")
    assert no_port.returncode == 2 and "is not HOST:PORT" in no_port.stderr
    not_positive = "is not a positive number"
    too_short = "is shorter than 1 s: a worker beats for an attempt at most every 0.2 s"
    for var, value, why in (
        ("TRESTLE_TEMPORAL_HEARTBEAT", "nan", not_positive),
        ("TRESTLE_TEMPORAL_HEARTBEAT", "-3", not_positive),
        ("TRESTLE_TEMPORAL_HEARTBEAT", "0.3", too_short),
        ("TRESTLE_TEMPORAL_HISTORY_LIMIT", "1e400", not_positive),
        ("TRESTLE_TEMPORAL_HISTORY_LIMIT", "lots", not_positive),
        ("TRESTLE_TEMPORAL_HISTORY_LIMIT", "5", "is under 10: a workflow would continue"),
    ):
        tuned = run_trestle(
            ["run", plan, "--engine", "temporal"],
            cwd=cli.dir,
            env={**cli.env(), var: value},
            timeout=60,
        )
        assert tuned.returncode == 2, tuned.stdout + tuned.stderr
        assert f"${var}='{value}' {why}" in tuned.stderr
    assert not cli.store.exists() or not SqliteStore(cli.store).runs()
    local = cli("run", cli.write("ok.yaml", "goal: g\nsteps:\n  - id: a\n    run: 'true'\n"))
    history = cli("log", run_id_of(local), "--history")
    assert history.returncode == 2 and "is not on Temporal" in history.stderr


def test_a_run_no_worker_takes_says_how_to_start_one_and_ctrl_c_leaves_it(
    cli: Cli, workers: Workers
) -> None:
    plan = cli.write("plan.yaml", SHIP)
    following = subprocess.Popen(
        cli.argv("run", plan, "--no-live", "--no-prompt", *workers.flags()),
        cwd=cli.dir,
        env=workers.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal
    )
    assert following.stderr is not None
    said = following.stderr.readline()  # after a few quiet seconds
    assert f"no worker polls task queue {workers.queue}" in said, said
    assert f"`trestle worker --engine temporal --address {workers.address}" in said
    following.send_signal(signal.SIGINT)
    out, err = following.communicate(timeout=30)
    assert following.returncode == 130, out + err
    assert "goes on: `trestle watch" in err
    run_id = SqliteStore(cli.store).runs()[0].run_id
    workers.start()  # the run was left waiting, not ended: a worker takes it up
    store = SqliteStore(cli.store)
    wait_for(lambda: store.run(run_id).status == "needs_human", what="the worker to take it")


def test_a_worker_with_no_server_says_where_it_looked(cli: Cli) -> None:
    result = cli("worker", "--engine", "temporal", "--address", "127.0.0.1:1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot reach Temporal at 127.0.0.1:1" in " ".join(result.stderr.split())
