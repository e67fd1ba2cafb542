"""Holding a workspace against other runs while a command a human approved runs.

Within its run and the runs above it, an approved command runs alone: the decider
starts nothing beside it (:mod:`trestle.core.decider`, :mod:`trestle.engines.hold`).
Another run in the same workspace (another driver's, or one more run this process
drives) is held here, by file locks (``flock``) in Trestle's configuration directory,
which every sandbox hides: every command a run starts (:func:`held_shared`, from
:func:`trestle.execution.actions.run_shell`) and every write of an agent's file tools
(:func:`holding_shared`) holds its workspace shared while it runs, and an approved
command holds it exclusively (:func:`hold_exclusive`) from before the check of the
files it names to its end. So no other run changes a file the command reads between
that check and the command's read.

A run's commands can write anywhere in its workspace, and a run may work in a
directory of another's (``ws/sub`` beside ``ws``), so each workspace has two locks:
*here* and *below*. A command holds *here* of its own workspace and *below* of each
directory above it, shared; an approved command holds *here* and *below* of its own
workspace and *here* of each directory above it, exclusively. It so waits for the
commands of runs in its workspace, below it and above it, and for no run beside it
(``ws/a`` and ``ws/b`` share only ``ws``'s *below*, which only commands hold).

Locks are polled, never waited on in the kernel: a task cancelled while it waits (a
stop, a timeout) leaves nothing blocked behind it. A task holding a workspace
exclusively skips its own shared holds (the approved command's own start, its step's
checks), as the context variable :data:`_EXCLUSIVE` tells.

What is not held: a host's flock is its own, so drivers and Temporal workers on two
hosts sharing a workspace over a network file system do not hold one another; nor
does anything but a run's commands and its agent's file tools (a ``python:`` step, the
plan author's own code, or a program the operator runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextvars import ContextVar
from pathlib import Path

from trestle.trust.signing import config_dir

POLL = 0.02  # seconds between two tries at a lock another run holds

# the workspaces the current task holds exclusively (their real paths)
_EXCLUSIVE: ContextVar[frozenset[str]] = ContextVar("trestle_exclusive", default=frozenset())

Release = Callable[[], Awaitable[None]]


def _key(workspace: Path) -> str:
    return os.path.realpath(workspace)


def _locks(key: str, *, exclusive: bool) -> tuple[str, ...]:
    """The lock files a hold of ``key`` takes (see the module)."""
    return _lock_files(str(config_dir() / "holds"), key, exclusive)


@functools.lru_cache(maxsize=256)  # every command asks: named once per workspace
def _lock_files(where: str, key: str, exclusive: bool) -> tuple[str, ...]:
    above = [str(p) for p in Path(key).parents]
    if exclusive:
        named = [(key, "here"), (key, "below"), *((a, "here") for a in above)]
    else:
        named = [(key, "here"), *((a, "below") for a in above)]
    files = {
        f"{where}/{hashlib.sha256(path.encode('utf-8', 'surrogateescape')).hexdigest()[:40]}.{kind}"
        for path, kind in named
    }
    return tuple(sorted(files))


def _try(files: tuple[str, ...], mode: int) -> list[int] | None:
    """Each of ``files`` locked in ``mode`` (without waiting): their descriptors, or
    None, with none kept, if another holds one."""
    held: list[int] = []
    try:
        for file in files:
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


def _held_here(key: str) -> bool:
    return key in _EXCLUSIVE.get()


@contextlib.asynccontextmanager
async def held_shared(workspace: Path) -> AsyncIterator[None]:
    """Hold ``workspace`` shared while the body runs: wait while another run's approved
    command holds it (or a directory above or below it)."""
    key = _key(workspace)
    if _held_here(key):
        yield
        return
    files = _locks(key, exclusive=False)
    while (held := _try(files, fcntl.LOCK_SH)) is None:
        await asyncio.sleep(POLL)
    try:
        yield
    finally:
        _let_go(held)


@contextlib.contextmanager
def holding_shared(workspace: Path) -> Iterator[None]:
    """:func:`held_shared`, for a worker thread (an agent's file tools)."""
    key = _key(workspace)
    if _held_here(key):
        yield
        return
    files = _locks(key, exclusive=False)
    while (held := _try(files, fcntl.LOCK_SH)) is None:
        time.sleep(POLL)
    try:
        yield
    finally:
        _let_go(held)


async def hold_exclusive(workspace: Path) -> Release:
    """Hold ``workspace`` exclusively, once no command of another run runs in it, above
    or below it; what lets it go. The current task's own commands pass meanwhile."""
    key = _key(workspace)
    if _held_here(key):
        return _nothing
    files = _locks(key, exclusive=True)
    while (held := _try(files, fcntl.LOCK_EX)) is None:
        await asyncio.sleep(POLL)
    _EXCLUSIVE.set(_EXCLUSIVE.get() | {key})

    async def release() -> None:
        _EXCLUSIVE.set(_EXCLUSIVE.get() - {key})
        _let_go(held)

    return release


async def _nothing() -> None:
    return None
