"""How well a set of monitors does on recorded runs: who they flag, how early, how rightly.

:func:`evaluate` replays each run through a fresh set of monitors (one set per run,
as in a live run) and records, for every monitor, every alert kind and all of them
together, the first *flag* (an alert of severity warning or critical): at which turn
it came, and which share of the run's calls and of its cost had been spent by then.

With labels it also says how right the flags were. A monitor's flag on a run is a
true positive when the run is labelled with a problem that monitor is meant to catch
(``catches`` maps monitor names to those problems); any flag counts for the overall
figure when the run has any labelled problem. And it computes the project's two
target figures:

- the share of runs that ``exhausted`` a limit which were flagged by half-way (the
  first flag at or before 50% of the run's calls); the target is at least 70%;
- the share of runs that ``succeeded`` which were flagged at all; at most 3%.

Both are given per source (the scaffold's folder a published run came from, else its
format: each scaffold behaves differently, so one pooled figure can hide a source
that misses), as counts with a 95% Wilson score interval, so that a figure resting on
few runs says so.

:func:`render` gives a Markdown table, :func:`to_json` the figures as JSON. Pure:
the runs are already loaded (see :mod:`trestle.monitors.importers`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Collection, Mapping, Sequence

from trestle.core.record import Record
from trestle.core.records.monitors import FLAGGING, Alert, merge_alerts
from trestle.monitors.alerts import Monitor
from trestle.monitors.importers import ImportedRun, Label, Outcome
from trestle.monitors.trace import RunFacts, Turn

TARGET_EXHAUSTED_BY_HALF = 0.70  # at least this share of exhausted runs flagged by half-way
TARGET_SUCCEEDED_FLAGGED = 0.03  # at most this share of succeeded runs flagged at all
HALF_WAY = 0.5
Z_95 = 1.959964  # the normal quantile of a two-sided 95% interval
OVERALL = "*"  # the name the figures of all monitors together go by

MonitorSet = Callable[[RunFacts], Sequence[Monitor]]


class FirstFlag(Record):
    """When one monitor (or one of its alert kinds, or any monitor) first flagged a run.

    Attributes:
        monitor: the monitor's name, or ``*`` for any monitor.
        kind: the alert kind, or ``None`` for any kind of that monitor.
        severity: the first flag's severity.
        turn: the index of the turn it came at (the last turn observed before it).
        call_share: the share of the run's turns observed by then (0 to 1).
        cost_share: the share of the run's cost spent by then, when it cost anything.
        message: what the alert said.
    """

    monitor: str
    kind: str | None
    severity: str
    turn: int | None
    call_share: float
    cost_share: float | None
    message: str


class RunResult(Record):
    """One run's replay: its outcome and problems, and the first flags it got."""

    name: str
    source: str = ""
    outcome: Outcome
    problems: tuple[str, ...]
    turns: int
    cost: float
    alerts: int  # alerts the run would have been given, flags or not, after merging
    flags: tuple[FirstFlag, ...]  # the first per monitor, per (monitor, kind), and overall

    def first(self, monitor: str = OVERALL, kind: str | None = None) -> FirstFlag | None:
        """The first flag of ``monitor`` (of ``kind``, if given); ``*`` for any monitor."""
        return next((f for f in self.flags if f.monitor == monitor and f.kind == kind), None)


class Figures(Record):
    """The figures of one monitor, one alert kind, or all monitors together.

    Attributes:
        monitor: the monitor's name, or ``*``.
        kind: the alert kind, or ``None`` for all of the monitor's kinds.
        runs: runs replayed.
        flagged: runs it flagged.
        median_call_share: over flagged runs, the median share of calls spent at the
            first flag (lower is earlier).
        median_cost_share: the same for cost, over flagged runs that cost anything.
        exhausted_by_half: the share of exhausted runs it flagged by half-way.
        succeeded_flagged: the share of succeeded runs it flagged.
        true_positives, false_positives, false_negatives: with labels and a catches map.
        precision, recall: from those, when defined.
    """

    monitor: str
    kind: str | None = None
    runs: int
    flagged: int
    median_call_share: float | None
    median_cost_share: float | None
    exhausted_by_half: float | None
    succeeded_flagged: float | None
    true_positives: int | None = None
    false_positives: int | None = None
    false_negatives: int | None = None
    precision: float | None = None
    recall: float | None = None


class Share(Record):
    """``part`` of ``whole`` runs, with its 95% Wilson score interval."""

    part: int
    whole: int

    @property
    def value(self) -> float | None:
        return self.part / self.whole if self.whole else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95% Wilson score interval (None when there are no runs)."""
        return wilson(self.part, self.whole)


class SourceFigures(Record):
    """The two target figures for the runs of one source.

    Attributes:
        source: the scaffold's folder the runs were published in, or else the format
            they came from (``swe-agent``, ``openhands``, ...).
        runs: runs of that source replayed.
        exhausted_by_half: exhausted runs flagged by half-way, of exhausted runs.
        succeeded_flagged: succeeded runs flagged at all, of succeeded runs.
    """

    source: str
    runs: int
    exhausted_by_half: Share
    succeeded_flagged: Share


class Evaluation(Record):
    """Everything :func:`evaluate` found."""

    runs: int
    exhausted: int
    succeeded: int
    overall: Figures
    sources: tuple[SourceFigures, ...] = ()
    monitors: tuple[Figures, ...]
    kinds: tuple[Figures, ...]
    results: tuple[RunResult, ...]

    @property
    def meets_targets(self) -> bool:
        """Both target figures met (an empty group fails its target)."""
        by_half = self.overall.exhausted_by_half
        flagged = self.overall.succeeded_flagged
        return (
            by_half is not None
            and flagged is not None
            and by_half >= TARGET_EXHAUSTED_BY_HALF
            and flagged <= TARGET_SUCCEEDED_FLAGGED
        )


def evaluate(
    runs: Sequence[ImportedRun],
    monitors: MonitorSet,
    labels: Mapping[str, Label] | None = None,
    catches: Mapping[str, Collection[str]] | None = None,
) -> Evaluation:
    """Replay ``runs`` through fresh monitors and measure their flags.

    Args:
        runs: the recorded runs.
        monitors: makes a fresh monitor set for a run, given its facts.
        labels: by run name; a label's outcome replaces the run's own.
        catches: monitor name -> the labelled problems it is meant to catch; needed
            for per-monitor precision and recall.
    """
    labels = labels or {}
    results: list[RunResult] = []
    names: list[str] = []  # monitors, in the order they were first seen
    kinds: list[tuple[str, str]] = []
    for run in runs:
        result, seen = _replay(run, monitors, labels.get(run.name))
        results.append(result)
        names += [n for n in seen if n not in names]
        for flag in result.flags:
            pair = (flag.monitor, flag.kind or "")
            if flag.kind is not None and flag.monitor != OVERALL and pair not in kinds:
                kinds.append(pair)
    labelled = bool(labels)
    overall = _figures(results, OVERALL, None, None, labelled)
    per_monitor = tuple(
        _figures(results, name, None, _catch(catches, name), labelled) for name in names
    )
    per_kind = tuple(
        _figures(results, name, kind, _catch(catches, name), labelled)
        for name, kind in sorted(kinds)
    )
    return Evaluation(
        runs=len(results),
        exhausted=sum(r.outcome == "exhausted" for r in results),
        succeeded=sum(r.outcome == "succeeded" for r in results),
        overall=overall,
        sources=tuple(
            _source_figures([r for r in results if r.source == source], source)
            for source in sorted({r.source for r in results})
        ),
        monitors=per_monitor,
        kinds=per_kind,
        results=tuple(results),
    )


def _catch(catches: Mapping[str, Collection[str]] | None, name: str) -> frozenset[str] | None:
    if catches is None or name not in catches:
        return None
    return frozenset(catches[name])


def _replay(run: ImportedRun, make: MonitorSet, label: Label | None) -> tuple[RunResult, list[str]]:
    """Feed one run to a fresh monitor set; keep the first flag per monitor and kind."""
    monitors = list(make(run.facts))
    turns = [o for o in run.observations if isinstance(o, Turn)]
    total_cost = sum(t.cost for t in turns)
    first: dict[tuple[str, str | None], FirstFlag] = {}
    seen_turns = 0
    spent = 0.0
    last_turn: int | None = None
    count = 0
    for item in run.observations:
        if isinstance(item, Turn):
            seen_turns += 1
            spent += item.cost
            last_turn = item.index
        raised = [alert for monitor in monitors for alert in monitor.observe(item, run.facts)]
        count += len(merge_alerts(raised))  # what the run is told, one alert per problem
        for alert in raised:  # each monitor's own flags, for its figures
            if alert.severity not in FLAGGING:
                continue
            flag = _flag(alert, last_turn, seen_turns, len(turns), spent, total_cost)
            for key in ((OVERALL, None), (alert.monitor, None), (alert.monitor, alert.kind)):
                if key not in first:
                    first[key] = flag.model_copy(update={"monitor": key[0], "kind": key[1]})
    result = RunResult(
        name=run.name,
        source=run.group or run.source,
        outcome=label.outcome if label is not None else run.outcome,
        problems=label.problems if label is not None else (),
        turns=len(turns),
        cost=total_cost,
        alerts=count,
        flags=tuple(first.values()),
    )
    return result, [m.name for m in monitors]


def _flag(
    alert: Alert, turn: int | None, seen: int, turns: int, spent: float, cost: float
) -> FirstFlag:
    return FirstFlag(
        monitor=alert.monitor,
        kind=alert.kind,
        severity=alert.severity,
        turn=alert.turn if alert.turn is not None else turn,
        call_share=seen / turns if turns else 0.0,
        cost_share=spent / cost if cost > 0 else None,
        message=alert.message,
    )


def _figures(
    results: Sequence[RunResult],
    monitor: str,
    kind: str | None,
    catches: frozenset[str] | None,
    labelled: bool,
) -> Figures:
    firsts = [(r, r.first(monitor, kind)) for r in results]
    flagged = [(r, f) for r, f in firsts if f is not None]
    exhausted = [f for r, f in firsts if r.outcome == "exhausted"]
    succeeded = [f for r, f in firsts if r.outcome == "succeeded"]
    costs = [f.cost_share for _, f in flagged if f.cost_share is not None]
    figures = Figures(
        monitor=monitor,
        kind=kind,
        runs=len(results),
        flagged=len(flagged),
        median_call_share=statistics.median(f.call_share for _, f in flagged) if flagged else None,
        median_cost_share=statistics.median(costs) if costs else None,
        exhausted_by_half=_share(
            sum(f is not None and f.call_share <= HALF_WAY for f in exhausted), len(exhausted)
        ),
        succeeded_flagged=_share(sum(f is not None for f in succeeded), len(succeeded)),
    )
    if not labelled or (monitor != OVERALL and catches is None):
        return figures

    def positive(result: RunResult) -> bool:
        if monitor == OVERALL:
            return bool(result.problems)
        return bool(catches and catches.intersection(result.problems))

    tp = sum(positive(r) for r, _ in flagged)
    fp = len(flagged) - tp
    fn = sum(positive(r) for r, f in firsts if f is None)
    return figures.model_copy(
        update={
            "true_positives": tp,
            "false_positives": fp,
            "false_negatives": fn,
            "precision": _share(tp, tp + fp),
            "recall": _share(tp, tp + fn),
        }
    )


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def wilson(part: int, whole: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of ``part`` successes in ``whole`` trials (95% by default)."""
    if whole <= 0:
        return None
    p = part / whole
    denominator = 1 + z * z / whole
    centre = (p + z * z / (2 * whole)) / denominator
    spread = z * math.sqrt(p * (1 - p) / whole + z * z / (4 * whole * whole)) / denominator
    return max(0.0, centre - spread), min(1.0, centre + spread)


def _source_figures(results: Sequence[RunResult], source: str) -> SourceFigures:
    exhausted = [r.first() for r in results if r.outcome == "exhausted"]
    succeeded = [r.first() for r in results if r.outcome == "succeeded"]
    early = sum(f is not None and f.call_share <= HALF_WAY for f in exhausted)
    return SourceFigures(
        source=source,
        runs=len(results),
        exhausted_by_half=Share(part=early, whole=len(exhausted)),
        succeeded_flagged=Share(part=sum(f is not None for f in succeeded), whole=len(succeeded)),
    )


# --- output ---------------------------------------------------------------------------


def render(evaluation: Evaluation) -> str:
    """The figures as Markdown: the targets first, then one row per monitor and kind."""
    overall = evaluation.overall
    lines = [
        f"Replayed {evaluation.runs} runs ({evaluation.exhausted} exhausted, "
        f"{evaluation.succeeded} succeeded).",
        "",
        f"- exhausted runs flagged by half-way: {_percent(overall.exhausted_by_half)} "
        f"(target: at least {TARGET_EXHAUSTED_BY_HALF:.0%})",
        f"- succeeded runs flagged: {_percent(overall.succeeded_flagged)} "
        f"(target: at most {TARGET_SUCCEEDED_FLAGGED:.0%})",
        f"- targets met: {'yes' if evaluation.meets_targets else 'no'}",
        "",
        *_source_lines(evaluation.sources),
        "| monitor | kind | flagged | exhausted by half | succeeded flagged "
        "| first flag (calls) | first flag (cost) | precision | recall |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = [overall, *_interleave(evaluation.monitors, evaluation.kinds)]
    for f in rows:
        lines.append(
            f"| {'all' if f.monitor == OVERALL else f.monitor} | {f.kind or ''} "
            f"| {f.flagged}/{f.runs} | {_percent(f.exhausted_by_half)} "
            f"| {_percent(f.succeeded_flagged)} | {_percent(f.median_call_share)} "
            f"| {_percent(f.median_cost_share)} | {_percent(f.precision)} "
            f"| {_percent(f.recall)} |"
        )
    return "\n".join(lines) + "\n"


def _source_lines(sources: Sequence[SourceFigures]) -> list[str]:
    """Per source: the two target figures as counts, shares and 95% intervals."""
    if not sources:
        return []
    lines = [
        "| source | runs | exhausted flagged by half-way | succeeded flagged |",
        "| --- | ---: | ---: | ---: |",
    ]
    for figures in sources:
        lines.append(
            f"| {figures.source} | {figures.runs} | {describe_share(figures.exhausted_by_half)} "
            f"| {describe_share(figures.succeeded_flagged)} |"
        )
    return [*lines, ""]


def describe_share(share: Share) -> str:
    """``12/40 = 30% (95% CI 18-45%)``, or ``-`` of no runs."""
    interval = share.interval
    if interval is None or share.value is None:
        return "- (no runs)"
    low, high = interval
    return f"{share.part}/{share.whole} = {share.value:.0%} (95% CI {low:.0%}-{high:.0%})"


def _interleave(monitors: Sequence[Figures], kinds: Sequence[Figures]) -> list[Figures]:
    """Each monitor's row followed by its kinds' rows."""
    out: list[Figures] = []
    for figures in monitors:
        out.append(figures)
        out += [k for k in kinds if k.monitor == figures.monitor]
    return out


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def to_json(evaluation: Evaluation) -> str:
    """The evaluation as indented JSON (figures and per-run first flags)."""
    return evaluation.model_dump_json(indent=2) + "\n"
