"""The reads the SQL stores make alike: one query each, for SQLite and PostgreSQL.

Both stores keep the same tables with the same columns (flags as small numbers), so
a read is written once, in SQLite's SQL with ``?`` marks; the PostgreSQL store's
``_read`` puts its own marks in and finds the tables through its search path. What
differs stays with each store: writing (how each takes its turn), reading payload
rows (SQLite caps the parameters of a query), and the few spellings a store names below,
among them where a compressed body or state is read from (PostgreSQL keeps those
bytes in a column of their own beside the text; SQLite in the same column).
Every row is checked as it is read: a value of the wrong type is damage, named by the
run, never a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn

from trestle.core.errors import StoreError, UnknownRunError
from trestle.store import decoding, payloads, sqlite_groups
from trestle.store.base import (
    REQUEST_KINDS,
    BoardEntry,
    BoardKey,
    Lease,
    Message,
    Owner,
    Request,
    RequestKind,
    RunRow,
    Snapshot,
)

if TYPE_CHECKING:
    from trestle.core.events import StoredEvent

RUN_COLUMNS = (
    "run_id, goal, plan_path, workspace, status, created_at, updated_at, last_seq, summary"
)
LEASE_COLUMNS = "owner, pid, host, token, expires_at"
# a run's requests its driver has not yet recorded, oldest first (see requests_of)
PENDING = (
    "SELECT id, run_id, kind, step, reason, created_at, payload FROM requests "
    "WHERE run_id = ? AND consumed = 0 ORDER BY id"
)


class SqlReads:
    """A store's reads, over the ``_read`` and ``_damaged`` the store itself has."""

    _shown: str  # how messages name the store
    NO_LIMIT: object = -1  # what LIMIT takes for "all rows"
    EMPTY_BLOB = "x''"  # an empty byte string in the store's SQL
    MESSAGE_ORDER = "rowid"  # the column that keeps messages in the order they came
    GROUPS = "SELECT grp FROM board UNION SELECT grp FROM messages ORDER BY 1"
    EVENT_BODY = "data"  # what an event's stored body is read from
    SNAPSHOT_STATE = "state"  # what a snapshot's stored state is read from

    def _read(self, sql: str, *args: object, doing: str = "reading the store") -> list[Any]:
        raise NotImplementedError

    def _damaged(self, run_id: str, problem: str) -> NoReturn:
        raise NotImplementedError

    def _payload_rows(self, run_id: str, wanted: list[bytes]) -> dict[bytes, bytes]:
        """The stored payloads of these hashes that the run has (read as each store can:
        SQLite caps the parameters of a query)."""
        raise NotImplementedError

    def _payloads(self, run_id: str, packed: list[str]) -> dict[bytes, bytes]:
        """The stored payloads the ``packed`` bodies refer to, by hash, and the pieces
        of those that are manifests."""
        found = self._payload_rows(run_id, decoding.wanted(packed))
        pieces = set(payloads.parts(found.values())) - found.keys()
        if pieces:
            found.update(self._payload_rows(run_id, sorted(pieces)))
        return found

    # --- runs and events ----------------------------------------------------------

    def events(self, run_id: str, after: int = 0, limit: int | None = None) -> list[StoredEvent]:
        """Refuses a stream with a gap or an event that cannot be read, naming the run
        and seq: the run's state cannot be trusted past it."""
        self.run(run_id)
        damaged = partial(self._damaged, run_id)
        stored = self._read(
            f"SELECT seq, kind, {self.EVENT_BODY}, packed FROM events WHERE run_id = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            run_id,
            after,
            self.NO_LIMIT if limit is None else limit,
            doing=f"reading run {run_id!r}'s events",
        )
        rows = decoding.opened(stored, damaged)
        found = self._payloads(run_id, [str(r[2]) for r in rows if r[3]])
        return decoding.stream(run_id, after, rows, found, damaged)

    def snapshot(self, run_id: str, *, monitors: bool = False) -> Snapshot | None:
        saved = "monitors" if monitors else self.EMPTY_BLOB
        rows = self._read(
            f"SELECT seq, {self.SNAPSHOT_STATE}, {saved}, mac FROM snapshots WHERE run_id = ?",
            run_id,
            doing=f"reading run {run_id!r}'s snapshot",
        )
        if not rows:
            return None
        seq, state, save, mac = rows[0]
        state_json = decoding.state_text(state)
        if not isinstance(seq, int) or state_json is None:
            return None  # damage; a snapshot only saves time: the events stand
        return Snapshot(
            seq=seq,
            state_json=state_json,
            monitors=bytes(save) if isinstance(save, bytes | memoryview) else b"",
            mac=str(mac),
        )

    def snapshot_problem(self, run_id: str) -> str | None:
        """Why the run's snapshot cannot be read, or None when it can or there is none:
        :meth:`snapshot` passes such a one over, and ``trestle doctor`` says so."""
        rows = self._read(
            f"SELECT seq, {self.SNAPSHOT_STATE} FROM snapshots WHERE run_id = ?",
            run_id,
            doing=f"reading run {run_id!r}'s snapshot",
        )
        if not rows:
            return None
        seq, state = rows[0]
        try:
            decoding.read_state(state)
        except ValueError as exc:
            return f"its snapshot at seq {seq!r:.40} cannot be read: {exc}"
        return None

    def run(self, run_id: str) -> RunRow:
        rows = self._read(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?",
            run_id,
            doing=f"reading run {run_id!r}",
        )
        if not rows:
            ids = [str(r[0]) for r in self._read("SELECT run_id FROM runs", doing="listing runs")]
            close = difflib.get_close_matches(run_id, ids, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UnknownRunError(f"no run {run_id!r} in {self._shown}{hint}")
        return self._row(rows[0])

    def runs(self) -> list[RunRow]:
        rows = self._read(
            f"SELECT {RUN_COLUMNS} FROM runs ORDER BY created_at DESC", doing="listing runs"
        )
        return [self._row(r) for r in rows]

    def _row(self, row: Sequence[object]) -> RunRow:
        try:
            return run_row(row)
        except (ValueError, TypeError) as exc:
            self._damaged(str(row[0]), f"its listing row cannot be read: {exc}")

    # --- leases and requests ------------------------------------------------------

    def lease(self, run_id: str) -> Lease | None:
        rows = self._read(
            f"SELECT {LEASE_COLUMNS} FROM leases WHERE run_id = ?",
            run_id,
            doing=f"reading the lease on run {run_id!r}",
        )
        if not rows:
            return None
        holder, token, expires = self._lease_row(run_id, rows[0])
        return Lease(owner=holder, token=token, expires_at=expires)

    def _lease_row(self, run_id: str, row: Sequence[object]) -> tuple[Owner, int, float]:
        """A lease row's holder, token and expiry, or damage (see :func:`unreadable_lease`)."""
        name, pid, host, token, expires = row
        problem = unreadable_lease(pid, token, expires)
        if problem is not None:
            self._damaged(run_id, problem)
        assert isinstance(pid, int) and isinstance(token, int)
        assert isinstance(expires, int | float)
        return Owner(name=str(name), pid=pid, host=str(host)), token, float(expires)

    def pending_requests(self, run_id: str) -> list[Request]:
        rows = self._read(PENDING, run_id, doing=f"reading run {run_id!r}'s requests")
        return requests_of(rows)

    # --- groups: the blackboard and the mailboxes ------------------------------------

    def board_read(self, group: str, key: str) -> BoardEntry | None:
        rows = self._read(sqlite_groups.CURRENT, group, key, doing=f"reading group {group!r}")
        return sqlite_groups.board_entry(rows[0]) if rows else None

    def board_keys(self, group: str) -> list[BoardKey]:
        return sqlite_groups.board_keys(self._board_rows(group, None))

    def board_history(self, group: str, key: str | None = None) -> list[BoardEntry]:
        return [sqlite_groups.board_entry(r) for r in self._board_rows(group, key)]

    def _board_rows(self, group: str, key: str | None) -> list[Any]:
        where, args = ("grp = ?", [group]) if key is None else ("grp = ? AND key = ?", [group, key])
        return self._read(
            f"SELECT {sqlite_groups.BOARD_COLUMNS} FROM board WHERE {where} ORDER BY id",
            *args,
            doing=f"reading group {group!r}'s board",
        )

    def messages(
        self,
        group: str,
        *,
        recipient: str | None = None,
        undelivered: bool = False,
        reply_to: str | None = None,
        limit: int | None = None,
    ) -> list[Message]:
        where, args = sqlite_groups.message_filter(group, recipient, undelivered, reply_to)
        first = "" if limit is None else f" LIMIT {int(limit)}"
        rows = self._read(
            f"SELECT {sqlite_groups.MESSAGE_COLUMNS} FROM messages WHERE {where} "
            f"ORDER BY {self.MESSAGE_ORDER}{first}",
            *args,
            doing=f"reading group {group!r}'s messages",
        )
        return [sqlite_groups.message(r) for r in rows]

    def message(self, message_id: str) -> Message | None:
        rows = self._read(
            f"SELECT {sqlite_groups.MESSAGE_COLUMNS} FROM messages WHERE id = ?",
            message_id,
            doing=f"reading message {message_id!r}",
        )
        return sqlite_groups.message(rows[0]) if rows else None

    def groups(self) -> list[str]:
        return [str(r[0]) for r in self._read(self.GROUPS, doing="listing groups")]


def unreadable_lease(pid: object, token: object, expires: object) -> str | None:
    """What is wrong with a lease row whose pid, token or expiry is not a number, or
    None. Trestle never writes such a row: who drives the run cannot be told, so it is
    damage, never a lease to take over (a live holder could then run beside us)."""
    if isinstance(pid, int) and isinstance(token, int) and isinstance(expires, int | float):
        return None
    return (
        f"its lease row holds pid {pid!r:.40}, token {token!r:.40} and expiry "
        f"{expires!r:.40}, which are not all numbers"
    )


def requests_of(rows: Sequence[Sequence[object]]) -> list[Request]:
    """The requests in rows :data:`PENDING` read."""
    return [
        Request(
            id=int(str(i)),
            run_id=str(r),
            kind=request_kind(str(k)),
            step=str(s),
            reason=str(why),
            created_at=float(str(at)),
            payload=str(data),
        )
        for i, r, k, s, why, at, data in rows
    ]


def request_kind(kind: str) -> RequestKind:
    if kind not in REQUEST_KINDS:
        raise StoreError(f"unknown request kind {kind!r} in the requests table")
    return kind


def run_row(row: Sequence[object]) -> RunRow:
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
        summary=_summary(summary),
    )


def _summary(text: object) -> str:
    # the listing's counts are shown by `runs`: unreadable ones are damage, named here
    import json

    if not isinstance(text, str):
        raise ValueError(f"its summary is {type(text).__name__}, not JSON text")
    json.loads(text)
    return text
