"""SQLite store: WAL, ``synchronous=FULL``, numbered migrations via ``PRAGMA user_version``.

One connection per store, guarded by a lock; the engine calls it from one worker thread
so the event loop never blocks on a commit. Every batch of events, its listing row,
snapshot and consumed requests commit in a single transaction (one fsync).
"""

from __future__ import annotations

import difflib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TypeVar

from trestle.errors import LeaseHeldError, LeaseLostError, StoreError, UnknownRunError
from trestle.events import EVENT_ADAPTER, RunCreated, StoredEvent
from trestle.store.base import (
    REQUEST_KINDS,
    Appended,
    Lease,
    Owner,
    Request,
    RequestKind,
    RunRow,
    Snapshot,
    owner_is_alive,
)

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
)

T = TypeVar("T")
BUSY_RETRY_SECONDS = 30.0


class SqliteStore:
    """The default store: one SQLite file, safe to share between processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path,
                timeout=BUSY_RETRY_SECONDS,
                isolation_level=None,
                check_same_thread=False,
            )
            # switching a new file to WAL reports "locked" at once, without waiting,
            # when another process is opening it too: retried like any busy moment
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
                self._retry_busy(partial(self._db.execute, f"PRAGMA {pragma}"))
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{self.path}: cannot open the store: {exc}") from None
        self._lock = threading.Lock()
        self._migrate()

    def _migrate(self) -> None:
        with self._tx() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"{self.path}: store schema version {version} is newer than this "
                    f"Trestle understands ({len(MIGRATIONS)}); upgrade Trestle"
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken up front (BEGIN IMMEDIATE) so it cannot deadlock."""
        with self._lock:
            self._retry_busy(lambda: self._db.execute("BEGIN IMMEDIATE"))
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._retry_busy(lambda: self._db.execute("COMMIT"))

    def _retry_busy(self, op: Callable[[], T]) -> T:
        # sqlite's own busy timeout covers most contention; WAL checkpoints can still
        # report "locked" immediately, so keep trying until the same deadline
        deadline = time.monotonic() + BUSY_RETRY_SECONDS
        while True:
            try:
                return op()
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or time.monotonic() > deadline:
                    raise StoreError(f"{self.path}: {exc}") from None
                time.sleep(0.01)

    def _read(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        with self._lock:
            return self._retry_busy(lambda: self._db.execute(sql, args).fetchall())

    # --- runs and events ----------------------------------------------------------

    def create_run(self, event: RunCreated, *, summary: str) -> None:
        with self._tx() as db:
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
                "INSERT INTO events VALUES (?, 1, ?, ?, ?, ?)",
                (
                    event.run_id,
                    event.kind,
                    event.v,
                    event.at,
                    EVENT_ADAPTER.dump_json(event).decode(),
                ),
            )

    def append(self, run_id: str, batch: Appended, *, token: int) -> None:
        rows = [
            (run_id, seq, e.kind, e.v, e.at, EVENT_ADAPTER.dump_json(e).decode())
            for seq, e in enumerate(batch.events, start=batch.first_seq)
        ]
        last_seq = batch.first_seq + len(rows) - 1
        now = batch.events[-1].at if batch.events else None  # no events: keep updated_at
        with self._tx() as db:
            held = db.execute("SELECT token FROM leases WHERE run_id = ?", (run_id,)).fetchone()
            if held is None or held[0] != token:
                raise LeaseLostError(
                    f"run {run_id!r}: another process took over the run; this one stops"
                )
            row = db.execute("SELECT last_seq FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None or row[0] + 1 != batch.first_seq:
                raise ValueError(f"run {run_id!r}: seq {batch.first_seq} out of order")
            db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", rows)
            db.execute(
                "UPDATE runs SET status = ?, updated_at = COALESCE(?, updated_at), last_seq = ?, "
                "summary = ? WHERE run_id = ?",
                (batch.status, now, last_seq, batch.summary, run_id),
            )
            if batch.snapshot is not None:
                db.execute(
                    "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?)",
                    (run_id, batch.snapshot.seq, batch.snapshot.state_json),
                )
            if batch.consumed_requests:
                db.executemany(
                    "UPDATE requests SET consumed = 1 WHERE id = ?",
                    [(i,) for i in batch.consumed_requests],
                )

    def events(self, run_id: str, after: int = 0, limit: int | None = None) -> list[StoredEvent]:
        self.run(run_id)
        rows = self._read(
            "SELECT seq, data FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            run_id,
            after,
            -1 if limit is None else limit,
        )
        return [
            StoredEvent(
                run_id=run_id, seq=int(str(seq)), event=EVENT_ADAPTER.validate_json(str(data))
            )
            for seq, data in rows
        ]

    def snapshot(self, run_id: str) -> Snapshot | None:
        rows = self._read("SELECT seq, state FROM snapshots WHERE run_id = ?", run_id)
        return Snapshot(seq=int(str(rows[0][0])), state_json=str(rows[0][1])) if rows else None

    def run(self, run_id: str) -> RunRow:
        rows = self._read("SELECT * FROM runs WHERE run_id = ?", run_id)
        if not rows:
            ids = [str(r[0]) for r in self._read("SELECT run_id FROM runs")]
            close = difflib.get_close_matches(run_id, ids, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UnknownRunError(f"no run {run_id!r} in {self.path}{hint}")
        return _run_row(rows[0])

    def runs(self) -> list[RunRow]:
        return [_run_row(r) for r in self._read("SELECT * FROM runs ORDER BY created_at DESC")]

    # --- leases -------------------------------------------------------------------

    def acquire_lease(self, run_id: str, owner: Owner, *, ttl: float, now: float) -> Lease:
        with self._tx() as db:
            row = db.execute(
                "SELECT owner, pid, host, token, expires_at FROM leases WHERE run_id = ?",
                (run_id,),
            ).fetchone()
            token = 1
            if row is not None:
                holder = Owner(name=row[0], pid=row[1], host=row[2])
                if row[4] > now and owner_is_alive(holder):
                    raise LeaseHeldError(
                        f"run {run_id!r} is being driven by {holder.name} (pid {holder.pid} "
                        f"on {holder.host}); wait for it to finish or stop it first"
                    )
                token = row[3] + 1
            db.execute(
                "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, owner.name, owner.pid, owner.host, token, now + ttl),
            )
        return Lease(owner=owner, token=token, expires_at=now + ttl)

    def renew_lease(self, run_id: str, token: int, *, ttl: float, now: float) -> None:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE leases SET expires_at = ? WHERE run_id = ? AND token = ?",
                (now + ttl, run_id, token),
            )
            if cur.rowcount != 1:
                raise LeaseLostError(f"run {run_id!r}: lease lost to another process")

    def release_lease(self, run_id: str, token: int) -> None:
        with self._tx() as db:
            # keep the row so the token keeps rising; just make it expired
            db.execute(
                "UPDATE leases SET expires_at = 0 WHERE run_id = ? AND token = ?",
                (run_id, token),
            )

    def lease(self, run_id: str) -> Lease | None:
        rows = self._read(
            "SELECT owner, pid, host, token, expires_at FROM leases WHERE run_id = ?", run_id
        )
        if not rows:
            return None
        name, pid, host, token, expires = rows[0]
        return Lease(
            owner=Owner(name=str(name), pid=int(str(pid)), host=str(host)),
            token=int(str(token)),
            expires_at=float(str(expires)),
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
    ) -> int:
        self.run(run_id)
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO requests (run_id, kind, step, reason, created_at, payload) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, kind, step, reason, now, payload),
            )
            return int(cur.lastrowid or 0)

    def pending_requests(self, run_id: str) -> list[Request]:
        rows = self._read(
            "SELECT id, run_id, kind, step, reason, created_at, payload FROM requests "
            "WHERE run_id = ? AND consumed = 0 ORDER BY id",
            run_id,
        )
        return [
            Request(
                id=int(str(i)),
                run_id=str(r),
                kind=_request_kind(str(k)),
                step=str(s),
                reason=str(why),
                created_at=float(str(at)),
                payload=str(data),
            )
            for i, r, k, s, why, at, data in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _request_kind(kind: str) -> RequestKind:
    if kind not in REQUEST_KINDS:
        raise StoreError(f"unknown request kind {kind!r} in the requests table")
    return kind


def _run_row(row: tuple[object, ...]) -> RunRow:
    run_id, goal, plan_path, workspace, status, created, updated, last_seq, summary = row
    return RunRow(
        run_id=str(run_id),
        goal=str(goal),
        plan_path=None if plan_path is None else str(plan_path),
        workspace=str(workspace),
        status=str(status),
        created_at=float(str(created)),
        updated_at=float(str(updated)),
        last_seq=int(str(last_seq)),
        summary=str(summary),
    )
