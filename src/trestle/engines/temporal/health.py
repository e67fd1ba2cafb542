"""What Temporal knows of a run's drive that the store cannot say.

The store shows what a run recorded; while it records nothing, only Temporal can tell
why: no worker polls the run's task queue (none was started, or all are gone), or a
worker takes the workflow's task and fails it, again and again (a payload kept as a
damaged blob, a worker reading another store), which Temporal retries for ever, or
Temporal closed the workflow itself (terminated it: a refused search attribute, a
history past its limit, an operator's ``temporal workflow terminate``), and nothing
drives the run any more. The command that follows a run asks here every few seconds
and says which.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from temporalio.api.enums.v1 import EventType, PendingWorkflowTaskState, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from trestle.presentation.wording import one_line

# a worker polls with requests held open up to about a minute: one not seen for longer
# is gone, though Temporal lists it for some minutes more
POLLER_GONE = 90.0
# a workflow task failed this many times in a row fails again when retried unchanged
STUCK_ATTEMPTS = 3


# how a workflow ends that Trestle's own code never ends it (it completes, or continues
# as new): Temporal or an operator closed it
CLOSED = (
    WorkflowExecutionStatus.TERMINATED,
    WorkflowExecutionStatus.FAILED,
    WorkflowExecutionStatus.TIMED_OUT,
)


@dataclass(frozen=True)
class Stuck:
    """The run's workflow task keeps failing: how often, and the last failure's words."""

    attempts: int
    why: str


async def pollers(client: Client, task_queue: str, now: float | None = None) -> int:
    """How many workers poll ``task_queue`` for workflow tasks now (each worker polls
    for workflows and for activities: a worker counts once here)."""
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    seen_after = (now if now is not None else time.time()) - POLLER_GONE
    return sum(1 for p in described.pollers if p.last_access_time.ToSeconds() >= seen_after)


async def stuck(client: Client, run_id: str) -> Stuck | None:
    """Why the run's workflow task keeps failing, once it failed ``STUCK_ATTEMPTS``
    times in a row; None while it goes (or ended, or never started)."""
    handle = client.get_workflow_handle(run_id)
    try:
        described = await handle.describe()
    except RPCError:
        return None
    attempts = described.raw_description.pending_workflow_task.attempt
    if attempts < STUCK_ATTEMPTS:
        return None
    why = "its worker gave no reason"
    # Temporal records the first failure of a run of failed attempts in the history
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            why = event.workflow_task_failed_event_attributes.failure.message or why
    return Stuck(attempts=attempts, why=why)


async def unclaimed(client: Client, run_id: str, now: float | None = None) -> float | None:
    """Seconds the run's workflow task has waited for a worker to take it; None when
    none waits (no task is pending, or a worker took it) or there is no workflow.

    A worker that is gone still counts as polling for a while (:data:`POLLER_GONE`),
    but a task that nobody takes says so at once: a woken workflow's task is taken
    within moments while its workers live."""
    try:
        described = await client.get_workflow_handle(run_id).describe()
    except RPCError:
        return None
    task = described.raw_description.pending_workflow_task
    if task.state != PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_SCHEDULED:
        return None
    at = now if now is not None else time.time()
    return max(0.0, at - task.scheduled_time.ToSeconds())


async def closed(client: Client, run_id: str) -> str | None:
    """How and why Temporal closed the run's newest workflow execution, when it was
    closed other than by Trestle (``terminated: ...``); None while it runs, when it
    completed or continued as new, or when there is none."""
    handle = client.get_workflow_handle(run_id)
    try:
        described = await handle.describe()
    except RPCError:
        return None
    if described.status not in CLOSED:
        return None
    how = described.status.name.lower().replace("_", " ")
    why = ""
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
            why = event.workflow_execution_terminated_event_attributes.reason
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
            why = event.workflow_execution_failed_event_attributes.failure.message
    # any client of Temporal writes a terminate's reason: one line of it, escaped, or
    # it printed lines of its own choosing ("run R: succeeded") to the follower
    return f"{how}: {one_line(why)}" if why else how
