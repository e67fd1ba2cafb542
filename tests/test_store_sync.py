"""Which of the SQLite store's commits wait for the disk.

A lease is committed without an fsync (it names the process driving a run, and a
power loss ends every process); everything else, the events above all, is synced as
before. Unsynced still means written to the write-ahead log: a killed driver's lease is
there for the next process to see. Real stores, a real killed process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from trestle.core.events import RunResumed
from trestle.core.plan import Plan, Step
from trestle.lifecycle.runs import create_run
from trestle.store import SqliteStore
from trestle.store.base import Appended, Owner

PLAN = Plan(goal="count", steps=[Step(id="one", run="true")])
FULL = 2  # what PRAGMA synchronous reads for FULL


def _owner(pid: int) -> Owner:
    return Owner(name=f"driver {pid}", pid=pid, host=os.uname().nodename)


def test_only_the_lease_commits_without_waiting_for_the_disk(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "trestle.db")
    run_id = create_run(store, PLAN, workspace=tmp_path)
    said: list[str] = []
    store._db.set_trace_callback(said.append)
    lease = store.acquire_lease(run_id, _owner(os.getpid()), ttl=5.0, now=time.time())
    store.renew_lease(run_id, lease.token, ttl=5.0, now=time.time())
    events = [RunResumed(at=time.time(), owner="test")]
    store.append(run_id, Appended(events, 2, "running", "{}"), token=lease.token)
    store.release_lease(run_id, lease.token)
    store._db.set_trace_callback(None)

    # each commit, with the synchronous setting it was made under
    commits, mode = [], "FULL"
    for statement in said:
        if statement.startswith("PRAGMA synchronous="):
            mode = statement.removeprefix("PRAGMA synchronous=")
        elif statement == "COMMIT":
            commits.append(mode)
    assert commits == ["NORMAL", "NORMAL", "FULL", "NORMAL"]
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == FULL
    assert [e.seq for e in store.events(run_id)] == [1, 2]
    store.close()


def test_a_killed_drivers_unsynced_lease_is_there_for_the_next_process(tmp_path: Path) -> None:
    path = tmp_path / "trestle.db"
    store = SqliteStore(path)
    run_id = create_run(store, PLAN, workspace=tmp_path)
    store.close()
    take = (
        "import os, signal, sys, time\n"
        "from trestle.store import SqliteStore\n"
        "from trestle.store.base import Owner\n"
        "store = SqliteStore(sys.argv[1])\n"
        "owner = Owner(name='first', pid=os.getpid(), host=os.uname().nodename)\n"
        "store.acquire_lease(sys.argv[2], owner, ttl=60.0, now=time.time())\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", take, str(path), run_id], check=False)
    assert killed.returncode == -9
    store = SqliteStore(path)
    # the dead driver's lease is passed over, and the token goes on from its token
    assert store.acquire_lease(run_id, _owner(os.getpid()), ttl=5.0, now=time.time()).token == 2
    store.close()
