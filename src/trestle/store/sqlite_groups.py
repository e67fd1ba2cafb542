"""The SQLite store's part for groups: the blackboard's log and the messages (schema 4).

The board is an append-only log, one row per write attempt. An accepted write takes
the key's next version; a unique index on (group, key, version) over accepted rows
makes two accepted writes of one version impossible whatever else goes wrong, and
the compare-and-set runs in one ``BEGIN IMMEDIATE`` transaction, so processes sharing
the file take turns. A message's id is its primary key: sending it again changes
nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from trestle.store.base import BoardEntry, BoardKey, BoardWrite, Message

MIGRATION = """
    CREATE TABLE board (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        grp TEXT NOT NULL,
        key TEXT NOT NULL,
        version INTEGER NOT NULL,
        value TEXT NOT NULL,
        writer TEXT NOT NULL,
        step TEXT NOT NULL,
        call_key TEXT NOT NULL,
        at REAL NOT NULL,
        accepted INTEGER NOT NULL,
        expected INTEGER
    );
    CREATE UNIQUE INDEX board_versions ON board (grp, key, version) WHERE accepted = 1;
    CREATE INDEX board_keys ON board (grp, key);
    CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        grp TEXT NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        reply_to TEXT,
        body TEXT NOT NULL,
        sent_at REAL NOT NULL,
        delivered_at REAL,
        delivered_by TEXT
    );
    CREATE INDEX messages_to ON messages (grp, recipient)
"""

BOARD_COLUMNS = "id, grp, key, version, value, writer, step, call_key, at, accepted, expected"
MESSAGE_COLUMNS = "id, grp, sender, recipient, body, sent_at, reply_to, delivered_at, delivered_by"
CURRENT = (
    f"SELECT {BOARD_COLUMNS} FROM board WHERE grp = ? AND key = ? AND accepted = 1 "
    "ORDER BY version DESC LIMIT 1"
)


def compare_and_set(
    db: sqlite3.Connection,
    group: str,
    key: str,
    value: str,
    *,
    expected: int | None,
    writer: str,
    step: str,
    call_key: str,
    now: float,
) -> BoardWrite:
    """Inside the caller's write transaction: the attempt logged, and its outcome."""
    row = db.execute(CURRENT, (group, key)).fetchone()
    current = None if row is None else board_entry(row)
    at = 0 if current is None else current.version
    accepted = expected is None or expected == at
    version = at + 1 if accepted else at
    cur = db.execute(
        f"INSERT INTO board ({BOARD_COLUMNS}) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (group, key, version, value, writer, step, call_key, now, int(accepted), expected),
    )
    entry = BoardEntry(
        id=int(cur.lastrowid or 0),
        group=group,
        key=key,
        version=version,
        value=value,
        writer=writer,
        step=step,
        call_key=call_key,
        at=now,
        accepted=accepted,
        expected=expected,
    )
    return BoardWrite(entry=entry, current=entry if accepted else current)


def board_keys(rows: Sequence[tuple[object, ...]]) -> list[BoardKey]:
    """Each key's summary from its log rows (oldest first)."""
    by_key: dict[str, list[BoardEntry]] = {}
    for row in rows:
        entry = board_entry(row)
        by_key.setdefault(entry.key, []).append(entry)
    return [BoardKey.of(key, entries) for key, entries in sorted(by_key.items())]


def board_entry(row: Sequence[object]) -> BoardEntry:
    id_, group, key, version, value, writer, step, call_key, at, accepted, expected = row
    return BoardEntry(
        id=int(str(id_)),
        group=str(group),
        key=str(key),
        version=int(str(version)),
        value=str(value),
        writer=str(writer),
        step=str(step),
        call_key=str(call_key),
        at=float(str(at)),
        accepted=bool(accepted),
        expected=None if expected is None else int(str(expected)),
    )


def message_row(message: Message) -> tuple[object, ...]:
    m = message
    return (
        m.id,
        m.group,
        m.sender,
        m.recipient,
        m.body,
        m.sent_at,
        m.reply_to,
        m.delivered_at,
        m.delivered_by,
    )


def message(row: Sequence[object]) -> Message:
    id_, group, sender, recipient, body, sent_at, reply_to, delivered_at, delivered_by = row
    return Message(
        id=str(id_),
        group=str(group),
        sender=str(sender),
        recipient=str(recipient),
        body=str(body),
        sent_at=float(str(sent_at)),
        reply_to=None if reply_to is None else str(reply_to),
        delivered_at=None if delivered_at is None else float(str(delivered_at)),
        delivered_by=None if delivered_by is None else str(delivered_by),
    )


def message_filter(
    group: str, recipient: str | None, undelivered: bool, reply_to: str | None
) -> tuple[str, list[object]]:
    """The WHERE clause (and its arguments) of a messages query."""
    clauses, args = ["grp = ?"], [group]
    if recipient is not None:
        clauses.append("recipient = ?")
        args.append(recipient)
    if undelivered:
        clauses.append("delivered_at IS NULL")
    if reply_to is not None:
        clauses.append("reply_to = ?")
        args.append(reply_to)
    return " AND ".join(clauses), list(args)
