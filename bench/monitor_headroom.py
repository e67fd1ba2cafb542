"""How far simple prefix rules could go: early flags of exhausted runs at few false flags.

For every source of real runs that has exhausted runs (in the calibration set, only
OpenHands), this measures the best early-flag rate that a *simple rule on what a
monitor could have seen by half-way* reaches while flagging at most 3% of the
succeeded runs, fitted on the ``tune`` half of the fixed split (:mod:`monitor_split`)
and scored, unchanged, on the ``report`` half.

What is measured:

- The decision point is half-way through the run's turn limit: a rule sees the turns
  with ``index < limit / 2`` (turns 0-24 of OpenHands' 50 calls, the limit the loader
  gives those runs) and decides once, after them. A run that made no more calls than
  that (it ended by half-way) has no decision point and is never flagged: a succeeded
  run that ended early counts as a succeeded run *not* flagged (it stays in the
  denominator), an exhausted run always reaches half-way (it used the whole budget).
- From those turns, :data:`FEATURES` (about thirty counts, shares and "turns since"
  figures a live monitor could keep) are computed per run.
- A single rule is one feature and a direction: flag when the feature is above
  (``high``) or below (``low``) a threshold. For each, the threshold is chosen on the
  tune half as the one that flags the most exhausted runs of the source while flagging
  at most ``floor(3% x succeeded runs of the source in that half)`` succeeded runs
  (all of them counted, including those that ended early); thresholds are midpoints
  between adjacent observed values, ties go to fewer succeeded runs flagged. A pair
  rule is two single conditions on two different features joined by AND or OR, both
  thresholds chosen together on the tune half the same way (ties broken by search
  order). Each rule is then applied, thresholds unchanged, to the report half.
- Figures are ``k/n = p% (95% CI lo-hi%)`` (Wilson intervals), with ``n`` all
  exhausted (or all succeeded) runs of the source in that half. As context, the
  figures of the best rules fitted *in-sample* (on the report half itself, and on both
  halves pooled) are printed too: they are optimistic, an upper bound on what these
  rule shapes fit.

Limits, honestly:

- It is a search over simple rule shapes (one threshold, or two joined by AND/OR) on
  hand-chosen features. A low figure says that these rules do not separate the runs;
  it is not a proof that no signal exists by half-way (a rule on other features, on the
  text of the task or of the reasoning, or a learnt model might do better).
- The halves are small (tens of runs each), so the 3% limit allows one false flag or
  none, and the intervals are wide: a rule that flags 1 of 47 succeeded runs on tune
  can flag several on report. Searching ~60 single rules and ~3,000 pairs on one half
  picks up chance: the tune figures of the top rules are optimistic by construction,
  the report figures are the honest ones.
- The features lean on the loader's classification of actions (read, edit, test,
  run) and on heuristics (a file is the run's own, e.g. a reproduction script, when
  its first touch was a write; a run "failed" when it exited non-zero or printed
  failure lines). Outcomes come from the indexes, as in ``bench/monitors_real.py``.

Usage::

    python bench/monitor_headroom.py [--root DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from monitors_real import DEFAULT_ROOT, load_runs
from trestle.monitors.evaluate import (
    TARGET_EXHAUSTED_BY_HALF,
    TARGET_SUCCEEDED_FLAGGED,
    Share,
    describe_share,
)
from trestle.monitors.fingerprint import (
    arguments_text,
    command_shape,
    failure_fingerprint,
    observation_digest,
    observation_lines,
)
from trestle.monitors.importers import ImportedRun
from trestle.monitors.trace import Action, Turn

HALF_WAY = 0.5  # the decision point, as a share of the run's turn limit
TOP = 10
HALVES = ("tune", "report")

Direction = Literal["high", "low"]
Op = Literal["and", "or"]

# Each feature, computed on the turns before half-way (the "prefix"), in one line.
FEATURES: dict[str, str] = {
    "edits": "edit actions",
    "source_edits": "edits to files the run did not create (first touch was not a write)",
    "scratch_edits": "edits to files the run created (first touch was a write: scripts)",
    "repro_edits": "edits to a file whose name contains 'repro' (a reproduction script)",
    "reads": "read actions (file views, listings, searches)",
    "tests": "test actions (running tests or a script)",
    "runs": "other shell commands (installs, pipelines)",
    "failing_runs": "test/run actions that failed: non-zero exit or failure lines shown",
    "fail_share": "failing test/run actions, of test/run actions (0 if none)",
    "error_share": "actions whose outcome was an error, of all actions (0 if none)",
    "files_read": "distinct targets read",
    "files_edited": "distinct files written",
    "max_edits_one_file": "most edits made to one file",
    "first_source_edit": "turn of the first edit to a file the run did not create (H if none)",
    "since_edit": "turns since the last edit (H, the prefix length, if none)",
    "since_new_read": "turns since a target was read for the first time (H if none)",
    "since_new_output": "turns since an observation showed a line not shown before (H if none)",
    "repeated_shapes": "read/test/run actions whose command shape was seen before in the run",
    "max_shape_runs": "most test/run actions with one command shape",
    "same_failure_streak": "longest run of identical failure fingerprints for one command shape",
    "distinct_failures": "distinct failure fingerprints of test/run actions",
    "repeated_outputs": "actions whose observation (digest) was shown before",
    "stale_outputs": "actions whose observation showed no line not shown before",
    "undone_edits": "edits that undo an earlier one (undo_edit, or a reversed str_replace)",
    "passed_after_edit": "1 if a test/run passed (exit 0, no failure lines) after the last edit",
    "no_action_share": "turns with no action, of prefix turns",
    "malformed_share": "turns with malformed output, of prefix turns",
    "reasoning_chars": "mean characters of reasoning text per turn",
    "late_reasoning_chars": "mean characters of reasoning text over the prefix's last 5 turns",
    "output_chars": "mean characters of an action's observation",
}


# --- features ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Prefix:
    """One run as seen at half-way: its label, whether it was still running, its features."""

    name: str
    source: str
    half: str
    outcome: str
    calls: int
    limit: int
    running: bool  # it made a call after half-way: a rule could flag it there
    features: Mapping[str, float]


def _parsed(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _paths(action: Action) -> tuple[str, ...]:
    return action.writes or ((action.target,) if action.target else ())


def _since(last: int, seen: int) -> float:
    """Turns since turn ``last`` at the end of a ``seen``-turn prefix; ``seen`` if never."""
    return float(seen - 1 - last) if last >= 0 else float(seen)


def prefix_features(turns: Sequence[Turn], seen: int) -> dict[str, float]:
    """The :data:`FEATURES` of the first ``seen`` turns (those with ``index < seen``)."""
    prefix = [t for t in turns if t.index < seen]
    count: Counter[str] = Counter()
    first_touch: dict[str, str] = {}
    created: set[str] = set()
    edits_per_file: Counter[str] = Counter()
    read_targets: set[str] = set()
    shapes: Counter[str] = Counter()
    run_shapes: Counter[str] = Counter()
    last_failure: dict[str, tuple[str, ...]] = {}
    streak: Counter[str] = Counter()
    failures: set[tuple[str, ...]] = set()
    digests: set[str] = set()
    lines_seen: set[int] = set()
    replaced: dict[str, set[tuple[str, str]]] = {}
    last_edit = last_new_read = last_new_output = first_source_edit = -1
    passed_after_edit = False
    longest_streak = 0
    actions = 0
    output_chars = 0
    for turn in prefix:
        i = turn.index
        count["no_action"] += not turn.actions
        count["malformed"] += turn.problem is not None
        for action in turn.actions:
            actions += 1
            output_chars += len(action.output)
            count["errors"] += action.ok is False
            if action.output.strip():
                digest = observation_digest(action.output)
                count["repeated_outputs"] += digest in digests
                digests.add(digest)
                lines = observation_lines(action.output)
                if lines and not lines <= lines_seen:
                    last_new_output = i
                elif lines:
                    count["stale_outputs"] += 1
                lines_seen |= lines
            if action.kind == "edit":
                count["edits"] += 1
                last_edit = i
                passed_after_edit = False
                paths = _paths(action)
                for path in paths:
                    if path not in first_touch:
                        first_touch[path] = "write"
                        created.add(path)
                    edits_per_file[path] += 1
                if any(path not in created for path in paths):
                    count["source_edits"] += 1
                    if first_source_edit < 0:
                        first_source_edit = i
                else:
                    count["scratch_edits"] += 1
                if any("repro" in path.rsplit("/", 1)[-1].lower() for path in paths):
                    count["repro_edits"] += 1
                args = _parsed(action.arguments)
                path = str(args.get("path", action.target))
                old, new = args.get("old_str"), args.get("new_str")
                if args.get("command") == "undo_edit":
                    count["undone_edits"] += 1
                elif isinstance(old, str) and isinstance(new, str):
                    done = replaced.setdefault(path, set())
                    count["undone_edits"] += (new, old) in done
                    done.add((old, new))
                continue
            if action.kind not in ("read", "test", "run"):
                continue
            shape = command_shape(arguments_text(action.arguments))
            count["repeated_shapes"] += shape in shapes
            shapes[shape] += 1
            if action.kind == "read":
                count["reads"] += 1
                if action.target:
                    first_touch.setdefault(action.target, "read")
                    if action.target not in read_targets:
                        last_new_read = i
                    read_targets.add(action.target)
                continue
            count["tests" if action.kind == "test" else "runs"] += 1
            run_shapes[shape] += 1
            fingerprint = failure_fingerprint(action.output, failed=action.ok is False)
            if action.ok is False or fingerprint:
                count["failing_runs"] += 1
            elif action.ok is True and last_edit >= 0:
                passed_after_edit = True
            if fingerprint:
                failures.add(fingerprint)
                same = last_failure.get(shape) == fingerprint
                streak[shape] = streak[shape] + 1 if same else 1
                last_failure[shape] = fingerprint
            else:
                streak[shape] = 0
                last_failure.pop(shape, None)
            longest_streak = max(longest_streak, streak[shape])
    executed = count["tests"] + count["runs"]
    late = prefix[-5:]
    features = {
        "edits": count["edits"],
        "source_edits": count["source_edits"],
        "scratch_edits": count["scratch_edits"],
        "repro_edits": count["repro_edits"],
        "reads": count["reads"],
        "tests": count["tests"],
        "runs": count["runs"],
        "failing_runs": count["failing_runs"],
        "fail_share": count["failing_runs"] / executed if executed else 0.0,
        "error_share": count["errors"] / actions if actions else 0.0,
        "files_read": len(read_targets),
        "files_edited": len(edits_per_file),
        "max_edits_one_file": max(edits_per_file.values(), default=0),
        "first_source_edit": first_source_edit if first_source_edit >= 0 else seen,
        "since_edit": _since(last_edit, seen),
        "since_new_read": _since(last_new_read, seen),
        "since_new_output": _since(last_new_output, seen),
        "repeated_shapes": count["repeated_shapes"],
        "max_shape_runs": max(run_shapes.values(), default=0),
        "same_failure_streak": longest_streak,
        "distinct_failures": len(failures),
        "repeated_outputs": count["repeated_outputs"],
        "stale_outputs": count["stale_outputs"],
        "undone_edits": count["undone_edits"],
        "passed_after_edit": 1.0 if passed_after_edit else 0.0,
        "no_action_share": count["no_action"] / len(prefix) if prefix else 0.0,
        "malformed_share": count["malformed"] / len(prefix) if prefix else 0.0,
        "reasoning_chars": sum(len(t.text) for t in prefix) / len(prefix) if prefix else 0.0,
        "late_reasoning_chars": sum(len(t.text) for t in late) / len(late) if late else 0.0,
        "output_chars": output_chars / actions if actions else 0.0,
    }
    assert list(features) == list(FEATURES), "every feature is documented, in order"
    return {name: float(value) for name, value in features.items()}


def half_way(limit: int, share: float = HALF_WAY) -> int:
    """How many turns a rule sees: those with ``index < limit * share``."""
    return math.ceil(limit * share)


def prefix_of(run: ImportedRun, half: str, share: float = HALF_WAY) -> Prefix | None:
    """``run`` at its decision point; None when it records no turn limit."""
    limit = run.facts.turn_limit
    if limit is None:
        return None
    seen = half_way(limit, share)
    turns = run.turns
    return Prefix(
        name=run.name,
        source=run.group or run.source,
        half=half,
        outcome=run.outcome,
        calls=len(turns),
        limit=limit,
        running=any(t.index >= seen for t in turns),
        features=prefix_features(turns, seen),
    )


def load_prefixes(root: Path, share: float = HALF_WAY) -> tuple[list[Prefix], int]:
    """Every run under ``root`` at its decision point, and how many had no turn limit."""
    out: list[Prefix] = []
    unlimited = 0
    for half in HALVES:
        for run in load_runs(root, half):
            prefix = prefix_of(run, half, share)
            if prefix is None:
                unlimited += 1
            else:
                out.append(prefix)
    return out, unlimited


# --- rules -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """``feature > threshold`` (high) or ``feature < threshold`` (low)."""

    feature: str
    direction: Direction
    threshold: float

    def holds(self, run: Prefix) -> bool:
        value = run.features[self.feature]
        return value > self.threshold if self.direction == "high" else value < self.threshold

    def __str__(self) -> str:
        return f"{self.feature} {'>' if self.direction == 'high' else '<'} {self.threshold:g}"


@dataclass(frozen=True)
class Rule:
    """One condition, or two joined by AND or OR; flags a run only if it is running."""

    conditions: tuple[Condition, ...]
    op: Op = "and"

    def flags(self, run: Prefix) -> bool:
        if not run.running:
            return False
        held = (c.holds(run) for c in self.conditions)
        return all(held) if self.op == "and" else any(held)

    def __str__(self) -> str:
        return f" {self.op.upper()} ".join(str(c) for c in self.conditions)


@dataclass(frozen=True)
class Tally:
    """What a rule flags among one half's runs of one source."""

    exhausted_flagged: int
    exhausted: int
    succeeded_flagged: int
    succeeded: int
    exhausted_running: int
    succeeded_running: int

    @property
    def score(self) -> tuple[int, int]:
        return self.exhausted_flagged, -self.succeeded_flagged


def allowed_false_flags(succeeded: int, limit: float = TARGET_SUCCEEDED_FLAGGED) -> int:
    """The most succeeded runs of ``succeeded`` a rule may flag: ``floor(limit x n)``."""
    return math.floor(limit * succeeded + 1e-9)


def tally(rule: Rule | None, runs: Iterable[Prefix]) -> Tally:
    counts: Counter[str] = Counter()
    for run in runs:
        if run.outcome not in ("exhausted", "succeeded"):
            continue
        counts[run.outcome] += 1
        counts[f"{run.outcome}_running"] += run.running
        counts[f"{run.outcome}_flagged"] += rule is not None and rule.flags(run)
    return Tally(
        exhausted_flagged=counts["exhausted_flagged"],
        exhausted=counts["exhausted"],
        succeeded_flagged=counts["succeeded_flagged"],
        succeeded=counts["succeeded"],
        exhausted_running=counts["exhausted_running"],
        succeeded_running=counts["succeeded_running"],
    )


@dataclass(frozen=True)
class _Step:
    """One threshold of a condition, with the scored runs it flags as bit masks."""

    condition: Condition
    exhausted: int
    succeeded: int


def _chain(runs: Sequence[Prefix], feature: str, direction: Direction) -> list[_Step]:
    """Every distinct threshold of ``feature`` in ``direction``, tightest first.

    ``runs`` are the scored ones (running, exhausted or succeeded); bit ``i`` of a mask
    is ``runs[i]``. The thresholds are midpoints between adjacent distinct values, and
    one past the last value (flag them all); each step flags a superset of the last.
    """
    values = sorted({r.features[feature] for r in runs}, reverse=direction == "high")
    if not values:
        return []
    step = -1.0 if direction == "high" else 1.0
    thresholds = [(a + b) / 2 for a, b in pairwise(values)]
    thresholds.append(values[-1] + step)
    out = []
    for threshold in thresholds:
        condition = Condition(feature, direction, threshold)
        exhausted = succeeded = 0
        for i, run in enumerate(runs):
            if condition.holds(run):
                if run.outcome == "exhausted":
                    exhausted |= 1 << i
                else:
                    succeeded |= 1 << i
        out.append(_Step(condition, exhausted, succeeded))
    return out


def _best_single(chain: Sequence[_Step], allowed: int) -> _Step | None:
    """The step flagging most exhausted runs within ``allowed`` succeeded ones."""
    best: _Step | None = None
    for step in chain:  # nested masks: the loosest step within the limit flags most
        if step.succeeded.bit_count() > allowed:
            break
        if best is None or step.exhausted.bit_count() > best.exhausted.bit_count():
            best = step
    return best


def _best_pair(
    a: Sequence[_Step], b: Sequence[_Step], op: Op, allowed: int
) -> tuple[int, int, _Step, _Step] | None:
    """The pair of steps (one of ``a``, one of ``b``) whose AND (or OR) flags the most
    exhausted runs within ``allowed`` succeeded ones (then the fewest succeeded).

    Both chains are nested, so as ``a`` loosens the loosest ``b`` within the limit can
    only tighten: one pass over each, and a look back over ``b`` for ties.
    """

    def joined(x: int, y: int) -> int:
        return (x & y if op == "and" else x | y).bit_count()

    if op == "or":  # each side alone must be within the limit
        a = [s for s in a if s.succeeded.bit_count() <= allowed]
        b = [s for s in b if s.succeeded.bit_count() <= allowed]
    best: tuple[int, int, _Step, _Step] | None = None
    j = len(b) - 1
    for step in a:
        while j >= 0 and joined(step.succeeded, b[j].succeeded) > allowed:
            j -= 1
        if j < 0:
            break
        flagged = joined(step.exhausted, b[j].exhausted)
        false = joined(step.succeeded, b[j].succeeded)
        chosen = b[j]
        k = j - 1
        while k >= 0 and joined(step.exhausted, b[k].exhausted) == flagged:
            if joined(step.succeeded, b[k].succeeded) < false:
                false, chosen = joined(step.succeeded, b[k].succeeded), b[k]
            k -= 1
        if best is None or (flagged, -false) > (best[0], -best[1]):
            best = (flagged, false, step, chosen)
    return best


@dataclass(frozen=True)
class Found:
    """A rule chosen on the fitting runs, with its figures there and on the scored runs."""

    rule: Rule
    fit: Tally
    scored: Tally


@dataclass
class Search:
    """The best rules of each shape, fitted on some runs and scored on others."""

    allowed: int  # succeeded runs the fitting half may flag
    singles: list[Found] = field(default_factory=list)  # every feature and direction
    pairs: list[Found] = field(default_factory=list)  # the best ``top``, best first
    unfit: list[str] = field(default_factory=list)  # feature/direction with no threshold


def _ranked(found: Iterable[Found]) -> list[Found]:
    return sorted(found, key=lambda f: (-f.fit.score[0], -f.fit.score[1], str(f.rule)))


def search(
    fit: Sequence[Prefix],
    scored: Sequence[Prefix],
    *,
    top: int = TOP,
    pairs: bool = True,
    limit: float = TARGET_SUCCEEDED_FLAGGED,
) -> Search:
    """Choose thresholds on ``fit`` (one source's runs of one half) and score them on
    ``scored`` (the same source's runs of the other half, or the same runs)."""
    candidates = [r for r in fit if r.running and r.outcome in ("exhausted", "succeeded")]
    allowed = allowed_false_flags(sum(r.outcome == "succeeded" for r in fit), limit)
    out = Search(allowed=allowed)
    directions: tuple[Direction, ...] = ("high", "low")
    chains = {(f, d): _chain(candidates, f, d) for f in FEATURES for d in directions}

    def found(rule: Rule) -> Found:
        return Found(rule=rule, fit=tally(rule, fit), scored=tally(rule, scored))

    for (feature, direction), chain in chains.items():
        step = _best_single(chain, allowed)
        if step is None:
            out.unfit.append(f"{feature} {direction}")
        else:
            out.singles.append(found(Rule((step.condition,))))
    out.singles = _ranked(out.singles)
    if not pairs:
        return out
    keys = list(chains)
    best: list[tuple[int, int, Rule]] = []
    for i, key_a in enumerate(keys):
        for key_b in keys[i + 1 :]:
            if key_a[0] == key_b[0]:
                continue  # one feature twice is a band, not a pair of signals
            ops: tuple[Op, ...] = ("and", "or")
            for op in ops:
                pair = _best_pair(chains[key_a], chains[key_b], op, allowed)
                if pair is not None and pair[0] > 0:
                    rule = Rule((pair[2].condition, pair[3].condition), op)
                    best.append((pair[0], pair[1], rule))
    best.sort(key=lambda p: (-p[0], p[1], str(p[2])))
    out.pairs = [found(rule) for _, _, rule in best[:top]]
    return out


# --- output ----------------------------------------------------------------------------


def share(part: int, whole: int) -> str:
    """``k/n = p% (95% CI lo-hi%)`` (a Wilson interval), as ``trestle monitors eval``
    writes it."""
    return describe_share(Share(part=part, whole=whole))


def _rows(found: Sequence[Found], fit: str, scored: str) -> list[str]:
    lines = [
        f"| # | rule | {fit}: exhausted flagged | {fit}: succeeded flagged "
        f"| {scored}: exhausted flagged | {scored}: succeeded flagged |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for i, f in enumerate(found, 1):
        lines.append(
            f"| {i} | `{f.rule}` "
            f"| {share(f.fit.exhausted_flagged, f.fit.exhausted)} "
            f"| {share(f.fit.succeeded_flagged, f.fit.succeeded)} "
            f"| {share(f.scored.exhausted_flagged, f.scored.exhausted)} "
            f"| {share(f.scored.succeeded_flagged, f.scored.succeeded)} |"
        )
    return lines


def _found_json(f: Found) -> dict[str, Any]:
    return {
        "rule": str(f.rule),
        "op": f.rule.op,
        "conditions": [asdict(c) for c in f.rule.conditions],
        "fit": asdict(f.fit),
        "scored": asdict(f.scored),
    }


def report_source(source: str, runs: Sequence[Prefix]) -> tuple[str, dict[str, Any]]:
    """The tables for one source's runs (both halves), and the same as JSON."""
    tune = [r for r in runs if r.half == "tune"]
    report = [r for r in runs if r.half == "report"]
    limits = sorted({r.limit for r in runs})
    seen = sorted({half_way(limit) for limit in limits})
    lines = [
        f"## {source}",
        "",
        f"Turn limit {', '.join(map(str, limits))}: a rule sees turns 0-{seen[-1] - 1} "
        f"(index < limit/2) and decides after call {seen[-1]}. A run with no call after "
        "that ended by half-way: never flagged (a succeeded one counts as not flagged).",
        "",
        "Runs still running at half-way (a call after it), of the runs in each half:",
        "",
        "| half | exhausted | succeeded | failed |",
        "| --- | ---: | ---: | ---: |",
    ]
    running: dict[str, dict[str, list[int]]] = {}
    for half, members in (("tune", tune), ("report", report)):
        row = {}
        for outcome in ("exhausted", "succeeded", "failed"):
            those = [r for r in members if r.outcome == outcome]
            row[outcome] = [sum(r.running for r in those), len(those)]
        running[half] = row
        lines.append(
            f"| {half} | "
            + " | ".join(f"{row[o][0]}/{row[o][1]}" for o in ("exhausted", "succeeded", "failed"))
            + " |"
        )
    main = search(tune, report)
    in_report = search(report, report, top=1)
    pooled = search(runs, runs, top=1)
    report_allowed = allowed_false_flags(sum(r.outcome == "succeeded" for r in report))
    lines += [
        "",
        f"False-flag limit ({TARGET_SUCCEEDED_FLAGGED:.0%} of succeeded runs): a rule may flag "
        f"at most {main.allowed} succeeded run(s) on tune (and would meet it on report with "
        f"at most {report_allowed}). Target: at least {TARGET_EXHAUSTED_BY_HALF:.0%} of "
        "exhausted runs flagged by half-way.",
        "",
        f"### Top {TOP} single rules (threshold chosen on tune; "
        f"{len(main.singles)} of {2 * len(FEATURES)} feature/direction have one)",
        "",
        *_rows(main.singles[:TOP], "tune", "report"),
        "",
        f"### Top {TOP} pairs (AND/OR of two features, thresholds chosen together on tune)",
        "",
        *_rows(main.pairs, "tune", "report"),
        "",
        "### In-sample bounds (optimistic: thresholds fitted on the very runs scored)",
        "",
        "| fitted and scored on | shape | rule | exhausted flagged | succeeded flagged |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    for where, found in (("report", in_report), ("both halves", pooled)):
        for shape, best in (("single", found.singles[:1]), ("pair", found.pairs[:1])):
            if not best:
                lines.append(f"| {where} | {shape} | (none within the limit) | | |")
                continue
            f = best[0]
            lines.append(
                f"| {where} | {shape} | `{f.rule}` "
                f"| {share(f.fit.exhausted_flagged, f.fit.exhausted)} "
                f"| {share(f.fit.succeeded_flagged, f.fit.succeeded)} |"
            )
    reached = [f for f in (*main.singles, *main.pairs) if _meets(f.scored)]
    lines += [
        "",
        f"Rules meeting both targets on report: {len(reached)} "
        f"(of the {len(main.singles)} single rules and the top {len(main.pairs)} pairs).",
        "",
    ]
    data = {
        "limits": limits,
        "seen_turns": seen,
        "running": running,
        "allowed_false_flags": {"tune": main.allowed, "report": report_allowed},
        "singles": [_found_json(f) for f in main.singles],
        "no_threshold": main.unfit,
        "pairs": [_found_json(f) for f in main.pairs],
        "in_sample": {
            "report": [_found_json(f) for f in (*in_report.singles[:1], *in_report.pairs)],
            "both": [_found_json(f) for f in (*pooled.singles[:1], *pooled.pairs)],
        },
        "runs": [asdict(r) for r in runs],
    }
    return "\n".join(lines), data


def _meets(t: Tally) -> bool:
    return (
        t.exhausted > 0
        and t.exhausted_flagged >= TARGET_EXHAUSTED_BY_HALF * t.exhausted
        and t.succeeded_flagged <= TARGET_SUCCEEDED_FLAGGED * t.succeeded
    )


def sources_with_exhausted(runs: Sequence[Prefix]) -> list[str]:
    return sorted({r.source for r in runs if r.outcome == "exhausted"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--json", type=Path, help="write the figures and features here")
    args = parser.parse_args(argv)
    if not any(args.root.rglob("index.jsonl")):
        print(f"no real runs under {args.root} (a folder per scaffold with its index.jsonl)")
        return 0 if args.root == DEFAULT_ROOT else 2
    started = time.perf_counter()
    runs, unlimited = load_prefixes(args.root)
    by_source = Counter((r.source, r.outcome) for r in runs)
    sources = sorted({r.source for r in runs})
    print("# Early-flag headroom of simple prefix rules\n")
    print(f"{len(runs)} runs from {args.root}; by source (exhausted/succeeded/failed):")
    for source in sources:
        n = [by_source[(source, o)] for o in ("exhausted", "succeeded", "failed")]
        print(f"- {source}: {n[0]}/{n[1]}/{n[2]}")
    if unlimited:
        print(f"- {unlimited} run(s) record no turn limit: left out")
    chosen = sources_with_exhausted(runs)
    skipped = [s for s in sources if s not in chosen]
    if skipped:
        print(f"No exhausted runs, not searched: {', '.join(skipped)}")
    print()
    out: dict[str, Any] = {
        "root": str(args.root),
        "half_way": HALF_WAY,
        "features": FEATURES,
        "sources": {},
    }
    for source in chosen:
        text, data = report_source(source, [r for r in runs if r.source == source])
        print(text)
        out["sources"][source] = data
    print(f"({time.perf_counter() - started:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
