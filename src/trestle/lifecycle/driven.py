"""Whether anything drives a run: the one judgement every view shows.

A run's row says ``running`` from its first event until it finishes, whatever became
of its driver. ``trestle runs`` and ``show`` (text and ``--json``), ``trestle health``,
the dashboard and the MCP tools all ask :func:`driving`, so none of them calls a run
running that nothing drives: one a signal stopped, or whose driver died without a
word (``kill -9``, a crash, a machine that stopped), is ``interrupted``; each says so
in the same words (:func:`interrupted_note`, :data:`DRIVER_LOST`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from trestle.store.base import Lease, RunRow, Store, owner_is_alive

# why a run with no live driver and no recorded interrupt stopped
LOST_DRIVER = "it was killed, or its machine stopped"
LET_GO = "as `trestle rewind` leaves it"
DRIVER_LOST = "interrupted: driver lost"  # a step its driver left running as it died
LEFT_RUNNING = ("running", "probing")


@dataclass(frozen=True)
class Driving:
    """What drives a run, as of one moment."""

    status: str  # as shown: the recorded status, or ``interrupted``
    alive: bool  # a live process holds the run's lease
    # its driver died without recording an interrupt: the lease is held by no one alive
    lost: bool = False
    # let go of unfinished without a word by what last held it (``trestle rewind``)
    released: bool = False


def driving(status: str, interrupted: str | None, lease: Lease | None, *, now: float) -> Driving:
    """``status`` as the run's row records it, ``interrupted`` the signal its last
    driver recorded stopping it (if any), ``lease`` who last drove it."""
    alive = lease is not None and lease.expires_at > now and owner_is_alive(lease.owner)
    if status != "running" or alive:
        return Driving(status, alive)
    if interrupted is not None:
        return Driving("interrupted", False)
    if lease is None:  # a run made and never driven is not interrupted
        return Driving(status, False)
    released = lease.expires_at == 0  # as release_lease leaves it; a dead driver's runs out
    return Driving("interrupted", False, lost=not released, released=released)


def drivings(store: Store, rows: Sequence[RunRow]) -> dict[str, Driving]:
    """:func:`driving` for each row, by run id; only a running row's lease is read."""
    now = time.time()
    found = {}
    for row in rows:
        if row.status != "running":
            found[row.run_id] = Driving(row.status, False)
            continue
        lease = store.lease(row.run_id)
        found[row.run_id] = driving(row.status, row.summarised().interrupted, lease, now=now)
    return found


def interrupted_note(run_id: str, by: str | None, judged: Driving, root: str | None = None) -> str:
    """What stopped a run :func:`driving` judged ``interrupted`` and the command that
    moves it; ``by``: the signal its last driver recorded stopping it, if any;
    ``root``: a delegated child's tree's root, which is what ``trestle resume`` takes
    (a child is never resumed on its own)."""
    if by:
        how = f"was interrupted by {by}"
    elif judged.released:
        how = f"was left unfinished ({LET_GO})"
    else:
        how = f"lost its driver ({LOST_DRIVER})"
    if root is not None and root != run_id:
        return f"run {run_id} {how}: continue its tree with `trestle resume {root}`"
    return f"run {run_id} {how}: continue with `trestle resume {run_id}`"
