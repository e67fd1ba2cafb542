"""Where an attempt runs, and which worker may look for what it left behind.

A worker that dies mid-step (SIGKILL, a lost host) can leave the attempt's processes
running. The probe that follows finds them by reading ``/proc``
(:mod:`trestle.execution.processes`), which shows only the processes of its own host
and pid namespace: its view. On another host it would find nothing, and take that for
their absence. So each attempt's worker says where it runs, in its heartbeats' details
(and in its failure's), sealed (:mod:`.seals`) over the dispatch's ticket, since any
client can heartbeat an activity by its id. When the attempt is lost, the workflow
records that place with the loss (``StepAttemptLost.ran_on``), and a probe on a worker
of another view, or of an attempt whose place is not known, looks for nothing and runs
no check: it says ``leftovers="unseen"``, and the decider escalates the step to a human
with the host, the worker's pid and the idempotency key to look for there.

Pure: the workflow imports it. The worker's own place, and whether a probe is out of
sight, come from :mod:`trestle.execution.places`, which the local engine shares.
"""

from __future__ import annotations

from collections.abc import Sequence

from trestle.core.events import Place
from trestle.engines.temporal import seals


def place_details(place: Place, seal: seals.Sealer, workflow_id: str, ticket: str) -> list[str]:
    """What an attempt's heartbeats (and failure) carry: its place and the seal over
    it, for the dispatch ``ticket`` names."""
    text = place.model_dump_json()
    return [text, seal(seals.PLACE, [workflow_id, ticket, text])]


def sealed_place(
    details: Sequence[object], by: seals.Sealer, workflow_id: str, ticket: str
) -> Place | None:
    """The place ``details`` name, if a worker of this task queue sealed them for this
    dispatch; None otherwise (no details, a stranger's, another dispatch's)."""
    if len(details) != 2 or not all(isinstance(d, str) for d in details):
        return None
    text, given = str(details[0]), str(details[1])
    if not ticket or not seals.sealed(by, seals.PLACE, [workflow_id, ticket, text], given):
        return None
    try:
        return Place.model_validate_json(text)
    except ValueError:
        return None
