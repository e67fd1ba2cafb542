"""Doing a step's work: run a command, write a file, or call Python. All IO lives here.

Commands run in their own process group, so a timeout kills the whole tree (a shell
and whatever it started), not just the shell. The group's leader dies with the driver
where the OS allows (:func:`trestle.processes.die_with_parent`), and the caller learns
its pid as soon as it runs, to record it (see :mod:`trestle.processes`).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from trestle.core.events import ActionResult
from trestle.core.plan import Step
from trestle.planfile import resolve_callable
from trestle.processes import die_with_parent
from trestle.sandbox import Cell, Sandbox
from trestle.signing import KEY_ENV
from trestle.step_origin import end_python_step, python_step
from trestle.watchdog import WATCHDOG

OUTPUT_LIMIT = 8_000  # characters kept of a command's output: head and tail
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

    @property
    def cell(self) -> Cell | None:
        """Where this step's commands run (its id is what the network policy names)."""
        return None if self.sandbox is None else Cell(self.sandbox, self.workspace, self.step_id)


def cap_output(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """Keep the head and tail: errors are usually at the end, context at the start."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n… [{len(text) - limit} characters cut] …\n{text[-half:]}"


def step_env(ctx: StepContext, extra: dict[str, str]) -> dict[str, str]:
    """The step's environment: this process's (cut to the sandbox's allow-list when
    there is one), the step's own ``env:`` and Trestle's variables for it."""
    env = dict(os.environ) if ctx.cell is None else ctx.cell.environ()
    env.pop(KEY_ENV, None)  # where the approval key lives is none of a step's business
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
) -> ActionResult:
    """Run ``command`` with ``sh -c`` in a new session, in ``cell``'s sandbox if given;
    kill its group on timeout or cancellation. ``on_spawn`` is told the leader's pid
    once it runs."""
    if cell is None or not cell.sandbox.confines:
        argv = ["/bin/sh", "-c", command] if cell is None else cell.argv(command, cwd)
        return await _run(argv, cwd=cwd, env=env, timeout=timeout, on_spawn=on_spawn)
    # a sandbox left behind by a dead driver is killed by the watchdog (see there)
    with WATCHDOG.guard(env) as guarded:
        argv = cell.argv(command, cwd)
        return await _run(argv, cwd=cwd, env=guarded, timeout=timeout, on_spawn=on_spawn)


async def _run(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    timeout: float | None,
    on_spawn: Spawned | None,
) -> ActionResult:
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
    except OSError as exc:
        return ActionResult(status="error", error=f"cannot start: {exc}")
    try:
        if on_spawn is not None:
            on_spawn(proc.pid)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        await _kill_group(proc)
        partial = await _drain(proc)
        return ActionResult(
            status="timeout",
            exit_code=proc.returncode,
            output=cap_output(partial),
            error=f"timed out after {timeout:g}s; killed its process group",
            duration=time.monotonic() - started,
        )
    except asyncio.CancelledError:
        await _kill_group(proc)
        raise
    text = out.decode("utf-8", errors="replace")
    code = proc.returncode
    return ActionResult(
        status="ok" if code == 0 else "failed",
        exit_code=code,
        output=cap_output(text),
        error=None if code == 0 else f"exit code {code}",
        duration=time.monotonic() - started,
    )


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
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


async def _drain(proc: asyncio.subprocess.Process) -> str:
    if proc.stdout is None:
        return ""
    try:
        data = await asyncio.wait_for(proc.stdout.read(), 1.0)
    except (TimeoutError, ValueError):
        return ""
    return data.decode("utf-8", errors="replace")


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


def _write_file(workspace: Path, relative: str, content: str) -> ActionResult:
    started = time.monotonic()
    try:
        target = jailed(workspace, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.trestle-tmp")
        tmp.write_text(content, encoding="utf-8")
        os.replace(tmp, target)  # atomic: readers never see half a file
    except (OSError, ValueError) as exc:
        return ActionResult(status="error", error=str(exc))
    return ActionResult(
        status="ok",
        output=f"wrote {len(content)} characters to {relative}",
        duration=time.monotonic() - started,
    )


async def in_thread(pool: Executor | None, fn: Callable[..., T], *args: Any) -> T:
    """Run blocking work in ``pool`` (the engine sizes it to the plan's parallelism;
    asyncio's default pool has only ``cpu_count + 4`` threads)."""
    return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)


@functools.lru_cache(maxsize=256)
def _callable(ref: str, plan_dir: Path, workspace: Path) -> Callable[..., Any]:
    fn: Callable[..., Any] = resolve_callable(ref, plan_dir, workspace)
    return fn


async def call_python(
    ref: str, ctx: StepContext, timeout: float | None, pool: Executor | None = None
) -> ActionResult:
    """Call ``module:function`` with the context; returning ``False`` means failure.

    Sync callables run in a worker thread so they cannot stall other steps. Python
    cannot kill a thread: on timeout the attempt fails and the thread is abandoned.
    """
    started = time.monotonic()
    # the call runs in this (the driver's) process: mark it, so that the decision API
    # refuses to approve from inside it (see trestle.step_origin)
    marked = python_step(ctx.step_id)
    try:
        fn = _callable(ref, ctx.plan_dir, ctx.workspace)
        if inspect.iscoroutinefunction(fn):
            result = await asyncio.wait_for(fn(ctx), timeout)
        else:
            context = contextvars.copy_context()
            result = await asyncio.wait_for(in_thread(pool, context.run, fn, ctx), timeout)
    except TimeoutError:
        return ActionResult(
            status="timeout",
            error=f"timed out after {timeout:g}s",
            duration=time.monotonic() - started,
        )
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # SystemExit, KeyboardInterrupt from user code: a failure
        return ActionResult(
            status="error",
            error=f"{type(exc).__name__}: {exc}",
            duration=time.monotonic() - started,
        )
    finally:
        end_python_step(marked)
    ok = result is not False
    return ActionResult(
        status="ok" if ok else "failed",
        output=cap_output("" if result in (None, True, False) else str(result)),
        error=None if ok else f"{ref} returned False",
        duration=time.monotonic() - started,
    )


async def perform(
    step: Step, ctx: StepContext, pool: Executor | None = None, on_spawn: Spawned | None = None
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
        return await in_thread(
            pool, _write_file, ctx.workspace, step.write.path, step.write.content
        )
    if step.agent is not None:  # the agent runtime performs these; see trestle.agent
        return ActionResult(
            status="error",
            error=f"step {step.id!r} is an agent step: it needs the agent runtime "
            "(trestle agent), not the plain plan engine",
        )
    assert step.python is not None
    return await call_python(step.python, ctx, step.timeout, pool)
