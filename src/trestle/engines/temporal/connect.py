"""Connecting to Temporal: the client every command and worker uses, starting a run's
workflow, nudging it, and running a worker.

Clients and workers of one task queue share the store, and the store says where the
payloads too large for Temporal's history are kept (:func:`.blobs.blobs_for`): in the
store itself when it is a database, else in ``blobs/`` beside its file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.converter import DataConverter, default
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError
from temporalio.worker import Interceptor, Worker, WorkflowInterceptorClassInput

from trestle.core.errors import ConfigError, TrestleError
from trestle.core.events import EVENT_ADAPTER, EngineBinding, StoredEvent
from trestle.engines.temporal import search
from trestle.engines.temporal.activities import TrestleActivities
from trestle.engines.temporal.blobs import BlobCodec, Blobs, BlobStore, blobs_for
from trestle.engines.temporal.late import LateBeats
from trestle.engines.temporal.seals import SEAL, Sealer
from trestle.engines.temporal.shapes import NUDGE, STATUS, Committed, Drive
from trestle.engines.temporal.workflow import RunWorkflow
from trestle.engines.work import PerformerFor
from trestle.store.base import Store

LOCAL_ACTIVITY_MARKER = "core_local_activity"  # how the SDK records a local activity


def converter(blobs: BlobStore | Path) -> DataConverter:
    """Temporal's default converter, with large payloads kept in ``blobs`` (a blob
    directory's path stands for the :class:`.blobs.Blobs` there)."""
    kept = Blobs(blobs) if isinstance(blobs, Path) else blobs
    return dataclasses.replace(default(), payload_codec=BlobCodec(kept))


class TemporalUnreachableError(ConfigError):
    """No Temporal service answers at ``address``. The message names the address, with
    the transport's reason short on a line of its own; the command that met it says
    what to do, since only it knows where the address came from (a flag, or the run's
    binding)."""

    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        self.reason = reason
        super().__init__(f"cannot reach Temporal at {address}\n  {reason}")


# the core SDK's words for a failed connection, as in ... ConnectError("tcp connect
# error", 127.0.0.1:1, Os { ... message: "Connection refused" }) ...
_WHAT = re.compile(r'ConnectError\("([^"]+)"')
_WHY = re.compile(r'(?:message|error): "([^"]+)"')


def transport_reason(text: str) -> str:
    """The transport error's gist (``tcp connect error: Connection refused``), not the
    Rust debug dump it comes wrapped in."""
    parts = [m.group(1) for m in (_WHAT.search(text), _WHY.search(text)) if m is not None]
    if parts:
        return ": ".join(parts)
    text = " ".join(text.split())
    return text if len(text) <= 160 else text[:159] + "…"


async def connect(address: str, namespace: str, blobs: BlobStore | Path) -> Client:
    """A client of the Temporal service at ``address``; :class:`TemporalUnreachableError`
    when none answers."""
    try:
        return await Client.connect(address, namespace=namespace, data_converter=converter(blobs))
    except RuntimeError as exc:  # the core SDK reports a refused connection this way
        raise TemporalUnreachableError(address, transport_reason(str(exc))) from None
    except ValueError as exc:  # an address it cannot parse (a run recorded with one)
        raise TemporalUnreachableError(address, f"not an address: {exc}") from None


async def start_workflow(
    client: Client, binding: EngineBinding, run_id: str, drive: Drive | None = None
) -> WorkflowHandle[RunWorkflow, str]:
    """Start the run's workflow (named after the run) on the binding's task queue. A
    run whose workflow ended (it succeeded, or was cancelled) may get another, which
    judges what was asked of it since; one that is running is only nudged. The
    workflow keeps Trestle's search attributes set when the namespace defines them."""
    drive = drive or Drive(run_id=run_id)
    drive.indexed = await search.defined(client)
    try:
        return await client.start_workflow(
            RunWorkflow.run,
            drive,
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


def wake(store: Store, run_id: str, binding: EngineBinding) -> bool:
    """The Temporal engine's waker (see :mod:`trestle.lifecycle.doorbell`): nudge the
    run's workflow; True when it heard, False when it has ended or cannot be reached."""

    async def knock() -> bool:
        client = await connect(binding.address, binding.namespace, blobs_for(store))
        return await nudge(client, run_id)

    try:
        return asyncio.run(knock())
    except TrestleError:
        return False


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
    performer_for: PerformerFor | None = None,
    say: Callable[[str], None] | None = None,
) -> None:
    """Run a worker for ``task_queue`` until ``stop`` is set: the workflows, and up to
    ``max_attempts`` step attempts at once on this host; ``performer_for`` performs
    the agent runs' steps (the worker's builder chooses it); ``say`` is told when an
    attempt's heartbeat comes near its timeout's end (see :mod:`.late`)."""
    late = LateBeats(say, max_attempts) if say is not None else None
    activities = TrestleActivities(store, performer_for=performer_for, late=late)
    try:
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=[RunWorkflow],
            activities=activities.all(),
            interceptors=[LendSealer(activities.sealer())],
            max_concurrent_activities=max_attempts,
            graceful_shutdown_timeout=timedelta(seconds=5),
        )
        async with worker:
            if ready is not None:
                ready.set()
            await stop.wait()
    finally:
        activities.close()


class LendSealer(Interceptor):
    """Lends the worker's sealing function to the workflows it runs (see :mod:`.seals`):
    workflow code checks seals with it, never holding the key, reading no file, and
    putting nothing of the key into the history."""

    def __init__(self, seal: Sealer) -> None:
        self._seal = seal

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> None:
        input.unsafe_extern_functions[SEAL] = self._seal
        return None


async def history_events(client: Client, run_id: str) -> list[StoredEvent]:
    """The run's events as its workflow's history holds them: each commit's result,
    across every execution of the workflow (continued as new, or started again), oldest
    first. The same events the store holds, read from Temporal's side."""
    executions = [e async for e in client.list_workflows(f"WorkflowId = '{run_id}'")]
    executions.sort(key=lambda e: e.start_time)
    found: dict[int, StoredEvent] = {}
    converter_ = client.data_converter
    for execution in executions:
        handle = client.get_workflow_handle(run_id, run_id=execution.run_id)
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                started = event.workflow_execution_started_event_attributes
                [drive] = await converter_.decode(started.input.payloads, [Drive])
                if drive.created is not None:
                    found[1] = StoredEvent(
                        run_id=run_id, seq=1, event=EVENT_ADAPTER.validate_json(drive.created)
                    )
            if event.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
                continue
            marker = event.marker_recorded_event_attributes
            if marker.marker_name != LOCAL_ACTIVITY_MARKER or "result" not in marker.details:
                continue
            [data] = await converter_.decode(marker.details["data"].payloads, [dict])
            if data.get("activity_type") != "trestle.commit":
                continue
            [batch] = await converter_.decode(marker.details["result"].payloads, [Committed])
            for offset, text in enumerate(batch.events):
                seq = batch.first_seq + offset
                found[seq] = StoredEvent(
                    run_id=run_id, seq=seq, event=EVENT_ADAPTER.validate_json(text)
                )
    return [found[seq] for seq in sorted(found)]
