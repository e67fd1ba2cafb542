"""The PostgreSQL store meeting bad input: wrong URLs, servers that are not there or go
away, databases that are not stores, roles that may not do what a store needs.

Every one is a real server from the distribution's packages (``trestle.testing.
postgres``). Each failure is a StoreError (exit 4) naming the server without its
password and what went wrong; nothing is recorded half; a database that is not a store
is left exactly as it was.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from forked_cli import run_trestle
from test_store_conformance import (
    RUN,
    TTL,
    batch,
    created,
    leased,
    me,
    one_of_each,
    snapshot_of,
)
from trestle.core.errors import (
    ConfigError,
    LeaseLostError,
    NoStoreError,
    StoreError,
    TrestleError,
)
from trestle.store import postgres_schema
from trestle.store.location import open_store, where_shown
from trestle.store.postgres import PostgresStore
from trestle.testing.postgres import LocalPostgres


def tables(url: str) -> list[str]:
    with psycopg.connect(url) as db:
        rows = db.execute(
            "SELECT schemaname || '.' || tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
        ).fetchall()
    return [r[0] for r in rows]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- URLs and servers that are not there -------------------------------------------------


@pytest.mark.parametrize(
    "url, says, code",
    [
        # a port that is not a number: bad input (where a password split at a '/' is
        # read as the port, naming it would show a piece of the password)
        ("postgresql://u@127.0.0.1:notaport/db", "port is a number", 2),
        # one libpq cannot parse is bad input, refused before anything is tried
        ("postgresql://u@127.0.0.1/db?nosuchoption=1", "nosuchoption", 2),
    ],
    ids=["bad-port", "unknown-option"],
)
def test_a_url_that_does_not_parse_is_refused_naming_why(url: str, says: str, code: int) -> None:
    with pytest.raises(TrestleError, match=says) as info:
        open_store(url)
    assert info.value.exit_code == code


@pytest.mark.parametrize(
    "url, says",
    [
        # libpq quotes the token it could not read: the password, past a bad %-escape
        ("postgresql://trestle:ab%zzSECRET@127.0.0.1/t", 'invalid percent-encoded token: "..."'),
        ("postgresql://trestle:pw%2SECRET@127.0.0.1/t", 'invalid percent-encoded token: "..."'),
        ("postgresql://t@127.0.0.1/t?password=ab%zzSECRET", "invalid percent-encoded token"),
        # a bare @ in the password: libpq reads the rest as the host, which was shown
        ("postgresql://trestle:pa@SECRET@127.0.0.1/t", "must be written %-escaped"),
        # a '/' in it: the rest was read as the port and the database's name
        ("postgresql://trestle:TOP/SECRET@127.0.0.1/t", "must be written %-escaped"),
        # an '&' in a password parameter: libpq quotes the rest as a parameter's name
        ("postgresql://t@127.0.0.1/t?password=ab&cdSECRET", 'separator "..."'),
    ],
    ids=["bad-escape", "short-escape", "option", "bare-at", "slash", "ampersand"],
)
def test_a_url_whose_password_does_not_parse_is_refused_without_it(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_store(url)
    assert says in str(info.value) and "SECRET" not in str(info.value)
    assert info.value.exit_code == 2
    assert "SECRET" not in where_shown(url)
    doctor = run_trestle(["doctor", "--store", url], cwd=Path.cwd(), timeout=60)
    assert doctor.returncode == 2, doctor.stdout + doctor.stderr  # bad input, not damage
    assert "SECRET" not in doctor.stdout + doctor.stderr


def test_a_server_that_is_not_there_is_named_without_waiting_long() -> None:
    port = free_port()  # nothing listens on it
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        open_store(f"postgresql://trestle:secret-pw@127.0.0.1:{port}/trestle")
    message = str(info.value)
    assert f"127.0.0.1:{port}/trestle" in message and "cannot be reached" in message
    assert "once it is back" in message
    assert "secret-pw" not in message
    assert info.value.exit_code == 4
    assert time.monotonic() - started < 10


def test_a_wrong_password_is_refused_and_never_shown(postgres: LocalPostgres) -> None:
    url = postgres.url(password="not-the-password")
    with pytest.raises(StoreError, match="password authentication failed") as info:
        open_store(url)
    assert "not-the-password" not in str(info.value)
    assert "check the role, its password and the database" in str(info.value)
    assert "once it is back" not in str(info.value)  # waiting would not help
    assert info.value.exit_code == 4


# --- databases that are not stores ----------------------------------------------------------


def test_a_database_of_another_application_is_refused_and_left_as_it_was(
    postgres_url: str,
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("CREATE TABLE users (id int PRIMARY KEY, name text)")
        db.execute("INSERT INTO users VALUES (1, 'ada')")
    for create in (True, False):
        with pytest.raises(StoreError, match=r"another application's tables \(public.users\)"):
            open_store(postgres_url, create=create)
    assert tables(postgres_url) == ["public.users"]


def test_a_schema_named_trestle_that_trestle_did_not_make_is_refused(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("CREATE SCHEMA trestle")
        db.execute("CREATE TABLE trestle.things (id int)")
    with pytest.raises(StoreError, match="schema named 'trestle' that Trestle did not make"):
        open_store(postgres_url)
    assert tables(postgres_url) == ["trestle.things"]


def test_reading_an_empty_database_finds_no_store_and_creates_none(postgres_url: str) -> None:
    with pytest.raises(NoStoreError, match="the database is empty") as info:
        open_store(postgres_url, create=False)
    assert info.value.exit_code == 8
    assert tables(postgres_url) == []


def test_processes_creating_one_store_at_once_all_open_it(postgres_url: str) -> None:
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(6) as pool:
        versions = pool.map(_open_version, [postgres_url] * 6)
    assert versions == [len(postgres_schema.MIGRATIONS)] * 6


def _open_version(url: str) -> int:
    store = PostgresStore(url)
    try:
        return store.schema_version()
    finally:
        store.close()


# --- schema versions: never changed by whoever opens the store --------------------------


def test_a_store_from_a_newer_trestle_is_refused_and_not_changed(postgres_url: str) -> None:
    open_store(postgres_url).close()
    newer = len(postgres_schema.MIGRATIONS) + 1
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("UPDATE trestle.schema_version SET version = %s", (newer,))
    with pytest.raises(StoreError, match=f"version {newer} is newer"):
        open_store(postgres_url)
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT version FROM trestle.schema_version").fetchone() == (newer,)


def test_a_store_from_an_older_trestle_is_refused_until_upgraded_explicitly(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(postgres_url)
    store.create_run(created(), summary="{}")
    store.close()
    later = (*postgres_schema.MIGRATIONS, "ALTER TABLE trestle.runs ADD COLUMN label text")
    monkeypatch.setattr("trestle.store.postgres.MIGRATIONS", later)
    with pytest.raises(StoreError, match=r"written by an older Trestle.*--upgrade"):
        open_store(postgres_url)
    assert "label" not in _columns(postgres_url, "runs")  # refused, not changed

    upgraded = PostgresStore(postgres_url, create=False, upgrade=True)
    assert upgraded.upgraded == (len(later) - 1, len(later))
    upgraded.close()
    assert "label" in _columns(postgres_url, "runs")
    again = open_store(postgres_url)
    assert again.run(RUN).goal == "ship it"  # the run written before is read as it was
    again.close()


def _columns(url: str, table: str) -> list[str]:
    with psycopg.connect(url) as db:
        rows = db.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'trestle' AND table_name = %s",
            (table,),
        ).fetchall()
    return [r[0] for r in rows]


# --- roles without the privileges a store needs ----------------------------------------------


@pytest.fixture
def visitor(postgres: LocalPostgres) -> Iterator[str]:
    """A role that may log in and connect, and nothing more."""
    name = f"visitor_{time.monotonic_ns() % 10**9}"
    postgres.create_role(name, "visitor-pw")
    yield name


def test_a_role_that_may_not_create_the_store_is_told_what_to_grant(
    postgres: LocalPostgres, postgres_url: str, visitor: str
) -> None:
    url = postgres.url(database=postgres_url.rsplit("/", 1)[1], user=visitor, password="visitor-pw")
    with pytest.raises(StoreError, match=r"not allowed to.*grant it") as info:
        open_store(url)
    assert info.value.exit_code == 4 and "visitor-pw" not in str(info.value)
    assert tables(postgres_url) == []


def test_a_role_without_access_to_an_existing_store_cannot_read_or_write_it(
    postgres: LocalPostgres, postgres_url: str, visitor: str
) -> None:
    store = open_store(postgres_url)
    store.create_run(created(), summary="{}")
    before = snapshot_of(store, RUN)
    url = postgres.url(database=postgres_url.rsplit("/", 1)[1], user=visitor, password="visitor-pw")
    with pytest.raises(StoreError, match="not allowed to"):
        open_store(url).runs()
    assert snapshot_of(store, RUN) == before
    store.close()


# --- text PostgreSQL cannot keep -------------------------------------------------------------


def test_a_nul_character_is_refused_by_name_and_nothing_is_recorded(postgres_url: str) -> None:
    store = open_store(postgres_url)
    store.create_run(created(), summary="{}")
    before = snapshot_of(store, RUN)
    with pytest.raises(ConfigError, match="the request's reason holds a NUL character"):
        store.add_request(RUN, "retry", "build", "again\x00", now=102.0)
    assert snapshot_of(store, RUN) == before
    store.close()


# --- a server that goes away mid-run -----------------------------------------------------


@pytest.fixture(scope="module")
def fragile() -> Iterator[LocalPostgres]:
    """A server of this module's own, to kill and bring back."""
    with LocalPostgres() as server:
        yield server


def test_a_server_that_goes_away_fails_the_write_whole_and_the_store_works_once_back(
    fragile: LocalPostgres, tmp_path: Path
) -> None:
    url = fragile.create_database()
    store = open_store(url)
    store.create_run(created(), summary="{}")
    token = leased(store, RUN)
    store.append(RUN, batch(one_of_each()[:2], 2), token=token)
    before = snapshot_of(store, RUN)

    fragile.kill()
    with pytest.raises(StoreError, match=r"cannot be reached.*trestle resume") as info:
        store.append(RUN, batch(one_of_each()[2:4], 4), token=token)
    assert info.value.exit_code == 4
    with pytest.raises(StoreError, match="cannot be reached"):
        store.runs()

    fragile.restart()
    assert snapshot_of(store, RUN) == before  # nothing of the failed write; reconnected
    store.append(RUN, batch(one_of_each()[2:4], 4), token=token)
    assert [s.seq for s in store.events(RUN)] == [1, 2, 3, 4, 5]
    store.close()


def test_a_connection_the_server_drops_is_made_again_for_a_read_and_a_renewal(
    postgres_url: str,
) -> None:
    # one pg_terminate_backend (or a server restarted between polls) ended a healthy
    # driver: its next poll for requests failed, and its running step was killed
    store = open_store(postgres_url)
    store.create_run(created(), summary="{}")
    token = leased(store, RUN)
    mine = store.add_request(RUN, "retry", "build", "again", now=101.0)

    def dropped() -> None:
        with psycopg.connect(postgres_url, autocommit=True) as other:
            ended = other.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'trestle' AND pid <> pg_backend_pid()"
            ).fetchall()
        assert ended == [(True,)]

    dropped()
    assert [r.id for r in store.pending_requests(RUN)] == [mine]
    dropped()
    store.renew_lease(RUN, token, ttl=TTL, now=200.0)
    lease = store.lease(RUN)
    assert lease is not None and lease.expires_at == 200.0 + TTL
    store.close()


class _CommitCutter:
    """A TCP relay to the server that, once armed, passes the next COMMIT on and then
    closes both ends without relaying the server's answer: a commit done, its
    acknowledgement lost."""

    def __init__(self, port: int) -> None:
        import threading

        self.port, self.armed = port, threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.port))
            pair, cut = (client, server), threading.Event()  # this connection's
            for ends in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(*ends, pair, cut), daemon=True).start()

    def _pipe(
        self, src: socket.socket, dst: socket.socket, pair: tuple[socket.socket, ...], cut: Any
    ) -> None:
        try:
            while data := src.recv(65536):
                if cut.is_set():
                    break  # the server's answer to the commit: never relayed
                cutting = src is pair[0] and b"COMMIT" in data and self.armed.is_set()
                if cutting:
                    self.armed.clear()
                    cut.set()
                dst.sendall(data)
                if cutting:
                    time.sleep(0.3)  # the server commits meanwhile
                    break
        except OSError:
            pass
        for end in pair:
            end.close()


def test_a_commit_whose_answer_is_lost_is_not_said_to_be_unrecorded(postgres_url: str) -> None:
    # "nothing of it was recorded", said of a commit the server had made
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = {k: str(v) for k, v in conninfo_to_dict(postgres_url).items() if v is not None}
    cutter = _CommitCutter(int(params["port"]))
    relayed = make_conninfo(**{**params, "port": str(cutter.listener.getsockname()[1])})
    store = PostgresStore(relayed)
    store.create_run(created(), summary="{}")
    token = leased(store, RUN)
    cutter.armed.set()
    with pytest.raises(StoreError) as info:
        store.append(RUN, batch(one_of_each()[:1], 2), token=token)
    said = str(info.value)
    assert "whether it was recorded is not known" in said and "nothing of it" not in said
    assert [e.seq for e in store.events(RUN)] == [1, 2]  # it was
    cutter.listener.close()
    store.close()


def test_a_lease_taken_just_before_the_server_crashes_is_kept_so_its_token_is_never_reused(
    fragile: LocalPostgres,
) -> None:
    # Taking a lease waits for the server's disk (renewing one does not): a driver
    # that took token 2 and paused through the crash must not find it handed out again.
    url = fragile.create_database()
    store = open_store(url)
    store.create_run(created(), summary="{}")
    first = store.acquire_lease(RUN, me(), ttl=TTL, now=100.0)
    second = store.acquire_lease(RUN, me(), ttl=TTL, now=200.0)  # the first expired
    fragile.kill()  # at once: a commit that had not reached the disk would be lost
    fragile.restart()
    later = open_store(url)
    assert later.lease(RUN) == second
    third = later.acquire_lease(RUN, me(), ttl=TTL, now=300.0)
    assert (first.token, second.token, third.token) == (1, 2, 3)
    # its connection died with the server: a read is asked again on a new one
    assert [r.run_id for r in store.runs()] == [RUN]
    with pytest.raises(LeaseLostError):  # connected again, and fenced off
        store.append(RUN, batch(one_of_each()[:1], 2), token=second.token)
    store.close()
    later.close()


PLAN = """\
goal: survive the store going away
steps:
  - {id: first, run: "echo first >> ledger"}
  - id: slow
    needs: [first]
    run: "touch started; sleep 2; echo slow >> ledger"
    verify: [{file_contains: ledger, regex: "^slow$"}]
  - {id: last, needs: [slow], run: "echo last >> ledger"}
"""


def test_a_run_whose_server_goes_away_stops_with_exit_4_and_resumes_once_it_is_back(
    fragile: LocalPostgres, tmp_path: Path
) -> None:
    """Through the real CLI: the server is killed while a step runs; the driver stops
    with exit 4 saying how to continue; once the server is back, doing exactly what it
    said finishes the run, and no step's effect happened twice."""
    from test_cli import cli_env

    url = fragile.create_database()
    (tmp_path / "plan.yaml").write_text(PLAN)
    env = cli_env(TRESTLE_SANDBOX="off")
    driver = subprocess.Popen(
        [sys.executable, "-m", "trestle", "run", "plan.yaml", "--store", url],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists():
        assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()
        time.sleep(0.05)
    fragile.kill()
    out, err = driver.communicate(timeout=60)
    said = " ".join(err.split())
    assert driver.returncode == 4, (out, err)
    assert "cannot be reached" in said and fragile.password not in out + err
    # what failed first: the lease's release, which failed after it, hid it before
    assert "releasing the lease" not in said, said
    resume = re.search(r"`(trestle resume \S+)`", said)
    assert resume is not None, said

    fragile.restart()

    def trestle(*args: str) -> subprocess.CompletedProcess[str]:
        return run_trestle([*args, "--store", url], cwd=tmp_path, env=env, timeout=120)

    # the driver stopped the step's processes as it stopped: the step's outcome is
    # unknown to the store, its check finds it did not happen, and a human decides
    again = trestle(*resume.group(1).split()[1:])
    said = " ".join(again.stdout.split())
    assert again.returncode == 3, (again.stdout, again.stderr)
    retry = re.search(r"if not: `trestle (retry \S+ slow)`; then `trestle (resume \S+)`", said)
    assert retry is not None, said
    assert (tmp_path / "ledger").read_text().splitlines() == ["first"]
    assert trestle(*retry.group(1).split()).returncode == 0
    done = trestle(*retry.group(2).split())
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert (tmp_path / "ledger").read_text().splitlines() == ["first", "slow", "last"]


def test_a_step_the_policy_lets_reach_the_network_is_said_to_reach_the_store_server(
    postgres_url: str, tmp_path: Path
) -> None:
    """A store file is hidden from every step; a server is a host like any other, so a
    run whose policy opens the network says so where the sandbox is described."""
    import asyncio

    from trestle.core.events import SandboxChosen
    from trestle.engines.local import LocalEngine
    from trestle.execution.sandbox import find_bwrap
    from trestle.formats.planfile import parse_plan
    from trestle.lifecycle.runs import create_run

    bwrap, why = find_bwrap()
    assert bwrap is not None, f"{why}: scripts/setup-sandbox.sh installs bubblewrap"
    store = open_store(postgres_url)
    details: dict[bool, str] = {}
    for network in ([], ["fetch"]):
        policy = f"policy: {{sandbox: {{network: {network}}}}}\n"
        plan = parse_plan(f"goal: g\n{policy}steps:\n  - {{id: fetch, run: 'true'}}\n")
        run_id = create_run(store, plan, workspace=tmp_path)
        asyncio.run(LocalEngine(store, sandbox="require").run(run_id))
        (chosen,) = [e.event for e in store.events(run_id) if isinstance(e.event, SandboxChosen)]
        details[bool(network)] = chosen.detail
    server = postgres_url.split("@")[1]
    assert server not in details[False]
    assert f"the store's server (postgresql://trestle@{server}) can be reached" in details[True]
    store.close()


# --- rows changed behind the store's back ------------------------------------------------


@pytest.mark.parametrize(
    "damage, says",
    [
        ("DELETE FROM trestle.events WHERE run_id = %s AND seq = 3", "event seq 3 is missing"),
        (
            'UPDATE trestle.events SET data = \'{"kind": "nonsense"\', compressed = NULL, '
            "packed = 0 WHERE run_id = %s AND seq = 2",
            "event seq 2 cannot be read",
        ),
        (
            "UPDATE trestle.events SET compressed = '\\x0102'::bytea WHERE run_id = %s AND seq = 2",
            "event seq 2 cannot be read: its body is stored compressed",
        ),
        (
            "UPDATE trestle.events SET kind = 'run_finished' WHERE run_id = %s AND seq = 2",
            "event seq 2 is listed as 'run_finished'",
        ),
    ],
    ids=["gap", "unreadable", "garbled-compressed", "wrong-kind"],
)
def test_a_damaged_run_is_named_and_the_other_runs_stay_usable(
    postgres_url: str, damage: str, says: str
) -> None:
    from trestle.core.errors import StoreDamagedError

    store = open_store(postgres_url)
    for run_id in (RUN, "other-run"):
        store.create_run(created(run_id), summary="{}")
        token = leased(store, run_id)
        store.append(run_id, batch(one_of_each()[:3], 2), token=token)
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(damage, (RUN,))
    with pytest.raises(StoreDamagedError, match=says) as info:
        store.events(RUN)
    assert info.value.run_id == RUN and info.value.exit_code == 4
    assert [s.seq for s in store.events("other-run")] == [1, 2, 3, 4]
    store.close()
