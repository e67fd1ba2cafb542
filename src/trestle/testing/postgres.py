"""A throwaway PostgreSQL server on 127.0.0.1, for tests and benchmarks.

:class:`LocalPostgres` runs the distribution's own ``initdb`` and ``postgres`` (no
container runtime) in a fresh temporary directory: a superuser ``trestle`` with a random
password, TCP on 127.0.0.1 only with ``scram-sha-256`` (a wrong password is refused),
its unix socket in a directory of its own, fsync on. It is deleted when stopped::

    with LocalPostgres() as server:
        url = server.create_database()  # postgresql://trestle:...@127.0.0.1:PORT/db_1_...

:meth:`LocalPostgres.kill` takes the server away as a crash would and
:meth:`LocalPostgres.restart` brings it back on the same data and port.

Run one by hand, or beside a benchmark::

    python -m trestle.testing.postgres

prints the server's URL on one line, serves until Ctrl-C or SIGTERM, then stops and
deletes it. Without a server installed, run ``scripts/setup-postgres.sh``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self, TypedDict
from urllib.parse import quote

from trestle.core.errors import ConfigError, MissingExtraError, RunError

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg.rows import TupleRow
    from psycopg.sql import SQL, Composed

SUPERUSER = "trestle"
HOST = "127.0.0.1"
# Where Debian and Ubuntu put each installed major version's server.
DISTRIBUTION_BINS = Path("/usr/lib/postgresql")
# The unprivileged account that runs the server when we are root (initdb and postgres
# refuse to run as root): the distribution's own, else nobody.
SERVER_ACCOUNT = "postgres"
NOBODY = 65534

# Many test drivers connect at once; the buffers stay small because every pytest worker
# runs a server of its own.
SERVER_SETTINGS = {"max_connections": "200", "shared_buffers": "16MB"}
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class PostgresNotFoundError(ConfigError):
    """No PostgreSQL server is installed here; says how to install one."""


class PostgresServerError(RunError):
    """The local server could not be created, started or stopped; carries its log's tail."""


class _AccountOptions(TypedDict):
    """What subprocess needs to run a program as another account."""

    user: int | None
    group: int | None
    extra_groups: list[int] | None


@dataclass(frozen=True)
class _Account:
    """Who the server's processes run as."""

    uid: int
    gid: int

    @staticmethod
    def options(account: _Account | None) -> _AccountOptions:
        if account is None:
            return {"user": None, "group": None, "extra_groups": None}
        return {"user": account.uid, "group": account.gid, "extra_groups": []}

    @classmethod
    def for_server(cls) -> _Account | None:
        """None to run as ourselves; when we are root, the unprivileged account."""
        if os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam(SERVER_ACCOUNT)
        except KeyError:
            return cls(NOBODY, NOBODY)
        return cls(entry.pw_uid, entry.pw_gid)


def find_server_bin() -> Path:
    """The directory holding ``initdb`` and ``postgres``: from PATH, else the highest
    version under /usr/lib/postgresql.

    Raises:
        PostgresNotFoundError: no such directory.
    """
    initdb = shutil.which("initdb")
    if initdb is not None:
        # /usr/local/bin/initdb may be a link into /usr/lib/postgresql/N/bin, whose
        # postgres is its true sibling.
        for candidate in (Path(initdb).parent, Path(initdb).resolve().parent):
            if _is_server_bin(candidate):
                return candidate
    versions = sorted(DISTRIBUTION_BINS.glob("*/bin"), key=_major_version, reverse=True)
    for candidate in versions:
        if _is_server_bin(candidate):
            return candidate
    raise PostgresNotFoundError(
        f"no PostgreSQL server here (initdb and postgres, on PATH or in "
        f"{DISTRIBUTION_BINS}/*/bin); run scripts/setup-postgres.sh "
        f"(or: apt-get install postgresql)"
    )


def _is_server_bin(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in ("initdb", "postgres"))


def _major_version(bin_dir: Path) -> tuple[int, str]:
    name = bin_dir.parent.name
    return (int(name), name) if name.isdigit() else (-1, name)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class LocalPostgres:
    """A PostgreSQL server of its own on 127.0.0.1. Use it as a context manager, or call
    :meth:`start` and :meth:`stop`.

    The server's processes are tied to the thread that starts them (they get SIGQUIT
    when it ends), so a test run killed outright leaves no server behind: start it
    from a thread that lives as long as you need it.

    Args:
        bin_dir: where ``initdb`` and ``postgres`` are; :func:`find_server_bin` if None.
        settings: server settings on top of :data:`SERVER_SETTINGS` (``{"fsync": ...}``).
    """

    def __init__(self, bin_dir: Path | None = None, settings: dict[str, str] | None = None) -> None:
        self.bin_dir = bin_dir
        self.settings = {**SERVER_SETTINGS, **(settings or {})}
        self.user = SUPERUSER
        self.password = secrets.token_urlsafe(18)
        self.port = 0
        self._account = _Account.for_server()
        self._root: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)

    # -- where it is -----------------------------------------------------------------

    @property
    def directory(self) -> Path:
        """The server's temporary directory: ``data/``, ``socket/`` and ``server.log``."""
        if self._root is None:
            raise PostgresServerError("the local PostgreSQL server has not been started")
        return self._root

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    def url(
        self, database: str = "postgres", user: str | None = None, password: str | None = None
    ) -> str:
        """``postgresql://user:password@127.0.0.1:PORT/database``; the superuser's if no
        user is given."""
        if user is None:
            user = self.user
            password = self.password if password is None else password
        credentials = quote(user, safe="")
        if password is not None:
            credentials += ":" + quote(password, safe="")
        return f"postgresql://{credentials}@{HOST}:{self.port}/{quote(database, safe='')}"

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the server wrote, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except (OSError, PostgresServerError):
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        """Create the server in a fresh temporary directory, start it on a free port and
        wait until it accepts connections.

        Raises:
            PostgresNotFoundError: no server binaries, or no psycopg.
            PostgresServerError: initdb failed, or the server did not come up.
        """
        if self._root is not None:
            return self
        _driver_check()
        self.bin_dir = self.bin_dir or find_server_bin()
        self._root = Path(tempfile.mkdtemp(prefix="trestle-postgres-"))
        try:
            self._prepare_directory()
            self._initdb()
            self._launch_on_free_port()
            self._revoke_public_create()
        except BaseException:
            self._discard()
            raise
        return self

    def stop(self) -> None:
        """Shut the server down (fast: open connections are ended) and delete it."""
        if self._root is None:
            return
        try:
            self._shut_down()
        finally:
            self._discard()

    def kill(self) -> None:
        """Take the server away as a crash would: SIGKILL the postmaster and every
        process it started. Its data stay; :meth:`restart` recovers them."""
        process = self._process
        if process is None:
            return
        self._process = None
        # Stopped, it cannot start a new backend between the listing and the kill.
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGSTOP)
        children = _children_of(process.pid)
        process.kill()
        process.wait()
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        # A backend still attached to the shared memory would stop a restart.
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(_is_running(child) for child in children):
            if time.monotonic() > deadline:
                raise PostgresServerError(f"the server's processes {children} outlived SIGKILL")
            time.sleep(0.02)

    def restart(self) -> None:
        """Start the server again on the same data and port (after :meth:`kill` it
        first recovers from its log, as after a crash); shut it down first if it runs."""
        if self._root is None:
            raise PostgresServerError("the local PostgreSQL server was never started")
        self._shut_down()
        self._launch()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- databases and roles -------------------------------------------------------------

    def create_database(self, name: str | None = None, *, owner: str | None = None) -> str:
        """Create an empty database (a unique name if none is given) and return its URL
        for the superuser. ``owner`` makes a role its owner, who may then create tables
        in its ``public`` schema."""
        from psycopg import sql

        name = name or f"db_{next(self._names)}_{secrets.token_hex(4)}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if owner is not None:
            statement += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
        self._execute(statement)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, ending the connections still open to it."""
        from psycopg import sql

        self._execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def create_role(self, name: str, password: str, *, create_db: bool = False) -> None:
        """Create a role that may log in with ``password`` and connect to any database,
        but create tables only in one it owns (see :meth:`create_database`)."""
        from psycopg import sql

        self._execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} {}").format(
                sql.Identifier(name),
                sql.Literal(password),
                sql.SQL("CREATEDB" if create_db else "NOCREATEDB"),
            )
        )

    def connect(self, database: str = "postgres") -> Connection[TupleRow]:
        """A superuser connection in autocommit mode; close it (``with``) when done."""
        import psycopg

        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=10)

    def _execute(self, statement: SQL | Composed, database: str = "postgres") -> None:
        with self.connect(database) as connection:
            connection.execute(statement)

    # -- the processes ---------------------------------------------------------------

    def _prepare_directory(self) -> None:
        root = self.directory
        (root / "socket").mkdir()
        if self._account is not None:
            for path in (root, root / "socket"):
                os.chown(path, self._account.uid, self._account.gid)

    def _initdb(self) -> None:
        password_file = self.directory / "password"
        password_file.write_text(self.password + "\n")
        if self._account is not None:
            os.chown(password_file, self._account.uid, self._account.gid)
        command = [
            str(self._bin("initdb")),
            f"--pgdata={self.directory / 'data'}",
            f"--username={self.user}",
            f"--pwfile={password_file}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--encoding=UTF8",
            "--locale=C",
            # The server's own fsync stays on; initdb's closing sync of the fresh
            # files guards only against the machine itself crashing, where a
            # throwaway server is lost anyway.
            "--no-sync",
        ]
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env=_server_environment(),
                cwd=self.directory,
                timeout=READY_TIMEOUT,
                **_Account.options(self._account),
            )
        finally:
            password_file.unlink()
        if result.returncode != 0:
            # initdb's stdout tells what it was doing; its stderr what went wrong.
            said = result.stderr.strip() or result.stdout.strip()
            output = "\n".join(said.splitlines()[-20:])
            account = ""
            if self._account is not None:
                account = (
                    f" as uid {self._account.uid} (every directory above it must let that"
                    f" account through: set TMPDIR to one that does)"
                )
            raise PostgresServerError(
                f"initdb failed in {self.directory}{account}, exit {result.returncode}:\n{output}"
            )

    def _launch_on_free_port(self) -> None:
        # Another process may take the port between our probe and the server's bind.
        for attempt in itertools.count(1):
            self.port = _free_port()
            try:
                self._launch()
                return
            except PostgresServerError:
                if attempt == 3 or "already in use" not in self.log_tail():
                    raise

    def _launch(self) -> None:
        command = [
            str(self._bin("postgres")),
            "-D",
            str(self.directory / "data"),
            "-c",
            f"listen_addresses={HOST}",
            "-c",
            f"port={self.port}",
            "-c",
            f"unix_socket_directories={self.directory / 'socket'}",
        ]
        for key, value in self.settings.items():
            command += ["-c", f"{key}={value}"]
        # setpriv asks the kernel to SIGQUIT the server (an immediate shutdown) when
        # the thread that started it ends, however it ends.
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            command = [setpriv, "--pdeathsig", "SIGQUIT", *command]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_server_environment(),
                cwd=self.directory,
                # Ctrl-C in a terminal reaches us, and we stop the server in order.
                start_new_session=True,
                **_Account.options(self._account),
            )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        import psycopg

        process = self._process
        assert process is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if process.poll() is not None:
                self._process = None
                raise PostgresServerError(
                    f"the PostgreSQL server exited ({process.returncode}) while starting "
                    f"on {HOST}:{self.port}; its log ends:\n{self.log_tail()}"
                )
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline:
                    self.kill()
                    raise PostgresServerError(
                        f"the PostgreSQL server on {HOST}:{self.port} did not accept a "
                        f"connection in {READY_TIMEOUT:.0f}s ({error}); its log ends:\n"
                        f"{self.log_tail()}"
                    ) from error
            time.sleep(0.02)

    def _revoke_public_create(self) -> None:
        # PostgreSQL 15 lets no one but a database's owner create tables in its public
        # schema; older servers let everyone, so make them agree (new databases copy
        # template1).
        from psycopg import sql

        for database in ("template1", "postgres"):
            self._execute(sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC"), database)

    def _shut_down(self) -> None:
        process = self._process
        if process is None:
            return
        # SIGINT is PostgreSQL's fast shutdown: clients are cut off, data checkpointed.
        process.send_signal(signal.SIGINT)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise PostgresServerError(
                f"the PostgreSQL server on {HOST}:{self.port} did not stop in "
                f"{STOP_TIMEOUT:.0f}s and was killed; its log ends:\n{self.log_tail()}"
            ) from None
        self._process = None

    def _discard(self) -> None:
        if self._process is not None:
            self.kill()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def _bin(self, name: str) -> Path:
        assert self.bin_dir is not None
        return self.bin_dir / name


def _driver_check() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise MissingExtraError("psycopg", "postgres") from None


def _server_environment() -> dict[str, str]:
    # PGPORT, PGDATA and friends would override what we pass; LC_ALL keeps messages
    # in the English the error checks read.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    environment["LC_ALL"] = "C"
    return environment


def _children_of(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # The command name in parentheses may itself hold spaces or parentheses.
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                children.append(int(stat.parent.name))
    return children


def _is_running(pid: int) -> bool:
    """Whether ``pid`` is alive (a zombie, dead and unreaped, holds nothing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def main() -> int:
    """Serve a throwaway server in the foreground until Ctrl-C or SIGTERM."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        with LocalPostgres() as server:
            print(server.url(), flush=True)
            print(
                f"local PostgreSQL in {server.directory}; Ctrl-C stops and deletes it",
                file=sys.stderr,
                flush=True,
            )
            while True:
                signal.pause()
    except KeyboardInterrupt:
        return 0
    except (ConfigError, RunError) as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
