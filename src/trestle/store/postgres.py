"""PostgreSQL store: one database that drivers and workers on many hosts share.

Chosen by a ``postgresql://`` URL wherever a store is named (:func:`trestle.store.
location.open_store`); needs the ``postgres`` extra (psycopg 3). It keeps the promises
the SQLite store keeps, and the conformance suite checks both alike:

- Each batch of events, its listing row, snapshot, consumed requests and delivered
  messages commit in one transaction. Every write to a run first takes a lock on the
  run for the rest of its transaction (``pg_advisory_xact_lock``), so writers of one
  run take turns as SQLite's single writer makes them, and writers of different runs
  do not wait for each other. Under that lock the lease token and the next sequence
  number are checked, so a fenced-off driver cannot write and a stream has no gap.
- A board write's compare-and-set takes the same kind of lock on its key; a unique
  index on accepted versions backs it. A message is taken by one ``UPDATE ...
  RETURNING`` that re-checks it is undelivered, so two receivers never both get it.
- Large strings are stored once per run by hash (:mod:`trestle.store.payloads`), the
  longest as pieces shared between texts that repeat one another; an event's body and
  a snapshot's state are stored compressed (schema 2, the SQLite store's schema 6
  forms; rows from before are read as they were written). Temporal's large payloads
  are blobs in the database too (:meth:`put_blob`), so workers need no shared
  directory.
- A lease's renewal and release commit without waiting for the server's log to reach
  its disk (``synchronous_commit = off`` for that transaction); taking a lease, the
  events and everything else wait as the server is set to (why: above
  :meth:`acquire_lease`).

Every failure becomes a :class:`StoreError` (exit 4) that names the server without its
password and what was being done; a transaction that fails is rolled back whole, and
a connection the server dropped is made again on the next call, so a run can be
resumed once the server is back.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from trestle.core.errors import (
    ConfigError,
    LeaseHeldError,
    LeaseLostError,
    MissingExtraError,
    NoStoreError,
    RunExistsError,
    StoreDamagedError,
    StoreError,
)
from trestle.store import decoding, payloads, sqlite_groups
from trestle.store.base import (
    Appended,
    BoardWrite,
    Lease,
    Message,
    Owner,
    Refusal,
    RequestKind,
    delivered_ids,
    owner_is_alive,
    refuse_if,
    require_message,
    require_storable,
    require_text,
)
from trestle.store.postgres_schema import (
    EVENT_BODY,
    MIGRATIONS,
    SNAPSHOT_STATE,
    SURVEY,
    TABLES,
)
from trestle.store.sql_reads import PENDING, SqlReads, requests_of

if TYPE_CHECKING:
    import psycopg

    from trestle.core.events import RunCreated

T = TypeVar("T")
CONNECT_TIMEOUT = 10  # seconds to reach the server before saying it cannot be reached
REMEMBERED_PAYLOADS = 4096  # as the SQLite store: hashes per run known to be stored
# what the server answers a login it turns down (not a server that is away: retrying
# later would not help)
REFUSALS = ("authentication failed", "does not exist", "no pg_hba.conf entry", "not permitted")
RUN_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
# a table named bare after FROM, in the shared reads: qualified with Trestle's schema
QUALIFY = re.compile(r"\b(FROM) (runs|events|payloads|snapshots|leases|requests|board|messages)\b")
EVENT_COLUMNS = "run_id, seq, kind, v, at, data, packed"
RUN_COLUMNS = (
    "run_id, goal, plan_path, workspace, status, created_at, updated_at, last_seq, summary"
)
MESSAGE_COLUMNS = sqlite_groups.MESSAGE_COLUMNS
BOARD_COLUMNS = sqlite_groups.BOARD_COLUMNS


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise MissingExtraError("psycopg", "postgres") from None
    return psycopg


# a URL's password, as location.where_shown drops it (that module imports this one)
_URL_PASSWORD = re.compile(r"^([^/]*//[^/@:]*):[^/@]*@")


def describe(url: str) -> str:
    """``url`` as messages show it: the server, port, database and role, never the
    password. A URL that does not parse is a ConfigError (bad input) naming what is wrong."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except Exception as exc:  # psycopg's ProgrammingError, with libpq's reason
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        # libpq quotes the URL whole, or the token it could not read (a password's
        # bad %-escape): no password may reach the message
        hidden = re.sub(r"([?&]password=)[^&]*", r"\1...", _URL_PASSWORD.sub(r"\1@", url))
        first = first.replace(url, hidden)
        for secret in _passwords(url):
            first = first.replace(secret, "...")
        # and what libpq quotes (a token it could not read, a parameter's name) may be
        # a piece of a password split at a character it reads as a separator
        first = re.sub(r'"([^"]*)"', lambda m: _unquoted(m.group(1), url), first)
        raise ConfigError(f"the store URL cannot be read: {first}") from None
    if _misread(params):
        raise ConfigError(
            "the store URL cannot be read as written: its host, port or database is not "
            "one (a port is a number; a password holding '/', '?', '#' or '@' must be "
            "written %-escaped: %2F, %3F, %23, %40)"
        )
    user = f"{params['user']}@" if params.get("user") else ""
    host = params.get("host") or "localhost"
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{host}{port}/{params.get('dbname') or ''}"


def _unquoted(token: str, url: str) -> str:
    """A token libpq quoted, as a message shows it: "..." where it may hold a piece of
    the password (it lies in the URL's user part, or after a ``password``), else as
    it was (an unknown option's name)."""
    user_part = url.partition("//")[2].partition("/")[0].rpartition("@")[0]
    after = url[url.lower().find("password") :] if "password" in url.lower() else ""
    return '"..."' if token and (token in user_part or token in after) else f'"{token}"'


def _misread(params: Mapping[str, object]) -> bool:
    """Whether libpq read a URL whose password holds a separator as other parts, which
    messages would then show: the rest of the password as the host (a bare ``@``), the
    port (``u:TOP/SECRET@h``: host ``u``, port ``TOP``) or the database's name."""
    host, port, dbname = (str(params.get(k) or "") for k in ("host", "port", "dbname"))
    return "@" in host or "@" in dbname or any(not p.isdigit() for p in port.split(",") if p)


def _passwords(url: str) -> list[str]:
    """What of ``url`` may be a password, as written and decoded: the user part's after
    its first ``:`` (up to the last ``@`` before the path), and each ``password=``."""
    from urllib.parse import unquote

    authority = url.partition("//")[2].partition("/")[0].partition("?")[0]
    user_part = authority.rpartition("@")[0]
    found = [user_part.partition(":")[2]] if ":" in user_part else []
    found += re.findall(r"[?&]password=([^&]*)", url)
    return [s for secret in found if secret for s in {secret, unquote(secret)}]


class PostgresStore(SqlReads):
    """A store in a PostgreSQL database, shared by any number of processes and hosts.

    ``create=False`` (every command that only reads) refuses a database with no store
    in it rather than making one. ``upgrade=True`` (``trestle doctor --upgrade``, and
    nothing else) applies the migrations a store from an older Trestle lacks;
    ``upgraded`` then says from which version to which.
    """

    read_only: str | None = None  # a role that may only read fails at its first write
    NO_LIMIT = None
    EMPTY_BLOB = "''::bytea"
    MESSAGE_ORDER = "n"
    EVENT_BODY = EVENT_BODY
    SNAPSHOT_STATE = SNAPSHOT_STATE
    GROUPS = (
        'SELECT grp COLLATE "C" AS g FROM trestle.board UNION '
        'SELECT grp COLLATE "C" FROM trestle.messages ORDER BY g'
    )

    def __init__(self, url: str, *, create: bool = True, upgrade: bool = False) -> None:
        self._pg = _psycopg()
        self.url = url
        self.where = describe(url)
        self._shown = self.where
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        # per run, the payload hashes this store committed (see SqliteStore._committed)
        self._committed: dict[str, OrderedDict[bytes, None]] = {}
        self.upgraded: tuple[int, int] | None = None
        # whether the server asked the driver for a password when it last connected:
        # one that did not may let in a step that reaches it (see engines.attempts)
        self.asked_password = True
        with self._lock:
            self._open(create, upgrade)

    # --- connecting and opening ---------------------------------------------------

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        """The open connection, made again when the server dropped the last one."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self._pg.connect(
                self.url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT,
                application_name="trestle",
            )
            self.asked_password = self._conn.pgconn.used_password
        return self._conn

    def _open(self, create: bool, upgrade: bool) -> None:
        doing = "opening the store"
        survey = self._guarded(doing, lambda: self._connection().execute(SURVEY).fetchone())
        assert survey is not None  # one row, always
        has_version, has_schema, others = survey
        if not has_version:
            if has_schema:
                self._refuse("it has a schema named 'trestle' that Trestle did not make")
            if others:
                self._refuse(
                    f"it holds another application's tables ({', '.join(others)}); give "
                    "Trestle a database of its own (createdb trestle)"
                )
            if not create:
                raise NoStoreError(
                    f"no store in {self.where}: the database is empty; starting a run "
                    "with --store and this URL creates one"
                )
            self._guarded("creating the store", self._create)
        version = self._version(doing)
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.where}: store schema version {version} is newer than this "
                f"Trestle understands ({len(MIGRATIONS)}); upgrade Trestle"
            )
        if version < len(MIGRATIONS) and upgrade:
            self._guarded("upgrading the store's schema", self._upgrade)
        elif version < len(MIGRATIONS):
            raise StoreError(
                f"{self.where}: store schema version {version} was written by an older "
                f"Trestle; this one needs version {len(MIGRATIONS)}. Stop every process "
                f"using the store, back it up (pg_dump), then run `trestle doctor "
                f"--store URL --upgrade`: a store shared by many hosts is never changed "
                "by whichever process opens it first"
            )

    def _refuse(self, why: str) -> NoReturn:
        raise StoreError(f"{self.where}: not a Trestle store: {why}")

    def _version(self, doing: str) -> int:
        row = self._guarded(
            doing,
            lambda: self._connection().execute("SELECT version FROM trestle.schema_version"),
        ).fetchone()
        if row is None or not isinstance(row[0], int):
            self._refuse(f"its schema version reads {row!r}")
        return int(row[0])

    def _create(self) -> None:
        """The first migration, once, however many processes create the store at once."""
        conn = self._connection()
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('trestle schema', 0))")
            # a plain query of the catalog sees what another creator committed while we
            # waited; to_regclass reads a cache the advisory lock does not refresh
            made = "SELECT count(*) FROM pg_namespace WHERE nspname = 'trestle'"
            if conn.execute(made).fetchone() == (0,):
                self._migrate(conn, 0)

    def _migrate(self, conn: psycopg.Connection[tuple[Any, ...]], version: int) -> None:
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
            conn.execute("UPDATE trestle.schema_version SET version = %s", (number,))

    def _upgrade(self) -> None:
        """The migrations the store lacks, in one transaction that holds the version row
        (two upgrades at once take turns; the second finds nothing to do)."""
        conn = self._connection()
        with conn.transaction():
            row = conn.execute("SELECT version FROM trestle.schema_version FOR UPDATE").fetchone()
            version = int(row[0]) if row else 0
            self._migrate(conn, version)
        self.upgraded = (version, len(MIGRATIONS))

    # --- transactions and failures ------------------------------------------------

    def _guarded(self, doing: str, op: Callable[[], T], *, then: str = "try again") -> T:
        try:
            return op()
        except self._pg.Error as exc:
            raise self._failure(exc, doing, then) from None

    def _failure(self, exc: Exception, doing: str, then: str) -> StoreError:
        errors = self._pg.errors
        reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        if isinstance(exc, errors.InsufficientPrivilege):
            return StoreError(
                f"{self.where}: {doing}: the role is not allowed to ({reason}); grant it "
                "the privileges on the database and its 'trestle' schema, then " + then
            )
        if isinstance(exc, self._pg.OperationalError) and any(m in reason for m in REFUSALS):
            return StoreError(
                f"{self.where}: {doing}: the PostgreSQL server refused the connection "
                f"({reason}); check the role, its password and the database the URL names "
                "(a password may also come from ~/.pgpass or $PGPASSWORD)"
            )
        if isinstance(exc, self._pg.OperationalError):
            return StoreError(
                f"{self.where}: {doing}: the PostgreSQL server cannot be reached or "
                f"refused the connection ({reason}); nothing of it was recorded; {then} "
                "once it is back"
            )
        return StoreError(f"{self.where}: {doing} failed: {reason}; {then}")

    @contextmanager
    def _tx(
        self,
        doing: str,
        *,
        lock: str | None = None,
        then: str = "try again",
        synced: bool = True,
    ) -> Iterator[psycopg.Cursor[tuple[Any, ...]]]:
        """A transaction, rolled back whole when anything in it fails; with ``lock``,
        holding that run's (or key's) lock until it ends.

        ``synced=False``: its commit does not wait for the server to flush its log
        (``SET LOCAL synchronous_commit = off``, for this transaction only). Only for
        what a crash of the server may take back harmlessly (the leases' comment):
        the commit is seen by every other session at once, and the server flushes it
        within a fraction of a second, or sooner with the next commit that waits,
        since the log is flushed in order."""
        with self._lock:
            committing, conn = False, None
            try:
                conn = self._connection()
                with conn.transaction(), conn.cursor() as cur:
                    if lock is not None:
                        cur.execute(RUN_LOCK, (lock,))
                    if not synced:
                        cur.execute("SET LOCAL synchronous_commit = off")
                    yield cur
                    committing = True
            except self._pg.OperationalError as exc:
                if not committing or conn is None or not conn.broken:
                    raise self._failure(exc, doing, then) from None
                # the commit was sent and its answer lost: it may have been recorded
                reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
                raise StoreError(
                    f"{self.where}: {doing}: the connection broke while the server committed "
                    f"it ({reason}): whether it was recorded is not known; what was is "
                    f"read again by the next command; {then} once the server is back"
                ) from None
            except self._pg.Error as exc:
                raise self._failure(exc, doing, then) from None

    def _read(self, sql: str, *args: object, doing: str = "reading the store") -> list[Any]:
        """Rows of ``sql``, written with ``?`` marks and the tables' bare names as the
        shared reads (:mod:`.sql_reads`) are; the names are found in the ``trestle``
        schema whatever the connection's search path."""
        query = in_postgres(sql)

        def rows() -> list[Any]:
            with self._lock:
                return self._guarded(
                    doing, lambda: self._connection().execute(query, args).fetchall()
                )

        return self._again_if_dropped(rows)

    def _again_if_dropped(self, op: Callable[[], T]) -> T:
        """``op``, and once more, on a new connection, when the server dropped this one
        under it (restarted, or ``pg_terminate_backend``): one dropped connection ended
        a healthy driver and killed its step. Only for what may be asked twice: a read,
        a lease's renewal."""
        try:
            return op()
        except StoreError:
            conn = self._conn
            if conn is None or not (conn.broken or conn.closed):
                raise
        return op()

    def _damaged(self, run_id: str, problem: str) -> NoReturn:
        raise StoreDamagedError(self.where, f"run {run_id!r}: {problem}", run_id=run_id)

    # --- runs and events ----------------------------------------------------------

    def create_run(self, event: RunCreated, *, summary: str) -> None:
        from trestle.core.events import event_json  # see decoding.decoded

        no_nul(f"run {event.run_id!r}:", goal=event.plan.goal, workspace=event.workspace)
        body = event_json(event)
        with self._tx(f"recording the new run {event.run_id!r}", lock=event.run_id) as cur:
            found = cur.execute("SELECT 1 FROM trestle.runs WHERE run_id = %s", (event.run_id,))
            if found.rowcount:
                raise RunExistsError(f"run {event.run_id!r} exists")
            cur.execute(
                f"INSERT INTO trestle.runs ({RUN_COLUMNS}) "
                "VALUES (%s, %s, %s, %s, 'created', %s, %s, 1, %s)",
                (
                    event.run_id,
                    event.plan.goal,
                    event.plan_path,
                    event.workspace,
                    event.at,
                    event.at,
                    summary,
                ),
            )
            cur.execute(
                f"INSERT INTO trestle.events ({EVENT_COLUMNS}) VALUES (%s, 1, %s, %s, %s, %s, 0)",
                (event.run_id, event.kind, event.v, event.at, body),
            )

    def append(self, run_id: str, batch: Appended, *, token: int) -> None:
        from trestle.core.events import event_json  # see decoding.decoded

        rows = []
        stored: list[payloads.Payload] = []
        committed = self._committed.setdefault(run_id, OrderedDict())
        for seq, e in enumerate(batch.events, start=batch.first_seq):
            data, flags, large = decoding.row_body(event_json(e), committed)
            # a compressed body is bytes, kept in a column of its own (text cannot)
            text, blob = ("", data) if isinstance(data, bytes) else (data, None)
            rows.append((run_id, seq, e.kind, e.v, e.at, text, flags, blob))
            stored += large
        last_seq = batch.first_seq + len(rows) - 1
        now = batch.events[-1].at if batch.events else None  # no events: keep updated_at
        doing = f"recording events {batch.first_seq}-{last_seq} of run {run_id!r}"
        with self._tx(doing, lock=run_id, then=_resume(run_id)) as cur:
            held = cur.execute(
                "SELECT token FROM trestle.leases WHERE run_id = %s", (run_id,)
            ).fetchone()
            if held is None or held[0] != token:
                raise LeaseLostError(
                    f"run {run_id!r}: another process took over the run; this one stops"
                )
            row = cur.execute(
                "SELECT last_seq FROM trestle.runs WHERE run_id = %s", (run_id,)
            ).fetchone()
            if row is None or row[0] + 1 != batch.first_seq:
                raise ValueError(f"run {run_id!r}: seq {batch.first_seq} out of order")
            if stored:
                cur.executemany(
                    "INSERT INTO trestle.payloads VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    [(run_id, digest, blob) for digest, blob in payloads.distinct(stored)],
                )
            if rows:
                cur.executemany(
                    f"INSERT INTO trestle.events ({EVENT_COLUMNS}, compressed) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    rows,
                )
            cur.execute(
                "UPDATE trestle.runs SET status = %s, updated_at = COALESCE(%s, updated_at), "
                "last_seq = %s, summary = %s WHERE run_id = %s",
                (batch.status, now, last_seq, batch.summary, run_id),
            )
            if batch.snapshot is not None:
                s = batch.snapshot
                # cold: read once, by a resume (its signature is over the text)
                state = decoding.stored_state(s.state_json)
                cur.execute(
                    "INSERT INTO trestle.snapshots "
                    "(run_id, seq, state, monitors, mac, compressed_state) "
                    "VALUES (%s, %s, '', %s, %s, %s) "
                    "ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq, "
                    "state = excluded.state, monitors = excluded.monitors, mac = excluded.mac, "
                    "compressed_state = excluded.compressed_state",
                    (run_id, s.seq, s.monitors, s.mac, state),
                )
            if batch.consumed_requests:
                cur.execute(
                    "UPDATE trestle.requests SET consumed = 1 WHERE id = ANY(%s)",
                    (list(batch.consumed_requests),),
                )
            delivered = delivered_ids(batch.events)
            if delivered:  # in the commit that puts them into the run's conversation
                cur.execute(
                    "UPDATE trestle.messages SET delivered_at = %s, delivered_by = %s "
                    "WHERE id = ANY(%s) AND delivered_at IS NULL",
                    (now, run_id, sorted(delivered)),
                )
        with self._lock:  # known once the commit is in
            for digest, _ in stored:
                committed[digest] = None
                committed.move_to_end(digest)
            while len(committed) > REMEMBERED_PAYLOADS:
                committed.popitem(last=False)

    def _payload_rows(self, run_id: str, wanted: list[bytes]) -> dict[bytes, bytes]:
        if not wanted:
            return {}
        rows = self._read(
            "SELECT hash, data FROM trestle.payloads WHERE run_id = %s AND hash = ANY(%s)",
            run_id,
            wanted,
            doing=f"reading run {run_id!r}'s payloads",
        )
        return {bytes(digest): bytes(data) for digest, data in rows}

    # --- leases -------------------------------------------------------------------

    # Taking a lease waits for the server's log to reach its disk; renewing and
    # releasing one do not (synced=False). A crash of the server, unlike a power loss
    # on one host, need not end the drivers: they reconnect on their next call. Were a
    # new lease's token lost with the crash, the next driver to take the lease would
    # get the same token again, and the driver that took it first, pausing through the
    # crash, would pass the token check its appends make: two drivers writing one
    # run. So the token, the fence, is durable before its holder can act under it.
    # A renewal only moves the expiry of a token already durable: lost, the lease
    # expires up to one renewal early (the engine renews every third of its time, so
    # two thirds of it are left), as it would for a driver that stalled; a driver
    # that then takes over gets a new token, durably, and the old holder's appends and
    # renewals are refused by it. A lost release leaves the lease as it was, held
    # until it expires: a wait, never a second writer.
    def acquire_lease(self, run_id: str, owner: Owner, *, ttl: float, now: float) -> Lease:
        doing = f"taking the lease on run {run_id!r}"
        with self._tx(doing, lock=run_id, then=_resume(run_id)) as cur:
            row = cur.execute(
                "SELECT owner, pid, host, token, expires_at FROM trestle.leases WHERE run_id = %s",
                (run_id,),
            ).fetchone()
            token = 1
            if row is not None:
                name, pid, host, held, expires = row
                holder = Owner(name=name, pid=pid, host=host)
                if expires > now and owner_is_alive(holder):
                    raise LeaseHeldError(
                        f"run {run_id!r} is being driven by {holder.name} (pid {holder.pid} "
                        f"on {holder.host}); wait for it to finish or stop it first"
                    )
                token = held + 1
            cur.execute(
                "INSERT INTO trestle.leases VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, pid = excluded.pid, "
                "host = excluded.host, token = excluded.token, expires_at = excluded.expires_at",
                (run_id, owner.name, owner.pid, owner.host, token, now + ttl),
            )
        return Lease(owner=owner, token=token, expires_at=now + ttl)

    def renew_lease(self, run_id: str, token: int, *, ttl: float, now: float) -> None:
        doing = f"renewing the lease on run {run_id!r}"

        def renew() -> None:
            with self._tx(doing, lock=run_id, then=_resume(run_id), synced=False) as cur:
                cur.execute(
                    "UPDATE trestle.leases SET expires_at = %s WHERE run_id = %s AND token = %s",
                    (now + ttl, run_id, token),
                )
                if cur.rowcount != 1:
                    raise LeaseLostError(f"run {run_id!r}: lease lost to another process")

        self._again_if_dropped(renew)

    def release_lease(self, run_id: str, token: int) -> None:
        doing = f"releasing the lease on run {run_id!r}"
        with self._tx(doing, lock=run_id, then=_resume(run_id), synced=False) as cur:
            # keep the row so the token keeps rising; just make it expired
            cur.execute(
                "UPDATE trestle.leases SET expires_at = 0 WHERE run_id = %s AND token = %s",
                (run_id, token),
            )

    # --- human requests -----------------------------------------------------------

    def add_request(
        self,
        run_id: str,
        kind: RequestKind,
        step: str,
        reason: str,
        *,
        now: float,
        payload: str = "",
        unless: Refusal | None = None,
    ) -> int:
        require_storable(run_id, step=step, reason=reason, payload=payload)
        no_nul(f"run {run_id!r}: the request's", step=step, reason=reason, payload=payload)
        self.run(run_id)
        doing = f"recording a {kind} request for run {run_id!r}"
        # the run's lock when asking first: two such requests are queued one after the other
        with self._tx(doing, lock=run_id if unless else None) as cur:
            pending = in_postgres(PENDING)
            refuse_if(unless, lambda: requests_of(cur.execute(pending, (run_id,)).fetchall()))
            row = cur.execute(
                "INSERT INTO trestle.requests (run_id, kind, step, reason, created_at, payload) "
                "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (run_id, kind, step, reason, now, payload),
            ).fetchone()
            assert row is not None
            return int(row[0])

    def delete_run(self, run_id: str) -> int:
        self.run(run_id)
        self._committed.pop(run_id, None)
        with self._tx(f"deleting run {run_id!r}", lock=run_id) as cur:
            count = cur.execute("DELETE FROM trestle.events WHERE run_id = %s", (run_id,)).rowcount
            for table in (*TABLES[2:], "runs"):
                cur.execute(f"DELETE FROM trestle.{table} WHERE run_id = %s", (run_id,))
            return count

    # --- groups: the blackboard and the mailboxes ------------------------------------

    def board_write(
        self,
        group: str,
        key: str,
        value: str,
        *,
        expected: int | None,
        writer: str,
        step: str = "",
        call_key: str = "",
        now: float,
    ) -> BoardWrite:
        owner = f"group {group[:200]!r}: the board write's"
        texts = {"group": group, "key": key, "value": value, "writer": writer, "step": step}
        require_text(owner, **texts)
        no_nul(owner, call_key=call_key, **texts)
        lock = f"board {group!r} {key!r}"
        with self._tx(f"writing {key!r} on group {group!r}'s board", lock=lock) as cur:
            row = cur.execute(in_postgres(sqlite_groups.CURRENT), (group, key)).fetchone()
            current = None if row is None else sqlite_groups.board_entry(row)
            at = 0 if current is None else current.version
            accepted = expected is None or expected == at
            version = at + 1 if accepted else at
            flag = int(accepted)
            values = (group, key, version, value, writer, step, call_key, now, flag, expected)
            inserted = cur.execute(
                f"INSERT INTO trestle.board ({BOARD_COLUMNS}) VALUES (DEFAULT, "
                "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                values,
            ).fetchone()
            assert inserted is not None
        entry = sqlite_groups.board_entry((inserted[0], *values))
        return BoardWrite(entry=entry, current=entry if accepted else current)

    def send_message(self, message: Message) -> bool:
        require_message(message)
        m = message
        no_nul(
            f"group {m.group[:200]!r}: the message's",
            id=m.id,
            group=m.group,
            sender=m.sender,
            recipient=m.recipient,
            body=m.body,
            reply_to=m.reply_to,
        )
        with self._tx(f"sending a message in group {message.group!r}") as cur:
            cur.execute(
                f"INSERT INTO trestle.messages ({MESSAGE_COLUMNS}) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                sqlite_groups.message_row(message),
            )
            return cur.rowcount == 1

    def take_messages(
        self, group: str, recipient: str, *, by: str, now: float, reply_to: str | None = None
    ) -> list[Message]:
        where, args = sqlite_groups.message_filter(group, recipient, True, reply_to)
        with self._tx(f"receiving {recipient!r}'s messages in group {group!r}") as cur:
            # one statement that re-checks each row is undelivered once it holds it:
            # of two receivers at once, the second finds nothing left to take
            rows = cur.execute(
                "UPDATE trestle.messages SET delivered_at = %s, delivered_by = %s "
                f"WHERE {in_postgres(where)} RETURNING n, {MESSAGE_COLUMNS}",
                (now, by, *args),
            ).fetchall()
        taken = [sqlite_groups.message(r[1:]) for r in sorted(rows, key=lambda r: r[0])]
        return [replace(m, delivered_at=now, delivered_by=by) for m in taken]

    # --- Temporal's large payloads, and what the server says about the store -------

    def put_blob(self, digest: str, data: bytes) -> None:
        """Keep ``data`` under its SHA-256 ``digest`` (written once, never changed)."""
        with self._tx(f"storing blob {digest[:12]}") as cur:
            cur.execute(
                "INSERT INTO trestle.blobs VALUES (%s, %s) ON CONFLICT DO NOTHING", (digest, data)
            )

    def blob(self, digest: str) -> bytes | None:
        rows = self._read(
            "SELECT data FROM trestle.blobs WHERE hash = %s",
            digest,
            doing=f"reading blob {digest[:12]}",
        )
        return bytes(rows[0][0]) if rows else None

    def size_bytes(self) -> int | None:
        """What the store's tables and indexes take on the server's disk."""
        rows = self._read(
            "SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'trestle' AND c.relkind = 'r'",
            doing="measuring the store",
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def schema_version(self) -> int:
        with self._lock:
            return self._version("reading the store's schema version")

    def reader(self) -> PostgresStore:
        """Another handle on this store, with a connection of its own: its reads do not
        wait behind a write of this one's that waits for a lock."""
        return PostgresStore(self.url, create=False)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def no_nul(owner: str, **texts: str | None) -> None:
    """PostgreSQL's text cannot hold the NUL character: refused by name before any
    write, as a text that cannot be encoded is (:func:`trestle.store.base.require_text`)."""
    for name, text in texts.items():
        if text is not None and "\x00" in text:
            raise ConfigError(
                f"{owner} {name} holds a NUL character (at {text.index(chr(0)) + 1}), which "
                f"a PostgreSQL store cannot keep: {text[:200]!r}"
            )


def in_postgres(sql: str) -> str:
    """A query written as the shared reads write theirs (``?`` marks, the tables' bare
    names after FROM), in PostgreSQL's terms."""
    return QUALIFY.sub(r"\1 trestle.\2", sql.replace("?", "%s"))


def _resume(run_id: str) -> str:
    return f"continue with `trestle resume {run_id}`"
