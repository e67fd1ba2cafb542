"""The monitors a run gets unless told otherwise: every level at once."""

from __future__ import annotations

from trestle.monitors.alerts import Monitor
from trestle.monitors.drift import semantic_cost_timing_monitors
from trestle.monitors.format import FormatMonitor
from trestle.monitors.loops import behaviour_monitors
from trestle.monitors.policy import MonitorSettings
from trestle.monitors.similarity import embedder_named


def default_monitors(settings: MonitorSettings) -> list[Monitor]:
    """Fresh instances of every monitor, token level to cost, for one run."""
    embedder = embedder_named(settings.embedder)
    return [FormatMonitor(), *behaviour_monitors(), *semantic_cost_timing_monitors(embedder)]
