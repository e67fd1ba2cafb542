"""``bench/sandbox_cost.py`` runs (briefly) so that it cannot rot, and its account of a
fan-out's starts adds up: every start of the wide run is seen, the loop's share of them
is no more than their whole, and the first and last starts are measured apart; each
fan-out is set beside the same commands started with no engine. Nothing here is about
speed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench_modules import load_bench
from trestle.execution.sandbox import find_bwrap

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_a_short_run_reports_every_workload_and_how_the_fan_outs_starts_went() -> None:
    found, why = find_bwrap()
    assert found is not None, f"this test needs bubblewrap (make test installs it): {why}"
    argv = [
        sys.executable,
        str(BENCH / "sandbox_cost.py"),
        *("--commands", "3", "--steps", "3", "--width", "6", "--repeat", "1"),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    for label in ("command  :", "its CPU:", "plan step:"):
        assert label in done.stdout, done.stdout
    fans = re.findall(
        r"fan-out 6 x sleep 0\.2, (\w+): makespan / critical path ([\d.]+) .*"
        r"the loop held by starts ([\d.]+) ms, first to last start ([\d.]+) ms",
        done.stdout,
    )
    assert [label for label, *_ in fans] == ["unconfined", "sandboxed"], done.stdout
    for _, ratio, on_loop, spread in fans:
        assert float(ratio) > 0.9 and float(on_loop) >= 0 and float(spread) > 0, done.stdout
    # beside each, the time beyond its critical path and the same commands' beyond one
    # alone with no engine: two figures per fan-out, whatever their sign on a busy machine
    beyond = re.findall(
        r"beyond its critical path (-?\d+) ms; the same commands through run_shell at "
        r"once, no engine: beyond one alone (-?\d+) ms",
        done.stdout,
    )
    assert len(beyond) == 2, done.stdout


def test_the_starts_account_counts_the_loops_share_and_the_spread() -> None:
    starts = load_bench("sandbox_cost")._Starts()
    with starts:
        for _ in range(5):
            subprocess.run(["/bin/true"], check=True)
    assert subprocess.Popen.__init__ is starts._made  # put back
    assert len(starts.spans) == 5
    assert all(loop for _, _, loop in starts.spans)  # made on this (the main) thread
    assert 0 < starts.on_loop() <= starts.spans[-1][1] - starts.spans[0][0]
    assert 0 < starts.spread() <= starts.spans[-2][1] - starts.spans[1][1] + 1e-9
