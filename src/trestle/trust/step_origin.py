"""Is this process (or this call) part of a run's step? Decisions refuse to be made there.

A step must not approve its own actions. The environment variables a step is given
(``TRESTLE_STEP_ID`` and the rest) say so, but a step controls its environment:
``env -u TRESTLE_STEP_ID trestle approve RUN.1`` drops the marker. So the decision path
looks for evidence the approving process cannot shed by itself:

- a ``python:`` step's call runs in the driver's own process: the engine marks the
  call's context (:func:`python_step`) and the Python decision API refuses inside it;
- every ancestor process (``/proc/<pid>/stat``, up to pid 1): an ancestor that holds
  the lease of a run in this store (a driver: whatever descends from it is a step's,
  a check's or a tool's process), or an ancestor whose environment as it started
  (``/proc/<pid>/environ``) carries a step's marker. ``env -u`` in the approving
  process does not reach its parents; the driver check holds even for a step that
  rewrote its own and its parents' environments.

What this does not catch: a process that stripped its environment *and* left the
process tree of every step and driver (``setsid`` plus a double fork, so that it is
reparented to pid 1, and then ``exec env -i``), running as the same OS user. Without a
sandbox such a process can also read the signing key and sign for itself; the sandbox
(which hides the store and the key from everything a run executes) is the barrier
against it, and this check is the second line. See docs/security.md, "Approvals".
"""

from __future__ import annotations

import contextvars
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from trestle.store.base import Store

MARKERS = ("TRESTLE_STEP_ID", "TRESTLE_IDEMPOTENCY_KEY")
PROC = Path("/proc")

_PYTHON_STEP: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "trestle_python_step", default=None
)


def python_step(step: str) -> contextvars.Token[str | None]:
    """Mark the current context as running ``python:`` step ``step`` (reset with the
    token when the call ends)."""
    return _PYTHON_STEP.set(step)


def end_python_step(token: contextvars.Token[str | None]) -> None:
    _PYTHON_STEP.reset(token)


def inside_a_step(store: Store | None = None) -> str | None:
    """Why this call is part of a run's step (naming the evidence), or None."""
    step = _PYTHON_STEP.get()
    if step is not None:
        return f"it is made by python: step {step!r}"
    for name in MARKERS:
        if os.environ.get(name):
            return f"this process carries {name}"
    drivers = _drivers(store) if store is not None else {}
    for pid in _ancestors(os.getppid()):
        if pid in drivers:
            return f"its ancestor process {pid} drives run {drivers[pid]!r}"
        marker = _marker(pid)
        if marker is not None:
            return f"its ancestor process {pid} is a step's (it carries {marker})"
    return None


def _ancestors(pid: int) -> Iterator[int]:
    seen: set[int] = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        yield pid
        try:
            stat = (PROC / str(pid) / "stat").read_text()
            pid = int(stat.rpartition(")")[2].split()[1])  # the field after the state
        except (OSError, ValueError, IndexError):
            return


def _marker(pid: int) -> str | None:
    try:
        environ = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return None  # another user's process, or gone
    for entry in environ.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and value and name.decode(errors="replace") in MARKERS:
            return name.decode()
    return None


def _drivers(store: Store) -> dict[int, str]:
    """Pids on this host holding a live lease on a run in ``store``, to their run."""
    host, now = socket.gethostname(), time.time()
    found: dict[int, str] = {}
    for row in store.runs():
        lease = store.lease(row.run_id)
        if lease is not None and lease.owner.host == host and lease.expires_at > now:
            found[lease.owner.pid] = row.run_id
    return found
