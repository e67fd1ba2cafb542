"""A Trestle run as a Temporal workflow: the pure core, driven deterministically.

The workflow does what the local engine's loop does, with Temporal keeping its place:

1. take in what happened (attempts and probes ended, requests a nudge announced);
2. ask the decider (``decide(state, workflow.now())``) what follows, feeding the
   monitors as the local engine does, until it has nothing more;
3. commit the batch to the store through an activity, fenced by the workflow's lease;
4. only then start the attempts and probes those events announce, as activities.

Everything that touches the world is an activity: the store, the decision key (a
request's signature is checked there and only its signed fields come back), the
workspace's files, each attempt. An attempt's activity is never retried by Temporal:
Trestle's own retry policy decides, and a lost attempt (its worker died: no heartbeat)
becomes ``step_attempt_lost``, probed before anything re-runs it, as after a crash; the
loss records where the attempt ran, as its worker sealed it (:mod:`.places`), so that a
probe elsewhere does not take the processes it cannot see for gone.

A run that waits on a human ends its drive, releases its lease and sleeps until a
``nudge`` signal (sent by ``trestle approve``, ``retry``, ``cancel`` ...) wakes it; a
succeeded or cancelled run ends the workflow. Long runs continue as new once no attempt
is in flight, carrying the lease: at the history limit the drive decides nothing more,
and starts what it had announced, so nothing announced is left undispatched.

An attempt whose model cannot be used (a refused key, a dead address: its worker says
so, sealed) stops the drive as an interrupt does, no attempt counted, and the run
sleeps until ``trestle resume`` points it elsewhere; unless the run was pointed
elsewhere while that attempt ran, and then it goes on at once on the new binding.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import partial
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

with workflow.unsafe.imports_passed_through():
    from trestle.agentplan.rounds import requirement_added
    from trestle.core.decider import alone_grants, decide, next_wakeup
    from trestle.core.errors import model_stop
    from trestle.core.events import (
        EVENT_ADAPTER,
        AnyEvent,
        Place,
        RunCancelled,
        RunInterrupted,
        RunResumed,
        StepAttemptLost,
        StepProbed,
        StepProbeStarted,
        StepStarted,
        event_json,
    )
    from trestle.core.plan import Step
    from trestle.core.records.monitors import DEFAULT_MONITORS
    from trestle.core.state import RunState
    from trestle.engines.approved import command_to_bind
    from trestle.engines.judge import Fields, cancel_in, request_as_events
    from trestle.engines.stall import StallWatch, stalled
    from trestle.engines.temporal import seals, search
    from trestle.engines.temporal.activities import FATAL, not_announced
    from trestle.engines.temporal.admission import misreported, unrecordable
    from trestle.engines.temporal.places import sealed_place
    from trestle.engines.temporal.shapes import (
        LEASE_TTL_RANGE,
        NUDGE,
        RECORD,
        SHORTEST_HEARTBEAT,
        SHORTEST_HISTORY,
        STATUS,
        WORKFLOW,
        Asked,
        Carried,
        Commit,
        Committed,
        Drive,
        LeaseAsk,
        Loaded,
        Perform,
        Performed,
        Recorded,
    )
    from trestle.lifecycle.runs import summary_json
    from trestle.monitors.hub import MonitorHub
    from trestle.store.base import Request

ENDS_WORKFLOW = ("succeeded", "cancelled")  # a run in any other state may go on
MODEL_STOPPED = "stopped: its model cannot be used"  # waits for `trestle resume`
# at its history limit the workflow starts no more attempts and continues as new once
# they end; at CEILING times the limit it stops those still running (they record as
# they go: an agent's) and the next execution runs them again
CEILING = 1.5
# the workflow's failure when its commit finds the store ahead while it stops its attempts
STORE_AHEAD = "StoreAhead"
LONG_HISTORY = "continue-as-new (a long history)"
SNAPSHOT_EVERY = 100  # events between state snapshots in the store, as the local engine
STORE_CALL = timedelta(seconds=60)
STORE_RETRY = RetryPolicy(
    maximum_interval=timedelta(seconds=5), non_retryable_error_types=list(FATAL)
)
PROBE_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=5), maximum_attempts=3)
NO_RETRY = RetryPolicy(maximum_attempts=1)  # an attempt: Trestle decides retries
NO_TIMEOUT = timedelta(days=7)  # a step without a timeout of its own


class LeaseGone(Exception):
    """Another driver holds the run now; this drive stops and starts over."""


class StoreAhead(Exception):
    """The store holds, from ``first_seq`` on, events this execution does not know: a
    workflow task committed them and then failed (Temporal closes a task under which
    more than 100 events arrived; a worker can die between its commit and its answer),
    so the task that took its place folded what came in differently."""

    def __init__(self, first_seq: int, stored: list[str]) -> None:
        super().__init__(
            f"the store holds {len(stored)} events from seq {first_seq} on that a workflow "
            "task Temporal closed had committed"
        )
        self.first_seq = first_seq
        self.stored = stored
        self.events = [EVENT_ADAPTER.validate_json(text) for text in stored]


Announced = StepStarted | StepProbeStarted


@workflow.defn(name=WORKFLOW)
class RunWorkflow:
    def __init__(self) -> None:
        self._nudged = False
        self._state: RunState | None = None
        self._renew_at = 0.0
        self._alarm: asyncio.Task[None] | None = None  # see _alarm_for
        self._alarm_at = 0.0
        # what running attempts asked to record, and who waits for the seqs
        self._posted: list[tuple[list[AnyEvent], asyncio.Future[list[int]]]] = []
        # each step's last dispatch: its ticket, and the nonces of the records it sent
        self._tickets: dict[str, str] = {}
        self._nonces: dict[str, set[int]] = {}
        # the search attributes as last set (None: not yet), when the namespace has them
        self._indexed = False
        self._searchable: tuple[str, str, tuple[str, ...]] | None = None
        # an attempt whose model cannot be used (its step, the cause): the drive stops,
        # unless the run was pointed elsewhere since that attempt began (its binding)
        self._unusable: tuple[str, str] | None = None
        self._bound: dict[str, tuple[str | None, ...]] = {}

    @workflow.signal(name=NUDGE)
    def nudge(self) -> None:
        """Requests wait in the store's queue: read them at the next turn."""
        self._nudged = True

    @workflow.update(name=RECORD)
    async def record(self, ask: Recorded) -> list[int]:
        """Apply and commit a running attempt's events with the next batch, as the
        local engine's outbox does; the seqs they got, once durable."""
        seen = self._nonces.setdefault(ask.step, set())
        if ask.nonce in seen:  # two copies validated before either got here
            raise ApplicationError(f"record {ask.nonce} of step {ask.step!r} came twice")
        seen.add(ask.nonce)
        done: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._posted.append(([EVENT_ADAPTER.validate_json(e) for e in ask.events], done))
        return await done

    @record.validator
    def _may_record(self, ask: Recorded) -> None:
        """Only the attempt the run holds as running may record (one whose loss was
        recorded, its worker gone silent yet alive, is fenced off), only through the
        worker that performs it (its seal, on this dispatch's ticket, once per nonce),
        and only what its own work makes (:mod:`.admission`)."""
        why = self._refused(ask)
        if why is not None:
            raise ValueError(
                f"record {ask.nonce} of attempt {ask.attempt} of step {ask.step!r} refused: {why}"
            )

    def _refused(self, ask: Recorded) -> str | None:
        state = self._state
        st = state.steps.get(ask.step) if state is not None else None
        if state is None or st is None or st.status != "running" or st.attempt != ask.attempt:
            return "that attempt is not running"
        if not ask.ticket or ask.ticket != self._tickets.get(ask.step):
            return "it names another dispatch than the running attempt's"
        parts = [workflow.info().workflow_id, ask.ticket, ask.step, str(ask.attempt)]
        parts += [str(ask.nonce), *ask.events]
        if not seals.sealed(_sealer(), seals.RECORD, parts, ask.seal):
            return "it carries no seal of a worker of this run's task queue"
        if ask.nonce in self._nonces.get(ask.step, ()):
            return "it was recorded already"
        try:
            events = [EVENT_ADAPTER.validate_json(e) for e in ask.events]
        except ValueError as exc:
            return f"its events do not parse: {exc}"
        return unrecordable(state, ask.step, events)

    @workflow.query(name=STATUS)
    def status(self) -> dict[str, Any]:
        state = self._state
        if state is None:
            return {"status": "starting"}
        return {
            "run_id": state.run_id,
            "seq": state.seq,
            "status": state.finished or "running",
            "counts": state.status_counts(),
        }

    @workflow.run
    async def run(self, drive: Drive) -> str:
        unfit = unfit_drive(drive, workflow.info().workflow_id)
        if unfit is not None:
            # whoever can reach Temporal may start a workflow with input of their
            # choosing: one named after another run took that run's approvals and
            # killed its steps on a 0.05 s heartbeat, and left its lease held an hour
            raise ApplicationError(f"nothing was driven: {unfit}", non_retryable=True)
        self._indexed = drive.indexed
        carried = drive.carried
        if carried is not None and not _carried_sealed(carried):
            # whoever starts a workflow chooses its input: work announced without the
            # seal of the execution that continued is not dispatched, and the lease is
            # taken again rather than assumed
            workflow.logger.warning(
                "run %s: the carried work is not sealed by a worker; ignored", drive.run_id
            )
            carried = None
        while True:
            try:
                ended = await self._drive(drive, carried)
            except LeaseGone:
                carried = None
                await workflow.sleep(drive.lease_ttl / 3)
                continue
            if isinstance(ended, Carried):
                workflow.continue_as_new(dataclasses.replace(drive, carried=ended))
            carried = None
            if ended in ENDS_WORKFLOW:
                return ended
            if self._history_long(drive):
                workflow.continue_as_new(dataclasses.replace(drive, carried=None))
            await workflow.wait_condition(lambda: self._nudged)

    # --- one drive: lease, load, loop, release ------------------------------------

    async def _drive(self, drive: Drive, carried: Carried | None) -> str | Carried:
        run_id, owner = drive.run_id, f"temporal workflow {drive.run_id}"
        ask = LeaseAsk(run_id=run_id, owner=owner, ttl=drive.lease_ttl)
        if carried is not None:
            ask.token = carried.token
        else:
            try:
                ask.token = await self._store("trestle.lease", ask, int)
            except ActivityError as exc:
                if _kind(exc) == "LeaseHeld":  # held by another: sleep, then try again
                    raise LeaseGone() from exc
                raise
        self._renew_at = self._now() + drive.lease_ttl / 3
        work: dict[asyncio.Task[RawValue], Announced] = {}
        try:
            ended = await self._loop(drive, carried, ask, work)
            if self._alarm is not None:
                self._alarm.cancel()
                self._alarm = None
        except ActivityError as exc:
            await self._stop_all(work)
            if _kind(exc) == "LeaseLost":
                raise LeaseGone() from exc
            await self._store("trestle.release", ask, type(None))
            raise
        # not in a ``finally``: a workflow evicted from a worker's cache must not act
        if not isinstance(ended, Carried):
            await self._store("trestle.release", ask, type(None))
        return ended

    async def _loop(
        self,
        drive: Drive,
        carried: Carried | None,
        ask: LeaseAsk,
        work: dict[asyncio.Task[RawValue], Announced],
    ) -> str | Carried:
        """Drive until the run finishes or waits on a human, or the history is long
        enough to continue as new."""
        run_id, owner = drive.run_id, ask.owner
        self._unusable = None
        loaded, state, hub, missed = await self._load(run_id)
        if state.cancelled is not None:
            return "cancelled"
        first_asked = await self._store("trestle.requests", run_id, list[Asked])
        if state.finished == "succeeded" and not loaded.refusals and not first_asked:
            return "succeeded"  # nothing to do, and nothing worth recording
        if (
            state.finished == "needs_human"
            and carried is None
            and state.interrupted is None
            and not (loaded.refusals or loaded.sandbox or missed or first_asked)
            and not state.waiting_children()
        ):
            # woken with nothing asked (any client may nudge): a resume of a run that
            # still waits would be recorded for each nudge, and nothing else
            return "needs_human"
        settings = state.monitors or DEFAULT_MONITORS
        inbound: list[AnyEvent] = []
        if (carried is None and state.seq > 1) or state.interrupted is not None:
            inbound.append(RunResumed(at=self._now(), owner=owner))
        inbound += [EVENT_ADAPTER.validate_json(e) for e in loaded.sandbox]
        inbound += missed
        inbound += [EVENT_ADAPTER.validate_json(e) for e in loaded.refusals]
        held: list[Announced] = [
            e
            for e in (EVENT_ADAPTER.validate_json(a) for a in (carried or Carried(0)).announced)
            if isinstance(e, StepStarted | StepProbeStarted)
        ]
        watch: StallWatch[asyncio.Task[RawValue]] = StallWatch(settings)
        look, draining = True, False
        while True:
            asked: list[Asked] = []
            if self._nudged:
                self._nudged = False
                asked = await self._store("trestle.requests", run_id, list[Asked])
            elif look:
                asked = first_asked
            look = False
            requests = [(_request(a, run_id), a.fields) for a in asked]
            signed = {r.id: fields for r, fields in requests}
            cancel = cancel_in(state, [r for r, _ in requests], partial(_signed, signed))
            if cancel is not None:
                requests = [(r, f) for r, f in requests if r.id != cancel.id]
            posted, self._posted = self._posted, []
            came = inbound  # what ended or was stopped, and what a drive's start brings
            inbound = came + [event for events, _ in posted for event in events]
            unusable = self._unusable if cancel is None else None
            # at its history limit the drive starts nothing new: it lets what runs end,
            # then continues as new, where the decider is asked again
            draining = draining or self._history_long(drive)
            decide_next = cancel is None and unusable is None and not draining
            batch = await self._advance(state, inbound, requests, hub, decide_next)
            if draining and cancel is None and unusable is None:
                # nothing new starts, but a step waiting at an approved call runs on only
                # once granted: the drive, waiting for it to end, would wait for good
                granted = alone_grants(state, self._now())
                batch += await self._advance(state, granted, [], hub, False)
            if cancel is not None:
                ending = partial(_cancelled, cancel, signed[cancel.id])
                batch += await self._halt(state, work, hub, ending)
            elif unusable is not None:
                # no retry mends a refused key or a dead address: stop every attempt,
                # none counted as failed, as the local engine's drive stops
                sid, cause = unusable
                also = {sid} | {e.step for e in held if isinstance(e, StepStarted)}
                ending = partial(_model_stopped, state, cause, also)
                batch += await self._halt(state, work, hub, ending)
                held, self._unusable = [], None
                if self._bound.get(sid) != _binding(state):
                    # a rebind came in while it ran: go on at once against the new one
                    resumed = RunResumed(at=self._now(), owner=owner)
                    batch += await self._advance(state, [resumed], [], hub, True)
                    unusable = None
            consumed = [r.id for r, _ in requests] + ([cancel.id] if cancel else [])
            inbound = []
            if batch or consumed:
                try:
                    first = await self._commit(state, batch, consumed, ask)
                except StoreAhead as ahead:
                    if cancel is not None or unusable is not None:
                        # its attempts are stopped: the workflow fails, saying why, and
                        # `trestle resume` goes on from the store
                        why = f"{ahead}, while its attempts were being stopped"
                        raise ApplicationError(why, type=STORE_AHEAD, non_retryable=True) from None
                    # take the run as the store holds it, and this round again on it
                    _, state, hub, inbound = await self._load(run_id)
                    inbound += self._not_yet_recorded(state, ahead, came, posted)
                    again, unseen = _adopted_starts(state, ahead, work, batch, self._now())
                    held += again
                    inbound += unseen
                    first_asked, look = asked, True
                    continue
                seq_of = {id(event): first + i for i, event in enumerate(batch)}
                for events, done in posted:
                    done.set_result([seq_of[id(event)] for event in events])
                watch.saw(batch, first, self._now())
                if cancel is not None:
                    return "cancelled"
                if unusable is not None:
                    return MODEL_STOPPED
                held += [e for e in batch if isinstance(e, StepStarted | StepProbeStarted)]
            # what is committed as started is started, limit or not: an attempt carried
            # to the next execution undispatched while this one stopped the others at
            # the ceiling was taken there for one lost mid-step, never having run, and
            # escalated to a human
            for event in held:
                handle = self._dispatch(state, event, drive)
                work[handle] = event
                watch.started(handle, event)
            held = []
            if work and self._history_long(drive, CEILING):
                # an attempt that records as it goes (an agent) could fill the history:
                # stop it as a stop does; the next execution re-runs it, replaying
                # what it recorded
                stopping = await self._halt(state, work, hub, _interrupted)
                await self._commit(state, stopping, [], ask)
                return _carry(ask.token, held)
            draining = draining or self._history_long(drive)
            if draining and not work:
                return _carry(ask.token, held)
            if state.finished is not None and not work:
                return state.finished
            inbound = await self._wait(state, work, watch, hub, ask)

    async def _load(
        self, run_id: str
    ) -> tuple[Loaded, RunState, MonitorHub | None, list[AnyEvent]]:
        """The run as the store holds it, its monitors caught up, and the alerts they
        missed."""
        loaded = await self._store("trestle.load", run_id, Loaded)
        state = RunState.model_validate_json(loaded.state)
        state.reindex()
        self._state, self._last_snapshot = state, state.seq
        self._index(state)
        settings = state.monitors or DEFAULT_MONITORS
        hub = MonitorHub(settings) if settings.enabled else None
        missed: list[AnyEvent] = []
        if hub is not None:
            replay = [(seq, EVENT_ADAPTER.validate_json(e)) for seq, e in loaded.replay]
            missed += hub.replay(replay, state)
        return loaded, state, hub, missed

    def _not_yet_recorded(
        self,
        state: RunState,
        ahead: StoreAhead,
        came: list[AnyEvent],
        posted: list[tuple[list[AnyEvent], asyncio.Future[list[int]]]],
    ) -> list[AnyEvent]:
        """Of what came in during the round whose commit found the store ahead, what the
        failed task did not record: an attempt's own events are the same bytes there; an
        outcome this workflow made (a loss, a stall) is recorded if its attempt is over;
        a drive's start's events once each kind is there. A record whose events are all
        there gets their seqs; the others are posted again."""
        seqs = {text: ahead.first_seq + i for i, text in enumerate(ahead.stored)}
        kinds: set[str] = {e.kind for e in ahead.events}
        again = [e for e in came if event_json(e) not in seqs and _still_open(state, e, kinds)]
        for events, done in posted:
            texts = [event_json(e) for e in events]
            if all(text in seqs for text in texts):
                done.set_result([seqs[text] for text in texts])
            else:
                self._posted.append((events, done))
        return again

    async def _commit(
        self, state: RunState, batch: list[AnyEvent], consumed: list[int], ask: LeaseAsk
    ) -> int:
        """Make ``batch`` durable (and the requests it answers consumed); its first seq.

        Raises:
            StoreAhead: the store holds other events from that seq on (see there).
        """
        snapshot = None
        if state.seq - self._last_snapshot >= max(SNAPSHOT_EVERY, len(state.steps)):
            snapshot, self._last_snapshot = state.snapshot_json(), state.seq
        commit = Commit(
            run_id=state.run_id,
            token=ask.token,
            first_seq=state.seq - len(batch) + 1,
            events=[event_json(e) for e in batch],
            status=state.finished or "running",
            summary=summary_json(state),
            snapshot=snapshot,
            consumed=consumed,
        )
        committed = await self._store("trestle.commit", commit, Committed)
        if committed.ahead:
            raise StoreAhead(commit.first_seq, committed.events)
        self._index(state)
        return commit.first_seq

    def _index(self, state: RunState) -> None:
        """Keep the run's search attributes (status, goal, steps waiting on a human)
        as the store has it, so Temporal's UI and ``temporal workflow list --query``
        find it; set only when they change, each setting being a history event."""
        if not self._indexed:
            return
        found = search.values(state)
        if found != self._searchable:
            workflow.upsert_search_attributes(search.updates(found))
            self._searchable = found

    # --- the loop's parts ---------------------------------------------------------

    async def _advance(
        self,
        state: RunState,
        inbound: list[AnyEvent],
        requests: list[tuple[Request, Fields]],
        hub: MonitorHub | None,
        decide_next: bool,
    ) -> list[AnyEvent]:
        """Apply what came in, then requests, then the decider's answers; each event
        is shown to the monitors as it is applied, and their alerts follow it (as
        ``LocalEngine._advance``, with a command's named files read by an activity)."""
        batch: list[AnyEvent] = []

        async def take(event: AnyEvent) -> None:
            command = command_to_bind(state, event)
            if command is not None:
                files = await self._store(
                    "trestle.named_files", (command, state.workspace), dict[str, str]
                )
                event = event.model_copy(update={"files": files})
            state.apply(event)
            batch.append(event)
            if hub is not None:
                for raised in hub.feed(state.seq, event, state):
                    await take(raised)

        for event in inbound:
            await take(event)
        for request, fields in requests:
            for answer in request_as_events(state, request, fields, self._now(), tell=_tell):
                await take(answer)
        while decide_next and (decided := decide(state, self._now())):
            for event in decided:
                await take(event)
        return batch

    def _dispatch(self, state: RunState, event: Announced, drive: Drive) -> asyncio.Task[RawValue]:
        ticket = self._tickets[event.step] = str(workflow.uuid4())
        self._bound[event.step] = _binding(state)
        self._nonces[event.step] = set()
        job = Perform(
            run_id=state.run_id,
            announced=event_json(event),
            heartbeat=drive.heartbeat,
            ticket=ticket,
        )
        probe = isinstance(event, StepProbeStarted)
        return workflow.start_activity(
            "trestle.perform",
            job,
            # decoded in ``_outcome``: anyone may complete the activity by its id, and
            # a result that fails to decode here would fail every workflow task
            result_type=RawValue,
            start_to_close_timeout=backstop(state.step_spec(event.step)),
            heartbeat_timeout=timedelta(seconds=drive.heartbeat),
            retry_policy=PROBE_RETRY if probe else NO_RETRY,
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=f"{'probe' if probe else 'attempt'} {event.step}",
        )

    async def _wait(
        self,
        state: RunState,
        work: dict[asyncio.Task[RawValue], Announced],
        watch: StallWatch[asyncio.Task[RawValue]],
        hub: MonitorHub | None,
        ask: LeaseAsk,
    ) -> list[AnyEvent]:
        """Sleep until an attempt ends or posts events, a nudge comes, a retry falls
        due, an attempt stalls or the lease wants renewing; return what ended."""
        deadlines = [self._renew_at]
        for due in (next_wakeup(state), watch.next_due(state)):
            if due is not None:
                deadlines.append(due)
        alarm = self._alarm_for(min(deadlines))
        await workflow.wait_condition(
            lambda: (
                self._nudged or bool(self._posted) or alarm.done() or any(t.done() for t in work)
            )
        )
        now = self._now()
        if now >= self._renew_at:
            await self._store("trestle.renew", ask, type(None))
            self._renew_at = now + ask.ttl / 3
            # and the queue is read, nudged or not: a cancel whose nudge was lost (the
            # server away a moment, or its 10,000 signals spent by a flood) waited for
            # the approved step it was to stop to end on its own
            self._nudged = True
        ended: list[AnyEvent] = []
        for task in [t for t in work if t.done()]:
            ended += self._outcome(work.pop(task), task, now)
        for task, (sid, attempt, last_seq, silent) in watch.overdue(state, now):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            work.pop(task, None)
            ended += stalled(state, hub, sid, attempt, last_seq, silent, now)
        ended.sort(key=lambda e: state.position(getattr(e, "step", "")))
        return ended

    def _alarm_for(self, deadline: float) -> asyncio.Task[None]:
        """A timer that fires by ``deadline``. One timer serves many waits: it is only
        replaced by an earlier deadline (a later one is looked at again when it
        fires), so a turn of an agent's records costs no timer of its own."""
        alarm = self._alarm
        if alarm is None or alarm.done() or deadline < self._alarm_at:
            if alarm is not None:
                alarm.cancel()
            self._alarm_at = deadline
            alarm = self._alarm = asyncio.create_task(
                workflow.sleep(max(0.001, deadline - self._now()))
            )
        return alarm

    async def _halt(
        self,
        state: RunState,
        work: dict[asyncio.Task[RawValue], Announced],
        hub: MonitorHub | None,
        ending: Callable[[tuple[str, ...], float], AnyEvent],
    ) -> list[AnyEvent]:
        """Stop every attempt (each activity cancelled and waited for, so its processes
        are gone), apply the outcomes that still came in and what was posted
        meanwhile, and record ``ending`` (a cancel, or an interruption) naming the steps
        it stopped."""
        running = list(work.items())
        await self._stop_all(work)
        now = self._now()
        arrived: list[AnyEvent] = []
        for task, announced in running:
            if not task.cancelled() and task.exception() is None:
                arrived += self._outcome(announced, task, now)
        posted, self._posted = self._posted, []
        for events, done in posted:  # their attempts are stopped: nobody waits any more
            arrived += events
            done.cancel()
        batch = await self._advance(state, arrived, [], hub, False)
        stopped = tuple(
            sorted(
                (a.step for _, a in running if state.steps[a.step].status == "running"),
                key=state.position,
            )
        )
        return batch + await self._advance(state, [ending(stopped, now)], [], hub, False)

    async def _stop_all(self, work: dict[asyncio.Task[RawValue], Announced]) -> None:
        for task in work:
            task.cancel()
        if work:
            await asyncio.gather(*work, return_exceptions=True)
        work.clear()

    def _outcome(
        self, announced: Announced, task: asyncio.Task[RawValue], now: float
    ) -> list[AnyEvent]:
        """The events an ended activity brought, or the loss of its attempt: when its
        worker died, failed, or the outcome is not one its worker sealed (anyone may
        complete an activity by its id) or not about this attempt."""
        try:
            raw = task.result()
        except ActivityError as exc:
            cause = exc.cause
            details: Sequence[object] = ()
            if isinstance(cause, ActivityTimeoutError):
                why = "its worker stopped answering (no heartbeat in time)"
                details = cause.last_heartbeat_details
            else:
                why = f"its worker failed: {cause or exc}"
                details = cause.details if isinstance(cause, ApplicationError) else ()
            ticket = self._tickets.get(announced.step, "")
            ran_on = sealed_place(details, _sealer(), workflow.info().workflow_id, ticket)
            return _lost(announced, why, now, ran_on)
        try:
            performed = workflow.payload_converter().from_payload(raw.payload, Performed)
        except Exception as exc:  # whatever the converter makes of a stranger's bytes
            return _lost(announced, f"its outcome was refused: it is not one ({exc})", now)
        ticket = self._tickets.get(announced.step, "")
        if performed.halted and isinstance(announced, StepStarted):
            parts = [workflow.info().workflow_id, ticket, performed.halted, performed.problem]
            if seals.sealed(_sealer(), seals.HALTED, parts, performed.seal):
                # the step stays running until the drive stops it (see _loop)
                self._unusable = self._unusable or (announced.step, performed.halted)
                return []
            why = "its word that the model cannot be used came without its worker's seal"
            return _lost(announced, f"{why}: refused, its effects unknown", now)
        parts = [workflow.info().workflow_id, ticket, *performed.events]
        if not seals.sealed(_sealer(), seals.OUTCOME, parts, performed.seal):
            why = "its outcome came without its worker's seal (completed from outside)"
            return _lost(announced, f"{why}: refused, its effects unknown", now)
        events = [EVENT_ADAPTER.validate_json(e) for e in performed.events]
        wrong = misreported(announced, events)
        if wrong is not None:
            return _lost(announced, f"its outcome was refused: {wrong}", now)
        return events

    async def _store(self, name: str, arg: Any, result: Any) -> Any:
        args = list(arg) if isinstance(arg, tuple) else [arg]
        # a local activity: run by the worker that runs this workflow task, recorded as
        # one marker (a commit per model or tool call must cost little history and time)
        return await workflow.execute_local_activity(
            name,
            args=args,
            result_type=result,
            start_to_close_timeout=STORE_CALL,
            retry_policy=STORE_RETRY,
        )

    def _now(self) -> float:
        return workflow.now().timestamp()

    def _history_long(self, drive: Drive, times: float = 1.0) -> bool:
        """Whether the history passed ``times`` its limit (or Temporal suggests it)."""
        info = workflow.info()
        return info.get_current_history_length() >= drive.history_limit * times or (
            times == 1.0 and info.is_continue_as_new_suggested()
        )


def backstop(step: Step) -> timedelta:
    """Temporal's start-to-close timeout for an attempt of ``step``: a minute past the
    step's own ``timeout``, which the attempt enforces itself. None for an agent step:
    its attempt may wait at a command a human approved until nothing else of the run
    runs, and that wait is the run's, not the attempt's (its timeout moves on by as
    long: see ``StepSession.alone``); a backstop fixed as the attempt is scheduled
    would end it a minute into such a wait."""
    if step.timeout is None or (step.agent is not None and step.delegate is None):
        return NO_TIMEOUT
    return timedelta(seconds=step.timeout + 60)


def _lost(
    announced: Announced, why: str, now: float, ran_on: Place | None = None
) -> list[AnyEvent]:
    """The attempt (or probe) is lost; ``ran_on`` is where, when its worker said so."""
    attempt = announced.attempt if isinstance(announced, StepStarted) else 0
    if ran_on is not None:
        why = f"{why}; it ran on host {ran_on.host!r}, worker pid {ran_on.pid}"
    lost = StepAttemptLost(at=now, step=announced.step, attempt=attempt, why=why, ran_on=ran_on)
    return [lost]


def _still_open(state: RunState, event: AnyEvent, kinds: set[str]) -> bool:
    """Whether ``event``, made again after a failed workflow task, is not yet in the
    store as ``state`` (the store's) holds it; ``kinds`` those the failed task recorded."""
    sid = getattr(event, "step", None)
    if sid is None:
        return event.kind not in kinds
    st = state.steps.get(sid)
    if st is None:
        return False
    if isinstance(event, StepProbed):
        return st.status == "probing"
    attempt = getattr(event, "attempt", None)
    return st.status == "running" and attempt in (None, st.attempt)


def _adopted_starts(
    state: RunState,
    ahead: StoreAhead,
    work: dict[asyncio.Task[RawValue], Announced],
    decided: list[AnyEvent],
    now: float,
) -> tuple[list[Announced], list[AnyEvent]]:
    """The starts a closed workflow task committed, which Temporal dropped with its
    answer: those this drive decided again on the same history, field for field but
    their time (``decided``, its round's batch), are dispatched; any other is taken for
    lost, probed before anything runs it, as a crashed driver's. Only the decider
    chooses what runs: an event in the store that no decision here made (anything that
    can open the store could have written it) is never dispatched."""

    def same(event: AnyEvent) -> str:
        """The event but for its time, which is the task's that made it."""
        return event_json(event.model_copy(update={"at": 0.0}))

    ours = {same(e) for e in decided if isinstance(e, StepStarted | StepProbeStarted)}
    sent = {same(a) for a in work.values()}
    again: list[Announced] = []
    unseen: list[AnyEvent] = []
    for event in ahead.events:
        if not isinstance(event, StepStarted | StepProbeStarted):
            continue
        key = same(event)
        if key in sent:
            continue
        if not_announced(state, event) is not None:
            continue  # the store holds it over already
        if key in ours:
            again.append(event)
        else:
            why = "committed by a workflow task Temporal closed, and not decided again"
            unseen += _lost(event, why, now)
    return again, unseen


def _sealer() -> seals.Sealer:
    """The sealing function this worker lends its workflows (see :mod:`.seals`)."""
    found = workflow.extern_functions().get(seals.SEAL)
    if found is None:
        raise RuntimeError(
            "this worker lends workflows no sealing function: run Trestle's workflows "
            "with `trestle worker` (trestle.engines.temporal.connect.serve)"
        )
    return found


def _carry(token: int, held: list[Announced]) -> Carried:
    announced = [event_json(e) for e in held]
    parts = [workflow.info().workflow_id, str(token), *announced]
    return Carried(token=token, announced=announced, seal=_sealer()(seals.CARRIED, parts))


def _carried_sealed(carried: Carried) -> bool:
    parts = [workflow.info().workflow_id, str(carried.token), *carried.announced]
    return seals.sealed(_sealer(), seals.CARRIED, parts, carried.seal)


def _kind(exc: ActivityError) -> str | None:
    cause = exc.cause
    return cause.type if isinstance(cause, ApplicationError) else None


def _tell(
    state: RunState, text: str, by: str, request_id: int, now: float
) -> list[AnyEvent] | None:
    """An agent run's new requirement, as the agent runtime takes it (pure)."""
    return list(requirement_added(state, text, by=by, request_id=request_id, now=now))


def _cancelled(request: Request, fields: Fields, stopped: tuple[str, ...], at: float) -> AnyEvent:
    by = str((fields or {}).get("by", "user"))
    return RunCancelled(at=at, by=by, reason=request.reason, stopped=stopped, request_id=request.id)


def _interrupted(stopped: tuple[str, ...], at: float) -> AnyEvent:
    return RunInterrupted(at=at, by=LONG_HISTORY, stopped=stopped)


def _binding(state: RunState) -> tuple[str | None, ...]:
    agent = state.agent
    return () if agent is None else (agent.model, agent.base_url, agent.api_key_env)


def _model_stopped(
    state: RunState, cause: str, also: set[str], stopped: tuple[str, ...], at: float
) -> AnyEvent:
    """The drive stopped for a model that cannot be used; ``also``: the attempt that
    found it (stopped by its worker) and any announced attempt not yet dispatched."""
    running = {sid for sid in also if state.steps[sid].status == "running"}
    named = tuple(sorted(running | set(stopped), key=state.position))
    return RunInterrupted(at=at, by=model_stop(cause), stopped=named)


def _signed(signed: dict[int, Fields], request: Request) -> Fields:
    return signed[request.id]


def _request(asked: Asked, run_id: str) -> Request:
    return Request(
        id=asked.id,
        run_id=run_id,
        kind=asked.kind,  # type: ignore[arg-type]  # the store wrote one of its kinds
        step=asked.step,
        reason=asked.reason,
        created_at=asked.created_at,
        payload=asked.payload,
    )


def unfit_drive(drive: Drive, workflow_id: str) -> str | None:
    """Why a workflow's input must drive nothing: a run other than the workflow's own
    id, or tuning outside what an operator may set (``trestle.cli.temporal.tuning``)."""
    if drive.run_id != workflow_id:
        return f"its input names run {drive.run_id!r}, not its own id {workflow_id!r}"
    for name, value, least, most in (
        ("lease_ttl", drive.lease_ttl, LEASE_TTL_RANGE[0], LEASE_TTL_RANGE[1]),
        ("heartbeat", drive.heartbeat, SHORTEST_HEARTBEAT, 1e9),
        ("history_limit", drive.history_limit, SHORTEST_HISTORY, 1e9),
    ):
        if not least <= value <= most:
            return f"its {name} {value!r} lies outside {least:g}..{most:g}"
    return None
