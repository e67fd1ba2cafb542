"""The PostgreSQL store's stored forms: those of the SQLite store, and its own from before.

Since schema 2 an event's body is stored compressed against the fixed dictionary, a
text of 8 KB or more as pieces shared once per run, and a snapshot's state compressed,
as the SQLite store does (schema 6); the rows are compared with SQLite's for the same
events. Rows written before (text bodies and states, whole payloads) are written here
directly, as that Trestle wrote them, and read back; a store of schema 1 is upgraded
(``trestle doctor --upgrade``) without a row rewritten, and takes the new forms after.
Real server, real stores.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import psycopg
import pytest

from test_store_conformance import RUN, batch, created, leased, one_of_each
from test_store_payloads import BIG, compression, ended, summary_of
from trestle.core.events import AnyEvent, event_json
from trestle.operations.doctor import diagnose, upgrade
from trestle.store import SqliteStore, postgres_schema
from trestle.store.base import Snapshot
from trestle.store.decoding import COMPRESSED, REFERS
from trestle.store.payloads import MANIFEST, pack
from trestle.store.postgres import PostgresStore

STATE = json.dumps({"transcripts": {f"step-{i}": list(range(i, i + 50)) for i in range(80)}})


def _events() -> list[AnyEvent]:
    """Small events, a read file, and summaries long enough to be stored in pieces."""
    return [
        *one_of_each()[:4],
        ended(1, BIG),
        ended(2, BIG),  # the same text again: stored once
        *[compression(t, summary_of(300 + 20 * t)) for t in range(3, 6)],
    ]


def _rows(url: str) -> tuple[list[tuple[int, int, str, bytes | None]], list[bytes]]:
    with psycopg.connect(url) as db:
        events = db.execute(
            "SELECT seq, packed, data, compressed FROM trestle.events ORDER BY seq"
        ).fetchall()
        stored = [bytes(r[0]) for r in db.execute("SELECT data FROM trestle.payloads")]
    return [(s, p, d, None if c is None else bytes(c)) for s, p, d, c in events], stored


def test_the_store_writes_what_the_sqlite_store_writes_and_reads_it_back(
    postgres_url: str, tmp_path: Path
) -> None:
    events = _events()
    saved = Snapshot(seq=len(events) + 1, state_json=STATE, monitors=b"m", mac="sig")
    sqlite = SqliteStore(tmp_path / "t.db")
    store = PostgresStore(postgres_url)
    for each in (sqlite, store):
        each.create_run(created(), summary="{}")
        token = leased(each, RUN)
        each.append(RUN, batch(events[:4], 2), token=token)
        each.append(RUN, batch(events[4:], 6, snapshot=saved), token=token)
    store.close()
    store = PostgresStore(postgres_url)  # knows no payload: reads every one back
    assert [s.event for s in store.events(RUN)] == [created(), *events]
    assert store.snapshot(RUN, monitors=True) == saved

    rows, payloads = _rows(postgres_url)
    with sqlite3.connect(tmp_path / "t.db") as db:
        flags = db.execute("SELECT seq, packed FROM events ORDER BY seq").fetchall()
        lite = sorted(bytes(r[0]) for r in db.execute("SELECT data FROM payloads"))
    assert [(seq, packed) for seq, packed, _, _ in rows] == flags
    assert sorted(payloads) == lite  # the same payloads, pieces and manifests
    assert sum(p.startswith(MANIFEST) for p in payloads) == 3
    for seq, packed, data, blob in rows[1:]:  # run_created is kept as text, as on SQLite
        assert packed & COMPRESSED, seq
        assert data == "" and blob is not None and len(blob) < len(event_json(events[seq - 2]))
    with psycopg.connect(postgres_url) as db:
        found = db.execute("SELECT state, compressed_state FROM trestle.snapshots").fetchone()
    assert found is not None and found[0] == "" and len(found[1]) < len(STATE) / 4
    assert not diagnose(postgres_url, now=300.0).runs[0].problems
    sqlite.close()
    store.close()


def _old_rows(url: str) -> list[AnyEvent]:
    """A run's rows as schema 1 wrote them: bodies as text, one referring to a whole
    payload, the snapshot's state as text."""
    first, small, large = created(), one_of_each()[0], ended(1, BIG)
    data, found = pack(event_json(large))  # one payload, whole: no pieces
    with psycopg.connect(url) as db:
        db.execute(
            "INSERT INTO trestle.runs VALUES (%s, 'g', NULL, '/w', 'running', 1, 1, 3, '{}')",
            (RUN,),
        )
        for digest, blob in found:
            db.execute("INSERT INTO trestle.payloads VALUES (%s, %s, %s)", (RUN, digest, blob))
        rows = ((1, first, event_json(first), 0), (2, small, event_json(small), 0))
        for seq, event, body, flag in (*rows, (3, large, data, REFERS)):
            db.execute(
                "INSERT INTO trestle.events (run_id, seq, kind, v, at, data, packed) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (RUN, seq, event.kind, event.v, event.at, body, flag),
            )
        db.execute(
            "INSERT INTO trestle.snapshots (run_id, seq, state, monitors, mac) "
            "VALUES (%s, 3, %s, 'm', 'sig')",
            (RUN, STATE),
        )
    return [first, small, large]


def test_rows_written_before_schema_2_are_read_as_they_were_written(postgres_url: str) -> None:
    PostgresStore(postgres_url).close()
    old = _old_rows(postgres_url)
    store = PostgresStore(postgres_url)
    assert [s.event for s in store.events(RUN)] == old
    assert store.snapshot(RUN, monitors=True) == Snapshot(
        seq=3, state_json=STATE, monitors=b"m", mac="sig"
    )
    store.close()


def test_a_store_of_schema_1_is_upgraded_in_place_and_takes_the_new_forms_after(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as older:  # the Trestle before schema 2 makes the store
        older.setattr("trestle.store.postgres.MIGRATIONS", postgres_schema.MIGRATIONS[:1])
        PostgresStore(postgres_url).close()
    old = _old_rows(postgres_url)
    assert upgrade(postgres_url) == (1, len(postgres_schema.MIGRATIONS))

    store = PostgresStore(postgres_url)
    assert [s.event for s in store.events(RUN)] == old
    assert store.snapshot(RUN) == Snapshot(seq=3, state_json=STATE, mac="sig")
    new: list[AnyEvent] = [ended(2, BIG), compression(3, summary_of(400))]
    store.append(RUN, batch(new, 4), token=leased(store, RUN))
    assert [s.event for s in store.events(RUN)] == [*old, *new]
    assert [p for _, p, _, _ in _rows(postgres_url)[0]] == [0, 0, REFERS, 3, 3]
    assert not diagnose(postgres_url, now=300.0).runs[0].problems
    store.close()
