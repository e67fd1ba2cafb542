"""One conformance suite for every store: what ``trestle.store.base.Store`` promises.

Each test runs against a real SQLite file (a fresh one per test) and the in-memory
store. The SQLite-only tests at the end cover what only a file has: migrations, WAL,
reopening, refusing a newer schema, and two store objects sharing one file.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import sqlite3
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

from trestle.core.errors import (
    ConfigError,
    LeaseHeldError,
    LeaseLostError,
    RunExistsError,
    StoreError,
    UnknownRunError,
)
from trestle.core.events import (
    ActionResult,
    AnyEvent,
    CheckResult,
    RunCreated,
    RunFinished,
    RunResumed,
    StepAttemptEnded,
    StepBlocked,
    StepEscalated,
    StepFailed,
    StepProbed,
    StepProbeStarted,
    StepReopened,
    StepRetryScheduled,
    StepSkipped,
    StepStarted,
    StoredEvent,
)
from trestle.core.plan import Plan
from trestle.core.state import RunState
from trestle.formats.planfile import parse_plan
from trestle.lifecycle import runs as runs_module
from trestle.lifecycle.runs import create_run
from trestle.store import Appended, InMemoryStore, Owner, Snapshot, SqliteStore, Store
from trestle.store.base import Request
from trestle.store.location import open_store
from trestle.store.sqlite import MIGRATIONS

RUN = "20261121-152000-a3f9"
TTL = 30.0

# A plan that uses every kind of field, so its round trip through the store means something.
PLAN = Plan.model_validate(
    {
        "goal": "ship it",
        "workspace": "proj",
        "parallelism": 4,
        "steps": [
            {"id": "build", "run": "make", "retries": 2, "backoff": {"initial": 0.5}},
            {
                "id": "write.cfg",
                "write": {"path": "cfg/app.toml", "content": "x = 'ü'\n"},
                "verify": [{"file_exists": "cfg/app.toml"}],
            },
            {
                "id": "test",
                "python": "pkg.checks:run_tests",
                "needs": ["build", "write.cfg"],
                "verify": [
                    {"command": "pytest -q", "timeout": 5},
                    {"file_contains": "report.txt", "regex": "^ok$"},
                    {"python": "pkg.checks:green"},
                ],
                "optional": True,
                "env": {"CI": "1"},
            },
            {"id": "deploy", "run": "./deploy", "needs": ["test"], "irreversible": True},
        ],
    }
)

CHECK = CheckResult(
    check="report.txt matches /^ok$/", expected="a match", actual="'no'", passed=False
)


def created(run_id: str = RUN, at: float = 100.0) -> RunCreated:
    return RunCreated(
        at=at, run_id=run_id, plan=PLAN, workspace="/srv/proj", plan_path="/srv/proj/plan.yaml"
    )


def one_of_each(at: float = 101.0) -> list[AnyEvent]:
    """Every event kind but run_created, with nested records and awkward values."""
    failed = ActionResult(status="failed", exit_code=2, output="boom\n\ttab ✓", error="exit 2")
    return [
        StepStarted(at=at, step="build", attempt=1, key=f"{RUN}/build/1"),
        StepAttemptEnded(at=at + 0.25, step="build", attempt=1, ok=False, action=failed),
        StepRetryScheduled(at=at + 0.5, step="build", not_before=at + 1.0, reason="attempt 1"),
        StepProbeStarted(at=at + 1.0, step="build", reason="before_retry"),
        StepProbed(at=at + 1.5, step="build", reason="before_retry", passed=False, checks=(CHECK,)),
        RunResumed(at=at + 2.0, owner="trestle[42]"),
        StepFailed(at=at + 3.0, step="build", reason="failed 3 of 3", dead_lettered=True),
        StepBlocked(at=at + 3.0, step="test", by="build", reason="needs 'build', which failed"),
        StepEscalated(at=at + 3.0, step="write.cfg", reason="check by hand"),
        StepSkipped(at=at + 4.0, step="write.cfg", reason="done by hand", request_id=3),
        StepReopened(at=at + 4.0, step="build", reason="fixed", request_id=None),
        RunFinished(at=at + 5.0, status="needs_human"),
    ]


def me(name: str = "test") -> Owner:
    """An owner that is alive on this host: this very process."""
    return Owner(name=f"{name}[{os.getpid()}]", pid=os.getpid(), host=socket.gethostname())


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def batch(
    events: list[AnyEvent],
    first_seq: int,
    *,
    status: str = "running",
    summary: str = '{"pending": 4}',
    snapshot: Snapshot | None = None,
    consumed_requests: Sequence[int] = (),
) -> Appended:
    return Appended(
        events=events,
        first_seq=first_seq,
        status=status,
        summary=summary,
        snapshot=snapshot,
        consumed_requests=consumed_requests,
    )


def opened(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """A fresh, empty store of ``kind``: an SQLite file, memory, or a PostgreSQL
    database of its own on the test server."""
    if kind == "sqlite":
        return SqliteStore(tmp_path / "trestle.db")
    if kind == "postgres":
        from trestle.store.postgres import PostgresStore

        return PostgresStore(request.getfixturevalue("postgres_url"))
    return InMemoryStore()


@pytest.fixture(params=["sqlite", "memory", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = opened(request.param, request, tmp_path)
    yield s
    s.close()


@pytest.fixture
def run_id(store: Store) -> str:
    store.create_run(created(), summary='{"pending": 4}')
    return RUN


def leased(store: Store, run_id: str, now: float = 100.0) -> int:
    return store.acquire_lease(run_id, me(), ttl=TTL, now=now).token


def snapshot_of(store: Store, run_id: str) -> tuple[object, ...]:
    """Everything the store holds about a run, to show that a refused write changed nothing."""
    return (
        store.events(run_id),
        store.run(run_id),
        store.snapshot(run_id),
        store.pending_requests(run_id),
        store.lease(run_id),
    )


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])  # a store in memory has none
def test_a_second_handle_reads_what_the_first_commits_after_it_opened(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """What a Temporal worker reads through (see engines.temporal.activities): a
    connection of its own, seeing each of the store's commits once it is made."""
    from trestle.store.postgres import PostgresStore

    store = opened(kind, request, tmp_path)
    assert isinstance(store, SqliteStore | PostgresStore)
    try:
        store.create_run(created(), summary='{"pending": 4}')
        reader = store.reader()
        try:
            store.append(RUN, batch(one_of_each(), first_seq=2), token=leased(store, RUN))
            assert reader.events(RUN) == store.events(RUN)
            assert reader.lease(RUN) == store.lease(RUN)
        finally:
            reader.close()
        assert len(store.events(RUN)) == 1 + len(one_of_each())  # the first is still open
    finally:
        store.close()


# --- runs and events ---------------------------------------------------------------------


def test_create_run_records_the_first_event_and_a_listing_row(store: Store) -> None:
    event = created()
    store.create_run(event, summary='{"pending": 4}')
    assert store.events(RUN) == [StoredEvent(run_id=RUN, seq=1, event=event)]
    first = store.events(RUN)[0].event
    assert isinstance(first, RunCreated) and first.plan == PLAN
    row = store.run(RUN)
    assert (row.run_id, row.goal, row.workspace, row.plan_path) == (
        RUN,
        "ship it",
        "/srv/proj",
        "/srv/proj/plan.yaml",
    )
    assert (row.status, row.created_at, row.updated_at, row.last_seq, row.summary) == (
        "created",
        100.0,
        100.0,
        1,
        '{"pending": 4}',
    )
    assert store.snapshot(RUN) is None
    assert store.lease(RUN) is None
    assert store.pending_requests(RUN) == []


def test_every_event_kind_round_trips_to_an_equal_object(store: Store, run_id: str) -> None:
    events = one_of_each()
    store.append(run_id, batch(events, 2), token=leased(store, run_id))
    stored = store.events(run_id)
    assert [s.seq for s in stored] == list(range(1, len(events) + 2))
    assert [s.event for s in stored] == [created(), *events]
    assert all(s.run_id == run_id for s in stored)
    assert [type(s.event) for s in stored[1:]] == [type(e) for e in events]


def test_appends_continue_the_sequence_in_order(store: Store, run_id: str) -> None:
    token = leased(store, run_id)
    events = one_of_each()
    store.append(run_id, batch(events[:3], 2), token=token)
    store.append(run_id, batch(events[3:4], 5), token=token)
    store.append(run_id, batch(events[4:], 6), token=token)
    assert [s.event for s in store.events(run_id)] == [created(), *events]
    assert [s.seq for s in store.events(run_id, after=4)] == list(range(5, len(events) + 2))
    assert [s.event for s in store.events(run_id, after=4)] == events[3:]
    assert store.events(run_id, after=len(events) + 1) == []
    assert store.run(run_id).last_seq == len(events) + 1


@pytest.mark.parametrize("first_seq", [1, 2, 4], ids=["overlap-first", "overlap", "gap"])
def test_an_append_out_of_sequence_is_refused_and_writes_nothing(
    store: Store, run_id: str, first_seq: int
) -> None:
    token = leased(store, run_id)
    store.append(run_id, batch(one_of_each()[:1], 2), token=token)
    request = store.add_request(run_id, "retry", "build", "again", now=102.0)
    before = snapshot_of(store, run_id)
    wrong = batch(
        one_of_each()[1:3],
        first_seq,
        status="needs_human",
        summary="{}",
        snapshot=Snapshot(seq=4, state_json="{}"),
        consumed_requests=[request],
    )
    with pytest.raises(ValueError, match="out of order"):
        store.append(run_id, wrong, token=token)
    assert snapshot_of(store, run_id) == before


def test_an_append_commits_events_row_snapshot_and_requests_together(
    store: Store, run_id: str
) -> None:
    token = leased(store, run_id)
    first = store.add_request(run_id, "retry", "build", "try again", now=101.0)
    second = store.add_request(run_id, "skip", "deploy", "not today", now=101.5)
    assert second != first
    events = one_of_each(at=110.0)[:2]
    snap = Snapshot(seq=3, state_json='{"state": 1}', monitors=b"\x00save", mac="signed")
    store.append(
        run_id,
        batch(
            events,
            2,
            status="needs_human",
            summary='{"failed": 1}',
            snapshot=snap,
            consumed_requests=[first],
        ),
        token=token,
    )
    assert [s.event for s in store.events(run_id, after=1)] == events
    row = store.run(run_id)
    assert (row.status, row.summary, row.last_seq) == ("needs_human", '{"failed": 1}', 3)
    assert row.updated_at == events[-1].at
    assert row.created_at == 100.0
    # the monitors' save is read only when asked for: a listing reads many states
    assert store.snapshot(run_id, monitors=True) == snap
    assert store.snapshot(run_id) == Snapshot(seq=3, state_json='{"state": 1}', mac="signed")
    assert [r.id for r in store.pending_requests(run_id)] == [second]


def test_an_append_of_no_events_keeps_the_sequence_and_the_time(store: Store, run_id: str) -> None:
    # the engine commits consumed requests on their own when none of them made sense
    token = leased(store, run_id)
    request = store.add_request(run_id, "retry", "build", "again", now=200.0)
    store.append(run_id, batch([], 2, consumed_requests=[request]), token=token)
    row = store.run(run_id)
    assert (row.last_seq, row.updated_at) == (1, 100.0)
    assert store.pending_requests(run_id) == []
    assert len(store.events(run_id)) == 1


def test_creating_a_run_twice_is_refused(store: Store, run_id: str) -> None:
    before = snapshot_of(store, run_id)
    with pytest.raises(ValueError, match="exists"):
        store.create_run(created(at=500.0), summary="{}")
    assert snapshot_of(store, run_id) == before


def test_runs_are_listed_newest_first(store: Store) -> None:
    for run_id, at in [("r-old", 100.0), ("r-new", 300.0), ("r-mid", 200.0)]:
        store.create_run(created(run_id, at), summary="{}")
    assert [r.run_id for r in store.runs()] == ["r-new", "r-mid", "r-old"]
    assert [r.created_at for r in store.runs()] == [300.0, 200.0, 100.0]


def test_an_append_updates_only_its_own_listing_row(store: Store) -> None:
    for run_id, at in [("r-a", 100.0), ("r-b", 200.0)]:
        store.create_run(created(run_id, at), summary='{"pending": 4}')
    untouched = store.run("r-b")
    token = leased(store, "r-a")
    store.append(
        "r-a", batch(one_of_each(at=150.0)[:3], 2, summary='{"retry_wait": 1}'), token=token
    )
    store.append(
        "r-a",
        batch(
            [RunFinished(at=160.0, status="partial")], 5, status="partial", summary='{"failed": 1}'
        ),
        token=token,
    )
    row = store.run("r-a")
    assert (row.status, row.summary, row.last_seq, row.updated_at) == (
        "partial",
        '{"failed": 1}',
        5,
        160.0,
    )
    assert store.run("r-b") == untouched
    assert store.runs() == [untouched, row]


def test_snapshots_round_trip_and_the_latest_replaces_the_last(store: Store, run_id: str) -> None:
    token = leased(store, run_id)
    state = RunState.from_created(created())
    events = one_of_each()
    for event in events[:3]:
        state.apply(event)
    first = Snapshot(seq=state.seq, state_json=state.model_dump_json())
    store.append(run_id, batch(events[:3], 2, snapshot=first), token=token)
    assert store.snapshot(run_id) == first
    kept = store.snapshot(run_id)
    assert kept is not None
    assert RunState.from_snapshot(kept.state_json).model_dump() == state.model_dump()

    store.append(run_id, batch(events[3:5], 5), token=token)  # no snapshot: keep the last
    assert store.snapshot(run_id) == first
    second = Snapshot(seq=8, state_json='{"later": true}')
    store.append(run_id, batch(events[5:7], 7, snapshot=second), token=token)
    assert store.snapshot(run_id) == second
    assert store.snapshot("no-such-run") is None


# --- leases and fencing ------------------------------------------------------------------


def test_the_first_lease_gets_token_one(store: Store, run_id: str) -> None:
    lease = store.acquire_lease(run_id, me(), ttl=TTL, now=100.0)
    assert (lease.owner, lease.token, lease.expires_at) == (me(), 1, 100.0 + TTL)
    assert store.lease(run_id) == lease


def test_a_live_holder_keeps_its_lease(store: Store, run_id: str) -> None:
    held = store.acquire_lease(run_id, me("first"), ttl=TTL, now=100.0)
    with pytest.raises(LeaseHeldError, match=r"first\["):
        store.acquire_lease(run_id, me("second"), ttl=TTL, now=100.0 + TTL - 1)
    assert store.lease(run_id) == held


def test_a_holder_on_another_host_is_trusted_until_its_lease_expires(
    store: Store, run_id: str
) -> None:
    # a pid means nothing on another host, so only the expiry can free the lease
    far = Owner(name="far[1]", pid=dead_pid(), host=f"not-{socket.gethostname()}")
    store.acquire_lease(run_id, far, ttl=TTL, now=100.0)
    with pytest.raises(LeaseHeldError):
        store.acquire_lease(run_id, me(), ttl=TTL, now=110.0)
    assert store.acquire_lease(run_id, me(), ttl=TTL, now=100.0 + TTL + 1).token == 2


def test_an_expired_lease_is_taken_over_with_a_higher_token(store: Store, run_id: str) -> None:
    store.acquire_lease(run_id, me("first"), ttl=TTL, now=100.0)
    lease = store.acquire_lease(run_id, me("second"), ttl=TTL, now=100.0 + TTL + 0.5)
    assert (lease.owner.name, lease.token, lease.expires_at) == (
        me("second").name,
        2,
        100.0 + 2 * TTL + 0.5,
    )
    assert store.lease(run_id) == lease


def test_a_lease_held_by_a_dead_process_on_this_host_is_taken_over(
    store: Store, run_id: str
) -> None:
    dead = Owner(name="crashed[1]", pid=dead_pid(), host=socket.gethostname())
    store.acquire_lease(run_id, dead, ttl=3600.0, now=100.0)
    lease = store.acquire_lease(run_id, me(), ttl=TTL, now=101.0)  # long before expiry
    assert (lease.owner, lease.token) == (me(), 2)


def test_appending_with_a_stale_token_is_fenced_off_and_writes_nothing(
    store: Store, run_id: str
) -> None:
    old = store.acquire_lease(run_id, me("old"), ttl=TTL, now=100.0)
    request = store.add_request(run_id, "skip", "deploy", "not today", now=101.0)
    new = store.acquire_lease(run_id, me("new"), ttl=TTL, now=100.0 + TTL + 1)
    assert new.token > old.token
    before = snapshot_of(store, run_id)
    stale = batch(
        one_of_each()[:2],
        2,
        status="partial",
        summary="{}",
        snapshot=Snapshot(seq=3, state_json="{}"),
        consumed_requests=[request],
    )
    with pytest.raises(LeaseLostError):
        store.append(run_id, stale, token=old.token)
    with pytest.raises(LeaseLostError):
        store.renew_lease(run_id, old.token, ttl=TTL, now=140.0)
    store.release_lease(run_id, old.token)  # a stale release is a no-op
    assert snapshot_of(store, run_id) == before
    store.append(run_id, replace(stale, status="running"), token=new.token)
    assert len(store.events(run_id)) == 3
    assert store.pending_requests(run_id) == []


def test_appending_without_a_lease_is_refused(store: Store, run_id: str) -> None:
    with pytest.raises(LeaseLostError):
        store.append(run_id, batch(one_of_each()[:1], 2), token=1)
    assert len(store.events(run_id)) == 1


def test_renewing_extends_the_lease(store: Store, run_id: str) -> None:
    token = leased(store, run_id, now=100.0)
    store.renew_lease(run_id, token, ttl=TTL, now=120.0)
    lease = store.lease(run_id)
    assert lease is not None and lease.expires_at == 120.0 + TTL
    with pytest.raises(LeaseHeldError):
        store.acquire_lease(run_id, me("other"), ttl=TTL, now=100.0 + TTL + 1)
    assert store.acquire_lease(run_id, me("other"), ttl=TTL, now=121.0 + TTL).token == token + 1


def test_releasing_frees_the_lease_at_once_and_the_token_keeps_rising(
    store: Store, run_id: str
) -> None:
    token = leased(store, run_id, now=100.0)
    store.release_lease(run_id, token)
    lease = store.acquire_lease(run_id, me("next"), ttl=TTL, now=101.0)
    assert lease.token == token + 1
    with pytest.raises(LeaseLostError):
        store.append(run_id, batch(one_of_each()[:1], 2), token=token)
    store.append(run_id, batch(one_of_each()[:1], 2), token=lease.token)


# --- human requests ----------------------------------------------------------------------


def test_requests_wait_in_order_per_run(store: Store, run_id: str) -> None:
    store.create_run(created("other-run", 50.0), summary="{}")
    first = store.add_request(run_id, "retry", "build", "fixed the flag", now=101.0)
    store.add_request("other-run", "skip", "deploy", "elsewhere", now=101.5)
    second = store.add_request(run_id, "skip", "deploy", "not today ✓", now=102.0)
    assert first < second
    pending = store.pending_requests(run_id)
    assert [(r.id, r.run_id, r.kind, r.step, r.reason, r.created_at) for r in pending] == [
        (first, run_id, "retry", "build", "fixed the flag", 101.0),
        (second, run_id, "skip", "deploy", "not today ✓", 102.0),
    ]
    assert [r.step for r in store.pending_requests("other-run")] == ["deploy"]


def test_a_request_asked_first_is_queued_only_if_the_pending_ones_allow(
    store: Store, run_id: str
) -> None:
    first = store.add_request(run_id, "skip", "deploy", "not today", now=101.0)
    seen: list[list[str]] = []

    def unless(pending: list[Request]) -> str | None:
        seen.append([r.reason for r in pending])
        return "deploy is already decided" if any(r.step == "deploy" for r in pending) else None

    before = snapshot_of(store, run_id)
    with pytest.raises(ConfigError, match="deploy is already decided"):
        store.add_request(run_id, "retry", "deploy", "again", now=102.0, unless=unless)
    assert snapshot_of(store, run_id) == before
    second = store.add_request(run_id, "retry", "build", "b", now=103.0, unless=lambda _: None)
    assert seen == [["not today"]]
    assert [r.id for r in store.pending_requests(run_id)] == [first, second]


def test_requests_are_consumed_only_with_a_committed_append(store: Store, run_id: str) -> None:
    token = leased(store, run_id)
    first = store.add_request(run_id, "retry", "build", "a", now=101.0)
    second = store.add_request(run_id, "retry", "build", "b", now=101.0)
    reopened = StepReopened(at=103.0, step="build", reason="a", request_id=first)
    store.append(run_id, batch([reopened], 2, consumed_requests=[first]), token=token)
    assert [r.id for r in store.pending_requests(run_id)] == [second]
    assert store.events(run_id)[-1].event == reopened


# --- deleting runs -----------------------------------------------------------------------


def test_deleting_a_run_forgets_all_of_it_and_leaves_the_others(store: Store, run_id: str) -> None:
    store.create_run(created("other-run", 50.0), summary="{}")
    other = snapshot_of(store, "other-run")
    token = leased(store, run_id)
    events = one_of_each()[:3]
    store.append(run_id, batch(events, 2, snapshot=Snapshot(seq=4, state_json="{}")), token=token)
    store.add_request(run_id, "retry", "build", "again", now=104.0)
    store.add_request("other-run", "skip", "deploy", "elsewhere", now=104.0)

    assert store.delete_run(run_id) == 4

    with pytest.raises(UnknownRunError):
        store.run(run_id)
    with pytest.raises(UnknownRunError):
        store.events(run_id)
    assert [r.run_id for r in store.runs()] == ["other-run"]
    assert store.snapshot(run_id) is None
    assert store.lease(run_id) is None
    assert store.pending_requests(run_id) == []
    assert snapshot_of(store, "other-run")[:-2] == other[:-2]
    assert [r.step for r in store.pending_requests("other-run")] == ["deploy"]
    # the id is free again: a new run under it starts from seq 1
    store.create_run(created(run_id, 200.0), summary="{}")
    assert [e.seq for e in store.events(run_id)] == [1]


def test_deleting_an_unknown_run_is_an_error(store: Store, run_id: str) -> None:
    with pytest.raises(UnknownRunError, match="no-such-run"):
        store.delete_run("no-such-run")
    assert store.run(run_id).last_seq == 1


def test_sqlite_compacting_after_a_delete_gives_the_space_back(db_path: Path) -> None:
    store = SqliteStore(db_path)
    with closing(store):
        for i in range(30):
            run = f"run-{i:02d}"
            store.create_run(created(run, 100.0 + i), summary="{}")
            token = leased(store, run)
            store.append(run, batch(one_of_each() * 10, 2), token=token)
        store.compact()
        full = db_path.stat().st_size
        for row in store.runs()[1:]:
            store.delete_run(row.run_id)
        store.compact()
        assert db_path.stat().st_size < full / 4
        assert not Path(f"{db_path}-wal").exists() or Path(f"{db_path}-wal").stat().st_size == 0
        assert [r.run_id for r in store.runs()] == ["run-29"]
        assert len(store.events("run-29")) == 1 + 10 * len(one_of_each())


# --- unknown runs ------------------------------------------------------------------------


def test_an_unknown_run_is_an_error_with_a_did_you_mean(store: Store, run_id: str) -> None:
    typo = run_id[:-1] + "8"
    hint = f"did you mean {run_id!r}?"
    with pytest.raises(UnknownRunError, match=typo) as info:
        store.run(typo)
    assert hint in str(info.value)
    with pytest.raises(UnknownRunError, match=hint.replace("?", r"\?")):
        store.events(typo)
    with pytest.raises(UnknownRunError, match=hint.replace("?", r"\?")):
        store.add_request(typo, "retry", "build", "x", now=1.0)
    with pytest.raises(UnknownRunError) as info:
        store.run("zzzz")
    assert "did you mean" not in str(info.value)


# --- durable stores: what a file or a server keeps between store objects -------------


@pytest.fixture(params=["sqlite", "postgres"])
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Opens another store object on one durable store (as another process would)."""
    where: str | Path = tmp_path / "nested" / "trestle.db"
    if request.param == "postgres":
        where = request.getfixturevalue("postgres_url")
    return partial(open_store, where)


def test_reopening_the_store_keeps_everything(reopen: Callable[[], Store]) -> None:
    store = reopen()
    store.create_run(created(), summary='{"pending": 4}')
    token = leased(store, RUN)
    request = store.add_request(RUN, "skip", "deploy", "later", now=101.0)
    snap = Snapshot(seq=3, state_json='{"s": 1}', monitors=b"\x00saved", mac="m")
    store.append(RUN, batch(one_of_each()[:2], 2, snapshot=snap), token=token)
    before = snapshot_of(store, RUN)
    store.close()

    again = reopen()
    assert snapshot_of(again, RUN) == before
    assert again.snapshot(RUN, monitors=True) == snap
    assert [r.id for r in again.pending_requests(RUN)] == [request]
    again.append(RUN, batch(one_of_each()[2:3], 4), token=token)  # the lease survived too
    assert again.run(RUN).last_seq == 4
    again.close()


def test_a_second_store_on_the_same_storage_sees_the_lease(reopen: Callable[[], Store]) -> None:
    first, second = reopen(), reopen()
    first.create_run(created(), summary="{}")
    old = first.acquire_lease(RUN, me("one"), ttl=TTL, now=100.0)
    with pytest.raises(LeaseHeldError):
        second.acquire_lease(RUN, me("two"), ttl=TTL, now=101.0)
    new = second.acquire_lease(RUN, me("two"), ttl=TTL, now=100.0 + TTL + 1)
    with pytest.raises(LeaseLostError):
        first.append(RUN, batch(one_of_each()[:1], 2), token=old.token)
    second.append(RUN, batch(one_of_each()[:1], 2), token=new.token)
    assert [s.seq for s in first.events(RUN)] == [1, 2]
    first.close()
    second.close()


def test_two_stores_interleave_appends_without_locking_errors(
    reopen: Callable[[], Store],
) -> None:
    # two store objects behave like two processes: separate connections to one store
    reopen().close()
    rounds = 60
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def drive(run_id: str) -> None:
        store = reopen()
        try:
            store.create_run(created(run_id), summary="{}")
            token = store.acquire_lease(run_id, me(run_id), ttl=TTL, now=100.0).token
            barrier.wait()
            for i in range(rounds):
                events = one_of_each(at=200.0 + i)[:2]
                store.append(run_id, batch(events, 2 + 2 * i, summary=str(i)), token=token)
                request = store.add_request(run_id, "retry", "build", str(i), now=200.0 + i)
                assert store.events(run_id, after=2 * i)[0].seq == 2 * i + 1
                store.append(run_id, batch([], 2 * i + 4, consumed_requests=[request]), token=token)
        except BaseException as exc:  # collected: an assert in a thread would be lost
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=drive, args=(r,)) for r in ("run-a", "run-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

    check = reopen()
    for run_id in ("run-a", "run-b"):
        stored = check.events(run_id)
        assert [s.seq for s in stored] == list(range(1, 2 * rounds + 2))
        expected = [e for i in range(rounds) for e in one_of_each(at=200.0 + i)[:2]]
        assert [s.event for s in stored[1:]] == expected
        assert check.run(run_id).last_seq == 2 * rounds + 1
        assert check.pending_requests(run_id) == []
    check.close()


def _take_lease_and_append(where: str, run_id: str, start: float) -> tuple[str, int]:
    """In a process of its own: take the run's lease if it can, then append one event
    with it; which seq it got, or why it could not."""
    store = open_store(where)
    try:
        token = store.acquire_lease(run_id, me(f"p{os.getpid()}"), ttl=0.05, now=start).token
        seq = store.run(run_id).last_seq + 1
        store.append(run_id, batch(one_of_each()[:1], seq), token=token)
        return "appended", seq
    except (LeaseHeldError, LeaseLostError, ValueError) as exc:
        return type(exc).__name__, 0
    finally:
        store.close()


def test_processes_racing_for_an_expired_lease_never_write_one_seq_twice(
    reopen: Callable[[], Store],
) -> None:
    """Eight processes at once take over a run whose lease keeps expiring (each one's
    ``now`` is past the last one's expiry) and append: the fencing token and the
    sequence check leave one gap-free stream, whoever won each turn."""
    store = reopen()
    store.create_run(created(), summary="{}")
    where = str(getattr(store, "url", getattr(store, "path", "")))
    context = multiprocessing.get_context("fork")
    with context.Pool(8) as pool:
        outcomes = pool.starmap(
            _take_lease_and_append, [(where, RUN, 100.0 + i) for i in range(32)]
        )
    appended = [seq for outcome, seq in outcomes if outcome == "appended"]
    assert appended and len(appended) == len(set(appended))
    stored = store.events(RUN)
    assert [s.seq for s in stored] == list(range(1, len(appended) + 2))
    assert store.lease(RUN) is not None and store.lease(RUN).token >= 1  # type: ignore[union-attr]
    store.close()


# --- SQLite only -------------------------------------------------------------------------


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "trestle.db"


def pragma(path: Path, name: str) -> object:
    with sqlite3.connect(path) as db:
        return db.execute(f"PRAGMA {name}").fetchone()[0]


def test_sqlite_schema_version_counts_the_migrations_and_uses_wal(db_path: Path) -> None:
    SqliteStore(db_path).close()  # creates the parent directory too
    assert pragma(db_path, "user_version") == len(MIGRATIONS)
    assert pragma(db_path, "journal_mode") == "wal"


@pytest.mark.parametrize("existing", [True, False], ids=["with-data", "empty"])
def test_sqlite_refuses_a_store_from_a_newer_trestle(db_path: Path, existing: bool) -> None:
    newer = len(MIGRATIONS) + 1
    if existing:
        store = SqliteStore(db_path)
        store.create_run(created(), summary="{}")
        store.close()
    else:
        db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as db:
        db.execute(f"PRAGMA user_version = {newer}")
    with pytest.raises(StoreError, match=f"version {newer} is newer"):
        SqliteStore(db_path)
    assert pragma(db_path, "user_version") == newer
    with sqlite3.connect(db_path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert ("events" in tables) == existing  # nothing migrated, nothing lost
        if existing:
            assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 1


def _open_and_close(path: str) -> None:
    SqliteStore(path).close()


def test_sqlite_processes_opening_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    # the first open switches the file to WAL; a second process doing the same at that
    # moment is told "locked" without sqlite's busy wait, and once failed outright
    context = multiprocessing.get_context("fork")
    for attempt in range(40):
        path = str(tmp_path / f"store-{attempt}.db")
        with context.Pool(4) as pool:
            pool.map(_open_and_close, [path] * 4)
        with closing(sqlite3.connect(path)) as check:
            assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_runs_created_in_the_same_second_that_draw_the_same_id_both_get_recorded(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A generated id is the second plus 16 random bits: 200 runs made at once drew a
    duplicate about one time in four. A draw that collides draws again."""
    draws = iter(["aaaa", "aaaa", "aaaa", "bbbb"])
    monkeypatch.setattr(runs_module, "new_run_id", lambda now: f"20261123-000000-{next(draws)}")
    plan = parse_plan("steps:\n  - {id: one, run: 'true'}\n")
    first = create_run(store, plan, workspace=Path("."), now=1_000.0)
    second = create_run(store, plan, workspace=Path("."), now=1_000.0)
    assert (first[-4:], second[-4:]) == ("aaaa", "bbbb")
    assert {r.run_id for r in store.runs()} >= {first, second}
    with pytest.raises(RunExistsError):  # an id the caller chose is not redrawn
        create_run(store, plan, workspace=Path("."), run_id=first)


def test_a_request_whose_text_cannot_be_stored_is_refused_by_name(
    store: Store, run_id: str
) -> None:
    before = snapshot_of(store, run_id)
    for field, args in (
        ("reason", ("build", "again \udcff")),
        ("step", ("bu\ud83dild", "again")),
    ):
        with pytest.raises(ConfigError, match=f"the request's {field} is not valid text"):
            store.add_request(run_id, "retry", *args, now=102.0)
    assert store.pending_requests(run_id) == []
    assert snapshot_of(store, run_id) == before
