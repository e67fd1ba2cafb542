"""The CPU a one-step ``trestle run`` costs in a fresh process, start to exit.

Usage::

    python bench/command_cpu.py [--repeat 20] [TREE ...]

Each TREE is a checkout whose ``src`` goes first on ``PYTHONPATH`` (compile it first,
``python -m compileall -q TREE/src``: a tree without bytecode compiles every module
it imports); with none, this Python's own Trestle. The trees are run in turn, a fresh
directory and store each time, ``--repeat`` times; the figure is the CPU (user and
system) of the command and of every process it waited for (its step's sandbox
included), the mean and median per tree. CPU rather than wall time: on a shared
machine it moves less with the load, and it is what a suite of such commands pays.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PLAN = "version: 1\ngoal: one step\nsteps:\n  - id: a\n    run: 'true'\n"


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def run_once(tree: str | None, root: Path) -> float:
    """CPU seconds of one ``trestle run`` of :data:`PLAN` in a new directory."""
    work = Path(tempfile.mkdtemp(dir=root))
    (work / "plan.yaml").write_text(PLAN)
    env = dict(os.environ, XDG_STATE_HOME=str(work / "state"))
    env["XDG_CONFIG_HOME"] = str(work / "config")
    if tree is not None:
        env["PYTHONPATH"] = str(Path(tree, "src"))
    before = _children_cpu()
    done = subprocess.run(
        [sys.executable, "-P", "-m", "trestle", "run", "plan.yaml"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    used = _children_cpu() - before
    if done.returncode != 0:
        raise SystemExit(f"trestle run failed in {work}: {done.stderr[-500:]}")
    return used


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("trees", nargs="*", help="checkouts to compare (default: this one)")
    args = parser.parse_args(argv)
    trees: list[str | None] = list(args.trees) or [None]
    samples: dict[str | None, list[float]] = {tree: [] for tree in trees}
    with tempfile.TemporaryDirectory(prefix="trestle-command-cpu-") as tmp:
        for _ in range(args.repeat):
            for tree in trees:
                samples[tree].append(run_once(tree, Path(tmp)))
    print(f"CPU of a one-step `trestle run`, {args.repeat} runs each (s)")
    for tree, cpu in samples.items():
        name = tree or "this Python's Trestle"
        print(f"  {name:40} mean {statistics.mean(cpu):.3f}  median {statistics.median(cpu):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
