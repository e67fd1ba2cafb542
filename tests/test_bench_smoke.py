"""The benchmark harness runs in the test suite (briefly) so that it cannot rot.

Nothing here is about speed: the figures must exist and be positive, and Trestle
must commit about one transaction per sequential step (a count, not a time).
"""

from __future__ import annotations

from bench_modules import load_bench


def test_quick_benchmark_reports_positive_figures_and_one_commit_per_step() -> None:
    figures: dict[str, float] = load_bench("smoke").run_quick()
    assert figures, "the benchmark returned no figures"
    assert all(value > 0 for value in figures.values()), figures
    # one fsync'd transaction per step: the outcome commits with the successor's start
    assert 1.0 <= figures["appends_per_step"] <= 1.1
    assert 1.0 <= figures["transactions_per_step"] <= 1.15
