"""Large payloads: stored once per run, by hash, compressed, and read back byte for byte.

``trestle.store.payloads`` moves an event's long strings out of its JSON; the SQLite
store keeps them in its ``payloads`` table (schema 3), the longest in pieces texts
share, and compresses what is left of the body (``trestle.store.bodies``, schema 6).
These tests hold the pure part to an exact round trip, and the store to what it
promises: the same event read back, the same text stored once, texts that repeat
one another stored as their shared pieces, stores from before schemas 3 and 6 still
readable, a missing payload or piece and a garbled body named as damage, a deleted
run's payloads gone with it.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import JsonValue

from test_store_conformance import RUN, batch, created, leased
from trestle.core.errors import LeaseLostError, StoreDamagedError
from trestle.core.events import AnyEvent, ContextCompressed, ToolCallEnded, event_json
from trestle.core.records.agent import CompressionRecord
from trestle.operations.doctor import diagnose
from trestle.store import SqliteStore
from trestle.store.base import Snapshot
from trestle.store.bodies import DICTIONARY, LEVEL, MEM_LEVEL, compressed, decompressed
from trestle.store.payloads import CHUNKED, LARGE, MANIFEST, pack, parts, references, unpack
from trestle.store.sqlite import MIGRATIONS

DICTIONARY_SHA256 = "397209c5c01d4bd3ca853ae3806027d106cd80b7ca25e7ca1265556daf17f95b"
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


# every string literal of a JSON text, from its start: the reference pack's literals
# are checked against (it stepped through each literal's characters itself before)
LITERAL = re.compile(r'("[^"\\]*(?:\\.[^"\\]*)*")', re.DOTALL)
ESCAPES = st.sampled_from(['"', "\\", '\\"', '"\\', "\\\\", "\n", "\t", "\x00", "ü", "\ud800", "x"])
TEXTS = st.lists(ESCAPES | st.text(max_size=40), max_size=60).map("".join)
JSON_VALUES = st.recursive(
    st.none() | st.integers() | TEXTS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXTS, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES, ascii_only=st.booleans(), long_text=TEXTS)
def test_the_literals_moved_out_are_exactly_the_json_texts_long_strings(
    value: JsonValue, ascii_only: bool, long_text: str
) -> None:
    # quotes, backslashes and escapes of both next to one another, as a model's
    # JSON-in-a-string arguments and a file of code hold them
    body = json.dumps(
        {"v": value, "long": long_text * (LARGE // max(len(long_text), 1) + 1)},
        ensure_ascii=ascii_only,
    )
    literals = LITERAL.split(body)[1::2]
    wanted = [lit.encode("utf-8", "surrogatepass") for lit in literals if len(lit) >= LARGE]
    packed, found = pack(body)
    stored = {digest: zlib.decompress(blob) for digest, blob in found}
    if '"$payload":' in body:  # a key of its own: stored whole
        wanted = []
    assert [stored[h] for h in references(packed)] == wanted
    assert restored(packed, found) == body


def test_a_body_whose_quotes_do_not_pair_is_stored_whole() -> None:
    body = '{"a": "' + "x" * LARGE + '", "b": "unclosed}'
    assert pack(body) == (body, [])


def summary_of(turns: int) -> str:
    """A summary as compression writes them: one line per earlier turn (here of text
    that barely compresses), so each holds the one before it."""
    return "".join(f"assistant: {hashlib.sha256(bytes(t)).hexdigest()}\n" for t in range(turns))


def test_long_texts_that_repeat_one_another_share_their_pieces() -> None:
    first, second = summary_of(300), "[header]\n" + summary_of(330)
    assert len(json.dumps(first)) >= CHUNKED
    body = json.dumps({"a": first, "b": second, "c": first})
    packed, found = pack(body, chunked=True)
    stored = dict(found)
    manifests = [blob for blob in stored.values() if blob.startswith(MANIFEST)]
    assert len(manifests) == 2 and len(references(packed)) == 3
    assert restored(packed, found) == body
    # the second text adds a header line and 30 lines: most of its pieces are the first's
    first_parts, second_parts = (parts([m]) for m in manifests)
    assert len(set(first_parts) & set(second_parts)) >= len(first_parts) - 2
    whole = sum(len(zlib.compress(json.dumps(t).encode())) for t in (first, second))
    assert sum(map(len, stored.values())) < whole * 0.7
    # pieces stored before are not stored again
    again, new = pack(json.dumps({"d": summary_of(331)}), known=stored.keys(), chunked=True)
    assert restored(again, [*found, *new]) == json.dumps({"d": summary_of(331)})
    assert len(new) <= 3  # its manifest and the piece or two its last line changed


def test_a_piece_missing_or_a_manifest_cut_short_is_an_error() -> None:
    body = json.dumps({"a": summary_of(400)})
    packed, found = pack(body, chunked=True)
    stored = dict(found)
    manifest = next(h for h, blob in stored.items() if blob.startswith(MANIFEST))
    piece = parts([stored[manifest]])[1]
    with pytest.raises(KeyError):
        unpack(packed, {h: b for h, b in stored.items() if h != piece}.__getitem__)
    with pytest.raises(zlib.error, match="whole number of hashes"):
        unpack(packed, {**stored, manifest: stored[manifest][:-1]}.__getitem__)


def test_a_body_round_trips_through_the_dictionary_and_a_small_one_is_left_alone() -> None:
    body = event_json(ended(1, "short", path="notes/a.txt", lines=3))
    blob = compressed(body)
    assert blob is not None and len(blob) < len(body) / 2
    assert decompressed(blob) == body
    assert compressed('{"v":1}') is None
    with pytest.raises(zlib.error):
        decompressed(blob[:-3])


def test_a_body_compressed_with_zlibs_default_memory_reads_back_as_the_same_text() -> None:
    # stores written before the compressor used less memory: only the bytes may differ
    body = event_json(ended(1, BIG[:900], path="notes/a.txt", lines=12))
    packer = zlib.compressobj(6, zdict=DICTIONARY)
    written_before = packer.compress(body.encode()) + packer.flush()
    assert decompressed(written_before) == body == decompressed(compressed(body) or b"")


def test_each_body_is_compressed_as_a_new_compressor_given_the_dictionary_would() -> None:
    # bodies are compressed by copies of one primed compressor: none may see another's
    # text, in one thread or several at once
    bodies = [event_json(ended(i, BIG[: 100 * i], path=f"n/{i}.txt", lines=i)) for i in range(1, 9)]

    def fresh(body: str) -> bytes:
        packer = zlib.compressobj(LEVEL, zlib.DEFLATED, zlib.MAX_WBITS, MEM_LEVEL, zdict=DICTIONARY)
        return packer.compress(body.encode()) + packer.flush()

    expected = [fresh(body) for body in bodies]
    assert [compressed(body) for body in bodies] == expected
    assert [compressed(body) for body in reversed(bodies)] == expected[::-1]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(compressed, bodies * 50)) == expected * 50


def test_the_dictionary_never_changes() -> None:
    # bodies written with it are read with it: a new one would be a new stored format
    assert hashlib.sha256(DICTIONARY).hexdigest() == DICTIONARY_SHA256


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
        packed = db.execute("SELECT seq FROM events WHERE packed & 1 ORDER BY seq").fetchall()
        assert [s for (s,) in packed] == [2, 4, 5]


def test_texts_of_backslashes_and_quotes_are_stored_apart_and_read_back_whole(
    tmp_path: Path,
) -> None:
    # a Windows path, a string that ends in a backslash, JSON inside a string: each a
    # backslash next to a quote in the event's JSON, where a literal ends or does not
    code = 'p = "C:\\\\dir\\\\"; q = "\\"quoted\\""; r = \'{"k": "v\\\\"}\'\n' * 30
    store = SqliteStore(tmp_path / "t.db")
    store.create_run(created(), summary="{}")
    token = leased(store, RUN)
    events: list[AnyEvent] = [ended(1, code, args=code, tail="\\" * LARGE), ended(2, code)]
    store.append(RUN, batch(events, 2), token=token)
    assert [s.event for s in store.events(RUN)][1:] == events
    store.close()
    with sqlite3.connect(tmp_path / "t.db") as db:
        assert db.execute("SELECT count(*) FROM payloads").fetchone()[0] == 2


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


def compression(turn: int, summary: str) -> ContextCompressed:
    record = CompressionRecord(
        tokens_before=9000,
        tokens_after=3000,
        limit=8000,
        summarised=40,
        kept=16,
        kept_turns=8,
        source="extractive",
        within_target=True,
    )
    return ContextCompressed(
        at=300.0 + turn, step="understand", round=1, turn=turn, record=record, summary=summary
    )


def test_the_store_keeps_growing_summaries_as_shared_pieces_and_bodies_compressed(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "t.db")
    store.create_run(created(), summary="{}")
    token = leased(store, RUN)
    events = [compression(t, summary_of(200 + 20 * t)) for t in range(1, 6)]
    for seq, event in enumerate(events, start=2):
        store.append(RUN, batch([event], seq), token=token)
    store.close()
    store = SqliteStore(tmp_path / "t.db")  # a fresh process knows no payload
    assert [s.event for s in store.events(RUN)][1:] == events
    store.close()
    with sqlite3.connect(tmp_path / "t.db") as db:
        stored = db.execute("SELECT sum(length(data)) FROM payloads").fetchone()[0]
        flags = db.execute("SELECT packed FROM events WHERE seq > 1").fetchall()
    whole = sum(len(zlib.compress(json.dumps(e.summary).encode())) for e in events)
    assert stored < whole / 2  # the five hold 1,300 lines, 300 of them distinct
    assert flags == [(3,)] * 5  # refers to payloads, compressed


def test_a_store_of_schema_5_opens_reads_its_rows_and_adds_new_ones(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    first, old = created(), ended(1, BIG)
    with sqlite3.connect(path) as db:  # as the Trestle before schema 6 wrote it
        for script in MIGRATIONS[:5]:
            db.executescript(script)
        db.execute("PRAGMA user_version = 5")
        data, found = pack(event_json(old))
        db.executemany("INSERT INTO payloads VALUES (?, ?, ?)", [(RUN, h, b) for h, b in found])
        for seq, event, body, flag in ((1, first, event_json(first), 0), (2, old, data, 1)):
            db.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
                (RUN, seq, event.kind, event.v, event.at, body, flag),
            )
        db.execute("INSERT INTO runs VALUES (?, 'g', NULL, '/w', 'running', 1, 1, 2, '{}')", (RUN,))
    store = SqliteStore(path)
    assert [s.event for s in store.events(RUN)] == [first, old]
    new: list[AnyEvent] = [ended(2, BIG), compression(3, summary_of(400))]
    store.append(RUN, batch(new, 3), token=leased(store, RUN))
    assert [s.event for s in store.events(RUN)] == [first, old, *new]
    store.close()
    assert not diagnose(path, now=300.0).runs[0].problems
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) == 6
        assert db.execute("SELECT packed FROM events ORDER BY seq").fetchall() == [
            (0,),
            (1,),
            (3,),
            (3,),
        ]


def test_a_garbled_compressed_body_or_a_lost_piece_is_named_as_damage(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SqliteStore(path)
    store.create_run(created(), summary="{}")
    store.append(RUN, batch([compression(1, summary_of(400))], 2), token=leased(store, RUN))
    with sqlite3.connect(path) as db:
        (body,) = db.execute("SELECT data FROM events WHERE seq = 2").fetchone()
        db.execute("UPDATE events SET data = ? WHERE seq = 2", (body[:-4],))
    with pytest.raises(
        StoreDamagedError, match="seq 2 cannot be read: its body is stored compressed, but"
    ):
        store.events(RUN)
    report = diagnose(path, now=300.0)
    assert any("seq 2 cannot be read" in p for r in report.runs for p in r.problems)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE events SET data = ? WHERE seq = 2", (body,))
        db.execute("DELETE FROM payloads WHERE hash = (SELECT max(hash) FROM payloads)")
    with pytest.raises(StoreDamagedError, match=r"seq 2 refers to payload [0-9a-f]{64}, missing"):
        store.events(RUN)
    store.close()


def test_a_snapshot_state_is_stored_compressed_and_one_that_will_not_open_is_passed_over(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.db"
    store = SqliteStore(path)
    store.create_run(created(), summary="{}")
    state = json.dumps({"transcripts": {f"step-{i}": list(range(i, i + 50)) for i in range(80)}})
    saved = Snapshot(seq=2, state_json=state, monitors=b"m", mac="sig")
    store.append(RUN, batch([ended(1, "short")], 2, snapshot=saved), token=leased(store, RUN))
    assert store.snapshot(RUN, monitors=True) == saved
    with sqlite3.connect(path) as db:
        (stored,) = db.execute("SELECT state FROM snapshots").fetchone()
        assert isinstance(stored, bytes) and len(stored) < len(state) / 4
        db.execute("UPDATE snapshots SET state = ?", (stored[:-5],))
    assert store.snapshot(RUN) is None  # the events stand: the run folds from them
    with sqlite3.connect(path) as db:  # as a store before schema 6 holds it
        db.execute("UPDATE snapshots SET state = ?", (state,))
    assert store.snapshot(RUN, monitors=True) == saved
    store.close()
