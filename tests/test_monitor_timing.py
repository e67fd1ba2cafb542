"""The timing monitors: step duration outliers and stalled steps."""

from __future__ import annotations

from collections.abc import Sequence

from trestle.core.records.monitors import Alert
from trestle.monitors.alerts import Monitor
from trestle.monitors.timing import DurationMonitor, StallMonitor
from trestle.monitors.trace import Observation, RunFacts, Stall, StepEnd

FACTS = RunFacts(goal="ship it")


def feed(monitor: Monitor, items: Sequence[Observation]) -> list[Alert]:
    return [alert for item in items for alert in monitor.observe(item, FACTS)]


def ends(*seconds: float) -> list[StepEnd]:
    return [
        StepEnd(seq=i + 1, step=f"s{i}", attempt=1, ok=True, seconds=s)
        for i, s in enumerate(seconds)
    ]


def test_a_step_far_slower_than_its_peers_is_noted_then_warned() -> None:
    alerts = feed(DurationMonitor(), ends(100, 120, 90, 400, 1500, 110))
    assert [(a.kind, a.severity, a.evidence, a.step) for a in alerts] == [
        ("slow_step", "info", (4,), "s3"),  # 4x the median 100 s
        ("slow_step", "warning", (5,), "s4"),  # 13.6x the median 110 s
    ]
    assert (
        "took 400 s, 4.0 times the median 100.0 s of 3 earlier step attempts" in alerts[0].message
    )
    assert alerts[1].suggestion.startswith("Find what kept step 's4' busy")


def test_steady_steps_short_outliers_and_too_few_peers_are_quiet() -> None:
    assert feed(DurationMonitor(), ends(300, 280, 350, 320, 500, 290)) == []
    # 30 s after 1-second steps is 30x, but under the floor: nothing worth saying
    assert feed(DurationMonitor(), ends(1, 1, 1, 30)) == []
    # two peers are not enough to call anything typical
    assert feed(DurationMonitor(), ends(10, 10, 5000)) == []


def test_after_instant_peers_a_long_step_is_far_above() -> None:
    (alert,) = feed(DurationMonitor(), ends(0, 0, 0, 120))
    assert alert.severity == "warning" and "far above the median 0.0 s" in alert.message


def test_a_stall_is_critical_once_per_step_attempt() -> None:
    items = [
        Stall(seq=40, step="build", attempt=1, silent=910.0),
        Stall(seq=40, step="build", attempt=1, silent=1820.0),  # still silent: said already
        Stall(seq=57, step="build", attempt=2, silent=905.0),
    ]
    alerts = feed(StallMonitor(), items)
    assert [(a.kind, a.severity, a.evidence, a.step) for a in alerts] == [
        ("stalled", "critical", (40,), "build"),
        ("stalled", "critical", (57,), "build"),
    ]
    assert "'build' (attempt 1) has shown no sign of life for 910 s" in alerts[0].message
    assert alerts[0].suggestion.startswith("Retry step 'build' once")


def test_timing_monitors_ignore_other_observations_and_are_deterministic() -> None:
    items: list[Observation] = [
        *ends(100, 120, 90, 400, 1500),
        Stall(seq=9, step="x", attempt=1, silent=1),
    ]
    assert feed(StallMonitor(), ends(1, 2, 3)) == []
    assert feed(DurationMonitor(), items) == feed(DurationMonitor(), items)
