"""The SQLite store's file, looked at from outside SQLite: is it a whole database?

Cheap enough for every open (one ``stat`` and the 100-byte header): an empty file, a
file that is not SQLite, and a file cut short are named before SQLite reads a page.
Damage inside pages shows later, as SQLite's "malformed" errors, which
:func:`store_failure` turns into :class:`StoreDamagedError` as well.

The header is read only when this process has no store open on the file. Closing any
descriptor of a file drops every POSIX lock the process holds on it, SQLite's too; a
second open of a store the process already had open would then leave the first
without its locks, and another process closing the store last would delete the
write-ahead log under it, with the commits it went on making (see SQLite's "How To
Corrupt An SQLite Database File", 2.2).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections import Counter
from pathlib import Path

from trestle.core.errors import StoreDamagedError, StoreError

SQLITE_MAGIC = b"SQLite format 3\x00"
HEADER_BYTES = 100

EMPTY_RECOVER = (
    "Trestle creates a new store whole, so an empty file at the store's path is not one "
    "of its stores; if nothing was recorded there, delete the file and Trestle creates "
    "a new store, otherwise restore the store from a backup"
)
NOT_SQLITE_RECOVER = (
    "nothing in it can be read as a store; check that the path is right, or move the "
    "file away (Trestle then creates a new store) or restore the store from a backup"
)

TEXT_RECOVER = (
    "check the path given as --store or in $TRESTLE_STORE: a store is the SQLite file a "
    "run made, by default .trestle/trestle.db in the plan's workspace (`trestle runs` "
    "finds the nearest); the file was left as it is"
)

# what to do with a file that holds nothing SQLite can read, said instead of .recover
UNREADABLE_RECOVERS = (EMPTY_RECOVER, NOT_SQLITE_RECOVER, TEXT_RECOVER)


def text_begins(header: bytes) -> str | None:
    """The first line of a file whose first bytes are text (a plan, a config), or None."""
    text = ""
    for cut in range(4):  # the header's last character may be cut in its middle
        try:
            text = header[: len(header) - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    if not text or any(not (c.isprintable() or c in "\t\r\n") for c in text):
        return None
    first = text.strip().splitlines()
    return first[0][:40] if first else None


STORE_DIRECTORY = ".trestle"
GITIGNORE = "# Created by Trestle: the store and checkpoints are not part of the project.\n*\n"


def prepare_directory(path: Path) -> None:
    """Make the directory a new store at ``path`` goes in.

    A ``.trestle`` directory gets a ``.gitignore`` of ``*`` (as pytest and ruff give
    their caches), so a step's ``git add -A`` never commits the store or checkpoints.
    One the user already wrote is left as it is. A ``.trestle`` directory made here is
    its owner's alone (0700), as the store file is (0600): other users of the machine
    read every step's output in them.
    """
    directory = path.parent
    try:
        # a store's own directory is its owner's alone: it holds every step's output
        private = directory.name == STORE_DIRECTORY and not directory.exists()
        directory.mkdir(mode=0o700 if private else 0o777, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{path}: cannot create the store: {exc.strerror or exc}") from None
    if directory.name != STORE_DIRECTORY:
        return
    try:
        fd = os.open(directory / ".gitignore", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError:  # already there, or a read-only directory the store creation names
        return
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(GITIGNORE)


def wal_bytes(path: Path) -> int:
    """The size of the store's write-ahead log, 0 when there is none."""
    try:
        return os.stat(f"{path}-wal").st_size
    except OSError:
        return 0


FileId = tuple[int, int]  # (device, inode)
_open_here: Counter[FileId] = Counter()  # stores this process has open, by file
_open_lock = threading.Lock()


def hold(path: Path) -> FileId:
    """Note that this process has a store open on ``path`` (until :func:`release`)."""
    info = os.stat(path)
    held = (info.st_dev, info.st_ino)
    with _open_lock:
        _open_here[held] += 1
    return held


def release(held: FileId) -> None:
    with _open_lock:
        _open_here[held] -= 1
        if _open_here[held] <= 0:
            del _open_here[held]


def check_file(path: Path) -> None:
    """Refuse a store file that cannot be a whole Trestle store, naming why.

    Raises:
        StoreError: the path is a directory, not a regular file, or unreadable.
        StoreDamagedError: the file is empty, not SQLite, or shorter than its header says.
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        raise StoreError(f"{path}: cannot open the store: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise StoreError(f"{path}: cannot open the store: it is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise StoreError(f"{path}: cannot open the store: it is not a regular file")
    if info.st_size == 0:
        raise StoreDamagedError(path, "the file is empty (0 bytes)", recover=EMPTY_RECOVER)
    with _open_lock:
        if (info.st_dev, info.st_ino) in _open_here:
            return  # checked when first opened; reading it now would drop SQLite's locks
    try:
        with open(path, "rb") as f:
            header = f.read(HEADER_BYTES)
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the store: {exc.strerror or exc}") from None
    problem = header_problem(header, info.st_size, wal=wal_bytes(path))
    begins = text_begins(header)
    if problem is not None and begins is not None:
        # a plan or a config named as the store: moving it away, or a backup, is no help
        raise StoreDamagedError(
            path,
            f"the file is text, beginning {begins!r}, not a SQLite database",
            recover=TEXT_RECOVER,
            heading="not a store",
        )
    if problem is not None:
        recover = NOT_SQLITE_RECOVER if "not a SQLite database" in problem else None
        raise StoreDamagedError(path, problem, recover=recover)
    _refuse_a_journal(path, header)


def _refuse_a_journal(path: Path, header: bytes) -> None:
    """Refuse a store kept with a write-ahead log that has a rollback journal beside it:
    SQLite never writes one for such a store, and the first connection opened would
    play it back into the store, whatever it holds. A command could write one where
    the store is kept right in the workspace and the journal did not exist to be hidden
    (a run of its own making, with a real run's id and a ``python:`` step, replaced the
    store's history, and its code ran in the next ``trestle resume``)."""
    journal = Path(f"{path}-journal")
    if header[18:20] == b"\x02\x02" and os.path.lexists(journal):  # the log's versions
        raise StoreError(
            f"{path}: not opened: {journal.name} lies beside it, a rollback journal "
            "SQLite never writes for a store kept with a write-ahead log, so something "
            "else wrote it (a command, where the store is kept in the workspace) to be "
            f"played back into the store: look at it, then remove it ({journal})"
        )


def header_problem(header: bytes, size: int, *, wal: int) -> str | None:
    """What the header and the file's size say is wrong, or None."""
    if len(header) < HEADER_BYTES or not header.startswith(SQLITE_MAGIC):
        return f"the file is not a SQLite database ({size} bytes without SQLite's header)"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return f"the file's header is corrupt (page size {page_size})"
    if size % page_size:
        return (
            f"the file is truncated: {size} bytes is not a whole number of {page_size}-byte pages"
        )
    # the header's page count is valid only when its two change counters agree
    pages = int.from_bytes(header[28:32], "big")
    counted = header[24:28] == header[92:96]
    # while a checkpoint copies the log back, the header may run ahead of the file's
    # length for a moment; with no log there is no checkpoint, and a short file is cut
    if counted and pages and size < pages * page_size and wal == 0:
        return (
            f"the file is truncated: {size} bytes, but its header counts {pages} pages "
            f"of {page_size} bytes ({pages * page_size} bytes)"
        )
    return None


def read_only_cause(path: Path) -> str | None:
    """Why nothing can be written to the store at ``path``, or None if it can be."""
    try:
        if os.statvfs(path.parent).f_flag & os.ST_RDONLY:
            return "it is on a read-only file system"
    except OSError:
        return None
    if path.exists() and not os.access(path, os.W_OK):
        return "the file is not writable"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return (
            f"its directory {str(path.parent)!r} is not writable, and SQLite keeps its "
            "log and lock files beside the store"
        )
    return None


def read_only_uri(path: Path) -> str:
    """How to open a store that cannot be written, for reading.

    Read-only mode still needs SQLite's shared-memory file beside the store (made if
    missing). Where none exists and none can be made, no process can be writing the
    store either, so it is read as it stands (``immutable``).
    """
    can_share = os.access(path.parent, os.W_OK | os.X_OK) or os.path.exists(f"{path}-shm")
    return f"{path.resolve().as_uri()}?{'mode=ro' if can_share else 'immutable=1'}"


def read_only_error(path: Path, cause: str, doing: str) -> StoreError:
    return StoreError(
        f"{path}: the store is read-only ({cause}): {doing} needs to write to it; "
        "commands that only read (runs, show, log, dlq, health, doctor) still work"
    )


def store_failure(
    path: Path, exc: sqlite3.Error, doing: str, *, then: str = "try again"
) -> StoreError:
    """The store error that says what SQLite's ``exc`` means for the user; ``then`` is
    what to do once the disk has room again."""
    name = str(getattr(exc, "sqlite_errorname", ""))
    text = str(exc)
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text:
        return StoreDamagedError(path, f"SQLite reports {text!r} while {doing}")
    if "Could not decode" in text:  # bytes that are not UTF-8 where text was written
        return StoreDamagedError(path, f"unreadable text while {doing}: {text[:160]}")
    if "not a database" in text:
        return StoreDamagedError(path, f"the file is not a SQLite database ({text})")
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return read_only_error(path, read_only_cause(path) or "SQLite refuses to write", doing)
    if name == "SQLITE_FULL" or "disk is full" in text:
        return StoreError(
            f"{path}: the disk is full: {doing} failed and was rolled back; everything "
            f"recorded before is intact; free some space, then {then}"
        )
    if isinstance(exc, sqlite3.IntegrityError):
        return StoreDamagedError(path, f"the records disagree while {doing}: {text}")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in text:
        return StoreError(
            f"{path}: {doing} failed: another process kept the store locked ({text}) "
            f"longer than Trestle waits; nothing of it was recorded; {then} once that "
            "process lets go (`fuser` or `lsof` on the file names it)"
        )
    return StoreError(f"{path}: {doing} failed: {text}")
