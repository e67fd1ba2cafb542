"""The throwaway PostgreSQL server the PostgreSQL store's tests run against."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path
from secrets import token_hex

import psycopg
import pytest
from psycopg import errors

from trestle.testing.postgres import LocalPostgres, PostgresNotFoundError, find_server_bin


def _refuses_tcp(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_it_listens_on_127_0_0_1_alone(postgres: LocalPostgres) -> None:
    with psycopg.connect(postgres.url()) as connection:
        row = connection.execute("SHOW listen_addresses").fetchone()
    assert row == ("127.0.0.1",)
    assert postgres.url().startswith(f"postgresql://trestle:{postgres.password}@127.0.0.1:")
    # the rest of 127/8 reaches this machine too, but nothing listens there
    assert _refuses_tcp("127.0.0.2", postgres.port)


def test_a_wrong_password_is_refused(postgres: LocalPostgres) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(postgres.url(password="not-the-password"), connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(postgres.url(user="trestle", password=None), connect_timeout=5)


def test_a_role_connects_but_creates_tables_only_where_it_owns_them(
    postgres: LocalPostgres,
) -> None:
    role, password = f"reader_{token_hex(4)}", token_hex(8)
    postgres.create_role(role, password)
    theirs = postgres.create_database().rsplit("/", 1)[1]
    own = postgres.create_database(owner=role).rsplit("/", 1)[1]

    with psycopg.connect(postgres.url(theirs, user=role, password=password)) as connection:
        assert connection.execute("SELECT current_user").fetchone() == (role,)
        with pytest.raises(errors.InsufficientPrivilege):
            connection.execute("CREATE TABLE runs (id int)")
    with psycopg.connect(postgres.url(own, user=role, password=password)) as connection:
        connection.execute("CREATE TABLE runs (id int)")


def test_two_databases_are_apart(postgres: LocalPostgres, postgres_url: str) -> None:
    other = postgres.create_database()
    with psycopg.connect(postgres_url) as connection:
        connection.execute("CREATE TABLE runs (id int)")
    with psycopg.connect(other) as connection:
        assert connection.execute("SELECT to_regclass('runs')").fetchone() == (None,)


def test_a_killed_server_refuses_connections_and_restarts_with_its_data() -> None:
    with LocalPostgres() as server:
        url = server.create_database()
        with psycopg.connect(url) as connection:
            connection.execute("CREATE TABLE runs (id int)")
            connection.execute("INSERT INTO runs VALUES (7)")
        held = psycopg.connect(url)
        port = server.port

        server.kill()
        with pytest.raises(psycopg.OperationalError):
            held.execute("SELECT 1")
        held.close()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2)

        server.restart()
        assert server.port == port
        with psycopg.connect(url) as connection:
            assert connection.execute("SELECT id FROM runs").fetchall() == [(7,)]
        directory = server.directory
    assert not directory.exists()
    assert _refuses_tcp("127.0.0.1", port)


def test_without_a_server_installed_it_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("trestle.testing.postgres.DISTRIBUTION_BINS", tmp_path)
    with pytest.raises(PostgresNotFoundError, match=r"scripts/setup-postgres\.sh"):
        find_server_bin()


def test_run_by_hand_it_prints_its_url_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "trestle.testing.postgres"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("postgresql://trestle:"), "no URL on the first line"
        with psycopg.connect(url) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        process.kill()
        process.wait()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)
