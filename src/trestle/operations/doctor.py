"""``trestle doctor``: what is wrong with a store, and what can still be recovered.

It reads the store file directly, read-only, without the checks that make the store
refuse a damaged file: its job is to look at exactly those files. In order: the file
(type, SQLite header, length), SQLite's ``integrity_check``, the schema version, and
every run's records: contiguous seqs from 1, decodable events, a first event that is
``run_created``, a stream that folds to a state, a snapshot equal to the fold at its
seq, and a listing row that agrees with the events. A run whose events are whole and
fold is *intact*: :func:`salvage` copies the intact runs into a new store.

A store in a PostgreSQL database (named by its URL) has no file to look at: the
doctor connects through the store, which reads and checks the schema version (and
runs the store's own ``check()`` where it has one), then reads and folds every run's
events and compares its listing row and lease with them, as above; its intact runs
can be salvaged into a new SQLite store the same way.
"""

from __future__ import annotations

import json
import os
import sqlite3
import zlib
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from trestle.core.errors import ConfigError, NoStoreError, StoreDamagedError, TrestleError
from trestle.core.events import AnyEvent, RunCreated, decode_event
from trestle.core.state import RunState
from trestle.lifecycle.approvals import forged
from trestle.lifecycle.runs import summary_json, trusted
from trestle.presentation.wording import counted
from trestle.store import bodies, decoding, payloads
from trestle.store.base import Appended, Lease, Owner, RunRow, Snapshot, Store, owner_is_alive
from trestle.store.location import is_store_url, open_store, where_shown
from trestle.store.sql_reads import unreadable_lease
from trestle.store.sqlite import MIGRATIONS, SqliteStore
from trestle.store.sqlite_file import UNREADABLE_RECOVERS, check_file, read_only_uri
from trestle.trust.signing import decision_key, key_path

TABLES = ("events", "leases", "requests", "runs", "snapshots")
# SQLite's messages can quote damaged bytes that are not UTF-8
DB_ERRORS = (sqlite3.Error, UnicodeDecodeError)


def _doctor() -> Owner:
    """The lease owner a salvage holds: this process, as it is now (not at import)."""
    return Owner(name="trestle doctor", pid=os.getpid(), host="salvage")


class RunFinding(BaseModel):
    """One run's records: intact when its events are whole and fold to a state."""

    run_id: str
    intact: bool
    events: int
    problems: list[str]
    notes: list[str]


class Diagnosis(BaseModel):
    """What ``trestle doctor`` found; ``healthy`` is False on any damage."""

    store: str
    healthy: bool
    problems: list[str]
    notes: list[str]
    runs: list[RunFinding]
    recover: list[str]


@dataclass
class _Found:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    runs: list[RunFinding] = field(default_factory=list)
    intact: dict[str, list[AnyEvent]] = field(default_factory=dict)
    # a file SQLite cannot read at all: what to do instead of SQLite's .recover
    unreadable: str | None = None


def diagnose(where: str | Path, *, now: float) -> Diagnosis:
    """Check the store at ``where``, a file or a database's URL; raises NoStoreError
    if there is no file there, or no store in the database."""
    return _diagnosis(where, _examine(where, now=now))


def upgrade(url: str) -> tuple[int, int] | None:
    """Apply the migrations a PostgreSQL store from an older Trestle lacks, in one
    transaction (``trestle doctor --upgrade``): from which schema version to which, or
    None when it lacked none. An SQLite store upgrades itself when opened."""
    from trestle.store.postgres import PostgresStore

    store = PostgresStore(url, create=False, upgrade=True)
    try:
        return store.upgraded
    finally:
        store.close()


def salvage(where: str | Path, out: Path, *, now: float) -> list[str]:
    """Copy every intact run of the store at ``where`` into a new store at ``out``.

    Events are copied as recorded; listing rows are rebuilt from them. Snapshots,
    leases and pending requests are not copied. Returns the ids of the runs copied.
    """
    if out.exists():
        raise ConfigError(f"{out}: already exists; --salvage writes a new store")
    found = _examine(where, now=now)
    target = SqliteStore(out)
    try:
        for run_id, events in found.intact.items():
            first = events[0]
            assert isinstance(first, RunCreated)  # an intact run begins with it
            state = RunState.from_created(first)
            target.create_run(first, summary=summary_json(state))
            if len(events) == 1:
                continue
            for seq, event in enumerate(events[1:], start=2):
                state.apply(event, seq)
            token = target.acquire_lease(run_id, _doctor(), ttl=60.0, now=now).token
            batch = Appended(
                events=events[1:],
                first_seq=2,
                status=state.finished or "running",
                summary=summary_json(state),
            )
            target.append(run_id, batch, token=token)
            target.release_lease(run_id, token)
    finally:
        target.close()
    return list(found.intact)


def _examine(where: str | Path, *, now: float) -> _Found:
    if is_store_url(where):
        return _examine_database(str(where), now=now)
    path = Path(where)
    found = _Found()
    if not path.exists():
        raise NoStoreError(f"no store at {path}")
    try:
        check_file(path)
    except StoreDamagedError as exc:
        found.problems.append(exc.problem)
        if "truncated" not in exc.problem:
            if exc.recover in UNREADABLE_RECOVERS:
                found.unreadable = exc.recover
            return found  # nothing in the file can be read as SQLite
    try:
        with _reading(path) as db:
            _check_database(db, found, now=now)
    except DB_ERRORS as exc:
        found.problems.append(f"SQLite cannot read the file: {exc}")
    return found


@contextmanager
def _reading(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(read_only_uri(path), uri=True)) as db:
        yield db


def _check_database(db: sqlite3.Connection, found: _Found, *, now: float) -> None:
    try:
        rows = db.execute("PRAGMA integrity_check(20)").fetchall()
        if [r[0] for r in rows] != ["ok"]:
            shown = "; ".join(str(r[0]).replace("\n", " ") for r in rows[:5])
            found.problems.append(f"SQLite's integrity check fails: {shown[:600]}")
    except DB_ERRORS as exc:
        found.problems.append(f"SQLite's integrity check cannot run: {exc}")
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > len(MIGRATIONS):
        found.problems.append(
            f"schema version {version} is newer than this Trestle knows ({len(MIGRATIONS)})"
        )
        return
    if version < len(MIGRATIONS):
        found.notes.append(f"schema version {version}: upgraded when Trestle next opens it")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = [t for t in TABLES if t not in tables]
    if version and missing:
        found.problems.append(f"tables missing: {', '.join(missing)}")
        return
    if not version:
        return  # an empty database: nothing recorded yet
    for run_id in _run_ids(db, found):
        found.runs.append(_check_run(db, run_id, found, now=now))
    _check_requests(db, found)


def _run_ids(db: sqlite3.Connection, found: _Found) -> list[str]:
    ids: list[str] = []
    for sql in ("SELECT run_id FROM runs", "SELECT DISTINCT run_id FROM events"):
        try:
            ids += [str(r[0]) for r in db.execute(sql)]
        except DB_ERRORS as exc:
            found.problems.append(f"cannot list runs ({sql}): {exc}")
    return sorted(set(ids))


def _key() -> bytes | None:
    """The approval key, if this machine has one (the doctor never creates it)."""
    path = key_path()
    if not path.exists():
        return None
    try:
        return decision_key(path)
    except (ConfigError, OSError):
        return None


def _event_rows(db: sqlite3.Connection, run_id: str) -> list[tuple[Any, str, Any, Any]]:
    """The run's events as (seq, kind, data, packed), as stored: damage may have put
    text where a number belongs, and the checks name it; a store from before schema 3
    has no packed events."""
    columns = {str(r[1]) for r in db.execute("PRAGMA table_info(events)")}
    packed = "packed" if "packed" in columns else "0"
    sql = f"SELECT seq, kind, data, {packed} FROM events WHERE run_id = ? ORDER BY seq"
    return [(s, str(k), d, p) for s, k, d, p in db.execute(sql, (run_id,))]


def _payload(db: sqlite3.Connection, run_id: str, digest: bytes) -> bytes:
    row = db.execute(
        "SELECT data FROM payloads WHERE run_id = ? AND hash = ?", (run_id, digest)
    ).fetchone()
    if row is None:
        raise KeyError(digest)
    return bytes(row[0])


def _check_run(db: sqlite3.Connection, run_id: str, found: _Found, *, now: float) -> RunFinding:
    problems: list[str] = []
    notes: list[str] = []
    events: list[AnyEvent] = []
    state: RunState | None = None
    snapshot_state: str | None = None
    unreadable: str | None = None  # why the snapshot's compressed state cannot be read
    key = _key()
    try:
        rows = _event_rows(db, run_id)
        columns = {row[1] for row in db.execute("PRAGMA table_info(snapshots)")}
        mac = "mac" if "mac" in columns else "''"  # a store from before signed snapshots
        snap = db.execute(f"SELECT seq, state, {mac} FROM snapshots WHERE run_id = ?", (run_id,))
        snapshot = snap.fetchone()
        if snapshot is not None and isinstance(snapshot[1], bytes):  # compressed (schema 6)
            try:
                snapshot = (snapshot[0], decoding.read_state(snapshot[1]), snapshot[2])
            except ValueError as exc:  # a resume passes it over, as one of the wrong type
                unreadable = f"its snapshot at seq {snapshot[0]!r:.40} cannot be read: {exc}"
                snapshot = None
    except DB_ERRORS as exc:
        rows, snapshot = [], None
        problems.append(f"its events cannot be read: {exc}")
    # a snapshot row with a seq that is not a number, or a state or signature that is not
    # text, is passed over by a resume, as one that does not verify (and so is one whose
    # compressed state does not decompress or expands past its ceiling: `unreadable`)
    mistyped = snapshot is not None and not (
        isinstance(snapshot[0], int)
        and isinstance(snapshot[1], str)
        and isinstance(snapshot[2], str)
    )
    if mistyped:
        snapshot = None
    for expected, (seq, kind, data, packed) in enumerate(rows, start=1):
        if seq != expected:
            problems.append(f"event seq {expected} is missing (next recorded: {seq!r:.40})")
            break
        if not isinstance(packed, int) or packed & ~decoding.FLAGS:
            problems.append(f"event seq {seq} has flags {packed!r:.40}, not a number from 0 to 3")
            break
        try:
            if packed & decoding.COMPRESSED:
                if not isinstance(data, bytes):
                    raise ValueError(f"it is stored compressed but holds {type(data).__name__}")
                data = bodies.decompressed(data)
            if packed & decoding.REFERS:
                data = payloads.unpack(str(data), partial(_payload, db, run_id))
            event = decode_event(data, str(kind))
        except KeyError as exc:
            problems.append(f"event seq {seq} refers to payload {exc.args[0].hex()}, missing")
            break
        except (ValidationError, ValueError, TypeError, zlib.error) as exc:
            why = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            problems.append(f"event seq {seq} cannot be read: {why}")
            break
        if event.kind != kind:
            problems.append(f"event seq {seq} is listed as {kind!r} but holds {event.kind!r}")
            break
        if state is None and not isinstance(event, RunCreated):
            problems.append(f"it does not begin with run_created (seq 1 is {event.kind!r})")
            break
        try:
            state = _folded(state, seq, event, key, notes)
        except Exception as exc:  # any failure to fold a recorded event is damage
            problems.append(f"event seq {seq} ({event.kind}) does not fold: {exc}")
            break
        events.append(event)
        if snapshot is not None and seq == snapshot[0]:
            snapshot_state = state.snapshot_json()
    if not rows and not problems:
        problems.append("it has no events")
    intact = not problems
    if mistyped:
        problems.append(
            "its snapshot row holds values of the wrong type: a resume passes it over and "
            "folds the events"
        )
    if unreadable is not None:
        problems.append(f"{unreadable}: a resume passes it over and folds the events")
    if intact and state is not None:
        found.intact[run_id] = events
        problems += _check_derived(db, run_id, state, snapshot, snapshot_state)
        notes += _check_signature(run_id, snapshot, key)
        lease_problems, lease_notes = _check_lease(db, run_id, now=now)
        problems += lease_problems
        notes += lease_notes
    return RunFinding(
        run_id=run_id,
        intact=intact,
        events=len(events),
        problems=[_short(p) for p in problems],
        notes=notes,
    )


def _folded(
    state: RunState | None, seq: int, event: AnyEvent, key: bytes | None, notes: list[str]
) -> RunState:
    """``state`` with the event at ``seq`` folded in (the first, ``run_created``,
    makes it); an event forged without the key is ignored, as a resume ignores it, and
    noted. Raises whatever folding it raised."""
    if state is None:
        assert isinstance(event, RunCreated)
        return RunState.from_created(event)
    ignored = forged(state, event, key) if key is not None else None
    if ignored is not None:  # not damage: a record the run ignores, and who wrote it?
        notes.append(
            f"event seq {seq} ({event.kind}) is ignored as forged: {ignored}; "
            "find what wrote into the store"
        )
        state.ignore(seq)
    else:
        state.apply(event, seq)
    return state


def _short(text: str, most: int = 240) -> str:
    return text if len(text) <= most else text[: most - 3] + "..."


def _check_derived(
    db: sqlite3.Connection,
    run_id: str,
    state: RunState,
    snapshot: tuple[int, str, str] | None,
    folded: str | None,
) -> list[str]:
    """The listing row and snapshot must agree with the events they are derived from."""
    problems = []
    row = db.execute(
        "SELECT status, last_seq, summary FROM runs WHERE run_id = ?", (run_id,)
    ).fetchone()
    status = "created" if state.seq == 1 else state.finished or "running"
    if row is None:
        problems.append("it has no listing row (its events are intact)")
    elif row[1] != state.seq:
        problems.append(f"its listing row says last seq {row[1]}, its events end at {state.seq}")
    elif row[0] != status:
        problems.append(f"its listing row says {row[0]!r}, its events say {status!r}")
    if snapshot is not None and not _same_state(snapshot[1], folded, state):
        problems.append(
            f"its snapshot at seq {snapshot[0]} disagrees with its events "
            "(resume folds the events instead unless an engine signed it and it "
            "can be read)"
        )
    return problems


def _same_state(stored: str, folded: str | None, state: RunState) -> bool:
    """Whether a snapshot's state is the one its events fold to: the same JSON, or,
    for a snapshot written in an older form the state still reads (a step's tool calls
    as gate objects), the same once read."""
    if folded is None:
        return False
    try:
        if json.loads(stored) == json.loads(folded):
            return True
        read = RunState.from_snapshot(stored, plan=state.plan)
    except (ValidationError, ValueError, TypeError):
        return False
    return bool(json.loads(read.snapshot_json()) == json.loads(folded))


def _check_signature(
    run_id: str, snapshot: tuple[int, str, str] | None, key: bytes | None
) -> list[str]:
    """Whether the run's snapshot is one a resume would use: signed with this machine's
    engine key. Not damage (a resume folds the events instead), but worth knowing: a
    snapshot nothing signed was written by something other than Trestle, or before
    snapshots were signed."""
    if snapshot is None or key is None:
        return []
    seq, state_json, mac = snapshot
    if trusted(run_id, Snapshot(seq=seq, state_json=state_json, mac=mac), key):
        return []
    how = "unsigned" if not mac else "not signed with this machine's engine key"
    return [
        f"its snapshot at seq {seq} is {how}: a resume does not use it and folds the "
        "events instead; if only Trestle writes this store, find what wrote it"
    ]


def _check_lease(db: sqlite3.Connection, run_id: str, *, now: float) -> tuple[list[str], list[str]]:
    """The run's lease: (problems, notes)."""
    row = db.execute(
        "SELECT owner, pid, host, token, expires_at FROM leases WHERE run_id = ?", (run_id,)
    ).fetchone()
    if row is None:
        return [], []
    name, pid, host, token, expires = row
    problem = unreadable_lease(pid, token, expires)
    if problem is not None:
        return [f"{problem}: no driver can take the run in this store; salvage it"], []
    assert isinstance(pid, int) and isinstance(expires, int | float)
    holder = Owner(name=str(name), pid=pid, host=str(host))
    return [], _lease_notes(Lease(owner=holder, token=token, expires_at=expires), now=now)


def _lease_notes(lease: Lease | None, *, now: float) -> list[str]:
    """Who drives the run now, or whose lease a resume takes over."""
    if lease is None or lease.expires_at <= now:
        return []
    holder = lease.owner
    if owner_is_alive(holder):
        return [f"driven now by {holder.name} (pid {holder.pid} on {holder.host})"]
    return [f"stale lease of {holder.name} (pid {holder.pid} is gone): the next resume takes it"]


def _check_requests(db: sqlite3.Connection, found: _Found) -> None:
    try:
        orphans = db.execute(
            "SELECT id, run_id FROM requests WHERE consumed = 0 "
            "AND run_id NOT IN (SELECT run_id FROM runs)"
        ).fetchall()
    except DB_ERRORS as exc:
        found.problems.append(f"the requests cannot be read: {exc}")
        return
    for request_id, run_id in orphans:
        found.notes.append(f"request {request_id} waits for run {run_id!r}, which has no row")


def _examine_database(url: str, *, now: float) -> _Found:
    """A database's store, checked through the store (see the module): what could not
    be read is a problem, and the notes say what was checked."""
    found = _Found()
    try:
        store = open_store(url, create=False)
    except (NoStoreError, ConfigError):
        raise  # no store, or a URL that cannot be read: bad input, not damage
    except TrestleError as exc:  # the server cannot be reached, or the schema is wrong
        found.problems.append(str(exc))
        return found
    try:
        found.notes.append(_schema_note(store))
        check = getattr(store, "check", None)
        if callable(check):  # the store's own checks: they raise, or return the problems
            said = check()
            if isinstance(said, list | tuple):
                found.problems += [str(problem) for problem in said]
        rows = store.runs()
        found.notes.append(
            "a database has no file to check: each run's events were read and folded, "
            "and its listing row and lease compared with them"
        )
        for row in rows:
            found.runs.append(_check_stored_run(store, row, found, now=now))
    except TrestleError as exc:
        found.problems.append(str(exc))
    finally:
        store.close()
    return found


def _schema_note(store: Store) -> str:
    version = getattr(store, "schema_version", None)
    if callable(version):
        return f"connected; schema version {version()}, which this Trestle reads"
    return "connected; the schema is one this Trestle reads"


def _check_stored_run(store: Store, row: RunRow, found: _Found, *, now: float) -> RunFinding:
    """One run of a database's store, read through the store (:func:`_check_run` reads
    a file's rows itself)."""
    problems: list[str] = []
    notes: list[str] = []
    events: list[AnyEvent] = []
    state: RunState | None = None
    key = _key()
    try:
        stored = store.events(row.run_id)
    except StoreDamagedError as exc:  # names the seq that cannot be read
        stored = []
        problems.append(exc.problem)
    for expected, item in enumerate(stored, start=1):
        seq, event = item.seq, item.event
        if seq != expected:
            problems.append(f"event seq {expected} is missing (next recorded: {seq})")
            break
        if state is None and not isinstance(event, RunCreated):
            problems.append(f"it does not begin with run_created (seq 1 is {event.kind!r})")
            break
        try:
            state = _folded(state, seq, event, key, notes)
        except Exception as exc:  # any failure to fold a recorded event is damage
            problems.append(f"event seq {seq} ({event.kind}) does not fold: {exc}")
            break
        events.append(event)
    if not stored and not problems:
        problems.append("it has no events")
    intact = not problems
    snapshot_problem = getattr(store, "snapshot_problem", None)  # the SQL stores have it
    if callable(snapshot_problem) and (said := snapshot_problem(row.run_id)) is not None:
        problems.append(f"{said}: a resume passes it over and folds the events")
    if intact and state is not None:
        found.intact[row.run_id] = events
        status = "created" if state.seq == 1 else state.finished or "running"
        if row.last_seq != state.seq:
            problems.append(
                f"its listing row says last seq {row.last_seq}, its events end at {state.seq}"
            )
        elif row.status != status:
            problems.append(f"its listing row says {row.status!r}, its events say {status!r}")
        notes += _lease_notes(store.lease(row.run_id), now=now)
    return RunFinding(
        run_id=row.run_id,
        intact=intact,
        events=len(events),
        problems=[_short(p) for p in problems],
        notes=notes,
    )


def _diagnosis(where: str | Path, found: _Found) -> Diagnosis:
    shown = where_shown(where)  # a URL without its password
    damaged = bool(found.problems) or any(r.problems for r in found.runs)
    recover = []
    if damaged:
        intact = [r.run_id for r in found.runs if r.intact]
        broken = [r.run_id for r in found.runs if not r.intact]
        if intact:
            recover.append(
                f"{counted(len(intact), 'run')} {'has' if len(intact) == 1 else 'have'} "
                f"intact events: `trestle doctor --store {shown} --salvage NEW.db` copies "
                f"{'it' if len(intact) == 1 else 'them'} into a new store"
            )
        if broken:
            runs = "run" if len(broken) == 1 else "runs"
            recover.append(f"{runs} with damaged events: {', '.join(broken)}")
        if found.unreadable is not None:
            recover.append(found.unreadable)  # SQLite's .recover reads nothing there
        elif found.problems and not is_store_url(where):
            recover.append(
                f"SQLite may recover more rows: sqlite3 {shown} .recover | sqlite3 NEW.db "
                "(then check NEW.db with `trestle doctor --store NEW.db`)"
            )
    return Diagnosis(
        store=shown,
        healthy=not damaged,
        problems=found.problems,
        notes=found.notes,
        runs=found.runs,
        recover=recover,
    )


def diagnosis_lines(d: Diagnosis) -> list[str]:
    """The diagnosis as plain lines for the terminal."""
    lines = [f"store {d.store}: {'healthy' if d.healthy else 'DAMAGED'}"]
    lines += [f"  problem: {p}" for p in d.problems]
    lines += [f"  note: {n}" for n in d.notes]
    for r in d.runs:
        state = "events intact" if r.intact else "events damaged"
        lines.append(f"  run {r.run_id}: {counted(r.events, 'event')} readable, {state}")
        lines += [f"    problem: {p}" for p in r.problems]
        lines += [f"    note: {n}" for n in r.notes]
    if not d.runs and not d.problems:
        lines.append("  no runs")
    lines += [f"  recover: {r}" for r in d.recover]
    return lines
