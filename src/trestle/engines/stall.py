"""Noticing a silent attempt: when each running attempt last showed a sign of life, and
what ends one cancelled for its silence. Pure, so the Temporal workflow uses it too."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from trestle.core.events import (
    ActionResult,
    AnyEvent,
    StepAttemptEnded,
    StepStarted,
)
from trestle.core.records.monitors import MonitorSettings
from trestle.core.state import RunState
from trestle.monitors.hub import MonitorHub
from trestle.monitors.trace import Stall


def stalled(
    state: RunState,
    hub: MonitorHub | None,
    sid: str,
    attempt: int,
    last_seq: int,
    silent: float,
    now: float,
) -> list[AnyEvent]:
    """What ends an attempt cancelled for its silence: it fails as ``stalled`` (its
    step goes to the dead-letter queue), and the monitors' alert on it."""
    error = f"stalled: no sign of life for {silent:.0f}s; the attempt was cancelled"
    action = ActionResult(status="stalled", error=error, duration=silent)
    ended: list[AnyEvent] = [
        StepAttemptEnded(at=now, step=sid, attempt=attempt, ok=False, action=action)
    ]
    if hub is not None:
        stall = Stall(seq=last_seq, step=sid, attempt=attempt, silent=silent)
        ended += hub.stalled(stall, state, now)
    return ended


Work = TypeVar("Work", bound="asyncio.Future[Any]")  # what a driver waits on per attempt


class StallWatch(Generic[Work]):
    """When each running attempt last showed a sign of life: its start, or an event it
    recorded (an agent step records one per model or tool call). An attempt silent for
    longer than ``stall_after`` (or its step's own timeout, if longer) is overdue."""

    def __init__(self, settings: MonitorSettings) -> None:
        self.settings = settings
        self._attempts: dict[Work, tuple[str, int]] = {}
        self._last: dict[str, tuple[float, int]] = {}  # step -> (when, seq)
        self._holding: set[str] = set()  # steps waiting to hold the runs above, or the workspace

    @contextmanager
    def holding(self, sid: str, clock: Callable[[], float]) -> Iterator[None]:
        """While ``sid``'s attempt waits to hold the runs above this delegated child (its
        approved command runs alone in the whole tree: :mod:`trestle.engines.hold`), or
        its workspace against other runs' commands
        (:mod:`trestle.execution.workspace_hold`), it waits for them, as a parked step
        waits for its own run: not silent. Its silence counts again from the wait's end."""
        self._holding.add(sid)
        try:
            yield
        finally:
            self._holding.discard(sid)
            if sid in self._last:
                self._last[sid] = (clock(), self._last[sid][1])

    def _waits(self, state: RunState, sid: str) -> bool:
        """Whether ``sid`` waits for its run or the runs above: its grant, or the hold
        it asked, will be its sign of life."""
        return sid in self._holding or sid in state.parked()

    def started(self, task: Work, event: AnyEvent) -> None:
        if isinstance(event, StepStarted):
            self._attempts[task] = (event.step, event.attempt)

    def saw(self, batch: Sequence[AnyEvent], first_seq: int, now: float) -> None:
        for offset, event in enumerate(batch):
            sid = getattr(event, "step", None)
            if isinstance(sid, str):
                self._last[sid] = (now, first_seq + offset)

    def next_due(self, state: RunState) -> float | None:
        """When the first running attempt becomes overdue, if any runs: a driver that
        cannot poll (a workflow) sleeps until then."""
        dues = [
            self._last[sid][0] + self.settings.stall_limit(state.step_spec(sid).timeout)
            for task, (sid, _) in self._attempts.items()
            if not task.done() and sid in self._last and not self._waits(state, sid)
        ]
        return min(dues, default=None)

    def overdue(
        self, state: RunState, now: float
    ) -> list[tuple[Work, tuple[str, int, int, float]]]:
        """The attempts past their limit: task, then step, attempt, last seq, silence."""
        late = []
        for task, (sid, attempt) in list(self._attempts.items()):
            if task.done():
                del self._attempts[task]
                continue
            if self._waits(state, sid):
                continue
            when, seq = self._last.get(sid, (now, state.seq))
            limit = self.settings.stall_limit(state.step_spec(sid).timeout)
            if now - when > limit:
                del self._attempts[task]
                late.append((task, (sid, attempt, seq, now - when)))
        return late
