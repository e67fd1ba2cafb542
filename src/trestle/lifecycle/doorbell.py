"""Waking the driver of a run that another engine drives (a Temporal workflow).

A human's request (approve, retry, skip, tell, cancel, a budget raise) is queued in the
store, as for any run. A local driver reads the queue as it polls; a workflow sleeps
until it is told to look, so whatever queues a request for a run on Temporal rings
here. A run bound to no other engine needs no bell: this does nothing for it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from trestle.core.errors import TrestleError
from trestle.core.events import EngineBinding, RunCreated
from trestle.store.base import Store


def bound_engine(store: Store, run_id: str) -> EngineBinding | None:
    """The engine the run was bound to when it was made, if not the local one."""
    first = store.events(run_id, limit=1)
    event = first[0].event if first else None
    return event.engine if isinstance(event, RunCreated) else None


def driver_name(binding: EngineBinding, run_id: str) -> str:
    return f"the Temporal workflow {run_id} (task queue {binding.task_queue} at {binding.address})"


def ring(store: Store, run_id: str) -> bool:
    """Tell the run's workflow that requests wait; True when it heard. False for a run
    no other engine drives, or one whose workflow has ended or cannot be reached (the
    request stays queued for whoever drives the run next)."""
    binding = bound_engine(store, run_id)
    if binding is None:
        return False
    from trestle.engines.temporal.connect import blobs_beside, connect, nudge

    path = getattr(store, "path", None)

    async def knock() -> bool:
        client = await connect(
            binding.address,
            binding.namespace,
            blobs_beside(path if isinstance(path, Path) else None),
        )
        return await nudge(client, run_id)

    try:
        return asyncio.run(knock())
    except TrestleError:
        return False
