"""The instructions a durable no-op step takes, which the machine's speed and load do not
move: a figure two trees can be compared by on a busy machine.

Usage::

    python bench/step_instructions.py [--trees TREE,TREE] [--rounds 2]

For each tree (a checkout: its ``src`` is put first on ``PYTHONPATH``; default: this
one), a chain of 100 and one of 600 no-op ``python:`` steps are driven by
``LocalEngine.run`` on ``InMemoryStore`` under ``valgrind --tool=cachegrind``; the
difference of their instruction counts over 500 is a step's, the process's start and
imports left out. The trees are alternated, ``--rounds`` times. Prints a table; slow
(a few minutes a chain of 600 under valgrind).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

SHORT, LONG = 100, 600
HERE = Path(__file__).resolve().parent


def chain(steps: int) -> None:
    """Drive one chain of ``steps`` no-op steps (run in the measured process)."""
    from trestle.engines.local import LocalEngine
    from trestle.lifecycle.runs import create_run
    from trestle.store.memory import InMemoryStore
    from workloads import chain_plan

    store = InMemoryStore()
    run_id = create_run(store, chain_plan(steps), workspace=Path(tempfile.mkdtemp()))
    state = asyncio.run(LocalEngine(store).run(run_id))
    assert state.finished == "succeeded", state.finished


def instructions(tree: Path, steps: int) -> int:
    """The instructions the process driving a chain of ``steps`` ran, with ``tree``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree / "src"), str(HERE)])}
    done = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--chain",
            str(steps),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    assert found is not None, done.stderr[-2000:]
    return int(found[1].replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", default=str(HERE.parent), help="checkouts, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--chain", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.chain is not None:
        chain(args.chain)
        return
    trees = [Path(t).resolve() for t in args.trees.split(",")]
    print(f"{'round':>5}  {'tree':<40} {'instructions a step':>20}")
    for round_ in range(1, args.rounds + 1):
        for tree in trees:
            per_step = (instructions(tree, LONG) - instructions(tree, SHORT)) / (LONG - SHORT)
            print(f"{round_:>5}  {tree!s:<40} {per_step:>20,.0f}", flush=True)


if __name__ == "__main__":
    main()
