"""Alerts: what a monitor says, and the protocol every monitor follows."""

from __future__ import annotations

from typing import Literal, Protocol

from trestle.monitors.trace import Observation, RunFacts
from trestle.record import Record

# info: worth a note; warning: the run is likely going wrong; critical: it is, and
# carrying on wastes the budget. The evaluation counts warning and critical as flags.
Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")
FLAGGING: frozenset[Severity] = frozenset({"warning", "critical"})


class Alert(Record):
    """A monitor's finding: what it saw, how bad, which events show it, what to do."""

    monitor: str  # the monitor that raised it ("format", "loops", "drift", "cost", ...)
    kind: str  # the failure mode ("repeated_action", "format_streak", ...)
    severity: Severity
    message: str
    evidence: tuple[int, ...]  # seqs of the events (or file entries) that show it
    suggestion: str
    step: str | None = None
    round: int | None = None
    turn: int | None = None  # the turn index it was raised at, when raised on a turn

    @property
    def key(self) -> str:
        """Identifies the alert within a run: a replay raises the same keys."""
        last = self.evidence[-1] if self.evidence else 0
        return f"{self.monitor}/{self.kind}@{last}"


class Monitor(Protocol):
    """Watches a run's observations in order; keeps its own state between calls.

    A monitor must be deterministic: the same observations give the same alerts, so a
    replayed run raises exactly what the live run raised. It should not repeat itself:
    raise once, and again only when the problem grows (a longer streak, a higher
    severity).
    """

    name: str

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        """The alerts ``item`` gives rise to, given everything observed before it."""
        ...
