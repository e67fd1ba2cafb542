"""A process that runs one unconfined command and ends everything it started, however
it detached.

A sandboxed command dies whole: it is the sandbox's pid 1's child, and the sandbox dies
with the driver and with its pid 1. An unconfined one (``--sandbox off``, or no
bubblewrap here) runs in a process group of its own, and the driver ends it by ending
the group; a process that calls ``setsid()`` and forks leaves the group, and outlived
the run. The keeper sits between the driver and the command:

- it is a child subreaper (``PR_SET_CHILD_SUBREAPER``), so every process the command
  starts stays below it, whatever its session or group: one whose parent exits is
  handed to the keeper, not to init;
- when the command exits, or the keeper is told to end (SIGTERM: the driver ending the
  group, or the driver's own death through ``PR_SET_PDEATHSIG``), it sends SIGTERM to
  every process below it, gives them :data:`GRACE`, then kills and reaps them until
  none is left, and exits with the command's status.

It is Linux's (:data:`AVAILABLE`): elsewhere the driver says, when it starts such a
command, that what it starts in a session of its own may outlive it; where the kernel
refuses either request, the keeper says so on its stderr and runs the command as it
is. Run as a script (``python -I -S keeper.py PARENT ARGV...``):
it imports the standard library only, so it starts in milliseconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
GRACE = 0.5  # seconds the command's processes get after SIGTERM
GIVE_UP = 5.0  # seconds: a process that cannot be killed (stuck in the kernel) ends it
KEEPER = os.path.abspath(__file__)
AVAILABLE = sys.platform.startswith("linux")


def argv(command: list[str]) -> list[str]:
    """What to execute for ``command`` kept by a keeper, child of this process."""
    return [sys.executable, "-I", "-S", KEEPER, str(os.getpid()), *command]


def _prctl(option: int, value: int) -> bool:
    try:
        call = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    call.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    call.restype = ctypes.c_int
    return bool(call(option, value, 0, 0, 0) == 0)


def below(me: int) -> set[int]:
    """The live processes below ``me`` (read from ``/proc``'s parent links)."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as file:
                raw = file.read()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2 :].split()
        if fields and fields[0] not in (b"Z", b"X"):
            parents[int(name)] = int(fields[1])
    found: set[int] = set()
    for pid in parents:
        seen, up = [pid], parents.get(pid)
        while up is not None and up != me and up not in found and up > 1:
            seen.append(up)
            up = parents.get(up)
        if up == me or up in found:
            found.update(seen)
    return found


def _signal(pids: set[int], sent: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):  # gone meanwhile
            os.kill(pid, sent)


def _reap() -> bool:
    """Reap what has exited; whether any child is left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def end_all(me: int) -> None:
    """SIGTERM to every process below ``me``, then SIGKILL until none is left."""
    _signal(below(me), signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    while _reap() and below(me) and time.monotonic() < deadline:
        time.sleep(0.02)
    give_up = time.monotonic() + GIVE_UP
    # a killed process's children are handed to the keeper: the next pass sees them
    while _reap() and time.monotonic() < give_up:
        _signal(below(me), signal.SIGKILL)
        time.sleep(0.01)


def keep(parent: int, command: list[str]) -> int:
    """Run ``command`` (the keeper's parent is ``parent``); its exit status."""
    me = os.getpid()
    kept = _prctl(PR_SET_CHILD_SUBREAPER, 1) and _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if not kept:
        print(
            "trestle: processes this command starts in a session of their own may "
            "outlive it (this system has no child subreaper)",
            file=sys.stderr,
        )
    elif os.getppid() != parent:  # the driver died before the request took hold
        return 1
    # the keeper waits for its command's end or its own, as signals taken in turn
    awaited = {signal.SIGTERM, signal.SIGCHLD}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, awaited)
    for sig in (signal.SIGINT, signal.SIGHUP):  # the driver's terminal is not for it
        signal.signal(sig, signal.SIG_IGN)
    child = os.fork()
    if child == 0:  # what is blocked or ignored would pass to the command through exec
        for sig in (signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            print(f"trestle: cannot run {command[0]!r}: {exc}", file=sys.stderr)
        os._exit(127)
    # the keeper holds none of the command's pipes: its output ends when the command's does
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    status = _waited(child, awaited)
    if kept:
        end_all(me)
    os.dup2(devnull, 2)
    return status


def _waited(child: int, awaited: set[signal.Signals]) -> int:
    """The exit status of ``child`` (128 and the signal's number for one killed), or
    143 once the keeper is told to end (SIGTERM)."""
    while True:
        try:
            while (found := os.waitpid(-1, os.WNOHANG))[0] != 0:
                if found[0] == child:
                    code = os.waitstatus_to_exitcode(found[1])
                    return code if code >= 0 else 128 - code
        except ChildProcessError:
            return 0
        if signal.sigwaitinfo(awaited).si_signo == signal.SIGTERM:
            return 128 + signal.SIGTERM


if __name__ == "__main__":
    sys.exit(keep(int(sys.argv[1]), sys.argv[2:]))
