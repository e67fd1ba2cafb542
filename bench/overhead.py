"""Trestle's orchestration overhead, against the SQLite floor, measured in one run.

Usage::

    python bench/overhead.py [--steps 1000] [--width 32] [--sleep 0.2] [--repeat 5]
                             [--json out.json] [--dir DIR] [--keep] [--quick]

Three workloads and two diagnostics, every repetition, on the same disk, one after another:

sequential
    ``--steps`` durable no-op steps (``python: benchsteps:noop``), each needing the
    previous one, on a :class:`~trestle.store.SqliteStore` with the engine's defaults.
    Figures: wall time of ``LocalEngine.run`` / steps (mean), and the median time
    between two consecutive steps' outcomes (robust to the disk's hiccups). The store
    is a subclass that counts what Trestle committed: every ``COMMIT`` the SQLite
    connection executes (a trace callback) and the store calls by name, plus the
    events in each batch and the latency of each append.
floor
    The same number of transactions Trestle committed in the timed region (lease,
    event batches, release), each inserting one row as large as Trestle's average
    batch, with the store's settings (WAL, ``synchronous=FULL``, ``BEGIN IMMEDIATE``)
    and no orchestration, back to back, once before and once after each sequential
    run. Figures: wall time / commits (mean) and the median commit latency.
diagnostics (not part of any goal)
    The sequential plan again with a floor commit made by the store's thread right
    before each append, so both meet the same moment of disk weather: how an append
    compares with a bare commit made in the same circumstances. And the plan on an
    ``InMemoryStore``: what orchestration costs with no disk at all.
fan-out
    One root, ``--width`` parallel steps each sleeping ``--sleep`` s, one join; the
    plan's default parallelism. Three variants: ``run: sleep X`` commands (the
    realistic case, and the one the goal is about), a sync Python callable sleeping
    in the worker thread Trestle gives it, and an async callable. Figure: makespan
    (wall time of ``LocalEngine.run``) / critical path, where the critical path is the
    measured makespan of the same root -> sleep -> join chain at width 1: it holds
    the sleep plus Trestle's real cost for three dependent steps (commits, process
    start-up), so the ratio is what running ``--width`` steps at once costs on top of
    running one. Also shown: the same sleeps started at once with no Trestle (plain
    asyncio subprocesses with Trestle's spawn settings, one thread per sleep, or
    ``asyncio.sleep``), which is what this machine allows, and makespan / sleep.

Figures are medians over ``--repeat`` repetitions.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hostinfo import load_average, machine_info
from trestle.store import SqliteStore
from workloads import (
    BENCH_DIR,
    VARIANTS,
    ChainSample,
    Variant,
    chain_in_memory,
    chain_on_sqlite,
    chain_paired,
    fanout_plan,
    importable_steps,
    raw_fanout,
    sqlite_floor,
    timed_run,
)

RESULTS_DIR = BENCH_DIR / "results"  # git-ignored

# the goals of the benchmark issue
GOAL_OVERHEAD_RATIO = 3.0  # Trestle per step / SQLite floor per commit
GOAL_MAKESPAN_RATIO = 1.05  # fan-out makespan / critical path, with defaults

# reference figures measured elsewhere, NOT here (2 vCPU, SQLite 3.40,
# CPython 3.11; LangGraph 1.2.22 SqliteSaver durability="sync", DBOS 3.4)
REFERENCE_FLOOR_US = 220.0
REFERENCE_LANGGRAPH_US = 1054.0
REFERENCE_DBOS_US = 2173.0
REFERENCE_TARGET_US = 0.5 * REFERENCE_LANGGRAPH_US
REFERENCE_LANGGRAPH_FANOUT = 6.10
REFERENCE_LANGGRAPH_FANOUT_TUNED = 1.18


@dataclass(frozen=True)
class Config:
    steps: int = 1000
    width: int = 32
    sleep: float = 0.2
    repeat: int = 5


QUICK = Config(steps=50, width=8, sleep=0.05, repeat=1)


# --- results -----------------------------------------------------------------------------


@dataclass
class Sequential:
    steps: int
    per_step_us: float  # wall / steps, median over repetitions
    step_median_us: float  # median interval between consecutive outcomes, all repetitions
    step_p90_us: float
    transactions: float
    transactions_per_step: float
    appends_per_step: float
    events_per_step: float
    append_us_per_step: float  # time inside SqliteStore.append / steps
    append_median_us: float  # median latency of one append (its commit included)
    bytes_per_append: float
    calls: dict[str, int]
    samples_s: list[float]


@dataclass
class InMemory:
    per_step_us: float
    step_median_us: float
    samples_s: list[float]


@dataclass
class Floor:
    commits: int
    row_bytes: int
    per_commit_us: float  # wall / commits, median over runs
    commit_median_us: float  # median latency of one commit, all runs
    commit_p90_us: float
    slow_share: float  # share of commits over 1 ms: how noisy the disk was
    samples_s: list[float]


@dataclass
class Paired:
    """A floor commit and Trestle's append, made by the same thread one after the other."""

    floor_mean_us: float
    floor_median_us: float
    append_mean_us: float
    append_median_us: float


@dataclass
class Fanout:
    variant: Variant
    width: int
    sleep: float
    makespan_s: float
    critical_path_s: float
    ratio: float  # makespan / critical path
    raw_s: float  # the same sleeps without Trestle
    makespan_over_sleep: float
    samples_s: list[float]
    width1_samples_s: list[float]
    raw_samples_s: list[float]


@dataclass
class Results:
    machine: dict[str, str]
    config: dict[str, float]
    store_dir: str
    sequential: Sequential
    memory: InMemory
    floor: Floor
    paired: Paired
    overhead_ratio: float  # Trestle wall per step / floor wall per commit
    overhead_ratio_median: float  # median step interval / median commit latency
    fanout: list[Fanout] = field(default_factory=list)


@dataclass
class Samples:
    """Everything measured, before it is summarised."""

    chains: list[ChainSample] = field(default_factory=list)
    memory: list[ChainSample] = field(default_factory=list)
    floor_s: list[float] = field(default_factory=list)
    floor_latencies: list[float] = field(default_factory=list)
    paired_floor: list[float] = field(default_factory=list)
    paired_append: list[float] = field(default_factory=list)
    fan: dict[tuple[str, Variant], list[float]] = field(default_factory=dict)


def run_benchmarks(
    config: Config, work_dir: Path, progress: Callable[[str], None] | None = None
) -> Results:
    """All workloads, ``config.repeat`` times, with stores and workspaces in ``work_dir``."""
    say = progress or (lambda _: None)
    machine = machine_info(work_dir)  # the load average before, too
    importable_steps()
    work_dir.mkdir(parents=True, exist_ok=True)
    workspace = work_dir / "workspace"
    workspace.mkdir(exist_ok=True)
    got = Samples()
    for rep in range(config.repeat):
        step = f"repetition {rep + 1}/{config.repeat}"
        say(f"{step}: sequential, {config.steps} steps")
        chain = chain_on_sqlite(work_dir / f"seq-{rep}.db", workspace, config.steps)
        got.chains.append(chain)
        # the floor commits as many transactions as Trestle just did, each as large as
        # its average batch, so the two differ by orchestration; it runs just before
        # and just after the chain would, to share its stretch of disk weather
        commits, row_bytes = chain.transactions, chain.bytes_per_append
        for when in ("after", "before") if rep % 2 else ("before", "after"):
            say(f"{step}: SQLite floor ({when}), {commits} commits")
            path = work_dir / f"floor-{rep}-{when}.db"
            seconds, latencies = sqlite_floor(path, commits, row_bytes)
            got.floor_s.append(seconds)
            got.floor_latencies += latencies
        say(f"{step}: sequential, a floor commit paired with each append (diagnostic)")
        paired_floor, paired_append = chain_paired(
            work_dir / f"paired-{rep}.db",
            work_dir / f"paired-floor-{rep}.db",
            row_bytes,
            workspace,
            config.steps,
        )
        got.paired_floor += paired_floor
        got.paired_append += paired_append
        say(f"{step}: sequential on InMemoryStore (diagnostic)")
        got.memory.append(chain_in_memory(workspace, config.steps))
        for variant in VARIANTS:
            for width in (config.width, 1):
                say(f"{step}: fan-out {variant}, width {width}")
                store = SqliteStore(work_dir / f"fan-{variant}-{width}-{rep}.db")
                try:
                    plan = fanout_plan(width, config.sleep, variant)
                    _, seconds = timed_run(store, plan, workspace)
                finally:
                    store.close()
                got.fan.setdefault((f"trestle-{width}", variant), []).append(seconds)
            say(f"{step}: fan-out {variant}, width {config.width}, no Trestle")
            raw = raw_fanout(variant, config.width, config.sleep, workspace)
            got.fan.setdefault(("raw", variant), []).append(raw)
    machine["load_average_after"] = load_average()
    return _summarise(config, machine, work_dir, got)


def _summarise(config: Config, machine: dict[str, str], work_dir: Path, got: Samples) -> Results:
    steps, chains, memory, fan = config.steps, got.chains, got.memory, got.fan
    floor_s, floor_latencies = got.floor_s, got.floor_latencies
    intervals = [i for c in chains for i in c.intervals]
    appends = [a for c in chains for a in c.append_latencies]
    sequential = Sequential(
        steps=steps,
        per_step_us=_median([c.seconds for c in chains]) / steps * 1e6,
        step_median_us=_median(intervals) * 1e6,
        step_p90_us=_quantile(intervals, 0.9) * 1e6,
        transactions=_median([c.transactions for c in chains]),
        transactions_per_step=_median([c.transactions for c in chains]) / steps,
        appends_per_step=_median([c.appends for c in chains]) / steps,
        events_per_step=_median([c.events for c in chains]) / steps,
        append_us_per_step=_median([sum(c.append_latencies) for c in chains]) / steps * 1e6,
        append_median_us=_median(appends) * 1e6,
        bytes_per_append=_median([c.bytes_per_append for c in chains]),
        calls=chains[-1].calls,
        samples_s=[c.seconds for c in chains],
    )
    paired = Paired(
        floor_mean_us=statistics.mean(got.paired_floor) * 1e6,
        floor_median_us=_median(got.paired_floor) * 1e6,
        append_mean_us=statistics.mean(got.paired_append) * 1e6,
        append_median_us=_median(got.paired_append) * 1e6,
    )
    commits = chains[-1].transactions
    floor = Floor(
        commits=commits,
        row_bytes=chains[-1].bytes_per_append,
        per_commit_us=_median(floor_s) / commits * 1e6,
        commit_median_us=_median(floor_latencies) * 1e6,
        commit_p90_us=_quantile(floor_latencies, 0.9) * 1e6,
        slow_share=sum(x > 1e-3 for x in floor_latencies) / len(floor_latencies),
        samples_s=floor_s,
    )
    in_memory = InMemory(
        per_step_us=_median([m.seconds for m in memory]) / steps * 1e6,
        step_median_us=_median([i for m in memory for i in m.intervals]) * 1e6,
        samples_s=[m.seconds for m in memory],
    )
    fanouts = []
    for variant in VARIANTS:
        wide, narrow = fan[(f"trestle-{config.width}", variant)], fan[("trestle-1", variant)]
        makespan, critical = _median(wide), _median(narrow)
        fanouts.append(
            Fanout(
                variant=variant,
                width=config.width,
                sleep=config.sleep,
                makespan_s=makespan,
                critical_path_s=critical,
                ratio=makespan / critical,
                raw_s=_median(fan[("raw", variant)]),
                makespan_over_sleep=makespan / config.sleep,
                samples_s=wide,
                width1_samples_s=narrow,
                raw_samples_s=fan[("raw", variant)],
            )
        )
    return Results(
        machine=machine,
        config={
            "steps": steps,
            "width": config.width,
            "sleep": config.sleep,
            "repeat": config.repeat,
        },
        store_dir=str(work_dir),
        sequential=sequential,
        memory=in_memory,
        floor=floor,
        paired=paired,
        overhead_ratio=sequential.per_step_us / floor.per_commit_us,
        overhead_ratio_median=sequential.step_median_us / floor.commit_median_us,
        fanout=fanouts,
    )


def flatten(results: Results) -> dict[str, float]:
    """The headline figures as one flat mapping (what ``bench/smoke.py`` returns)."""
    seq, floor = results.sequential, results.floor
    out = {
        "steps": float(seq.steps),
        "floor_commits": float(floor.commits),
        "floor_us_per_commit": floor.per_commit_us,
        "floor_commit_median_us": floor.commit_median_us,
        "trestle_us_per_step": seq.per_step_us,
        "trestle_step_median_us": seq.step_median_us,
        "overhead_ratio": results.overhead_ratio,
        "overhead_ratio_median": results.overhead_ratio_median,
        "transactions": seq.transactions,
        "transactions_per_step": seq.transactions_per_step,
        "appends_per_step": seq.appends_per_step,
        "events_per_step": seq.events_per_step,
        "append_us_per_step": seq.append_us_per_step,
        "append_median_us": seq.append_median_us,
        "memory_us_per_step": results.memory.per_step_us,
        "paired_floor_median_us": results.paired.floor_median_us,
        "paired_append_median_us": results.paired.append_median_us,
    }
    for f in results.fanout:
        key = f"fanout_{f.variant.replace('-', '_')}"
        out[f"{key}_makespan_s"] = f.makespan_s
        out[f"{key}_critical_path_s"] = f.critical_path_s
        out[f"{key}_ratio"] = f.ratio
        out[f"{key}_raw_s"] = f.raw_s
        out[f"{key}_makespan_over_sleep"] = f.makespan_over_sleep
    return out


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


# --- report --------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def render(results: Results) -> str:
    seq, floor, mem = results.sequential, results.floor, results.memory
    m, cfg = results.machine, results.config
    us = floor.per_commit_us
    med = floor.commit_median_us
    lines = [
        "Trestle overhead benchmark",
        f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram']} RAM, {m['python']}, "
        f"SQLite {m['sqlite']}, {m['os']}",
        f"trestle commit {m['trestle_commit']}; medians of {int(cfg['repeat'])} repetition(s); "
        f"load average {m['load_average_before']} before, {m['load_average_after']} after",
        f"store files: {results.store_dir} on {m['filesystem']} (floor and Trestle alike)",
        "",
        f"1. sequential durable no-op steps ({seq.steps} python callables, each needing "
        "the previous; engine defaults)",
        "   mean = wall time / steps (or / commits); median = median time between two "
        "consecutive steps' outcomes (or of one commit), robust to disk hiccups",
        _table(
            ("system", "mean", "ratio", "median", "ratio"),
            [
                (
                    f"SQLite floor per commit ({floor.commits} commits of "
                    f"{floor.row_bytes} B, WAL, synchronous=FULL)",
                    f"{us:,.0f} us",
                    "1.00",
                    f"{med:,.0f} us",
                    "1.00",
                ),
                (
                    "Trestle per step, SqliteStore",
                    f"{seq.per_step_us:,.0f} us",
                    f"{results.overhead_ratio:.2f}",
                    f"{seq.step_median_us:,.0f} us",
                    f"{results.overhead_ratio_median:.2f}",
                ),
                (
                    "  of which in SqliteStore.append (one commit)",
                    f"{seq.append_us_per_step:,.0f} us",
                    f"{seq.append_us_per_step / us:.2f}",
                    f"{seq.append_median_us:,.0f} us",
                    f"{seq.append_median_us / med:.2f}",
                ),
                (
                    "diagnostic run: a floor commit just before each append, same thread",
                    f"{results.paired.floor_mean_us:,.0f} us",
                    f"{results.paired.floor_mean_us / us:.2f}",
                    f"{results.paired.floor_median_us:,.0f} us",
                    f"{results.paired.floor_median_us / med:.2f}",
                ),
                (
                    "  and Trestle's append right after it",
                    f"{results.paired.append_mean_us:,.0f} us",
                    f"{results.paired.append_mean_us / us:.2f}",
                    f"{results.paired.append_median_us:,.0f} us",
                    f"{results.paired.append_median_us / med:.2f}",
                ),
                (
                    "Trestle per step, InMemoryStore (diagnostic: no disk)",
                    f"{mem.per_step_us:,.0f} us",
                    f"{mem.per_step_us / us:.2f}",
                    f"{mem.step_median_us:,.0f} us",
                    f"{mem.step_median_us / med:.2f}",
                ),
            ],
        ),
        f"   Trestle committed {seq.transactions:.0f} transactions in the timed run "
        f"({seq.transactions_per_step:.3f} per step; "
        + ", ".join(f"{k} {v}" for k, v in sorted(seq.calls.items()))
        + f"), {seq.events_per_step:.2f} events and {seq.bytes_per_append:.0f} B of event "
        "JSON per batch",
        f"   disk noise: {floor.slow_share:.0%} of the floor's commits took over 1 ms "
        f"(p90 {floor.commit_p90_us:,.0f} us); Trestle's step p90 {seq.step_p90_us:,.0f} us",
        f"   goal: Trestle per step <= {GOAL_OVERHEAD_RATIO:g}x the floor per commit: "
        f"{_verdict(results.overhead_ratio <= GOAL_OVERHEAD_RATIO)} on means "
        f"({results.overhead_ratio:.2f}x), "
        f"{_verdict(results.overhead_ratio_median <= GOAL_OVERHEAD_RATIO)} on medians "
        f"({results.overhead_ratio_median:.2f}x)",
        f"   reference figures measured elsewhere, not here: floor "
        f"{REFERENCE_FLOOR_US:.0f} us per row, LangGraph {REFERENCE_LANGGRAPH_US:,.0f} us, "
        f"DBOS {REFERENCE_DBOS_US:,.0f} us per step; target <= {REFERENCE_TARGET_US:.0f} us",
        "",
        f"2. fan-out/fan-in: root -> {int(cfg['width'])} x sleep {cfg['sleep']:g} s -> join, "
        "engine and plan defaults (parallelism 32)",
        "   critical path = measured makespan of the same plan at width 1 (root -> one "
        "sleep -> join): the sleep plus Trestle's real cost for three dependent steps; "
        "no Trestle = the same sleeps started at once by plain asyncio / threads",
        _table(
            (
                "variant",
                "makespan",
                "critical path",
                "makespan / critical path",
                "no Trestle",
                "makespan / no Trestle",
                "makespan / sleep",
            ),
            [
                (
                    f.variant,
                    f"{f.makespan_s:.3f} s",
                    f"{f.critical_path_s:.3f} s",
                    f"{f.ratio:.3f} ({_verdict(f.ratio <= GOAL_MAKESPAN_RATIO)})",
                    f"{f.raw_s:.3f} s",
                    f"{f.makespan_s / f.raw_s:.2f}",
                    f"{f.makespan_over_sleep:.2f}",
                )
                for f in results.fanout
            ],
        ),
        f"   goal: makespan / critical path <= {GOAL_MAKESPAN_RATIO} with defaults "
        "(run: commands are the goal's case)",
        f"   reference figures measured elsewhere, not here (makespan / critical "
        f"path): LangGraph {REFERENCE_LANGGRAPH_FANOUT:.2f} with defaults, "
        f"{REFERENCE_LANGGRAPH_FANOUT_TUNED:.2f} tuned; its default pool is "
        "min(32, cores + 4) threads (6 on those 2 vCPUs), so its figure falls with more cores",
    ]
    return "\n".join(lines)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "   | " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "   |" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *map(line, rows)])


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> tuple[Config, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--steps", type=int, help="sequential no-op steps (default 1000)")
    p.add_argument("--width", type=int, help="fan-out width (default 32)")
    p.add_argument("--sleep", type=float, help="seconds each fan-out step sleeps (default 0.2)")
    p.add_argument("--repeat", type=int, help="repetitions; medians are reported (default 5)")
    p.add_argument("--json", type=Path, help="also write every figure and sample here")
    p.add_argument(
        "--dir",
        type=Path,
        help="where store files go (default: a fresh directory under bench/results/)",
    )
    p.add_argument("--keep", action="store_true", help="keep the store files afterwards")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke-test size: 50 steps, width 8, sleep 0.05, 1 repetition",
    )
    args = p.parse_args(argv)
    base = QUICK if args.quick else Config()
    config = Config(
        steps=args.steps or base.steps,
        width=args.width or base.width,
        sleep=args.sleep or base.sleep,
        repeat=args.repeat or base.repeat,
    )
    if config.steps < 2 or config.width < 1 or config.sleep <= 0 or config.repeat < 1:
        p.error("need --steps >= 2, --width >= 1, --sleep > 0, --repeat >= 1")
    return config, args


def main(argv: Sequence[str] | None = None) -> int:
    config, args = parse_args(argv)
    if args.dir is not None:
        work_dir, owned = args.dir.resolve(), False
    else:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        work_dir, owned = Path(tempfile.mkdtemp(prefix="overhead-", dir=RESULTS_DIR)), True
    try:
        results = run_benchmarks(
            config, work_dir, lambda msg: print(f"[bench] {msg}", file=sys.stderr)
        )
    finally:
        if owned and not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)
    print(render(results))
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(results), indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
