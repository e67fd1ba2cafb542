"""The benchmark's PostgreSQL server: its settings, fresh databases, and its CPU time.

``postgres_store.py`` runs one :class:`~trestle.testing.postgres.LocalPostgres` for the
whole benchmark and gives every measurement a database of its own (:class:`Databases`).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Sequence
from pathlib import Path
from secrets import token_hex

from trestle.testing.postgres import LocalPostgres

# PostgreSQL's own default; LocalPostgres keeps 16 MB because every test worker runs one
SETTINGS = {"shared_buffers": "128MB"}
SHOWN = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "wal_sync_method",
    "full_page_writes",
    "commit_delay",
    "shared_buffers",
)


class Databases:
    """Fresh databases on the server, one per measurement, dropped once measured."""

    def __init__(self, server: LocalPostgres) -> None:
        self.server = server
        self._names = itertools.count(1)

    def make(self, count: int) -> list[tuple[str, str]]:
        """``count`` new databases: (name, URL) each."""
        names = [f"bench_{next(self._names)}_{token_hex(3)}" for _ in range(count)]
        return [(name, self.server.create_database(name)) for name in names]

    def drop(self, made: Sequence[tuple[str, str]]) -> None:
        for name, _ in made:
            self.server.drop_database(name)

    def wait_closed(self, made: Sequence[tuple[str, str]], timeout: float = 10.0) -> None:
        """Wait until no session is left on these databases: their backends have ended
        (and their CPU time is the postmaster's children's)."""
        names = [name for name, _ in made]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.server.connect() as db:
                row = db.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = ANY(%s)", (names,)
                ).fetchone()
            if row is not None and row[0] == 0:
                break
            time.sleep(0.02)
        time.sleep(0.05)  # the postmaster reaps an ended backend at once; give it a moment


def settings(server: LocalPostgres) -> dict[str, str]:
    """What the server runs with, as ``SHOW`` reports it."""
    shown = {}
    with server.connect() as db:
        for name in SHOWN:
            row = db.execute(f"SHOW {name}").fetchone()
            shown[name] = "?" if row is None else str(row[0])
    return shown


def wal_syncs(server: LocalPostgres) -> int:
    """How many times the server has synced its write-ahead log to disk (``pg_stat_wal``):
    a commit that waits for its fsync is one, unless a group of commits shares one."""
    with server.connect() as db:
        row = db.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()
    return 0 if row is None else int(row[0])


def settled_wal_syncs(server: LocalPostgres, timeout: float = 5.0) -> int:
    """:func:`wal_syncs` once ended backends have reported theirs: two readings 0.1 s
    apart agree (nothing else writes to this server meanwhile)."""
    deadline = time.monotonic() + timeout
    last = wal_syncs(server)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = wal_syncs(server)
        if now == last:
            break
        last = now
    return last


def cpu_seconds(server: LocalPostgres) -> float:
    """CPU seconds the server's processes have used so far: the postmaster's own, the
    live processes it started (writers, backends), and the backends it has reaped.

    Read before and after a measurement (once its connections are closed), the
    difference is what the server spent on it, wherever the server ran.
    """
    pid = int((server.directory / "data" / "postmaster.pid").read_text().split()[0])
    postmaster = _stat(Path(f"/proc/{pid}/stat"))
    ticks = sum(int(x) for x in postmaster[11:15])  # utime, stime, cutime, cstime
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat(stat)
        if len(fields) > 12 and fields[1] == str(pid):
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _stat(path: Path) -> list[str]:
    """The fields of a /proc stat file after the command name (state first)."""
    try:
        # the command name in parentheses may itself hold spaces or parentheses
        return path.read_text().rpartition(")")[2].split()
    except OSError:  # the process ended meanwhile
        return []
