"""Objects and refs of a shadow store, read and written as git lays them out on disk.

A snapshot's commit and its ref were written by two git processes each (``git
commit-tree``, ``git update-ref``), its blobs and trees by two more (``git
update-index``, ``git write-tree``, see :mod:`trestle.workspace.staging`): 2-3 ms
apiece on the 2-core benchmark machine. Both are small files in a format git documents
and keeps (gitformat-loose: an object is ``<type> <size>\\0<content>``, zlib-compressed,
named by its SHA-1; a loose ref is a file holding the id and a line break), so a store
laid out as ``git init --bare`` makes it (SHA-1 ids, refs as files, no reflogs: the
only layout Trestle creates) has them written here the way git writes them:

- an object to a temporary file (created exclusively, read-only), then linked to its
  name, which an object of the same content may hold already (then it is left as it
  is: the same name is the same content);
- a ref to ``<ref>.lock`` (created exclusively, as in git), then renamed over the ref.

Neither git nor this module syncs them to the disk. Any other layout (another object
format, reftable, reflogs kept) is left to git's own commands (:func:`plain`). Pure
but for the files it reads and writes; the caller holds the store's lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import zlib
from pathlib import Path

# what a store Trestle creates holds in its configuration, and nothing that changes
# how objects and refs are laid out (extensions.*) or what a ref update also writes
# (core.logAllRefUpdates)
_PLAIN_SETTINGS = re.compile(rb"extensions|logallrefupdates|repositoryformatversion\s*=\s*[^0\s]")
_TREE_LINE = re.compile(rb"commit \d+\0tree ([0-9a-f]{40}|[0-9a-f]{64})\n")
_names = itertools.count()


def plain(git_dir: Path) -> bool:
    """Whether the store is laid out as ``git init --bare`` makes it (SHA-1 objects,
    loose refs, no reflogs), so that this module may write its commits and refs."""
    try:
        config = (git_dir / "config").read_bytes()
    except OSError:
        return False
    return _PLAIN_SETTINGS.search(config.lower()) is None and (git_dir / "refs").is_dir()


def write_object(git_dir: Path, kind: bytes, content: bytes) -> str:
    """Store an object of ``kind`` (``blob``, ``tree``, ``commit``) and ``content``; its id."""
    raw = b"%s %d\0" % (kind, len(content)) + content
    oid = hashlib.sha1(raw).hexdigest()
    folder = git_dir / "objects" / oid[:2]
    final = folder / oid[2:]
    if final.exists():
        return oid
    scratch = folder / f"tmp_obj_trestle_{os.getpid()}_{next(_names)}"
    fd = _create(scratch, 0o444)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(zlib.compress(raw, 1))  # git's own level for loose objects
        with contextlib.suppress(FileExistsError):  # written meanwhile: the same bytes
            os.link(scratch, final)
    finally:
        scratch.unlink(missing_ok=True)
    return oid


def write_ref(git_dir: Path, ref: str, oid: str) -> None:
    """Point ``ref`` (``refs/...``) at ``oid``, as ``git update-ref`` does. The caller
    holds the store's lock, under which nothing else writes a ref: a lock file left
    there is a crashed writer's, and is removed first.

    Raises:
        OSError: a file or directory stands where the ref's own must be, or the lock
            was taken again meanwhile (by something that does not hold the store's).
    """
    replace_locked(git_dir / ref, (oid + "\n").encode("ascii"))


def replace_locked(path: Path, data: bytes) -> None:
    """Write ``data`` to ``<path>.lock`` (created exclusively, as git does; one left
    there is a crashed writer's, under the store's lock, and is removed first), then
    rename it over ``path``: a ref's file, an index.

    Raises:
        OSError: it cannot be written, or the lock was taken again meanwhile.
    """
    lock = path.with_name(path.name + ".lock")
    with contextlib.suppress(FileNotFoundError):
        lock.unlink()
    fd = _create(lock, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(lock, path)
    except BaseException:
        lock.unlink(missing_ok=True)
        raise


def _create(path: Path, mode: int) -> int:
    """A new file's descriptor, its directories made first if they are missing (tried
    after: they are there for all but a store's first objects and refs)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        return os.open(path, flags, mode)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, flags, mode)


def commit_header(git_dir: Path, oid: str) -> bytes:
    """The start of a loose object's content, with its header (b"" if it is not loose)."""
    try:
        raw = (git_dir / "objects" / oid[:2] / oid[2:]).read_bytes()
        return zlib.decompressobj().decompress(raw, 96)
    except (OSError, zlib.error):
        return b""


def tree_of(git_dir: Path, oid: str) -> str | None:
    """The tree of commit ``oid`` if it is a loose object here, else None."""
    found = _TREE_LINE.match(commit_header(git_dir, oid))
    return found.group(1).decode() if found else None
