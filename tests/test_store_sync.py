"""Which of the stores' commits wait for the disk.

SQLite: a lease is committed without an fsync (it names the process driving a run, and
a power loss ends every process); everything else, the events above all, is synced as
before. Unsynced still means written to the write-ahead log: a killed driver's lease is
there for the next process to see. Real stores, a real killed process.

PostgreSQL: a crash of the server need not end the drivers, so taking a lease (its
token is the fence) waits for the server's disk; only renewing and releasing one do not
(``synchronous_commit = off`` in their transaction alone), and a stale holder is still
refused. Seen on the real server, by a trigger that notes the setting each write to
the leases and events was made under.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from trestle.core.errors import LeaseLostError
from trestle.core.events import RunResumed
from trestle.core.plan import Plan, Step
from trestle.lifecycle.runs import create_run
from trestle.store import SqliteStore
from trestle.store.base import Appended, Owner
from trestle.store.postgres import PostgresStore

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


# Each write to the leases or events, with the synchronous_commit its transaction made it
# under (the trigger runs in that transaction).
NOTE_SETTINGS = """
CREATE TABLE public.writes (n serial, what text, sync text);
CREATE FUNCTION public.note() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  INSERT INTO public.writes (what, sync)
  VALUES (TG_TABLE_NAME || ' ' || TG_OP, current_setting('synchronous_commit'));
  RETURN NULL;
END $$;
CREATE TRIGGER note AFTER INSERT OR UPDATE ON trestle.leases
  FOR EACH ROW EXECUTE FUNCTION public.note();
CREATE TRIGGER note AFTER INSERT ON trestle.events
  FOR EACH STATEMENT EXECUTE FUNCTION public.note()
"""


def _noted(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as db:
        return [(w, s) for w, s in db.execute("SELECT what, sync FROM public.writes ORDER BY n")]


def test_postgres_renews_and_releases_a_lease_without_waiting_and_takes_one_synced(
    postgres_url: str, tmp_path: Path
) -> None:
    store = PostgresStore(postgres_url)
    run_id = create_run(store, PLAN, workspace=tmp_path)
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(NOTE_SETTINGS)
    lease = store.acquire_lease(run_id, _owner(os.getpid()), ttl=5.0, now=time.time())
    store.renew_lease(run_id, lease.token, ttl=5.0, now=time.time())
    events = [RunResumed(at=time.time(), owner="test")]
    store.append(run_id, Appended(events, 2, "running", "{}"), token=lease.token)
    store.release_lease(run_id, lease.token)

    assert _noted(postgres_url) == [
        ("leases INSERT", "on"),  # taken: the token must survive a crash of the server
        ("leases UPDATE", "off"),  # renewed
        ("events INSERT", "on"),
        ("leases UPDATE", "off"),  # released
    ]
    # SET LOCAL: the connection's own setting is untouched once the transaction ends
    assert store._connection().execute("SHOW synchronous_commit").fetchone() == ("on",)
    assert [e.seq for e in store.events(run_id)] == [1, 2]
    store.close()


def test_postgres_still_refuses_a_stale_holder_whose_renewals_did_not_wait(
    postgres_url: str, tmp_path: Path
) -> None:
    first, second = PostgresStore(postgres_url), PostgresStore(postgres_url)
    run_id = create_run(first, PLAN, workspace=tmp_path)
    now = time.time()
    stale = first.acquire_lease(run_id, _owner(os.getpid()), ttl=5.0, now=now)
    first.renew_lease(run_id, stale.token, ttl=5.0, now=now + 1)
    # the renewed lease has expired: another driver takes over, with a new token
    taken = second.acquire_lease(run_id, _owner(os.getpid()), ttl=5.0, now=now + 60)
    assert taken.token == stale.token + 1

    with pytest.raises(LeaseLostError):
        first.renew_lease(run_id, stale.token, ttl=5.0, now=now + 61)
    events = [RunResumed(at=now + 61, owner="stale")]
    with pytest.raises(LeaseLostError, match="another process took over"):
        first.append(run_id, Appended(events, 2, "running", "{}"), token=stale.token)
    first.release_lease(run_id, stale.token)  # changes nothing: the token is not its own
    assert second.lease(run_id) == taken
    second.append(run_id, Appended(events, 2, "running", "{}"), token=taken.token)
    assert [e.seq for e in second.events(run_id)] == [1, 2]
    first.close()
    second.close()
