"""The operator crash harness, short and seeded: kill the driver (only) at random, then
do exactly what Trestle printed until the run ends; no effect twice, none lost, no
traceback. The long version: ``python bench/crash_operator.py --trials 200``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench_modules import load_bench

TRIALS = int(os.environ.get("TRESTLE_OPERATOR_TRIALS", "3"))


def test_following_the_report_after_random_driver_kills_never_duplicates_or_loses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tally = load_bench("crash_operator").run_trials(TRIALS, tmp_path, max_kills=2)
    with capsys.disabled():
        print(f"\n{tally.line()}")
    assert tally.kills + tally.signals >= TRIALS // 2, "too few kills landed"
    assert tally.signals >= 1 and tally.kills >= 1
    assert not tally.problems, "\n".join(tally.problems[:10])
    assert (tally.duplicates, tally.lost, tally.tracebacks) == (0, 0, 0)
