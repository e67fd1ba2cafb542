"""The benchmark harness runs in the test suite (briefly) so that it cannot rot.

Nothing here is about speed: the figures must exist and be positive, and Trestle
must commit about one transaction per sequential step (a count, not a time).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench_modules import load_bench
from trestle.testing.postgres import LocalPostgres


def test_quick_benchmark_reports_positive_figures_and_one_commit_per_step() -> None:
    figures: dict[str, float] = load_bench("smoke").run_quick()
    assert figures, "the benchmark returned no figures"
    assert all(value > 0 for value in figures.values()), figures
    # one fsync'd transaction per step: the outcome commits with the successor's start
    assert 1.0 <= figures["appends_per_step"] <= 1.1
    assert 1.0 <= figures["transactions_per_step"] <= 1.15


def test_postgres_benchmark_reports_every_part_on_the_server(
    postgres: LocalPostgres, tmp_path: Path
) -> None:
    bench = load_bench("postgres_store")
    systems = ["trestle-postgres", "langgraph-postgres", "floor-postgres"]
    results: dict[str, Any] = bench.run_all(bench.SMOKE, bench.PARTS, systems, postgres, tmp_path)
    steps = results["workloads"]["steps"]["summary"]
    assert set(steps) == set(systems)
    assert all(row["us_per_step"] > 0 for row in steps.values()), steps
    assert steps["langgraph-postgres"]["lg_over_trestle"] > 0
    turns = results["workloads"]["turns"]["summary"]
    assert {system: list(sizes) for system, sizes in turns.items()} == {
        "trestle-postgres": ["3"],
        "langgraph-postgres": ["3"],
    }
    assert all(row["us_per_turn"] > 0 for sizes in turns.values() for row in sizes.values())
    # two drivers sharing one PostgreSQL store: runs finished, none failed
    rate = results["workloads"]["rate"]["summary"]["trestle-postgres"]["2"]
    assert rate["runs_per_s"] > 0 and rate["errors"] == 0, rate
    assert "langgraph-postgres" in load_bench("pgtables").render(results)


def test_postgres_storage_benchmark_measures_what_an_agent_run_left_and_cost(
    postgres: LocalPostgres, postgres_url: str, tmp_path: Path
) -> None:
    bench = load_bench("pg_storage")
    spent: dict[str, float] = bench.costs(postgres, postgres_url, tmp_path, 3)
    assert spent["driver_cpu_us_per_turn"] > 0 and spent["wal_bytes_per_turn"] > 0
    assert spent["wal_syncs_per_turn"] >= 1  # each turn commits, and waits for the disk
    result: dict[str, Any] = bench.measure(postgres_url)
    assert result["bytes"] >= result["bytes_live"] > 0
    assert result["tables_live"]["events"] > 0 and result["tables_live"]["snapshots"] > 0
    rows, body_bytes = result["event_rows_and_body_bytes"]
    assert rows > 3 and body_bytes > 0


def test_postgres_lease_benchmark_measures_renewals_and_releases(
    postgres: LocalPostgres, postgres_url: str, tmp_path: Path
) -> None:
    from trestle.core.events import RunCreated
    from trestle.core.plan import Plan, Step
    from trestle.store.postgres import PostgresStore

    bench = load_bench("pg_leases")
    store = PostgresStore(postgres_url)
    plan = Plan(goal="hold a lease", steps=[Step(id="one", run="true")])
    created = RunCreated(at=1.0, run_id=bench.RUN, plan=plan, workspace=str(tmp_path))
    store.create_run(created, summary="{}")
    store.close()
    for kind in ("renew", "release"):
        spent: dict[str, float] = bench.per_call(postgres, postgres_url, kind, 5)
        assert spent["wall_us"] > 0 and spent["cpu_us"] >= 0 and spent["wal_syncs"] >= 0
