"""The monitor hub: feeds a run's events to its monitors and records what they say.

The engine gives the hub every event as it is applied (live), or the whole recorded
stream on resume (replay). The hub turns events into observations
(:class:`~trestle.monitors.stream.EventTrace`), passes each to every monitor, merges
the alerts several monitors raise on one problem into one
(:func:`~trestle.core.records.monitors.merge_alerts`), and returns the alerts not yet
recorded as :class:`~trestle.core.events.AlertRaised`, each with the action the run's
:class:`~trestle.core.records.monitors.MonitorSettings` choose. Monitors are deterministic,
so a replay raises the same alerts; those already recorded are recognised by their
key and not raised twice, and one raised but lost in a crash is raised on resume.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from trestle.core.events import AlertRaised, AnyEvent, ModelCalled
from trestle.core.records.monitors import DEFAULT_MONITORS, Alert, MonitorSettings, merge_alerts
from trestle.core.state import RunState
from trestle.monitors.alerts import Monitor
from trestle.monitors.catalog import default_monitors
from trestle.monitors.stream import EventTrace
from trestle.monitors.trace import Observation, RunFacts, Stall

MonitorFactory = Callable[[MonitorSettings], Sequence[Monitor]]


class MonitorHub:
    """One run's monitors, fed event by event (see the module docstring)."""

    def __init__(self, settings: MonitorSettings | None, factory: MonitorFactory | None = None):
        self.settings = settings or DEFAULT_MONITORS
        make = factory or default_monitors
        self.monitors: Sequence[Monitor] = make(self.settings) if self.settings.enabled else ()
        self.trace = EventTrace()
        self.recorded: set[str] = set()  # keys of the alerts already recorded
        self._ahead = False  # show the monitors each model answer (see look_ahead)

    @property
    def facts(self) -> RunFacts:
        return self.trace.facts

    def replay(self, events: Sequence[tuple[int, AnyEvent]], state: RunState) -> list[AlertRaised]:
        """Feed a recorded stream; return only what it should have raised but did not."""
        found: list[Alert] = []
        for seq, event in events:
            if isinstance(event, AlertRaised):
                self.recorded.add(event.alert.key)
            else:
                found += self._observe(self.trace.feed(seq, event))
        return self._raise(found, state, at=events[-1][1].at if events else 0.0)

    def look_ahead(self) -> None:
        """From now on, show each model answer, as it is fed, to the monitors that can
        start work on it early (those with a ``foresee(turn, facts)`` method): the
        drift monitor has its texts embedded in another process while the turn's tool
        calls run (:mod:`trestle.monitors.embedworker`). Their alerts are raised
        exactly where they are without it. The local engine asks for this; the
        Temporal workflow, whose code may start no process, and the offline
        evaluation do not."""
        self._ahead = True

    def feed(self, seq: int, event: AnyEvent, state: RunState) -> list[AlertRaised]:
        """The alerts ``event`` (just applied to ``state`` as ``seq``) gives rise to."""
        if isinstance(event, AlertRaised):
            self.recorded.add(event.alert.key)
            return []
        observed = self.trace.feed(seq, event)
        if self._ahead and isinstance(event, ModelCalled):
            self._foresee(event)
        return self._raise(self._observe(observed), state, at=event.at)

    def _foresee(self, event: ModelCalled) -> None:
        turn = self.trace.answered(event)
        if turn is None or not turn.actions:
            return
        for monitor in self.monitors:
            foresee = getattr(monitor, "foresee", None)
            if foresee is not None:
                foresee(turn, self.trace.facts)

    def stalled(self, stall: Stall, state: RunState, at: float) -> list[AlertRaised]:
        """A step the engine found silent for too long."""
        return self._raise(self._observe([stall]), state, at=at)

    def _observe(self, observations: Sequence[Observation]) -> list[Alert]:
        return [
            alert
            for item in observations
            for alert in merge_alerts(
                [a for monitor in self.monitors for a in monitor.observe(item, self.trace.facts)]
            )
        ]

    def _raise(self, alerts: Sequence[Alert], state: RunState, *, at: float) -> list[AlertRaised]:
        out = []
        for alert in alerts:
            if alert.key in self.recorded:
                continue
            self.recorded.add(alert.key)
            agent_step = (
                alert.step is not None
                and alert.step in state.steps
                and (state.step_spec(alert.step).agent is not None)
            )
            action = self.settings.action_for(alert, agent_step=agent_step)
            out.append(AlertRaised(at=at, alert=alert, action=action))
        return out
