"""The notification ledger: what was derived for each target, and what was delivered.

A SQLite file beside ``notify.toml`` (``notifications.sqlite``), hidden from sandboxes
as the rest of Trestle's configuration is. It holds, per run, the last seq whose
notices were derived (``through``: a process that takes a run up derives from there,
so notices of a batch committed by a driver that was killed before it derived them
are not lost), and per (dedup key, target) one delivery: its message, its attempts,
when it is due next and its last error. A notice is enqueued once per target however
often it is derived (its dedup key is the row's key).

Delivery is at least once: a delivery is marked delivered after its target took it,
so a process killed between the two has it sent again once the claim it took before
sending runs out (:meth:`Ledger.claim`), by the next process, with the same dedup key,
which the webhook's ``Idempotency-Key`` and the mail's ``Message-ID`` carry.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trestle.trust.signing import config_dir

LEDGER_FILE = "notifications.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS derived (run_id TEXT PRIMARY KEY, through INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    dedup_key TEXT NOT NULL,
    target TEXT NOT NULL,
    run_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,  -- pending | delivered | given_up
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    last_error TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (dedup_key, target)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_at);
"""


@dataclass(frozen=True)
class Delivery:
    dedup_key: str
    target: str
    run_id: str
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class TargetTrouble:
    """A target whose deliveries fail: shown by ``trestle health``."""

    target: str
    failing: int  # deliveries waiting for another try after failing
    given_up: int  # deliveries no longer tried
    last_error: str
    since: float  # when the latest failure was recorded


def trouble_text(t: TargetTrouble) -> str:
    """A failing target in words: what ``trestle health`` and the dashboard's health
    page say of it."""
    if not t.target:  # the ledger itself, not one target
        return f"notifications fail: {t.last_error}"
    given_up = f", {t.given_up} given up" if t.given_up else ""
    return (
        f"notifications to {t.target!r} fail: {t.failing} to be tried again{given_up}; "
        f"last error: {t.last_error} (targets: notify.toml in Trestle's configuration "
        "directory; docs/notifications.md)"
    )


def ledger_path() -> Path:
    return config_dir() / LEDGER_FILE


class Ledger:
    """One connection to the ledger; use from one thread."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or ledger_path()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self.path.chmod(0o600)

    def close(self) -> None:
        self._db.close()

    def through(self, run_id: str) -> int | None:
        row = self._db.execute("SELECT through FROM derived WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else int(row[0])

    def record(
        self,
        run_id: str,
        through: int,
        deliveries: Iterable[tuple[str, str, Mapping[str, Any]]],
        *,
        now: float,
    ) -> None:
        """Enqueue (dedup key, target, message) rows not yet known, and move the run's
        ``through`` on to ``through``, in one transaction."""
        with self._transaction():
            for key, target, payload in deliveries:
                self._db.execute(
                    "INSERT OR IGNORE INTO deliveries (dedup_key, target, run_id, payload,"
                    " status, next_at, updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                    (key, target, run_id, json.dumps(payload), now, now),
                )
            self._db.execute(
                "INSERT INTO derived (run_id, through) VALUES (?, ?) ON CONFLICT (run_id)"
                " DO UPDATE SET through = max(through, excluded.through)",
                (run_id, through),
            )

    def due(self, now: float) -> list[Delivery]:
        rows = self._db.execute(
            "SELECT dedup_key, target, run_id, payload, attempts FROM deliveries"
            " WHERE status = 'pending' AND next_at <= ? ORDER BY next_at",
            (now,),
        ).fetchall()
        return [Delivery(r[0], r[1], r[2], json.loads(r[3]), int(r[4])) for r in rows]

    def claim(self, now: float, until: float) -> list[Delivery]:
        """The deliveries due, each put off to ``until`` in the same transaction: another
        process sharing the ledger (a second worker on this host) does not send them
        too, and a process killed while sending leaves them due again at ``until``."""
        with self._transaction():
            found = self.due(now)
            self._db.executemany(
                "UPDATE deliveries SET next_at = ? WHERE dedup_key = ? AND target = ?",
                [(until, d.dedup_key, d.target) for d in found],
            )
        return found

    def next_due(self) -> float | None:
        row = self._db.execute(
            "SELECT min(next_at) FROM deliveries WHERE status = 'pending'"
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def delivered(self, d: Delivery, *, now: float) -> None:
        self._db.execute(
            "UPDATE deliveries SET status = 'delivered', attempts = attempts + 1,"
            " updated_at = ? WHERE dedup_key = ? AND target = ?",
            (now, d.dedup_key, d.target),
        )

    def failed(self, d: Delivery, error: str, *, now: float, retry_at: float | None) -> None:
        """A failed attempt: tried again at ``retry_at``, or given up when it is None."""
        status = "pending" if retry_at is not None else "given_up"
        self._db.execute(
            "UPDATE deliveries SET status = ?, attempts = attempts + 1, next_at = ?,"
            " last_error = ?, updated_at = ? WHERE dedup_key = ? AND target = ?",
            (status, retry_at or now, error, now, d.dedup_key, d.target),
        )

    def forget_delivered(self, before: float) -> None:
        """Drop deliveries delivered before ``before``: a notice is derived once (only
        events past its run's ``through`` are), so their keys are not needed again."""
        self._db.execute(
            "DELETE FROM deliveries WHERE status = 'delivered' AND updated_at < ?", (before,)
        )

    def troubles(self) -> list[TargetTrouble]:
        """Targets with undelivered deliveries that failed at least once, by name."""
        rows = self._db.execute(
            "SELECT target, sum(status = 'pending'), sum(status = 'given_up'), max(updated_at)"
            " FROM deliveries WHERE status != 'delivered' AND last_error IS NOT NULL"
            " GROUP BY target ORDER BY target"
        ).fetchall()
        found = []
        for target, failing, given_up, since in rows:
            last = self._db.execute(
                "SELECT last_error FROM deliveries WHERE target = ? AND status != 'delivered'"
                " AND last_error IS NOT NULL ORDER BY updated_at DESC LIMIT 1",
                (target,),
            ).fetchone()
            found.append(TargetTrouble(target, int(failing), int(given_up), last[0], since))
        return found

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *_: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def troubles_if_any(path: Path | None = None) -> list[TargetTrouble]:
    """The failing targets of the ledger at ``path``, none when there is no ledger."""
    path = path or ledger_path()
    if not path.exists():
        return []
    try:
        ledger = Ledger(path)
        try:
            return ledger.troubles()
        finally:
            ledger.close()
    except (sqlite3.Error, OSError) as exc:  # what health shows goes on without it
        why = (
            f"the ledger {path} cannot be read ({exc}): nothing is sent until it is moved "
            "away (a new one is made)"
        )
        return [TargetTrouble(target="", failing=0, given_up=0, last_error=why, since=0.0)]
