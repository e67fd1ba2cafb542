"""What a step costs in a wide plan: root -> ``width`` steps that do nothing -> join.

Usage::

    python bench/wide_plans.py [--widths 100,300,1000] [--repeat 3]

For each width, ``--repeat`` runs of the plan (``python: benchsteps:sleep`` steps
sleeping 0 s in their threads, under the plan's default parallelism of 32, so a wider
plan's steps wait for a slot) on a :class:`~trestle.store.SqliteStore`, each in a
forked child (``forking.py``) driven by ``LocalEngine.run``: its wall time per step.
Then the run's events folded into a state, as a resume with no snapshot to start from
does (``RunState.apply``): the fold's time per event. A plan whose cost grows only
with its size costs about the same per step at every width (the run's fixed costs, a
few tens of milliseconds, weigh less as it widens); a cost that grows with the width
(each start looking at every step waiting, or a join at all its needs) shows as a
per-step figure that climbs with it.

Prints one JSON object: per width, the medians and every sample, with the machine.
It compares trees (``PYTHONPATH=<tree>/src``); nothing is recorded under ``results/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import forking
import sys_trestle
from hostinfo import machine_info
from trestle.core.events import RunCreated
from trestle.core.state import RunState
from trestle.store import SqliteStore
from workloads import fanout_plan, importable_steps, timed_run

TIMEOUT = 1800.0


def one_run(width: int) -> dict[str, float]:
    """In a forked child: the plan run once, then its events folded afresh."""
    importable_steps()
    work = Path(tempfile.mkdtemp(prefix="wide-plans-"))
    try:
        store = SqliteStore(work / sys_trestle.STORE)
        try:
            run_id, seconds = timed_run(store, fanout_plan(width, 0.0, "python-thread"), work)
            events = [item.event for item in store.events(run_id)]
        finally:
            store.close()
    finally:
        shutil.rmtree(work)
    first = events[0]
    if not isinstance(first, RunCreated):
        raise RuntimeError(f"width {width}: the run begins with {first.kind!r}")
    state = RunState.from_created(first)
    started = time.perf_counter()
    for event in events[1:]:
        state.apply(event)
    folded = time.perf_counter() - started
    if state.finished != "succeeded":
        raise RuntimeError(f"width {width}: the fold ends {state.finished}")
    steps = width + 2
    return {
        "us_per_step": seconds / steps * 1e6,
        "fold_us_per_event": folded / (len(events) - 1) * 1e6,
    }


def measure(widths: list[int], repeat: int) -> dict[str, Any]:
    samples: dict[int, list[dict[str, float]]] = {w: [] for w in widths}
    for _ in range(repeat):  # widths interleaved, so the machine's load meets them alike
        for width in widths:
            samples[width].append(forking.run(lambda: one_run(width), TIMEOUT)["value"])  # noqa: B023
    out: dict[str, Any] = {}
    for width, runs in samples.items():
        out[str(width)] = {
            key: round(statistics.median(r[key] for r in runs), 1) for key in runs[0]
        } | {"samples": runs}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--widths", default="100,300,1000", help="comma-separated widths")
    p.add_argument("--repeat", type=int, default=3, help="runs per width (medians reported)")
    args = p.parse_args(argv)
    try:
        widths = [int(w) for w in args.widths.split(",")]
    except ValueError:
        p.error(f"--widths: {args.widths!r} is not a comma-separated list of whole numbers")
    if min(widths) < 1 or args.repeat < 1:
        p.error("widths and --repeat must be positive")
    report = {
        "machine": machine_info(Path(tempfile.gettempdir())),
        "python": sys.version.split()[0],
    }
    report["widths"] = measure(widths, args.repeat)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
