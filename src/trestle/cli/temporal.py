"""The CLI's side of the Temporal engine: ``trestle worker``, and ``trestle run`` or
``resume`` with ``--engine temporal``.

A run on Temporal is recorded in the store like any other, bound to its workflow by its
first event; a worker on the task queue drives it. The command that starts it follows
its events from the store as ``trestle log --follow`` does, then prints the report and
exits with the report's code, so moving a run to a cluster changes one flag.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import sys
import time
import urllib.parse
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from trestle.cli.console import _err
from trestle.cli.drive import write_report
from trestle.cli.drive_watch import CLOSED_EXIT, NO_WORKER_EXIT, drive_watch
from trestle.cli.follow import follow, follow_line
from trestle.cli.render import report_view
from trestle.core.errors import ConfigError, MissingExtraError
from trestle.core.events import EngineBinding, StoredEvent, event_json
from trestle.core.report import build_report
from trestle.engines.temporal.shapes import (
    SHORTEST_HEARTBEAT,
    SHORTEST_HISTORY,
    SOONEST_BEAT,
    Drive,
)
from trestle.lifecycle.runs import load_state
from trestle.store.base import Store
from trestle.store.location import store_name

if TYPE_CHECKING:
    pass


def require_temporal() -> None:
    try:
        import temporalio  # noqa: F401
    except ImportError:
        raise MissingExtraError("temporalio", "temporal") from None


def valid_address(address: str) -> bool:
    """Whether ``address`` is HOST:PORT, a bracketed IPv6 host included, as the
    Temporal client will parse it (``[::1`` passed the last colon and crashed it)."""
    try:
        parsed = urllib.parse.urlsplit(f"//{address}")
        return bool(parsed.hostname) and parsed.port is not None and parsed.port > 0
    except ValueError:
        return False


def binding(address: str, namespace: str, task_queue: str) -> EngineBinding:
    """The run's binding to its workflow; the address and the tuning in the
    environment are checked before anything is recorded."""
    if not valid_address(address):
        raise ConfigError(f"--address {address!r} is not HOST:PORT (for example 127.0.0.1:7233)")
    tuning()
    return EngineBinding(address=address, namespace=namespace, task_queue=task_queue)


TUNING = (
    ("TRESTLE_TEMPORAL_HEARTBEAT", "heartbeat", float),
    ("TRESTLE_TEMPORAL_HISTORY_LIMIT", "history_limit", int),
)


def tuning() -> dict[str, float]:
    """The operator's tuning of how a workflow drives a run: ``$TRESTLE_TEMPORAL_HEARTBEAT``
    (seconds a silent worker keeps its attempt, at least
    :data:`~trestle.engines.temporal.shapes.SHORTEST_HEARTBEAT`) and
    ``$TRESTLE_TEMPORAL_HISTORY_LIMIT`` (history events before continuing as new), each
    a finite number above 0."""
    found: dict[str, float] = {}
    for var, name, kind in TUNING:
        text = os.environ.get(var)
        if text is None:
            continue
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not (0 < value < 1e9):
            raise ConfigError(f"${var}={text!r} is not a positive number")
        if name == "heartbeat" and value < SHORTEST_HEARTBEAT:
            raise ConfigError(
                f"${var}={text!r} is shorter than {SHORTEST_HEARTBEAT:g} s: a worker beats "
                f"for an attempt at most every {SOONEST_BEAT:g} s and Temporal sends a beat "
                "at most every 0.8 of the timeout, so Temporal would record attempts lost "
                f"while their worker runs; give it {SHORTEST_HEARTBEAT:g} or more "
                "(the default is 10)"
            )
        if name == "history_limit" and value < SHORTEST_HISTORY:
            raise ConfigError(
                f"${var}={text!r} is under {SHORTEST_HISTORY}: a workflow would continue "
                "as new all the time; give it more (the default is 8000)"
            )
        found[name] = value
    return found


def drive_settings(run_id: str, store: Store | None = None) -> Drive:
    """How the workflow drives the run: the defaults, or the operator's tuning."""
    first = store.events(run_id, limit=1) if store is not None else []
    drive = Drive(run_id=run_id, created=event_json(first[0].event) if first else None)
    for name, value in tuning().items():
        setattr(drive, name, value)
    return drive


def start_and_follow(
    store: Store,
    run_id: str,
    bound: EngineBinding,
    out: Console,
    report_json: Path | None,
    wait_for_worker: bool = True,
    *,
    resumed: bool = False,
) -> None:
    """Start the run's workflow (or wake it, if it runs), follow the run until it ends
    or waits on a human, print the report and exit with its code.

    A workflow woken to go on is followed past the end the store holds until it has
    recorded again (see :func:`~trestle.cli.follow.follow`). Meanwhile Temporal is
    asked whether a worker polls the run's task queue, and whether the workflow's task
    keeps failing; stderr says so within seconds. Without a worker the run waits for
    one, or (``wait_for_worker=False``) the command exits 10. When Temporal does not
    answer, the error says what to do: ``resumed`` says the address is the run's
    recorded one, which no flag changes, rather than the one just named."""
    from trestle.engines.temporal.connect import nudge, start_workflow

    err = _err()
    woken_after = store.run(run_id).last_seq
    code: int | None = None
    with ExitStack() as stack:
        try:
            watch = stack.enter_context(drive_watch(store, run_id, bound, partial(_line_err, err)))
        except ConfigError as exc:  # Temporal does not answer: say what is recorded
            raise ConfigError(f"{exc}\n{_unreached(run_id, bound, resumed)}") from None

        async def start() -> None:
            if not await nudge(watch.client, run_id):
                waits = lease_left(store, run_id, time.time())
                if waits is not None:
                    _line_err(err, _lapsing(run_id, waits))
                await start_workflow(watch.client, bound, run_id, drive_settings(run_id, store))

        watch.loop.run_until_complete(start())
        watch.waits_for_worker = wait_for_worker
        try:
            code = follow(
                store,
                run_id,
                partial(_line, out),
                warn=partial(_line_err, err),
                woken_after=woken_after,
                watch=watch,
            )
        except KeyboardInterrupt:
            _line_err(err, f"stopped following; run {run_id} goes on: `trestle watch {run_id}`")
            code = 130
    report = build_report(load_state(store, run_id))
    out.print(report_view(report))
    if report_json is not None:
        write_report(report_json, report)
    # 2: the workflow stopped because the run's model cannot be used (said on stderr)
    raise typer.Exit(code if code in (2, 130, NO_WORKER_EXIT, CLOSED_EXIT) else report.exit_code)


def lease_left(store: Store, run_id: str, now: float) -> float | None:
    """Seconds until the lease a workflow of the run still holds lapses, when no
    execution runs to renew it (Temporal closed it: terminated, failed, timed out); a
    new execution takes the run only then. None when no workflow holds it."""
    from trestle.engines.temporal.activities import HOST

    lease = store.lease(run_id)
    if lease is None or lease.owner.host != HOST or lease.expires_at <= now:
        return None
    return lease.expires_at - now


def _lapsing(run_id: str, seconds: float) -> str:
    return (
        f"run {run_id}: its last workflow ended holding the run's lease; the new one waits "
        f"for it to lapse, at most {math.ceil(seconds)} s more, then goes on "
        "(Ctrl-C stops waiting, not the run)"
    )


START_DEV = "for a try: `temporal server start-dev`"
ADDRESS_FLAG = "--address HOST:PORT (or $TRESTLE_TEMPORAL_ADDRESS)"


def _unreached(run_id: str, bound: EngineBinding, resumed: bool) -> str:
    """What to do when the run's Temporal does not answer: a run keeps the address it
    was made with, so only a new run can name another."""
    goes_on = f"`trestle resume {run_id}` goes on once Temporal answers at {bound.address}"
    if resumed:
        return (
            f"run {run_id} is as it was: {goes_on} ({START_DEV}); a run keeps the address "
            "it was made with, which no flag or setting changes"
        )
    return (
        f"nothing of run {run_id} was started on Temporal: {goes_on} ({START_DEV}); "
        f"if Temporal runs elsewhere, start the run anew with {ADDRESS_FLAG}"
    )


def _line(out: Console, stored: StoredEvent) -> None:
    out.print(follow_line(stored), markup=False, soft_wrap=True)
    sys.stdout.flush()  # a pipe is block-buffered: the reader sees each event now


def _line_err(err: Console, text: str) -> None:
    err.print(text, markup=False, soft_wrap=True)


# How often a thread holding the GIL gives it up to one waiting for it, in the worker.
# Its event loop takes each attempt Temporal hands it, and sends their heartbeats,
# between the store thread's loads and the workflows' CPU-bound turns; at Python's
# default 5 ms, each time the loop let go of the GIL it waited up to 5 ms to get it back,
# so 32 attempts started at once on a 4,000-step run reached the loop 0.1 s apart, the
# last 2.4-2.8 s after Temporal began timing its heartbeat: lost by a live worker at a
# 2 s heartbeat (3.6 s with the CPU four times oversubscribed). At 1 ms: 0.15-0.19 s
# (0.30-0.35 s).
WORKER_SWITCH_INTERVAL = 0.001


def worker(store: Store, bound: EngineBinding, out: Console, max_attempts: int) -> None:
    """Serve the task queue until SIGINT or SIGTERM, then stop gracefully."""
    from trestle.agent.runtime import performer_for
    from trestle.engines.temporal.blobs import blobs_for
    from trestle.engines.temporal.connect import TemporalUnreachableError, connect, serve
    from trestle.engines.temporal.search import register

    blobs = blobs_for(store)  # in the store itself when it keeps them, else beside it
    sys.setswitchinterval(WORKER_SWITCH_INTERVAL)  # this process is the worker's alone

    async def main() -> None:
        client = await connect(bound.address, bound.namespace, blobs)
        unsearchable = await register(client)
        if unsearchable is not None:
            _line_err(_err(), f"runs are not searchable by Trestle's attributes: {unsearchable}")
        stop, ready = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        serving = asyncio.create_task(
            serve(
                client,
                store,
                bound.task_queue,
                stop=stop,
                max_attempts=max_attempts,
                ready=ready,
                performer_for=performer_for,
                say=partial(_line_err, _err()),
            )
        )
        await asyncio.wait(
            [serving, asyncio.ensure_future(ready.wait())], return_when="FIRST_COMPLETED"
        )
        if not serving.done():
            out.print(
                f"worker on task queue {bound.task_queue} at {bound.address} "
                f"(namespace {bound.namespace}); store {store_name(store)}; blobs {blobs.shown}",
                markup=False,
                soft_wrap=True,
            )
            sys.stdout.flush()
        await serving

    try:
        asyncio.run(main())
    except TemporalUnreachableError as exc:
        raise ConfigError(
            f"{exc}\nstart Temporal there ({START_DEV}), or name where it runs with {ADDRESS_FLAG}"
        ) from None
    out.print("worker stopped", markup=False)


STORE_LOOK = 0.5  # seconds between looks for the store a worker waits for


def store_to_come(sleep: Callable[[float], None] = time.sleep) -> Path:
    """The nearest store (``.trestle/trestle.db`` here or above) that a run of this
    account was started in, waited for when there is none yet: a worker may start
    before the first run creates it. One no run of yours was started in is passed
    over (a step can write a file like it anywhere in its workspace, and the worker
    would run its runs' ``python:`` steps). Says on stderr, once each, where it looks
    and what it passed over."""
    from trestle.cli.stores import looked_for, started_in, unknown_store
    from trestle.store.location import nearest_store

    here, said = Path.cwd(), set[str]()
    while True:
        found = nearest_store(here)
        if found is not None and started_in(found):
            return found
        if found is None:
            why = (
                f"no store yet: {looked_for(here)}; waiting for the first run started here "
                "to create it (or pass --store PATH or set $TRESTLE_STORE)"
            )
        else:
            why = f"{unknown_store(found)}; waiting for a run of yours to be started in it"
        if why not in said:
            _line_err(_err(), why)
            said.add(why)
        sleep(STORE_LOOK)


def events_from_history(store: Store, run_id: str) -> list[StoredEvent]:
    """The run's events as its workflow's history holds them (``trestle log --history``)."""
    from trestle.engines.temporal.blobs import blobs_for
    from trestle.engines.temporal.connect import (
        TemporalUnreachableError,
        connect,
        history_events,
    )
    from trestle.lifecycle.doorbell import bound_engine

    bound = bound_engine(store, run_id)
    if bound is None:
        raise ConfigError(f"run {run_id} is not on Temporal: its store holds its whole history")
    require_temporal()

    async def read() -> list[StoredEvent]:
        client = await connect(bound.address, bound.namespace, blobs_for(store))
        return await history_events(client, run_id)

    try:
        return asyncio.run(read())
    except TemporalUnreachableError as exc:
        raise ConfigError(
            f"{exc}\nrun {run_id}'s workflow history is kept by Temporal at {bound.address}, "
            f"the address the run was made with: start Temporal there ({START_DEV}); "
            f"`trestle log {run_id}` shows the store's events"
        ) from None
