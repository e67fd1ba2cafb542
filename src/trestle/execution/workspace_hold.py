"""Holding a workspace against other runs while a command a human approved runs.

Within its run and the runs above it, an approved command runs alone: the decider
starts nothing beside it (:mod:`trestle.core.decider`, :mod:`trestle.engines.hold`).
Another run in the same workspace (another driver's, or one more run this process
drives) is held here, by file locks (``flock``) in Trestle's configuration directory,
which every sandbox hides: every command a run starts (:func:`held_shared`, from
:func:`trestle.execution.actions.run_shell`), every write of an agent's file tools and
of a plan's ``write:`` steps, and every call to an MCP server holds its workspace
shared while it runs; an approved command holds it exclusively
(:func:`hold_exclusive`) from before the check of the files it names to its end. So no
other run changes a file the command reads between that check and the command's read.

A run's commands can write anywhere in its workspace, and a run may work in a
directory of another's (``ws/sub`` beside ``ws``), so the locks name each directory on
the way (by device and inode: a bind mount of the workspace is the workspace), four
for each:

- *here*: a command holds its workspace's shared while it runs;
- *below*: a command holds each directory's above its workspace shared;
- *gate*: a command passes its workspace's, exclusively, as it takes the two above;
- *pass*: and each directory's above it, likewise.

An approved command in ``W`` holds the gates of ``W`` and of each directory above it
shared and ``W``'s *pass* shared (no command starts there, nor below ``W``,
meanwhile), then ``W``'s *below* exclusively (it waits for the commands running below
it), waits until *here* of ``W`` and of each directory above it is free (those running
there ended), then holds what a command holds. Approved commands in two workspaces
beside each other (``ws/a``, ``ws/b``) do not wait for one another; in one workspace,
or one above the other, they take turns. A command waits while an approved command
holds its workspace, one above it or one below it.

Locks are polled, never waited on in the kernel: a task cancelled while it waits (a
stop, a timeout) leaves nothing blocked behind it. A task holding a workspace
exclusively skips its own shared holds (the approved command's own start, its step's
checks), as the context variable :data:`_EXCLUSIVE` tells.

What is not held: a host's flock is its own, so drivers and Temporal workers on two
hosts sharing a workspace over a network file system do not hold one another; an MCP
server's own writes outside a call to it; a ``python:`` step (the plan author's own
code); a program the operator runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from pathlib import Path

from trestle.trust.signing import config_dir

POLL = 0.02  # seconds between two tries at a lock another run holds

# the workspaces the current task holds exclusively (their keys)
_EXCLUSIVE: ContextVar[frozenset[str]] = ContextVar("trestle_exclusive", default=frozenset())

Release = Callable[[], Awaitable[None]]
Locks = list[tuple[str, int]]  # (lock file, flock mode)


def _chain(workspace: Path) -> list[str]:
    """The lock files' names (without their kind) for ``workspace`` and each directory
    above it, nearest first: each directory's device and inode, which a bind mount
    shares, in Trestle's configuration directory."""
    where = f"{config_dir()}/holds/"
    real = os.path.realpath(workspace)
    keys = []
    while True:
        try:
            info = os.stat(real)
            keys.append(f"{where}{info.st_dev}-{info.st_ino}")
        except OSError:  # gone (a command there fails to start, saying so): by its name
            keys.append(f"{where}path-{hashlib.sha256(os.fsencode(real)).hexdigest()[:32]}")
        parent = os.path.dirname(real)
        if parent == real:
            return keys
        real = parent


def _file(key: str, kind: str) -> str:
    return f"{key}.{kind}"


def _command_locks(chain: list[str]) -> Locks:
    """What a command holds while it runs: *here* of its workspace, *below* of each
    directory above it, shared."""
    here, above = chain[0], chain[1:]
    return [
        (_file(here, "here"), fcntl.LOCK_SH),
        *((_file(a, "below"), fcntl.LOCK_SH) for a in above),
    ]


def _try(locks: Locks) -> list[int] | None:
    """Each lock taken in its mode (without waiting): their descriptors, or None, with
    none kept, if another holds one."""
    held: list[int] = []
    try:
        for file, mode in locks:
            held.append(_open(file))
            fcntl.flock(held[-1], mode | fcntl.LOCK_NB)
    except BlockingIOError:
        _let_go(held)
        return None
    except BaseException:
        _let_go(held)
        raise
    return held


def _open(file: str) -> int:
    flags = os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        return os.open(file, flags, 0o600)
    except FileNotFoundError:  # the directory is made on the first hold
        os.makedirs(os.path.dirname(file), mode=0o700, exist_ok=True)
        return os.open(file, flags, 0o600)


def _let_go(held: list[int]) -> None:
    for fd in held:
        os.close(fd)  # closing the last descriptor of an open file drops its lock


def _try_command(chain: list[str]) -> list[int] | None:
    """A command's holds, taken through its workspace's gate and the pass of each
    directory above it (closed while an approved command holds the workspace, one above
    it or one below it: then None)."""
    passing = [(_file(chain[0], "gate"), fcntl.LOCK_EX)]
    passing += [(_file(key, "pass"), fcntl.LOCK_EX) for key in chain[1:]]
    gates = _try(passing)
    if gates is None:
        return None
    try:
        return _try(_command_locks(chain))
    finally:
        _let_go(gates)


def _free(chain: list[str]) -> bool:
    """Whether no command runs in the workspace of ``chain`` nor above it."""
    for key in chain:
        held = _try([(_file(key, "here"), fcntl.LOCK_EX)])
        if held is None:
            return False
        _let_go(held)
    return True


@contextlib.asynccontextmanager
async def held_shared(workspace: Path) -> AsyncIterator[None]:
    """Hold ``workspace`` shared while the body runs: wait while another run's approved
    command holds it (or a directory above or below it)."""
    chain = _chain(workspace)
    if chain[0] in _EXCLUSIVE.get():
        yield
        return
    while (held := _try_command(chain)) is None:
        await asyncio.sleep(POLL)
    try:
        yield
    finally:
        _let_go(held)


async def hold_exclusive(workspace: Path) -> Release:
    """Hold ``workspace`` exclusively, once no command of another run runs in it, above
    or below it; what lets it go. The current task's own commands pass meanwhile."""
    chain = _chain(workspace)
    if chain[0] in _EXCLUSIVE.get():
        return _nothing
    closing: Locks = [(_file(key, "gate"), fcntl.LOCK_SH) for key in chain]
    closing.append((_file(chain[0], "pass"), fcntl.LOCK_SH))
    while (closed := _try(closing)) is None:  # no command starts here, above or below
        await asyncio.sleep(POLL)
    try:
        below = [(_file(chain[0], "below"), fcntl.LOCK_EX)]
        while (emptied := _try(below)) is None:  # those running below it end
            await asyncio.sleep(POLL)
        closed += emptied
        while not _free(chain):  # and those running here and above
            await asyncio.sleep(POLL)
        while (own := _try(_command_locks(chain))) is None:  # as a command: an approved
            await asyncio.sleep(POLL)  # one above waits for it, or it for that one
    except BaseException:
        _let_go(closed)
        raise
    _EXCLUSIVE.set(_EXCLUSIVE.get() | {chain[0]})

    async def release() -> None:
        _EXCLUSIVE.set(_EXCLUSIVE.get() - {chain[0]})
        _let_go([*own, *closed])

    return release


async def _nothing() -> None:
    return None
