"""One workload for one system, in a process of its own: raw samples out as JSON.

(Each lambda below runs at once, in a forked child, within its loop iteration: the
late binding ruff's B023 warns of cannot bite.)

Usage (``compare.py`` calls it; it is not meant to be typed)::

    python bench/worker.py SYSTEM WORKLOAD PARAMS_JSON WORK_DIR

``SYSTEM`` is ``trestle``, ``langgraph``, ``dbos`` (the ``sys_<name>.py`` modules) or
``floor`` (bare SQLite, workload ``steps`` only). The system is imported once, then
every measurement runs in a forked child with a fresh directory under ``WORK_DIR``
(see ``forking.py``), but a resume, which runs in a new interpreter as it does after
a real crash (see :func:`in_new_process`); directories are deleted once measured.
The last line of stdout is one JSON object of samples; progress goes to stderr.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import agentturns
import crashinject
import forking
from workloads import sqlite_floor

CHILD_TIMEOUT = 3600.0
FLOOR_ROW_BYTES = 256


def say(message: str) -> None:
    print(f"[worker] {message}", file=sys.stderr, flush=True)


def fresh(work: Path, name: str) -> Path:
    path = work / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def steps(system: ModuleType | None, p: dict[str, Any], work: Path) -> dict[str, Any]:
    """Workload 1: ``n`` sequential no-op steps; fan-out at ``width`` and at 1."""
    n = int(p["n"])
    if system is None:  # the raw SQLite floor: n one-row commits, no orchestration
        path = fresh(work, "floor") / "floor.db"
        seconds, _ = sqlite_floor(path, n, FLOOR_ROW_BYTES)
        shutil.rmtree(path.parent)
        return {"steps_s": seconds}
    out: dict[str, Any] = {}
    d = fresh(work, "steps")
    report = forking.run(lambda: system.steps(d, n), CHILD_TIMEOUT)
    out["steps_s"] = report["value"]
    for key, width in (("fan_s", int(p["width"])), ("fan1_s", 1)):
        d = fresh(work, f"fan{width}")
        sleep = float(p["sleep"])
        report = forking.run(lambda: system.fanout(d, width, sleep), CHILD_TIMEOUT)  # noqa: B023
        out[key] = report["value"]
    shutil.rmtree(work)
    return out


def turns(system: ModuleType, p: dict[str, Any], work: Path) -> dict[str, Any]:
    """The agent loop's per-turn overhead: microseconds between model calls, per size."""
    out: dict[str, Any] = {"turns": [], "us_per_turn": []}
    for n in p["sizes"]:
        samples = []
        for rep in range(int(p["repeat"])):
            say(f"{system.NAME}: per-turn overhead over {n} turns, repetition {rep + 1}")
            d = fresh(work, f"turns{n}-{rep}")
            report = forking.run(lambda: system.turns(d, n), CHILD_TIMEOUT)  # noqa: B023
            samples.append(report["value"])
            shutil.rmtree(d)
        out["turns"].append(n)
        out["us_per_turn"].append(samples)
    return out


def storage(system: ModuleType, p: dict[str, Any], work: Path) -> dict[str, Any]:
    """Workload 2: bytes on disk after an agent loop of each number of turns."""
    out: dict[str, Any] = {"turns": [], "bytes": [], "seconds": []}
    for turns in p["sizes"]:
        say(f"{system.NAME}: agent loop of {turns} turns")
        d = fresh(work, f"agent{turns}")
        report = forking.run(lambda: system.agent(d, turns), CHILD_TIMEOUT)  # noqa: B023
        out["turns"].append(turns)
        out["bytes"].append(report["value"])
        out["seconds"].append(report["seconds"])
        shutil.rmtree(d)
    return out


def resume(system: ModuleType, p: dict[str, Any], work: Path) -> dict[str, Any]:
    """Workload 3: crash at turn ``h``, then time the resume, ``repeat`` times per ``h``."""
    out: dict[str, Any] = {"turns": [], "seconds": [], "store_bytes": []}
    for turns in p["histories"]:
        say(f"{system.NAME}: history of {turns} turns, then a crash")
        prepared = fresh(work, f"history{turns}")
        child = forking.start(lambda: system.resume_prepare(prepared, turns))  # noqa: B023
        try:
            child.result(CHILD_TIMEOUT)
        except forking.ChildError as exc:
            if "died without a result" not in str(exc):
                raise  # it failed before reaching the crash
        else:
            raise RuntimeError(f"{system.NAME}: the run did not crash at turn {turns}")
        # the recorded run names this directory as its workspace, copies included
        agentturns.disarm_crash(prepared)
        samples = []
        for rep in range(int(p["repeat"])):
            copy = work / f"resume{turns}-{rep}"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(prepared, copy)
            samples.append(in_new_process(system, "resume_once", {"turns": turns}, copy)["value"])
            shutil.rmtree(copy)
        out["turns"].append(turns)
        out["seconds"].append(samples)
        out["store_bytes"].append(sum(f.stat().st_size for f in prepared.iterdir()))
        shutil.rmtree(prepared)
    return out


def resume_once(system: ModuleType, p: dict[str, Any], work: Path) -> dict[str, Any]:
    """One resume of the crashed history in ``work`` (see :func:`in_new_process`)."""
    return {"value": system.resume(work, int(p["turns"]))}


def in_new_process(
    system: ModuleType, workload: str, p: dict[str, Any], work: Path
) -> dict[str, Any]:
    """``workload`` in a new interpreter that imports ``system``, then runs it.

    A resume follows a crash, so it always begins in a new process. A child forked
    from this one would also have the library loaded, but the first write to each page
    of the heap it shares with its parent (every object the resume touches has its
    reference count changed) copies that page: 25 ms of a Trestle resume at 1,000
    turns and 36 ms of LangGraph's, a cost no process started afresh pays
    (BENCHMARKS.md, section 3).
    """
    argv = [sys.executable, __file__, system.NAME, workload, json.dumps(p), str(work)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{system.NAME} {workload} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def crash(system: ModuleType, p: dict[str, Any], work: Path) -> dict[str, Any]:
    """Workload 4: seeded kill-and-resume trials, audited from the ledger."""
    base = fresh(work, "crash")
    tally = crashinject.run_trials(system.crash_drive, int(p["trials"]), base)
    shutil.rmtree(base)
    return dict(vars(tally))


def concurrency(system: ModuleType, p: dict[str, Any], work: Path) -> dict[str, Any]:
    """Workload 5: ``runs`` scripted runs at once, in one process and in ``processes``."""
    turns, procs = int(p["turns"]), int(p["processes"])
    rows = []
    for runs in p["runs"]:
        for mode, count in (("one process", 1), (f"{procs} processes", procs)):
            say(f"{system.NAME}: {runs} runs, {mode}")
            d = fresh(work, f"many{runs}-{count}")
            shares = [runs // count + (i < runs % count) for i in range(count)]
            children = [
                forking.start(_runs_of(system, d, share, turns, f"p{i}"))
                for i, share in enumerate(shares)
                if share
            ]
            ok, errors, rss, failures, spans = 0, 0, [], [], []
            for child, share in zip(children, [s for s in shares if s], strict=True):
                try:
                    report = child.result(CHILD_TIMEOUT)
                except forking.ChildError as exc:
                    errors += share  # the whole process failed: all its runs with it
                    failures.append(str(exc)[:400])
                    continue
                ok += report["value"]["succeeded"]
                errors += report["value"]["errors"]
                spans.append((report["value"]["started"], report["value"]["ended"]))
                rss.append(report["max_rss_kb"])
            # from the first process starting its runs to the last one finishing
            seconds = max((e for _, e in spans), default=0.0) - min(
                (s for s, _ in spans), default=0.0
            )
            rows.append(
                {
                    "runs": runs,
                    "processes": count,
                    "turns": turns,
                    "seconds": seconds,
                    "succeeded": ok,
                    "errors": errors,
                    "max_rss_kb": max(rss, default=0),
                    "total_rss_kb": sum(rss),
                    "failures": failures,
                }
            )
            shutil.rmtree(d)
    return {"rows": rows}


def _runs_of(system: ModuleType, work: Path, runs: int, turns: int, tag: str) -> Callable[[], Any]:
    return lambda: system.many(work, runs, turns, tag)


WORKLOADS: dict[str, Callable[..., dict[str, Any]]] = {
    "steps": steps,
    "turns": turns,
    "storage": storage,
    "resume": resume,
    "resume_once": resume_once,
    "crash": crash,
    "concurrency": concurrency,
}


def main(argv: list[str]) -> int:
    system_name, workload, params, work = argv[1], argv[2], json.loads(argv[3]), Path(argv[4])
    work.mkdir(parents=True, exist_ok=True)
    module = None if system_name == "floor" else importlib.import_module(f"sys_{system_name}")
    started = time.perf_counter()
    samples = WORKLOADS[workload](module, params, work)
    samples["worker_seconds"] = time.perf_counter() - started
    print(json.dumps(samples))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
