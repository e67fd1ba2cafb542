"""Pausing Python's garbage collector while a resume loads what it will keep, and
leaving what a command loaded to start out of its walks.

A resume builds tens of thousands of small, long-lived objects at once: the run's
state, the monitors' save, the monitors caught up on the events after it. Each batch
of new containers starts a collection, and the oldest generation's walks the whole
heap (every module's objects too, in a process that has just imported them): a
resume's loading took twice as long with them. What loading builds holds no cycles
to find, so the collector waits until it is done.

A command's imports leave about 60,000 objects the collector tracks (modules, classes,
functions, their tables and validators), all kept until the process exits. Every full
collection the command's work sets off walked them all again, and at exit the
interpreter's last collection took them apart one by one, which the process's end
does anyway: about a tenth of a one-step ``trestle run``'s CPU (BENCHMARKS.md, section
8, "Start-up"). Once a command has loaded them, they are set aside for good
(:func:`set_aside_loaded`).

The pause is counted across threads: the collector is enabled again when the last
pause ends, and only if it was enabled when the first began (a program that turned
it off keeps it off).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No automatic garbage collection inside the block (see the module docstring)."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()


def set_aside_loaded() -> None:
    """Leave every object this process holds now out of all later collections, the
    interpreter's last at exit included (``gc.freeze``): called once a command has
    imported what it runs, before its work begins, when what exists is what it loaded
    and will keep. Garbage made from then on is collected as before."""
    gc.freeze()
