"""The IO a Trestle workflow asks its workers for: the store, the key, the workspace.

The store stays the run's record, as with the local engine: every event the workflow
decides is committed here, fenced by the workflow's lease token, before the work it
announces is dispatched, so ``trestle show``, ``log`` and ``inbox`` read a Temporal
run as they read any other. A step's attempt is performed by the local engine's own
code (:meth:`LocalEngine.perform_for`) on the worker that picks it up, heartbeating so
that a worker that dies is noticed within ``heartbeat`` seconds; its heartbeats say
where it runs, so that only a worker that can see that host's processes probes what it
left (:mod:`.places`).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ParamSpec, TypeVar, cast

from temporalio import activity
from temporalio.exceptions import ApplicationError

from trestle.core.errors import (
    ConfigError,
    LeaseHeldError,
    LeaseLostError,
    ModelBindingError,
    RunError,
    StoreDamagedError,
    UnknownRunError,
)
from trestle.core.events import (
    EVENT_ADAPTER,
    ActionResult,
    AnyEvent,
    StepAttemptEnded,
    StepProbed,
    StepProbeStarted,
    StepStarted,
    StoredEvent,
    event_json,
    idempotency_key,
)
from trestle.core.safetext import model_json
from trestle.core.state import RunState
from trestle.engines.local import LocalEngine
from trestle.engines.temporal import seals
from trestle.engines.temporal.late import Beats, LateBeats
from trestle.engines.temporal.loads import SharedLoads, changes_state, own_copy
from trestle.engines.temporal.places import place_details
from trestle.engines.temporal.shapes import (
    RECORD,
    Asked,
    Commit,
    Committed,
    LeaseAsk,
    Loaded,
    Perform,
    Performed,
    Recorded,
    beat_every,
)
from trestle.engines.work import PerformerFor
from trestle.execution.named_files import named_files
from trestle.execution.places import here, out_of_sight
from trestle.lifecycle.approvals import vetter
from trestle.lifecycle.runs import catch_up, signed_snapshot
from trestle.store.base import Appended, Owner, Store
from trestle.trust.identity import decision_fields
from trestle.trust.signing import decision_key

P = ParamSpec("P")
T = TypeVar("T")
HOST = "temporal"  # a workflow's lease lives by its expiry, never by a local pid
# errors a retry cannot mend: the workflow handles them rather than Temporal retrying
FATAL = ("LeaseLost", "UnknownRun", "StoreDamaged")


def _me() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


def _workflow_id() -> str:
    workflow_id = activity.info().workflow_id
    assert workflow_id is not None  # Trestle's activities are started by its workflow
    return workflow_id


def _fatal(exc: Exception, kind: str) -> ApplicationError:
    return ApplicationError(str(exc), type=kind, non_retryable=True)


class TrestleActivities:
    """The activities, over one store (opened once per worker process)."""

    def __init__(
        self,
        store: Store,
        *,
        engine: LocalEngine | None = None,
        performer_for: PerformerFor | None = None,
        late: LateBeats | None = None,
    ) -> None:
        self.store = store
        self.performer_for = performer_for
        self.late = late  # says when an attempt's heartbeat comes near its timeout's end
        self.engine = engine or LocalEngine(store, performer_for=performer_for)
        self.place = here()
        # sqlite3 blocks: one thread keeps the store's writes off the worker's loop and
        # serialises them; its reads have a thread and a connection of their own. On
        # one, a write waiting for a store another process held (a lease's renewal, for
        # up to 30 s) held back the load of every attempt's run, and none began
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trestle-store")
        self._reader = _second_handle(store)
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trestle-reads")
        self._key: bytes | None = None
        self._loads = SharedLoads(lambda run_id: self._reading(self._state, run_id))

    def all(self) -> list[Callable[..., Awaitable[object]]]:
        return [
            self.lease,
            self.renew,
            self.release,
            self.load,
            self.commit,
            self.requests,
            self.named_files,
            self.perform,
        ]

    def close(self) -> None:
        self.engine.close()  # first: its notifier may read the store through _reads
        self._io.shutdown(wait=True)
        self._reads.shutdown(wait=True)
        if self._reader is not self.store:
            self._reader.close()
        if self.engine.telemetry is not None:  # a worker may leave without exit hooks
            self.engine.telemetry.flush()

    def _read_events(self, run_id: str, after: int, limit: int | None) -> list[StoredEvent]:
        return self._reads.submit(self._reader.events, run_id, after, limit).result()

    def _read_state(self, run_id: str) -> RunState:
        """The run's state as the engine acts on it (for approver groups), read on the
        reads' thread."""
        return self._reads.submit(self._state, run_id).result()

    def _state(self, run_id: str) -> RunState:
        return self._vetted(run_id)[0]

    def _vetted(self, run_id: str) -> tuple[RunState, list[AnyEvent]]:
        return self.engine.load_vetted(run_id, store=self._reader)

    async def _blocking(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn`` on the store's thread: for its writes, and reads that must follow them."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, lambda: fn(*args, **kwargs))

    async def _reading(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn`` on the reads' thread, which no write waits on."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reads, lambda: fn(*args, **kwargs))

    def key(self) -> bytes:
        if self._key is None:
            self._key = decision_key()
        return self._key

    def sealer(self) -> seals.Sealer:
        """What this worker seals with, and lends its workflows (see :mod:`.seals`)."""
        return seals.sealer(self.key())

    @activity.defn(name="trestle.lease")
    async def lease(self, ask: LeaseAsk) -> int:
        owner = Owner(name=ask.owner, pid=0, host=HOST)
        try:
            held = await self._blocking(
                self.store.acquire_lease, ask.run_id, owner, ttl=ask.ttl, now=time.time()
            )
        except LeaseHeldError as exc:  # another driver, for now: the workflow sleeps
            # not retried here: a local activity retried for ever held its worker's
            # shutdown (SIGTERM) as long as the other driver kept the lease
            raise ApplicationError(str(exc), type="LeaseHeld", non_retryable=True) from None
        return held.token

    @activity.defn(name="trestle.renew")
    async def renew(self, ask: LeaseAsk) -> None:
        try:
            await self._blocking(
                self.store.renew_lease, ask.run_id, ask.token, ttl=ask.ttl, now=time.time()
            )
        except LeaseLostError as exc:
            raise _fatal(exc, "LeaseLost") from None

    @activity.defn(name="trestle.release")
    async def release(self, ask: LeaseAsk) -> None:
        await self._blocking(self.store.release_lease, ask.run_id, ask.token)

    @activity.defn(name="trestle.load")
    async def load(self, run_id: str) -> Loaded:
        try:
            state, refusals = await self._reading(self._vetted, run_id)
        except UnknownRunError as exc:
            raise _fatal(exc, "UnknownRun") from None
        except StoreDamagedError as exc:
            raise _fatal(exc, "StoreDamaged") from None
        # what a killed worker or driver committed and never told, told now: a run
        # waiting for a human may commit nothing more (see Notifier.committed)
        self._tell(run_id, state.seq + 1, ())
        # only an agent run's history holds turns for the monitors (see LocalEngine)
        limit = None if state.agent is not None else 1
        stored = await self._reading(self._reader.events, run_id, limit=limit)
        return Loaded(
            state=model_json(state),
            replay=[(item.seq, event_json(item.event)) for item in stored],
            refusals=[event_json(e) for e in refusals],
            sandbox=[event_json(e) for e in self.engine.sandbox_for(state)],
        )

    @activity.defn(name="trestle.commit")
    async def commit(self, batch: Commit) -> Committed:
        """Append the batch; its events come back as the result, so the workflow's
        history holds them too (large ones as blob names): ``trestle log --history``
        reads the run from there."""
        events = [EVENT_ADAPTER.validate_json(e) for e in batch.events]
        snapshot = None
        if batch.snapshot is not None:
            last = batch.first_seq + len(events) - 1
            snapshot = signed_snapshot(batch.run_id, last, batch.snapshot, b"", self.key())
        appended = Appended(
            events=events,
            first_seq=batch.first_seq,
            status=batch.status,
            summary=batch.summary,
            snapshot=snapshot,
            consumed_requests=batch.consumed,
        )
        try:
            await self._blocking(self.store.append, batch.run_id, appended, token=batch.token)
        except LeaseLostError as exc:
            raise _fatal(exc, "LeaseLost") from None
        except ValueError:
            # the store holds the batch's seqs already. A retry of a commit that landed,
            # whose answer was lost, finds this very batch there (the lease fences every
            # other writer); a commit made again after Temporal closed the workflow task
            # that made it finds what that task committed, and its workflow adopts it
            stored = await self._blocking(
                self.store.events, batch.run_id, after=batch.first_seq - 1
            )
            if [s.event for s in stored] != events:
                texts = [event_json(s.event) for s in stored]
                return Committed(first_seq=batch.first_seq, events=texts, ahead=True)
            # it landed, and the worker that committed it may have died before its
            # notifier told it: told here (the ledger sends each notice once), or the
            # approval it asks waits unannounced for an event the run may never commit
            self._tell(batch.run_id, batch.first_seq, events)
        else:
            # the notices it raises, queued for the notifier's thread (it reads the
            # store through this worker's reads' thread)
            self._tell(batch.run_id, batch.first_seq, events)
            # this worker's spans: those the batch ends, the run caught up from the
            # store first where other workers committed (trestle.telemetry); a commit
            # that had landed already emitted them, or they were lost with its worker
            telemetry = self.engine.telemetry
            if telemetry is not None:
                await self._blocking(
                    telemetry.committed, batch.run_id, batch.first_seq, events, self.store.events
                )
        return Committed(first_seq=batch.first_seq, events=batch.events)

    def _tell(self, run_id: str, first_seq: int, events: Sequence[AnyEvent]) -> None:
        """Queue for this worker's notifier what ``events`` (durable from ``first_seq``)
        and what it never derived before them raise (see :meth:`Notifier.committed`)."""
        notifier = self.engine.notifier
        if notifier is not None:
            notifier.committed(run_id, first_seq, events, self._read_events, self._read_state)

    @activity.defn(name="trestle.requests")
    async def requests(self, run_id: str) -> list[Asked]:
        pending = await self._reading(self._reader.pending_requests, run_id)
        key = self.key()
        return [
            Asked(
                id=r.id,
                kind=r.kind,
                step=r.step,
                reason=r.reason,
                created_at=r.created_at,
                payload=r.payload,
                fields=decision_fields(r.payload, key),
            )
            for r in pending
        ]

    @activity.defn(name="trestle.named_files")
    async def named_files(self, command: str, workspace: str) -> dict[str, str]:
        return await self._reading(named_files, command, Path(workspace))

    @activity.defn(name="trestle.perform")
    async def perform(self, job: Perform) -> Performed:
        announced = EVENT_ADAPTER.validate_json(job.announced)
        assert isinstance(announced, StepStarted | StepProbeStarted)
        where = place_details(self.place, self.sealer(), _workflow_id(), job.ticket)
        beat = Beats(where, self.late, f"run {job.run_id!r}: step {announced.step!r}'s attempt")
        # the store's one thread may be loading other attempts' runs first (a 4,000-step
        # run's state takes 0.2 s): heartbeats go on meanwhile, and the attempts of one
        # run asking at once share one load (see .loads)
        state = await _beating(self._loads.state(job.run_id), beat, job)
        if changes_state(state, announced):
            state = await self._reading(own_copy, state)
        refusal = not_announced(state, announced)
        if refusal is not None:  # the workflow was started with forged input: do nothing
            raise ApplicationError(
                f"run {job.run_id!r}: {refusal}; not performed",
                type="NotAnnounced",
                non_retryable=True,
            )
        if out_of_sight(state, announced, self.place.view, unplaced=True):
            # the lost attempt ran where this worker cannot look for its processes:
            # finding none here would say nothing, and its checks could judge work
            # still under way; the decider escalates it, naming where it ran
            unseen = StepProbed(
                at=time.time(),
                step=announced.step,
                reason="unknown_outcome",
                passed=False,
                leftovers="unseen",
            )
            return self._sealed(job, [event_json(unseen)])
        try:
            events = await self._perform(job, state, announced, beat)
        except Exception as exc:
            # whatever it left runs here: the workflow learns where from the failure
            kind = exc.type if isinstance(exc, ApplicationError) else type(exc).__name__
            final = isinstance(exc, ApplicationError) and exc.non_retryable
            raise ApplicationError(str(exc), *where, type=kind, non_retryable=final) from exc
        if isinstance(events, ModelBindingError):
            parts = [_workflow_id(), job.ticket, events.cause, events.problem]
            seal = self.sealer()(seals.HALTED, parts)
            return Performed([], seal, halted=events.cause, problem=events.problem)
        return self._sealed(job, events)

    async def _perform(
        self,
        job: Perform,
        state: RunState,
        announced: StepStarted | StepProbeStarted,
        beat: Beats,
    ) -> list[str] | ModelBindingError:
        engine, record, follow = self.engine, None, None
        if isinstance(announced, StepStarted):
            record = self._recorder(state, announced, job.ticket)  # an agent's, a child's
            follow = self._follower(state)
        if isinstance(announced, StepStarted) and state.agent is not None:
            try:
                engine = self._agent_engine(state)
            except ConfigError as exc:  # no model here (a key not set on this worker)
                action = ActionResult(status="error", error=f"on worker {_me()}: {exc}")
                ended = StepAttemptEnded(
                    at=time.time(),
                    step=announced.step,
                    attempt=announced.attempt,
                    ok=False,
                    action=action,
                )
                return [event_json(ended)]
        # a refused key or a dead address ends the attempt uncounted: the workflow
        # stops the run's drive and waits for the operator (see RunWorkflow)
        halted: list[ModelBindingError] = []
        if engine is not self.engine:
            engine.halting(state.run_id, halted.append)
        work = asyncio.ensure_future(engine.perform_for(state, announced, record, follow))
        try:
            while not work.done() and not halted:
                beat()  # says where it runs: the workflow reads that if it is lost
                await asyncio.wait([work], timeout=beat_every(job.heartbeat))
            if halted:  # the attempt waits to be stopped: stop it
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
                return halted[0]
        except asyncio.CancelledError:  # the workflow stops it: kill it, and say so
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            raise
        finally:
            if engine is not self.engine:
                engine.close()
        return [event_json(e) for e in work.result()]

    def _sealed(self, job: Perform, events: list[str]) -> Performed:
        parts = [_workflow_id(), job.ticket, *events]
        return Performed(events=events, seal=self.sealer()(seals.OUTCOME, parts))

    def _agent_engine(self, state: RunState) -> LocalEngine:
        """An engine with the model the agent run's settings name, for one attempt (a
        child it delegates to is driven with it, as the local engine does)."""
        assert state.agent is not None
        if self.performer_for is None:
            raise _fatal(
                RunError("this worker was started without the agent's performer"), "NoPerformer"
            )
        performer = self.performer_for(state.agent)
        return LocalEngine(
            self.store,
            performer=performer,
            performer_for=self.performer_for,
            notifier=self.engine.notifier,  # the worker's: children it drives notify too
        )

    def _follower(self, state: RunState) -> Callable[[], Awaitable[None]]:
        """How the attempt's view of the run (``state``) takes in what the workflow
        recorded since: an approved call waiting to run alone reads it for its grant."""
        vet = vetter(self.key())

        async def follow() -> None:
            await self._reading(catch_up, self._reader, state, vet=vet)

        return follow

    def _recorder(
        self, state: RunState, attempt: StepStarted, ticket: str
    ) -> Callable[[Sequence[AnyEvent]], Awaitable[list[int]]]:
        """How the attempt's events reach the workflow: an update it applies and
        commits before answering; then ``state`` (the attempt's view of the run) takes
        in everything recorded since, as the local engine's live state would. Each
        update is sealed (:mod:`.seals`) with the dispatch's ticket and a nonce of its
        own, so none can be forged, changed or sent twice."""
        # the execution that dispatched this attempt, no other
        workflow_id = _workflow_id()
        handle = activity.client().get_workflow_handle(
            workflow_id, run_id=activity.info().workflow_run_id
        )
        vet, seal = vetter(self.key()), self.sealer()
        nonces = itertools.count(1)

        async def record(events: Sequence[AnyEvent]) -> list[int]:
            texts, nonce = [event_json(e) for e in events], next(nonces)
            parts = [workflow_id, ticket, attempt.step, str(attempt.attempt), str(nonce)]
            ask = Recorded(
                step=attempt.step,
                attempt=attempt.attempt,
                events=texts,
                ticket=ticket,
                nonce=nonce,
                seal=seal(seals.RECORD, [*parts, *texts]),
            )
            seqs: list[int] = await handle.execute_update(RECORD, ask, result_type=list[int])
            await self._reading(catch_up, self._reader, state, vet=vet)
            return seqs

        return record


async def _beating(work: Awaitable[T], beat: Beats, job: Perform) -> T:
    """``work``'s result, heartbeating (saying where it runs) until it comes."""
    waiting = asyncio.ensure_future(work)
    while True:
        beat()
        done, _ = await asyncio.wait([waiting], timeout=beat_every(job.heartbeat))
        if done:
            return waiting.result()


def not_announced(state: RunState, announced: StepStarted | StepProbeStarted) -> str | None:
    """Why the run's record does not hold ``announced`` as the work it is doing now, or
    None: the workflow commits each start before it dispatches it, so an attempt or
    probe the store does not hold came from somewhere else."""
    st = state.steps.get(announced.step)
    if st is None:
        return f"it has no step {announced.step!r}"
    if isinstance(announced, StepProbeStarted):
        if st.status != "probing":
            return f"step {announced.step!r} is {st.status}, not being probed"
        return None
    key = idempotency_key(state.run_id, announced.step, announced.attempt)
    if st.status != "running" or st.attempt != announced.attempt or announced.key != key:
        return f"attempt {announced.attempt} of step {announced.step!r} is not the running one"
    return None


def _second_handle(store: Store) -> Store:
    """Another handle on ``store`` for its reads (its own connection), where the store
    can open one; else ``store`` itself."""
    reader = getattr(store, "reader", None)
    return cast(Store, reader()) if callable(reader) else store
