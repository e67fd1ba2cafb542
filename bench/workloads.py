"""The workloads the overhead benchmark times, and the store that counts commits.

Everything here measures; nothing summarises or prints (that is ``overhead.py``).
Step callables live in ``benchsteps.py`` and are resolved by module name, so
:func:`importable_steps` puts ``bench/`` on ``sys.path`` first.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from trestle.core.events import RunCreated
from trestle.core.plan import Plan, Step
from trestle.core.state import RunState
from trestle.engines.local import LocalEngine
from trestle.lifecycle.runs import create_run
from trestle.store import InMemoryStore, SqliteStore, Store
from trestle.store.base import Appended, Lease, Owner, Refusal, RequestKind

BENCH_DIR = Path(__file__).resolve().parent

Variant = Literal["command", "python-thread", "python-async"]
VARIANTS: tuple[Variant, ...] = ("command", "python-thread", "python-async")


class BenchError(RuntimeError):
    """A workload did not run as it must for its figures to mean anything."""


# --- counting what Trestle commits ------------------------------------------------------


class CountingSqliteStore(SqliteStore):
    """A :class:`SqliteStore` that counts its transactions, batches and events.

    ``commits`` comes from SQLite itself (a trace callback sees every ``COMMIT`` the
    connection executes), so it also covers writes made by methods not wrapped here;
    ``calls`` attributes them to store methods. (A ``COMMIT`` retried because the file
    was busy would count twice; nothing else writes to these files.) Counting starts
    after the schema migration that opening a new store performs.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self.commits = 0
        self.calls: Counter[str] = Counter()
        self.events_appended = 0
        self.append_latencies: list[float] = []
        db = getattr(self, "_db", None)
        self.traced = isinstance(db, sqlite3.Connection)
        if isinstance(db, sqlite3.Connection):
            db.set_trace_callback(self._trace)

    def reset(self) -> None:
        """Start counting afresh (after ``create_run``, before the timed region)."""
        self.commits = 0
        self.calls.clear()
        self.events_appended = 0
        self.append_latencies.clear()

    def _trace(self, statement: str) -> None:
        if statement.lstrip().upper().startswith("COMMIT"):
            self.commits += 1

    def transactions(self) -> int:
        """Committed transactions: SQLite's count, or the write calls if untraceable."""
        if self.traced:
            return self.commits
        writes = (
            "create_run",
            "append",
            "acquire_lease",
            "renew_lease",
            "release_lease",
            "add_request",
        )
        return sum(self.calls[name] for name in writes)

    def create_run(self, event: RunCreated, *, summary: str) -> None:
        super().create_run(event, summary=summary)
        self.calls["create_run"] += 1

    def append(self, run_id: str, batch: Appended, *, token: int) -> None:
        started = time.perf_counter()
        super().append(run_id, batch, token=token)
        self.append_latencies.append(time.perf_counter() - started)
        self.calls["append"] += 1
        self.events_appended += len(batch.events)

    def acquire_lease(self, run_id: str, owner: Owner, *, ttl: float, now: float) -> Lease:
        lease = super().acquire_lease(run_id, owner, ttl=ttl, now=now)
        self.calls["acquire_lease"] += 1
        return lease

    def renew_lease(self, run_id: str, token: int, *, ttl: float, now: float) -> None:
        super().renew_lease(run_id, token, ttl=ttl, now=now)
        self.calls["renew_lease"] += 1

    def release_lease(self, run_id: str, token: int) -> None:
        super().release_lease(run_id, token)
        self.calls["release_lease"] += 1

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
        request_id = super().add_request(
            run_id, kind, step, reason, now=now, payload=payload, unless=unless
        )
        self.calls["add_request"] += 1
        return request_id


# --- plans ---------------------------------------------------------------------------


# these plans measure orchestration against the disk's floor and the peers, none of which
# snapshot a workspace: the snapshots every step takes by default are measured on their
# own by checkpoint_cost.py
ORCHESTRATION_ONLY = "off"


def chain_plan(steps: int) -> Plan:
    """``steps`` no-op Python steps, each needing the one before."""
    ids = [f"s{i:05d}" for i in range(steps)]
    return Plan(
        goal=f"benchmark: {steps} sequential no-op steps",
        checkpoints=ORCHESTRATION_ONLY,
        steps=tuple(
            Step(id=sid, python="benchsteps:noop", needs=(ids[i - 1],) if i else ())
            for i, sid in enumerate(ids)
        ),
    )


def fanout_plan(width: int, sleep: float, variant: Variant) -> Plan:
    """root -> ``width`` steps sleeping ``sleep`` s -> join, with default parallelism."""
    sleepers = [f"w{i:03d}-{sleep:g}s" for i in range(width)]

    def step(sid: str, needs: tuple[str, ...], sleeps: bool) -> Step:
        if variant == "command":
            return Step(id=sid, run=f"sleep {sleep:g}" if sleeps else "true", needs=needs)
        fn = {"python-thread": "sleep", "python-async": "async_sleep"}[variant]
        return Step(id=sid, python=f"benchsteps:{fn if sleeps else 'noop'}", needs=needs)

    return Plan(
        goal=f"benchmark: fan-out of {width} x {sleep:g} s ({variant})",
        checkpoints=ORCHESTRATION_ONLY,
        steps=(
            step("root", (), False),
            *(step(sid, ("root",), True) for sid in sleepers),
            step("join", tuple(sleepers), False),
        ),
    )


# --- running ---------------------------------------------------------------------------


def importable_steps() -> None:
    """Put ``bench/`` on the import path so the engine can resolve ``benchsteps:*``."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))


async def _timed(engine: LocalEngine, run_id: str) -> tuple[float, RunState]:
    started = time.perf_counter()
    state = await engine.run(run_id)
    return time.perf_counter() - started, state


def timed_run(
    store: Store, plan: Plan, workspace: Path, created: Callable[[], None] | None = None
) -> tuple[str, float]:
    """Create a run, call ``created``, drive it with the engine's defaults.

    Returns the run id and the wall seconds of ``LocalEngine.run`` (lease, every step,
    release, and the final state load: all that a caller of ``run()`` waits for).
    """
    run_id = create_run(store, plan, workspace=workspace)
    if created is not None:
        created()
    engine = LocalEngine(store)
    try:
        seconds, state = asyncio.run(_timed(engine, run_id))
    finally:
        engine.close()
    if state.finished != "succeeded":
        bad = {
            sid: st.reason or st.error
            for sid, st in state.steps.items()
            if st.status != "succeeded"
        }
        raise BenchError(f"{plan.goal}: run ended {state.finished}: {bad}")
    return run_id, seconds


def step_intervals(store: Store, run_id: str) -> list[float]:
    """Seconds between consecutive outcomes in a chain: one step's whole cost each."""
    ended = [e.event.at for e in store.events(run_id) if e.event.kind == "step_attempt_ended"]
    return [b - a for a, b in itertools.pairwise(ended)]


@dataclass
class ChainSample:
    seconds: float
    intervals: list[float]
    transactions: int = 0  # committed inside the timed region
    appends: int = 0
    events: int = 0
    append_latencies: list[float] = field(default_factory=list)
    bytes_per_append: int = 0
    calls: dict[str, int] = field(default_factory=dict)


def chain_on_sqlite(db_path: Path, workspace: Path, steps: int) -> ChainSample:
    """The sequential workload on a counting SqliteStore."""
    store = CountingSqliteStore(db_path)
    try:
        run_id, seconds = timed_run(store, chain_plan(steps), workspace, store.reset)
        sample = ChainSample(
            seconds=seconds,
            intervals=step_intervals(store, run_id),
            transactions=store.transactions(),
            appends=store.calls["append"],
            events=store.events_appended,
            append_latencies=list(store.append_latencies),
            calls=dict(store.calls),
        )
    finally:
        store.close()
    with sqlite3.connect(db_path) as db:
        (event_bytes,) = db.execute(
            "SELECT coalesce(sum(length(data)), 0) FROM events WHERE seq > 1"
        ).fetchone()
    sample.bytes_per_append = round(event_bytes / max(sample.appends, 1))
    return sample


def chain_in_memory(workspace: Path, steps: int) -> ChainSample:
    """The sequential workload with no disk: what orchestration alone costs."""
    store = InMemoryStore()
    run_id, seconds = timed_run(store, chain_plan(steps), workspace)
    return ChainSample(seconds=seconds, intervals=step_intervals(store, run_id))


class FloorDb:
    """A bare SQLite file with the store's settings, taking one-row transactions."""

    def __init__(self, path: Path, row_bytes: int) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, "
            "data TEXT NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID"
        )
        self.data = "x" * row_bytes
        self.seq = 0

    def commit(self) -> float:
        """Commit one row in its own transaction (as the store does); its latency."""
        self.seq += 1
        begun = time.perf_counter()
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("INSERT INTO events VALUES ('floor', ?, ?)", (self.seq, self.data))
        self.db.execute("COMMIT")
        return time.perf_counter() - begun

    def close(self) -> None:
        self.db.close()


def sqlite_floor(db_path: Path, commits: int, row_bytes: int) -> tuple[float, list[float]]:
    """Commit ``commits`` one-row transactions back to back, no orchestration.

    Returns the wall seconds and each commit's latency.
    """
    floor = FloorDb(db_path, row_bytes)
    try:
        started = time.perf_counter()
        latencies = [floor.commit() for _ in range(commits)]
        return time.perf_counter() - started, latencies
    finally:
        floor.close()


class PairedFloorStore(CountingSqliteStore):
    """Diagnostic: before each append, the same thread commits one floor row elsewhere.

    Both commits then meet the same moment of disk and CPU weather, which tells how
    much of an append's time is the commit itself and how much is Trestle's extra.
    The extra commit slows the run, so its timings are not used for the headline.
    """

    def __init__(self, path: Path, floor_path: Path, row_bytes: int) -> None:
        super().__init__(path)
        self.floor = FloorDb(floor_path, row_bytes)
        self.floor_latencies: list[float] = []

    def append(self, run_id: str, batch: Appended, *, token: int) -> None:
        self.floor_latencies.append(self.floor.commit())
        super().append(run_id, batch, token=token)

    def close(self) -> None:
        self.floor.close()
        super().close()


def chain_paired(
    db_path: Path, floor_path: Path, row_bytes: int, workspace: Path, steps: int
) -> tuple[list[float], list[float]]:
    """The sequential workload with a paired floor commit: (floor, append) latencies."""
    store = PairedFloorStore(db_path, floor_path, row_bytes)
    try:
        timed_run(store, chain_plan(steps), workspace, store.reset)
        return list(store.floor_latencies), list(store.append_latencies)
    finally:
        store.close()


def raw_fanout(variant: Variant, width: int, sleep: float, workspace: Path) -> float:
    """The fan-out's sleeps with no Trestle at all: what this machine allows."""

    async def command() -> None:
        proc = await asyncio.create_subprocess_shell(
            f"sleep {sleep:g}",
            cwd=workspace,
            env=dict(os.environ),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        await proc.communicate()

    async def main() -> float:
        started = time.perf_counter()
        if variant == "command":
            await asyncio.gather(*(command() for _ in range(width)))
        elif variant == "python-async":
            await asyncio.gather(*(asyncio.sleep(sleep) for _ in range(width)))
        else:
            with ThreadPoolExecutor(max_workers=width) as pool:
                list(pool.map(time.sleep, [sleep] * width))
        return time.perf_counter() - started

    return asyncio.run(main())
