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

A resumed run need not wait for its monitors to catch up (:meth:`MonitorHub.replay_later`):
the events a resume records on its way to its first model call (``QUEUED``: resumed, a
probe started and ended, a step started, a model call reserved) show the monitors
nothing (the trace turns only model answers, tool results and attempts' ends into
observations), so while it records only those the hub queues them and catches up beside
the run (:meth:`MonitorHub.catch_up`, in slices while the run waits on its model). Any
other event is caught up for before it is applied (:meth:`MonitorHub.before`): the
monitors then judge every observation exactly where they would have, on the same
history, and what the catch-up finds missing (an alert a crash kept from being
recorded) is recorded before that event, not before the resumed run's first one. A run
cannot end, pause or be decided on by a human while the hub is behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from trestle.core.events import (
    AlertRaised,
    AnyEvent,
    ModelCalled,
    ModelCallReserved,
    RunResumed,
    StepProbed,
    StepProbeStarted,
    StepStarted,
)
from trestle.core.records.monitors import DEFAULT_MONITORS, Alert, MonitorSettings, merge_alerts
from trestle.core.state import RunState
from trestle.monitors.alerts import Monitor
from trestle.monitors.catalog import default_monitors
from trestle.monitors.stream import EventTrace
from trestle.monitors.trace import Observation, RunFacts, Stall
from trestle.support import collector

MonitorFactory = Callable[[MonitorSettings], Sequence[Monitor]]
History = Sequence[tuple[int, AnyEvent]]
# what a resume records on its way to its first model call, queued while the hub is
# behind: none is an event the trace makes observations of (EventTrace.feed: model
# answers, tool results, attempts' ends), and after none can the run end or wait on a
# human without recording another event first
QUEUED = (RunResumed, StepProbeStarted, StepProbed, StepStarted, ModelCallReserved)


@dataclass(eq=False)
class _Behind:
    """A resume's catch-up not yet done: the saved state to restore, the recorded
    events after it, and what the hub was fed meanwhile, each taken in that order."""

    restore: Callable[[], bool] | None  # None once tried
    recorded: History
    history: Callable[[], History]  # the whole history, if the saved state does not restore
    state: RunState
    fed: list[tuple[int, AnyEvent]] = field(default_factory=list)
    at: int = 0  # the next of recorded, then of fed, to feed
    found: list[Alert] = field(default_factory=list)  # what the monitors said so far
    last_at: float = 0.0  # when the latest event fed was recorded
    # what a monitor (or the restore) raised in a slice: raised again wherever the
    # catch-up is next asked for, so that it fails where a catch-up at once would
    failed: Exception | None = None


class MonitorHub:
    """One run's monitors, fed event by event (see the module docstring)."""

    def __init__(self, settings: MonitorSettings | None, factory: MonitorFactory | None = None):
        self.settings = settings or DEFAULT_MONITORS
        make = factory or default_monitors
        self.monitors: Sequence[Monitor] = make(self.settings) if self.settings.enabled else ()
        self.trace = EventTrace()
        self.recorded: set[str] = set()  # keys of the alerts already recorded
        self._ahead = False  # show the monitors each model answer (see look_ahead)
        self._behind: _Behind | None = None  # a catch-up left for later (replay_later)
        self._owed: list[AlertRaised] = []  # what a catch-up raised, not yet given

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

    def replay_later(
        self,
        restore: Callable[[], bool],
        recorded: History,
        history: Callable[[], History],
        state: RunState,
    ) -> None:
        """Catch up later (see the module docstring): ``restore`` loads the state saved
        as of the event before ``recorded`` (False if it cannot), and ``recorded`` is
        fed after it; ``history``, every event recorded up to the last of ``recorded``,
        is fed instead if the state does not restore. ``state`` is the run's live state,
        which names the steps the alerts are about."""
        self._behind = _Behind(restore, recorded, history, state)

    @property
    def behind(self) -> bool:
        """Whether a catch-up is left to do (:meth:`replay_later`)."""
        return self._behind is not None

    def catch_up(self, until: float | None = None) -> None:
        """Do what is left of the catch-up: all of it, or what can be done before
        ``time.perf_counter()`` passes ``until`` (at least one piece). The alerts it
        finds are given by the next :meth:`before`, :meth:`settle` or :meth:`feed`; an
        exception from a monitor is raised again by every later call, so one a slice
        meets fails the caller that needs the catch-up done, as one made at once would."""
        behind = self._behind
        if behind is None:
            return
        if behind.failed is not None:
            raise behind.failed
        try:
            if not self._catch_up(behind, until):
                return
        except Exception as exc:
            behind.failed = exc
            raise
        self._behind = None
        self._owed += self._raise(behind.found, behind.state, at=behind.last_at)

    def _catch_up(self, behind: _Behind, until: float | None) -> bool:
        """Feed what ``behind`` holds, until ``until``; whether all of it was fed."""
        with collector.paused():  # what the monitors restore and build is kept
            if behind.restore is not None:
                if not behind.restore():
                    behind.recorded = behind.history()
                behind.restore = None
            while behind.at < len(behind.recorded) + len(behind.fed):
                if until is not None and time.perf_counter() >= until:
                    return False
                if behind.at < len(behind.recorded):
                    seq, event = behind.recorded[behind.at]
                else:
                    seq, event = behind.fed[behind.at - len(behind.recorded)]
                behind.at += 1
                if isinstance(event, AlertRaised):
                    self.recorded.add(event.alert.key)
                else:
                    behind.found += self._observe(self.trace.feed(seq, event))
                behind.last_at = event.at
        return True

    def look_ahead(self) -> None:
        """From now on, show each model answer, as it is fed, to the monitors that can
        start work on it early (those with a ``foresee(turn, facts)`` method): the
        drift monitor has its texts embedded in another process while the turn's tool
        calls run (:mod:`trestle.monitors.embedworker`). Their alerts are raised
        exactly where they are without it. The local engine asks for this; the
        Temporal workflow, whose code may start no process, and the offline
        evaluation do not."""
        self._ahead = True

    def before(self, event: AnyEvent) -> Sequence[AlertRaised]:
        """What to record before ``event`` is applied: the alerts of a catch-up, done
        now unless ``event`` is one the hub may queue while behind (``QUEUED``)."""
        if self._behind is None:
            return self._take_owed() if self._owed else ()  # every event asks: kept cheap
        return () if isinstance(event, QUEUED) else self.settle()

    def settle(self) -> list[AlertRaised]:
        """Finish any catch-up now, and return the alerts it raised, to record."""
        self.catch_up()
        return self._take_owed()

    def feed(self, seq: int, event: AnyEvent, state: RunState) -> list[AlertRaised]:
        """The alerts ``event`` (just applied to ``state`` as ``seq``) gives rise to,
        after any a catch-up raised that :meth:`before` did not return."""
        if self._behind is not None:
            if isinstance(event, QUEUED):  # nothing the monitors see: kept for later
                self._behind.fed.append((seq, event))
                return []
            self.catch_up()
        owed = self._take_owed()
        if isinstance(event, AlertRaised):
            self.recorded.add(event.alert.key)
            return owed
        observed = self.trace.feed(seq, event)
        if self._ahead and isinstance(event, ModelCalled):
            self._foresee(event)
        return owed + self._raise(self._observe(observed), state, at=event.at)

    def _take_owed(self) -> list[AlertRaised]:
        owed, self._owed = self._owed, []
        return owed

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
        return self.settle() + self._raise(self._observe([stall]), state, at=at)

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
