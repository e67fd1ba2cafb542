"""A process that outlives the driver by a moment, to kill its sandboxes when it dies.

``PR_SET_PDEATHSIG`` kills a sandbox's outer bubblewrap when the driver dies, but
bubblewrap starts in two processes: if the outer one dies before it has told the inner
one to go on, the inner one waits on an event that never comes, forever, holding the
step's key (seen in 7 of 60 kills right after a spawn). Nothing in the dead driver can
clean that up, so a helper does: one per driver process, started at its first sandboxed
command, reading a pipe only the driver writes. The driver registers each sandbox's
token (an environment variable of both bubblewrap processes and the command) before it
spawns it and drops it once the command is reaped; when the pipe reaches end of file,
the driver is gone, and the helper kills every process carrying a token still
registered. Killing the inner bubblewrap (the sandbox's pid 1) kills all of the
sandbox, whatever its processes did to their environment or process group.

Run as a script (``python -I -S watchdog.py``), this module is the helper: it imports
the standard library only, so it starts in milliseconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

TOKEN_VAR = "TRESTLE_CELL_ID"
# How long the helper keeps looking once the driver is gone, killing what it finds. A
# process carries its token in /proc only once its exec is done, and one may fork while
# its siblings are being killed: a single pass could miss a sandbox starting just then.
LINGER = 0.5
GIVE_UP = 5.0  # seconds: a process that cannot be killed (stuck in the kernel) ends it


class Watchdog:
    """The driver's end: starts the helper and tells it about each sandbox."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._live: set[str] = set()  # the tokens of the sandboxes running now

    @contextmanager
    def guard(self, env: dict[str, str]) -> Iterator[dict[str, str]]:
        """``env`` with a fresh token, registered until the block ends (the command
        has been reaped). Without ``/proc`` there is nothing to find processes by, and
        the helper is not started."""
        if not Path("/proc/self/environ").exists():
            yield env
            return
        token = uuid.uuid4().hex
        with self._lock:
            self._live.add(token)
            self._send(f"+{token}\n")
        try:
            yield {**env, TOKEN_VAR: token}
        finally:
            with self._lock:
                self._live.discard(token)
                self._send(f"-{token}\n")

    def _send(self, line: str) -> None:
        """Tell the helper ``line``; a helper that died (killed by someone) is replaced
        by one told every sandbox still live."""
        if self._proc is None or self._proc.poll() is not None:
            self._proc = _start()
            line = "".join(f"+{token}\n" for token in self._live)
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            stdin.write(line.encode())
            stdin.flush()
        except OSError:  # it died just now: the next line starts another
            self._proc = None


def _start() -> subprocess.Popen[bytes]:
    # a session of its own: a Ctrl-C at the terminal is for the driver, not for it
    return subprocess.Popen(
        [sys.executable, "-I", "-S", __file__],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={},
        start_new_session=True,
    )


WATCHDOG = Watchdog()  # one per driver process: the helper watches this process's death


def carrying(tokens: set[str]) -> set[int]:
    """The live processes whose environment carries one of ``tokens``."""
    markers = [f"{TOKEN_VAR}={t}\0".encode() for t in tokens]
    me = os.getpid()
    found: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as file:
                environ = file.read()
        except OSError:  # gone meanwhile, or not ours
            continue
        if any(environ.startswith(m) or b"\0" + m in environ for m in markers):
            found.add(int(entry.name))
    return found


def watch() -> None:
    """The helper: keep the registered tokens until end of file, then kill."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    live: Counter[str] = Counter()
    for raw in sys.stdin.buffer:
        line = raw.decode("ascii", "replace").strip()
        token = line[1:]
        if line.startswith("+"):
            live[token] += 1
        elif line.startswith("-") and live[token] > 0:
            live[token] -= 1
    tokens = {token for token, count in live.items() if count > 0}
    if not tokens:  # every sandbox was reaped: the driver ended in order
        return
    start = time.monotonic()
    while True:
        found = carrying(tokens)
        for pid in found:
            with suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        waited = time.monotonic() - start
        if (not found and waited >= LINGER) or waited >= GIVE_UP:
            return
        time.sleep(0.02)


if __name__ == "__main__":
    watch()
