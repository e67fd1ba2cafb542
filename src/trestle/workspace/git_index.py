"""The gitlinks (submodules' paths) a git index file lists, read without git.

The sandbox holds each submodule's checkout so that no command gives one a repository
of its own (see :mod:`trestle.execution.submodule_checkouts`); where they are is known
only from the index of the repository the workspace lies in. Running ``git ls-files``
would do, but the driver runs no git where a step could have chosen the configuration
it obeys, and a command starts many times a run: the index is read here, once for each
version of it (its size, inode and change time).

The format (``Documentation/gitformat-index.txt``): a header (``DIRC``, the version 2, 3
or 4, the number of entries), then the entries sorted by path, each its stat data, its
mode (a gitlink's is ``0o160000``), its object name (20 bytes, 32 in a SHA-256
repository), its flags (the name's length; whether 16 more bits of flags follow) and its
path: NUL-ended and padded to a multiple of eight bytes, or, in version 4, only what
differs from the path before (a number of bytes to drop from that path, then the rest,
NUL-ended). A split index (``core.splitIndex``) keeps most entries in a shared index
that the ``link`` extension names: both are read, and a gitlink either lists counts
(holding a checkout that is gone only keeps its directory as it is).
"""

from __future__ import annotations

import functools
import os
import re
import stat
import struct
from pathlib import Path

GITLINK = 0o160000
_TYPE = 0o170000
_MODE_AT = 24  # ctime, mtime (seconds, nanoseconds each), dev, ino: six 32-bit fields
_FLAGS_AFTER_MODE = 4 * 4  # mode, uid, gid, size, then the object name, then the flags
_EXTENDED = 0x4000
_NAME_LENGTH = 0x0FFF
_WORD, _HALF = struct.Struct(">L"), struct.Struct(">H")
# the largest index read: a repository of a million files has one of about 100 MB
MOST_BYTES = 512 * 1024 * 1024
_SHA256 = re.compile(rb"^\s*objectformat\s*=\s*\"?sha256\"?\s*$", re.IGNORECASE | re.MULTILINE)


class UnreadableIndex(ValueError):
    """The file is not an index this module reads (or not whole)."""


def gitlinks(git_dir: str) -> tuple[bytes, ...]:
    """The paths (bytes, from the top of the tree) of the gitlinks in ``git_dir``'s
    index, and in its shared index when split; () when it has no index.

    Raises:
        UnreadableIndex: the index is not one of versions 2 to 4, or is cut short.
    """
    index = os.path.join(git_dir, "index")
    seen = _stat_of(index)
    if seen is None:
        return ()
    return _gitlinks_of(index, seen)


def _stat_of(path: str) -> tuple[int, int, int, int] | None:
    """What tells one version of a regular file from another, or None: no such file."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return info.st_dev, info.st_ino, info.st_size, info.st_ctime_ns


def _hash_size(git_dir: Path) -> int:
    """The object name's length: 32 bytes in a repository of ``objectformat =
    sha256``, else 20."""
    try:
        with open(git_dir / "config", "rb") as handle:
            config = handle.read(1 << 20)
    except OSError:
        return 20
    return 32 if _SHA256.search(config) else 20


@functools.lru_cache(maxsize=32)
def _gitlinks_of(index: str, seen: tuple[int, int, int, int]) -> tuple[bytes, ...]:
    """``index``'s gitlinks (``seen``: the version of it, for the cache)."""
    git_dir = Path(index).parent
    data = _read(Path(index))
    found, shared = _entries(data, _hash_size(git_dir))
    if shared is not None:
        named = str(git_dir / f"sharedindex.{shared}")
        found += _entries(_read(Path(named)), _hash_size(git_dir))[0] if _stat_of(named) else []
    return tuple(dict.fromkeys(found))


def _read(path: Path) -> bytes:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
    try:
        with os.fdopen(os.open(path, flags), "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise UnreadableIndex(f"{path} is not a regular file")
            data = handle.read(MOST_BYTES + 1)
    except OSError as exc:
        raise UnreadableIndex(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MOST_BYTES:
        raise UnreadableIndex(f"{path} is larger than {MOST_BYTES} bytes")
    return data


def _entries(data: bytes, hash_size: int) -> tuple[list[bytes], str | None]:
    """The gitlinks among ``data``'s entries, and the shared index its ``link``
    extension names (its hex name), if any."""
    if len(data) < 12 or data[:4] != b"DIRC":
        raise UnreadableIndex("not a git index (no DIRC header)")
    version = int.from_bytes(data[4:8], "big")
    count = int.from_bytes(data[8:12], "big")
    if version not in (2, 3, 4):
        raise UnreadableIndex(f"a git index of version {version}")
    flags_at = _MODE_AT + _FLAGS_AFTER_MODE + hash_size
    found: list[bytes] = []
    at, previous = 12, b""
    mode_of, flags_of = _WORD.unpack_from, _HALF.unpack_from
    try:
        for _ in range(count):
            (mode,) = mode_of(data, at + _MODE_AT)
            (flags,) = flags_of(data, at + flags_at)
            name_at = at + flags_at + 2 + (2 if flags & _EXTENDED else 0)
            if version == 4:
                dropped, name_at = _varint(data, name_at)
                end = data.index(b"\0", name_at)
                if dropped > len(previous):
                    raise UnreadableIndex("a path drops more than the path before holds")
                previous = previous[: len(previous) - dropped] + data[name_at:end]
                at = end + 1
                if mode & _TYPE == GITLINK:
                    found.append(previous)
                continue
            length = flags & _NAME_LENGTH  # the name's length, if below the mask
            end = name_at + length if length < _NAME_LENGTH else data.index(b"\0", name_at)
            if mode & _TYPE == GITLINK:
                found.append(data[name_at:end])
            at += (end - at + 8) & ~7  # one to eight NULs, to a multiple of eight
    except (ValueError, IndexError, struct.error):
        raise UnreadableIndex("an entry is cut short") from None
    if at > len(data) - hash_size:
        raise UnreadableIndex("the entries run past the end")
    return found, _shared_index(data, at, hash_size)


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """Git's offset varint at ``at`` (each byte's high bit: more follow; each step adds
    one before shifting), and where it ends."""
    byte = data[at]
    value = byte & 0x7F
    while byte & 0x80:
        at += 1
        byte = data[at]
        value = ((value + 1) << 7) | (byte & 0x7F)
    return value, at + 1


def _shared_index(data: bytes, at: int, hash_size: int) -> str | None:
    """The hex name of the shared index the ``link`` extension (from ``at``) names."""
    end = len(data) - hash_size  # the checksum
    while at + 8 <= end:
        signature, size = data[at : at + 4], int.from_bytes(data[at + 4 : at + 8], "big")
        if signature == b"link" and size >= hash_size:
            name = data[at + 8 : at + 8 + hash_size]
            return None if not any(name) else name.hex()
        at += 8 + size
    return None
