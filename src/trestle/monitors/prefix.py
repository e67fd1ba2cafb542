"""A run so far as a few numbers: the features a learnt detector reads at a turn.

:class:`PrefixFeatures` is fed a run's turns in order (and the alerts the other
monitors raised on them) and gives, at any point, :data:`FEATURES`: what the run has
done so far (edits, reads, tests, other commands), how often it repeated itself
(command shapes seen before, observations shown before, outputs with nothing new),
how often things went wrong (errors, failing runs, malformed turns), how big its
observations are, how far into its turn limit it is, and how many alerts of each
family the hand-written monitors raised (notes included: a note is a weak signal, and
several may add up).

Counts are given as ``log(1 + n)``: the tenth repeat says less than the first, and a
model over them then weighs a doubling alike at any size. Shares are in 0..1. Pure:
no IO, and the same turns give the same numbers.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping

from trestle.core.records.monitors import Alert
from trestle.monitors.fingerprint import (
    arguments_text,
    command_shape,
    failure_fingerprint,
    observation_digest,
    observation_lines,
)
from trestle.monitors.trace import Turn

# The monitor families whose alerts are counted, by the monitor names they gather.
ALERT_FAMILIES: dict[str, frozenset[str]] = {
    "loop": frozenset({"repeat", "cycle", "progress", "exploration"}),
    "test_rerun": frozenset({"test_rerun"}),
    "drift": frozenset({"drift", "scope"}),
    "format": frozenset({"format", "monologue"}),
    "cost": frozenset({"cost", "context", "duration"}),
}

# Each feature in one line; the order is the order of a model's weights.
FEATURES: dict[str, str] = {
    "limit_share": "turns so far, of the run's turn limit (0 when it has none)",
    "edits": "edit actions (log 1+n)",
    "reads": "read actions: views, listings, searches (log 1+n)",
    "tests": "test actions (log 1+n)",
    "runs": "other shell commands (log 1+n)",
    "files_edited": "distinct files written (log 1+n)",
    "max_edits_one_file": "most edits made to one file (log 1+n)",
    "error_share": "actions whose outcome was an error, of all actions",
    "fail_share": "test/run actions that failed (exit or failure lines), of those actions",
    "repeated_commands": "read/test/run actions whose command shape was seen before, of those",
    "repeated_outputs": "actions whose observation was shown before, of actions with output",
    "stale_outputs": "actions whose observation showed no line not shown before, of those",
    "since_edit": "turns since the last edit, of turns so far (1 when none)",
    "since_new_output": "turns since an observation showed something new, of turns so far",
    "no_action_share": "turns with no action, of turns so far",
    "malformed_share": "turns with malformed output, of turns so far",
    "output_chars": "mean characters of an observation (log 1+n)",
    "reasoning_chars": "mean characters of reasoning per turn (log 1+n)",
    "alert_notes": "notes (info alerts) the monitors raised so far (log 1+n)",
    **{
        f"alerts_{family}": f"{family} alerts of any severity so far (log 1+n)"
        for family in ALERT_FAMILIES
    },
}


def _log(n: float) -> float:
    return math.log1p(n)


def _share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


class PrefixFeatures:
    """The features of a run's turns so far, kept up to date turn by turn."""

    def __init__(self) -> None:
        self.turns = 0
        self.count: Counter[str] = Counter()
        self.edits_per_file: Counter[str] = Counter()
        self.shapes: set[str] = set()
        self.digests: set[str] = set()
        self.lines_seen: set[int] = set()
        self.last_edit = -1
        self.last_new_output = -1

    def add_turn(self, turn: Turn) -> None:
        """Count one more turn (the run's next)."""
        i = self.turns
        self.turns += 1
        self.count["no_action"] += not turn.actions
        self.count["malformed"] += turn.problem is not None
        self.count["reasoning_chars"] += len(turn.text)
        for action in turn.actions:
            self.count["actions"] += 1
            self.count["errors"] += action.ok is False
            self.count["output_chars"] += action.output_chars or len(action.output)
            if action.output.strip():
                self.count["outputs"] += 1
                digest = observation_digest(action.output)
                self.count["repeated_outputs"] += digest in self.digests
                self.digests.add(digest)
                lines = observation_lines(action.output)
                if lines and not lines <= self.lines_seen:
                    self.last_new_output = i
                elif lines:
                    self.count["stale_outputs"] += 1
                self.lines_seen |= lines
            if action.kind == "edit":
                self.count["edits"] += 1
                self.last_edit = i
                for path in action.writes or ((action.target,) if action.target else ()):
                    self.edits_per_file[path] += 1
                continue
            if action.kind not in ("read", "test", "run"):
                continue
            self.count["commands"] += 1
            shape = command_shape(arguments_text(action.arguments))
            self.count["repeated_commands"] += shape in self.shapes
            self.shapes.add(shape)
            kind = {"read": "reads", "test": "tests", "run": "runs"}[action.kind]
            self.count[kind] += 1
            if kind != "reads":
                failed = action.ok is False
                self.count["failing"] += failed or bool(
                    failure_fingerprint(action.output, failed=failed)
                )

    def add_alerts(self, alerts: Iterable[Alert]) -> None:
        """Count the alerts the other monitors raised on the latest observation."""
        for alert in alerts:
            if alert.severity == "info":
                self.count["alert_notes"] += 1
            for family, monitors in ALERT_FAMILIES.items():
                self.count[f"alerts_{family}"] += alert.monitor in monitors

    def values(self, turn_limit: int | None) -> dict[str, float]:
        """:data:`FEATURES`, in order, for the turns counted so far, of a run that may
        make ``turn_limit`` turns (None: no limit)."""
        c, seen = self.count, self.turns
        executed = c["tests"] + c["runs"]
        features = {
            "limit_share": _share(seen, turn_limit or 0),
            "edits": _log(c["edits"]),
            "reads": _log(c["reads"]),
            "tests": _log(c["tests"]),
            "runs": _log(c["runs"]),
            "files_edited": _log(len(self.edits_per_file)),
            "max_edits_one_file": _log(max(self.edits_per_file.values(), default=0)),
            "error_share": _share(c["errors"], c["actions"]),
            "fail_share": _share(c["failing"], executed),
            "repeated_commands": _share(c["repeated_commands"], c["commands"]),
            "repeated_outputs": _share(c["repeated_outputs"], c["outputs"]),
            "stale_outputs": _share(c["stale_outputs"], c["outputs"]),
            "since_edit": _share(seen - 1 - self.last_edit, seen) if self.last_edit >= 0 else 1.0,
            "since_new_output": (
                _share(seen - 1 - self.last_new_output, seen) if self.last_new_output >= 0 else 1.0
            ),
            "no_action_share": _share(c["no_action"], seen),
            "malformed_share": _share(c["malformed"], seen),
            "output_chars": _log(_share(c["output_chars"], c["actions"])),
            "reasoning_chars": _log(_share(c["reasoning_chars"], seen)),
            "alert_notes": _log(c["alert_notes"]),
            **{f"alerts_{f}": _log(c[f"alerts_{f}"]) for f in ALERT_FAMILIES},
        }
        return {name: float(value) for name, value in features.items()}


def features_of(
    turns: Iterable[Turn],
    turn_limit: int | None,
    alerts: Mapping[int, Iterable[Alert]] | None = None,
) -> dict[str, float]:
    """:data:`FEATURES` of ``turns`` at once; ``alerts`` by the index of the turn they
    were raised on."""
    prefix = PrefixFeatures()
    for turn in turns:
        prefix.add_turn(turn)
        prefix.add_alerts((alerts or {}).get(turn.index, ()))
    return prefix.values(turn_limit)
