"""A compressed row that expands past its ceiling is damage, named, in bounded memory.

Each place a store keeps zlib-compressed bytes (an event's body, a whole payload, a
piece of a long text, a snapshot's state) is overwritten with a *bomb*: about 4 MB
that expand to 4 GiB. ``trestle show`` and ``trestle doctor`` then read the store in a
child process, on SQLite and on PostgreSQL (the real server): the damage is named with
the run and the seq, exit 4, no traceback, and the child's peak memory stays far below
what the bomb expands to. A snapshot only saves time: a resume passes an unreadable one
over and folds the events, so ``show`` still works and the doctor names it.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path

import psycopg
import pytest

from test_store_conformance import RUN, batch, created, leased
from test_store_payloads import BIG, compression, ended, summary_of
from trestle.core.events import AnyEvent
from trestle.store import SqliteStore, bodies, inflate
from trestle.store.base import Snapshot, Store
from trestle.store.payloads import MANIFEST, parts
from trestle.store.postgres import PostgresStore

MIB = 1 << 20
BOMB = 4096 * MIB  # what each bomb expands to: 16 to 4,096 times its ceiling
PEAK = BOMB // 4  # a child that read a bomb whole would hold all of it
STATE = json.dumps({"transcripts": {f"step-{i}": list(range(i, i + 50)) for i in range(80)}})


@functools.cache
def bomb(size: int, zdict: bytes = b"") -> bytes:
    """A whole zlib stream of ``size`` zero bytes, in about ``size / 1000`` bytes.

    Each MiB is compressed once and ended with a full flush, which makes its bytes the
    same wherever it stands; the stream is those repeated, with the right checksum."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS, 9, zlib.Z_DEFAULT_STRATEGY, zdict)
    zeros = bytes(MIB)
    head = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    again = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    end = packer.flush()[:-4]  # the last block, without the checksum of two MiB
    check = zlib.adler32(zeros)
    for _ in range(size // MIB - 1):
        check = zlib.adler32(zeros, check)
    return head + again * (size // MIB - 1) + end + check.to_bytes(4, "big")


def test_a_bomb_is_a_whole_stream_of_what_it_says() -> None:
    small = bomb(8 * MIB)
    assert zlib.decompress(small) == bytes(8 * MIB) and len(small) < 10_000
    primed = zlib.decompressobj(zdict=bodies.DICTIONARY)
    assert primed.decompress(bomb(4 * MIB, bodies.DICTIONARY)) == bytes(4 * MIB)
    assert primed.eof and not primed.unused_data


def test_a_row_is_read_up_to_its_ceiling_and_refused_past_it() -> None:
    assert inflate.inflated(bomb(2 * MIB), 2 * MIB) == bytes(2 * MIB)
    with pytest.raises(zlib.error, match="expands past 2,097,151 bytes"):
        inflate.inflated(bomb(2 * MIB), 2 * MIB - 1)
    with pytest.raises(zlib.error, match="cut short"):
        inflate.inflated(bomb(2 * MIB)[:-3], 4 * MIB)


def record(store: Store) -> None:
    """A run whose rows hold every compressed form: bodies, a whole payload (a read
    file's text), a long summary stored as pieces, and a snapshot's state."""
    store.create_run(created(), summary="{}")
    saved = Snapshot(seq=4, state_json=STATE, monitors=b"m", mac="sig")
    events: list[AnyEvent] = [ended(1, BIG), ended(2, "short"), compression(3, summary_of(400))]
    store.append(RUN, batch(events, 2, snapshot=saved), token=leased(store, RUN))
    store.close()


def trestle(*args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """The CLI run in a child of a fresh process, and that child's peak memory (bytes)."""
    env = {k: v for k, v in os.environ.items() if k != "TRESTLE_STORE"}
    env.update(COLUMNS="200", NO_COLOR="1", TERM="dumb")
    measure = (
        "import json, resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
        "print(json.dumps([done.returncode, done.stdout, done.stderr, peak]))\n"
    )
    outer = subprocess.run(
        [sys.executable, "-c", measure, sys.executable, "-m", "trestle", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    code, out, err, peak = json.loads(outer.stdout)
    return subprocess.CompletedProcess(args, code, out, err), int(peak)


def named(store: str, *problem: str) -> None:
    """``show`` and ``doctor`` name the damage, exit 4, no traceback, small memory."""
    shown, peak = trestle("show", RUN, "--store", store)
    assert shown.returncode == 4, (shown.stdout, shown.stderr)
    assert "Traceback" not in shown.stdout + shown.stderr
    message = " ".join(shown.stderr.split())
    assert message.startswith("error: ") and f"run {RUN!r}" in message, message
    for part in problem:
        assert part in message, message
    assert peak < PEAK, peak
    found = doctored(store)
    assert any(all(part in p for part in problem) for p in found), found


def doctored(store: str) -> list[str]:
    report, peak = trestle("doctor", "--store", store, "--json")
    assert report.returncode == 4, (report.stdout, report.stderr)
    assert "Traceback" not in report.stdout + report.stderr
    assert peak < PEAK, peak
    (run,) = json.loads(report.stdout)["runs"]
    assert run["run_id"] == RUN
    return list(run["problems"])


EXPANDS = "expands past"
PLACES = ["body", "payload", "piece", "state"]


def targets(stored: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
    """The hashes of a piece of the long summary, and of the read file's whole text."""
    pieces = parts(bytes(d) for _, d in stored)
    whole = [h for h, d in stored if not bytes(d).startswith(MANIFEST) and bytes(h) not in pieces]
    assert len(pieces) > 1 and len(whole) == 1, (len(pieces), len(whole))
    return pieces[0], bytes(whole[0])


def sqlite_bomb(path: Path, place: str) -> None:
    with sqlite3.connect(path) as db:
        stored = db.execute("SELECT hash, data FROM payloads").fetchall()
        piece, whole = targets([(bytes(h), bytes(d)) for h, d in stored])
        if place == "body":
            blob = bomb(BOMB, bodies.DICTIONARY)
            db.execute("UPDATE events SET data = ?, packed = 2 WHERE seq = 3", (blob,))
        elif place == "state":
            db.execute("UPDATE snapshots SET state = ?", (bomb(BOMB),))
        else:
            target = piece if place == "piece" else whole
            db.execute("UPDATE payloads SET data = ? WHERE hash = ?", (bomb(BOMB), target))


@pytest.mark.parametrize("place", PLACES)
def test_a_bomb_in_a_sqlite_store_is_named_as_damage_in_small_memory(
    tmp_path: Path, place: str
) -> None:
    path = tmp_path / "t.db"
    record(SqliteStore(path))
    sqlite_bomb(path, place)
    where = str(path)
    if place == "state":  # passed over: the events stand
        assert SqliteStore(path).snapshot(RUN) is None
        assert trestle("show", RUN, "--store", where)[0].returncode == 0
        (problem,) = doctored(where)
        assert "its snapshot at seq 4 cannot be read: it expands past" in problem, problem
        return
    seq = {"body": 3, "payload": 2, "piece": 4}[place]
    named(where, f"event seq {seq}", EXPANDS)


def postgres_bomb(url: str, place: str) -> None:
    with psycopg.connect(url) as db:
        piece, whole = targets(db.execute("SELECT hash, data FROM trestle.payloads").fetchall())
        if place == "body":
            blob = bomb(BOMB, bodies.DICTIONARY)
            db.execute(
                "UPDATE trestle.events SET data = '', compressed = %s, packed = 2 WHERE seq = 3",
                (blob,),
            )
        elif place == "state":
            db.execute("UPDATE trestle.snapshots SET compressed_state = %s", (bomb(BOMB),))
        else:
            target = piece if place == "piece" else whole
            db.execute(
                "UPDATE trestle.payloads SET data = %s WHERE hash = %s", (bomb(BOMB), target)
            )


@pytest.mark.parametrize("place", PLACES)
def test_a_bomb_in_a_postgres_store_is_named_as_damage_in_small_memory(
    postgres_url: str, place: str
) -> None:
    record(PostgresStore(postgres_url))
    postgres_bomb(postgres_url, place)
    if place == "state":
        store = PostgresStore(postgres_url)
        assert store.snapshot(RUN) is None
        store.close()
        assert trestle("show", RUN, "--store", postgres_url)[0].returncode == 0
        (problem,) = doctored(postgres_url)
        assert "its snapshot at seq 4 cannot be read: it expands past" in problem, problem
        return
    seq = {"body": 3, "payload": 2, "piece": 4}[place]
    named(postgres_url, f"event seq {seq}", EXPANDS)
