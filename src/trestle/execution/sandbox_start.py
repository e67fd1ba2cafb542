"""Whether a sandbox began its command, so that one that could not start is started
again and one that began never is.

bubblewrap runs nothing of a command when it cannot make a mount's point, as when a
host socket the driver saw in ``/proc/net/unix`` went away, directory and all, before
the start (another program's short-lived daemon). Such a start is made again (up to
:data:`SANDBOX_STARTS` times, the sandbox's arguments worked out afresh), by
``run_shell`` for commands and by the MCP client for a stdio server.

bubblewrap itself tells whether it began: given a pipe holding one byte
(``--block-fd``), it takes the byte once the sandbox is made, and closes the pipe
before the command runs. A byte left means nothing ran. The command never holds the
pipe, so it can neither take the byte nor put one back (a byte its own shell wrote,
a command read back through ``/proc/self/fd`` and was run three times).

bubblewrap's options (every mount, one for each ``sandbox.read`` entry and each host
socket covered) are handed to it through a descriptor (``--args``), not on its command
line: the kernel refuses an exec whose arguments pass a quarter of the stack's limit
(2 MiB), and 400 ``sandbox.read`` entries of deep paths made every start fail
(``Argument list too long``). Only the start signal and the command stay on the command
line. bubblewrap reads the descriptor whole and closes it before anything runs, so the
command never holds it; the driver closes its own once the process is started
(:meth:`StartSignal.started`). The environment stays bubblewrap's own, not ``--setenv``
options: bubblewrap starts the command with it by ``execve``, under the same limit
either way (a plan's variables past it are refused when it is loaded:
:mod:`trestle.formats.exec_limits`), and the watchdog and the harnesses find a sandbox
by the ``TRESTLE_CELL_ID`` in it.
"""

from __future__ import annotations

import asyncio
import os
from types import TracebackType

# A start fails when what it covers went away after it was worked out (a host daemon's
# socket, its directory removed); one where daemons come and go often (3 tries met three
# in a row: a suite's tests each making and removing one) gets two more, 0.5 s in all
SANDBOX_STARTS = 5


class StartSignal:
    """One start's pipe: its read end (:attr:`fd`) given to bubblewrap, holding a byte;
    and the descriptor bubblewrap reads its options from (:attr:`options`).

    The write end is kept here until :meth:`close`.
    """

    def __init__(self) -> None:
        self.fd, self._write = os.pipe()
        os.write(self._write, b"x")
        os.set_blocking(self.fd, False)
        # what the start binds from the workspace by descriptor (see Sandbox.argv),
        # closed with the signal
        self.bound: list[int] = []
        self.options = -1  # bubblewrap's options, once argv has written them

    def argv(self, argv: list[str]) -> list[str]:
        """bubblewrap's ``argv`` told to wait for the byte on :attr:`fd` and to read its
        options from :attr:`options`, which the child must inherit (``pass_fds``), as
        it must each of :attr:`bound` (:attr:`passed` names them all): a command's start
        and an MCP stdio server's (:mod:`trestle.tools.mcp_stdio`) both pass them.

        ``argv`` is ``[bwrap, *options, "--", *command]``, as :meth:`Sandbox.argv`
        makes it (no option or path of it is ``--``: its paths are absolute)."""
        end = argv.index("--")
        if self.options >= 0:
            os.close(self.options)
        self.options = _written(argv[1:end])
        return [argv[0], "--block-fd", str(self.fd), "--args", str(self.options), *argv[end:]]

    @property
    def passed(self) -> tuple[int, ...]:
        """The descriptors bubblewrap must inherit: the signal, its options (once
        :meth:`argv` wrote them) and what it binds."""
        options = (self.options,) if self.options >= 0 else ()
        return (self.fd, *options, *self.bound)

    def started(self) -> None:
        """The process is started, holding its own copy of the options: the driver's
        is let go of (bubblewrap closes the copy once read)."""
        if self.options >= 0:
            os.close(self.options)
            self.options = -1

    def began(self) -> bool:
        """Whether bubblewrap took the byte: the sandbox was made and the command ran
        (or was about to)."""
        try:
            return not os.read(self.fd, 1)
        except BlockingIOError:  # empty, the write end still open: taken
            return True

    def close(self) -> None:
        for fd in (self.fd, self._write, self.options, *self.bound):
            if fd >= 0:
                os.close(fd)
        self.fd = self._write = self.options = -1
        self.bound = []

    def __enter__(self) -> StartSignal:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def _written(options: list[str]) -> int:
    """A descriptor holding ``options`` as ``--args`` reads them (each ended by a NUL),
    at its start: an anonymous file in memory (a pipe would hold 64 KiB only, and
    block the driver before bubblewrap read a byte)."""
    fd = os.memfd_create("trestle-bwrap-options", os.MFD_CLOEXEC)
    try:
        data = memoryview(b"".join(os.fsencode(option) + b"\0" for option in options))
        while data:
            data = data[os.write(fd, data) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


async def before_start(start: int) -> None:
    """Wait before start number ``start`` (0-based): a program removing its daemon's
    directory may not be done yet."""
    if start:
        await asyncio.sleep(0.05 * start)
