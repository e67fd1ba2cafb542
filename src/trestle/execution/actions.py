"""Doing a step's work: run a command, write a file, or call Python. All IO lives here.

Commands run in their own process group, so a timeout kills the whole tree (a shell
and whatever it started), not just the shell. The group's leader dies with the driver
where the OS allows (:func:`trestle.execution.processes.die_with_parent`; a sandbox's
bubblewrap arms that itself), and the caller learns its pid as soon as it runs, to
record it (see :mod:`trestle.execution.processes`).

A command's output is read as it comes, a chunk at a time, and only its head and tail
are held (:class:`OutputKeeper`): a step that prints a gigabyte costs the driver the
few kilobytes it keeps, not the gigabyte.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import contextvars
import functools
import inspect
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from trestle.core.errors import RunError
from trestle.core.events import ActionResult
from trestle.core.plan import Step
from trestle.execution.child import Child, spawn
from trestle.execution.outliving import Call
from trestle.execution.processes import die_with_parent
from trestle.execution.sandbox import Cell, Pinned, Sandbox
from trestle.execution.sandbox_start import SANDBOX_STARTS, StartSignal, before_start
from trestle.execution.watchdog import WATCHDOG
from trestle.execution.workspace_hold import held_shared
from trestle.formats.python_code import resolve_callable
from trestle.support.handback import hand_back, outcome_of
from trestle.support.step_threads import StepThreads
from trestle.trust.identity import ACCOUNTS_ENV, IDENTITY_ENV
from trestle.trust.signing import KEY_ENV
from trestle.trust.step_origin import end_python_step, python_step
from trestle.workspace.beneath import Refused, write_replacing

OUTPUT_LIMIT = 8_000  # characters kept of a command's output: head and tail
CHUNK = 64 * 1024  # bytes of a command's output read at a time
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL on timeout
T = TypeVar("T")


@dataclass(frozen=True)
class StepContext:
    """What a step's callable (and a callable check) is given."""

    run_id: str
    step_id: str
    attempt: int
    key: str  # idempotency key of this attempt: stable across crashes and resumes
    workspace: Path
    plan_dir: Path
    sandbox: Sandbox | None = None  # None: commands run unconfined (a library caller's choice)
    approved: bool = False  # a human approved this attempt's action
    pinned: Pinned = ()  # the approved bytes of the files its command names
    # the python: code as the run started (RunCreated.python_sources); None: unpinned
    python_pins: Mapping[str, str] | None = None
    # what the policy's sandbox.network and sandbox.git globs match its commands by; None:
    # its id. A step a model named is matched by no glob but "*" (Attempts._context).
    policy_name: str | None = None

    @property
    def cell(self) -> Cell | None:
        """Where this step's commands run (its id is what the network policy names)."""
        if self.sandbox is None:
            return None
        name = self.step_id if self.policy_name is None else self.policy_name
        return Cell(self.sandbox, self.workspace, name, self.approved, self.pinned)


def cap_output(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """Keep the head and tail: errors are usually at the end, context at the start."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return _cut(text[:half], len(text) - 2 * half, text[len(text) - half :])


def _cut(head: str, cut: int, tail: str) -> str:
    return f"{head}\n… [{cut} characters cut] …\n{tail}"


class OutputKeeper:
    """A command's output as it arrives, holding only what :func:`cap_output` keeps of
    it: its text is ``cap_output(whole output, limit)``, but at most about ``3 * limit``
    characters and one chunk are ever held, whatever the command prints.

    Bytes are decoded incrementally, so a character split between two chunks is whole.
    """

    def __init__(self, limit: int = OUTPUT_LIMIT) -> None:
        self._half = limit // 2
        self._keep = limit - self._half  # of what follows the head: all of it while it fits
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._head = ""
        self._rest: list[str] = []
        self._rest_len = 0
        self._total = 0
        self._flushed = False

    def feed(self, data: bytes) -> None:
        """Take the next chunk of output."""
        self._add(self._decoder.decode(data))

    def text(self) -> str:
        """All of the output if it fits in the limit, else its head and tail with the
        number of characters cut between them."""
        if not self._flushed:
            self._flushed = True
            self._add(self._decoder.decode(b"", final=True))
        rest = "".join(self._rest)
        if self._total <= self._half + self._keep:
            return self._head + rest
        return _cut(self._head, self._total - 2 * self._half, rest[len(rest) - self._half :])

    def _add(self, text: str) -> None:
        self._total += len(text)
        if len(self._head) < self._half:
            room = self._half - len(self._head)
            self._head += text[:room]
            text = text[room:]
        if not text:
            return
        self._rest.append(text)
        self._rest_len += len(text)
        if self._rest_len > 2 * self._keep:  # trim now and then, not on every chunk
            rest = "".join(self._rest)
            self._rest = [rest[len(rest) - self._keep :]]
            self._rest_len = self._keep


def step_env(ctx: StepContext, extra: dict[str, str]) -> dict[str, str]:
    """The step's environment: this process's (cut to the sandbox's allow-list when
    there is one), the step's own ``env:`` and Trestle's variables for it."""
    env = dict(os.environ) if ctx.cell is None else ctx.cell.environ()
    env.pop(KEY_ENV, None)  # where the approval key lives is none of a step's business
    env.pop(IDENTITY_ENV, None)  # nor where an approver's own key does
    env.pop(ACCOUNTS_ENV, None)  # nor where the dashboard's people's keys do
    env.update(extra)
    env.update(
        TRESTLE_RUN_ID=ctx.run_id,
        TRESTLE_STEP_ID=ctx.step_id,
        TRESTLE_ATTEMPT=str(ctx.attempt),
        TRESTLE_IDEMPOTENCY_KEY=ctx.key,
        TRESTLE_WORKSPACE=str(ctx.workspace),
    )
    return env


Spawned = Callable[[int], None]  # told the pid (and group id) of a command just started


async def run_shell(
    command: str,
    *,
    cwd: Path,
    env: dict[str, str],
    timeout: float | None,
    on_spawn: Spawned | None = None,
    cell: Cell | None = None,
    limit: int = OUTPUT_LIMIT,
) -> ActionResult:
    """Run ``command`` with ``sh -c`` in a new session, in ``cell``'s sandbox if given;
    kill its group on timeout or cancellation. ``on_spawn`` is told the leader's pid
    once it runs. Its output (stdout and stderr together) is capped at ``limit``
    characters as :func:`cap_output` caps it. A command of a run holds its workspace
    shared while it runs: never while another run's approved command runs there (see
    :mod:`trestle.execution.workspace_hold`)."""
    if cell is None:
        return await _run_shell(command, cwd, env, timeout, on_spawn, cell, limit)
    async with held_shared(cell.workspace):
        return await _run_shell(command, cwd, env, timeout, on_spawn, cell, limit)


async def _run_shell(
    command: str,
    cwd: Path,
    env: dict[str, str],
    timeout: float | None,
    on_spawn: Spawned | None,
    cell: Cell | None,
    limit: int,
) -> ActionResult:
    if cell is None or not cell.sandbox.confines:
        argv = ["/bin/sh", "-c", command] if cell is None else cell.argv(command, cwd)
        return await _run(
            argv,
            cwd=cwd,
            env=env,
            timeout=timeout,
            on_spawn=on_spawn,
            limit=limit,
            preexec=die_with_parent(),
        )
    # a sandbox left behind by a dead driver is killed by the watchdog (see there)
    with WATCHDOG.guard(env) as guarded:
        for start in range(SANDBOX_STARTS):
            await before_start(start)
            # what is bound from the workspace, bound by descriptor (see Sandbox.argv)
            bound: list[int] = []
            with StartSignal() as held:
                try:
                    argv = held.argv(cell.argv(command, cwd, held_open=bound))
                    # no preexec_fn: bubblewrap arms the parent's death signal itself
                    # (--die-with-parent), and the watchdog, told of this sandbox before
                    # it starts, kills one the driver's death caught before it did.
                    # Without a preexec_fn the child is started by vfork, which does not
                    # copy the driver's page tables on the event loop: a fork each made
                    # a wide fan-out's starts wait on one another
                    result = await _run(
                        argv,
                        cwd=cwd,
                        env=guarded,
                        timeout=timeout,
                        on_spawn=_started(held, on_spawn),
                        limit=limit,
                        pass_fds=(*held.passed, *bound),
                    )
                finally:
                    for fd in bound:
                        os.close(fd)
                if result.status != "failed" or held.began():
                    return result
        # every start failed before anything ran (bubblewrap's message is the output):
        # said as such, not as the command's own failure (see execution/sandbox_start.py)
        why = f"its sandbox could not start ({SANDBOX_STARTS} tries); nothing of it ran"
        return result.model_copy(update={"error": why})


def _started(held: StartSignal, on_spawn: Spawned | None) -> Spawned:
    """``on_spawn``, once the driver let go of what only bubblewrap's start needed (its
    options' descriptor, which the command never holds either)."""

    def spawned(pid: int) -> None:
        held.started()
        if on_spawn is not None:
            on_spawn(pid)

    return spawned


async def _run(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    timeout: float | None,
    on_spawn: Spawned | None,
    limit: int,
    preexec: Callable[[], None] | None = None,
    pass_fds: tuple[int, ...] = (),
) -> ActionResult:
    started = time.monotonic()
    try:
        proc = await spawn(argv, cwd=cwd, env=env, preexec=preexec, pass_fds=pass_fds)
    except OSError as exc:
        return ActionResult(status="error", error=f"cannot start: {exc}")
    try:
        return await _outcome(proc, timeout, on_spawn, limit, started)
    finally:
        proc.close()


async def _outcome(
    proc: Child, timeout: float | None, on_spawn: Spawned | None, limit: int, started: float
) -> ActionResult:
    kept = OutputKeeper(limit)
    try:
        if on_spawn is not None:
            on_spawn(proc.pid)
        await asyncio.wait_for(_read_until_exit(proc, kept), timeout)
    except TimeoutError:
        await _kill_group(proc)
        await _drain(proc, kept)
        return ActionResult(
            status="timeout",
            exit_code=proc.returncode,
            output=kept.text(),
            error=f"timed out after {timeout:g}s; killed its process group",
            duration=time.monotonic() - started,
        )
    except asyncio.CancelledError:
        await _kill_group(proc)
        raise
    code = proc.returncode
    return ActionResult(
        status="ok" if code == 0 else "failed",
        exit_code=code,
        output=kept.text(),
        error=None if code == 0 else f"exit code {code}",
        duration=time.monotonic() - started,
    )


async def _kill_group(proc: Child) -> None:
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(proc.wait(), wait)
            # the leader is gone; take down anything left in its group too
            os.killpg(proc.pid, signal.SIGKILL)
            return
        except ProcessLookupError:
            return
        except TimeoutError:
            continue


async def _read_until_exit(proc: Child, kept: OutputKeeper) -> None:
    assert proc.stdout is not None
    await _read_into(proc.stdout, kept)
    await proc.wait()


async def _read_into(stream: asyncio.StreamReader, kept: OutputKeeper) -> None:
    # a chunk at a time: what was read before a timeout stays read, and is kept
    while chunk := await stream.read(CHUNK):
        kept.feed(chunk)


async def _drain(proc: Child, kept: OutputKeeper) -> None:
    """Keep what the killed group left in the pipe; a process that escaped the group
    may hold it open, so stop looking after a second."""
    if proc.stdout is None:
        return
    try:
        await asyncio.wait_for(_read_into(proc.stdout, kept), 1.0)
    except (TimeoutError, ValueError):
        return


def jailed(workspace: Path, relative: str, *, follow_links: bool = True) -> Path:
    """Resolve ``relative`` inside ``workspace``; refuse paths that lead outside it.

    Writes follow symlinks (a link must not carry a write out of the workspace).
    Checks only read, so they jail the path as written: a venv's ``bin/python`` is a
    link to an interpreter elsewhere, and asking whether it exists is harmless.
    """
    return jailed_in(workspace.resolve(), relative, follow_links=follow_links)


def jailed_in(root: Path, relative: str, *, follow_links: bool = True) -> Path:
    """:func:`jailed` for a workspace whose real path ``root`` is known."""
    if follow_links:
        target = (root / relative).resolve()
    else:
        target = Path(os.path.normpath(root / relative))
    if target != root and root not in target.parents:
        raise ValueError(f"path {relative!r} leads outside the workspace {root}")
    return target


def _write_file(
    workspace: Path, relative: str, content: str, kept: tuple[Path, ...] = (), links: bool = True
) -> ActionResult:
    started = time.monotonic()
    try:
        root = workspace.resolve()
        jailed_in(root, relative)  # the usual refusal for a path that climbs out
        # opened beneath the workspace, no link followed out of it and none replaced
        # by name: the step's commands write the workspace, and a link they planted on
        # the way (or at a temporary file's name) led this unconfined write anywhere
        # and not onto a plan file held from commands (through a link a step planted)
        # and, for a write a human approved, through no link at all: one a step pointed
        # elsewhere while the card waited carried the approved write there
        write_replacing(root, relative, content.encode("utf-8"), kept, links=links)  # atomic
    except Refused as exc:
        return ActionResult(status="error", error=f"cannot write {relative!r}: {exc}")
    except (OSError, ValueError) as exc:
        return ActionResult(status="error", error=str(exc))
    return ActionResult(
        status="ok",
        output=f"wrote {len(content)} characters to {relative}",
        duration=time.monotonic() - started,
    )


async def in_thread(pool: StepThreads | None, fn: Callable[..., T], *args: Any) -> T:
    """Run blocking work on ``pool``, the drive's :class:`StepThreads` (sized to the
    plan's parallelism; asyncio's default pool, used without one, has only
    ``cpu_count + 4`` threads).

    The outcome comes back to the loop by ``call_soon_threadsafe`` from the pool's
    thread, not through ``run_in_executor``'s asyncio future chained to a concurrent
    one: every ``python:`` step crosses once. As with ``run_in_executor``, a cancelled
    caller withdraws work not yet begun, and work the pool drops unbegun (shut down
    with ``cancel_futures``) cancels its caller."""
    loop = asyncio.get_running_loop()
    if pool is None:
        return await loop.run_in_executor(None, fn, *args)
    waiter: asyncio.Future[T] = loop.create_future()

    def work() -> None:
        if waiter.cancelled():  # its caller gave up before it began (a flag once set)
            return
        hand_back(loop, waiter, *outcome_of(fn, *args))

    def dropped() -> None:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(waiter.cancel)

    pool.start(work, dropped)
    return await waiter


def _callable(ref: str, ctx: StepContext) -> Callable[..., Any]:
    pins = None if ctx.python_pins is None else tuple(sorted(ctx.python_pins.items()))
    try:
        return _resolved(ref, ctx.plan_dir, ctx.workspace, pins)
    except RunError as exc:  # the step in the message, not in the cache's key
        raise RunError(f"step {ctx.step_id!r}: {exc}") from None


# keyed by what decides the code, not by step: a chain of steps calling one function
# resolves it once (a refusal is never cached, so a changed file is looked at again)
@functools.lru_cache(maxsize=256)
def _resolved(
    ref: str, plan_dir: Path, workspace: Path, pins: tuple[tuple[str, str], ...] | None
) -> Callable[..., Any]:
    pinned = None if pins is None else dict(pins)
    fn: Callable[..., Any] = resolve_callable(ref, plan_dir, workspace, pins=pinned)
    return fn


# what a sync callable's timeout leaves: said with the attempt's error, where a human
# deciding on a retry reads it
ABANDONED = (
    "the callable cannot be stopped: it runs on in its thread until it returns or its "
    "process exits, and the step's next attempt in that process waits for it to return "
    "(one on another Temporal worker would not)"
)
# what a timeout spent waiting for that says (trestle.execution.outliving)
STILL_RUNNING = "an earlier attempt's call of it still runs, and it is not called again beside it"


async def call_python(
    ref: str, ctx: StepContext, timeout: float | None, pool: StepThreads | None = None
) -> ActionResult:
    """Call ``module:function`` with the context; returning ``False`` means failure.

    Sync callables run in a worker thread so they cannot stall other steps. Python
    cannot kill a thread: on timeout the attempt fails and the thread is abandoned,
    still running, which the attempt's error says (a coroutine is cancelled). The
    step's next call of it waits for it to return (:mod:`trestle.execution.outliving`).
    """
    started = time.monotonic()
    # the call runs in this (the driver's) process: mark it, so that the decision API
    # refuses to approve from inside it (see trestle.trust.step_origin)
    marked = python_step(ctx.step_id)
    limit = None if timeout is None else asyncio.timeout(timeout)
    call: Call | None = None
    try:
        fn = _callable(ref, ctx)
        if inspect.iscoroutinefunction(fn):
            work = fn(ctx)
        else:
            call = Call(fn, (ctx.run_id, ctx.step_id, ref))
            work = _in_thread_once(call, ctx, pool)
        if limit is None:
            result = await work
        else:
            async with limit:
                result = await work
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # SystemExit, KeyboardInterrupt from user code: a failure
        # a TimeoutError the callable raised itself (a socket's, say) is its failure,
        # not the step's timeout
        timed_out = limit is not None and isinstance(exc, TimeoutError) and limit.expired()
        return ActionResult(
            status="timeout" if timed_out else "error",
            error=f"timed out after {timeout:g}s; {_left_by_timeout(call)}"
            if timed_out
            else cap_output(f"{type(exc).__name__}: {_text_of(exc)}"),
            duration=time.monotonic() - started,
        )
    finally:
        end_python_step(marked)
    ok = result is not False
    # by identity: a value's own == may raise or answer an array (numpy's, pandas')
    said = result is None or result is True or result is False
    return ActionResult(
        status="ok" if ok else "failed",
        output=cap_output("" if said else _text_of(result)),
        error=None if ok else f"{ref} returned False",
        duration=time.monotonic() - started,
    )


async def _in_thread_once(call: Call, ctx: StepContext, pool: StepThreads | None) -> Any:
    """``call`` on the step threads, after any earlier call under its key that this
    process left running has returned: never beside it."""
    if call.follows_one_running():
        await call.after_earlier()
    try:
        return await in_thread(pool, contextvars.copy_context().run, call, ctx)
    finally:  # timed out or cancelled: remembered until it returns
        call.ended()


def _left_by_timeout(call: Call | None) -> str:
    """What a timeout left, said with it: ``call`` is a sync callable's (None: a
    coroutine's)."""
    if call is None:
        return "the coroutine was cancelled"
    return STILL_RUNNING if call.gave_up_waiting else ABANDONED


def _text_of(value: object) -> str:
    """``str(value)``; a callable's own object, or exception, may fail to print."""
    try:
        return str(value)
    except Exception as exc:  # whatever it raised, the attempt goes on
        return f"<a {type(value).__name__} that cannot be printed: {type(exc).__name__}>"


async def perform(
    step: Step, ctx: StepContext, pool: StepThreads | None = None, on_spawn: Spawned | None = None
) -> ActionResult:
    """Run the step's action once; blocking work goes to ``pool``; ``on_spawn`` is told
    a command's pid."""
    if step.run is not None:
        env = step_env(ctx, step.env)
        return await run_shell(
            step.run,
            cwd=ctx.workspace,
            env=env,
            timeout=step.timeout,
            on_spawn=on_spawn,
            cell=ctx.cell,
        )
    if step.write is not None:
        async with held_shared(ctx.workspace):  # never beside another run's approved command
            return await in_thread(
                pool,
                _write_file,
                ctx.workspace,
                step.write.path,
                step.write.content,
                ctx.sandbox.held_files(ctx.workspace.resolve()) if ctx.sandbox is not None else (),
                not ctx.approved,
            )
    if step.agent is not None:  # the agent runtime performs these; see trestle.agent
        return ActionResult(
            status="error",
            error=f"step {step.id!r} is an agent step: it needs the agent runtime "
            "(trestle agent), not the plain plan engine",
        )
    assert step.python is not None
    return await call_python(step.python, ctx, step.timeout, pool)
