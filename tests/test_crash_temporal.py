"""The operator crash harness on Temporal, short and seeded: SIGKILL the worker (not the
driver) at random and start another, then do exactly what Trestle printed until the run
ends; no effect twice, none lost, no traceback. The long version: ``python
bench/crash_temporal.py --trials 20``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench_modules import load_bench

pytestmark = pytest.mark.slow

TRIALS = int(os.environ.get("TRESTLE_TEMPORAL_CRASH_TRIALS", "1"))


def test_following_the_report_after_random_worker_kills_never_duplicates_or_loses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tally = load_bench("crash_temporal").run_trials(TRIALS, tmp_path)
    with capsys.disabled():
        print(f"\n{tally.line()}")
    assert tally.kills >= 1, "no kill landed"
    assert not tally.problems, "\n".join(tally.problems[:10])
    assert (tally.duplicates, tally.lost, tally.tracebacks) == (0, 0, 0)
