"""What Temporal says of a run's drive while its store is silent, for the commands that
follow a run on Temporal (``run``, ``resume``, ``agent`` and ``watch``): whether a worker
polls its task queue, and whether its workflow's task keeps failing
(:mod:`trestle.engines.temporal.health`), said on stderr instead of the lease's word.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from trestle.cli.console import _err
from trestle.core.errors import ConfigError
from trestle.core.events import EngineBinding
from trestle.presentation.wording import counted
from trestle.store.base import Store
from trestle.store.location import store_name

if TYPE_CHECKING:
    from temporalio.client import Client

NO_WORKER_EXIT = 10  # --no-wait-for-worker, and no worker polls the run's task queue
CLOSED_EXIT = 12  # Temporal closed the run's workflow (terminated it) before the run ended


class DriveWatch:
    """What Temporal says of the run's drive while the store is silent, asked every few
    seconds (:mod:`trestle.engines.temporal.health`): said once on stderr each time it
    changes; an exit code when the following should end."""

    FIRST_LOOK = 1.0  # seconds: a worker just started has polled by then
    EVERY = 3.0
    # seconds the workflow's task may wait untaken before the workers listed as polling
    # are doubted (a killed one is listed for 90 s more): a live worker takes it at
    # once. Past the SDK's 10 s a task waits on the queue of the worker that ran the
    # workflow last (a sticky queue), then any worker of the task queue may take it
    UNCLAIMED = 12.0

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: Client,
        store: Store,
        run_id: str,
        bound: EngineBinding,
        warn: Callable[[str], None],
    ) -> None:
        self.loop, self.client, self.store, self.run_id = loop, client, store, run_id
        self.bound, self.warn = bound, warn
        self.waits_for_worker = True  # False: no worker ends the following, exit 10
        self._next = time.monotonic() + self.FIRST_LOOK
        self._said: str | None = None

    def __call__(self) -> int | None:
        if time.monotonic() < self._next:
            return None
        self._next = time.monotonic() + self.EVERY
        from temporalio.service import RPCError

        from trestle.engines.temporal.health import closed, pollers, stuck, unclaimed

        try:
            polling = self.loop.run_until_complete(pollers(self.client, self.bound.task_queue))
            failing = self.loop.run_until_complete(stuck(self.client, self.run_id))
            ended = self.loop.run_until_complete(closed(self.client, self.run_id))
            waited = self.loop.run_until_complete(unclaimed(self.client, self.run_id))
        except RPCError as exc:
            self._say(f"cannot ask Temporal at {self.bound.address} about run {self.run_id}: {exc}")
            return None
        if ended is not None:
            # no worker drives it any more: waiting would wait for ever
            self.warn(
                f"run {self.run_id} is not driven: Temporal closed its workflow ({ended}). "
                f"What it recorded stays; `trestle resume {self.run_id}` starts it again once "
                "the closed workflow's lease on the run lapses (60 s)"
            )
            return CLOSED_EXIT
        if failing is not None:
            # Temporal retries the task: a worker too busy to replay in time goes on by
            # itself; a damaged blob or a worker of another store does not
            self._say(
                f"run {self.run_id} does not go on: its workflow's task failed "
                f"{counted(failing.attempts, 'time')} on the workers of task queue "
                f"{self.bound.task_queue}: {failing.why}. Temporal tries it again; until "
                "that cause is mended nothing more is recorded and the run stays as it is "
                "(Ctrl-C stops waiting, not the run)"
            )
            return None
        command = worker_command(self.bound, self.store)
        if polling and waited is not None and waited >= self.UNCLAIMED:
            self._say(
                f"no worker has taken the task of run {self.run_id}'s workflow for "
                f"{self.UNCLAIMED:.0f} s: if none runs on task queue {self.bound.task_queue} "
                f"at {self.bound.address} (a worker killed still counts as polling for a "
                f"while), start one: `{command}` (Ctrl-C stops waiting, not the run)"
            )
            return None
        if polling:
            self._said = None
            return None
        if not self.waits_for_worker:
            self.warn(
                f"no worker polls task queue {self.bound.task_queue} at {self.bound.address}; "
                f"not waiting (--no-wait-for-worker). Run {self.run_id} goes on when one "
                f"does: `{command}`"
            )
            return NO_WORKER_EXIT
        self._say(
            f"no worker polls task queue {self.bound.task_queue} at {self.bound.address}: "
            f"run {self.run_id} waits for one: `{command}` (Ctrl-C stops waiting, not the run)"
        )
        return None

    def _say(self, text: str) -> None:
        if text != self._said:
            self.warn(text)
            self._said = text


@contextmanager
def drive_watch(
    store: Store, run_id: str, bound: EngineBinding, warn: Callable[[str], None]
) -> Iterator[DriveWatch]:
    """A :class:`DriveWatch` of the run, with its own client and event loop (the
    follower is synchronous); closed on leaving. ConfigError when Temporal cannot be
    reached."""
    from trestle.engines.temporal.blobs import blobs_for
    from trestle.engines.temporal.connect import connect

    loop = asyncio.new_event_loop()
    try:
        client = loop.run_until_complete(connect(bound.address, bound.namespace, blobs_for(store)))
        yield DriveWatch(loop, client, store, run_id, bound, warn)
    finally:
        loop.close()


def watch_run(store: Store, run_id: str, follow_it: Callable[[DriveWatch | None], int]) -> int:
    """``trestle watch`` of a run on Temporal: followed with a :class:`DriveWatch`, or
    from the store alone (the lease's word) when Temporal cannot be reached."""
    from trestle.lifecycle.doorbell import bound_engine

    bound = bound_engine(store, run_id)
    if bound is None:
        return follow_it(None)
    err = partial(_say_err, _err())
    with ExitStack() as stack:
        watch: DriveWatch | None = None
        try:
            watch = stack.enter_context(drive_watch(store, run_id, bound, err))
        except ConfigError as exc:  # Temporal cannot be reached
            err(_unreached(exc, run_id, bound))
        return follow_it(watch)


def _unreached(exc: ConfigError, run_id: str, bound: EngineBinding) -> str:
    """``watch`` goes on from the store: the first line says so, the transport's reason
    follows on its own."""
    from trestle.engines.temporal.connect import TemporalUnreachableError

    if not isinstance(exc, TemporalUnreachableError):
        return f"{exc}; following the store alone"
    return (
        f"cannot reach Temporal at {bound.address} (the address run {run_id} was made "
        f"with); following the store alone\n  {exc.reason}"
    )


def unclaimed_said(store: Store, run_id: str) -> str | None:
    """For a request its run's workflow has not applied yet: when no worker has taken
    the workflow's task (its workers were killed or stopped), the words that say so,
    with the command that starts one. None for a run not on Temporal, a task a worker
    took, or a Temporal that does not answer."""
    from trestle.lifecycle.doorbell import bound_engine, root_of

    root = root_of(store, run_id)
    bound = bound_engine(store, root)
    if bound is None:
        return None
    from temporalio.service import RPCError

    from trestle.core.errors import TrestleError
    from trestle.engines.temporal.blobs import blobs_for
    from trestle.engines.temporal.connect import connect
    from trestle.engines.temporal.health import unclaimed

    async def ask() -> float | None:
        client = await connect(bound.address, bound.namespace, blobs_for(store))
        return await unclaimed(client, root)

    loop = asyncio.new_event_loop()  # a decision's command may run in a thread (MCP)
    try:
        waited = loop.run_until_complete(ask())
    except (TrestleError, RPCError):
        return None
    finally:
        loop.close()
    if waited is None:
        return None
    return (
        f"no worker has taken the workflow's task since the request woke it: if none "
        f"runs on task queue {bound.task_queue} (a worker killed still counts as polling "
        f"for a while), start one: `{worker_command(bound, store)}`"
    )


def worker_command(bound: EngineBinding, store: Store) -> str:
    """The command that starts a worker for the run's queue and store."""
    # a store kept in a file or a database is named; one in memory has no name to give
    named = isinstance(getattr(store, "path", getattr(store, "where", None)), Path | str)
    where = f" --store {store_name(store)}" if named else ""
    return (
        f"trestle worker --engine temporal --address {bound.address} "
        f"--task-queue {bound.task_queue}{where}"
    )


def _say_err(err: Console, text: str) -> None:
    err.print(text, markup=False, soft_wrap=True)
