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
repository: the hash whose digest of the file is its checksum), its flags (the name's
length; whether 16 more bits of flags follow) and its path: NUL-ended and padded to a
multiple of eight bytes, or, in version 4, only what differs from the path before (a
number of bytes to drop from that path, then the rest, NUL-ended). A split index
(``core.splitIndex``) keeps most entries in a shared index that the ``link`` extension
names: both are read, and a gitlink either lists counts (holding a checkout that is
gone only keeps its directory as it is). Each index is read once for each version of
its file (device, inode, size, change time), whatever its name.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import struct
from dataclasses import dataclass

from trestle.support.whole_files import start_of

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


@dataclass
class Room:
    """How many bytes of index not read before one look may still read: a look at
    every command's start must end, whatever indexes a step left (a million-entry
    index takes about 0.7 s)."""

    left: int = MOST_BYTES


def gitlinks(git_dir: str, room: Room | None = None) -> tuple[bytes, ...] | None:
    """The paths (bytes, from the top of the tree) of the gitlinks in ``git_dir``'s
    index, and in its shared index when split; () when it has no index; None when it
    was not read before and is larger than ``room`` leaves (then taken from it).

    Raises:
        UnreadableIndex: the index is not one of versions 2 to 4, or is cut short.
    """
    index = os.path.join(git_dir, "index")
    seen = _stat_of(index)
    if seen is None:
        return ()
    found = _READ.get(seen)
    if found is None:
        if room is not None:
            if seen[2] > room.left:
                return None
            room.left -= seen[2]
        found = _read_index(index, git_dir)
        if len(_READ) >= _READ_MOST:
            _READ.clear()
        _READ[seen] = found
    return found


# each index read, by the version of its file (device, inode, size, change time): a
# file linked under many names is read once
_READ: dict[tuple[int, int, int, int], tuple[bytes, ...]] = {}
_READ_MOST = 256


def _stat_of(path: str) -> tuple[int, int, int, int] | None:
    """What tells one version of a regular file from another, or None: no such file."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return info.st_dev, info.st_ino, info.st_size, info.st_ctime_ns


def _read_index(index: str, git_dir: str) -> tuple[bytes, ...]:
    data = _read(index)
    found, shared = _entries(data, _hash_size(data, git_dir))
    if shared is not None:
        named = os.path.join(git_dir, f"sharedindex.{shared}")
        if _stat_of(named) is not None:
            more = _read(named)
            found += _entries(more, _hash_size(more, git_dir))[0]
    return tuple(dict.fromkeys(found))


def _hash_size(data: bytes, git_dir: str) -> int:
    """The object name's length, 20 bytes (SHA-1) or 32 (SHA-256): the one whose hash
    of the index is its checksum; for an index written without one (``index.skipHash``),
    32 where the repository's configuration (its common directory's, for a linked
    worktree) names ``objectformat = sha256``."""
    for size, hashed in ((20, hashlib.sha1), (32, hashlib.sha256)):
        if len(data) > size and hashed(data[:-size]).digest() == data[-size:]:
            return size
    config = os.path.join(git_dir, "config")
    common = start_of(os.path.join(git_dir, "commondir"), 4096).strip()
    if common:
        config = os.path.join(git_dir, os.fsdecode(common), "config")
    return 32 if _SHA256.search(start_of(config, 1 << 20)) else 20


def _read(path: str) -> bytes:
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
