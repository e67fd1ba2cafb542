"""Connecting to Temporal: the client every command and worker uses, starting a run's
workflow, nudging it, and running a worker.

Clients and workers of one task queue share the store and the blob directory (by
default ``blobs/`` beside the store's file): the store is the run's record, and the
blob directory holds the payloads too large for Temporal's history (:mod:`.blobs`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.converter import DataConverter, default
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError
from temporalio.worker import Worker

from trestle.core.errors import ConfigError
from trestle.core.events import EngineBinding
from trestle.engines.temporal.activities import TrestleActivities
from trestle.engines.temporal.blobs import BlobCodec, Blobs
from trestle.engines.temporal.shapes import NUDGE, STATUS, Drive
from trestle.engines.temporal.workflow import RunWorkflow
from trestle.store.base import Store

DEFAULT_TASK_QUEUE = "trestle"


def blobs_beside(store_path: Path | None) -> Path:
    """The default blob directory: ``blobs/`` beside the store's file."""
    if store_path is None:
        raise ConfigError("a run on Temporal needs a store with a file (--store)")
    return store_path.parent / "blobs"


def converter(blobs: Path) -> DataConverter:
    return dataclasses.replace(default(), payload_codec=BlobCodec(Blobs(blobs)))


async def connect(address: str, namespace: str, blobs: Path) -> Client:
    """A client of the Temporal service at ``address``; a clear error when none answers."""
    try:
        return await Client.connect(address, namespace=namespace, data_converter=converter(blobs))
    except RuntimeError as exc:  # the core SDK reports a refused connection this way
        raise ConfigError(
            f"cannot reach Temporal at {address}: {exc}. Start one (for a try: "
            "`temporal server start-dev`) or name it with --address HOST:PORT"
        ) from None


async def start_workflow(
    client: Client, binding: EngineBinding, run_id: str, drive: Drive | None = None
) -> WorkflowHandle[RunWorkflow, str]:
    """Start the run's workflow (named after the run) on the binding's task queue. A
    run whose workflow ended (it succeeded, or was cancelled) may get another, which
    judges what was asked of it since; one that is running is only nudged."""
    try:
        return await client.start_workflow(
            RunWorkflow.run,
            drive or Drive(run_id=run_id),
            id=run_id,
            task_queue=binding.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:  # started meanwhile: it reads the queue anyway
        await nudge(client, run_id)
        return client.get_workflow_handle(run_id, result_type=str)


async def nudge(client: Client, run_id: str) -> bool:
    """Tell the run's workflow that requests wait for it; False when it is not running
    (it ended, or was never started)."""
    try:
        await client.get_workflow_handle(run_id).signal(NUDGE)
    except RPCError:
        return False
    return True


async def status(client: Client, run_id: str) -> dict[str, object]:
    result: dict[str, object] = await client.get_workflow_handle(run_id).query(STATUS)
    return result


async def serve(
    client: Client,
    store: Store,
    task_queue: str,
    *,
    stop: asyncio.Event,
    max_attempts: int = 16,
    ready: asyncio.Event | None = None,
) -> None:
    """Run a worker for ``task_queue`` until ``stop`` is set: the workflows, and up to
    ``max_attempts`` step attempts at once on this host."""
    activities = TrestleActivities(store)
    try:
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=[RunWorkflow],
            activities=activities.all(),
            max_concurrent_activities=max_attempts,
            graceful_shutdown_timeout=timedelta(seconds=5),
        )
        async with worker:
            if ready is not None:
                ready.set()
            await stop.wait()
    finally:
        activities.close()
