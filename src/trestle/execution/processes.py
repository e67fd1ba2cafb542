"""An attempt's processes, found again after the driver that started them is gone.

A command step runs in its own process group, so it outlives a driver killed with
SIGKILL: its children keep working. Before a resume probes such an attempt, its
leftover processes must be gone, or the probe looks at work still in progress and a
re-run would do it twice. Two marks find them on Linux (``/proc``):

- the idempotency key every step process carries in its environment
  (``TRESTLE_IDEMPOTENCY_KEY``), which also covers the moments between the spawn and
  the record of it, and children that left the group. An agent's tool call has its
  own key under its step's, so the step's leftovers include its tool calls' too;
- the process group recorded at dispatch (``StepProcessStarted``), which also covers
  children that scrubbed their environment. The group id is trusted only while its
  leader is gone or is the very process recorded (same start time): the kernel does
  not reuse a pid that still names a group, so a group with no leader is still ours.

Where the OS allows, the leader also dies with the driver (``PR_SET_PDEATHSIG``), so a
shell does not go on to its next command once nobody will record its outcome.

Both marks are read from ``/proc``, so only a process that sees the same processes can
find an attempt's leftovers: :func:`process_view` names what a process sees, and a
driver on another host (or in another pid namespace) must not take finding nothing
for their absence.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import hashlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from trestle.core.events import Leftovers

KEY_VAR = "TRESTLE_IDEMPOTENCY_KEY"
POLL = 0.05  # seconds between looks at leftover processes
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
PROC = Path("/proc")
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Leader:
    """The recorded leader of an attempt's process group."""

    pid: int
    pgid: int
    start_time: int | None


@functools.cache
def process_view() -> str:
    """Which processes this one can see, as a short name. Two processes with the same
    view see each other's processes in ``/proc``: the same kernel, booted once, and the
    same pid namespace. From any other view (another host, a container with a pid
    namespace of its own, this host after a reboot) an attempt's processes are out of
    sight. Without ``/proc``, the host's name stands for it."""
    try:
        boot = (PROC / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
        seen = f"{boot} {os.readlink(PROC / 'self' / 'ns' / 'pid')}"
    except OSError:
        seen = f"host {socket.gethostname()}"
    return hashlib.sha256(seen.encode()).hexdigest()[:16]


def start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot; None if unknown or gone."""
    fields = _stat(pid)
    return int(fields[19]) if fields is not None else None


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state is [0])."""
    fields = _stat_fields(str(pid))
    return None if fields is None else [f.decode("ascii", "replace") for f in fields]


def _stat_fields(pid: str) -> list[bytes] | None:
    try:
        raw = _read(f"{PROC}/{pid}/stat")
    except OSError:
        return None
    # the name is in parentheses and may itself hold spaces or parentheses
    return raw[raw.rfind(b")") + 2 :].split()


def _read(path: str) -> bytes:
    """A file of ``/proc`` whole, read with bare system calls: a look at every process
    opens two files each, and through pathlib and Python's buffered files they took
    2.3 ms for 160 processes, against 0.8 ms this way (a resume looks before it acts)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _arm_prctl() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int

    def arm(parent: int) -> int:
        result: int = prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the driver died before the request took hold
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    return arm


_ARM = _arm_prctl()  # loaded once, so the forked child only makes one call


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child die when the driver does (Linux only).

    It runs in the forked child before exec: a single ``prctl`` call, no import, no
    new interpreter. The signal goes to the group leader only (``sh``), so a shell
    does not start its next command; a grandchild already running is found and
    waited for by :func:`reap` on the next resume.
    """
    if _ARM is None:
        return None
    arm, parent = _ARM, os.getpid()

    def preexec() -> None:
        arm(parent)

    return preexec


def leftovers(key: str, leader: Leader | None) -> set[int]:
    """Live processes of the attempt with idempotency ``key`` (and group ``leader``)."""
    if not PROC.is_dir():
        return _group_alive(leader)
    marker = f"{KEY_VAR}={key}\0".encode()
    # an agent step's tool calls carry keys under the step's own (see
    # :func:`trestle.core.events.tool_call_key`): the step's leftovers include theirs
    nested = f"{KEY_VAR}={key}/".encode()
    group = _trusted_group(leader)
    me = os.getpid()
    found: set[int] = set()
    for name in os.listdir(PROC):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        fields = _stat_fields(name)
        if not fields or fields[0] in (b"Z", b"X"):  # gone, or dead and not yet reaped
            continue
        if group is not None and int(fields[2]) == group:
            found.add(pid)
            continue
        try:
            environ = _read(f"{PROC}/{name}/environ")
        except OSError:  # another user's process, or gone meanwhile
            continue
        if any(environ.startswith(m) or b"\0" + m in environ for m in (marker, nested)):
            found.add(pid)
    return found


def _trusted_group(leader: Leader | None) -> int | None:
    if leader is None:
        return None
    now = start_time(leader.pid)
    if now is not None and leader.start_time is not None and now != leader.start_time:
        return None  # the pid (and so the group id) belongs to another process now
    return leader.pgid


def _group_alive(leader: Leader | None) -> set[int]:
    """Without ``/proc``: only the recorded group can be asked about, as a whole."""
    if leader is None:
        return set()
    try:
        os.killpg(leader.pgid, 0)
    except (ProcessLookupError, PermissionError):
        return set()
    return {leader.pgid}


def _signal(pids: set[int], leader: Leader | None, sig: signal.Signals) -> None:
    group = _trusted_group(leader)
    if group is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


async def reap(
    key: str, leader: Leader | None, wait: float, pool: Executor | None = None
) -> tuple[Leftovers, float]:
    """Wait up to ``wait`` seconds for the attempt's leftover processes to end, then
    kill the rest (SIGTERM, then SIGKILL). Returns what was found and the seconds it
    took. Looking is blocking (it reads ``/proc``), so it runs in ``pool``."""
    loop = asyncio.get_running_loop()

    async def look() -> set[int]:
        return await loop.run_in_executor(pool, leftovers, key, leader)

    started = time.monotonic()
    alive = await look()
    if not alive:
        return "none", 0.0
    deadline = started + wait
    while alive and time.monotonic() < deadline:
        await asyncio.sleep(POLL)
        alive = await look()
    if not alive:
        return "finished", time.monotonic() - started
    for sig, grace in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, 10.0)):
        _signal(alive, leader, sig)
        end = time.monotonic() + grace
        while alive and time.monotonic() < end:
            await asyncio.sleep(POLL)
            alive = await look()
        if not alive:
            break
    return "killed", time.monotonic() - started
