"""The monitors as budget saved against successes lost, on real agent runs.

Beside the two target rates (:mod:`monitors_real`), a figure in the units a user pays
in: if every run had been stopped at the monitors' first alert of a given action
level, how much of the budget spent by runs that ended at their limit (``exhausted``)
would have been saved, and how many runs that succeeded would have been lost.

Each run is replayed through a fresh set of the default monitors, as in a live run;
the alerts raised on one observation are merged as the runtime merges them
(:func:`~trestle.core.records.monitors.merge_alerts`), and each merged alert gets the
action the monitor settings give it (:meth:`MonitorSettings.action_for`; a recorded
run is one agent step, so steering actions count). The levels, weakest first:

- ``warn``: the action is ``inject`` or stronger (the agent is told; a warning by
  default): the run stopped at its first warning;
- ``pause``: ``pause`` or ``stop`` (a critical alert by default). This is where the
  default policy itself halts a run, until a human approves going on;
- ``stop``: ``stop``. No alert kind stops a run under the default settings, so this
  level is empty unless the settings say otherwise.

A run stopped at an alert raised after its ``k``-th model call saves what its calls
after the ``k``-th spent: calls, and dollars and tokens where the run records them.
Budget saved is the saved share of all that the exhausted runs of a source spent (a
ratio of sums), with a 95% percentile bootstrap interval over runs (a fixed seed, so a
rerun prints the same). Successes lost are the succeeded runs with such an alert, with
a 95% Wilson score interval.

``replan`` ("sent back to plan": the step's attempt ends and it starts again from a
fresh conversation told why) is the runtime's other action that cuts an attempt
short. On a recorded run it cannot be scored exactly: what the fresh attempt would
have done was never recorded. At the same alert it cuts the same calls as a stop,
then spends a new attempt's calls, and a succeeded run is put at risk, not certainly
lost. So the ``warn`` row (which ``replan`` falls in) is an upper bound for
``replan`` on both sides.

Usage::

    python bench/monitor_savings.py [--root DIR] [--half report|tune|all]
        [--detector trestle|learnt|trestle+learnt] [--seed N] [--resamples N] [--json FILE]

``--detector`` picks the monitors replayed, as in ``bench/monitors_real.py``: the
default ones (the default), the learnt detector alone (it only warns), or both.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from monitors_real import (
    DEFAULT_ROOT,
    learnt_detector,
    load_runs,
    trestle_and_learnt,
    trestle_monitors,
)
from trestle.core.records.monitors import ACTION_ORDER, MonitorAction, MonitorSettings, merge_alerts
from trestle.monitors.evaluate import MonitorSet, Share, describe_share
from trestle.monitors.importers import ImportedRun
from trestle.monitors.trace import Turn

Level = Literal["warn", "pause", "stop"]
LEVELS: tuple[Level, ...] = ("warn", "pause", "stop")
# the weakest action that reaches each level
LEVEL_ACTION: dict[Level, MonitorAction] = {"warn": "inject", "pause": "pause", "stop": "stop"}
# the monitors replayed (--detector), as bench/monitors_real.py names them
MONITOR_SETS: dict[str, MonitorSet] = {
    "trestle": trestle_monitors,
    "learnt": learnt_detector,
    "trestle+learnt": trestle_and_learnt,
}
RESAMPLES = 2000
SEED = 20261125


@dataclass(frozen=True)
class RunSpend:
    """One replayed run: what each call spent, and when each level's first alert came.

    Attributes:
        name: the run's file name.
        source: the scaffold's folder it was published in, else its format.
        outcome: succeeded, exhausted, failed or unknown.
        costs: dollars per model call, in order (zeros when the run records none).
        tokens: tokens per model call (zeros when unrecorded).
        first: per level, the number of calls made when its first alert came (``None``:
            no alert of that level).
    """

    name: str
    source: str
    outcome: str
    costs: tuple[float, ...]
    tokens: tuple[int, ...]
    first: Mapping[Level, int | None]

    @property
    def calls(self) -> int:
        return len(self.costs)


@dataclass(frozen=True)
class Budget:
    """One unit of budget (calls, dollars or tokens) over a source's exhausted runs.

    Attributes:
        spent: all the runs spent.
        saved: what they spent after the first alert (of the runs that had one).
        share: ``saved / spent``.
        low, high: its 95% percentile bootstrap interval over runs.
    """

    spent: float
    saved: float
    share: float
    low: float
    high: float


@dataclass(frozen=True)
class Savings:
    """One source at one level.

    Attributes:
        source: as in :class:`RunSpend`.
        level: the action level.
        exhausted: exhausted runs.
        stopped: of those, runs with an alert at the level (the ones that save anything).
        calls, cost, tokens: budget saved, per unit (``None``: no exhausted run, or the
            runs record none of that unit).
        lost: succeeded runs with an alert at the level, of succeeded runs.
    """

    source: str
    level: Level
    exhausted: int
    stopped: int
    calls: Budget | None
    cost: Budget | None
    tokens: Budget | None
    lost: Share


def reaches(action: MonitorAction, level: Level) -> bool:
    """Whether ``action`` is at or above ``level``."""
    return ACTION_ORDER.index(action) >= ACTION_ORDER.index(LEVEL_ACTION[level])


def replay(run: ImportedRun, make: MonitorSet, settings: MonitorSettings) -> RunSpend:
    """Feed one run to fresh monitors; note when each level's first alert came."""
    monitors = list(make(run.facts))
    turns = [o for o in run.observations if isinstance(o, Turn)]
    first: dict[Level, int | None] = dict.fromkeys(LEVELS)
    calls = 0
    for item in run.observations:
        if isinstance(item, Turn):
            calls += 1
        raised = [alert for monitor in monitors for alert in monitor.observe(item, run.facts)]
        for alert in merge_alerts(raised):  # the runtime acts on merged alerts
            action = settings.action_for(alert, agent_step=True)
            for level in LEVELS:
                if first[level] is None and reaches(action, level):
                    first[level] = calls
    return RunSpend(
        name=run.name,
        source=run.group or run.source,
        outcome=run.outcome,
        costs=tuple(t.cost for t in turns),
        tokens=tuple(t.tokens for t in turns),
        first=first,
    )


def savings(
    runs: Sequence[RunSpend], level: Level, *, seed: int = SEED, resamples: int = RESAMPLES
) -> Savings:
    """Budget saved and successes lost for ``runs`` (one source's) stopped at ``level``.

    Raises:
        ValueError: the runs come from more than one source, or ``resamples`` < 1.
    """
    sources = {r.source for r in runs}
    if len(sources) > 1:
        raise ValueError(f"savings: runs of several sources {sorted(sources)}; give one")
    if resamples < 1:
        raise ValueError(f"savings: resamples must be at least 1, not {resamples}")
    exhausted = [r for r in runs if r.outcome == "exhausted"]
    succeeded = [r for r in runs if r.outcome == "succeeded"]

    def unit(per_call: Sequence[Sequence[float]]) -> Budget | None:
        pairs = [
            (sum(spent), sum(spent[stop:]) if stop is not None else 0.0)
            for spent, stop in zip(per_call, (r.first[level] for r in exhausted), strict=True)
        ]
        return _budget(pairs, seed, resamples)

    return Savings(
        source=next(iter(sources), ""),
        level=level,
        exhausted=len(exhausted),
        stopped=sum(r.first[level] is not None for r in exhausted),
        calls=unit([[1.0] * r.calls for r in exhausted]),
        cost=unit([r.costs for r in exhausted]),
        tokens=unit([[float(t) for t in r.tokens] for r in exhausted]),
        lost=Share(part=sum(r.first[level] is not None for r in succeeded), whole=len(succeeded)),
    )


def _budget(pairs: Sequence[tuple[float, float]], seed: int, resamples: int) -> Budget | None:
    """The saved share of what was spent, with a percentile bootstrap over the runs."""
    spent = sum(s for s, _ in pairs)
    if spent <= 0:
        return None  # no runs, or none recorded this unit
    saved = sum(v for _, v in pairs)
    pairs = sorted(pairs)  # the runs' order (as listed, or by figure) changes nothing,
    draw = random.Random(seed)  # nor does the order figures are made in: a stream each
    shares = []
    for _ in range(resamples):
        sample = draw.choices(pairs, k=len(pairs))
        total = sum(s for s, _ in sample)
        shares.append(sum(v for _, v in sample) / total if total > 0 else 0.0)
    shares.sort()
    return Budget(
        spent=spent,
        saved=saved,
        share=saved / spent,
        low=shares[int(0.025 * (resamples - 1))],
        high=shares[int(0.975 * (resamples - 1))],
    )


def measure(
    runs: Sequence[RunSpend], *, seed: int = SEED, resamples: int = RESAMPLES
) -> list[Savings]:
    """:func:`savings` for every source (sorted) at every level."""
    return [
        savings([r for r in runs if r.source == source], level, seed=seed, resamples=resamples)
        for source in sorted({r.source for r in runs})
        for level in LEVELS
    ]


# --- output ---------------------------------------------------------------------------


def render(figures: Sequence[Savings]) -> str:
    """One Markdown row per source and level."""
    lines = [
        "| source | stop at first | exhausted runs stopped | calls saved "
        "| cost saved | tokens saved | succeeded runs lost |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for f in figures:
        level = f"{f.level} (default policy)" if f.level == "pause" else f.level
        stopped = f"{f.stopped}/{f.exhausted}" if f.exhausted else "no exhausted runs"
        lines.append(
            f"| {f.source} | {level} | {stopped} | {_budget_text(f.calls, f.exhausted, '')} "
            f"| {_budget_text(f.cost, f.exhausted, '$')} "
            f"| {_budget_text(f.tokens, f.exhausted, '')} | {describe_share(f.lost)} |"
        )
    return "\n".join(lines) + "\n"


def _budget_text(budget: Budget | None, runs: int, unit: str) -> str:
    if budget is None:
        return "-" if runs else "- (no runs)"
    amount = f"{budget.saved:,.2f}" if unit == "$" else f"{budget.saved:,.0f}"
    total = f"{budget.spent:,.2f}" if unit == "$" else f"{budget.spent:,.0f}"
    return (
        f"{unit}{amount} of {unit}{total} = {budget.share:.0%} "
        f"(95% CI {budget.low:.0%}-{budget.high:.0%})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--half", choices=("report", "tune", "all"), default="report")
    parser.add_argument("--detector", choices=tuple(MONITOR_SETS), default="trestle")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--resamples", type=int, default=RESAMPLES)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if args.resamples < 1:
        parser.error(f"--resamples must be at least 1, not {args.resamples}")
    if not any(args.root.rglob("index.jsonl")):
        print(f"no real runs under {args.root} (a folder per scaffold with its index.jsonl)")
        return 0 if args.root == DEFAULT_ROOT else 2
    runs = load_runs(args.root, args.half)
    settings = MonitorSettings()
    make = MONITOR_SETS[args.detector]
    spends = [replay(run, make, settings) for run in runs]
    figures = measure(spends, seed=args.seed, resamples=args.resamples)
    print(
        f"{len(runs)} runs from {args.root} ({args.half} half), monitors: {args.detector}; "
        f"each stopped at its first "
        f"alert of a level, by the default monitor settings' action for it; bootstrap "
        f"intervals: {args.resamples} resamples of runs, seed {args.seed}; successes lost: "
        f"Wilson\n"
    )
    print(render(figures))
    if args.json:
        out = [asdict(f) | {"lost": f.lost.model_dump()} for f in figures]
        args.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
