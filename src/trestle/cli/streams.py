"""Standard output that a closed reader cannot break.

``trestle run plan.yaml | head -1`` closes the pipe after the first line. Python
ignores SIGPIPE, so the next write raises ``BrokenPipeError`` wherever it happens: in
the middle of a drive that would leave the run half-recorded, or at exit, when the
interpreter flushes what is left. The run matters more than its printout: once the
reader is gone, the stream is pointed at ``/dev/null`` and the command goes on to its
end, recorded, with its exit code; only what it would have printed is lost.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, TextIO


class ClosedReaderSafe:
    """A text stream wrapper: writes after the reader closed the pipe are dropped.

    Everything but ``write``, ``writelines`` and ``flush`` is the wrapped stream's own,
    so consoles see the same terminal, encoding and descriptor.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.closed_reader = False

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._drop()
            return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._drop()

    def _drop(self) -> None:
        """From now on the descriptor writes to /dev/null: what is still buffered, and
        the interpreter's last flush at exit, then succeed without a reader."""
        self.closed_reader = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)
        with contextlib.suppress(BrokenPipeError, ValueError):
            self._stream.flush()  # the buffer's rest goes to /dev/null

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_standard_streams() -> None:
    """Make stdout and stderr survive a reader that goes away (see the module)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None or isinstance(stream, ClosedReaderSafe):
            continue
        try:
            stream.fileno()
        except (OSError, ValueError, AttributeError):  # not a real descriptor (tests)
            continue
        setattr(sys, name, ClosedReaderSafe(stream))
