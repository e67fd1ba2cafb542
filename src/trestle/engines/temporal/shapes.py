"""What travels between a Trestle workflow, its activities and its clients.

Plain dataclasses of strings and numbers (events as their JSON), so Temporal's default
converter carries them and the blob codec (:mod:`.blobs`) can move the large ones out of
the history. Nothing here does IO: the workflow imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WORKFLOW = "trestle.run"
NUDGE = "nudge"  # the signal: requests wait in the store's queue, go and read them
STATUS = "status"  # the query: where the run is, as the workflow holds it
RECORD = "record"  # the update: a running attempt's events, made durable in order

# A worker beats for an attempt every quarter of its heartbeat timeout, never more often
# than every SOONEST_BEAT seconds, and Temporal's SDK sends a beat at most every 0.8 of
# the timeout. Under SHORTEST_HEARTBEAT seconds that leaves the worker's loop less than
# 0.2 s to be late by before Temporal records an attempt lost though its worker is alive
# (at 0.3 s, 64 attempts of one run lost five: docs/temporal.md), so it is refused.
SOONEST_BEAT = 0.2
SHORTEST_HEARTBEAT = 1.0
# what a workflow's input may hold (the operator's own Drive never leaves them): a
# lease held longer kept a run from every other driver that long
LEASE_TTL_RANGE = (10.0, 600.0)
SHORTEST_HISTORY = 10  # events before continuing as new


def beat_every(heartbeat: float) -> float:
    """Seconds between two of a worker's beats for an attempt whose heartbeat timeout is
    ``heartbeat``."""
    return max(SOONEST_BEAT, heartbeat / 4)


@dataclass
class Drive:
    """The workflow's input: which run, and how to drive it.

    Attributes:
        run_id: the run (also the workflow's id).
        created: the run's ``run_created`` event (JSON), as the store holds it.
        lease_ttl: seconds the workflow's lease on the run lasts unrenewed; renewed
            every third of it while it drives. A run whose workflow has no worker for
            longer can be taken over (``trestle resume`` on one machine).
        heartbeat: seconds an attempt's worker may go silent before the attempt counts
            as lost (its outcome unknown: probed before anything re-runs it).
        history_limit: history events after which the workflow continues as new,
            once no attempt is running.
        carried: the lease token and the announced attempts the last execution did not
            dispatch, when this one continues it.
        indexed: whether the namespace defines Trestle's search attributes (see
            :mod:`.search`), so the workflow keeps them set.
    """

    run_id: str
    created: str | None = None  # the run's first event, so the history holds all of it
    lease_ttl: float = 60.0
    heartbeat: float = 10.0
    history_limit: int = 8000
    carried: Carried | None = None
    indexed: bool = False


@dataclass
class Carried:
    """What one execution hands the next: sealed (:mod:`.seals`), since whoever starts
    a workflow chooses its input, and announced work is dispatched without a new look."""

    token: int
    announced: list[str] = field(default_factory=list)  # StepStarted/StepProbeStarted
    seal: str = ""


@dataclass
class Loaded:
    """A run as an activity read it for a drive's start."""

    state: str  # RunState's JSON, plan included
    replay: list[tuple[int, str]]  # events the monitors catch up on: (seq, JSON)
    refusals: list[str]  # forged decisions found, not yet reported
    sandbox: list[str]  # how the loading host confines commands, when to record it


@dataclass
class Commit:
    """One batch for the store, fenced by the workflow's lease token."""

    run_id: str
    token: int
    first_seq: int
    events: list[str]
    status: str
    summary: str
    snapshot: str | None = None  # RunState.snapshot_json() at the batch's last seq
    consumed: list[int] = field(default_factory=list)


@dataclass
class Committed:
    """A batch as the store took it: the workflow's history keeps it as the commit's
    result. ``ahead``: the store held other events at those seqs, committed by a
    workflow task Temporal then closed; ``events`` are those, which the workflow adopts
    (and its history keeps, as the store does)."""

    first_seq: int
    events: list[str]
    ahead: bool = False


@dataclass
class Asked:
    """A waiting request, with the fields its signature vouches for (None: not signed
    by the decision path). The key never leaves the activity."""

    id: int
    kind: str
    step: str
    reason: str
    created_at: float
    payload: str
    fields: dict[str, Any] | None


@dataclass
class Perform:
    """An announced attempt or probe, for a worker to perform."""

    run_id: str
    announced: str  # the StepStarted or StepProbeStarted event's JSON
    heartbeat: float = 10.0
    ticket: str = ""  # names this dispatch in the seals of its records and outcome


@dataclass
class Performed:
    """An attempt's or probe's outcome (events as JSON), sealed by the worker that
    performed it: anyone may complete an activity by its id."""

    events: list[str]
    seal: str
    # the attempt was stopped, uncounted, because its model cannot be used as the run
    # binds it (a refused key, a dead address): the cause in a few words, and the
    # provider's own words; sealed over both, as ``seals.HALTED``, with no events
    halted: str = ""
    problem: str = ""


@dataclass
class LeaseAsk:
    run_id: str
    owner: str
    ttl: float
    token: int = 0  # for a renewal or a release


@dataclass
class Recorded:
    """Events a running attempt (an agent's model and tool calls) asks the workflow to
    apply and commit; refused unless that attempt is still the step's running one, the
    ticket is the one its dispatch carried, the seal is a worker's, the nonce is new,
    and the events are ones the attempt makes (:mod:`.admission`). The defaults only
    let a malformed update reach the validator, which refuses it."""

    step: str
    attempt: int
    events: list[str]
    ticket: str = ""
    nonce: int = 0
    seal: str = ""
