"""The local engine: the imperative shell around the pure core.

It owns the clock, the lease, the store and the step processes. Its loop is:

1. take in what happened (finished attempts and probes, human requests);
2. ask the decider what follows, applying its answers until it has none;
3. commit all of it in one transaction, fenced by the lease token;
4. only then dispatch the attempts and probes those events announce.

So a step's start is durable before its action runs, and its outcome is durable
(in the same commit as its successors' starts) before any dependent is scheduled.
An attempt whose outcome a crash left unknown is probed only once its leftover
processes are gone (:mod:`trestle.execution.processes`). A :class:`Stop` ends a drive cleanly:
the running commands are killed and ``RunInterrupted`` records which.
``drive`` yields each event once it is durable: ``run()``, the CLI's live view and
its tests are all built on that one iterator.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from trestle.core.decider import decide, next_wakeup
from trestle.core.errors import ConfigError, LeaseLostError, RunCancelledError
from trestle.core.events import (
    ActionResult,
    AlertRaised,
    AnyEvent,
    ApprovalRefused,
    ApprovalRequested,
    Gate,
    RunCancelled,
    RunInterrupted,
    RunResumed,
    SandboxChosen,
    StepAttemptEnded,
    StepProbed,
    StepProbeStarted,
    StepProcessStarted,
    StepStarted,
    StoredEvent,
    ToolAsk,
    idempotency_key,
)
from trestle.core.gate import action_digest
from trestle.core.plan import Step
from trestle.core.records.monitors import DEFAULT_MONITORS, MonitorSettings
from trestle.core.state import RunState
from trestle.core.tree import parent_scope
from trestle.engines.delegation import perform_delegation
from trestle.engines.judge import cancel_in, request_as_events
from trestle.engines.stop import Stop
from trestle.engines.work import PerformerFor, StepPerformer, StepWork, WorkspaceNotSaved
from trestle.execution.actions import StepContext, in_thread, perform
from trestle.execution.checks import run_checks
from trestle.execution.named_files import changed, named_files
from trestle.execution.pinning import pinned
from trestle.execution.processes import Leader, reap
from trestle.execution.processes import start_time as process_start_time
from trestle.execution.sandbox import (
    Mode,
    Sandbox,
    choose,
    find_bwrap,
    hidden_paths,
    mode_from,
)
from trestle.execution.sandbox import policy_of as sandbox_policy
from trestle.lifecycle.approvals import vetter
from trestle.lifecycle.checkpoints import (
    When,
    checkpoint_name,
    shadow_repo,
    wants_checkpoint,
)
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
from trestle.monitors.trace import Stall
from trestle.store.base import Appended, Lease, Owner, Request, Snapshot, Store
from trestle.support import collector
from trestle.trust.signing import config_dir, decision_key, key_path, verified_fields
from trestle.workspace.shadow import ShadowRepoError, shadow_dir_for

if TYPE_CHECKING:
    from trestle.core.records.agent import AgentSettings

Clock = Callable[[], float]
# how long a resume waits for an unknown attempt's leftover processes (a step without a
# timeout of its own) before it kills them; a step with a timeout waits out the rest
DEFAULT_ORPHAN_WAIT = 300.0
# the latest events a resume keeps of those its load read: more than a session's turns
# since its last save of the conversation (trestle.agent.session.SAVE_EVERY) hold
KEEP_READ = 256
_ATTEMPT = "trestle-attempt:"  # the name of an attempt's task, before its step id
P = ParamSpec("P")
T = TypeVar("T")


_Ack = tuple[asyncio.Future[list[int]], int, int]  # who waits, offset in inbound, count


class LocalEngine:
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
            store's file; a store without a file takes none).
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
    ) -> None:
        self.store = store
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
        self.sandbox_mode = mode_from(sandbox)
        self.descendant_events: Callable[[StoredEvent], None] | None = None
        self._echo: Callable[[StoredEvent], None] | None = None  # a child's, to its root's
        self._sandboxes: dict[str, Sandbox] = {}  # per run, chosen at each drive's start
        # per agent run, the latest events its drive's load read (after the state's
        # snapshot): a resumed step's session reads its latest save from them, not from
        # the store again (recorded events never change)
        self._read: dict[str, dict[int, AnyEvent]] = {}
        # sqlite3 blocks; one thread keeps it off the event loop and serialises commits
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trestle-store")

    async def _store(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, lambda: fn(*args, **kwargs))

    in_store_thread = _store  # for the engine's helpers (delegation): blocking store work

    def for_child(self, agent: AgentSettings | None) -> LocalEngine:
        """An engine like this one for a delegated child run, in this process: the same
        store, owner, keys, monitors and sandbox; an agent child gets this engine's
        performer, or (under a plan run) the one its own settings call for."""
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
        )
        child.descendant_events = child._echo = self.descendant_events
        return child

    async def run(self, run_id: str, *, stop: Stop | None = None) -> RunState:
        """Drive the run until it finishes, waits on a human or is stopped; return its
        state."""
        async for _ in self.drive(run_id, stop=stop):
            pass
        return await self._store(self.state, run_id)

    async def drive(self, run_id: str, *, stop: Stop | None = None) -> AsyncIterator[StoredEvent]:
        """Drive the run, yielding each event as soon as it is durable; ``stop`` ends
        it early (see :class:`Stop`)."""
        # whether bubblewrap works here is asked of a process: asked now, it is answered
        # while the run loads (once per process; see trestle.execution.sandbox.find_bwrap)
        probing: asyncio.Task[tuple[str | None, str]] | None = None
        if self.sandbox_mode != "off":
            probing = asyncio.create_task(asyncio.to_thread(find_bwrap))
            probing.add_done_callback(_retrieved)
        lease = await self._store(
            self.store.acquire_lease, run_id, self.owner, ttl=self.lease_ttl, now=self.clock()
        )
        keeper = asyncio.create_task(self._keep_lease(run_id, lease))
        work: dict[asyncio.Task[AnyEvent], str] = {}
        acting: set[str] = set()  # steps whose attempt a cancel stops before its end
        pool: ThreadPoolExecutor | None = None
        try:
            tail = Tail()
            state, forgeries = await self._store(self.load_vetted, run_id, tail)
            # steps' blocking work (sync callables, file checks) gets one thread per
            # step that may run at once; asyncio's default pool is far smaller
            pool = ThreadPoolExecutor(state.plan.parallelism, thread_name_prefix="trestle-step")
            last_snapshot = state.seq
            inbound: list[AnyEvent] = []
            acks: list[_Ack] = []
            outbox = _Outbox()
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
                    # spaced by the run's size too, so snapshots cost O(1) per event
                    if state.seq - last_snapshot >= max(self.snapshot_every, len(state.steps)):
                        # serialised on the store thread: no task changes state meanwhile
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
                    await self._store(self.store.append, run_id, appended, token=lease.token)
                    for future, offset, count in acks:
                        if not future.done():
                            future.set_result(list(range(first + offset, first + offset + count)))
                    acks = []
                    for offset, event in enumerate(batch):
                        stored = StoredEvent(run_id=run_id, seq=first + offset, event=event)
                        if self._echo is not None:
                            self._echo(stored)
                        yield stored
                    watch.saw(batch, first, self.clock())
                    if halt:
                        return
                    for event in batch:
                        task = self._dispatch(state, event, pool, outbox, acting)
                        if task is not None:
                            work[task] = run_id
                            watch.started(task, event)
                if state.finished is not None and not work:
                    return
                inbound = await self._wait(state, work, outbox, stop)
                inbound += await self._end_stalled(state, work, watch, hub)
                inbound, acks = outbox.drain(inbound)
                stopping = stop is not None and stop.requested
        finally:
            for task in work:
                task.cancel()
            if work:
                await asyncio.gather(*work, return_exceptions=True)
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)  # a timed-out thread may linger
            self._read.pop(run_id, None)
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, LeaseLostError):
                await keeper  # cancellation is the keeper's normal end
            # a stale token (the lease was lost) makes the release a no-op
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
            event = with_named_files(state, event)
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
        outbox: _Outbox,
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
            if task.get_name().startswith(_ATTEMPT)
            and task.get_name().removeprefix(_ATTEMPT) not in acting
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
        ``state`` read, used when the monitors' save is of the same seq."""
        settings = state.monitors or DEFAULT_MONITORS
        if not settings.enabled:
            return None, []
        # what the monitors restore and catch up on is kept: no collection meanwhile
        with collector.paused():
            hub = MonitorHub(settings, self.monitors)
            # the first event holds the goal and scope; only an agent run's history holds
            # model turns for the monitors to catch up on (a plan run's would cost resume
            # time and show them nothing), and they catch up from the snapshot if it saved
            # them, else from the start
            limit: int | None = 1
            after = 0
            if state.agent is not None:
                limit = None
                snap = await self._store(self.store.snapshot, state.run_id, monitors=True)
                if (
                    snap is not None
                    and snap.seq <= state.seq
                    and trusted(state.run_id, snap, self._key())
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
        outbox: _Outbox,
        stop: Stop | None,
    ) -> list[AnyEvent]:
        """Sleep until an attempt ends or records events, a retry falls due, it is
        time to poll, or a stop is requested."""
        timeout = self.poll_interval
        due = next_wakeup(state)
        if due is not None:
            timeout = max(0.0, min(timeout, due - self.clock()))
        if outbox.waiting:
            timeout = 0.0
        wakers: list[asyncio.Future[Any]] = [asyncio.ensure_future(outbox.posted.wait())]
        if stop is not None:
            wakers.append(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(
                [*work, *wakers], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waker in wakers:
                waker.cancel()
        results = []
        for task in [t for t in work if t.done()]:
            del work[task]
            results.append(task.result())
        # keep a stable order within one commit: plan order, as the decider sees it
        results.sort(key=lambda e: state.position(getattr(e, "step", "")))
        return results

    def _dispatch(
        self,
        state: RunState,
        event: AnyEvent,
        pool: Executor,
        outbox: _Outbox,
        acting: set[str],
    ) -> asyncio.Task[AnyEvent] | None:
        match event:
            case StepStarted(step=sid, attempt=attempt, key=key, gate=gate):
                ctx = self._context(state, sid, attempt, key)
                # cancelled from now until its action returns, the attempt is stopped:
                # nothing ran yet, or its processes were killed (a Python callable in a
                # thread cannot be stopped: it leaves the set when it begins)
                acting.add(sid)
                return asyncio.create_task(
                    self._attempt(state, sid, ctx, pool, gate, outbox, acting),
                    name=f"{_ATTEMPT}{sid}",
                )
            case StepProbeStarted(step=sid, reason=why):
                st = state.steps[sid]
                ctx = self._context(state, sid, st.attempt, f"{state.run_id}/{sid}/probe")
                return asyncio.create_task(self._probe(state, sid, why, ctx, pool))
        return None

    async def perform_for(
        self,
        state: RunState,
        announced: StepStarted | StepProbeStarted,
        record: Callable[[Sequence[AnyEvent]], Awaitable[list[int]]] | None = None,
    ) -> list[AnyEvent]:
        """Perform one attempt or probe the decider announced (and a driver recorded)
        for a driver other than this engine's loop: a Temporal activity. The events
        it ends with: how this host confines commands, when that differs from what the
        run last recorded, then the outcome. Cancelling it stops the attempt as a stop
        does here (a command's process group killed and waited for).

        ``record`` is how the attempt's own events (an agent's model and tool calls)
        reach that driver and become durable; it must bring ``state`` up to date
        with what the driver applied before it returns their seqs."""
        last = state.sandbox
        chosen = [
            c
            for c in self.sandbox_for(state)
            if last is None or (last.confined, last.detail) != (c.confined, c.detail)
        ]
        pool = ThreadPoolExecutor(state.plan.parallelism, thread_name_prefix="trestle-step")
        try:
            task = self._dispatch(state, announced, pool, _Outbox(record), set())
            assert task is not None  # both kinds announce work
            ended = await task
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return [*chosen, ended]

    def sandbox_for(self, state: RunState) -> list[SandboxChosen]:
        """Choose how this drive confines commands; recorded when it changed, and at
        every drive's start when commands run unconfined."""
        store_file = getattr(self.store, "path", None)
        workspace = Path(state.workspace)
        hidden = hidden_paths(
            workspace,
            store_file if isinstance(store_file, Path) else None,
            key_path(),
            config_dir(),
        )
        if self.shadow_dir is not None:  # the checkpoints: hidden in the workspace too
            hidden = (*hidden, self.shadow_dir.resolve())
        # a child run may write only its carved scope; a root run's scope is the gate's
        scope = parent_scope(state) if state.parent is not None else ()
        sandbox = choose(
            self.sandbox_mode, hidden=hidden, policy=sandbox_policy(state), scope=scope
        )
        self._sandboxes[state.run_id] = sandbox
        chosen = SandboxChosen(
            at=self.clock(), confined=sandbox.confines, detail=sandbox.describe()
        )
        last = state.sandbox
        if (
            chosen.confined
            and last is not None
            and (last.confined, last.detail)
            == (
                True,
                chosen.detail,
            )
        ):
            return []
        return [chosen]  # every drive without a sandbox says so

    def _context(self, state: RunState, sid: str, attempt: int, key: str) -> StepContext:
        plan_dir = Path(state.plan_path).parent if state.plan_path else Path(state.workspace)
        return StepContext(
            run_id=state.run_id,
            step_id=sid,
            attempt=attempt,
            key=key,
            workspace=Path(state.workspace),
            plan_dir=plan_dir,
            sandbox=self._sandboxes.get(state.run_id),
            python_pins=state.python_sources,
        )

    async def _attempt(
        self,
        state: RunState,
        sid: str,
        ctx: StepContext,
        pool: Executor,
        gate: Gate | None,
        outbox: _Outbox,
        acting: set[str],
    ) -> AnyEvent:
        spawned: list[StepProcessStarted] = []

        def note_spawn(pid: int) -> None:
            # no wake-up: it joins the next commit, at most a poll interval later; a
            # step that ends sooner withdraws it, so short steps cost no extra commit
            record = StepProcessStarted(
                at=self.clock(),
                step=sid,
                attempt=ctx.attempt,
                pid=pid,
                pgid=pid,  # a new session: the leader's pid names the group
                start_time=process_start_time(pid),
            )
            spawned.append(record)
            outbox.note(record)

        try:
            ended = await self._attempt_once(
                state, sid, ctx, pool, gate, outbox, acting, note_spawn
            )
        finally:  # a cancelled attempt stays in ``acting``: it was stopped
            for record in spawned:
                outbox.withdraw(record)
        acting.discard(sid)
        return ended

    async def _attempt_once(
        self,
        state: RunState,
        sid: str,
        ctx: StepContext,
        pool: Executor,
        gate: Gate | None,
        outbox: _Outbox,
        acting: set[str],
        note_spawn: Callable[[int], None],
    ) -> AnyEvent:
        step = state.step_spec(sid)
        refusal = unapproved(state, step, gate) or unconfined(state, step, gate, ctx.sandbox)
        if refusal is not None:  # never expected: the decider gates; this double-checks
            action = ActionResult(status="error", error=refusal)
            return StepAttemptEnded(
                at=self.clock(), step=sid, attempt=ctx.attempt, ok=False, action=action
            )
        approved = approved_files(state, step, gate)
        with contextlib.ExitStack() as held:
            stale = None
            if approved is not None:  # reading the files is IO: off the event loop
                if ctx.sandbox is not None and ctx.sandbox.confines:
                    pins, moved = await in_thread(
                        pool,
                        held.enter_context,
                        pinned(approved.command, approved.files, Path(state.workspace)),
                    )
                    ctx = dataclasses.replace(ctx, pinned=pins)
                    stale = files_moved(approved, moved)
                else:
                    stale = await in_thread(pool, files_changed, approved, Path(state.workspace))
            if stale is not None:  # the approval is of other files than would run: ask again
                number, why = stale
                action = ActionResult(status="error", error=why)
                return StepAttemptEnded(
                    at=self.clock(),
                    step=sid,
                    attempt=ctx.attempt,
                    ok=False,
                    action=action,
                    approval_stale=number,
                )
            # only the command a human approved may write .git; an agent's calls are
            # each gated on their own
            human = step.run is not None and approved_by_human(state, gate)
            ctx = dataclasses.replace(ctx, approved=human)
            return await self._attempt_run(state, sid, step, ctx, pool, outbox, acting, note_spawn)

    async def _attempt_run(
        self,
        state: RunState,
        sid: str,
        step: Step,
        ctx: StepContext,
        pool: Executor,
        outbox: _Outbox,
        acting: set[str],
        note_spawn: Callable[[int], None],
    ) -> AnyEvent:
        taking: asyncio.Future[str | None]
        if self.shadow_dir is not None and wants_checkpoint(state.plan, step, "before"):
            taking = asyncio.ensure_future(self._checkpoint(state, step, ctx, "before", pool))
        else:  # none to take: a settled future, so nothing waits a turn of the loop for it
            taking = asyncio.get_running_loop().create_future()
            taking.set_result(None)
        ask: ToolAsk | None = None
        if step.delegate is None and step.agent is not None and self.performer is not None:
            # the model's first answer need not wait for the checkpoint: the attempt
            # waits for it before it first runs anything in the workspace
            work = self._agent_work(state, step, ctx, pool, outbox, taking)
            before, action, ask = await _agent_attempt(self.performer, work, taking)
        else:
            try:
                before = await taking
            except ShadowRepoError as exc:  # no safety net: the step must not run without one
                action = ActionResult(status="error", error=f"workspace checkpoint failed: {exc}")
                return StepAttemptEnded(
                    at=self.clock(), step=sid, attempt=ctx.attempt, ok=False, action=action
                )
            if step.delegate is not None:
                action = await perform_delegation(self, state, step, ctx.attempt, outbox.record)
            else:
                if step.run is None:
                    acting.discard(sid)
                action = await perform(step, ctx, pool, on_spawn=note_spawn)
        acting.discard(sid)
        checking = dataclasses.replace(ctx, approved=False, pinned=())  # nobody approved them
        checks = await run_checks(step, checking, pool) if action.status == "ok" else ()
        ok = action.status == "ok" and all(c.passed for c in checks)
        try:
            after = await self._checkpoint(state, step, ctx, "after", pool)
        except ShadowRepoError:
            after = None  # the step already ran; a missing after-snapshot only limits diff
        return StepAttemptEnded(
            at=self.clock(),
            step=sid,
            attempt=ctx.attempt,
            ok=ok,
            action=action,
            checks=checks,
            checkpoint_before=before,
            checkpoint_after=after,
            ask=ask,
        )

    def _agent_work(
        self,
        state: RunState,
        step: Step,
        ctx: StepContext,
        pool: Executor,
        outbox: _Outbox,
        taking: asyncio.Future[str | None],
    ) -> StepWork:
        """What an agent step's performer is given; its ``ready`` waits for ``taking``,
        the workspace's checkpoint (see :attr:`StepWork.ready`)."""

        async def ready() -> None:
            try:
                if not taking.done():
                    await asyncio.shield(taking)
                taking.result()
            except ShadowRepoError as exc:
                raise WorkspaceNotSaved(f"workspace checkpoint failed: {exc}") from exc

        load = self._loader(state.run_id)
        note = outbox.note if outbox.commits_notes else None
        return StepWork(
            state, step, ctx, pool, outbox.record, load, self.clock, self.store, note, ready
        )

    def _loader(self, run_id: str) -> Callable[[Sequence[int]], Awaitable[list[AnyEvent]]]:
        async def load(seqs: Sequence[int]) -> list[AnyEvent]:
            read = self._read.get(run_id, {})
            wanted = set(seqs)
            found = {seq: read[seq] for seq in wanted if seq in read}
            for low, high in _spans(sorted(wanted - found.keys())):  # a range read each
                stored = await self._store(
                    self.store.events, run_id, after=low - 1, limit=high - low + 1
                )
                found.update((item.seq, item.event) for item in stored if item.seq in wanted)
            return [found[seq] for seq in sorted(found)]

        return load

    async def _checkpoint(
        self, state: RunState, step: Step, ctx: StepContext, when: When, pool: Executor
    ) -> str | None:
        """Snapshot the workspace if the plan asks for it here (off the event loop)."""
        if self.shadow_dir is None or not wants_checkpoint(state.plan, step, when):
            return None
        repo = shadow_repo(state, self.shadow_dir, self.store)
        name = checkpoint_name(state.run_id, step.id, ctx.attempt, when)
        return await in_thread(pool, repo.snapshot, name, f"{when} {step.id}")

    async def _probe(
        self, state: RunState, sid: str, why: str, ctx: StepContext, pool: Executor
    ) -> AnyEvent:
        step, st = state.step_spec(sid), state.steps[sid]
        if why != "unknown_outcome":
            checks = await run_checks(step, ctx, pool)
            passed = bool(checks) and all(c.passed for c in checks)
            return StepProbed(
                at=self.clock(), step=sid, reason="before_retry", passed=passed, checks=checks
            )
        if step.delegate is not None:
            # a delegating step's work is its child's, which keeps its own record: the
            # re-run resumes the child rather than judge it half done by these checks
            return StepProbed(at=self.clock(), step=sid, reason="unknown_outcome", passed=False)
        # the attempt's processes may outlive the driver that started them: the checks
        # must not look at work still in progress, nor a re-run race it
        key = idempotency_key(state.run_id, sid, st.attempt)
        leader = (
            Leader(st.process.pid, st.process.pgid, st.process.start_time) if st.process else None
        )
        wait = self.orphan_wait
        if step.timeout is not None and st.started_at is not None:
            wait = max(0.0, st.started_at + step.timeout - self.clock())
        found, waited = await reap(key, leader, wait, pool)
        checks = await run_checks(step, ctx, pool)
        passed = bool(checks) and all(c.passed for c in checks)
        return StepProbed(
            at=self.clock(),
            step=sid,
            reason="unknown_outcome",
            passed=passed,
            checks=checks,
            leftovers=found,
            waited=round(waited, 3),
        )

    async def _keep_lease(self, run_id: str, lease: Lease) -> None:
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            await self._store(
                self.store.renew_lease, run_id, lease.token, ttl=self.lease_ttl, now=self.clock()
            )

    def close(self) -> None:
        self._io.shutdown(wait=True)

    def state(self, run_id: str) -> RunState:
        """The run's state as this engine acts on it: forged decisions left out."""
        return self.load_vetted(run_id)[0]

    def load_vetted(self, run_id: str, tail: Tail | None = None) -> tuple[RunState, list[AnyEvent]]:
        """The run's state with every forged decision left out (see
        :func:`trestle.lifecycle.approvals.forged`), and a refusal to record for each one not yet
        reported, naming its seq; ``tail`` gets the events read after its snapshot."""
        if self._decision_key is None:
            self._decision_key = decision_key()
        key = self._decision_key
        ignored: list[tuple[int, AnyEvent, str]] = []
        with collector.paused():
            state = load_state(
                self.store, run_id, vet=vetter(key), ignored=ignored, key=key, tail=tail
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

        fields = verified_fields(r.payload, self._key())
        return request_as_events(state, r, fields, self.clock(), tell=tell)


def stalled(
    state: RunState,
    hub: MonitorHub | None,
    sid: str,
    attempt: int,
    last_seq: int,
    silent: float,
    now: float,
) -> list[AnyEvent]:
    """What ends an attempt cancelled for its silence: it fails as ``stalled`` (its
    step goes to the dead-letter queue), and the monitors' alert on it."""
    error = f"stalled: no sign of life for {silent:.0f}s; the attempt was cancelled"
    action = ActionResult(status="stalled", error=error, duration=silent)
    ended: list[AnyEvent] = [
        StepAttemptEnded(at=now, step=sid, attempt=attempt, ok=False, action=action)
    ]
    if hub is not None:
        stall = Stall(seq=last_seq, step=sid, attempt=attempt, silent=silent)
        ended += hub.stalled(stall, state, now)
    return ended


def with_named_files(state: RunState, event: AnyEvent) -> AnyEvent:
    """An approval request for a command step, with the workspace files the command
    names as they read now (see :mod:`trestle.execution.named_files`): the approval is bound to
    them."""
    command = command_to_bind(state, event)
    if command is None:
        return event
    return event.model_copy(update={"files": named_files(command, Path(state.workspace))})


def command_to_bind(state: RunState, event: AnyEvent) -> str | None:
    """The command whose named files ``event`` must be bound to, or None: an approval
    request for a command step that carries no files yet. Pure: a driver that may do
    no IO asks for the files elsewhere."""
    if not isinstance(event, ApprovalRequested) or event.step is None or event.files is not None:
        return None
    if event.subject not in ("action", "audit"):
        return None
    return state.step_spec(event.step).run


@dataclass(frozen=True)
class _Approved:
    """An approval of a command, with what the workspace files it names read then."""

    number: int
    command: str
    files: dict[str, str]


def approved_files(state: RunState, step: Step, gate: Gate | None) -> _Approved | None:
    """The approval the step's command passed with the files it names, if any."""
    if gate is None or gate.approval is None or step.run is None:
        return None
    granted = state.approvals.get(gate.approval)
    if granted is None or granted.files is None:
        return None
    return _Approved(gate.approval, step.run, granted.files)


def files_changed(approved: _Approved, workspace: Path) -> tuple[int, str] | None:
    """The approval that no longer holds and why, when a workspace file the command
    names reads otherwise than when the approval was asked; else None."""
    return files_moved(approved, changed(approved.files, named_files(approved.command, workspace)))


def files_moved(approved: _Approved, moved: list[str]) -> tuple[int, str] | None:
    """The approval that no longer holds and why, when ``moved`` names files; else None."""
    if not moved:
        return None
    return approved.number, (
        "refused: the action differs from the one that passed the approval gate: "
        f"{', '.join(moved)} changed since approval {approved.number} was asked; asking again"
    )


def approved_by_human(state: RunState, gate: Gate | None) -> bool:
    """Did a human approve this very action (not a rule, not an audit after it)?"""
    if gate is None or gate.approval is None:
        return False
    granted = state.approvals.get(gate.approval)
    return granted is not None and granted.status in ("approved", "modified")


def unapproved(state: RunState, step: Step, gate: Gate | None) -> str | None:
    """Why this action must not run now, or None: the gate's hash must be the action's,
    and a tier that needs a human must carry an approval that was granted."""
    if gate is None:
        return None  # recorded before approval gates existed
    if action_digest(step) != gate.action_hash:
        return "refused: the action differs from the one that passed the approval gate"
    needs_human = gate.decision.tier == "confirm" or gate.decision.audit == "before"
    if not needs_human:
        return None
    granted = state.approvals.get(gate.approval) if gate.approval is not None else None
    if granted is None or granted.status not in ("approved", "modified"):
        return "refused: the action needs an approval and none was granted"
    return None


def unconfined(
    state: RunState, step: Step, gate: Gate | None, sandbox: Sandbox | None
) -> str | None:
    """Why a confirm-tier command must not run here, or None: with no sandbox, one
    runs only if the operator chose to run unconfined (``--sandbox off``)."""
    if gate is None or gate.decision.tier != "confirm" or sandbox is None:
        return None
    if sandbox.confines or sandbox.opted_out or (step.run is None and step.agent is None):
        return None  # python: and write steps are not confined by any sandbox
    run = state.run_id
    return (
        f"refused: step {step.id!r} is confirm-tier and commands here would run "
        f"{sandbox.describe()}. Install bubblewrap (apt install bubblewrap), or accept "
        f"running it unconfined: `trestle retry {run} {step.id}`, then "
        f"`trestle resume {run} --sandbox off`"
    )


Work = TypeVar("Work", bound="asyncio.Future[Any]")  # what a driver waits on per attempt


class StallWatch(Generic[Work]):
    """When each running attempt last showed a sign of life: its start, or an event it
    recorded (an agent step records one per model or tool call). An attempt silent for
    longer than ``stall_after`` (or its step's own timeout, if longer) is overdue."""

    def __init__(self, settings: MonitorSettings) -> None:
        self.settings = settings
        self._attempts: dict[Work, tuple[str, int]] = {}
        self._last: dict[str, tuple[float, int]] = {}  # step -> (when, seq)

    def started(self, task: Work, event: AnyEvent) -> None:
        if isinstance(event, StepStarted):
            self._attempts[task] = (event.step, event.attempt)

    def saw(self, batch: Sequence[AnyEvent], first_seq: int, now: float) -> None:
        for offset, event in enumerate(batch):
            sid = getattr(event, "step", None)
            if isinstance(sid, str):
                self._last[sid] = (now, first_seq + offset)

    def next_due(self, state: RunState) -> float | None:
        """When the first running attempt becomes overdue, if any runs: a driver that
        cannot poll (a workflow) sleeps until then."""
        dues = [
            self._last[sid][0] + self.settings.stall_limit(state.step_spec(sid).timeout)
            for task, (sid, _) in self._attempts.items()
            if not task.done() and sid in self._last
        ]
        return min(dues, default=None)

    def overdue(
        self, state: RunState, now: float
    ) -> list[tuple[Work, tuple[str, int, int, float]]]:
        """The attempts past their limit: task, then step, attempt, last seq, silence."""
        late = []
        for task, (sid, attempt) in list(self._attempts.items()):
            if task.done():
                del self._attempts[task]
                continue
            when, seq = self._last.get(sid, (now, state.seq))
            limit = self.settings.stall_limit(state.step_spec(sid).timeout)
            if now - when > limit:
                del self._attempts[task]
                late.append((task, (sid, attempt, seq, now - when)))
        return late


class _Outbox:
    """Events a running step asks to record: the engine commits them in its next batch
    and then tells the step their seqs."""

    def __init__(
        self, forward: Callable[[Sequence[AnyEvent]], Awaitable[list[int]]] | None = None
    ) -> None:
        self._forward = forward  # another driver records them (see perform_for)
        self.posted = asyncio.Event()
        self._items: list[tuple[list[AnyEvent], asyncio.Future[list[int]]]] = []
        self._notes: list[AnyEvent] = []

    @property
    def waiting(self) -> bool:
        return bool(self._items)

    @property
    def commits_notes(self) -> bool:
        """Whether a note reaches a commit: a forwarding outbox's never does."""
        return self._forward is None

    def note(self, event: AnyEvent) -> None:
        """Record ``event`` with the next commit, without waking the engine for it."""
        self._notes.append(event)

    def withdraw(self, event: AnyEvent) -> None:
        """Take back a note not yet committed (it no longer matters)."""
        self._notes = [e for e in self._notes if e is not event]

    async def record(self, events: Sequence[AnyEvent]) -> list[int]:
        if not events:
            return []
        if self._forward is not None:
            return await self._forward(events)
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._items.append((list(events), future))
        self.posted.set()
        return await future

    def drain(self, inbound: list[AnyEvent]) -> tuple[list[AnyEvent], list[_Ack]]:
        """``inbound`` followed by every posted event, and who waits for which."""
        acks: list[_Ack] = []
        events = [*self._notes, *inbound]
        self._notes.clear()
        for posted, future in self._items:
            acks.append((future, len(events), len(posted)))
            events += posted
        self._items.clear()
        self.posted.clear()
        return events, acks


async def _agent_attempt(
    performer: StepPerformer, work: StepWork, taking: asyncio.Future[str | None]
) -> tuple[str | None, ActionResult, ToolAsk | None]:
    """The attempt, then the checkpoint ``taking`` beside it: both, and what it asks."""
    try:
        action, ask = await performer.perform(work)
    except BaseException:
        # the checkpoint's git commands run on; nothing waits for their answer
        taking.add_done_callback(_retrieved)
        taking.cancel()
        raise
    try:
        before = await taking
    except ShadowRepoError:
        before = None  # the attempt ran nothing in the workspace: none was needed
    return before, action, ask


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Takes a dropped future's failure, so asyncio does not report it as unseen."""
    if not future.cancelled():
        future.exception()


def _spans(seqs: Sequence[int], gap: int = 64) -> list[tuple[int, int]]:
    """Sorted ``seqs`` as (first, last) ranges, split where more than ``gap`` seqs lie
    between two of them: a resumed round reads its opening and its tail, not the
    thousands of events between."""
    spans: list[tuple[int, int]] = []
    for seq in seqs:
        if spans and seq - spans[-1][1] <= gap:
            spans[-1] = (spans[-1][0], seq)
        else:
            spans.append((seq, seq))
    return spans
