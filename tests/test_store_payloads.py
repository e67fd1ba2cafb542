"""Large payloads: stored once per run, by hash, compressed, and read back byte for byte.

``trestle.store.payloads`` moves an event's long strings out of its JSON; the SQLite
store keeps them in its ``payloads`` table (schema 3). These tests hold the pure part
to an exact round trip, and the store to what it promises: the same event read back,
the same text stored once, a store from before schema 3 still readable, a missing
payload named as damage, a deleted run's payloads gone with it.
"""

from __future__ import annotations

import json
import sqlite3
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import JsonValue

from test_store_conformance import RUN, batch, created, leased
from trestle.core.errors import LeaseLostError, StoreDamagedError
from trestle.core.events import AnyEvent, ToolCallEnded, event_json
from trestle.operations.doctor import diagnose
from trestle.store import SqliteStore
from trestle.store.payloads import LARGE, pack, references, unpack
from trestle.store.sqlite import MIGRATIONS

BIG = 'line of a file the model read, with a quote " and a tab \t and ü\n' * 80


def ended(turn: int, content: str, **data: JsonValue) -> ToolCallEnded:
    return ToolCallEnded(
        at=200.0 + turn,
        step="understand",
        round=1,
        turn=turn,
        call_id=f"c{turn}",
        tool="read_file",
        ok=True,
        content=content,
        data=data,
    )


def restored(packed: str, found: list[tuple[bytes, bytes]]) -> str:
    return unpack(packed, dict(found).__getitem__)


# --- the pure part -------------------------------------------------------------------------


def test_a_large_string_is_moved_out_and_spliced_back_exactly() -> None:
    body = event_json(ended(1, BIG))
    packed, found = pack(body)
    assert len(packed) < 400 and len(found) == 1
    assert references(packed) == [found[0][0]]
    assert restored(packed, found) == body
    assert len(found[0][1]) < len(BIG) / 5  # compressed: the file repeats itself


def test_a_string_stored_before_is_referred_to_and_not_compressed_again() -> None:
    body = event_json(ended(1, BIG))
    packed, found = pack(body)
    again, none = pack(event_json(ended(1, BIG)), known={found[0][0]})
    assert none == [] and again == packed
    assert restored(again, found) == body


def test_a_small_event_is_left_alone() -> None:
    body = event_json(ended(1, "short"))
    assert pack(body) == (body, [])


def test_an_event_with_a_payload_key_of_its_own_is_stored_whole() -> None:
    fake: JsonValue = {"$payload": "0" * 64}
    body = event_json(ended(1, BIG, forged=fake))
    assert pack(body) == (body, [])


def test_only_whole_string_literals_are_moved_never_the_json_between_them() -> None:
    # a long stretch of numbers between two short strings is no string: it stays
    numbers = list(range(400))
    body = json.dumps({"a": "x", "n": numbers, "b": 'y\\"' + "z" * LARGE, "c": "w"})
    packed, found = pack(body)
    assert json.dumps(numbers) in packed and '"a": "x"' in packed and '"c": "w"' in packed
    assert len(found) == 1 and json.loads(zlib.decompress(found[0][1])) == 'y\\"' + "z" * LARGE
    assert restored(packed, found) == body


@settings(max_examples=200, deadline=None)
@given(
    texts=st.lists(st.text(min_size=0, max_size=LARGE * 2), min_size=1, max_size=4),
    keys=st.lists(st.text(max_size=8), min_size=1, max_size=4),
)
def test_any_json_round_trips_byte_for_byte(texts: list[str], keys: list[str]) -> None:
    named = dict(zip(keys, texts, strict=False))
    body = json.dumps({"texts": texts, **named}, ensure_ascii=False)
    packed, found = pack(body)
    assert restored(packed, found) == body


# --- the SQLite store ----------------------------------------------------------------------


def test_the_store_reads_back_packed_events_and_stores_a_repeated_text_once(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "t.db")
    store.create_run(created(), summary="{}")
    token = leased(store, RUN)
    events: list[AnyEvent] = [ended(1, BIG), ended(2, "short"), ended(3, BIG)]
    store.append(RUN, batch(events, 2), token=token)
    store.append(RUN, batch([ended(4, BIG)], 5), token=token)
    assert [s.event for s in store.events(RUN)][1:] == [*events, ended(4, BIG)]
    assert [s.event for s in store.events(RUN, after=3, limit=1)] == [ended(3, BIG)]
    store.close()
    with sqlite3.connect(tmp_path / "t.db") as db:
        assert db.execute("SELECT count(*) FROM payloads").fetchone()[0] == 1
        packed = db.execute("SELECT seq FROM events WHERE packed = 1 ORDER BY seq").fetchall()
        assert [s for (s,) in packed] == [2, 4, 5]


def test_only_a_committed_payload_is_taken_as_stored(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db")
    store.create_run(created(), summary="{}")
    token = leased(store, RUN)
    with pytest.raises(LeaseLostError):  # refused: its payload was never stored
        store.append(RUN, batch([ended(1, BIG)], 2), token=token + 1)
    store.append(RUN, batch([ended(1, BIG)], 2), token=token)
    assert store.events(RUN)[1].event == ended(1, BIG)
    # a deleted run's payloads are gone: made again, its texts are stored again
    store.delete_run(RUN)
    store.create_run(created(), summary="{}")
    store.append(RUN, batch([ended(2, BIG)], 2), token=leased(store, RUN))
    assert store.events(RUN)[1].event == ended(2, BIG)
    store.close()


def test_a_store_from_before_payloads_opens_and_reads_its_old_events(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # schema 2, as the Trestle before this one made it
        for script in MIGRATIONS[:2]:
            db.executescript(script)
        db.execute("PRAGMA user_version = 2")
        first, old = created(), ended(1, BIG)
        for seq, event in ((1, first), (2, old)):
            db.execute(
                "INSERT INTO events (run_id, seq, kind, v, at, data) VALUES (?, ?, ?, ?, ?, ?)",
                (RUN, seq, event.kind, event.v, event.at, event_json(event)),
            )
        db.execute("INSERT INTO runs VALUES (?, 'g', NULL, '/w', 'running', 1, 1, 2, '{}')", (RUN,))
    store = SqliteStore(path)
    assert [s.event for s in store.events(RUN)] == [first, old]
    token = leased(store, RUN)
    store.append(RUN, batch([ended(2, BIG)], 3), token=token)
    assert [s.event for s in store.events(RUN)][2:] == [ended(2, BIG)]
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_a_missing_or_garbled_payload_is_named_as_damage(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SqliteStore(path)
    store.create_run(created(), summary="{}")
    store.append(RUN, batch([ended(1, BIG)], 2), token=leased(store, RUN))
    with sqlite3.connect(path) as db:
        db.execute("UPDATE payloads SET data = ?", (zlib.compress(b"x")[:-2],))
    with pytest.raises(StoreDamagedError, match="seq 2 has a payload that cannot be read"):
        store.events(RUN)
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM payloads")
    with pytest.raises(StoreDamagedError, match=r"seq 2 refers to payload [0-9a-f]{64}, missing"):
        store.events(RUN)
    store.close()
    report = diagnose(path, now=300.0)
    assert any("refers to payload" in p for r in report.runs for p in r.problems)


def test_deleting_a_run_deletes_its_payloads_and_no_other_runs(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db")
    for run_id in (RUN, "other"):
        store.create_run(created(run_id), summary="{}")
        store.append(run_id, batch([ended(1, BIG)], 2), token=leased(store, run_id))
    store.delete_run(RUN)
    assert store.events("other")[1].event == ended(1, BIG)
    store.close()
    with sqlite3.connect(tmp_path / "t.db") as db:
        assert db.execute("SELECT run_id FROM payloads").fetchall() == [("other",)]
