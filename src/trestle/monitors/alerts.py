"""Alerts: what a monitor says, and the protocol every monitor follows."""

from __future__ import annotations

from typing import Protocol

from trestle.core.records.monitors import Alert
from trestle.monitors.trace import Observation, RunFacts


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
