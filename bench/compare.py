"""Trestle side by side with LangGraph and DBOS: six workloads, one run, one machine.

Usage::

    python bench/compare.py [--quick] [--only steps,turns,storage,resume,crash,concurrency]
                            [--systems trestle,langgraph,dbos] [--repeat N] [--trials N]
                            [--loop N,...] [--sizes N,...] [--histories N,...]
                            [--json PATH] [--dir DIR]

Each workload runs for each system in a fresh ``worker.py`` process (which forks a
child per measurement), one system after another; the step-overhead repetitions
rotate the order so no system always meets the disk first. Figures are medians over
repetitions and ratios to Trestle measured in the same run (see BENCHMARKS.md for
what each workload does and why). Writes every sample and figure as JSON (default:
``bench/results/compare-<time>.json``, git-ignored) and prints one table per workload.

Needs the peers: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import comparetables
import figures
from hostinfo import load_average, machine_info

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"  # git-ignored
SYSTEMS = ("trestle", "langgraph", "dbos")
WORKLOADS = ("steps", "turns", "storage", "resume", "crash", "concurrency")


@dataclass(frozen=True)
class Config:
    steps: int = 1000  # workload 1: sequential no-op steps
    width: int = 32  # workload 1: fan-out width
    sleep: float = 0.2  # workload 1: seconds each fanned-out step sleeps
    repeat: int = 5  # repetitions of workloads 1, 1b and 3 (medians are reported)
    loop: tuple[int, ...] = (50, 500)  # workload 1b: agent turns timed per turn
    sizes: tuple[int, ...] = (100, 500, 1000, 2000)  # workload 2: agent turns
    histories: tuple[int, ...] = (50, 200, 1000, 5000)  # workload 3: turns before the crash
    # LangGraph's checkpoints grow with the square of the turns (1,000 turns of its tool
    # loop write ~5 GB; 5,000 would need ~130 GB), so its workloads 2 and 3 stop here
    langgraph_max_history: int = 1000
    trials: int = 200  # workload 4: seeded crash trials per system
    runs: tuple[int, ...] = (10, 100, 1000)  # workload 5: runs at once
    turns: int = 5  # workload 5: turns per run
    processes: int = 4  # workload 5: processes sharing one store


QUICK = Config(
    steps=30,
    width=4,
    sleep=0.02,
    repeat=1,
    loop=(20,),
    sizes=(5, 20),
    histories=(5, 20),
    langgraph_max_history=20,
    trials=3,
    runs=(3, 8),
    turns=2,
    processes=2,
)

# the test suite's size: every code path, a few of everything
SMOKE = Config(
    steps=20,
    width=3,
    sleep=0.01,
    repeat=1,
    loop=(6,),
    sizes=(4, 12),
    histories=(4, 12),
    langgraph_max_history=12,
    trials=2,
    runs=(4,),
    turns=2,
    processes=2,
)


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def worker(system: str, workload: str, params: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run ``worker.py`` in a new interpreter; its JSON samples."""
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH_DIR / "worker.py"),
            *(system, workload, json.dumps(params), str(work)),
        ],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{system} {workload}: worker exited {proc.returncode}")
    samples: dict[str, Any] = json.loads(lines[-1])
    return samples


def run_steps(cfg: Config, systems: Sequence[str], work: Path) -> dict[str, Any]:
    params = {"n": cfg.steps, "width": cfg.width, "sleep": cfg.sleep}
    order = ["floor", *systems]
    raw: dict[str, list[dict[str, Any]]] = {s: [] for s in order}
    for rep in range(cfg.repeat):
        shift = rep % len(order)
        for system in order[shift:] + order[:shift]:
            say(f"step overhead, repetition {rep + 1}/{cfg.repeat}: {system}")
            raw[system].append(worker(system, "steps", params, work / f"steps-{system}"))
    return {"params": params, "raw": raw}


def run_turns(cfg: Config, systems: Sequence[str], work: Path) -> dict[str, Any]:
    params = {"sizes": list(cfg.loop), "repeat": cfg.repeat}
    raw = {}
    for system in systems:
        say(f"agent loop per turn: {system}, {list(cfg.loop)} turns")
        raw[system] = worker(system, "turns", params, work / f"turns-{system}")
    return {"params": params, "raw": raw}


def run_storage(cfg: Config, systems: Sequence[str], work: Path) -> dict[str, Any]:
    raw = {}
    for system in systems:
        sizes = list(cfg.sizes)
        if system == "langgraph":
            sizes = [n for n in sizes if n <= cfg.langgraph_max_history]
        say(f"storage growth: {system}, {sizes} turns")
        raw[system] = worker(system, "storage", {"sizes": sizes}, work / f"storage-{system}")
    return {"params": {"sizes": list(cfg.sizes)}, "raw": raw}


def run_resume(cfg: Config, systems: Sequence[str], work: Path) -> dict[str, Any]:
    raw = {}
    for system in systems:
        histories = list(cfg.histories)
        if system == "langgraph":
            histories = [h for h in histories if h <= cfg.langgraph_max_history]
        params = {"histories": histories, "repeat": cfg.repeat}
        say(f"resume cost: {system}, histories of {histories} turns")
        raw[system] = worker(system, "resume", params, work / f"resume-{system}")
    return {"params": {"histories": list(cfg.histories), "repeat": cfg.repeat}, "raw": raw}


def run_crash(cfg: Config, systems: Sequence[str], work: Path) -> dict[str, Any]:
    raw = {}
    for system in systems:
        say(f"crash injection: {system}, {cfg.trials} trials")
        raw[system] = worker(system, "crash", {"trials": cfg.trials}, work / f"crash-{system}")
    return {"params": {"trials": cfg.trials}, "raw": raw}


def run_concurrency(cfg: Config, systems: Sequence[str], work: Path) -> dict[str, Any]:
    params = {"runs": list(cfg.runs), "turns": cfg.turns, "processes": cfg.processes}
    raw = {}
    for system in systems:
        say(f"concurrency: {system}, {list(cfg.runs)} runs")
        raw[system] = worker(system, "concurrency", params, work / f"many-{system}")
    return {"params": params, "raw": raw}


RUNNERS: dict[str, Callable[[Config, Sequence[str], Path], dict[str, Any]]] = {
    "steps": run_steps,
    "turns": run_turns,
    "storage": run_storage,
    "resume": run_resume,
    "crash": run_crash,
    "concurrency": run_concurrency,
}


def run_all(
    cfg: Config, workloads: Sequence[str], systems: Sequence[str], work: Path
) -> dict[str, Any]:
    """Every selected workload for every selected system; raw samples and summaries."""
    results: dict[str, Any] = {
        "machine": machine_info(work),
        "config": asdict(cfg),
        "systems": list(systems),
        "versions": versions(),
        "workloads": {},
    }
    started = time.perf_counter()
    for name in workloads:
        t0 = time.perf_counter()
        data = RUNNERS[name](cfg, systems, work)
        data["summary"] = comparetables.SUMMARISERS[name](data, systems)
        data["seconds"] = time.perf_counter() - t0
        results["workloads"][name] = data
    results["machine"]["load_average_after"] = load_average()
    results["seconds"] = time.perf_counter() - started
    return results


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("trestle", "langgraph", "langgraph-checkpoint-sqlite", "dbos"):
        try:
            # Trestle's distribution is named trestle-runtime (pyproject.toml)
            out[package] = version("trestle-runtime" if package == "trestle" else package)
        except PackageNotFoundError:
            out[package] = "not installed"
    return out


def numbers(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in text.split(","))


def parse_args(argv: Sequence[str] | None) -> tuple[Config, argparse.Namespace]:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    p.add_argument("--only", default=",".join(WORKLOADS), help="workloads, comma-separated")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="systems, comma-separated")
    p.add_argument("--repeat", type=int, help="repetitions of workloads 1, 1b and 3")
    p.add_argument("--trials", type=int, help="crash trials per system")
    p.add_argument("--loop", help="workload 1b's numbers of turns, comma-separated")
    p.add_argument("--sizes", help="workload 2's numbers of turns, comma-separated")
    p.add_argument("--histories", help="workload 3's numbers of turns, comma-separated")
    p.add_argument("--json", type=Path, help="where to write results (default under results/)")
    p.add_argument("--dir", type=Path, help="where the stores go (default: a temporary dir)")
    args = p.parse_args(argv)
    cfg = QUICK if args.quick else Config()
    if args.repeat:
        cfg = replace(cfg, repeat=args.repeat)
    if args.trials:
        cfg = replace(cfg, trials=args.trials)
    if args.loop:
        cfg = replace(cfg, loop=numbers(args.loop))
    if args.sizes:
        cfg = replace(cfg, sizes=numbers(args.sizes))
    if args.histories:
        cfg = replace(cfg, histories=numbers(args.histories))
    for name, allowed in (("only", WORKLOADS), ("systems", SYSTEMS)):
        unknown = set(getattr(args, name).split(",")) - set(allowed)
        if unknown:
            p.error(f"--{name}: unknown {sorted(unknown)}; choose from {', '.join(allowed)}")
    if "trestle" not in args.systems.split(","):
        p.error("--systems must include trestle: every ratio is to Trestle")
    return cfg, args


def main(argv: Sequence[str] | None = None) -> int:
    cfg, args = parse_args(argv)
    workloads = [w for w in WORKLOADS if w in args.only.split(",")]
    systems = [s for s in SYSTEMS if s in args.systems.split(",")]
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    work = args.dir or Path(tempfile.mkdtemp(prefix="compare-", dir=RESULTS_DIR))
    try:
        results = run_all(cfg, workloads, systems, work.resolve())
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    out = args.json or RESULTS_DIR / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(comparetables.render(results))
    print(f"\nwrote {out}")
    if not args.quick:
        record_figures(results)
    return 0


def record_figures(results: dict[str, Any], to: Path = figures.RESULTS_DIR) -> None:
    """The published figures (bench/published.json) this run measured, for stale.py;
    a figure is recorded only at the size it was published at."""
    machine, cfg, loads = results["machine"], results["config"], results["workloads"]
    run = figures.new_run()
    record = functools.partial(figures.record, machine=machine, results_dir=to, run=run)
    steps = loads.get("steps")
    if steps and (cfg["steps"], cfg["width"], cfg["sleep"]) == (1000, 32, 0.2):
        raw, trestle = steps["raw"]["trestle"], steps["summary"]["trestle"]
        per_step = [r["steps_s"] / cfg["steps"] * 1e6 for r in raw]
        record("step_us", trestle["us_per_step"], "µs", samples=per_step)
        fans = [r["fan_s"] / r["fan1_s"] for r in raw]
        record("fanout_ratio", trestle["fan_ratio"], "x", samples=fans)
        if "langgraph" in steps["summary"]:
            ratio = 1 / steps["summary"]["langgraph"]["ratio"]
            record("step_vs_langgraph", ratio, "x")
    turns = loads.get("turns", {}).get("summary", {})
    for row in turns.get("trestle", {}).get("rows", []):
        if row["turns"] in (50, 500):
            record(
                f"turn_us_{row['turns']}",
                row["us_per_turn"],
                "µs",
                samples=row["samples_us"],
            )
    for row in turns.get("langgraph", {}).get("rows", []):
        if row["turns"] in (50, 500) and row["ratio"]:
            record(f"turn_vs_langgraph_{row['turns']}", 1 / row["ratio"], "x")
    for row in loads.get("storage", {}).get("summary", {}).get("trestle", {}).get("rows", []):
        if row["turns"] == 1000:
            record("storage_mb_1000", row["bytes"] / 1e6, "MB")
    resume = loads.get("resume", {}).get("summary", {})
    for row in resume.get("trestle", {}).get("rows", []):
        if row["turns"] == 1000:
            samples = [s * 1000 for s in row["samples_s"]]
            record("resume_ms_1000", row["median_s"] * 1000, "ms", samples=samples)
    for row in resume.get("langgraph", {}).get("rows", []):
        if row["turns"] == 1000 and row["ratio"]:
            record("resume_vs_langgraph_1000", 1 / row["ratio"], "x")
    crash = loads.get("crash", {}).get("summary", {}).get("trestle")
    if crash and cfg["trials"] == 200:
        problems = crash["trials_with_duplicate"] + crash["lost_steps"] + crash["unresumable"]
        record("crash_problems", problems, "count")
    many = loads.get("concurrency", {}).get("summary", {}).get("trestle", {}).get("rows", [])
    for row in many:
        if (row["runs"], row["processes"]) == (1000, 1):
            record("concurrency_runs_per_s_1000", row["runs_per_s"], "runs/s")
            record("concurrency_rss_mb_1000", row["max_rss_kb"] / 1024, "MB")


if __name__ == "__main__":
    raise SystemExit(main())
