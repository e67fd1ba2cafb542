"""A learnt detector: a logistic model over a run's features so far, and its monitor.

:class:`Detector` is a logistic regression over :data:`~trestle.monitors.prefix.FEATURES`
(standardised by the means and scales it was trained with), a threshold on its score,
and the points of the turn limit at which it decides (``checkpoints``, shares of the
limit, all before half-way: a flag later than half-way is no early warning, and every
further decision is one more chance of a false flag). It is data: trained by
``bench/train_detector.py`` on the tuning half of the real runs, stored as JSON.

:class:`PrefixWatcher` keeps the features of one run up to date: it feeds every
observation to a fresh set of the hand-written monitors as well (their alerts are
features; it raises none of them) and says when a checkpoint is reached.

:class:`LearntMonitor` scores the run at each checkpoint and, the first time the score
passes the threshold, raises one warning whose message names the features that pushed
the score up most, with their values. A run that records no turn limit has no
checkpoints and is never flagged.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from trestle.core.record import Record
from trestle.core.records.monitors import Alert
from trestle.monitors.alerts import Monitor
from trestle.monitors.prefix import FEATURES, PrefixFeatures
from trestle.monitors.trace import Observation, RunFacts, Turn

TOP_REASONS = 3  # features named in a flag's message
DETECTOR_FILE = Path(__file__).resolve().parent / "data" / "learnt_detector.json"


class Detector(Record):
    """A trained logistic model and how it is used (see the module docstring).

    Attributes:
        features: the feature names, in the order of ``weights``.
        means, scales: per feature, to standardise a value: ``(x - mean) / scale``.
        weights, bias: the model: score = bias + sum(weight x standardised value).
        threshold: flag when the score is above it.
        checkpoints: shares of the turn limit at which the run is scored.
        trained_on: what it was trained on, in words.
    """

    features: tuple[str, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float
    checkpoints: tuple[float, ...]
    trained_on: str = ""

    def standardised(self, values: dict[str, float]) -> list[float]:
        return [
            (values[name] - mean) / scale
            for name, mean, scale in zip(self.features, self.means, self.scales, strict=True)
        ]

    def score(self, values: dict[str, float]) -> float:
        """The log-odds the model gives: above ``threshold`` is a flag."""
        x = self.standardised(values)
        return self.bias + sum(w * v for w, v in zip(self.weights, x, strict=True))

    def reasons(self, values: dict[str, float], top: int = TOP_REASONS) -> list[str]:
        """The features that raised the score most: ``name=value (+contribution)``."""
        x = self.standardised(values)
        parts = sorted(
            zip(self.features, (w * v for w, v in zip(self.weights, x, strict=True)), strict=True),
            key=lambda pair: -pair[1],
        )
        return [f"{name}={values[name]:.2f} (+{c:.2f})" for name, c in parts[:top] if c > 0]

    def checkpoint_turns(self, turn_limit: int | None) -> frozenset[int]:
        """The numbers of turns seen at which a run with ``turn_limit`` is scored."""
        if not turn_limit:
            return frozenset()
        return frozenset(max(1, math.ceil(share * turn_limit)) for share in self.checkpoints)


def load_detector(path: Path = DETECTOR_FILE) -> Detector:
    """The detector stored at ``path`` (by default, the one the package ships).

    Raises:
        ValueError: the file is missing or is not a detector, with the path and why.
    """
    try:
        return Detector.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        raise ValueError(f"{path}: not a learnt detector: {exc}") from exc


@functools.cache
def shipped_detector() -> Detector:
    """The detector the package ships (read once)."""
    return load_detector()


def probability(score: float) -> float:
    """The logistic function of ``score``."""
    return 1.0 / (1.0 + math.exp(-score)) if score > -500 else 0.0


class PrefixWatcher:
    """One run's features so far, fed observation by observation.

    ``monitors`` are a fresh set of the hand-written monitors, the same as the detector
    was trained with (the default settings'): their alerts are counted, never raised.
    """

    def __init__(self, monitors: Sequence[Monitor]) -> None:
        self.monitors = list(monitors)
        self.prefix = PrefixFeatures()

    def observe(self, item: Observation, facts: RunFacts) -> bool:
        """Count ``item``; True when it was a turn (the features moved on)."""
        alerts = [alert for monitor in self.monitors for alert in monitor.observe(item, facts)]
        if isinstance(item, Turn):
            self.prefix.add_turn(item)
        self.prefix.add_alerts(alerts)
        return isinstance(item, Turn)

    @property
    def turns(self) -> int:
        return self.prefix.turns


class LearntMonitor:
    """Raises one warning when the detector's score passes its threshold at a checkpoint."""

    name = "learnt"

    def __init__(self, detector: Detector, monitors: Sequence[Monitor]) -> None:
        missing = [name for name in detector.features if name not in FEATURES]
        if missing:
            raise ValueError(f"learnt detector: unknown features {missing}")
        self.detector = detector
        self.watcher = PrefixWatcher(monitors)
        self.flagged = False

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        moved = self.watcher.observe(item, facts)
        at = self.detector.checkpoint_turns(facts.turn_limit)
        if self.flagged or not moved or self.watcher.turns not in at:
            return []
        assert isinstance(item, Turn)
        values = self.watcher.prefix.values(facts.turn_limit)
        score = self.detector.score(values)
        if score <= self.detector.threshold:
            return []
        self.flagged = True
        return [
            Alert(
                monitor=self.name,
                kind="likely_exhaustion",
                severity="warning",
                message=(
                    f"after {self.watcher.turns} of {facts.turn_limit} turns this run looks "
                    f"like runs that used up their budget unresolved (score {score:.2f} > "
                    f"{self.detector.threshold:.2f}): {', '.join(self.detector.reasons(values))}"
                ),
                evidence=item.evidence,
                suggestion=(
                    "look at the run: is it getting closer? If not, stop it or send it back "
                    "to plan with what it has learnt"
                ),
                step=item.step or None,
                round=item.round,
                turn=item.index,
            )
        ]
