"""Driver kills at chosen moments, short and seeded: SIGKILL of the driver while a
sandboxed command starts, during a plan ``write:`` step of a large file and while an
MCP server starts under ``trestle agent``, then do exactly what Trestle printed until
the run ends; no effect twice, none lost, no traceback, every file whole and no
``*.trestle-tmp`` left, no server process left. The long version:
``python bench/crash_moments.py --trials 50``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench_modules import load_bench
from test_sandbox import _require_bwrap

TRIALS = int(os.environ.get("TRESTLE_MOMENT_TRIALS", "2"))


@pytest.mark.parametrize("scenario", ["start", "write", "mcp"])
def test_a_driver_killed_at_a_chosen_moment_then_followed_never_duplicates_or_loses(
    scenario: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if scenario in ("start", "mcp"):
        _require_bwrap()
    if scenario == "mcp":
        pytest.importorskip("mcp")
    # an agent run is the longest: one trial, the kill at its first server's start
    trials = 1 if scenario == "mcp" else TRIALS
    # the bench's 400 sandbox.read directories: the store's directory holds them, so
    # each is left out and named before the command (past a few, counted: named all,
    # under pytest's deep tmp_path they passed the kernel's 128 KiB for its text)
    tally = load_bench("crash_moments").run_trials(trials, tmp_path, scenario)
    with capsys.disabled():
        print(f"\n{scenario}: {tally.line()}")
    assert tally.kills >= 1, "no kill landed at the moment"
    assert not tally.problems, "\n".join(tally.problems[:10])
    assert (tally.duplicates, tally.lost, tally.tracebacks) == (0, 0, 0)
