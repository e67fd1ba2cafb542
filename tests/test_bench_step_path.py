"""``bench/step_path.py`` runs (briefly) so that it cannot rot: it drives real chains on
each of its stores, as a script, it splits their CPU by thread (and counts SQLite's
commits), and its marks reach every part of a step's path, the step's own call in its
thread included. Nothing here is about speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
STORES = ("memory", "sqlite", "sqlite-unsynced", "memory-waiting")


def test_the_step_path_bench_marks_every_part_of_a_step_on_each_store() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "step_path.py"),
            *("--steps", "40", "--repeat", "1"),
            *("--store", ",".join(STORES)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for store in STORES:
        section = done.stdout.split(f"\n{store}: 40 steps")[1].split("\n\n")[0]
        assert "CPU per step (us): [" in section
        assert "CPU per step by thread (us): loop [" in section
        assert ("commits per step (the marked chain): " in section) == store.startswith("sqlite")
        for part in ("advance> -> advance<", "attempt> -> call", "call -> attempt<"):
            assert part in section, (store, part, done.stdout)
        assert "commit> -> commit<" in section
