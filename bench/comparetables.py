"""Summaries of ``compare.py``'s raw samples (medians, ratios to Trestle) and its tables.

Every ratio is another system's figure divided by Trestle's from the same run, so
above 1 means more time, bytes or memory than Trestle, or less throughput when the
figure is a throughput (said in each table's heading).
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable, Sequence
from typing import Any

COMMAND = "python bench/compare.py --only {}"
TURN_CHARS = 5_000  # text per agent turn: ~1 KB of message and a ~4 KB file (agentturns)


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _ratio(value: float, base: float) -> float | None:
    return value / base if base else None


def growth_exponent(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The least-squares slope of log(y) on log(x): 1 is linear, 2 quadratic."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.mean(lx), statistics.mean(ly)
    var = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / var if var else 0.0


# --- summaries --------------------------------------------------------------------------------


def summarise_steps(data: dict[str, Any], systems: Sequence[str]) -> dict[str, Any]:
    n, raw = data["params"]["n"], data["raw"]
    out: dict[str, Any] = {}
    for system, reps in raw.items():
        row: dict[str, Any] = {"us_per_step": _median([r["steps_s"] for r in reps]) / n * 1e6}
        if "fan_s" in reps[0]:
            makespan = _median([r["fan_s"] for r in reps])
            critical = _median([r["fan1_s"] for r in reps])
            row.update(makespan_s=makespan, critical_path_s=critical, fan_ratio=makespan / critical)
        out[system] = row
    base = out["trestle"]
    for row in out.values():
        row["ratio"] = _ratio(row["us_per_step"], base["us_per_step"])
        if "fan_ratio" in row:
            row["fan_ratio_to_trestle"] = _ratio(row["fan_ratio"], base["fan_ratio"])
    return out


def summarise_turns(data: dict[str, Any], systems: Sequence[str]) -> dict[str, Any]:
    raw = data["raw"]
    out: dict[str, Any] = {}
    for system in systems:
        out[system] = {
            "rows": [
                {"turns": t, "us_per_turn": _median(s), "samples_us": s}
                for t, s in zip(raw[system]["turns"], raw[system]["us_per_turn"], strict=True)
            ]
        }
    base = {r["turns"]: r["us_per_turn"] for r in out["trestle"]["rows"]}
    for summary in out.values():
        for row in summary["rows"]:
            row["ratio"] = _ratio(row["us_per_turn"], base.get(row["turns"], 0))
    return out


def summarise_storage(data: dict[str, Any], systems: Sequence[str]) -> dict[str, Any]:
    raw = data["raw"]
    out: dict[str, Any] = {}
    base = dict(zip(raw["trestle"]["turns"], raw["trestle"]["bytes"], strict=True))
    for system in systems:
        turns, sizes = raw[system]["turns"], raw[system]["bytes"]
        out[system] = {
            "rows": [
                {
                    "turns": t,
                    "bytes": b,
                    "per_text": b / (t * TURN_CHARS),
                    "ratio": _ratio(b, base.get(t, 0)),
                }
                for t, b in zip(turns, sizes, strict=True)
            ],
            "exponent": growth_exponent(turns, sizes) if len(turns) > 1 else None,
        }
    return out


def summarise_resume(data: dict[str, Any], systems: Sequence[str]) -> dict[str, Any]:
    raw = data["raw"]
    out: dict[str, Any] = {}
    for system in systems:
        medians = [_median(s) for s in raw[system]["seconds"]]
        out[system] = {
            "rows": [
                {"turns": t, "median_s": m, "samples_s": s, "store_bytes": b}
                for t, m, s, b in zip(
                    raw[system]["turns"],
                    medians,
                    raw[system]["seconds"],
                    raw[system]["store_bytes"],
                    strict=True,
                )
            ],
            "longest_over_shortest": medians[-1] / medians[0],
        }
    base = {r["turns"]: r["median_s"] for r in out["trestle"]["rows"]}
    for summary in out.values():
        for row in summary["rows"]:
            row["ratio"] = _ratio(row["median_s"], base.get(row["turns"], 0))
    return out


def summarise_crash(data: dict[str, Any], systems: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for system in systems:
        tally = dict(data["raw"][system])
        tally["problems"] = tally["problems"][:20]
        out[system] = tally
    return out


def summarise_concurrency(data: dict[str, Any], systems: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for system in systems:
        rows = []
        for r in data["raw"][system]["rows"]:
            rows.append(
                {
                    **r,
                    "runs_per_s": r["succeeded"] / r["seconds"],
                    "steps_per_s": r["succeeded"] * r["turns"] / r["seconds"],
                }
            )
        out[system] = {"rows": rows}
    base = {(r["runs"], r["processes"]): r for r in out["trestle"]["rows"]}
    for summary in out.values():
        for row in summary["rows"]:
            b = base[(row["runs"], row["processes"])]
            row["throughput_ratio"] = _ratio(row["runs_per_s"], b["runs_per_s"])
            row["rss_ratio"] = _ratio(row["max_rss_kb"], b["max_rss_kb"])
    return out


SUMMARISERS: dict[str, Callable[[dict[str, Any], Sequence[str]], dict[str, Any]]] = {
    "steps": summarise_steps,
    "turns": summarise_turns,
    "storage": summarise_storage,
    "resume": summarise_resume,
    "crash": summarise_crash,
    "concurrency": summarise_concurrency,
}


# --- tables -------------------------------------------------------------------------------------


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _mb(size: float) -> str:
    return f"{size / 1e6:,.2f} MB" if size < 1e9 else f"{size / 1e9:,.2f} GB"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table, padded so it also reads as plain text."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *map(line, rows)])


def render_steps(data: dict[str, Any]) -> str:
    s, p = data["summary"], data["params"]
    cmd = COMMAND.format("steps")
    rows = [
        [
            system,
            f"{row['us_per_step']:,.0f} µs per {'commit' if system == 'floor' else 'step'}",
            _x(row["ratio"]),
            cmd,
        ]
        for system, row in s.items()
    ]
    fan = [
        [
            system,
            f"{row['fan_ratio']:.2f} ({row['makespan_s']:.3f} s / {row['critical_path_s']:.3f} s)",
            _x(row["fan_ratio_to_trestle"]),
            cmd,
        ]
        for system, row in s.items()
        if "fan_ratio" in row
    ]
    return "\n".join(
        [
            f"1. step overhead: {p['n']} sequential durable no-op steps (floor: as many "
            "one-row commits, WAL, synchronous=FULL)",
            table(["system", "median per step", "ratio to Trestle", "command"], rows),
            "",
            f"   fan-out: root -> {p['width']} steps sleeping {p['sleep']:g} s -> join; "
            "makespan / critical path (the same graph at width 1)",
            table(["system", "makespan / critical path", "ratio to Trestle", "command"], fan),
            f"   LangGraph runs sync nodes on a pool of min(32, cores + 4) threads "
            f"({_langgraph_pool()} on this machine's {os.cpu_count()} cores): its fan-out "
            "falls with more cores; Trestle's gives each step the plan may run at once "
            "a thread",
        ]
    )


def _langgraph_pool() -> int:
    """The threads of LangGraph's default executor here (Python's default pool)."""
    return min(32, (os.cpu_count() or 1) + 4)


def render_turns(data: dict[str, Any]) -> str:
    s = data["summary"]
    rows = []
    for system, summary in s.items():
        times = ", ".join(f"{r['turns']}: {r['us_per_turn']:,.0f} µs" for r in summary["rows"])
        ratios = ", ".join(_x(r["ratio"]) for r in summary["rows"])
        rows.append([system, times, ratios, COMMAND.format("turns")])
    return "\n".join(
        [
            "1b. agent loop per turn: a scripted model (~1 KB of text and a read_file call of "
            "~4 KB per turn), N turns; time between model calls (median)",
            table(["system", "N: per turn", "ratio to Trestle", "command"], rows),
        ]
    )


def render_storage(data: dict[str, Any]) -> str:
    s = data["summary"]
    rows = []
    for system, summary in s.items():
        sizes = ", ".join(
            f"{r['turns']}: {_mb(r['bytes'])} ({r['per_text']:.2f}x text)" for r in summary["rows"]
        )
        ratios = ", ".join(_x(r["ratio"]) for r in summary["rows"])
        exponent = summary["exponent"]
        rows.append(
            [
                system,
                sizes,
                "—" if exponent is None else f"{exponent:.2f}",
                ratios,
                COMMAND.format("storage"),
            ]
        )
    return "\n".join(
        [
            "2. storage growth of an agent loop (~1 KB message + ~4 KB read_file result per "
            "turn): bytes on disk after N turns (and per byte of the turns' text)",
            table(["system", "N: bytes", "growth exponent", "ratio to Trestle", "command"], rows),
        ]
    )


def render_resume(data: dict[str, Any]) -> str:
    s = data["summary"]
    rows = []
    for system, summary in s.items():
        times = ", ".join(f"{r['turns']}: {r['median_s'] * 1e3:,.1f} ms" for r in summary["rows"])
        ratios = ", ".join(_x(r["ratio"]) for r in summary["rows"])
        rows.append(
            [
                system,
                times,
                f"{summary['longest_over_shortest']:.2f}",
                ratios,
                COMMAND.format("resume"),
            ]
        )
    return "\n".join(
        [
            "3. resume cost after a crash in the model call of turn N: opening the store to "
            "that model call being made again (median)",
            table(["system", "N: time", "longest / shortest", "ratio to Trestle", "command"], rows),
        ]
    )


def render_crash(data: dict[str, Any]) -> str:
    s = data["summary"]
    rows = [
        [
            system,
            str(t["trials"]),
            str(t["kills"]),
            f"{t['trials_with_duplicate']} ({t['duplicated_steps']} steps; "
            f"irreversible: {t['irreversible_duplicated']})",
            str(t["lost_steps"]),
            str(t["unresumable"]),
            str(t["human_decisions"]),
            COMMAND.format("crash"),
        ]
        for system, t in s.items()
    ]
    return "\n".join(
        [
            "4. crash injection: SIGKILL at seeded random moments, then each system's recovery",
            table(
                [
                    "system",
                    "trials",
                    "kills",
                    "trials with an effect twice",
                    "lost steps",
                    "unresumable",
                    "human decisions",
                    "command",
                ],
                rows,
            ),
        ]
    )


def render_concurrency(data: dict[str, Any]) -> str:
    s = data["summary"]
    rows = []
    for system, summary in s.items():
        for r in summary["rows"]:
            rows.append(
                [
                    system,
                    f"{r['runs']} x {r['turns']} turns",
                    str(r["processes"]),
                    f"{r['runs_per_s']:,.1f} runs/s ({r['steps_per_s']:,.0f} steps/s)",
                    f"{r['max_rss_kb'] / 1024:,.0f} MB",
                    str(r["errors"]),
                    f"{_x(r['throughput_ratio'])} / {_x(r['rss_ratio'])}",
                ]
            )
    return "\n".join(
        [
            "5. concurrency: runs at once, in one process and in several sharing one store",
            table(
                [
                    "system",
                    "runs",
                    "processes",
                    "throughput",
                    "peak RSS per process",
                    "errors",
                    "ratio to Trestle: throughput / RSS",
                ],
                rows,
            ),
            f"   command: {COMMAND.format('concurrency')}",
        ]
    )


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "steps": render_steps,
    "turns": render_turns,
    "storage": render_storage,
    "resume": render_resume,
    "crash": render_crash,
    "concurrency": render_concurrency,
}


def render(results: dict[str, Any]) -> str:
    m, v = results["machine"], results["versions"]
    head = [
        "Trestle, LangGraph and DBOS side by side",
        f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram']} RAM, {m['python']}, "
        f"SQLite {m['sqlite']}, {m['filesystem']}",
        "versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"trestle commit {m['trestle_commit']}; load average {m['load_average_before']} "
        f"before, {m.get('load_average_after', '?')} after; {results['seconds']:.0f} s",
    ]
    parts = ["\n".join(head)]
    for name, data in results["workloads"].items():
        parts.append(RENDERERS[name](data))
        for system, t in data["summary"].items() if name == "crash" else ():
            for problem in t["problems"][:3]:
                parts.append(f"   {system}: {problem.splitlines()[0]}")
    return "\n\n".join(parts)
