"""Heartbeats that come late: said at the time, with what to change.

Temporal times an attempt's heartbeat from the moment it hands the attempt to a worker
(``activity.info().started_time``) and then from each heartbeat it receives; an attempt
it hears nothing from for the heartbeat timeout is recorded lost. A worker takes up to
``--max-attempts`` attempts at once and beats for all of them from one event loop, so on
a large run or a busy machine a beat can come so late that the attempt is lost though
the worker is alive (docs/temporal.md). The worker cannot beat sooner than its loop lets
it; it can say that a beat came late, while the operator can still act.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from temporalio import activity

LATE_SHARE = 0.5  # of the heartbeat timeout: a gap this long is close to losing an attempt
SAY_EVERY = 30.0  # seconds between two warnings; the late beats between are counted


class LateBeats:
    """Says, through ``say`` and at most once every :data:`SAY_EVERY` seconds, that an
    attempt went more than :data:`LATE_SHARE` of its heartbeat timeout without a beat
    from this worker, by this host's clock (the first gap counts from Temporal's start of
    the attempt: a server whose clock runs ahead makes it look longer than it was)."""

    def __init__(
        self,
        say: Callable[[str], None],
        max_attempts: int,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._say = say
        self._max_attempts = max_attempts
        self.clock = clock
        self._said_at: float | None = None
        self._late = 0  # late beats not yet told of

    def check(self, what: str, gap: float, heartbeat: timedelta | None, *, first: bool) -> None:
        """Judge a beat for the attempt ``what`` (as the message names it) that came
        ``gap`` seconds after the last (``first``: after Temporal started it), against
        the heartbeat timeout ``heartbeat`` (None: none is timed)."""
        if heartbeat is None:
            return
        limit = heartbeat.total_seconds()
        if gap <= limit * LATE_SHARE:
            return
        self._late += 1
        now = self.clock()
        if self._said_at is not None and now - self._said_at < SAY_EVERY:
            return
        self._said_at, late, self._late = now, self._late, 0
        since = "after Temporal started it" if first else "after its last"
        others = f" ({late} beats this late since the last warning)" if late > 1 else ""
        self._say(
            f"{what} had its heartbeat from this worker {gap:.1f} s {since} (by this "
            f"host's clock), {'past' if gap >= limit else 'near'} its {limit:g} s heartbeat "
            f"timeout{others}: Temporal records an attempt it hears nothing from for that "
            "long as lost, though this worker is alive. The worker beats for up to "
            f"{self._max_attempts} attempts at once from one event loop: start it with a "
            "smaller --max-attempts, or the runs with a longer $TRESTLE_TEMPORAL_HEARTBEAT"
        )


class Beats:
    """One attempt's heartbeats: each sent with ``details`` (where it runs), and the gap
    before it judged by ``late`` (when given)."""

    def __init__(self, details: list[str], late: LateBeats | None, what: str) -> None:
        self._details = details
        self._late = late
        self._what = what
        info = activity.info()
        self._heartbeat = info.heartbeat_timeout
        self._last = info.started_time.timestamp()
        self._first = True

    def __call__(self) -> None:
        activity.heartbeat(*self._details)
        if self._late is None:
            return
        now = self._late.clock()
        self._late.check(self._what, now - self._last, self._heartbeat, first=self._first)
        self._last, self._first = now, False
