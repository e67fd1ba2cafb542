"""What an attempt was shown, remembered within bounds.

The progress and cycle monitors ask of each observation whether it showed the agent
anything new. Remembering every line of a long attempt would make the monitors' state,
which is saved with each snapshot of an agent run, grow with the run's history, and
every snapshot's cost with it. A :class:`LineMemory` keeps the latest
:data:`REMEMBERED_LINES` distinct lines shown (a line shown again is remembered
afresh). An agent that comes back to a line after that many others is shown it anew,
as it would be by its own context, compressed long before.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from itertools import islice
from typing import Any

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
