"""The monitors a run gets unless told otherwise: every level at once, and the learnt
detector and the reread monitor when the settings ask for them."""

from __future__ import annotations

from trestle.core.records.monitors import MonitorSettings
from trestle.monitors.acceptance import TestsMonitor
from trestle.monitors.alerts import Monitor
from trestle.monitors.context import ContextMonitor
from trestle.monitors.drift import semantic_cost_timing_monitors
from trestle.monitors.format import FormatMonitor
from trestle.monitors.learnt import LearntMonitor, shipped_detector
from trestle.monitors.loops import behaviour_monitors
from trestle.monitors.rereads import RereadMonitor
from trestle.monitors.similarity import embedder_named

# Which labelled problems each monitor is meant to catch: how the offline evaluation
# tells a monitor's right flags from its wrong ones (see trestle.monitors.evaluate).
CATCHES: dict[str, frozenset[str]] = {
    "format": frozenset({"format"}),
    "monologue": frozenset({"format"}),
    # doomed runs of every looping kind repeat calls exactly now and then
    "repeat": frozenset({"loop", "near_loop", "no_edit", "test_rerun"}),
    "cycle": frozenset({"loop", "near_loop"}),
    "progress": frozenset({"loop", "near_loop", "no_edit"}),
    "exploration": frozenset({"no_edit"}),
    "reread": frozenset({"loop", "near_loop", "no_edit"}),
    "test_rerun": frozenset({"test_rerun"}),
    "scope": frozenset({"drift"}),
    "drift": frozenset({"drift"}),
    "claims": frozenset({"hallucinated"}),
    "cost": frozenset({"cost"}),
    "context": frozenset({"context"}),
}


def default_monitors(settings: MonitorSettings) -> list[Monitor]:
    """Fresh instances of every monitor, token level to cost, and the tests monitor,
    for one run; and the reread monitor if ``settings.reread``, the learnt detector if
    ``settings.learnt``."""
    # the tests monitor reads what Trestle's own checkpoints show an attempt wrote,
    # which no imported recording holds: beside the hand-written set the learnt
    # detector was trained with, not in it
    monitors = [*hand_written_monitors(settings), TestsMonitor()]
    if settings.reread:
        monitors.append(RereadMonitor())
    if settings.learnt:
        # the detector reads the alerts of its own set, made as the one it was trained
        # with (the default settings'), whatever this run's settings are
        monitors.append(LearntMonitor(shipped_detector(), hand_written_monitors(MonitorSettings())))
    return monitors


def hand_written_monitors(settings: MonitorSettings) -> list[Monitor]:
    """Fresh instances of every hand-written monitor, token level to cost."""
    embedder = embedder_named(settings.embedder)
    return [
        FormatMonitor(),
        *behaviour_monitors(),
        *semantic_cost_timing_monitors(embedder),
        ContextMonitor(window=settings.context_window),
    ]
