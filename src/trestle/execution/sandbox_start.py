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
"""

from __future__ import annotations

import asyncio
import os
from types import TracebackType

SANDBOX_STARTS = 3


class StartSignal:
    """One start's pipe: its read end (:attr:`fd`) given to bubblewrap, holding a byte.

    The write end is kept here until :meth:`close`.
    """

    def __init__(self) -> None:
        self.fd, self._write = os.pipe()
        os.write(self._write, b"x")
        os.set_blocking(self.fd, False)
        # what the start binds from the workspace by descriptor (see Sandbox.argv),
        # closed with the signal
        self.bound: list[int] = []

    def argv(self, argv: list[str]) -> list[str]:
        """bubblewrap's ``argv`` told to wait for the byte on :attr:`fd`, which the
        child must inherit (``pass_fds``), as it must each of :attr:`bound`: a command's
        start and an MCP stdio server's (:mod:`trestle.tools.mcp_stdio`) both pass them."""
        return [argv[0], "--block-fd", str(self.fd), *argv[1:]]

    def began(self) -> bool:
        """Whether bubblewrap took the byte: the sandbox was made and the command ran
        (or was about to)."""
        try:
            return not os.read(self.fd, 1)
        except BlockingIOError:  # empty, the write end still open: taken
            return True

    def close(self) -> None:
        for fd in (self.fd, self._write, *self.bound):
            if fd >= 0:
                os.close(fd)
        self.fd = self._write = -1
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


async def before_start(start: int) -> None:
    """Wait before start number ``start`` (0-based): a program removing its daemon's
    directory may not be done yet."""
    if start:
        await asyncio.sleep(0.05 * start)
