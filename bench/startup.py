"""How long a ``trestle`` command takes to start: what every command, ``--help``
included, pays before it does anything.

Usage::

    python bench/startup.py [--repeat 15] [--runs 200]

Each command is run as a user runs it (the ``trestle`` script beside this Python),
in a fresh process, the commands interleaved, ``--repeat`` times; the figure is the
median wall time. The floor is this Python starting and exiting (``python -c pass``);
``import typer`` is the command-line framework's own share. ``runs`` and ``show``
read a store holding ``--runs`` finished one-step runs.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import figures
from hostinfo import machine_info
from trestle.engines.local import LocalEngine
from trestle.formats.planfile import parse_plan
from trestle.lifecycle.runs import create_run
from trestle.store import SqliteStore


def _trestle() -> list[str]:
    script = Path(sys.executable).with_name("trestle")
    return [str(script)] if script.exists() else [sys.executable, "-m", "trestle"]


def _store(root: Path, runs: int) -> tuple[Path, str]:
    """A store with ``runs`` finished runs; the id of the last."""
    path = root / "trestle.db"
    store = SqliteStore(path)
    plan = parse_plan("goal: one step\nsteps:\n  - {id: one, write: {path: f, content: x}}\n")
    run_id = ""
    for _ in range(runs):
        run_id = create_run(store, plan, workspace=root)
        engine = LocalEngine(store, sandbox="off")
        asyncio.run(engine.run(run_id))
        engine.close()
    store.close()
    return path, run_id


def _seconds(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode()[-500:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args(argv)
    trestle = _trestle()
    machine = machine_info(Path(tempfile.gettempdir()))  # the load before, too
    with tempfile.TemporaryDirectory(prefix="trestle-startup-") as tmp:
        root = Path(tmp)
        store, run_id = _store(root, args.runs)
        commands = {
            "python -c pass (the floor)": [sys.executable, "-c", "pass"],
            "python -c 'import typer'": [sys.executable, "-c", "import typer"],
            "trestle --version": [*trestle, "--version"],
            "trestle --help": [*trestle, "--help"],
            f"trestle runs ({args.runs} runs)": [*trestle, "runs", "--store", str(store)],
            "trestle show RUN": [*trestle, "show", run_id, "--store", str(store)],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, command in commands.items():
                times[name].append(_seconds(command, root))
    floor = statistics.median(times["python -c pass (the floor)"])
    print(f"start-up, median of {args.repeat} (ms; ratio to the floor)")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"  {name:32} {median * 1000:7.1f} ms  {median / floor:5.1f}x")
    if args.runs == 200:  # the size bench/published.json's figures were measured at
        record_figures(times, machine)
    return 0


def record_figures(
    times: dict[str, list[float]], machine: dict[str, str], to: Path = figures.RESULTS_DIR
) -> None:
    """The published figures (bench/published.json) of a run at 200 runs, for stale.py:
    each command's median, and beside it the same run's ratio to the bare interpreter,
    which the machine's pace does not move."""
    record = functools.partial(
        figures.record, machine=machine, results_dir=to, run=figures.new_run()
    )
    floor = statistics.median(times["python -c pass (the floor)"])
    for figure, name in (
        ("startup_help", "trestle --help"),
        ("startup_runs", "trestle runs (200 runs)"),
    ):
        ms = [t * 1000 for t in times[name]]
        median = statistics.median(ms)
        record(f"{figure}_ms", median, "ms", samples=ms)
        record(f"{figure}_vs_python", median / (floor * 1000), "x")


if __name__ == "__main__":
    sys.exit(main())
