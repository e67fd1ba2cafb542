"""A worker says when an attempt's heartbeat comes near its timeout (engines.temporal.late).

Temporal records an attempt lost when it hears nothing from it for the heartbeat
timeout, counted from the hand-over to the worker and then from each beat; a beat held
up on a busy worker's loop can lose an attempt whose worker is alive. These pin when
the worker says so, how often, and that it names what to change; the last runs the
beats inside the SDK's own activity environment.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from temporalio.testing import ActivityEnvironment

from trestle.engines.temporal.late import SAY_EVERY, Beats, LateBeats

STARTED = datetime(2026, 11, 28, 2, 0, 0, tzinfo=UTC)
HEARTBEAT = timedelta(seconds=2)


class Clock:
    def __init__(self) -> None:
        self.now = STARTED.timestamp()

    def __call__(self) -> float:
        return self.now


def late_beats() -> tuple[LateBeats, Clock, list[str]]:
    said: list[str] = []
    clock = Clock()
    return LateBeats(said.append, 64, clock=clock), clock, said


def test_a_beat_within_half_its_heartbeat_is_not_late() -> None:
    late, _, said = late_beats()
    late.check("attempt a", 0.9, HEARTBEAT, first=True)
    late.check("attempt a", 1.0, HEARTBEAT, first=False)
    late.check("attempt b", 100.0, None, first=True)  # no heartbeat timed: nothing to lose
    assert said == []


def test_a_late_beat_is_said_with_what_to_change() -> None:
    late, _, said = late_beats()
    late.check("run 'r': step 's1''s attempt", 1.2, HEARTBEAT, first=True)
    assert said == [
        "run 'r': step 's1''s attempt had its heartbeat from this worker 1.2 s after "
        "Temporal started it (by this host's clock), near its 2 s heartbeat timeout: "
        "Temporal records an attempt it hears nothing from for that long as lost, though "
        "this worker is alive. The worker beats for up to 64 attempts at once from one "
        "event loop: start it with a smaller --max-attempts, or the runs with a longer "
        "$TRESTLE_TEMPORAL_HEARTBEAT"
    ]


def test_late_beats_are_said_once_in_a_while_and_counted_between() -> None:
    late, clock, said = late_beats()
    late.check("attempt a", 2.5, HEARTBEAT, first=False)
    assert len(said) == 1 and "2.5 s after its last (by" in said[0]
    assert "past its 2 s heartbeat timeout:" in said[0]
    for name in "bcd":
        clock.now += 1
        late.check(f"attempt {name}", 1.5, HEARTBEAT, first=False)
    assert len(said) == 1  # within SAY_EVERY of the first: counted, not said
    clock.now += SAY_EVERY
    late.check("attempt e", 1.5, HEARTBEAT, first=False)
    assert len(said) == 2
    assert said[1].startswith("attempt e had its heartbeat from this worker 1.5 s after")
    assert "(4 beats this late since the last warning)" in said[1]
    clock.now += SAY_EVERY
    late.check("attempt f", 0.5, HEARTBEAT, first=False)  # on time again
    assert len(said) == 2


def test_an_attempts_beats_carry_where_it_runs_and_their_gaps_are_judged() -> None:
    late, clock, said = late_beats()
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, started_time=STARTED, heartbeat_timeout=HEARTBEAT)
    sent: list[tuple[object, ...]] = []
    env.on_heartbeat = lambda *details: sent.append(details)

    def attempt() -> None:
        beat = Beats(["host-1", "pid 7"], late, "attempt a")
        clock.now += 0.4  # the hand-over to the first beat: in time
        beat()
        clock.now += 1.3  # the loop held up between two beats
        beat()
        clock.now += 0.5
        beat()

    env.run(attempt)
    assert sent == [("host-1", "pid 7")] * 3
    assert len(said) == 1 and said[0].startswith(
        "attempt a had its heartbeat from this worker 1.3 s after its last"
    )
