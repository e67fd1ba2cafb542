"""Handing the interpreter's lock between threads more often, for a while.

One thread runs Python at a time; another that wants to (back from a system call that
let the lock go) waits until the holder gives it up, which a thread busy in Python does
only when the switch interval (5 ms by default) has passed. The engine commits a batch
on its store thread while the monitors judge it on the loop's: the commit is several
SQLite statements, and after each the store thread needs the lock back. With the
default interval it waited out all of the monitors' work (about 1.5 ms) after its
first statement, and its fsync began only after them, as if the two ran one after the
other. With a shorter interval the store thread gets the lock back within it, runs its
next statement, and gives the lock back again while SQLite writes and syncs.

The shorter interval is counted across threads, as :mod:`.collector` counts its pause:
it is set when the first holder begins and the one before it restored when the last
ends, so engines driving runs side by side (a delegated child on the same loop) cannot
leave it changed.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

QUICK = 0.0005  # seconds: a tenth of the default, a few forced switches in 1.5 ms

_lock = threading.Lock()
_depth = 0
_before: float | None = None  # the interval to restore; None: it was not changed


@contextlib.contextmanager
def quick(interval: float = QUICK) -> Iterator[None]:
    """The switch interval at most ``interval`` inside the block (see the module
    docstring); an interval already shorter is kept."""
    global _depth, _before
    with _lock:
        if _depth == 0:
            current = sys.getswitchinterval()
            # left alone when already short: setting an interval read back can move it
            # by a microsecond (it is kept in whole microseconds)
            _before = current if interval < current else None
            if _before is not None:
                sys.setswitchinterval(interval)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _before is not None:
                sys.setswitchinterval(_before)
                _before = None
