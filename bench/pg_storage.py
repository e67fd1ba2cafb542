"""What an agent run leaves in a PostgreSQL store, table by table, and what it cost.

Usage::

    python bench/pg_storage.py [--turns N] [--json PATH]

Runs ``sys_trestle_pg.turns`` (the agent-turn workload of ``postgres_store.py``: a
scripted model, a real ``read_file`` of ~4 KB a turn) for ``--turns`` turns on a fresh
database of a throwaway server (``LocalPostgres`` with ``pgserver.SETTINGS``), then
reads the store's size three ways: each table's size on disk as the run left it
(``pg_total_relation_size``, indexes and TOAST included; after a plain ``VACUUM``, so
the figure does not depend on when autovacuum last ran), the same after ``VACUUM
FULL`` (the live rows only: a snapshot replaced a hundred times leaves its old
versions behind until then), and the bytes of the event bodies and payloads as
stored (``octet_length``, before PostgreSQL's own compression of long values).
Beside the sizes, what the run cost per turn: the driver's CPU (this process, all its
threads), the server's (``pgserver.cpu_seconds``), and the server's write-ahead log,
in bytes and in fsyncs (``pg_stat_wal``, settled once the run's backend has ended):
counts, which other work on the machine does not disturb as it does the wall clock.
Prints one JSON object, and writes it to ``--json`` if given. Works on a store of
either schema (before and after the compressed forms), so two trees can be compared
with ``PYTHONPATH=<tree>/src``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

import pgserver
import sys_trestle_pg
from hostinfo import machine_info
from trestle.testing.postgres import LocalPostgres

TABLE_SIZES = (
    "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = 'trestle' AND c.relkind = 'r' ORDER BY 1"
)
HAS_COMPRESSED = (
    "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'trestle' "
    "AND table_name = 'events' AND column_name = 'compressed'"
)


def wal_bytes(server: LocalPostgres) -> int:
    with server.connect() as db:
        row = db.execute("SELECT wal_bytes FROM pg_stat_wal").fetchone()
    return 0 if row is None else int(row[0])


def costs(server: LocalPostgres, url: str, work: Path, turns: int) -> dict[str, float]:
    """The agent run of ``turns`` turns, and what it cost per turn."""
    syncs, server_cpu, wal = (
        pgserver.settled_wal_syncs(server),
        pgserver.cpu_seconds(server),
        wal_bytes(server),
    )
    cpu, wall = time.process_time(), time.perf_counter()
    sys_trestle_pg.turns(url, work, turns)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    time.sleep(1.1)  # a backend reports its log's counts at most once a second
    return {
        "wall_us_per_turn": wall / turns * 1e6,
        "driver_cpu_us_per_turn": cpu / turns * 1e6,
        "server_cpu_us_per_turn": (pgserver.cpu_seconds(server) - server_cpu) / turns * 1e6,
        "wal_bytes_per_turn": (wal_bytes(server) - wal) / turns,
        "wal_syncs_per_turn": (pgserver.settled_wal_syncs(server) - syncs) / turns,
    }


def measure(url: str) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("VACUUM")
        left: dict[str, int] = dict(db.execute(TABLE_SIZES).fetchall())
        row = db.execute(HAS_COMPRESSED).fetchone()
        body = "octet_length(data) + coalesce(octet_length(compressed), 0)"
        if row is None or row[0] == 0:
            body = "octet_length(data)"
        events = db.execute(f"SELECT count(*), sum({body}) FROM trestle.events").fetchone()
        stored = db.execute("SELECT count(*), sum(octet_length(data)) FROM trestle.payloads")
        payloads = stored.fetchone()
        db.execute("VACUUM FULL")
        live: dict[str, int] = dict(db.execute(TABLE_SIZES).fetchall())
    return {
        "bytes": sum(left.values()),
        "bytes_live": sum(live.values()),
        "tables": left,
        "tables_live": live,
        "event_rows_and_body_bytes": list(events or ()),
        "payload_rows_and_bytes": list(payloads or ()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--turns", type=int, default=1000, help="agent turns in the run")
    p.add_argument("--json", type=Path, help="where to write the result")
    args = p.parse_args(argv)
    with LocalPostgres(settings=pgserver.SETTINGS) as server, tempfile.TemporaryDirectory() as tmp:
        machine = machine_info(Path(tmp))
        url = server.create_database("storage")
        spent = costs(server, url, Path(tmp), args.turns)
        result = {"turns": args.turns, "machine": machine, **spent, **measure(url)}
    text = json.dumps(result, indent=1)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
