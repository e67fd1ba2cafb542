"""A command's process as the driver holds it: its pid, its output as a stream, its exit.

asyncio's own subprocesses on Python 3.11 watch each child with a thread of its own
(``ThreadedChildWatcher``): for every command the event loop starts a thread and waits
until it runs, and on a busy machine that wait is the scheduler's. A width-32
fan-out's starts queued behind one another there, on the loop. Where Linux gives a
process file descriptor (``os.pidfd_open``, kernel 5.3), the loop itself is told of
the exit instead, as asyncio does from Python 3.12 on; elsewhere asyncio's own
subprocess is used.

Unlike asyncio's on 3.11, :meth:`Child.wait` returns once the process has exited, not
once every holder of its output pipe has closed it too: a killed group's leader is
reaped even while a process that left the group still holds the pipe.

A watched command started by ``vfork`` (one with no ``preexec``: every sandboxed
command) while another of the process's is starting or running is started on a thread
of a pool kept for it, not on the event loop's: ``vfork`` stops the thread that calls it
until the new process has called ``exec`` (about 1 ms a sandbox on the 2-core benchmark
machine, 2 ms when its cores are busy), and made on the loop, a wide fan-out's starts
waited on one another and the loop did nothing else meanwhile (60 ms of a width-32
fan-out's 360 there). A lone start is still made on the loop's thread: there is nothing
for it to overlap with, and the hand-off to a thread and back cost about 0.1 ms of CPU.
So is a start by ``fork`` (a ``preexec`` runs Python before the exec): made beside the
loop's own work, a width-32 fan-out of them took a quarter more of the driver's CPU.
Linux sends a process's parent-death signal (bubblewrap's ``--die-with-parent``, an
unconfined command's :func:`~trestle.execution.processes.die_with_parent`) when the
*thread* that started it ends, so the pool's threads never end while the process lives:
a pool is made once per process (a forked child makes its own) and never shut down.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from trestle.support.step_threads import StepThreads


class Child(Protocol):
    """A started command, run with its stdout and stderr on one pipe."""

    @property
    def pid(self) -> int: ...

    @property
    def stdout(self) -> asyncio.StreamReader | None: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int:
        """The exit code once the process has exited (minus the signal that killed it)."""
        ...

    def close(self) -> None:
        """Let go of the output pipe; a process still running is killed (its group),
        as asyncio's own transport kills it once closed. :meth:`wait` still tells of
        its end."""
        ...


async def spawn(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    preexec: Callable[[], None] | None = None,
    pass_fds: Sequence[int] = (),
) -> Child:
    """Start ``argv`` in a new session, stdin from ``/dev/null``, stdout and stderr
    together on a pipe; ``pass_fds`` stay open in it.

    Raises:
        OSError: it cannot be started (missing program, bad directory).
    """
    start = spawn_watched if _pidfds() else spawn_asyncio
    return await start(argv, cwd=cwd, env=env, preexec=preexec, pass_fds=pass_fds)


async def spawn_watched(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    preexec: Callable[[], None] | None = None,
    pass_fds: Sequence[int] = (),
) -> Child:
    """:func:`spawn` with the exit watched through a pidfd (Linux 5.3 and later)."""
    loop = asyncio.get_running_loop()

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            argv,
            bufsize=0,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,
            pass_fds=tuple(pass_fds),
        )

    popen = await _started(start, beside=preexec is None)
    try:
        child = _PidfdChild(loop, popen, os.pidfd_open(popen.pid))
    except BaseException:  # out of descriptors: a command nobody watches must not run
        _BUSY.leave()
        _let_go(popen)
        raise
    try:
        await child.connect()
    except BaseException:
        child.close()
        raise
    return child


class _Busy:
    """How many of this process's watched commands are starting or have not yet been
    seen to exit, and the pool that starts those made beside another (see the module's
    docstring); all made afresh in a forked child, which has neither the parent's
    commands nor its pool's threads (nor, maybe, the lock's holder)."""

    def __init__(self) -> None:
        self.forked()

    def forked(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._pool: StepThreads | None = None

    def enter(self) -> bool:
        """One more; whether it is the only one."""
        with self._lock:
            self._count += 1
            return self._count == 1

    def leave(self) -> None:
        with self._lock:
            self._count = max(0, self._count - 1)

    def pool(self) -> StepThreads:
        """The starter threads: daemon threads, never shut down. Not a
        ``ThreadPoolExecutor``, whose threads end when the main thread does, before the
        interpreter waits for the other threads: a command one of them started for a
        loop still running on another thread would be killed then by its parent-death
        signal."""
        with self._lock:
            if self._pool is None:
                self._pool = StepThreads(min(32, (os.cpu_count() or 1) + 4), "trestle-start")
            return self._pool


_BUSY = _Busy()
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_BUSY.forked)


async def _started(
    start: Callable[[], subprocess.Popen[bytes]], *, beside: bool
) -> subprocess.Popen[bytes]:
    """``start()``, on a starter thread when it may be made ``beside`` the loop's work
    and another command of the process is starting or running, else on the loop's
    thread, awaited; the command counted busy until its exit is seen
    (:meth:`_PidfdChild._reap`).

    A caller cancelled during a start on a starter thread gets its cancellation once the
    start is over, and what it started is killed: until then the start may still be
    using what the caller passes it (descriptors the caller closes once this returns,
    whose numbers another open could take), so the loop waits for it here, as it waited
    for every start when starts were made on it."""
    alone = _BUSY.enter()
    try:
        if alone or not beside:
            return start()
        future = _BUSY.pool().submit(start)
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            if not future.cancel():  # begun: over in a moment
                with contextlib.suppress(Exception):  # one that failed started nothing
                    _let_go(future.result())
            raise
    except BaseException:
        _BUSY.leave()
        raise


def _let_go(popen: subprocess.Popen[bytes]) -> None:
    """A command started for nobody: killed (its group), its pipe closed, reaped."""
    _kill(popen)
    if popen.stdout is not None:
        popen.stdout.close()
    popen.wait()


def _kill(popen: subprocess.Popen[bytes]) -> None:
    """Kill the command's whole group (its own session) if its leader still runs."""
    if popen.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, signal.SIGKILL)


async def spawn_asyncio(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    preexec: Callable[[], None] | None = None,
    pass_fds: Sequence[int] = (),
) -> Child:
    """:func:`spawn` by asyncio's own subprocess, where there are no pidfds."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=preexec,
        pass_fds=tuple(pass_fds),
    )
    return _AsyncioChild(proc)


@functools.cache
def _pidfds() -> bool:
    """Whether this kernel (and any seccomp filter on it) gives process descriptors."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


class _PidfdChild:
    """A child whose exit the loop learns from its pidfd becoming readable."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, popen: subprocess.Popen[bytes], pidfd: int
    ) -> None:
        self._loop = loop
        self._popen = popen
        self._pidfd: int | None = pidfd
        self._exited: asyncio.Future[int] = loop.create_future()
        self._transport: asyncio.BaseTransport | None = None
        self.stdout: asyncio.StreamReader | None = asyncio.StreamReader(loop=loop)
        loop.add_reader(pidfd, self._reap)

    async def connect(self) -> None:
        assert self._popen.stdout is not None and self.stdout is not None
        reader = self.stdout
        self._transport, _ = await self._loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader, loop=self._loop), self._popen.stdout
        )

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def wait(self) -> int:
        # shielded: a caller that stops waiting (a timeout) does not end the watch
        return await asyncio.shield(self._exited)

    def _reap(self) -> None:
        if self._pidfd is not None:  # its first sight of the exit
            _BUSY.leave()
        self._unwatch()
        code = self._popen.wait()  # it has exited: this only collects its status
        if not self._exited.done():
            self._exited.set_result(code)

    def _unwatch(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def close(self) -> None:
        # as asyncio's transport does, a command let go of while it runs is killed (an
        # error before its outcome was read); the watch stays until its exit arrives
        _kill(self._popen)
        if self._transport is not None:
            self._transport.close()
        elif self._popen.stdout is not None:
            self._popen.stdout.close()


class _AsyncioChild:
    """asyncio's own subprocess, where there are no pidfds."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def stdout(self) -> asyncio.StreamReader | None:
        return self._proc.stdout

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def wait(self) -> int:
        return await self._proc.wait()

    def close(self) -> None:
        # asyncio's transport closes the pipe once the process and the pipe have ended
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
