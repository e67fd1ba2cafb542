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
process of its own. :func:`run_trestle` runs a command to its end, as
``subprocess.run`` does; :func:`start_trestle` starts one the test reads, signals and
waits for while it runs (a Temporal worker, a dashboard, a run it follows), as
``subprocess.Popen`` does.

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
from typing import IO, Any, Protocol

_MAX_REQUEST = 1 << 20
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
    command = start_trestle(
        args, cwd=cwd, env=env, stdin=subprocess.DEVNULL if input is None else subprocess.PIPE
    )
    try:
        out, err = command.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired as late:  # killed, then waited for, as subprocess.run does
        command.kill()
        late.stdout, late.stderr = command.communicate(timeout=_GRACE)  # what it said
        raise
    assert command.returncode is not None
    return subprocess.CompletedProcess(command.args, command.returncode, out, err)


def start_trestle(
    args: Sequence[str | Path],
    *,
    cwd: Path | str,
    env: Mapping[str, str] | None = None,
    stdin: int = subprocess.DEVNULL,
    stderr: int = subprocess.PIPE,
    start_new_session: bool = False,
) -> Started:
    """``subprocess.Popen([sys.executable, "-m", "trestle", *args], stdin=stdin,
    stdout=PIPE, stderr=stderr, text=True, start_new_session=start_new_session)``,
    forked from this worker's zygote where that is the same thing: a command the test
    reads, signals and waits for while it runs (a worker, a dashboard, a run it
    follows). ``stdin`` is ``DEVNULL`` or ``PIPE``, ``stderr`` ``PIPE`` or ``STDOUT``."""
    argv = [sys.executable, "-m", "trestle", *map(str, args)]
    environment = dict(os.environ if env is None else env)
    zygote = _zygote()
    if not zygote.starts_as(environment):
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=environment,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=start_new_session,
        )
    return zygote.start(argv, str(cwd), environment, stdin, stderr, start_new_session)


class Started(Protocol):
    """What a test uses of a command it started: ``subprocess.Popen``'s, of either kind."""

    args: Any
    pid: int
    returncode: int | Any
    stdin: IO[str] | None
    stdout: IO[str] | None
    stderr: IO[str] | None

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def communicate(
        self, input: str | None = None, timeout: float | None = None
    ) -> tuple[Any, Any]: ...
    def send_signal(self, sig: int) -> None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...


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

    def start(
        self,
        argv: list[str],
        cwd: str,
        env: dict[str, str],
        stdin: int,
        stderr: int,
        session: bool,
    ) -> Forked:
        reply, reply_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe() if stderr == subprocess.PIPE else (-1, os.dup(out_w))
        if stdin == subprocess.PIPE:
            in_r, in_w = os.pipe()
        else:
            in_r, in_w = os.open(os.devnull, os.O_RDONLY), -1
        request = {"args": argv[3:], "cwd": cwd, "env": env, "session": session}
        message = json.dumps(request).encode()
        try:
            with self._lock:
                fds = [reply_theirs.fileno(), in_r, out_w, err_w]
                socket.send_fds(self._control, [message], fds)
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
            reply_theirs.close()
        return Forked(argv, reply, in_w, out_r, err_r)


class Forked:
    """A command forked from the zygote, used as its ``subprocess.Popen`` would be. The
    zygote is its parent: its pid, then its exit status, come on the ``reply`` socket."""

    def __init__(self, argv: list[str], reply: socket.socket, stdin: int, out: int, err: int):
        self.args = argv
        self._reply = reply
        self.stdin = _text_stream(stdin, "w")
        self.stdout = _text_stream(out, "r")
        self.stderr = _text_stream(err, "r")
        self.returncode: int | None = None
        self._said: dict[str, list[str]] = {}  # what communicate has read, by stream
        self._readers: list[threading.Thread] = []
        reply.settimeout(_READY)
        self.pid = int(self._hear("pid"))
        reply.settimeout(None)

    def _hear(self, kind: str) -> str:
        message = self._reply.recv(256).decode()
        if not message:
            raise RuntimeError(f"the trestle zygote ended before the command's {kind} came")
        said, value = message.split()
        assert said == kind, message
        return value

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._reply], [], [], 0)[0]:
            self.returncode = int(self._hear("status"))
            self._reply.close()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not select.select([self._reply], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            self.poll()
        assert self.returncode is not None
        return self.returncode

    def communicate(
        self, input: str | None = None, timeout: float | None = None
    ) -> tuple[str | None, str | None]:
        """Write ``input``, read both streams to their end and wait for the exit, as
        ``Popen.communicate`` does; past ``timeout``, ``TimeoutExpired``, and a later
        call goes on where this one stopped."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._readers:
            self._readers = [
                threading.Thread(target=self._read, args=(name, stream), daemon=True)
                for name, stream in (("out", self.stdout), ("err", self.stderr))
                if stream is not None
            ]
            if self.stdin is not None:
                self._readers.append(
                    threading.Thread(target=self._write, args=(input or "",), daemon=True)
                )
            for reader in self._readers:
                reader.start()
        for reader in self._readers:
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        self.wait(left)
        out, err = ("".join(self._said[n]) if n in self._said else None for n in ("out", "err"))
        return out, err

    def _read(self, name: str, stream: IO[str]) -> None:
        said = self._said[name] = []  # line by line: a timeout tells what came so far
        with stream:
            for line in stream:
                said.append(line)

    def _write(self, data: str) -> None:
        assert self.stdin is not None
        # a command that stops reading drops the rest, as Popen.communicate lets it
        with contextlib.suppress(BrokenPipeError), self.stdin:
            self.stdin.write(data)

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # not a pid the kernel may have given another process
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _text_stream(fd: int, mode: str) -> IO[str] | None:
    """As ``text=True`` makes them: the locale's encoding (UTF-8 here), newlines read as
    ``\\n``."""
    return None if fd < 0 else open(fd, mode, encoding="utf-8")


def _start_variables(env: Mapping[str, str]) -> dict[str, str]:
    """What the interpreter reads as it starts: its own variables and the locale's
    (which choose the encodings of its streams and file names)."""
    return {k: v for k, v in env.items() if k.startswith("PYTHON") or k in _LOCALE}


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

    import pydantic

    import trestle

    for module in pkgutil.walk_packages(trestle.__path__, "trestle."):
        if not module.name.startswith(("trestle.testing", "trestle.__main__")):
            # an extra that is not installed: the command says so itself
            with contextlib.suppress(ImportError):
                importlib.import_module(module.name)
    # the models whose validators are built on first use (the event types): built here
    # once, not again in each fork, where a run's events built a dozen of them, about
    # a tenth of a small plan's run
    unbuilt = [pydantic.BaseModel]
    while unbuilt:
        model = unbuilt.pop()
        unbuilt += model.__subclasses__()
        if model.__module__.startswith("trestle.") and not model.__pydantic_complete__:
            model.model_rebuild(raise_errors=False)  # one naming an extra not installed


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
    if request["session"]:  # a session and process group of its own, as Popen's option
        os.setsid()
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
