"""Timing monitors: a step that took far longer than its peers, a step gone silent."""

from __future__ import annotations

from statistics import median

from trestle.core.records.monitors import Alert, Severity
from trestle.monitors.trace import Observation, RunFacts, Stall, StepEnd


class DurationMonitor:
    """A step attempt much slower than the run's earlier attempts.

    Compared with the median of at least ``min_peers`` earlier attempts, one that took
    ``info_factor`` times as long (and at least ``floor`` seconds, so a 2-second step
    after 0.1-second ones is not news) is a note; ``warning_factor`` times, a warning.
    Steps of one plan differ in nature, hence the generous factors.

    Args:
        info_factor: times the median that makes a note.
        warning_factor: times the median that makes a warning.
        floor: seconds under which no duration is an outlier.
        min_peers: earlier attempts needed to judge one.
    """

    name = "duration"

    def __init__(
        self,
        *,
        info_factor: float = 3.0,
        warning_factor: float = 10.0,
        floor: float = 60.0,
        min_peers: int = 3,
    ) -> None:
        self.info_factor, self.warning_factor = info_factor, warning_factor
        self.floor, self.min_peers = floor, min_peers
        self._durations: list[float] = []

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        if not isinstance(item, StepEnd):
            return []
        peers = list(self._durations)
        self._durations.append(item.seconds)
        if len(peers) < self.min_peers or item.seconds < self.floor:
            return []
        typical = median(peers)
        ratio = item.seconds / typical if typical > 0 else float("inf")
        severity: Severity | None = (
            "warning"
            if ratio > self.warning_factor
            else "info"
            if ratio > self.info_factor
            else None
        )
        if severity is None:
            return []
        times = f"{ratio:.1f} times" if typical > 0 else "far above"
        return [
            Alert(
                monitor=self.name,
                kind="slow_step",
                severity=severity,
                message=(
                    f"step {item.step!r} (attempt {item.attempt}) took {item.seconds:.0f} s, "
                    f"{times} the median {typical:.1f} s of {len(peers)} earlier step attempts"
                ),
                evidence=(item.seq,),
                suggestion=(
                    f"Find what kept step {item.step!r} busy (a slow command, a long test "
                    "suite, many model calls) and give it a narrower command or a timeout."
                ),
                step=item.step,
            )
        ]


class StallMonitor:
    """A step that has shown no sign of life: critical, once per step attempt.

    The engine reports the :class:`~trestle.monitors.trace.Stall` and dead-letters the
    step; the alert records why and what to look at.
    """

    name = "stall"

    def __init__(self) -> None:
        self._seen: set[tuple[str, int]] = set()

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        if not isinstance(item, Stall) or (item.step, item.attempt) in self._seen:
            return []
        self._seen.add((item.step, item.attempt))
        return [
            Alert(
                monitor=self.name,
                kind="stalled",
                severity="critical",
                message=(
                    f"step {item.step!r} (attempt {item.attempt}) has shown no sign of "
                    f"life for {item.silent:.0f} s since event {item.seq}"
                ),
                evidence=(item.seq,),
                suggestion=(
                    f"Retry step {item.step!r} once; if it stalls again, look for a "
                    "command waiting on input or a network call without a timeout, and "
                    "give it one."
                ),
                step=item.step,
            )
        ]
