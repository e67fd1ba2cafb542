"""The comparison harness (Trestle, LangGraph, DBOS) runs in the suite so that it cannot rot.

Nothing here is about speed. The smoke run must produce every workload's figures for
every system (the agent workloads drive a real agent run in each); Trestle must lose
no step, repeat no effect and resume every crashed run; and the crash audit must
catch a duplicated or a missing effect when one is planted, so that its zeros mean
something.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench_modules import load_bench


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    results: dict[str, Any] = load_bench("smoke").run_compare_smoke(tmp_path_factory.mktemp("cmp"))
    return results


SYSTEMS = ("trestle", "langgraph", "dbos")


def test_every_workload_has_figures_for_every_system(smoke: dict[str, Any]) -> None:
    workloads = smoke["workloads"]
    assert set(workloads) == {"steps", "turns", "storage", "resume", "crash", "concurrency"}
    for name, data in workloads.items():
        assert set(SYSTEMS) <= set(data["summary"]), name
    steps = workloads["steps"]["summary"]
    assert all(row["us_per_step"] > 0 for row in steps.values())
    assert steps["trestle"]["ratio"] == 1.0
    assert all(steps[s]["makespan_s"] > 0 for s in SYSTEMS)
    for system in SYSTEMS:
        stored = [r["bytes"] for r in workloads["storage"]["summary"][system]["rows"]]
        assert stored == sorted(stored) and stored[0] < stored[-1], (system, stored)
        looped = workloads["turns"]["summary"][system]["rows"]
        assert [r["turns"] for r in looped] == [6], (system, looped)  # the real agent loop
        assert all(r["us_per_turn"] > 0 for r in looped)
        resumed = workloads["resume"]["summary"][system]["rows"]
        assert [r["turns"] for r in resumed] == [4, 12]
        assert all(r["median_s"] > 0 for r in resumed)
    rendered = load_bench("comparetables").render(smoke)
    assert all(system in rendered for system in SYSTEMS)


def test_trestle_survives_every_crash_without_loss_or_duplicate(smoke: dict[str, Any]) -> None:
    crash = smoke["workloads"]["crash"]["summary"]
    for system in SYSTEMS:
        assert crash[system]["trials"] == 2
    trestle = crash["trestle"]
    assert trestle["kills"] >= 1, "no kill landed: the smoke tested nothing"
    assert (trestle["duplicated_steps"], trestle["lost_steps"], trestle["unresumable"]) == (
        0,
        0,
        0,
    ), trestle["problems"]


def test_concurrent_runs_are_all_accounted_for(smoke: dict[str, Any]) -> None:
    for system in SYSTEMS:
        for row in smoke["workloads"]["concurrency"]["summary"][system]["rows"]:
            assert row["succeeded"] + row["errors"] == row["runs"], (system, row)
            assert row["max_rss_kb"] > 0
    for row in smoke["workloads"]["concurrency"]["summary"]["trestle"]["rows"]:
        assert row["errors"] == 0, row


def test_crash_audit_catches_a_duplicated_and_a_lost_effect(tmp_path: Path) -> None:
    crashflow, crashinject = load_bench("crashflow"), load_bench("crashinject")

    def twice_and_skipping(work: Path) -> None:
        for step in crashflow.STEPS:
            if step != "announce":  # never takes effect: lost
                crashflow.act(work, step)
        crashflow.act(work, "release")  # the irreversible step, again

    tally = crashinject.run_trials(twice_and_skipping, 2, tmp_path)
    assert tally.trials == 2
    assert tally.trials_with_duplicate == 2
    assert tally.irreversible_duplicated == 2
    assert tally.lost_steps == 2
    assert tally.unresumable == 0


def test_crash_audit_counts_a_driver_that_cannot_resume(tmp_path: Path) -> None:
    crashinject = load_bench("crashinject")

    def broken(work: Path) -> None:
        raise RuntimeError("no way to recover")

    tally = crashinject.run_trials(broken, 1, tmp_path)
    assert tally.unresumable == 1
    assert "no way to recover" in tally.problems[0]


def test_growth_exponent_tells_linear_from_quadratic() -> None:
    exponent = load_bench("comparetables").growth_exponent
    assert exponent([100, 200, 400], [5e5, 1e6, 2e6]) == pytest.approx(1.0)
    assert exponent([100, 200, 400], [1e4, 4e4, 16e4]) == pytest.approx(2.0)
