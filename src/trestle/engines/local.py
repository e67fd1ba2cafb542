"""The local engine: the imperative shell around the pure core.

It owns the clock, the lease, the store and the step processes. Its loop is:

1. take in what happened (finished attempts and probes, human requests);
2. ask the decider what follows, applying its answers until it has none;
3. commit all of it in one transaction, fenced by the lease token;
4. only then dispatch the attempts and probes those events announce.

So a step's start is durable before its action runs, and its outcome is durable
(in the same commit as its successors' starts) before any dependent is scheduled.
An attempt whose outcome a crash left unknown is probed only once its leftover
processes are gone (:mod:`trestle.execution.processes`); each start records where its
driver runs, so that a driver resuming the run on another host (or in another pid
namespace), which cannot look for them, escalates the step instead
(:mod:`trestle.execution.places`). A :class:`Stop` ends a drive cleanly:
the running commands are killed and ``RunInterrupted`` records which.
``drive`` yields each event once it is durable: ``run()``, the CLI's live view and
its tests are all built on that one iterator.

The engine's parts beside it: performing an attempt or a probe (:mod:`.attempts`),
the checks before an attempt runs (:mod:`.approved`), a silent attempt noticed
(:mod:`.stall`), the events a running step asks to record (:mod:`.outbox`), a stop
(:mod:`.stop`), and a delegating step's child run (:mod:`.delegation`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from trestle.core.decider import decide, next_wakeup
from trestle.core.errors import (
    ConfigError,
    LeaseLostError,
    ModelBindingError,
    RunCancelledError,
    StoreError,
    model_stop,
)
from trestle.core.events import (
    AlertRaised,
    AnyEvent,
    ApprovalRefused,
    ConversationSaved,
    RunCancelled,
    RunInterrupted,
    RunResumed,
    StepStarted,
    StoredEvent,
)
from trestle.core.records.monitors import DEFAULT_MONITORS
from trestle.core.state import RunState
from trestle.engines.alarm import Alarm
from trestle.engines.approved import (
    with_named_files,
)
from trestle.engines.attempts import ATTEMPT_TASK, Attempts, Clock, retrieved
from trestle.engines.hold import TreeHold
from trestle.engines.judge import cancel_in, request_as_events
from trestle.engines.outbox import Ack, Outbox
from trestle.engines.stall import StallWatch, stalled
from trestle.engines.stop import Stop
from trestle.engines.store_thread import StoreThread
from trestle.engines.work import PerformerFor, StepPerformer
from trestle.execution.places import here
from trestle.execution.sandbox import (
    Mode,
    Sandbox,
    find_bwrap,
    mode_from,
)
from trestle.lifecycle.approvals import vetter
from trestle.lifecycle.lease import DEFAULT_LEASE_TTL, FINISH_WAIT, this_process
from trestle.lifecycle.runs import (
    Tail,
    cancelled_message,
    load_state,
    signed_snapshot,
    summary_json,
    trusted,
    trusted_monitors,
)
from trestle.monitors import saved
from trestle.monitors.hub import MonitorFactory, MonitorHub
from trestle.notifications.notifier import Notifier
from trestle.store.base import Appended, Lease, Owner, Request, Snapshot, Store
from trestle.support import collector
from trestle.support.step_threads import StepThreads
from trestle.telemetry.env import from_env
from trestle.trust.identity import decision_fields
from trestle.trust.signing import decision_key, verified_fields
from trestle.workspace.shadow import shadow_dir_for

if TYPE_CHECKING:
    from trestle.core.records.agent import AgentSettings
    from trestle.telemetry.feed import Telemetry

# how long a resume waits for an unknown attempt's leftover processes (a step without a
# timeout of its own) before it kills them; a step with a timeout waits out the rest
DEFAULT_ORPHAN_WAIT = 300.0
# how long the monitors' catch-up on a resume holds the loop at a time, while the run's
# first model call is answered (MonitorHub.catch_up)
CATCH_UP_SLICE = 0.001
# the latest events a resume keeps of those its load read: more than a session's turns
# since its last save of the conversation (trestle.agent.session.SAVE_EVERY) hold
KEEP_READ = 256


class LocalEngine(Attempts):
    """Drives runs in this process with asyncio, on any :class:`Store`.

    Args:
        store: where runs are recorded.
        clock: wall-clock seconds; injected so tests control time.
        lease_ttl: how long a lease lasts without renewal; a crashed owner on another
            host is taken over after this. On this host a dead pid is taken over at once.
        snapshot_every: events between state snapshots (resume reads snapshot + tail);
            never fewer than the run has steps, so a snapshot's cost is amortised.
        poll_interval: how often a waiting run looks for human requests.
        decision_key: the key human decisions are signed with (default: the user's
            key file, see :mod:`trestle.trust.signing`).
        shadow_dir: where workspace checkpoints go (default: ``shadow.git`` beside the
            store's file; for a store in a database, ``.trestle/shadow.git`` in each
            run's workspace; a store in memory takes none).
        performer: performs agent steps (see :mod:`trestle.agent`).
        performer_for: makes the performer of a delegated agent child from its
            settings, where this engine has no performer of its own (a plan run's);
            :func:`trestle.agent.runtime.performer_for` is the usual one.
        monitors: makes each run's monitors (default: every built-in one, see
            :mod:`trestle.monitors`); the run's recorded settings choose what they do.
        orphan_wait: how long a resume waits for the leftover processes of an attempt
            whose outcome is unknown (a step without a timeout) before killing them;
            its checks run only once they are gone.
        sandbox: how commands are confined (see :mod:`trestle.execution.sandbox`): ``auto``
            (bubblewrap where it works; without it, confirm-tier commands are
            refused), ``require`` or ``off``; default ``$TRESTLE_SANDBOX``, else auto.
        telemetry: where the spans of the batches this engine commits go (see
            :mod:`trestle.telemetry`); default: the ``OTEL_*`` environment's
            (:func:`trestle.telemetry.env.from_env`), None when it asks for none.
        notifier: tells the humans who must act about the batches this engine commits
            (see :mod:`trestle.notifications`); default: the targets of the operator's
            ``notify.toml``, None when it names none. The engine closes a notifier it
            made itself.

    Attributes:
        descendant_events: called with each durable event of the delegated runs below
            the ones this engine drives (children, grandchildren ...), as ``drive``
            yields a run's own: how a watcher of the root sees the whole tree move.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock = time.time,
        owner: Owner | None = None,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        snapshot_every: int = 100,
        poll_interval: float = 0.5,
        decision_key: bytes | None = None,
        shadow_dir: Path | None = None,
        performer: StepPerformer | None = None,
        performer_for: PerformerFor | None = None,
        monitors: MonitorFactory | None = None,
        orphan_wait: float = DEFAULT_ORPHAN_WAIT,
        sandbox: Mode | None = None,
        telemetry: Telemetry | Literal["env"] | None = "env",
        notifier: Notifier | Literal["config"] | None = "config",
    ) -> None:
        self.store = store
        self.telemetry = from_env() if telemetry == "env" else telemetry
        self._own_notifier = notifier == "config"
        self.notifier = Notifier.from_config() if notifier == "config" else notifier
        self.clock = clock
        self.owner = owner or this_process()
        self.lease_ttl = lease_ttl
        self.snapshot_every = snapshot_every
        self.poll_interval = poll_interval
        self._decision_key = decision_key
        self.shadow_dir = shadow_dir or shadow_dir_for(store)
        self.performer = performer
        self.performer_for = performer_for
        self.monitors = monitors
        self.orphan_wait = orphan_wait
        self.place = here()  # where this driver's attempts run, recorded on each start
        self.sandbox_mode = mode_from(sandbox)
        self.descendant_events: Callable[[StoredEvent], None] | None = None
        self._echo: Callable[[StoredEvent], None] | None = None  # a child's, to its root's
        self._sandboxes: dict[str, Sandbox] = {}  # per run, chosen at each drive's start
        self._kept_above: tuple[Path, ...] = ()  # set by the parent's for_child
        # per agent run, the latest events its drive's load read (after the state's
        # snapshot): a resumed step's session reads its latest save from them, not from
        # the store again (recorded events never change)
        self._read: dict[str, dict[int, AnyEvent]] = {}
        # per run driven by run(), where the drive leaves the state it moves on
        self._ending: dict[str, list[RunState]] = {}
        # per run being driven, what ends its drive for a model that cannot be used
        self._halts: dict[str, Callable[[ModelBindingError], None]] = {}
        self._callings: dict[str, Callable[[], None]] = {}
        self._watches: dict[str, StallWatch[asyncio.Task[AnyEvent]]] = {}  # by run
        self._hold: TreeHold | None = None  # a delegated child's (see for_child)
        # sqlite3 blocks; one thread keeps it off the event loop and serialises commits
        self._io = StoreThread("trestle-store")
        # spans are made off the store thread, in commit order (None: no telemetry)
        self._spans = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="trestle-telemetry")
            if self.telemetry is not None
            else None
        )

    def halting(self, run_id: str, halt: Callable[[ModelBindingError], None]) -> None:
        """Let the attempts of ``run_id`` that :meth:`perform_for` performs end for a
        model that cannot be used by calling ``halt`` (a Temporal worker ends the
        attempt's activity with it), as :meth:`drive` ends its own drive."""
        self._halts[run_id] = halt

    def for_child(self, agent: AgentSettings | None, hold: TreeHold | None = None) -> LocalEngine:
        """An engine like this one for a delegated child run, in this process: the same
        store, owner, keys, monitors and sandbox; an agent child gets this engine's
        performer, or (under a plan run) the one its own settings call for. ``hold``
        holds the runs above it while its approved commands run."""
        performer = self.performer
        if performer is None and agent is not None:
            if self.performer_for is None:
                raise ConfigError(
                    "an agent child needs a performer: build the engine with "
                    "performer_for=trestle.agent.runtime.performer_for (or a performer)"
                )
            performer = self.performer_for(agent)
        child = LocalEngine(
            self.store,
            clock=self.clock,
            owner=self.owner,
            lease_ttl=self.lease_ttl,
            snapshot_every=self.snapshot_every,
            poll_interval=self.poll_interval,
            decision_key=self._decision_key,
            shadow_dir=self.shadow_dir,
            performer=performer,
            performer_for=self.performer_for,
            monitors=self.monitors,
            orphan_wait=self.orphan_wait,
            sandbox=self.sandbox_mode,
            telemetry=self.telemetry,
            notifier=self.notifier,
        )
        child.descendant_events = child._echo = self.descendant_events
        child._hold = hold
        # the plan and code of every run above it stay read-only to its commands too
        child._kept_above = (
            *self._kept_above,
            *(path for sandbox in self._sandboxes.values() for path in sandbox.kept),
        )
        return child

    async def run(self, run_id: str, *, stop: Stop | None = None) -> RunState:
        """Drive the run until it finishes, waits on a human or is stopped; return its
        state."""
        # the drive's own state once it ends: what loading the run again would fold from
        # the store (a 1,000-step run's load was ~10% of the run); loaded again only if
        # the drive ended before it had one
        ending: list[RunState] = []
        self._ending[run_id] = ending
        try:
            async for _ in self.drive(run_id, stop=stop):
                pass
        finally:
            if self._ending.get(run_id) is ending:
                del self._ending[run_id]
        if ending:
            return ending[0]
        return await self._store(self.state, run_id)

    async def drive(self, run_id: str, *, stop: Stop | None = None) -> AsyncIterator[StoredEvent]:
        """Drive the run, yielding each event as soon as it is durable; ``stop`` ends
        it early (see :class:`Stop`)."""
        # whether bubblewrap works here is asked of a process: asked now, it is answered
        # while the run loads (once per process; see trestle.execution.sandbox.find_bwrap)
        probing: asyncio.Task[tuple[str | None, str]] | None = None
        if self.sandbox_mode != "off":
            probing = asyncio.create_task(asyncio.to_thread(find_bwrap))
            probing.add_done_callback(retrieved)
        lease = await self._store(
            self.store.acquire_lease, run_id, self.owner, ttl=self.lease_ttl, now=self.clock()
        )
        keeper = asyncio.create_task(self._keep_lease(run_id, lease))
        # a model that cannot be used ends the drive as a stop does, then is raised
        stop = stop if stop is not None else Stop()
        halted: list[ModelBindingError] = []
        self._halts[run_id] = lambda exc: _halt(stop, halted, exc)
        work: dict[asyncio.Task[AnyEvent], str] = {}
        acting: set[str] = set()  # steps whose attempt a cancel stops before its end
        pool: StepThreads | None = None
        alarm = Alarm()
        stopped: asyncio.Task[None] | None = None  # rings the alarm once a stop is asked
        catching: list[asyncio.Task[None]] = []  # the monitors' catch-up, beside the run
        try:
            tail = Tail()
            state, forgeries = await self._store(self.load_vetted, run_id, tail)
            if self.notifier is not None:  # what a killed driver committed and never told
                self.notifier.committed(
                    run_id, state.seq + 1, (), self._read_events, self._read_state
                )
            if (ending := self._ending.get(run_id)) is not None:
                ending.append(state)  # this very object, as the drive moves it on
            # steps' blocking work (sync callables, file checks) gets one thread per
            # step that may run at once; asyncio's default pool is far smaller
            pool = StepThreads(state.plan.parallelism, "trestle-step")
            last_snapshot = state.seq
            inbound: list[AnyEvent] = []
            acks: list[Ack] = []
            outbox = Outbox(posted=alarm.ring)
            stopped = asyncio.create_task(stop.wait())
            stopped.add_done_callback(alarm.ring)
            if state.cancelled is not None:
                raise RunCancelledError(cancelled_message(state))
            finished = state.finished is not None
            if (
                finished
                and not forgeries
                and not state.waiting_children()  # a human may have decided there
                and not await self._store(self.store.pending_requests, run_id)
            ):
                return  # nothing to do, and nothing worth recording
            hub, missed = await self._hub(state, tail)
            if hub is not None:  # the drift monitor embeds beside the commits and tool calls
                hub.look_ahead()
                if hub.behind:  # it catches up while the first model call is answered
                    self._callings[run_id] = functools.partial(self._catch_up_beside, hub, catching)
            if state.agent is not None:
                kept = tail.events[-KEEP_READ:]
                self._read[run_id] = {item.seq: item.event for item in kept}
            del tail  # read once, for the state, the monitors and the sessions
            if state.seq > 1:
                inbound.append(RunResumed(at=self.clock(), owner=self.owner.name))
            if probing is not None:
                await probing
            inbound += self.sandbox_for(state)
            inbound += missed
            inbound += forgeries
            watch: StallWatch[asyncio.Task[AnyEvent]] = StallWatch(
                state.monitors or DEFAULT_MONITORS
            )
            self._watches[run_id] = watch
            next_poll = 0.0
            stopping = False
            while True:
                requests: list[Request] = []
                if self.clock() >= next_poll and not stopping:
                    requests = await self._store(self.store.pending_requests, run_id)
                    next_poll = self.clock() + self.poll_interval
                cancel = self._cancel_in(state, requests)
                if cancel is not None:  # taken last: the other requests are judged first
                    requests = [r for r in requests if r.id != cancel.id]
                halt = stopping or cancel is not None
                batch = self._advance(state, inbound, requests, hub, decide_next=not halt)
                if stopping:
                    assert stop is not None and stop.reason is not None
                    batch += await self._interrupt(state, work, acting, outbox, hub, stop.reason)
                elif cancel is not None:
                    requests.append(cancel)
                    batch += await self._interrupt(
                        state, work, acting, outbox, hub, "trestle cancel", cancel=cancel
                    )
                consumed = [r.id for r in requests]
                inbound = []
                if batch or consumed:
                    snapshot = None
                    if self._snapshot_due(state.seq - last_snapshot, len(state.steps), batch):
                        # serialised on the store thread: no task changes state meanwhile
                        if hub is not None and (owed := hub.settle()):
                            # nor the hub: what it saves is up to date, and what its
                            # catch-up raised is recorded with what it saves
                            batch += self._advance(state, list(owed), [], hub, decide_next=False)
                        snapshot = await self._store(self._snapshot, state, hub)
                        last_snapshot = state.seq
                    first = state.seq - len(batch) + 1
                    appended = Appended(
                        events=batch,
                        first_seq=first,
                        status=state.finished or "running",
                        summary=summary_json(state),
                        snapshot=snapshot,
                        consumed_requests=consumed,
                    )
                    if keeper.done():
                        keeper.result()  # re-raises LeaseLostError
                    await self._store(self._commit, run_id, appended, lease.token)
                    for future, offset, count in acks:
                        if not future.done():
                            future.set_result(list(range(first + offset, first + offset + count)))
                    acks = []
                    outbox.committed()
                    for offset, event in enumerate(batch):
                        stored = StoredEvent(run_id=run_id, seq=first + offset, event=event)
                        if self._echo is not None:
                            self._echo(stored)
                        yield stored
                    watch.saw(batch, first, self.clock())
                    if halt:
                        if halted:
                            raise halted[0]
                        return
                    for event in batch:
                        task = self._dispatch(state, event, pool, outbox, acting, alarm)
                        if task is not None:
                            work[task] = run_id
                            watch.started(task, event)
                if state.finished is not None and not work:
                    return
                inbound = await self._wait(state, work, outbox, alarm, stop)
                inbound += await self._end_stalled(state, work, watch, hub)
                inbound, acks = outbox.drain(inbound)
                stopping = stop is not None and stop.requested
        except StoreError as exc:
            if type(exc) is not StoreError or "trestle resume" in str(exc):
                raise
            # a read that failed says "try again": the run is what goes on
            raise StoreError(f"{exc}; then `trestle resume {run_id}`") from None
        finally:
            leaving = sys.exc_info()[1]  # what ends the drive, if it fails
            self._callings.pop(run_id, None)
            self._watches.pop(run_id, None)
            for catch_up in catching:
                catch_up.cancel()
            if stopped is not None:
                stopped.cancel()
            for task in work:
                task.cancel()
            if work:
                await asyncio.gather(*work, return_exceptions=True)
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)  # a timed-out thread may linger
            self._read.pop(run_id, None)
            self._halts.pop(run_id, None)
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, LeaseLostError):
                await keeper  # cancellation is the keeper's normal end
            # a stale token (the lease was lost) makes the release a no-op; a store that
            # cannot release it (gone with its server) must not hide why the drive ended
            with contextlib.suppress(*((StoreError,) if leaving is not None else ())):
                await self._store(self.store.release_lease, run_id, lease.token)

    def _advance(
        self,
        state: RunState,
        inbound: list[AnyEvent],
        requests: list[Request],
        hub: MonitorHub | None,
        *,
        decide_next: bool = True,
    ) -> list[AnyEvent]:
        """Apply what came in, then human requests, then the decider's answers (unless
        the drive is stopping); each event is shown to the monitors as it is applied,
        and their alerts follow it."""
        batch: list[AnyEvent] = []

        def take(event: AnyEvent) -> None:
            if hub is not None:  # what a resume's catch-up raised comes first
                for owed in hub.before(event):
                    take(owed)
            event = with_named_files(state, event)
            if isinstance(event, StepStarted):  # a resume elsewhere cannot see its processes
                event = event.model_copy(update={"ran_on": self.place})
            state.apply(event)
            batch.append(event)
            if hub is not None:
                for raised in hub.feed(state.seq, event, state):
                    take(raised)

        for event in inbound:
            take(event)
        for request in requests:
            # judged one at a time: an earlier request may change what a later one means
            for decision in self._request_as_events(state, request):
                take(decision)
        while decide_next and (decided := decide(state, self.clock())):
            for event in decided:
                take(event)
        return batch

    async def _interrupt(
        self,
        state: RunState,
        work: dict[asyncio.Task[AnyEvent], str],
        acting: set[str],
        outbox: Outbox,
        hub: MonitorHub | None,
        reason: str,
        *,
        cancel: Request | None = None,
    ) -> list[AnyEvent]:
        """Stop every running attempt and probe, and record what that stopped: the
        outcomes that still came in, what running steps asked to record, and
        ``RunInterrupted`` (``RunCancelled`` for a person's ``cancel`` request). A
        command's process group is killed and waited for before its cancelled task
        ends, so the steps named as stopped are known gone.

        An attempt that cannot be stopped (a Python callable in a thread) or is past
        its action (checks, a checkpoint) is let finish, for up to ``FINISH_WAIT``
        seconds, so its outcome is recorded rather than left unknown; and no later
        driver can race a thread still at work in this process."""
        finishing = [
            task
            for task in work
            if task.get_name().startswith(ATTEMPT_TASK)
            and task.get_name().removeprefix(ATTEMPT_TASK) not in acting
        ]
        for task in work:
            if task not in finishing:
                task.cancel()
        if finishing:
            await asyncio.wait(finishing, timeout=FINISH_WAIT)
        for task in finishing:
            task.cancel()  # a no-op for those done
        await asyncio.gather(*work, return_exceptions=True)
        ended = [
            task.result() for task in work if not task.cancelled() and task.exception() is None
        ]
        work.clear()
        arrived, acks = outbox.drain(ended)
        for future, _, _ in acks:
            future.cancel()  # whoever waited for these was cancelled
        batch = self._advance(state, arrived, [], hub, decide_next=False)
        stopped = sorted(
            (sid for sid in acting if state.steps[sid].status == "running"),
            key=state.position,
        )
        acting.clear()
        ending: AnyEvent = RunInterrupted(at=self.clock(), by=reason, stopped=tuple(stopped))
        if cancel is not None:
            fields = verified_fields(cancel.payload, self._key()) or {}
            ending = RunCancelled(
                at=self.clock(),
                by=str(fields.get("by", "user")),
                reason=cancel.reason,
                stopped=tuple(stopped),
                request_id=cancel.id,
            )
        return batch + self._advance(state, [ending], [], hub, decide_next=False)

    def _key(self) -> bytes:
        if self._decision_key is None:
            self._decision_key = decision_key()
        return self._decision_key

    def _cancel_in(self, state: RunState, requests: Sequence[Request]) -> Request | None:
        return cancel_in(state, requests, lambda r: verified_fields(r.payload, self._key()))

    async def _hub(
        self, state: RunState, tail: Tail | None = None
    ) -> tuple[MonitorHub | None, list[AlertRaised]]:
        """The run's monitors, caught up with its recorded events on a resume, and the
        alerts they raise that a crash kept from being recorded. ``tail``: what loading
        ``state`` read (its snapshot, and the events after it, used when the monitors'
        save is of the same seq).

        An agent run resumed from a snapshot its load read catches up later
        (:meth:`~trestle.monitors.hub.MonitorHub.replay_later`): beside its first
        model call, or before the first event other than those a resume records on its
        way to that call, whichever comes first; its missed alerts are recorded then,
        before that event (:meth:`~trestle.monitors.hub.MonitorHub.before`)."""
        settings = state.monitors or DEFAULT_MONITORS
        if not settings.enabled:
            return None, []
        hub = MonitorHub(settings, self.monitors)
        snap = tail.snapshot if tail is not None else None
        if state.agent is not None and tail is not None and snap is not None:
            run_id, through = state.run_id, state.seq
            saved_state = trusted_monitors(run_id, snap, self._key())
            if saved_state and snap.seq == tail.after and snap.seq <= state.seq:
                hub.replay_later(
                    lambda: saved.restore(hub, saved_state),
                    [(item.seq, item.event) for item in tail.events],
                    lambda: self._history(run_id, through),
                    state,
                )
                return hub, []
        # what the monitors restore and catch up on is kept: no collection meanwhile
        with collector.paused():
            # the first event holds the goal and scope; only an agent run's history holds
            # model turns for the monitors to catch up on (a plan run's would cost resume
            # time and show them nothing), and they catch up from the snapshot if it saved
            # them, else from the start
            limit: int | None = 1
            after = 0
            if state.agent is not None:
                limit = None
                if tail is None:
                    snap = await self._store(self.store.snapshot, state.run_id, monitors=True)
                    if snap is not None and not trusted(state.run_id, snap, self._key()):
                        snap = None
                if (
                    snap is not None
                    and snap.seq <= state.seq
                    and saved.restore(hub, trusted_monitors(state.run_id, snap, self._key()))
                ):
                    after = snap.seq
            if limit is None and tail is not None and tail.after == after:
                stored = tail.events
            else:
                stored = await self._store(
                    self.store.events, state.run_id, after=after, limit=limit
                )
            return hub, hub.replay([(item.seq, item.event) for item in stored], state)

    def _history(self, run_id: str, through: int) -> list[tuple[int, AnyEvent]]:
        """Events 1 to ``through`` of the run, read on the store thread by a caller on
        the loop's (a deferred catch-up whose saved state did not restore)."""
        stored = self._io.submit(self.store.events, run_id, 0, through).result()
        return [(item.seq, item.event) for item in stored]

    @staticmethod
    def _catch_up_beside(hub: MonitorHub, catching: list[asyncio.Task[None]]) -> None:
        """Have the monitors catch up, in slices, while a model call is answered (an
        attempt calls this as it sends one: see ``StepWork.calling``); once."""
        if catching or not hub.behind:
            return

        async def slices() -> None:
            while hub.behind:
                # after whatever else the loop has ready: the call being sent first
                await asyncio.sleep(0)
                try:
                    hub.catch_up(until=time.perf_counter() + CATCH_UP_SLICE)
                except Exception:  # kept by the hub: the drive meets it where it needs it
                    return

        catching.append(asyncio.create_task(slices()))

    def _snapshot_due(self, since: int, steps: int, batch: Sequence[AnyEvent]) -> bool:
        """Whether the commit of ``batch``, ``since`` events after the last snapshot of a
        run of ``steps`` steps, takes a snapshot: every ``snapshot_every`` events, spaced
        by the run's size too so that snapshots cost O(1) per event; and with an agent
        step's saved conversation, once a quarter of that has passed. A resume replays
        the step from its latest save, so a snapshot there leaves it one stretch of
        events to read and decode (the tail after the snapshot), not those after the
        save and then again those between the save and a later snapshot."""
        every = max(self.snapshot_every, steps)
        if since >= every:
            return True
        saves = any(isinstance(event, ConversationSaved) for event in batch)
        return saves and since >= every // 4

    def _snapshot(self, state: RunState, hub: MonitorHub | None) -> Snapshot:
        """The run's state and its monitors' as of ``state.seq``, signed (an agent
        run's monitors are saved: a resume then feeds them only what came after)."""
        monitors = saved.save(hub) if hub is not None and state.agent is not None else b""
        return signed_snapshot(
            state.run_id, state.seq, state.snapshot_json(), monitors, self._key()
        )

    async def _end_stalled(
        self,
        state: RunState,
        work: dict[asyncio.Task[AnyEvent], str],
        watch: StallWatch[asyncio.Task[AnyEvent]],
        hub: MonitorHub | None,
    ) -> list[AnyEvent]:
        """End the attempts that showed no sign of life for too long: each fails as
        ``stalled``, which puts its step on the dead-letter queue."""
        ended: list[AnyEvent] = []
        now = self.clock()
        for task, (sid, attempt, last_seq, silent) in watch.overdue(state, now):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            del work[task]
            ended += stalled(state, hub, sid, attempt, last_seq, silent, now)
        return ended

    async def _wait(
        self,
        state: RunState,
        work: dict[asyncio.Task[AnyEvent], str],
        outbox: Outbox,
        alarm: Alarm,
        stop: Stop,
    ) -> list[AnyEvent]:
        """Sleep until an attempt ends or records events, a retry falls due, it is
        time to poll, or a stop is requested (at once, if one of them already has)."""
        timeout = self.poll_interval
        due = next_wakeup(state)
        if due is not None:
            timeout = max(0.0, min(timeout, due - self.clock()))
        if outbox.waiting or stop.requested or any(t.done() for t in work):
            timeout = 0.0  # what the wait is for has come: only let others run first
        if timeout > 0:
            await alarm.sleep(timeout)
        else:  # a turn of the loop, as asyncio.wait with no time gave, so none starves
            await asyncio.sleep(0)
        results = []
        for task in [t for t in work if t.done()]:
            del work[task]
            results.append(task.result())
        # keep a stable order within one commit: plan order, as the decider sees it
        results.sort(key=lambda e: state.position(getattr(e, "step", "")))
        return results

    def _commit(self, run_id: str, appended: Appended, token: int) -> None:
        """Append the batch; then, with telemetry, have the spans it ends emitted on the
        telemetry thread (which reads the store, when it must, through this thread)."""
        self.store.append(run_id, appended, token=token)
        if self.notifier is not None:  # it only queues the batch: sending is its thread's
            self.notifier.committed(
                run_id, appended.first_seq, appended.events, self._read_events, self._read_state
            )
        if self.telemetry is not None and self._spans is not None:
            events = list(appended.events)
            self._spans.submit(
                self.telemetry.committed, run_id, appended.first_seq, events, self._read_events
            )

    def _read_events(self, run_id: str, after: int, limit: int | None) -> list[StoredEvent]:
        return self._io.submit(self.store.events, run_id, after, limit).result()

    def _read_state(self, run_id: str) -> RunState:
        return self._io.submit(self.state, run_id).result()

    async def _keep_lease(self, run_id: str, lease: Lease) -> None:
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            await self._store(
                self.store.renew_lease, run_id, lease.token, ttl=self.lease_ttl, now=self.clock()
            )

    def as_parent(self) -> LocalEngine:
        return self

    def close(self) -> None:
        if self.notifier is not None and self._own_notifier:  # it may read the store
            self.notifier.close()
        if self._spans is not None:  # its last spans made first: they may read the store
            self._spans.shutdown(wait=True)
        self._io.shutdown()

    def state(self, run_id: str) -> RunState:
        """The run's state as this engine acts on it: forged decisions left out."""
        return self.load_vetted(run_id)[0]

    def load_vetted(
        self, run_id: str, tail: Tail | None = None, *, store: Store | None = None
    ) -> tuple[RunState, list[AnyEvent]]:
        """The run's state with every forged decision left out (see
        :func:`trestle.lifecycle.approvals.forged`), and a refusal to record for each one not yet
        reported, naming its seq; ``tail`` gets the events read after its snapshot.
        ``store``: another handle on the engine's store to read it through."""
        if self._decision_key is None:
            self._decision_key = decision_key()
        key = self._decision_key
        ignored: list[tuple[int, AnyEvent, str]] = []
        with collector.paused():
            state = load_state(
                store or self.store, run_id, vet=vetter(key), ignored=ignored, key=key, tail=tail
            )
        reported = {r.forged_seq for r in state.refused if r.forged_seq is not None}
        refusals: list[AnyEvent] = [
            ApprovalRefused(
                at=self.clock(),
                approval=getattr(event, "approval", None),
                reason=f"the {event.kind} event at seq {seq} was ignored: {why}; "
                "only a decision from trestle approve/reject/budget (or the Python API) "
                "counts",
                forged_seq=seq,
            )
            for seq, event, why in ignored
            if seq not in reported
        ]
        return state, refusals

    def _request_as_events(self, state: RunState, r: Request) -> list[AnyEvent]:
        """What a human's request becomes (see :mod:`trestle.engines.judge`)."""
        performer = self.performer
        tell = None
        if performer is not None:

            def tell(
                state: RunState, text: str, by: str, request_id: int, now: float
            ) -> list[AnyEvent] | None:
                return performer.requirement(state, text, by=by, request_id=request_id, now=now)

        fields = decision_fields(r.payload, self._key())
        return request_as_events(state, r, fields, self.clock(), tell=tell)


def _halt(stop: Stop, halted: list[ModelBindingError], exc: ModelBindingError) -> None:
    """End the drive for a model that cannot be used: the first cause is the one
    recorded (``RunInterrupted``) and raised once the stop is recorded."""
    if not halted:
        halted.append(exc)
        stop.request(model_stop(exc.cause))
