"""Performing a step's attempt or probe: the context it is given, its sandbox, its
checkpoints around it, its checks, an agent step's work, and the events it ends with.
:class:`~trestle.engines.local.LocalEngine` drives the run and hands each attempt the
decider starts to these, in its own loop or for another driver (a Temporal activity,
:meth:`Attempts.perform_for`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from trestle.agentplan.planning import AGENT_TAG
from trestle.core.errors import ModelBindingError
from trestle.core.events import (
    ActionResult,
    AnyEvent,
    Gate,
    Place,
    SandboxChosen,
    StepAttemptEnded,
    StepProbed,
    StepProbeStarted,
    StepProcessStarted,
    StepStarted,
    ToolAsk,
    idempotency_key,
)
from trestle.core.plan import Step
from trestle.core.records.lineage import AttemptFiles
from trestle.core.state import RunState, runs_alone
from trestle.core.tree import parent_scope
from trestle.engines.alarm import Alarm
from trestle.engines.approved import (
    approved_by_human,
    approved_files,
    files_moved,
    unapproved,
    unconfined,
)
from trestle.engines.delegation import ParentEngine, perform_delegation
from trestle.engines.hold import TreeHold, run_alone
from trestle.engines.outbox import Outbox
from trestle.engines.stall import StallWatch
from trestle.engines.store_thread import StoreThread
from trestle.engines.touched import attempt_files, may_read, reads_of
from trestle.engines.work import Release, StepPerformer, StepWork, WorkspaceNotSaved
from trestle.execution.actions import StepContext, in_thread, perform
from trestle.execution.checks import run_checks
from trestle.execution.driver_files import driver_python, named_paths
from trestle.execution.pinning import holding, unheld_reason
from trestle.execution.places import unseen
from trestle.execution.processes import Leader, reap
from trestle.execution.processes import start_time as process_start_time
from trestle.execution.run_files import run_files
from trestle.execution.sandbox import (
    Mode,
    Sandbox,
    choose,
    hidden_paths,
    root_reads,
)
from trestle.execution.sandbox import policy_of as sandbox_policy
from trestle.execution.submodule_checkouts import unheld_workspace_checkout
from trestle.execution.workspace_hold import Release as WorkspaceRelease
from trestle.execution.workspace_hold import hold_exclusive
from trestle.lifecycle.checkpoints import (
    When,
    checkpoint_name,
    shadow_repo,
    wants_checkpoint,
)
from trestle.store.base import Store
from trestle.support.step_threads import StepThreads
from trestle.trust.identity import ACCOUNTS_ENV, IDENTITY_ENV, accounts_path, identity_path
from trestle.trust.known_plans import known_in
from trestle.trust.signing import config_dir, key_path
from trestle.workspace.shadow import ShadowRepoError, shadow_dir_for

Clock = Callable[[], float]
ATTEMPT_TASK = "trestle-attempt:"  # the name of an attempt's task, before its step id
P = ParamSpec("P")
T = TypeVar("T")


# what a model-named step's commands are matched by in the policy's sandbox globs: a
# name with a space, which no step id or tool name has, so only "*" matches it
MODEL_NAMED = "agent step "


class Attempts:
    """The attempt half of the local engine (see the module): what it reads of the
    engine is declared here and set by :class:`~trestle.engines.local.LocalEngine`."""

    store: Store
    clock: Clock
    performer: StepPerformer | None
    shadow_dir: Path | None
    sandbox_mode: Mode
    poll_interval: float
    orphan_wait: float
    place: Place
    _io: StoreThread
    _sandboxes: dict[str, Sandbox]
    _kept_above: tuple[Path, ...]  # the files of the runs this one's tree delegated from
    _read: dict[str, dict[int, AnyEvent]]
    _halts: dict[str, Callable[[ModelBindingError], None]]
    _callings: dict[str, Callable[[], None]]  # StepWork.calling, by run
    _hold: TreeHold | None  # a delegated child's: the runs above it (trestle.engines.hold)
    _watches: dict[str, StallWatch[asyncio.Task[AnyEvent]]]  # by run being driven

    async def _store(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._io.call(fn, *args, **kwargs)

    in_store_thread = _store  # for the engine's helpers (delegation): blocking store work

    def shadow_dir_of(self, state: RunState) -> Path | None:
        """Where the run's checkpoints go: the engine's ``shadow_dir`` (given, or
        beside its store's file), else ``.trestle/shadow.git`` in the run's workspace
        for a store kept in a database (see :func:`shadow_dir_for`)."""
        if self.shadow_dir is not None:
            return self.shadow_dir
        return shadow_dir_for(self.store, _run_dirs(state.workspace, state.plan_path)[0])

    def as_parent(self) -> ParentEngine:
        """The engine a delegating step's child is driven beside (the local engine)."""
        raise NotImplementedError

    def _dispatch(
        self,
        state: RunState,
        event: AnyEvent,
        pool: StepThreads,
        outbox: Outbox,
        acting: set[str],
        alarm: Alarm | None = None,
    ) -> asyncio.Task[AnyEvent] | None:
        """The task that performs the attempt or probe ``event`` announces, if it
        announces one; ``alarm`` rings as the task ends."""
        work: Coroutine[Any, Any, AnyEvent]
        name = None
        match event:
            case StepStarted(step=sid, attempt=attempt, key=key, gate=gate):
                ctx = self._context(state, sid, attempt, key)
                # cancelled from now until its action returns, the attempt is stopped:
                # nothing ran yet, or its processes were killed (a Python callable in a
                # thread cannot be stopped: it leaves the set when it begins)
                acting.add(sid)
                work = self._attempt(state, sid, ctx, pool, gate, outbox, acting)
                name = f"{ATTEMPT_TASK}{sid}"
            case StepProbeStarted(step=sid, reason=why):
                st = state.steps[sid]
                ctx = self._context(state, sid, st.attempt, f"{state.run_id}/{sid}/probe")
                work = self._probe(state, sid, why, ctx, pool)
            case _:
                return None
        return asyncio.create_task(work if alarm is None else alarm.then_ring(work), name=name)

    async def perform_for(
        self,
        state: RunState,
        announced: StepStarted | StepProbeStarted,
        record: Callable[[Sequence[AnyEvent]], Awaitable[list[int]]] | None = None,
        follow: Callable[[], Awaitable[None]] | None = None,
    ) -> list[AnyEvent]:
        """Perform one attempt or probe the decider announced (and a driver recorded)
        for a driver other than this engine's loop: a Temporal activity. The events
        it ends with: how this host confines commands, when that differs from what the
        run last recorded, then the outcome. Cancelling it stops the attempt as a stop
        does here (a command's process group killed and waited for).

        ``record`` is how the attempt's own events (an agent's model and tool calls)
        reach that driver and become durable; it must bring ``state`` up to date
        with what the driver applied before it returns their seqs. ``follow`` brings
        it up to date with what the driver recorded since, as an approved tool call
        waits to run alone (see :attr:`StepWork.alone`)."""
        last = state.sandbox
        chosen = [
            c
            for c in self.sandbox_for(state)
            if last is None
            or (last.confined, last.detail, last.exposed) != (c.confined, c.detail, c.exposed)
        ]
        pool = StepThreads(state.plan.parallelism, "trestle-step")
        try:
            task = self._dispatch(state, announced, pool, Outbox(record, follow=follow), set())
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
        if os.environ.get(IDENTITY_ENV):  # an approver's own key, outside the config
            mine = hidden_paths(workspace, None, identity_path(), None)
            hidden = (*hidden, *(p for p in mine if p not in hidden))
        if os.environ.get(ACCOUNTS_ENV):  # the dashboard people's keys (SQLite, like a store)
            theirs = hidden_paths(workspace, accounts_path(), key_path(), None)
            hidden = (*hidden, *(p for p in theirs if p not in hidden))
        shadow_dir = self.shadow_dir_of(state)
        if shadow_dir is not None:  # the checkpoints: hidden in the workspace too
            hidden = (*hidden, shadow_dir.resolve())
        # a child run may write only its carved scope; a root run's scope is the gate's
        scope = parent_scope(state) if state.parent is not None else ()
        own = (*([state.plan_path] if state.plan_path else []), *(state.python_sources or {}))
        # and those of every plan run from this account whose files lie in the workspace
        ws = workspace.resolve()
        kept = run_files(ws, (*map(str, self._kept_above), *own, *known_in(ws)))
        sandbox = choose(
            self.sandbox_mode,
            hidden=hidden,
            policy=sandbox_policy(state),
            scope=scope,
            workspace=workspace,
            kept=kept.held,
        )
        self._sandboxes[state.run_id] = sandbox
        detail = sandbox.describe()
        server = getattr(self.store, "where", None)
        if sandbox.confines and sandbox.policy.network and isinstance(server, str):
            # a store file is hidden from every step; a server is only a host on the
            # network the policy lets these steps reach
            detail += (
                f"; the store's server ({server}) can be reached by those steps: only "
                "its credentials, which steps are not given, keep them out"
            )
        exposed: tuple[str, ...] = ()
        if sandbox.confines:
            python = driver_python(workspace.resolve())
            detail += root_reads() + python.note() + kept.note()
            exposed = (
                *python.exposed,
                *kept.exposed,
                *named_paths(workspace.resolve(), self._named(store_file)),
                *unheld_workspace_checkout(workspace.resolve()),
            )
            if sandbox.policy.network and not getattr(self.store, "asked_password", True):
                exposed = (*exposed, _store_without_password(str(server), sandbox.policy.network))
            if sandbox.policy.network and state.engine is not None:
                exposed = (*exposed, _frontend(state.engine.address, sandbox.policy.network))
            if sandbox.policy.network and state.agent is not None:
                exposed += tuple(
                    _mcp_over_network(m.name, m.url, sandbox.policy.network)
                    for m in state.agent.mcp
                    if m.url is not None
                )
                if state.agent.base_url is not None:
                    exposed += (_model_over_network(state.agent.base_url, sandbox.policy.network),)
                tools = [t for t in COMMAND_TOOLS if sandbox.policy.allows_network(t)]
                if tools:
                    exposed += (_scripts_over_network(tools),)
        chosen = SandboxChosen(
            at=self.clock(), confined=sandbox.confines, detail=detail, exposed=exposed
        )
        last = state.sandbox
        if (
            chosen.confined
            and last is not None
            and (last.confined, last.detail, last.exposed) == (True, chosen.detail, chosen.exposed)
        ):
            return []
        return [chosen]  # every drive without a sandbox says so

    @staticmethod
    def _named(store_file: object) -> dict[str, Path | None]:
        """The driver's files as it names them, which a link in the workspace could
        redirect for the next driver (see :mod:`trestle.execution.driver_files`)."""
        return {
            "the store": store_file if isinstance(store_file, Path) else None,
            "the approval key": key_path(),
            "Trestle's configuration directory": config_dir(),
            "your identity key": identity_path() if os.environ.get(IDENTITY_ENV) else None,
            "the dashboard's accounts": accounts_path() if os.environ.get(ACCOUNTS_ENV) else None,
        }

    def _context(self, state: RunState, sid: str, attempt: int, key: str) -> StepContext:
        workspace, plan_dir = _run_dirs(state.workspace, state.plan_path)
        step = state.plan.step(sid) if state.agent is not None else None
        # an agent's plan step is named by its model: the policy's globs, written for the
        # operator's steps and for tool names, must not grant its checks the network
        named_by_model = step is not None and AGENT_TAG in step.tags
        return StepContext(
            policy_name=f"{MODEL_NAMED}{sid}" if named_by_model else None,
            run_id=state.run_id,
            step_id=sid,
            attempt=attempt,
            key=key,
            workspace=workspace,
            plan_dir=plan_dir,
            sandbox=self._sandboxes.get(state.run_id),
            python_pins=state.python_sources,
        )

    async def _attempt(
        self,
        state: RunState,
        sid: str,
        ctx: StepContext,
        pool: StepThreads,
        gate: Gate | None,
        outbox: Outbox,
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

        # a delegated child's approved command holds the runs above it too, before its
        # files are checked (see trestle.engines.hold); a stop lets them go as the
        # delegating steps' attempts end
        alone = runs_alone(state.step_spec(sid), gate)
        above = self._hold if alone else None
        call = f"{state.run_id}:{sid}/{ctx.attempt}"
        let_go: WorkspaceRelease | None = None
        try:
            if alone:
                let_go = await self._hold_alone(state, sid, above, call, ctx.workspace)
            ended = await self._attempt_once(
                state, sid, ctx, pool, gate, outbox, acting, note_spawn
            )
            if let_go is not None:
                await let_go()
                let_go = None
            if above is not None:
                await above.release(call)
        finally:  # a cancelled attempt stays in ``acting``: it was stopped
            if let_go is not None:
                await let_go()
            for record in spawned:
                outbox.withdraw(record)
        acting.discard(sid)
        return ended

    async def _hold_alone(
        self, state: RunState, sid: str, above: TreeHold | None, call: str, workspace: Path
    ) -> WorkspaceRelease:
        """Hold, for ``call`` of step ``sid`` (its own run holds already), the runs above
        this delegated child (``above``), then the workspace against other runs'
        commands (:mod:`trestle.execution.workspace_hold`); what lets the workspace go.
        The attempt waits for them meanwhile, and is not taken for a silent one."""
        watch = self._watches.get(state.run_id)
        waiting = watch.holding(sid, self.clock) if watch is not None else contextlib.nullcontext()
        with waiting:
            if above is not None:
                await above.acquire(call)
            return await hold_exclusive(workspace)

    async def _attempt_once(
        self,
        state: RunState,
        sid: str,
        ctx: StepContext,
        pool: StepThreads,
        gate: Gate | None,
        outbox: Outbox,
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
            stale, unheld = None, None
            if approved is not None:  # reading the files is IO: off the event loop
                confined = ctx.sandbox is not None and ctx.sandbox.confines
                files = holding(
                    approved.command, approved.files, Path(state.workspace), confined=confined
                )
                pins, moved, cannot = await in_thread(pool, held.enter_context, files)
                if pins:
                    ctx = dataclasses.replace(ctx, pinned=pins)
                stale, unheld = files_moved(approved, moved), unheld_reason(cannot)
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
            if unheld is not None:  # what was approved cannot be held while it runs
                action = ActionResult(status="error", error=unheld)
                return StepAttemptEnded(
                    at=self.clock(), step=sid, attempt=ctx.attempt, ok=False, action=action
                )
            # only the command a human approved may write .git, and a write a human
            # approved goes through no link; an agent's calls are each gated on their own
            acts = step.run is not None or step.write is not None
            human = acts and approved_by_human(state, gate)
            if ctx.approved != human:
                ctx = dataclasses.replace(ctx, approved=human)
            return await self._attempt_run(state, sid, step, ctx, pool, outbox, acting, note_spawn)

    async def _attempt_run(
        self,
        state: RunState,
        sid: str,
        step: Step,
        ctx: StepContext,
        pool: StepThreads,
        outbox: Outbox,
        acting: set[str],
        note_spawn: Callable[[int], None],
    ) -> AnyEvent:
        taking: asyncio.Future[str | None]
        if self.shadow_dir_of(state) is not None and wants_checkpoint(state.plan, step, "before"):
            taking = asyncio.ensure_future(self._checkpoint(state, step, ctx, "before", pool))
        else:  # none to take: a settled future, so nothing waits a turn of the loop for it
            taking = asyncio.get_running_loop().create_future()
            taking.set_result(None)
        ask: ToolAsk | None = None
        read: dict[str, str] = {}  # what its command names, as it begins
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
                parent = self.as_parent()
                hold = TreeHold(state, sid, outbox, self.clock, self._hold)
                action = await perform_delegation(
                    parent, state, step, ctx.attempt, outbox.record, hold
                )
            else:
                if step.run is None:
                    acting.discard(sid)
                # only a command naming a workspace file has one to hash, in a thread;
                # whether it names one is looked up here, as a sandbox's arguments are
                # (through a thread each, a wide fan-out's commands started later)
                read = (
                    await in_thread(pool, reads_of, step, ctx.workspace)
                    if may_read(step, ctx.workspace)
                    else {}
                )
                action = await perform(step, ctx, pool, on_spawn=note_spawn)
        acting.discard(sid)
        checking = ctx  # nobody approved its checks
        if ctx.approved or ctx.pinned:
            checking = dataclasses.replace(ctx, approved=False, pinned=())
        checks = await run_checks(step, checking, pool) if action.status == "ok" else ()
        ok = action.status == "ok" and all(c.passed for c in checks)
        try:
            after = await self._checkpoint(state, step, ctx, "after", pool)
        except ShadowRepoError:
            after = None  # the step already ran; a missing after-snapshot only limits diff
        files = await self._files(state, step, read, before, after, pool)
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
            files=files,
        )

    async def _files(
        self,
        state: RunState,
        step: Step,
        read: dict[str, str],
        before: str | None,
        after: str | None,
        pool: StepThreads,
    ) -> AttemptFiles:
        """What the attempt read and wrote, as far as it can be seen (see
        :mod:`trestle.engines.touched`); its writes unknown if the diff fails."""
        workspace = _run_dirs(state.workspace, state.plan_path)[0]
        shadow_dir = self.shadow_dir_of(state)
        if before is None or after is None or shadow_dir is None:
            # no checkpoints around it: nothing to diff, so no thread and no shadow
            # store (both were 0.8 ms of a 1.3 ms no-op step)
            return attempt_files(step, workspace, read, None, None, None)
        repo = shadow_repo(state, shadow_dir, self.store)
        try:
            return await in_thread(pool, attempt_files, step, workspace, read, repo, before, after)
        except ShadowRepoError:
            return await in_thread(pool, attempt_files, step, workspace, read, None, None, None)

    def _agent_work(
        self,
        state: RunState,
        step: Step,
        ctx: StepContext,
        pool: StepThreads,
        outbox: Outbox,
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

        async def alone(call: str) -> Release:
            await run_alone(state, step.id, outbox, self.clock, call)
            above = self._hold  # a delegated child's: the runs above it too
            held = f"{state.run_id}:{call}"
            let_go = await self._hold_alone(state, step.id, above, held, ctx.workspace)
            if above is None:
                return let_go

            async def release() -> None:
                await let_go()
                await above.release(held)

            return release

        load = self._loader(state.run_id)
        note = outbox.note if outbox.commits_notes else None
        halt = self._halts.get(state.run_id)
        calling = self._callings.get(state.run_id)
        return StepWork(
            state,
            step,
            ctx,
            pool,
            outbox.record,
            load,
            self.clock,
            self.store,
            note,
            ready,
            halt,
            calling,
            alone,
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
        self, state: RunState, step: Step, ctx: StepContext, when: When, pool: StepThreads
    ) -> str | None:
        """Snapshot the workspace if the plan asks for it here (off the event loop)."""
        shadow_dir = self.shadow_dir_of(state)
        if shadow_dir is None or not wants_checkpoint(state.plan, step, when):
            return None
        repo = shadow_repo(state, shadow_dir, self.store)
        name = checkpoint_name(state.run_id, step.id, ctx.attempt, when)
        snap = functools.partial(repo.snapshot, name, f"{when} {step.id}", ordered=True)
        return await in_thread(pool, snap)

    async def _probe(
        self, state: RunState, sid: str, why: str, ctx: StepContext, pool: StepThreads
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
        if unseen(st, self.place.view, unplaced=False):
            # its driver ran it in another view (host, pid namespace): finding nothing
            # here proves nothing, and its checks could judge work still under way
            return StepProbed(
                at=self.clock(),
                step=sid,
                reason="unknown_outcome",
                passed=False,
                leftovers="unseen",
            )
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


async def _agent_attempt(
    performer: StepPerformer, work: StepWork, taking: asyncio.Future[str | None]
) -> tuple[str | None, ActionResult, ToolAsk | None]:
    """The attempt, then the checkpoint ``taking`` beside it: both, and what it asks."""
    try:
        action, ask = await performer.perform(work)
    except BaseException:
        # the checkpoint's git commands run on; nothing waits for their answer
        taking.add_done_callback(retrieved)
        taking.cancel()
        raise
    try:
        before = await taking
    except ShadowRepoError:
        before = None  # the attempt ran nothing in the workspace: none was needed
    return before, action, ask


@functools.lru_cache(maxsize=64)
def _run_dirs(workspace: str, plan_path: str | None) -> tuple[Path, Path]:
    """A run's workspace and plan directory as paths, made once per run rather than for
    each attempt: every step's callable is looked up by them (see
    :func:`trestle.execution.actions.call_python`), and a new path hashes afresh."""
    return Path(workspace), Path(plan_path).parent if plan_path else Path(workspace)


def retrieved(future: asyncio.Future[Any]) -> None:
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


def _store_without_password(server: str, network: tuple[str, ...]) -> str:
    """What a step that keeps the network can do to a store server that let the driver
    in without a password: its credentials are all that keep a step out."""
    return (
        f"the store's server ({server}) let the driver in without a password, and the "
        f"policy lets {', '.join(network)} keep the network: if the server lets in whoever "
        "connects from this machine (trust in pg_hba.conf), those commands can read and change "
        "everything the store records (a forged decision is still refused: it is not "
        "signed); give the store's role a password (scram-sha-256) or a certificate, or "
        "keep the network off"
    )


def _frontend(address: str, network: tuple[str, ...]) -> str:
    """What a step that keeps the network can do to the Temporal frontend its run's
    workflow lives on: Trestle's clients connect to it with no certificate or token, so
    nothing but the frontend's own authorizer tells them from a worker."""
    return (
        f"the run's Temporal frontend ({address}) takes clients without a certificate, and "
        f"the policy lets {', '.join(network)} keep the network: unless its authorizer "
        "refuses them, those commands can read the workflow's history and terminate, "
        "reset or flood the workflow (a forged record or decision is still refused: it "
        "carries no seal or signature); keep the network off for runs on Temporal"
    )


def _mcp_over_network(name: str, url: str, network: tuple[str, ...]) -> str:
    """What a step that keeps the network can do to a streamable HTTP MCP server the
    driver calls: the driver sends it no credentials, so the server cannot tell a
    command's call from the driver's, which the gate judged."""
    return (
        f"the MCP server {name!r} ({url}) is reached with no credentials, and the policy "
        f"lets {', '.join(network)} keep the network: those commands can call its tools "
        "themselves, destructive ones included, without the gate or a human; keep the "
        "network off, or have the server ask for a credential no step can read"
    )


COMMAND_TOOLS = ("run_command", "run_tests")  # an agent's tools that run commands


def _scripts_over_network(tools: list[str]) -> str:
    """What an agent's command that keeps the network can do unasked: confirm_commands
    reads the command line and what it runs as followed, not a script or program the
    model wrote (``sh x.sh``, ``make``), so only the sandbox's network kept a push or a
    publish there from happening."""
    return (
        f"the policy lets the agent's {' and '.join(tools)} keep the network: a command "
        "they run can push, publish or call any service from a script or program the "
        "model wrote (sh x.sh, make), which confirm_commands does not read, so it needs "
        "no human; keep the network off for a model's tools, or give its remotes "
        "credentials no step can read"
    )


def _model_over_network(url: str, network: tuple[str, ...]) -> str:
    """What a step that keeps the network can do to the model's server the run names:
    steps are given no API key, so only a server that asks one keeps them out."""
    return (
        f"the model's server ({url}) is reached over the network, and the policy lets "
        f"{', '.join(network)} keep the network: if it asks no key (a local server, a "
        "proxy without one), those commands can call the model themselves, at a cost "
        "the run's budget never counts; keep the network off, or give the server a key"
    )
