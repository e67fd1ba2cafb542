"""Where a durable no-op step's time goes inside the engine, and its CPU per step.

Usage::

    python bench/step_path.py [--steps 1000] [--repeat 3] [--store memory,sqlite]

The stores: ``memory`` (``InMemoryStore``), ``sqlite`` (the default store),
``sqlite-unsynced`` (its commits not waiting for the disk: what the fsync a step's
durability needs costs it) and ``memory-waiting`` (in memory, each commit a 3 ms sleep:
what waiting alone does to the CPU the same code takes on a busy machine).

For each store, ``--repeat`` chains of ``--steps`` no-op ``python:`` steps (a warm-up
chain first), driven by ``LocalEngine.run`` with its defaults: the wall time and the
process's CPU time per step (CPU counts the store's and the step's threads too, and
is what a busy machine disturbs least), that CPU split by thread (the event loop's,
the store thread's, the rest: the steps' threads). Then one more chain with a mark at
each point of a step's path, and the median time between consecutive marks, and on
SQLite its commits per step (SQLite's own count, seen by a trace callback):

- ``advance``: take the outcome in, decide the next start (``_advance``);
- ``store`` / ``commit``: the crossing to the store thread and back, and the commit
  on it (``_store``, ``_commit``);
- ``wait``: the loop's wait for the attempt (``_wait``);
- ``attempt``: the attempt's task, and ``call``, the step's callable in its thread.

The marks wrap the engine's private methods, so they cost a little themselves; they
compare trees (``PYTHONPATH=<tree>/src``), not systems. Prints a table; nothing is
recorded under ``results/`` (the published step figures are ``compare.py``'s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib
import itertools
import sqlite3
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hostinfo import load_average, machine_info
from trestle.core.plan import Plan, Step
from trestle.engines.local import LocalEngine
from trestle.lifecycle.runs import create_run
from trestle.store import InMemoryStore, SqliteStore, Store
from trestle.store.base import Appended
from workloads import ORCHESTRATION_ONLY, chain_plan, importable_steps

Marks = list[tuple[str, float]]
# the marks, in this module as the engine imports it (``step_path``, which is not
# ``__main__`` when this file is run): the marked step appends to them from its thread
MARKS: Marks = []


def marked_call(ctx: object) -> None:
    """The chain's step when its path is marked: a no-op that marks its call."""
    MARKS.append(("call", time.perf_counter()))


def _marks() -> Marks:
    marks: Marks = importlib.import_module("step_path").MARKS
    return marks


@dataclass(frozen=True)
class Drive:
    """One chain driven: seconds of wall and CPU, the CPU split by thread, commits."""

    wall: float
    cpu: float
    loop: float  # the event loop's thread (this one)
    store: float  # the engine's store thread
    commits: int  # SQLite's, in a marked drive (0 in others and in memory)

    @property
    def others(self) -> float:
        """The steps' threads, and any other."""
        return self.cpu - self.loop - self.store


class UnsyncedSqliteStore(SqliteStore):
    """A SQLite store whose commits do not wait for the disk (``synchronous=NORMAL``,
    as the store's lease writes are): what a step pays for its commit's fsync, the
    durability a step's start needs before its action runs. Measurement only."""

    @contextlib.contextmanager
    def _tx(
        self, doing: str, *, then: str = "try again", synced: bool = True
    ) -> Iterator[sqlite3.Connection]:
        with super()._tx(doing, then=then, synced=False) as db:
            yield db


class WaitingMemoryStore(InMemoryStore):
    """An in-memory store whose appends take as long as a synced commit on a busy
    disk, sleeping, with no SQLite and no disk: what the threads' waits alone do to the
    CPU a step's code takes (its caches go cold while another process runs)."""

    WAIT = 0.003

    def append(self, run_id: str, batch: Appended, *, token: int) -> None:
        super().append(run_id, batch, token=token)
        time.sleep(self.WAIT)


STORES: dict[str, Callable[[Path], Store]] = {
    "memory": lambda work: InMemoryStore(),
    "sqlite": lambda work: SqliteStore(work / "store.db"),
    "sqlite-unsynced": lambda work: UnsyncedSqliteStore(work / "store.db"),
    "memory-waiting": lambda work: WaitingMemoryStore(),
}


def _store(kind: str, work: Path) -> Store:
    return STORES[kind](work)


def _thread_cpu(thread: threading.Thread | None) -> float:
    """CPU seconds ``thread`` has used so far (0 for none)."""
    if thread is None or thread.ident is None:
        return 0.0
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def _counted(store: Store) -> list[int]:
    """A cell SQLite's commits on ``store`` are counted in from now on (none counted on
    a store in memory). The count comes from a trace callback on every statement,
    which costs CPU of its own: only the marked chain is counted."""
    cell = [0]
    db = getattr(store, "_db", None)
    if isinstance(db, sqlite3.Connection):

        def seen(statement: str) -> None:
            if statement.lstrip().upper().startswith("COMMIT"):
                cell[0] += 1

        db.set_trace_callback(seen)
    return cell


def _drive(store: Store, plan: Plan, work: Path, marks: Marks | None = None) -> Drive:
    run_id = create_run(store, plan, workspace=work)
    commits = _counted(store) if marks is not None else [0]
    engine = LocalEngine(store)
    if marks is not None:
        _mark(engine, marks)
    try:
        wall, cpu, loop = time.perf_counter(), time.process_time(), time.thread_time()
        state = asyncio.run(engine.run(run_id))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        loop = time.thread_time() - loop
        # started by the drive's first call, alive until the engine is closed
        store_cpu = _thread_cpu(engine._io._thread)
    finally:
        engine.close()
    if state.finished != "succeeded":
        raise SystemExit(f"the chain ended {state.finished}")
    return Drive(wall, cpu, loop, store_cpu, commits[0])


def _mark(engine: LocalEngine, marks: Marks) -> None:
    """Wrap the engine's parts of a step's path with marks on ``marks``."""

    def sync(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def marked(*args: Any, **kwargs: Any) -> Any:
            marks.append((f"{name}>", time.perf_counter()))
            try:
                return fn(*args, **kwargs)
            finally:
                marks.append((f"{name}<", time.perf_counter()))

        return marked

    def asynchronous(name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def marked(*args: Any, **kwargs: Any) -> Any:
            marks.append((f"{name}>", time.perf_counter()))
            try:
                return await fn(*args, **kwargs)
            finally:
                marks.append((f"{name}<", time.perf_counter()))

        return marked

    for name in ("advance", "commit"):
        setattr(engine, f"_{name}", sync(name, getattr(engine, f"_{name}")))
    for name in ("store", "attempt", "wait"):
        setattr(engine, f"_{name}", asynchronous(name, getattr(engine, f"_{name}")))


def marked_plan(steps: int) -> Plan:
    ids = [f"s{i:05d}" for i in range(steps)]
    return Plan(
        goal=f"benchmark: {steps} marked no-op steps",
        checkpoints=ORCHESTRATION_ONLY,
        steps=tuple(
            Step(id=sid, python="step_path:marked_call", needs=(ids[i - 1],) if i else ())
            for i, sid in enumerate(ids)
        ),
    )


def segments(marks: Marks, steps: int) -> list[tuple[str, float]]:
    """The median seconds between consecutive marks, for each pair seen in at least
    half the steps, longest first."""
    gaps: defaultdict[str, list[float]] = defaultdict(list)
    for (a, at), (b, bt) in itertools.pairwise(marks):
        gaps[f"{a} -> {b}"].append(bt - at)
    kept = [(pair, statistics.median(v)) for pair, v in gaps.items() if len(v) >= steps // 2]
    return sorted(kept, key=lambda item: -item[1])


def per_step(runs: list[Drive], steps: int, field: str) -> list[int]:
    """``field`` of each drive in microseconds a step, sorted."""
    return sorted(round(getattr(d, field) / steps * 1e6) for d in runs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--store",
        default="memory,sqlite",
        help=f"a comma-separated list of {', '.join(STORES)}",
    )
    args = parser.parse_args(argv)
    importable_steps()
    marks = _marks()
    commit = machine_info(Path(tempfile.gettempdir()))["trestle_commit"]
    print(f"trestle commit {commit}; load average {load_average()} before")
    for kind in args.store.split(","):
        with tempfile.TemporaryDirectory(prefix="step-path-") as tmp:
            work = Path(tmp)

            def chain(n: int, k: str = kind, under: Path = work) -> Drive:
                with tempfile.TemporaryDirectory(dir=under) as one:
                    return _drive(_store(k, Path(one)), chain_plan(n), Path(one))

            chain(min(args.steps, 200))  # warm-up: imports, the callable's lookup
            runs = [chain(args.steps) for _ in range(args.repeat)]
            n = args.steps
            print(f"\n{kind}: {n} steps, {args.repeat} chains")
            walls, cpus = per_step(runs, n, "wall"), per_step(runs, n, "cpu")
            print(f"  wall per step (us): {walls}   CPU per step (us): {cpus}")
            print(
                f"  CPU per step by thread (us): loop {per_step(runs, n, 'loop')}, "
                f"store {per_step(runs, n, 'store')}, "
                f"steps' and others {per_step(runs, n, 'others')}"
            )
            marks.clear()
            with tempfile.TemporaryDirectory(dir=work) as one:
                store = _store(kind, Path(one))
                marked = _drive(store, marked_plan(args.steps), Path(one), marks)
            if isinstance(store, SqliteStore):
                print(f"  commits per step (the marked chain): {marked.commits / n:.3f}")
            found = segments(marks, args.steps)
            total = sum(median for _, median in found)
            print(f"  a step's path, median between marks (us; sum {total * 1e6:.0f}):")
            for pair, median in found:
                print(f"    {pair:<24} {median * 1e6:7.1f}")
    print(f"\nload average {load_average()} after")


if __name__ == "__main__":
    main()
