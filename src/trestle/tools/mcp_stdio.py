"""The driver's side of a stdio MCP server: its process, and its standard output read
as lines of at most a stated length.

The SDK's own stdio client reads a server's output with no bound on a line, joining
each chunk to what came before (a cost that grows with the square of the line), so a
hostile server sending one endless line held the driver's memory and CPU. Here the
output is read into one buffer, searched only where new bytes landed, and a line past
``limit`` bytes ends the server: ``on_overflow`` is told why, and the session sees
its connection close, as when a server exits (what was already recorded stays).

The session is handed the same streams the SDK's client hands it; the server is
stopped as the SDK stops one (its stdin closed, then its process group ended). Its
stderr is kept by its end only (:class:`StderrTail`), in memory, and read up to
:data:`STDERR_VOLUME` bytes a start: reading costs the driver CPU however little it
keeps (a server writing its stderr as fast as it could held a core of the driver at
0.9 CPU seconds a second while the agent waited), so past it the server is ended and
``on_flood`` told why, as past a line's limit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import anyio
from anyio.abc import Process


class StderrTail:
    """The end of what a server wrote on stderr, across its starts: the last
    :data:`size` bytes only, in memory. A file kept it whole before, so a server
    writing without end filled the driver's disk (and the store's, where they share
    one)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._kept = b""

    def add(self, chunk: bytes) -> None:
        self._kept = (self._kept + chunk)[-self.size :]

    def text(self) -> str:
        return self._kept.decode("utf-8", "replace")


EXIT_GRACE = 2.0  # seconds a server may take to exit once its stdin is closed
TERM_GRACE = 2.0  # then after SIGTERM to its group, before SIGKILL
READ_SIZE = 1 << 16
# the most of a server's stderr read in one start (a chatty server's log, many times
# over); the driver's CPU spent on a flood is bounded by it
STDERR_VOLUME = 64 << 20


@contextlib.asynccontextmanager
async def stdio_streams(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    cwd: str,
    errlog: StderrTail,
    limit: int,
    on_overflow: Callable[[int], None],
    on_flood: Callable[[int], None],
    on_end: Callable[[], None],
    pass_fds: Sequence[int] = (),
    at_once: signal.Signals = signal.SIGKILL,
) -> AsyncIterator[tuple[Any, Any]]:
    """The (read, write) streams of a session with the server ``argv`` starts, handed
    the descriptors ``pass_fds`` (its sandbox's start signal and what it binds);
    ``on_flood`` is told :data:`STDERR_VOLUME` when its stderr passed it and it was
    ended. ``on_end`` is told when its output ends (it exited, or was ended), so that
    a server gone between calls is seen gone before the next call is sent to it.
    ``at_once`` ends its group there and past a line's limit (SIGTERM for a
    server under a keeper, which then ends everything below it)."""
    import mcp_types as types
    from mcp.shared.message import SessionMessage

    process = await anyio.open_process(
        list(argv),
        env=env,
        cwd=cwd,
        stderr=subprocess.PIPE,
        start_new_session=True,
        pass_fds=pass_fds,
    )
    incoming_send, incoming = anyio.create_memory_object_stream[Any](0)
    outgoing, outgoing_receive = anyio.create_memory_object_stream[Any](0)

    def parsed(line: bytes) -> Any:
        try:
            message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
        except ValueError as exc:  # handed on, as the SDK's client does
            return exc
        return SessionMessage(message)

    async def read() -> None:
        try:
            await read_lines()
        finally:
            on_end()

    async def read_lines() -> None:
        assert process.stdout is not None
        buffer = bytearray()
        async with incoming_send:
            with contextlib.suppress(
                anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError, OSError
            ):
                while True:
                    chunk = await process.stdout.receive(READ_SIZE)
                    start = len(buffer)
                    buffer += chunk
                    taken = 0
                    while (end := buffer.find(b"\n", start)) >= 0 and end - taken <= limit:
                        await incoming_send.send(parsed(bytes(buffer[taken:end])))
                        taken = start = end + 1
                    # what is left is a line begun, or one past the limit, ended or not
                    del buffer[:taken]
                    if len(buffer) > limit:
                        on_overflow(limit)
                        _signal_group(process, at_once)
                        return

    stderr_read = anyio.Event()

    async def keep_stderr() -> None:
        assert process.stderr is not None
        read = 0
        try:
            with contextlib.suppress(
                anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError, OSError
            ):
                while read <= STDERR_VOLUME:
                    chunk = await process.stderr.receive(READ_SIZE)
                    errlog.add(chunk)
                    read += len(chunk)
                # no further: what it writes now fills the pipe, and nothing reads it
                on_flood(STDERR_VOLUME)
                _signal_group(process, at_once)
        finally:
            stderr_read.set()

    async def write() -> None:
        assert process.stdin is not None
        try:
            async with outgoing_receive:
                async for message in outgoing_receive:
                    text = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    await process.stdin.send((text + "\n").encode())
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await incoming_send.aclose()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(read)
        tasks.start_soon(keep_stderr)
        tasks.start_soon(write)
        try:
            yield incoming, outgoing
        finally:
            with anyio.CancelScope(shield=True):
                incoming.close()
                outgoing.close()
                await _stop(process)
                # what it said last, which its failure quotes (a descendant holding the
                # pipe open is not waited for long)
                with anyio.move_on_after(EXIT_GRACE):
                    await stderr_read.wait()
                _close_transport(process)
            tasks.cancel_scope.cancel()


async def _stop(process: Process) -> None:
    """Close the server's stdin, give it :data:`EXIT_GRACE` to exit, then end its
    process group (SIGTERM, then SIGKILL)."""
    assert process.stdin is not None and process.stdout is not None
    with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        await process.stdin.aclose()
    for sent, grace in ((None, EXIT_GRACE), (signal.SIGTERM, TERM_GRACE), (signal.SIGKILL, 2.0)):
        if sent is not None:
            _signal_group(process, sent)
        with anyio.move_on_after(grace):
            while process.returncode is None:
                await anyio.sleep(0.01)
        if process.returncode is not None:
            break
    with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        await process.stdout.aclose()


def _close_transport(process: Process) -> None:
    """Close the asyncio transport under ``process``, and every pipe it holds, while its
    loop runs. Left to the collector (anyio's ``Process`` never closes it), it was closed
    after the loop was: a pipe still open then (stderr, no longer read past
    :data:`STDERR_VOLUME`, or held by a descendant) raised "Event loop is closed", which
    Python could only print on the driver's stderr. Closing it also ends the server if
    it is still running."""
    transport = getattr(process, "_transport", None)  # anyio's asyncio backend keeps it here
    if transport is not None:
        transport.close()


def _signal_group(process: Process, sent: signal.Signals) -> None:
    """``sent`` to the server's process group (it leads one of its own)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sent)
