"""Cancelling a run (``trestle cancel``): nothing more of it runs, and it cannot be
resumed.

Two ways, depending on who holds the run's lease:

- **A live process drives it.** A signed ``cancel`` request is queued; the driver
  reads it on its next poll, stops its running attempts as it does on a signal (a
  command's process group killed and seen gone), records ``RunCancelled`` with the
  request's id in the same commit that consumes the request, and ends. This command
  waits for that record.
- **Nobody drives it** (never started, waiting on a human, or its driver died). This
  command takes the lease itself, so no driver can start meanwhile; kills what is left
  of the attempts a dead driver left running (found by their idempotency keys and
  recorded process groups, as a resume's probe does), and records ``RunCancelled``.
  An attempt whose driver ran on another host (or in another pid namespace) is out of
  this command's sight: it ends nothing there, and says so (``Cancelled.elsewhere``),
  naming the host and the idempotency key its processes carry.

A request the driver did not take before it ended is taken here the second way.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from trestle.core.errors import ConfigError, LeaseHeldError
from trestle.core.events import RunCancelled, idempotency_key
from trestle.core.state import RunState
from trestle.execution.places import unseen
from trestle.execution.processes import KEY_VAR, Leader, process_view, reap
from trestle.lifecycle.doorbell import ring
from trestle.lifecycle.lease import DEFAULT_LEASE_TTL, FINISH_WAIT, this_process
from trestle.lifecycle.outcomes import POLL, driven_live
from trestle.lifecycle.runs import load_state, record
from trestle.store.base import Request, Store, subtree
from trestle.trust.signing import decision_key, signed_payload

# the driver stops its steps first: a Python callable may take FINISH_WAIT to end
PATIENCE = FINISH_WAIT + 15.0
RING_AGAIN = 2.0  # seconds between two rings of the driver's bell while it is waited for


@dataclass(frozen=True)
class Cancelled:
    """What ``cancel_run`` did.

    Attributes:
        state: the run as it is now.
        by: who stopped it: the driving process's name, or None when this process
            recorded the cancel itself.
        already: the run had been cancelled before (nothing was done).
        elsewhere: for each attempt a dead driver left running where this process
            cannot see processes (another host), what a person must end there.
    """

    state: RunState
    by: str | None
    already: bool = False
    elsewhere: tuple[str, ...] = ()


def cancel_run(
    store: Store,
    run_id: str,
    reason: str,
    *,
    by: str,
    key: bytes | None = None,
    patience: float = PATIENCE,
) -> Cancelled:
    """Cancel ``run_id`` (see the module).

    Raises:
        ConfigError: the run already succeeded, or the reason is empty.
        LeaseHeldError: a live driver did not take the cancel within ``patience``
            seconds (it stays queued, and that driver takes it on its next poll).
    """
    if not reason.strip():
        raise ConfigError("the reason is empty: say why the run is cancelled")
    state = load_state(store, run_id)
    if state.cancelled is not None:
        return Cancelled(state, None, already=True)
    if state.finished == "succeeded":
        raise ConfigError(f"run {run_id!r} already succeeded: there is nothing to cancel")
    done = _directly(store, run_id, reason, by=by)
    if done is not None:
        ring(store, run_id)  # a workflow asleep on the run wakes, finds it cancelled, ends
        return done
    # a live driver holds the lease: ask it, and wait for its record
    lease = store.lease(run_id)
    holder = lease.owner.name if lease is not None else "the run's driver"
    fields = {"run_id": run_id, "kind": "cancel", "step": "", "reason": reason, "by": by}
    payload = signed_payload(fields, key or decision_key())
    request_id = store.add_request(run_id, "cancel", "", reason, now=time.time(), payload=payload)
    ring(store, run_id)
    deadline = time.monotonic() + patience
    ring_again = time.monotonic() + RING_AGAIN
    while True:
        if time.monotonic() >= ring_again:  # a bell lost (its server away a moment)
            ring(store, run_id)
            ring_again = time.monotonic() + RING_AGAIN
        driver = driven_live(store, run_id, time.time())
        state = load_state(store, run_id)
        if state.cancelled is not None:
            return Cancelled(state, holder)
        if driver is None:  # the drive ended without taking it: record it here
            request = next((r for r in store.pending_requests(run_id) if r.id == request_id), None)
            done = _directly(store, run_id, reason, by=by, request=request)
            if done is not None:
                return done
        elif time.monotonic() >= deadline:
            raise LeaseHeldError(
                f"run {run_id!r} is driven by {driver}, which has not taken the cancel "
                f"within {patience:.0f}s; it stays queued and the driver takes it on its "
                "next poll"
            )
        time.sleep(POLL)


def cancel_tree(
    store: Store, run_id: str, reason: str, *, by: str, key: bytes | None = None
) -> tuple[Cancelled, list[tuple[str, Cancelled]]]:
    """Cancel ``run_id``, then each delegated descendant not already finished well.

    The run first: its driver stops its delegating steps, which stop their children
    (each recording why in its own log); then each descendant left unfinished is
    cancelled in turn, so none can be resumed.
    """
    done = cancel_run(store, run_id, reason, by=by, key=key)
    below: list[tuple[str, Cancelled]] = []
    for row, _ in subtree(store.runs(), run_id):
        if row.status == "succeeded":
            continue  # finished work is kept; a cancel stops what is left
        why = f"its ancestor {run_id} was cancelled: {reason}"
        below.append((row.run_id, cancel_run(store, row.run_id, why, by=by, key=key)))
    return done, below


def _directly(
    store: Store, run_id: str, reason: str, *, by: str, request: Request | None = None
) -> Cancelled | None:
    """Cancel the run under its lease; None when a live process holds the lease."""
    try:
        lease = store.acquire_lease(
            run_id, this_process("trestle cancel"), ttl=DEFAULT_LEASE_TTL, now=time.time()
        )
    except LeaseHeldError:
        return None
    try:
        state = load_state(store, run_id)
        if state.cancelled is not None:
            return Cancelled(state, None, already=request is None)
        here = process_view()
        running = [sid for sid, st in state.steps.items() if st.status == "running"]
        far = [sid for sid in running if unseen(state.steps[sid], here, unplaced=False)]
        stopped = asyncio.run(_end_leftovers(state, [s for s in running if s not in far]))
        event = RunCancelled(
            at=time.time(),
            by=by,
            reason=reason,
            stopped=stopped,
            request_id=request.id if request is not None else None,
        )
        consumed = [request.id] if request is not None else []
        record(
            store, state, event, token=lease.token, status="cancelled", consumed_requests=consumed
        )
        return Cancelled(state, None, elsewhere=tuple(_out_of_reach(state, sid) for sid in far))
    finally:
        store.release_lease(run_id, lease.token)


def _out_of_reach(state: RunState, sid: str) -> str:
    """What a person must do about the attempt of ``sid`` a dead driver ran elsewhere."""
    st = state.steps[sid]
    assert st.ran_on is not None  # unseen() holds only for an attempt with a place
    key = idempotency_key(state.run_id, sid, st.attempt)
    return (
        f"step {sid!r}: attempt {st.attempt} ran on host {st.ran_on.host!r} (driver pid "
        f"{st.ran_on.pid}), whose processes cannot be seen or ended from here; on "
        f"{st.ran_on.host!r}, end every process whose environment holds {KEY_VAR}={key}"
    )


async def _end_leftovers(state: RunState, running: list[str]) -> tuple[str, ...]:
    """Kill what is left of the attempts of the steps in ``running`` a dead driver
    left, and wait until they are gone; those steps."""

    async def end(sid: str) -> None:
        st = state.steps[sid]
        leader = (
            Leader(st.process.pid, st.process.pgid, st.process.start_time) if st.process else None
        )
        await reap(idempotency_key(state.run_id, sid, st.attempt), leader, 0.0)

    await asyncio.gather(*(end(sid) for sid in running))
    return tuple(sorted(running, key=state.position))
