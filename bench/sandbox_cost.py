"""What the sandbox costs: the same commands and the same plan, with and without it.

Usage::

    python bench/sandbox_cost.py [--commands 200] [--steps 100] [--repeat 3]

Two workloads, each run unconfined and in bubblewrap, alternating, ``--repeat`` times:

commands
    ``run_shell("true")`` back to back, as a check or a tool call runs it. Figure: the
    median time per command.
plan
    A chain of ``--steps`` ``run: "true"`` steps on a SQLite store, through
    ``LocalEngine.run``. Figure: wall time per step.

Reported as same-run ratios (sandboxed / unconfined) and the added milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from trestle.engines.local import LocalEngine
from trestle.execution.actions import run_shell
from trestle.execution.sandbox import Cell, Mode, choose, find_bwrap
from trestle.formats.planfile import parse_plan
from trestle.lifecycle.runs import create_run
from trestle.store import SqliteStore


async def _commands(count: int, cell: Cell | None, workspace: Path) -> float:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        result = await run_shell("true", cwd=workspace, env={}, timeout=30, cell=cell)
        times.append(time.perf_counter() - started)
        assert result.status == "ok", result
    return statistics.median(times)


def _plan(steps: int, mode: Mode, root: Path) -> float:
    lines = ["steps:"]
    for n in range(steps):
        needs = f", needs: [s{n - 1}]" if n else ""
        lines.append(f"  - {{id: s{n}, run: 'true'{needs}}}")
    plan = parse_plan("\n".join(lines), source="bench")
    workspace = root / f"ws-{mode}-{time.monotonic_ns()}"
    workspace.mkdir()
    store = SqliteStore(root / f"{workspace.name}.db")
    run_id = create_run(store, plan, workspace=workspace)
    engine = LocalEngine(store, sandbox=mode)
    started = time.perf_counter()
    state = asyncio.run(engine.run(run_id))
    elapsed = time.perf_counter() - started
    engine.close()
    store.close()
    assert state.finished == "succeeded", state.finished
    return elapsed / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    found, why = find_bwrap()
    if found is None:
        print(f"no sandbox here ({why}): nothing to compare", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="trestle-sandbox-bench-") as tmp:
        root = Path(tmp)
        workspace = root / "ws"
        workspace.mkdir()
        cell = Cell(choose("auto"), workspace, "bench")
        figures: dict[str, list[float]] = {
            k: [] for k in ("cmd off", "cmd on", "step off", "step on")
        }
        for _ in range(args.repeat):
            figures["cmd off"].append(asyncio.run(_commands(args.commands, None, workspace)))
            figures["cmd on"].append(asyncio.run(_commands(args.commands, cell, workspace)))
            figures["step off"].append(_plan(args.steps, "off", root))
            figures["step on"].append(_plan(args.steps, "auto", root))
    med = {k: statistics.median(v) * 1000 for k, v in figures.items()}
    print(f"sandbox cost ({args.repeat} repetitions, medians; bubblewrap {found})")
    for what, off, on in (("command", "cmd off", "cmd on"), ("plan step", "step off", "step on")):
        print(
            f"  {what:9}: unconfined {med[off]:.2f} ms, sandboxed {med[on]:.2f} ms, "
            f"ratio {med[on] / med[off]:.2f}, +{med[on] - med[off]:.2f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
