"""``bench/wide_plans.py`` runs (briefly) so that it cannot rot: it drives a real fan-out
at each width and folds the run's events again, and refuses a width that is not one.
Nothing here is about speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / "wide_plans.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_wide_plans_bench_runs_and_folds_each_width() -> None:
    done = _bench("--widths", "3,40", "--repeat", "1")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report["widths"]) == {"3", "40"}
    for figures in report["widths"].values():
        assert figures["us_per_step"] > 0 and figures["fold_us_per_event"] > 0
        assert len(figures["samples"]) == 1
    assert report["machine"]["nproc"]


def test_the_wide_plans_bench_refuses_a_width_of_nothing_or_not_a_number() -> None:
    done = _bench("--widths", "0")
    assert done.returncode == 2
    assert "widths and --repeat must be positive" in done.stderr
    done = _bench("--widths", "32,wide")
    assert done.returncode == 2
    assert "--widths: '32,wide' is not a comma-separated list of whole numbers" in done.stderr
