"""Run a measurement in a forked child process, and get its JSON result back.

Every measurement of a peer needs a process of its own (DBOS is a process-wide
singleton; a crash must kill a real process), and starting Python and importing a
framework costs a second or more. So ``worker.py`` imports the system once and forks
a child per measurement: the child starts with the library loaded and nothing else
running (the parent starts no threads), does one thing, and reports back on a pipe.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class ChildError(RuntimeError):
    """A forked measurement failed, timed out, or died before reporting."""


@dataclass
class Child:
    """A forked child; its result arrives as one JSON document on ``fd``."""

    pid: int
    fd: int
    started: float

    def kill(self) -> None:
        """SIGKILL the child (a crash) and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.reap()

    def reap(self) -> int:
        """Wait for the child to end; its wait status (see ``os.waitstatus_to_exitcode``)."""
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            status = 0
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        return status

    def finished(self) -> bool:
        """Whether the child has ended (without reaping it)."""
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        return os.waitid(os.P_PID, self.pid, flags) is not None

    def result(self, timeout: float) -> dict[str, Any]:
        """Wait up to ``timeout`` s for the child's report; kill it if it is late."""
        chunks = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise ChildError(f"child {self.pid} did not finish within {timeout:g} s")
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        status = self.reap()
        text = b"".join(chunks).decode()
        if not text:
            raise ChildError(
                f"child {self.pid} died without a result (exit {os.waitstatus_to_exitcode(status)})"
            )
        report: dict[str, Any] = json.loads(text)
        if "error" in report:
            raise ChildError(f"child {self.pid}: {report['error']}")
        return report


def start(fn: Callable[[], Any]) -> Child:
    """Fork; the child calls ``fn()`` and reports ``{"value", "seconds", "max_rss_kb"}``."""
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    started = time.perf_counter()
    pid = os.fork()
    if pid:
        os.close(write_fd)
        return Child(pid=pid, fd=read_fd, started=started)
    os.close(read_fd)
    code = 0
    try:
        value = fn()
        report: dict[str, Any] = {
            "value": value,
            "seconds": time.perf_counter() - started,
            "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        }
    except BaseException as exc:
        report = {"error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"}
        code = 1
    try:
        data = json.dumps(report).encode()
        while data:
            data = data[os.write(write_fd, data) :]
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # no atexit hooks, no parent's buffers flushed twice


def run(fn: Callable[[], Any], timeout: float = 3600.0) -> dict[str, Any]:
    """``fn()`` in a forked child; its report (see :func:`start`)."""
    return start(fn).result(timeout)
