"""Summaries of ``postgres_store.py``'s raw samples (medians, ratios) and its tables.

A ratio is always of two figures from the same run: LangGraph's time over Trestle's
on the same kind of store (above 1: LangGraph takes longer), a PostgreSQL figure over
the SQLite one, or a store's runs/s with N driver processes over its runs/s with one.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from comparetables import table

PAIRS = (("langgraph-postgres", "trestle-postgres"), ("langgraph-sqlite", "trestle-sqlite"))
RATE_STORES = ("trestle-sqlite", "trestle-postgres")


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


# --- summaries --------------------------------------------------------------------------------


def summarise_steps(data: dict[str, Any]) -> dict[str, Any]:
    n = data["params"]["n"]
    out: dict[str, Any] = {}
    for system, reps in data["raw"].items():
        samples = [r["seconds"] / n * 1e6 for r in reps]
        out[system] = {
            "us_per_step": _median(samples),
            "samples_us": samples,
            # CPU per step: the measuring process (all its threads) and the server's
            # processes, each over the whole measurement (opening and set-up included)
            "driver_cpu_us": _median([r["cpu_s"] / n * 1e6 for r in reps]),
            "server_cpu_us": (
                _median([r["server_cpu_s"] / n * 1e6 for r in reps])
                if "server_cpu_s" in reps[0]
                else None
            ),
            # fsyncs of the server's log per step: a count, which no load disturbs
            "wal_syncs_per_step": (
                _median([r["wal_syncs"] / n for r in reps]) if "wal_syncs" in reps[0] else None
            ),
        }
    for system, row in out.items():
        row["lg_over_trestle"] = _pair_ratio(out, system, lambda r: r["us_per_step"])
        row["over_trestle_sqlite"] = _ratio(
            row["us_per_step"], out.get("trestle-sqlite", {}).get("us_per_step")
        )
    return out


def summarise_turns(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for system, reps in data["raw"].items():
        by_size: dict[int, list[float]] = {}
        for rep in reps:
            for n, us in zip(rep["turns"], rep["us_per_turn"], strict=True):
                by_size.setdefault(n, []).append(us)
        out[system] = {
            str(n): {"us_per_turn": _median(s), "samples_us": s} for n, s in by_size.items()
        }
    for system, sizes in out.items():
        for size, row in sizes.items():
            row["lg_over_trestle"] = _pair_ratio(
                out, system, lambda r, size=size: r.get(size, {}).get("us_per_turn")
            )
    return out


def _pair_ratio(out: dict[str, Any], system: str, figure: Any) -> float | None:
    """For a LangGraph row, its figure over Trestle's on the same kind of store."""
    for langgraph, trestle in PAIRS:
        if system == langgraph and trestle in out:
            return _ratio(figure(out[langgraph]), figure(out[trestle]))
    return None


def summarise_rate(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for store, by_count in data["raw"].items():
        rows = {}
        for count, reps in by_count.items():
            rows[count] = {
                "runs_per_s": _median([r["runs_per_s"] for r in reps]),
                "samples": [round(r["runs_per_s"], 2) for r in reps],
                "run_ms_median": _median([r["run_ms_median"] for r in reps]),
                # the drivers' own CPU (all their threads) per run: Python's share
                "driver_cpu_ms_per_run": _median(
                    [r["driver_cpu_s"] / r["runs"] * 1e3 for r in reps if r["runs"]] or [0.0]
                ),
                "machine_cpu_busy": _median([r["machine_cpu_busy"] for r in reps]),
                "errors": sum(r["errors"] for r in reps),
                "failures": [f for r in reps for f in r["failures"]][:3],
            }
        one = rows.get("1", {}).get("runs_per_s")
        for row in rows.values():
            row["scaling"] = _ratio(row["runs_per_s"], one)
        out[store] = rows
    pg, lite = out.get("trestle-postgres", {}), out.get("trestle-sqlite", {})
    for count, row in pg.items():
        row["over_sqlite"] = _ratio(row["runs_per_s"], lite.get(count, {}).get("runs_per_s"))
    return out


# --- tables -----------------------------------------------------------------------------------


def render_steps(data: dict[str, Any]) -> str:
    s, n = data["summary"], data["params"]["n"]
    rows = []
    for system, row in s.items():
        unit = "commit" if system.startswith("floor") else "step"
        rows.append(
            [
                system,
                f"{row['us_per_step']:,.0f} µs per {unit}",
                _x(row["lg_over_trestle"]),
                _x(row["over_trestle_sqlite"]),
                _cpu(row["driver_cpu_us"], row["server_cpu_us"]),
                "—" if row["wal_syncs_per_step"] is None else f"{row['wal_syncs_per_step']:.2f}",
                ", ".join(f"{x:,.0f}" for x in row["samples_us"]),
            ]
        )
    header = [
        "system",
        "median",
        "LangGraph / Trestle",
        "/ Trestle on SQLite",
        "CPU µs: driver + server",
        "WAL fsyncs",
        "samples (µs)",
    ]
    title = f"1. a durable no-op step, {n:,} in sequence (floors: one-row commits)"
    return "\n".join([title, table(header, rows)])


def _cpu(driver: float, server: float | None) -> str:
    if server is None:
        return f"{driver:,.0f}"
    return f"{driver:,.0f} + {server:,.0f} = {driver + server:,.0f}"


def render_turns(data: dict[str, Any]) -> str:
    s = data["summary"]
    rows = []
    for system, sizes in s.items():
        for size, row in sizes.items():
            rows.append(
                [
                    system,
                    size,
                    f"{row['us_per_turn']:,.0f} µs",
                    _x(row["lg_over_trestle"]),
                    ", ".join(f"{x:,.0f}" for x in row["samples_us"]),
                ]
            )
    header = ["system", "turns", "per turn (median)", "LangGraph / Trestle", "samples (µs)"]
    title = "1b. the agent loop's runtime per turn (scripted model, real read_file, real store)"
    return "\n".join([title, table(header, rows)])


def render_rate(data: dict[str, Any]) -> str:
    s, p = data["summary"], data["params"]
    lite, pg = s.get("trestle-sqlite", {}), s.get("trestle-postgres", {})
    rows = []
    for count in sorted({*lite, *pg}, key=int):
        a, b = lite.get(count, {}), pg.get(count, {})
        rows.append(
            [
                count,
                _rate(a),
                _rate(b),
                _x(b.get("over_sqlite")),
                _both(a, b, "run_ms_median", ".1f"),
                _both(a, b, "driver_cpu_ms_per_run", ".1f"),
                _both(a, b, "machine_cpu_busy", ".0%"),
                _both(a, b, "errors", "d"),
            ]
        )
    header = [
        "driver processes",
        "SQLite runs/s (scaling)",
        "PostgreSQL runs/s (scaling)",
        "PostgreSQL / SQLite",
        "ms per run",
        "drivers' CPU ms per run",
        "machine CPU busy",
        "errors",
    ]
    title = (
        f"2. runs per second, N driver processes on one store: runs of {p['steps']} no-op "
        f"steps back to back for {p['seconds']:g} s (scaling: over 1 process; the last four "
        "columns: SQLite / PostgreSQL)"
    )
    return "\n".join([title, table(header, rows)])


def _both(sqlite: dict[str, Any], postgres: dict[str, Any], key: str, spec: str) -> str:
    """One figure for both stores: ``SQLite / PostgreSQL``."""
    return f"{sqlite.get(key, 0):{spec}} / {postgres.get(key, 0):{spec}}"


def _rate(row: dict[str, Any]) -> str:
    if not row:
        return "—"
    return f"{row['runs_per_s']:,.1f} ({_x(row['scaling'])})"


def render(results: dict[str, Any]) -> str:
    m, v, server = results["machine"], results["versions"], results["server"]
    head = [
        "Trestle on PostgreSQL, LangGraph's PostgresSaver on the same server, SQLite beside",
        f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram']} RAM, {m['python']}, "
        f"SQLite {m['sqlite']}, {m['filesystem']}",
        "server: " + ", ".join(f"{k} {val}" for k, val in server.items()),
        "versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"trestle commit {m['trestle_commit']}; load average {m['load_average_before']} "
        f"before, {m.get('load_average_after', '?')} after; {results['seconds']:.0f} s",
        f"command: {results['command']}",
    ]
    parts = ["\n".join(head)]
    for name, render_part in (("steps", render_steps), ("turns", render_turns)):
        if name in results["workloads"]:
            parts.append(render_part(results["workloads"][name]))
    if "rate" in results["workloads"]:
        parts.append(render_rate(results["workloads"]["rate"]))
        for store, rows in results["workloads"]["rate"]["summary"].items():
            for count, row in rows.items():
                for failure in row["failures"]:
                    parts.append(f"   {store}, {count} processes: {failure.splitlines()[0]}")
    return "\n\n".join(parts)
