"""Small files several processes share: each written whole, and changed by one writer at
a time (the lists and records in Trestle's configuration and state directories); and
the start of a small file someone else may have left, read without waiting on it."""

from __future__ import annotations

import fcntl
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_whole(path: Path, text: str, *, sync: bool = False) -> None:
    """Replace ``path`` with ``text`` (mode 0600): a reader sees the old text or the
    new, never half. ``sync`` makes the new text durable before it replaces the old."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def locked(lock: Path) -> Iterator[None]:
    """Hold ``lock`` (made, mode 0600, if missing) exclusively for the block. Each call
    opens its own descriptor, so it excludes other threads as well as other processes;
    a lock that cannot be opened raises :class:`OSError` before the block runs."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def start_of(path: str | Path, most: int) -> bytes:
    """The first ``most`` bytes of a regular file, or b"": not blocking, nor through a
    link (a FIFO a step left where a file was expected would hold the reader for ever)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
    try:
        with os.fdopen(os.open(path, flags), "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return b""
            return handle.read(most)
    except OSError:
        return b""
