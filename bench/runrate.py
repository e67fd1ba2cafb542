"""Runs per second from several driver processes sharing one store.

Each driver process opens the store (an SQLite file's path or a ``postgresql://``
URL, through :func:`~trestle.store.location.open_store`) and one
:class:`~trestle.engines.local.LocalEngine`, drives one warm-up run, says it is ready,
waits for the common start, then creates and drives short runs one after another (a
chain of ``steps`` no-op ``python:`` steps, as ``sys_trestle`` drives plans) until
``seconds`` have passed since the start. A run begun before the end is finished and
counted. The figure is all processes' succeeded runs over the time from the common
start to the last run's end.

The start is a barrier on two pipes: every process writes a byte once warmed up; the
parent, having read them all, writes the start time (``time.monotonic``, which all
processes share) once for each. So no process's start-up, import or first connection
falls inside the measured time.
"""

from __future__ import annotations

import asyncio
import os
import resource
import select
import statistics
import struct
import time
from functools import partial
from pathlib import Path
from typing import Any

import forking
from trestle.engines.local import LocalEngine
from trestle.lifecycle.runs import create_run
from trestle.store.location import open_store
from workloads import chain_plan, importable_steps

READY_TIMEOUT = 120.0  # for every process to open the store and drive its warm-up run
FAILURES_KEPT = 5
_START = struct.Struct("d")


def _create(where: str) -> None:
    """Create the store (its schema) before the drivers race to open it."""
    open_store(where).close()


def measure(where: str, work: Path, processes: int, seconds: float, steps: int) -> dict[str, Any]:
    """``processes`` drivers on the store ``where`` for ``seconds``; their tallies.

    Call it from a process that has started no threads: every driver is forked.
    """
    forking.run(partial(_create, where))
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    children = []
    try:
        for i in range(processes):
            driver = partial(_driver, where, work / f"p{i}", f"p{i}", seconds, steps, ready_w, go_r)
            children.append(forking.start(driver))
        os.close(ready_w)
        ready_w = -1
        _await_ready(ready_r, processes)
        cpu_before = _cpu_times()
        start = time.monotonic()
        os.write(go_w, _START.pack(start) * processes)
        reports = [child.result(seconds + READY_TIMEOUT) for child in children]
        cpu_after = _cpu_times()
    except BaseException:
        for child in children:
            child.kill()
        raise
    finally:
        for fd in (ready_r, ready_w, go_r, go_w):
            if fd >= 0:
                os.close(fd)
    values = [r["value"] for r in reports]
    latencies = [x for v in values for x in v["latencies"]]
    runs = sum(v["runs"] for v in values)
    elapsed = max(v["ended"] for v in values) - start
    busy = _busy_fraction(cpu_before, cpu_after)
    return {
        "processes": processes,
        "runs": runs,
        "errors": sum(v["errors"] for v in values),
        "failures": [f for v in values for f in v["failures"]][:FAILURES_KEPT],
        "seconds": elapsed,
        "runs_per_s": runs / elapsed if elapsed > 0 else 0.0,
        "runs_per_process": [v["runs"] for v in values],
        "run_ms_median": statistics.median(latencies) * 1e3 if latencies else 0.0,
        "driver_cpu_s": sum(v["cpu_s"] for v in values),
        "machine_cpu_busy": busy,
    }


def _await_ready(fd: int, processes: int) -> None:
    """Read one byte from each driver; fail if they are not all ready in time."""
    deadline = time.monotonic() + READY_TIMEOUT
    seen = 0
    while seen < processes:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(left, 0.0))
        if not ready:
            raise RuntimeError(f"{processes - seen} of {processes} drivers not ready in time")
        chunk = os.read(fd, processes - seen)
        if not chunk:  # every driver has exited: some failed before being ready
            raise RuntimeError(f"{processes - seen} of {processes} drivers ended before ready")
        seen += len(chunk)


def _driver(
    where: str, work: Path, tag: str, seconds: float, steps: int, ready_w: int, go_r: int
) -> dict[str, Any]:
    importable_steps()
    work.mkdir(parents=True, exist_ok=True)
    store = open_store(where)
    engine = LocalEngine(store)
    plan = chain_plan(steps)
    tally: dict[str, Any] = {"runs": 0, "errors": 0, "failures": [], "latencies": []}
    count = 0

    async def one() -> bool:
        nonlocal count
        count += 1
        run_id = create_run(store, plan, workspace=work, run_id=f"{tag}-{count:06d}")
        state = await engine.run(run_id)
        if state.finished != "succeeded":
            raise RuntimeError(f"run {run_id} ended {state.finished}")
        return True

    async def drive() -> None:
        await one()  # warm-up: imports, connections, the step's callable resolved
        os.write(ready_w, b"r")
        (start,) = _START.unpack(_read_exactly(go_r, _START.size))
        cpu = _own_cpu()
        while time.monotonic() < start + seconds:
            began = time.monotonic()
            try:
                await one()
            except Exception as exc:
                tally["errors"] += 1
                if len(tally["failures"]) < FAILURES_KEPT:
                    tally["failures"].append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            tally["runs"] += 1
            tally["latencies"].append(round(time.monotonic() - began, 6))
        tally["ended"] = time.monotonic()
        tally["cpu_s"] = _own_cpu() - cpu

    try:
        asyncio.run(drive())
    finally:
        engine.close()
        store.close()
    return tally


def _read_exactly(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise RuntimeError("the start signal never came")
        data += chunk
    return data


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields) - idle, sum(fields)


def _busy_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0
