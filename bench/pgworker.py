"""One measurement of ``postgres_store.py``, in a process of its own: JSON out.

Usage (``postgres_store.py`` calls it; it is not meant to be typed)::

    python bench/pgworker.py SYSTEM WORKLOAD PARAMS_JSON WORK_DIR

As ``worker.py`` does for ``compare.py``: the system is imported once, then each
measurement runs in a forked child (``forking.py``), so no import falls inside a
timing. ``PARAMS_JSON`` names the stores: ``urls``, databases the caller made on its
server, one per measurement (the SQLite systems keep their file in a fresh directory
under ``WORK_DIR``). The last line of stdout is one JSON object; progress goes to
stderr.
"""

from __future__ import annotations

import importlib
import json
import resource
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import forking
from workloads import sqlite_floor

CHILD_TIMEOUT = 3600.0
FLOOR_ROW_BYTES = 256  # as worker.py's SQLite floor


@dataclass(frozen=True)
class System:
    """A measured system: the module with its workloads, and whether it needs a URL."""

    module: str
    postgres: bool


SYSTEMS = {
    "trestle-postgres": System("sys_trestle_pg", postgres=True),
    "langgraph-postgres": System("sys_langgraph_pg", postgres=True),
    "trestle-sqlite": System("sys_trestle", postgres=False),
    "langgraph-sqlite": System("sys_langgraph", postgres=False),
    "floor-postgres": System("", postgres=True),
    "floor-sqlite": System("", postgres=False),
}


def say(message: str) -> None:
    print(f"[pgworker] {message}", file=sys.stderr, flush=True)


def fresh(work: Path, name: str) -> Path:
    path = work / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _call(name: str, module: ModuleType | None, fn: str, url: str, *args: Any) -> float:
    """``module.fn(url, *args)`` for a PostgreSQL system, ``module.fn(*args)`` else."""
    if module is None:
        raise ValueError(f"{name}: a floor has no {fn!r} workload")
    measured = getattr(module, fn)
    value = measured(url, *args) if SYSTEMS[name].postgres else measured(*args)
    return float(value)


def steps(name: str, module: ModuleType | None, p: dict[str, Any], work: Path) -> dict[str, Any]:
    """``n`` sequential durable no-op steps (or ``n`` bare commits for a floor): seconds,
    and the CPU seconds the measuring process spent (all its threads, set-up included)."""
    n = int(p["n"])
    url = p["urls"][0] if SYSTEMS[name].postgres else ""
    d = fresh(work, "steps")

    def measure() -> float:
        if name == "floor-sqlite":
            return sqlite_floor(d / "floor.db", n, FLOOR_ROW_BYTES)[0]
        if name == "floor-postgres":
            return postgres_floor(url, n, FLOOR_ROW_BYTES)
        return _call(name, module, "steps", url, d, n)

    report = forking.run(lambda: _with_cpu(measure), CHILD_TIMEOUT)
    shutil.rmtree(d)
    return {"seconds": report["value"]["value"], "cpu_s": report["value"]["cpu_s"]}


def _with_cpu(measure: Callable[[], float]) -> dict[str, float]:
    before = _cpu()
    value = measure()
    return {"value": value, "cpu_s": _cpu() - before}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def turns(name: str, module: ModuleType | None, p: dict[str, Any], work: Path) -> dict[str, Any]:
    """The agent loop's per-turn overhead for each size: microseconds."""
    out: dict[str, Any] = {"turns": [], "us_per_turn": []}
    for i, n in enumerate(p["sizes"]):
        say(f"{name}: per-turn overhead over {n} turns")
        url = p["urls"][i] if SYSTEMS[name].postgres else ""
        d = fresh(work, f"turns{n}")
        report = forking.run(
            lambda: _call(name, module, "turns", url, d, n),  # noqa: B023
            CHILD_TIMEOUT,
        )
        out["turns"].append(n)
        out["us_per_turn"].append(report["value"])
        shutil.rmtree(d)
    return out


def rate(name: str, module: ModuleType | None, p: dict[str, Any], work: Path) -> dict[str, Any]:
    """Runs per second from ``processes`` driver processes on one store (Trestle's)."""
    import runrate  # Trestle's engine: only the processes that measure it import it

    d = fresh(work, "rate")
    where = p["urls"][0] if SYSTEMS[name].postgres else str(d / "store.db")
    out = runrate.measure(where, d, int(p["processes"]), float(p["seconds"]), int(p["steps"]))
    shutil.rmtree(d)
    return out


def postgres_floor(url: str, commits: int, row_bytes: int) -> float:
    """Seconds for ``commits`` one-row transactions back to back on the server: the
    PostgreSQL counterpart of ``workloads.sqlite_floor`` (the same table and row)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "CREATE TABLE events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, "
            "data TEXT NOT NULL, PRIMARY KEY (run_id, seq))"
        )
        data = "x" * row_bytes
        started = time.perf_counter()
        for seq in range(1, commits + 1):
            db.execute("INSERT INTO events VALUES ('floor', %s, %s)", (seq, data))
        return time.perf_counter() - started


Workload = Callable[[str, ModuleType | None, dict[str, Any], Path], dict[str, Any]]
WORKLOADS: dict[str, Workload] = {
    "steps": steps,
    "turns": turns,
    "rate": rate,
}


def main(argv: list[str]) -> int:
    name, workload, params, work = argv[1], argv[2], json.loads(argv[3]), Path(argv[4])
    if name not in SYSTEMS:
        raise SystemExit(f"unknown system {name!r}; choose from {', '.join(SYSTEMS)}")
    work.mkdir(parents=True, exist_ok=True)
    system = SYSTEMS[name]
    # imported once, here: every measurement is a forked child that finds it loaded
    module = importlib.import_module(system.module) if system.module else None
    started = time.perf_counter()
    samples = WORKLOADS[workload](name, module, params, work)
    samples["worker_seconds"] = time.perf_counter() - started
    print(json.dumps(samples))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
