"""A lease's commits on a PostgreSQL store: what a renewal and a release each cost.

Usage::

    python bench/pg_leases.py [--calls N] [--json PATH]

On a throwaway server (``LocalPostgres`` with ``pgserver.SETTINGS``) and a fresh
database, one run, one lease: ``--calls`` renewals back to back, then as many
releases, each kind on a connection of its own. Per call: the wall time, this
process's CPU, and the server's fsyncs of its write-ahead log (``pg_stat_wal``, read
once the connection has ended and the server has reported it). A commit that waits for
the disk is one fsync; one made with ``synchronous_commit = off`` is none (the server's
log writer syncs a batch of them now and then). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pgserver
from hostinfo import machine_info
from trestle.core.events import RunCreated
from trestle.core.plan import Plan, Step
from trestle.store.base import Owner
from trestle.store.postgres import PostgresStore
from trestle.testing.postgres import LocalPostgres

RUN = "lease-bench"
OWNER = Owner(name="bench", pid=os.getpid(), host=os.uname().nodename)


def per_call(server: LocalPostgres, url: str, kind: str, calls: int) -> dict[str, float]:
    store = PostgresStore(url)
    lease = store.acquire_lease(RUN, OWNER, ttl=60.0, now=time.time() + 1e6)  # past any
    syncs = pgserver.settled_wal_syncs(server)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        if kind == "renew":
            store.renew_lease(RUN, lease.token, ttl=60.0, now=time.time())
        else:
            store.release_lease(RUN, lease.token)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    store.close()  # an ending backend reports its counts
    time.sleep(1.1)  # and the stats are read at most once a second
    return {
        "wall_us": wall / calls * 1e6,
        "cpu_us": cpu / calls * 1e6,
        "wal_syncs": (pgserver.settled_wal_syncs(server) - syncs) / calls,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--calls", type=int, default=500, help="renewals, then releases")
    p.add_argument("--json", type=Path, help="where to write the result")
    args = p.parse_args(argv)
    plan = Plan(goal="hold a lease", steps=[Step(id="one", run="true")])
    with LocalPostgres(settings=pgserver.SETTINGS) as server, tempfile.TemporaryDirectory() as tmp:
        url = server.create_database("leases")
        store = PostgresStore(url)
        store.create_run(RunCreated(at=1.0, run_id=RUN, plan=plan, workspace=tmp), summary="{}")
        store.close()
        result = {
            "calls": args.calls,
            "machine": machine_info(Path(tmp)),
            **{kind: per_call(server, url, kind, args.calls) for kind in ("renew", "release")},
        }
    text = json.dumps(result, indent=1)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
