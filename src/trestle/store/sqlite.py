"""SQLite store: WAL, ``synchronous=FULL``, numbered migrations via ``PRAGMA user_version``.

One connection per store, guarded by a lock; the engine calls it from one worker thread
so the event loop never blocks on a commit. Every batch of events, its listing row,
snapshot and consumed requests commit in a single transaction (one fsync).

An event's long strings (a file the model read, its answer) are stored apart, once per
run by content hash and compressed (:mod:`trestle.store.payloads`, schema 3); the
event's row keeps references and is marked ``packed``. Since schema 6 the longest of
those strings are stored in pieces shared between texts that repeat one another, and
the row's body itself is compressed (:mod:`trestle.store.bodies`; flags in
:mod:`trestle.store.decoding`). Rows from before are read as they were written.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from functools import partial
from pathlib import Path
from secrets import token_hex
from typing import TYPE_CHECKING, NoReturn, TypeVar

from trestle.core.errors import (
    LeaseHeldError,
    LeaseLostError,
    NoStoreError,
    RunExistsError,
    StoreDamagedError,
    StoreError,
)
from trestle.store import decoding, payloads, sqlite_groups
from trestle.store.base import (
    Appended,
    BoardWrite,
    Lease,
    Message,
    Owner,
    Refusal,
    RequestKind,
    delivered_ids,
    owner_is_alive,
    refuse_if,
    require_message,
    require_storable,
    require_text,
)
from trestle.store.sql_reads import PENDING, SqlReads, requests_of
from trestle.store.sqlite_file import (
    FileId,
    check_file,
    hold,
    prepare_directory,
    read_only_cause,
    read_only_error,
    read_only_uri,
    release,
    store_failure,
)

if TYPE_CHECKING:
    from trestle.core.events import RunCreated

MIGRATIONS: tuple[str, ...] = (
    # 1: the initial schema
    """
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        goal TEXT NOT NULL,
        plan_path TEXT,
        workspace TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        last_seq INTEGER NOT NULL,
        summary TEXT NOT NULL
    );
    CREATE TABLE events (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        v INTEGER NOT NULL,
        at REAL NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE snapshots (
        run_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        state TEXT NOT NULL
    );
    CREATE TABLE leases (
        run_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        token INTEGER NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE TABLE requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        step TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_at REAL NOT NULL,
        consumed INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX requests_pending ON requests (run_id) WHERE consumed = 0;
    """,
    # 2: approval decisions carry a signed payload
    """
    ALTER TABLE requests ADD COLUMN payload TEXT NOT NULL DEFAULT ''
    """,
    # 3: an event's large strings stored once per run, by hash, compressed
    # (trestle.store.payloads); ``packed`` events hold references to them
    """
    CREATE TABLE payloads (
        run_id TEXT NOT NULL,
        hash BLOB NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (run_id, hash)
    );
    ALTER TABLE events ADD COLUMN packed INTEGER NOT NULL DEFAULT 0
    """,
    # 4: groups of runs: the blackboard's log and the messages (trestle.store.sqlite_groups)
    sqlite_groups.MIGRATION,
    # 5: a snapshot carries its monitors' state and the engine's signature; one without
    # a signature is not trusted, so the events it sums up are folded instead
    """
    ALTER TABLE snapshots ADD COLUMN monitors BLOB NOT NULL DEFAULT x'';
    ALTER TABLE snapshots ADD COLUMN mac TEXT NOT NULL DEFAULT ''
    """,
    # 6: no new table or column: event bodies may be compressed (``packed`` flag 2,
    # trestle.store.bodies), a long payload may be a manifest of shared pieces
    # (trestle.store.payloads), and a snapshot's state is compressed (a blob). The
    # number tells an older Trestle it cannot read them.
    "",
)

T = TypeVar("T")
BUSY_RETRY_SECONDS = 30.0
PAYLOADS_PER_READ = 500  # hashes per query: under SQLite's limit on parameters
# payload hashes remembered per run as committed: more than a saved conversation holds
REMEMBERED_PAYLOADS = 4096

# The write-ahead log is copied into the database once it holds this many pages (1 MB;
# SQLite's default is 1,000). A driver killed mid-run leaves up to that much behind,
# and the first commit of the driver that resumes it copies it all: after a 1,000-turn
# agent run, 4.4 MB took 9-12 ms of the resume at the default, 2-3 ms at this size. The
# copies come four times as often while running: 3.07 ms a turn before, 3.10 after
# (six alternated runs of 2,000 turns each; within their spread).
_WAL = ("wal_autocheckpoint=256",)
# what an append is fenced by: the token of the run's lease (NULL: none) and the run's
# last seq (NULL: no such run); always one row
_FENCE = (
    "SELECT (SELECT token FROM leases WHERE run_id = ?), "
    "(SELECT last_seq FROM runs WHERE run_id = ?)"
)


class SqliteStore(SqlReads):
    """The default store: one SQLite file, safe to share between processes.

    A store that cannot be written (a read-only file, directory or mount) still opens
    for reading; ``read_only`` then says why, and every write raises StoreError.
    """

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        self._shown = str(self.path)
        self._lock = threading.Lock()
        # per run, the hashes of the latest payloads this store committed: an agent's
        # saved conversation refers to dozens of texts stored turns ago, which are
        # then not compressed again to be ignored by the insert
        self._committed: dict[str, OrderedDict[bytes, None]] = {}
        if not self.path.exists() and not self.path.is_symlink():
            if not create:  # reading never leaves an empty store (or its directory) behind
                _refuse_missing(self.path)
            self._create()
        check_file(self.path)
        self.read_only: str | None = read_only_cause(self.path)
        self._db = self._connect()
        # only a write-ahead log keeps an unsynced commit whole through a power loss
        # (see _tx); a rollback journal could be left damaged
        self._wal = str(self._db.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"
        self._held: FileId | None = hold(self.path)  # see trestle.store.sqlite_file: why
        self._migrate()

    def _create(self) -> None:
        """Build a new store beside its path, then publish it whole with a hard link.

        So a file at the store's path is always a complete store, and an empty file is
        never one Trestle is still creating. Of processes creating the store at once,
        the first link wins; the others open the store it published.
        """
        prepare_directory(self.path)
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}-{token_hex(4)}.new")
        try:
            db = sqlite3.connect(temp, isolation_level=None)
            os.chmod(temp, 0o600)  # its owner's alone; SQLite gives its log the same
            try:
                db.execute("PRAGMA journal_mode=WAL")  # recorded in the file's header
                db.execute("BEGIN IMMEDIATE")
                _apply_migrations(db)
                db.execute("COMMIT")
            finally:
                db.close()
            try:
                os.link(temp, self.path)
            except FileExistsError:
                pass  # another process published its store first: open that one
            except OSError:  # a file system without hard links
                if not self.path.exists():
                    os.replace(temp, self.path)
        except (sqlite3.Error, OSError) as exc:
            cause = read_only_cause(self.path) or str(exc)
            raise StoreError(f"{self.path}: cannot create the store: {cause}") from None
        finally:
            for leftover in (temp, *(Path(f"{temp}-{end}") for end in ("wal", "shm", "journal"))):
                with suppress(OSError):
                    leftover.unlink()

    def _connect(self) -> sqlite3.Connection:
        connect = partial(
            sqlite3.connect,
            timeout=BUSY_RETRY_SECONDS,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            if self.read_only is None:
                db = connect(self.path)
                # switching a new file to WAL reports "locked" at once, without waiting,
                # when another process is opening it too: retried like any busy moment
                for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", *_WAL):
                    self._retry_busy(partial(db.execute, f"PRAGMA {pragma}"), "opening the store")
            else:
                db = connect(read_only_uri(self.path), uri=True)
            # reads the schema: a store whose first pages are damaged is named here
            made = self._retry_busy(
                lambda: db.execute(
                    "SELECT type, name FROM sqlite_master WHERE type IN ('trigger', 'view')"
                ).fetchall(),
                "opening the store",
            )
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot open the store: {exc}") from None
        if made:
            db.close()
            raise StoreError(_not_made_here(self.path, made))
        return db

    def _migrate(self) -> None:
        version = int(str(self._read("PRAGMA user_version", doing="opening the store")[0][0]))
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path}: store schema version {version} is newer than this "
                f"Trestle understands ({len(MIGRATIONS)}); upgrade Trestle"
            )
        if version < len(MIGRATIONS):
            with self._tx("upgrading its schema") as db:
                _apply_migrations(db)

    @contextmanager
    def _tx(
        self, doing: str, *, then: str = "try again", synced: bool = True
    ) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken up front (BEGIN IMMEDIATE) so it cannot deadlock.

        SQLite's errors become store errors that say what ``doing`` met (damage, a
        read-only store, a full disk); the transaction is rolled back, so nothing of
        it is recorded and everything recorded before stays as it was.

        ``synced=False``: the commit does not wait for the disk (``synchronous=NORMAL``
        for this one transaction; in a store with a write-ahead log, else it is synced).
        Only for what a power loss may take back harmlessly: it is written to the log
        all the same, so a killed process loses none of it, and the next synced commit
        makes it durable with its own, since the log is replayed in order up to its
        last synced commit.
        """
        if self.read_only is not None:
            raise read_only_error(self.path, self.read_only, doing)
        unsynced = not synced and self._wal
        with self._lock:
            if unsynced:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._retry_busy(lambda: self._db.execute("BEGIN IMMEDIATE"), doing)
                try:
                    yield self._db
                    self._retry_busy(lambda: self._db.execute("COMMIT"), doing, then=then)
                except sqlite3.Error as exc:
                    self._rollback()
                    raise store_failure(self.path, exc, doing, then=then) from None
                except UnicodeDecodeError:
                    self._rollback()
                    raise StoreDamagedError(self.path, f"unreadable bytes while {doing}") from None
                except BaseException:
                    self._rollback()
                    raise
            finally:
                if unsynced:
                    self._db.execute("PRAGMA synchronous=FULL")

    def _rollback(self) -> None:
        # some errors (a full disk, I/O) end the transaction themselves
        with suppress(sqlite3.Error):
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")

    def _retry_busy(self, op: Callable[[], T], doing: str, *, then: str = "try again") -> T:
        # sqlite's own busy timeout covers most contention; WAL checkpoints can still
        # report "locked" immediately, so keep trying until the same deadline
        deadline = time.monotonic() + BUSY_RETRY_SECONDS
        while True:
            try:
                return op()
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or time.monotonic() > deadline:
                    raise store_failure(self.path, exc, doing, then=then) from None
                time.sleep(0.01)
            except sqlite3.Error as exc:
                raise store_failure(self.path, exc, doing, then=then) from None
            except UnicodeDecodeError:  # SQLite's message quotes the damaged bytes
                raise StoreDamagedError(self.path, f"unreadable bytes while {doing}") from None

    def _read(
        self, sql: str, *args: object, doing: str = "reading the store"
    ) -> list[tuple[object, ...]]:
        with self._lock:
            return self._retry_busy(lambda: self._db.execute(sql, args).fetchall(), doing)

    # --- runs and events ----------------------------------------------------------

    def create_run(self, event: RunCreated, *, summary: str) -> None:
        """Refuses to start a run in a store with damaged pages (``PRAGMA quick_check``:
        about 40 ms for a 50 MB store, once per new run)."""
        found = self._read("PRAGMA quick_check(5)", doing="checking the store's pages")
        problems = [str(row[0]) for row in found if row[0] != "ok"]
        if problems:
            raise StoreDamagedError(
                self.path, f"SQLite's check finds damaged pages: {'; '.join(problems)[:300]}"
            )
        from trestle.core.events import event_json  # see decoding.decoded

        with self._tx(f"recording the new run {event.run_id!r}") as db:
            if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (event.run_id,)).fetchone():
                raise RunExistsError(f"run {event.run_id!r} exists")
            db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, 'created', ?, ?, 1, ?)",
                (
                    event.run_id,
                    event.plan.goal,
                    event.plan_path,
                    event.workspace,
                    event.at,
                    event.at,
                    summary,
                ),
            )
            db.execute(
                "INSERT INTO events (run_id, seq, kind, v, at, data) VALUES (?, 1, ?, ?, ?, ?)",
                (
                    event.run_id,
                    event.kind,
                    event.v,
                    event.at,
                    event_json(event),
                ),
            )

    def append(self, run_id: str, batch: Appended, *, token: int) -> None:
        from trestle.core.events import event_json  # see decoding.decoded

        rows = []
        stored: list[payloads.Payload] = []
        committed = self._committed.setdefault(run_id, OrderedDict())
        for seq, e in enumerate(batch.events, start=batch.first_seq):
            data, flags, large = decoding.row_body(event_json(e), committed)
            rows.append((run_id, seq, e.kind, e.v, e.at, data, flags))
            stored += large
        last_seq = batch.first_seq + len(rows) - 1
        now = batch.events[-1].at if batch.events else None  # no events: keep updated_at
        doing = f"recording events {batch.first_seq}-{last_seq} of run {run_id!r}"
        with self._tx(doing, then=_resume(run_id)) as db:
            # the lease's token and the run's last seq in one statement: a plan step's
            # commit is on its path, and each statement costs a few microseconds
            token_held, last = db.execute(_FENCE, (run_id, run_id)).fetchone()
            if token_held != token:
                raise LeaseLostError(
                    f"run {run_id!r}: another process took over the run; this one stops"
                )
            if last is None or last + 1 != batch.first_seq:
                raise ValueError(f"run {run_id!r}: seq {batch.first_seq} out of order")
            if stored:
                db.executemany(
                    "INSERT OR IGNORE INTO payloads VALUES (?, ?, ?)",
                    [(run_id, digest, blob) for digest, blob in payloads.distinct(stored)],
                )
            db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            db.execute(
                "UPDATE runs SET status = ?, updated_at = COALESCE(?, updated_at), last_seq = ?, "
                "summary = ? WHERE run_id = ?",
                (batch.status, now, last_seq, batch.summary, run_id),
            )
            if batch.snapshot is not None:
                db.execute(
                    "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?)",
                    (
                        run_id,
                        batch.snapshot.seq,
                        # cold: read once, by a resume (its signature is over the text)
                        decoding.stored_state(batch.snapshot.state_json),
                        batch.snapshot.monitors,
                        batch.snapshot.mac,
                    ),
                )
            if batch.consumed_requests:
                db.executemany(
                    "UPDATE requests SET consumed = 1 WHERE id = ?",
                    [(i,) for i in batch.consumed_requests],
                )
            delivered = delivered_ids(batch.events)
            if delivered:  # in the commit that puts them into the run's conversation
                db.executemany(
                    "UPDATE messages SET delivered_at = ?, delivered_by = ? "
                    "WHERE id = ? AND delivered_at IS NULL",
                    [(now, run_id, mid) for mid in delivered],
                )
        with self._lock:  # known once the commit is in
            for digest, _ in stored:
                committed[digest] = None
                committed.move_to_end(digest)
            while len(committed) > REMEMBERED_PAYLOADS:
                committed.popitem(last=False)

    def _payload_rows(self, run_id: str, wanted: list[bytes]) -> dict[bytes, bytes]:
        found: dict[bytes, bytes] = {}
        for start in range(0, len(wanted), PAYLOADS_PER_READ):
            chunk = wanted[start : start + PAYLOADS_PER_READ]
            marks = ",".join("?" * len(chunk))
            rows = self._read(
                f"SELECT hash, data FROM payloads WHERE run_id = ? AND hash IN ({marks})",
                run_id,
                *chunk,
                doing=f"reading run {run_id!r}'s payloads",
            )
            for digest, data in rows:
                if isinstance(digest, bytes) and isinstance(data, bytes):
                    found[digest] = data  # anything else is missing: named by the caller
        return found

    def _damaged(self, run_id: str, problem: str) -> NoReturn:
        raise StoreDamagedError(self.path, f"run {run_id!r}: {problem}", run_id=run_id)

    # --- leases -------------------------------------------------------------------

    # A lease is not synced to disk (see _tx): it says which process drives the run,
    # and a power loss ends every process. A lease a driver acted under is made durable
    # by that act's own synced commit, so its token never goes back below one in use.
    def acquire_lease(self, run_id: str, owner: Owner, *, ttl: float, now: float) -> Lease:
        with self._tx(
            f"taking the lease on run {run_id!r}", then=_resume(run_id), synced=False
        ) as db:
            row = db.execute(
                "SELECT owner, pid, host, token, expires_at FROM leases WHERE run_id = ?",
                (run_id,),
            ).fetchone()
            token = 1
            if row is not None:
                holder, held, expires = self._lease_row(run_id, row)
                if expires > now and owner_is_alive(holder):
                    raise LeaseHeldError(
                        f"run {run_id!r} is being driven by {holder.name} (pid {holder.pid} "
                        f"on {holder.host}); wait for it to finish or stop it first"
                    )
                token = held + 1
            db.execute(
                "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, owner.name, owner.pid, owner.host, token, now + ttl),
            )
        return Lease(owner=owner, token=token, expires_at=now + ttl)

    def renew_lease(self, run_id: str, token: int, *, ttl: float, now: float) -> None:
        with self._tx(
            f"renewing the lease on run {run_id!r}", then=_resume(run_id), synced=False
        ) as db:
            cur = db.execute(
                "UPDATE leases SET expires_at = ? WHERE run_id = ? AND token = ?",
                (now + ttl, run_id, token),
            )
            if cur.rowcount != 1:
                raise LeaseLostError(f"run {run_id!r}: lease lost to another process")

    def release_lease(self, run_id: str, token: int) -> None:
        with self._tx(
            f"releasing the lease on run {run_id!r}", then=_resume(run_id), synced=False
        ) as db:
            # keep the row so the token keeps rising; just make it expired
            db.execute(
                "UPDATE leases SET expires_at = 0 WHERE run_id = ? AND token = ?",
                (run_id, token),
            )

    # --- human requests -----------------------------------------------------------

    def add_request(
        self,
        run_id: str,
        kind: RequestKind,
        step: str,
        reason: str,
        *,
        now: float,
        payload: str = "",
        unless: Refusal | None = None,
    ) -> int:
        require_storable(run_id, step=step, reason=reason, payload=payload)
        self.run(run_id)
        with self._tx(f"recording a {kind} request for run {run_id!r}") as db:
            refuse_if(unless, lambda: requests_of(db.execute(PENDING, (run_id,)).fetchall()))
            cur = db.execute(
                "INSERT INTO requests (run_id, kind, step, reason, created_at, payload) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, kind, step, reason, now, payload),
            )
            return int(cur.lastrowid or 0)

    def delete_run(self, run_id: str) -> int:
        self.run(run_id)
        self._committed.pop(run_id, None)
        with self._tx(f"deleting run {run_id!r}") as db:
            count = db.execute("DELETE FROM events WHERE run_id = ?", (run_id,)).rowcount
            for table in ("payloads", "snapshots", "leases", "requests", "runs"):
                db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            return count

    # --- groups: the blackboard and the mailboxes ------------------------------------

    def board_write(
        self,
        group: str,
        key: str,
        value: str,
        *,
        expected: int | None,
        writer: str,
        step: str = "",
        call_key: str = "",
        now: float,
    ) -> BoardWrite:
        owner = f"group {group[:200]!r}: the board write's"
        require_text(owner, group=group, key=key, value=value, writer=writer, step=step)
        with self._tx(f"writing {key!r} on group {group!r}'s board") as db:
            return sqlite_groups.compare_and_set(
                db,
                group,
                key,
                value,
                expected=expected,
                writer=writer,
                step=step,
                call_key=call_key,
                now=now,
            )

    def send_message(self, message: Message) -> bool:
        require_message(message)
        with self._tx(f"sending a message in group {message.group!r}") as db:
            cur = db.execute(
                f"INSERT OR IGNORE INTO messages ({sqlite_groups.MESSAGE_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                sqlite_groups.message_row(message),
            )
            return cur.rowcount == 1

    def take_messages(
        self, group: str, recipient: str, *, by: str, now: float, reply_to: str | None = None
    ) -> list[Message]:
        where, args = sqlite_groups.message_filter(group, recipient, True, reply_to)
        with self._tx(f"receiving {recipient!r}'s messages in group {group!r}") as db:
            rows = db.execute(
                f"SELECT {sqlite_groups.MESSAGE_COLUMNS} FROM messages WHERE {where} "
                "ORDER BY rowid",
                args,
            ).fetchall()
            taken = [sqlite_groups.message(r) for r in rows]
            db.executemany(
                "UPDATE messages SET delivered_at = ?, delivered_by = ? WHERE id = ?",
                [(now, by, m.id) for m in taken],
            )
        return [replace(m, delivered_at=now, delivered_by=by) for m in taken]

    def compact(self) -> None:
        """Give the space of deleted rows back to the file system: VACUUM, then fold
        the write-ahead log into the file and truncate it."""
        if self.read_only is not None:
            raise read_only_error(self.path, self.read_only, "compacting the store")
        with self._lock:
            for sql in ("VACUUM", "PRAGMA wal_checkpoint(TRUNCATE)"):
                self._retry_busy(partial(self._db.execute, sql), "compacting the store")

    def reader(self) -> SqliteStore:
        """Another handle on this store, with a connection of its own: its reads do not
        wait behind a write of this one's that waits for the store (a write-ahead log
        lets them read while another connection writes)."""
        return SqliteStore(self.path, create=False)

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._held is not None:
                release(self._held)
                self._held = None


def _resume(run_id: str) -> str:
    return f"continue with `trestle resume {run_id}`"


def _refuse_missing(path: Path) -> NoReturn:
    blocked = next((p for p in path.parents if p.exists()), None)
    if blocked is not None and not blocked.is_dir():
        raise StoreError(f"{path}: cannot open the store: {blocked} is not a directory")
    raise NoStoreError(f"no store at {path}")


def _not_made_here(path: Path, made: list[tuple[str, str]]) -> str:
    """Why a store holding triggers or views is not opened: Trestle makes none, and a
    trigger runs in the connection of whoever writes (a file a step planted where a
    later run keeps its store, ``src/.trestle/trestle.db``, rewrote each event the
    driver recorded)."""
    named = ", ".join(f"{kind} {name!r}" for kind, name in made[:5])  # repr escapes controls
    return (
        f"{path}: not opened: it holds {named}, which Trestle never makes; a step can "
        "write a file like it in its workspace. Use another store (--store PATH), or "
        "move this one away if you did not make it"
    )


def _apply_migrations(db: sqlite3.Connection) -> None:
    """Bring the schema up to date, inside the caller's write transaction (another
    process may have done it since the version was first read)."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        for statement in filter(str.strip, script.split(";")):
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {number}")
