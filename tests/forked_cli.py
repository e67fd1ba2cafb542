"""``trestle`` commands run in forks of a process that has already imported Trestle.

A test that starts ``python -m trestle`` pays about 0.45 s of CPU importing Trestle
before the command parses its arguments, and the suite starts thousands of them: that,
not what they test, was most of the suite's time. So each test worker keeps one
*zygote*, a Python process started once that imports Trestle's modules and then, for
each command, forks: the fork takes the command's working directory, environment and
standard streams (pipes the test reads, as with ``subprocess.run``), runs
``trestle/__main__.py`` as ``python -m`` does and exits as the interpreter does
(threads joined, ``atexit`` run, streams flushed); the zygote sends its exit status
back. What the command runs is Trestle's own code from its entry point on, in a
process of its own.

What a fork cannot show is start-up: which modules a command imports, how long that
takes, what a variable the interpreter reads does. Tests of those (``test_startup.py``,
the crash and signal tests, the sandbox's) start Trestle with ``subprocess`` as
before, and so does :func:`run_trestle` when the command's environment would start the
interpreter differently (its ``PYTHON*`` variables or its locale differ from the
zygote's) or sets ``TRESTLE_TEST_EXEC=1``; ``TRESTLE_TEST_EXEC=1 make test`` starts
every command fresh.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

_MAX_REQUEST = 1 << 20
_READ = 1 << 16
_GRACE = 30.0  # seconds a killed command has to end and its pipes to close
_LOCALE = ("LANG", "LC_ALL", "LC_CTYPE")
_READY = 300.0  # seconds the zygote may take to import Trestle on a busy machine


def run_trestle(
    args: Sequence[str | Path],
    *,
    cwd: Path | str,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run([sys.executable, "-m", "trestle", *args], capture_output=True,
    text=True, check=False)``, run in a fork of this worker's zygote where that is the
    same thing."""
    argv = [sys.executable, "-m", "trestle", *map(str, args)]
    environment = dict(os.environ if env is None else env)
    zygote = _zygote()
    if not zygote.starts_as(environment):
        return subprocess.run(
            argv,
            cwd=cwd,
            env=environment,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    return zygote.run(argv, str(cwd), environment, input, timeout)


class _Zygote:
    """The worker's end: a control socket to the zygote, shared by the worker's threads."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._control = ours
        self._lock = threading.Lock()
        self._start_env = _start_variables(os.environ)
        # run as a script, whose directory (tests/) _serve takes off the import path:
        # the commands import what `python -m trestle` would, from where it would
        self.process = subprocess.Popen(
            [sys.executable, __file__, str(theirs.fileno())],
            cwd="/",
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        # wait for its imports here, so that they do not count against the first
        # command's timeout
        ours.settimeout(_READY)
        if ours.recv(16) != b"ready":
            raise RuntimeError("the trestle zygote ended before it was ready")
        ours.settimeout(None)

    def starts_as(self, env: Mapping[str, str]) -> bool:
        """A fresh interpreter given ``env`` would start as the zygote did: the same
        ``PYTHON*`` variables (the import path, bytecode, hashing, encodings) and
        locale."""
        fresh = "1" in (env.get("TRESTLE_TEST_EXEC"), os.environ.get("TRESTLE_TEST_EXEC"))
        return not fresh and _start_variables(env) == self._start_env

    def run(
        self,
        argv: list[str],
        cwd: str,
        env: dict[str, str],
        stdin: str | None,
        timeout: float,
    ) -> subprocess.CompletedProcess[str]:
        reply, reply_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        if stdin is None:
            in_r, in_w = os.open(os.devnull, os.O_RDONLY), -1
        else:
            in_r, in_w = os.pipe()
        request = json.dumps({"args": argv[3:], "cwd": cwd, "env": env}).encode()
        try:
            with self._lock:
                fds = [reply_theirs.fileno(), in_r, out_w, err_w]
                socket.send_fds(self._control, [request], fds)
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
            reply_theirs.close()
        exchange = _Exchange(reply, out_r, err_r, in_w, (stdin or "").encode())
        return exchange.finish(argv, timeout)


class _Exchange:
    """One command's pipes and reply socket, read until both pipes close and its
    status has come, as ``subprocess.run`` waits for its output and its exit."""

    def __init__(self, reply: socket.socket, out: int, err: int, stdin: int, data: bytes):
        self.reply, self.out, self.err, self.stdin = reply, out, err, stdin
        self.data = memoryview(data)  # what is left to write to its stdin
        self.chunks: dict[int, list[bytes]] = {out: [], err: []}
        self.pid: int | None = None
        self.status: int | None = None
        self.late = False  # past its timeout, and killed once its pid is known

    def finish(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        try:
            self._pump(argv, timeout)
        finally:
            for fd in (self.out, self.err, self.stdin):
                if fd >= 0:
                    os.close(fd)
            self.reply.close()
        assert self.status is not None
        out, err = (_text(self.chunks[fd]) for fd in (self.out, self.err))
        return subprocess.CompletedProcess(argv, self.status, out, err)

    def _pump(self, argv: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        readers = {self.reply.fileno(), self.out, self.err}
        while readers:
            left = deadline - time.monotonic()
            if left <= 0 and self.late:
                raise RuntimeError(f"{argv[3:]} was killed and did not end")
            if left <= 0:  # kill it, then wait for its end, as subprocess.run does
                self.late = True
                self._kill()
                deadline, left = time.monotonic() + _GRACE, _GRACE
            writers = [self.stdin] if self.stdin >= 0 else []
            readable, writable, _ = select.select(list(readers), writers, [], left)
            if writable:
                self._feed()
            for fd in readable:
                if fd == self.reply.fileno():
                    self._hear(readers)
                elif chunk := os.read(fd, _READ):
                    self.chunks[fd].append(chunk)
                else:
                    readers.discard(fd)
        if self.late:
            out, err = (b"".join(self.chunks[fd]) for fd in (self.out, self.err))
            raise subprocess.TimeoutExpired(argv, timeout, out, err)

    def _kill(self) -> None:
        if self.late and self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def _feed(self) -> None:
        # no more than select promises will not block: a blocked write would wait on a
        # command that is itself waiting for its full stdout to be read
        try:
            sent = os.write(self.stdin, self.data[: select.PIPE_BUF])
        except BrokenPipeError:  # the command stopped reading: the rest is dropped
            sent = len(self.data)
        self.data = self.data[sent:]
        if not self.data:
            os.close(self.stdin)
            self.stdin = -1

    def _hear(self, readers: set[int]) -> None:
        message = self.reply.recv(256).decode()
        if not message:
            raise RuntimeError("the trestle zygote ended before the command's status came")
        kind, value = message.split()
        if kind == "pid":
            self.pid = int(value)
            self._kill()  # if it is already late
        else:
            self.status = int(value)
            readers.discard(self.reply.fileno())


def _start_variables(env: Mapping[str, str]) -> dict[str, str]:
    """What the interpreter reads as it starts: its own variables and the locale's
    (which choose the encodings of its streams and file names)."""
    return {k: v for k, v in env.items() if k.startswith("PYTHON") or k in _LOCALE}


def _text(chunks: list[bytes]) -> str:
    """As ``text=True`` decodes: the locale's encoding (UTF-8 here), newlines as ``\\n``."""
    return b"".join(chunks).decode().replace("\r\n", "\n").replace("\r", "\n")


_client: _Zygote | None = None
_client_lock = threading.Lock()


def _zygote() -> _Zygote:
    global _client
    with _client_lock:
        if _client is None or _client.process.poll() is not None:
            _client = _Zygote()
        return _client


# --- the zygote's side ------------------------------------------------------------


def _serve(control: socket.socket) -> dict[str, object]:
    """Import Trestle, then fork a command for each request until the worker hangs up.
    Returns only in a fork: the request it is to run."""
    del sys.path[0]  # this script's directory, tests/
    _preload()
    if threading.active_count() != 1:  # a fork keeps only the thread that forked
        raise SystemExit(f"forked_cli: importing Trestle started {threading.enumerate()}")
    control.send(b"ready")
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    waiting: dict[int, socket.socket] = {}
    while True:
        ready, _, _ = select.select([control.fileno(), wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
            _reap(waiting)
        if control.fileno() not in ready:
            continue
        message, fds, _, _ = socket.recv_fds(control, _MAX_REQUEST, 4)
        if not message:
            raise SystemExit(0)  # the worker is gone
        reply = socket.socket(fileno=fds[0])
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for sock in (control, reply, *waiting.values()):
                sock.close()
            for fd in (wake_r, wake_w):
                os.close(fd)
            for target, fd in enumerate(fds[1:]):
                os.dup2(fd, target)
                os.close(fd)
            return dict(json.loads(message))
        for fd in fds[1:]:
            os.close(fd)
        reply.send(f"pid {pid}".encode())
        waiting[pid] = reply


def _preload() -> None:
    import importlib
    import pkgutil

    import trestle

    for module in pkgutil.walk_packages(trestle.__path__, "trestle."):
        if not module.name.startswith(("trestle.testing", "trestle.__main__")):
            # an extra that is not installed: the command says so itself
            with contextlib.suppress(ImportError):
                importlib.import_module(module.name)


def _reap(waiting: dict[int, socket.socket]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if reply := waiting.pop(pid, None):
            with contextlib.suppress(OSError):  # the test gave up on it (a timeout)
                reply.send(f"status {os.waitstatus_to_exitcode(status)}".encode())
            reply.close()


def _become(request: dict[str, object]) -> None:
    """In the fork: become ``python -m trestle ARGS`` started in ``cwd`` with ``env``,
    then run it. Its end (``SystemExit``, an exception) leaves this script, and the
    interpreter exits as it would have."""
    import runpy

    args, cwd, env = request["args"], request["cwd"], request["env"]
    assert isinstance(args, list) and isinstance(cwd, str) and isinstance(env, dict)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    # the streams a fresh interpreter makes on pipes: buffered, UTF-8 (the locale's
    # here), stderr line-buffered and escaping what it cannot encode
    sys.stdin = os.fdopen(0, encoding="utf-8", closefd=False)
    sys.stdout = os.fdopen(1, "w", encoding="utf-8", closefd=False)
    sys.stderr = os.fdopen(2, "w", 1, "utf-8", "backslashreplace", closefd=False)
    sys.path.insert(0, cwd)  # what `-m` puts first; trestle/__main__.py takes it out
    sys.argv = ["-m", *map(str, args)]
    runpy.run_module("trestle", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _become(_serve(socket.socket(fileno=int(sys.argv[1]))))
