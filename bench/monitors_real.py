"""The monitors on real agent runs: Trestle's defaults beside OpenHands' stuck rules.

Reads every run under ``ROOT`` (default ``../shared/trajectories``: one folder per
scaffold, each with an ``index.jsonl`` of its runs and their outcomes), keeps the
half of the fixed split asked for (:mod:`monitor_split`; the figures reported are
those of ``report``, the monitors were tuned on ``tune``), and replays each run
through a fresh set of monitors with :func:`trestle.monitors.evaluate.evaluate`.

Runs are read by :func:`trestle.monitors.corpus.load_runs`, the loader ``trestle
monitors eval`` uses, so the two give the same figures on the same runs (given
``--model claude-3-5-sonnet-20241022``, see below). Outcomes
come from the indexes, as the folder's README defines them: ``succeeded`` when the
task's hidden tests passed; ``exhausted`` when a limit ended the run unresolved
(SWE-agent's ``exit_cost``/``exit_context``/``submitted (exit_...)``, OpenHands' 50-call
budget used up without a ``finish``); ``failed`` otherwise. The OpenHands completion
logs do not record the budget, so their runs are given the documented one (50 calls)
as their turn limit; the other formats record theirs. Nor do they name their model:
they are given the documented one (Claude 3.5 Sonnet, October), whose context window
the context monitor then takes.

Usage::

    python bench/monitors_real.py [--root DIR] [--half report|tune|all]
        [--detector trestle|openhands|both|learnt|trestle+learnt|trestle+reread]
        [--show succeeded|exhausted] [--json FILE] [--cost]

``both`` (the default) is Trestle's monitors and OpenHands' rules. ``learnt`` is the
learnt detector alone (:mod:`trestle.monitors.learnt`, trained on the tune half by
``bench/train_detector.py``), ``trestle+learnt`` the default monitors with it beside
them, ``trestle+reread`` the default monitors with the reread monitor
(:mod:`trestle.monitors.rereads`, off by default) beside them.

``--cost`` also times each detector on each run (``time.process_time`` of its replay,
over the run's model turns) and prints the CPU a turn costs, per source: what the
monitors cost on real agents' texts, beside the benchmark loop's random words.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import figures
from hostinfo import machine_info
from monitor_split import half_of
from stuck_rules import StuckRules
from trestle.core.records.monitors import MonitorSettings
from trestle.monitors import corpus
from trestle.monitors.alerts import Monitor
from trestle.monitors.catalog import CATCHES, default_monitors, hand_written_monitors
from trestle.monitors.evaluate import Evaluation, MonitorSet, evaluate, render
from trestle.monitors.importers import ImportedRun
from trestle.monitors.learnt import LearntMonitor, shipped_detector
from trestle.monitors.trace import RunFacts, Turn

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "trajectories"
# the model of the published OpenHands runs (their folder's README); their logs name none
OPENHANDS_MODEL = "claude-3-5-sonnet-20241022"


def load_runs(root: Path, half: str) -> list[ImportedRun]:
    """The runs under ``root`` in ``half`` (``all`` for both), labelled from the indexes."""

    def in_half(entry: Mapping[str, Any]) -> bool:
        return half == "all" or half_of(str(entry["instance_id"])) == half

    return list(corpus.load_runs([root], include=in_half, model=OPENHANDS_MODEL).runs)


def trestle_monitors(facts: RunFacts) -> Sequence[Monitor]:
    return default_monitors(MonitorSettings())


def openhands_rules(facts: RunFacts) -> Sequence[Monitor]:
    return [StuckRules()]


def learnt_detector(facts: RunFacts) -> Sequence[Monitor]:
    return [LearntMonitor(shipped_detector(), hand_written_monitors(MonitorSettings()))]


def trestle_and_learnt(facts: RunFacts) -> Sequence[Monitor]:
    return [*trestle_monitors(facts), *learnt_detector(facts)]


def trestle_and_reread(facts: RunFacts) -> Sequence[Monitor]:
    return default_monitors(MonitorSettings(reread=True))


# name -> (title, monitor set, whether the catches map applies)
DETECTORS: dict[str, tuple[str, MonitorSet, bool]] = {
    "trestle": ("Trestle's default monitors", trestle_monitors, True),
    "openhands": ("OpenHands' stuck rules", openhands_rules, False),
    "learnt": ("The learnt detector alone", learnt_detector, False),
    "trestle+learnt": (
        "Trestle's default monitors and the learnt detector",
        trestle_and_learnt,
        True,
    ),
    "trestle+reread": (
        "Trestle's default monitors and the reread monitor",
        trestle_and_reread,
        True,
    ),
}


def show(evaluation: Evaluation, outcome_shown: str) -> str:
    """Each run of ``outcome_shown`` that was flagged: its first flags, one per kind."""
    lines = []
    for result in evaluation.results:
        if result.outcome != outcome_shown or result.first() is None:
            continue
        kinds = [f for f in result.flags if f.kind is not None and f.monitor != "*"]
        said = "; ".join(
            f"{f.monitor}/{f.kind} {f.severity} at {f.call_share:.0%}: {f.message[:140]}"
            for f in kinds
        )
        lines.append(f"{result.source} {result.name} ({result.turns} turns): {said}")
    return "\n".join(lines) + "\n"


# bench/published.json's figure -> (source, the share of its runs it is)
PUBLISHED = {
    "monitors_openhands_early": ("openhands", "exhausted_by_half"),
    "monitors_openhands_false": ("openhands", "succeeded_flagged"),
    "monitors_mini_false": ("mini-swe-agent", "succeeded_flagged"),
    "monitors_swe_false": ("swe-agent", "succeeded_flagged"),
}


def record_figures(evaluation: Evaluation, machine: dict[str, str]) -> None:
    """The report half's published shares, in percent, for stale.py."""
    by_source = {s.source: s for s in evaluation.sources}
    for figure, (source, field) in PUBLISHED.items():
        found = by_source.get(source)
        share = getattr(found, field) if found else None
        if share is not None and share.value is not None:
            figures.record(figure, share.value * 100, "%", machine)


def cost(runs: Sequence[ImportedRun], make: MonitorSet) -> str:
    """The CPU a model turn costs ``make``'s monitors on ``runs``, per source: each run
    replayed alone (fresh monitors, as a live run has), its time over its turns."""
    per_turn: dict[str, list[float]] = {}
    for run in runs:
        turns = sum(isinstance(o, Turn) for o in run.observations)
        if turns:
            started = time.process_time()
            evaluate([run], make)
            spent = time.process_time() - started
            per_turn.setdefault(run.source, []).append(spent / turns * 1e6)
    lines = [
        "| source | runs | CPU a turn, median | 90th percentile |",
        "| --- | ---: | ---: | ---: |",
    ]
    for source, costs in sorted(per_turn.items()):
        costs.sort()
        ninetieth = costs[min(len(costs) - 1, int(len(costs) * 0.9))]
        median = statistics.median(costs)
        lines.append(f"| {source} | {len(costs)} | {median:,.0f} µs | {ninetieth:,.0f} µs |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--half", choices=("report", "tune", "all"), default="report")
    parser.add_argument("--detector", choices=(*DETECTORS, "both"), default="both")
    parser.add_argument("--show", choices=("succeeded", "exhausted", "failed"))
    parser.add_argument("--json", type=Path, help="write both evaluations here")
    parser.add_argument("--cost", action="store_true", help="time each detector per turn")
    args = parser.parse_args(argv)
    if not any(args.root.rglob("index.jsonl")):
        print(f"no real runs under {args.root} (a folder per scaffold with its index.jsonl)")
        return 0 if args.root == DEFAULT_ROOT else 2
    machine = machine_info(args.root)  # the load before, too
    runs = load_runs(args.root, args.half)
    print(f"{len(runs)} runs from {args.root} ({args.half} half)\n")
    out: dict[str, Any] = {}
    chosen = ("trestle", "openhands") if args.detector == "both" else (args.detector,)
    for name in chosen:
        title, make, catches = DETECTORS[name]
        evaluation = evaluate(runs, make, None, CATCHES if catches else None)
        print(f"## {title}\n")
        print(render(evaluation))
        if args.show:
            print(show(evaluation, args.show))
        if args.cost:
            print(f"### What a turn costs them\n\n{cost(runs, make)}")
        out[name] = evaluation.model_dump(mode="json")
        if name == "trestle" and args.half == "report" and args.root == DEFAULT_ROOT:
            record_figures(evaluation, machine)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
