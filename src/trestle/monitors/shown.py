"""What an attempt was shown, remembered within bounds, once for every monitor asking.

The progress and cycle monitors ask of each observation whether it showed the agent
anything new. Remembering every line of a long attempt would make the monitors' state,
which is saved with each snapshot of an agent run, grow with the run's history, and
every snapshot's cost with it. A :class:`LineMemory` keeps the latest
:data:`REMEMBERED_LINES` distinct lines shown (a line shown again is remembered
afresh). An agent that comes back to a line after that many others is shown it anew,
as it would be by its own context, compressed long before.

Both monitors remember the same lines of the same attempts, so a set of monitors keeps
one memory per attempt in a :class:`ShownLines` they share
(:func:`~trestle.monitors.loops.behaviour_monitors`): it is held, and saved with each
snapshot, once instead of twice, and each observation's lines are digested once.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from itertools import islice
from typing import Any, NamedTuple

from trestle.monitors.attempt import Attempts
from trestle.monitors.fingerprint import observation_lines
from trestle.monitors.trace import Observation, Turn

REMEMBERED_LINES = 16_384  # hundreds of turns of file reads; the real runs hold fewer


class LineMemory:
    """The latest ``capacity`` distinct lines shown, as digests
    (:func:`~trestle.monitors.fingerprint.observation_lines`)."""

    def __init__(self, capacity: int = REMEMBERED_LINES) -> None:
        self.capacity = capacity
        self._lines: dict[int, None] = {}  # oldest first

    def show(self, lines: Iterable[int]) -> int:
        """Remember ``lines``; how many of them were not remembered before."""
        known, new = self._lines, 0
        for line in lines:
            if line in known:
                del known[line]  # moves to the newest end
            else:
                new += 1
            known[line] = None
        excess = len(known) - self.capacity
        if excess > 0:
            for line in list(islice(known, excess)):
                del known[line]
        return new

    def __len__(self) -> int:
        return len(self._lines)

    # saved with every snapshot of an agent run and read on its resume: as one string
    # of 8-byte digests, oldest first, not a pickled dict of thousands of ints (about
    # twice as fast to read back)
    def __getstate__(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "lines": array("Q", self._lines).tobytes()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        lines = array("Q")
        lines.frombytes(state["lines"])
        self.capacity = state["capacity"]
        self._lines = dict.fromkeys(lines.tolist())


class Novelty(NamedTuple):
    """What one action's observation showed: its distinct lines, and how many of them
    the attempt had not been shown before."""

    lines: int
    new: int

    def informs(self, least: int) -> bool:
        """Whether it showed something new: at least ``least`` new lines, or all of an
        observation shorter than that."""
        return self.new > 0 and self.new >= min(least, self.lines)


class ShownLines:
    """The lines each running step attempt was shown, one :class:`LineMemory` per
    attempt, read by every monitor that joined it (:meth:`join`).

    Each reader asks :meth:`novelty` of every observation it is given. The first to ask
    about a turn shows the memory its actions' lines and keeps the answer until every
    reader has taken it, so the memory is shown each turn once, as each reader's own
    memory was. Readers sharing one must therefore be fed the same observations in the
    same order, one observation to all of them before the next (as the monitor hub and
    the offline evaluation do); a reader asking again about a turn it has already
    taken (a turn shown twice) shows it to the memory again, as its own memory would.
    """

    def __init__(self) -> None:
        self._memories: Attempts[LineMemory] = Attempts(LineMemory)
        self._readers = 0
        # the latest turn's answer, until every reader has taken it: (the turn's
        # place, the answer, the readers that took it); empty between observations
        self._pending: tuple[tuple[str, int, int, int], tuple[Novelty, ...], set[int]] | None = None

    def join(self) -> int:
        """A new reader's number, to ask :meth:`novelty` with."""
        self._readers += 1
        return self._readers - 1

    def novelty(self, reader: int, item: Observation) -> tuple[Novelty, ...]:
        """What each of ``item``'s actions showed the attempt, if ``item`` is a turn
        (nothing otherwise; a step's end forgets its attempt)."""
        turn = self._memories.turn_of(item)
        if turn is None:
            return ()
        place = (turn.step, turn.round, turn.index, turn.seq)
        pending = self._pending
        if pending is None or pending[0] != place or reader in pending[2]:
            pending = (place, self._show(turn), set())
        pending[2].add(reader)
        self._pending = None if len(pending[2]) >= self._readers else pending
        return pending[1]

    def _show(self, turn: Turn) -> tuple[Novelty, ...]:
        memory = self._memories.of(turn)
        answers = []
        for action in turn.actions:
            lines = observation_lines(f"{action.output}\n{action.error or ''}")
            answers.append(Novelty(len(lines), memory.show(lines)))
        return tuple(answers)
