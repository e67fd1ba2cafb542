"""The reread monitor: one file read again and again while nothing changes it.

An agent that cannot find its way reads the same file over and over: another range of
it, the same function again, the file whole, between edits of other files and runs of
a script that keep failing. Each read is cheap and shows a little that is new (another
range), so the progress monitor does not see it, and the reads are too far apart, and
too different in their ranges, for the repeat and cycle monitors.

On the tuning half of the real runs (``bench/monitors_real.py --half tune``) it was the
one sign, of those tried, that OpenHands runs which used up their 50 calls showed in
their first half while the runs that succeeded did not show it at all: it flagged 5 of
the 38 such runs by half-way, beyond the 3 the other monitors flagged, and none of the
152 successful runs of any scaffold. On the report half it did not hold up: 2 more of
53 such runs flagged by half-way, and 3 more of 51 successful OpenHands runs flagged
(``BENCHMARKS.md``, section 6, has the figures and the other signs tried). So it is off
unless ``[monitors] reread = true``.

``warning`` once a file has been read ``warning_reads`` times since the attempt last
changed it (an edit or a write of it; a file it never changed counts from the start),
or ``warning_share`` of the turn limit where that is more; ``critical`` at
``critical_reads`` or ``critical_share``. The shares matter for long budgets:
mini-swe-agent runs with 250 calls page through a file with ``sed -n`` many times and
succeed (7 reads flagged 46 of their 101 successful runs on the tuning half; 14% of
the limit, 35 reads, flags none of them). Each level is raised once per
attempt. Steps meant only to look (understand, plan) are left alone: reading is their
work, and the suggestion is to act.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from trestle.core.errors import ConfigError
from trestle.core.records.monitors import Alert
from trestle.monitors.attempt import (
    GRADES,
    Attempts,
    changes_workspace,
    check_thresholds,
    grade,
    turn_alert,
)
from trestle.monitors.trace import Observation, RunFacts, Turn


@dataclass
class _Reads:
    since_change: Counter[str] = field(default_factory=Counter)  # reads per file
    seqs: dict[str, list[int]] = field(default_factory=dict)  # each file's read seqs
    raised: int = 0


class RereadMonitor:
    """One file read ``warning_reads`` times while nothing changed it (see the module).

    Args:
        warning_reads: reads of one unchanged file that make a warning.
        critical_reads: reads that make it critical.
        warning_share: the share of the turn limit that warns, where more than
            ``warning_reads``.
        critical_share: the share of the turn limit that is critical, where more
            than ``critical_reads``.
    """

    name = "reread"

    def __init__(
        self,
        *,
        warning_reads: int = 7,
        critical_reads: int = 12,
        warning_share: float = 0.14,
        critical_share: float = 0.24,
    ) -> None:
        check_thresholds("RereadMonitor", warning_reads, critical_reads, least=2)
        if not 0 < warning_share < critical_share <= 1:
            raise ConfigError(
                "RereadMonitor: need 0 < warning_share < critical_share <= 1, got "
                f"{warning_share!r} and {critical_share!r}"
            )
        self.warning_reads = warning_reads
        self.critical_reads = critical_reads
        self.warning_share = warning_share
        self.critical_share = critical_share
        self._attempts: Attempts[_Reads] = Attempts(_Reads)

    def thresholds(self, facts: RunFacts) -> tuple[int, int]:
        """The reads of one unchanged file that warn and that are critical for this run:
        the fixed counts, or the shares of the turn limit where those are more."""
        limit = facts.turn_limit
        if limit is None:
            return self.warning_reads, self.critical_reads
        warning = max(self.warning_reads, _ceil(self.warning_share * limit))
        critical = max(self.critical_reads, _ceil(self.critical_share * limit))
        return warning, max(critical, warning + 1)

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        current = self._attempts.current(item)
        if current is None:
            return []
        turn, reads = current
        if turn.step in facts.read_only:
            return []
        for action in turn.actions:
            if changes_workspace(action):
                for path in action.writes or (action.target,):
                    reads.since_change.pop(path, None)
                    reads.seqs.pop(path, None)
            elif action.kind == "read" and action.target:
                reads.since_change[action.target] += 1
                reads.seqs.setdefault(action.target, []).append(action.seq)
        if not reads.since_change:
            return []
        path, count = reads.since_change.most_common(1)[0]
        level = grade(count, *self.thresholds(facts))
        if level <= reads.raised:
            return []
        reads.raised = level
        return [self._alert(turn, level, path, count, reads.seqs[path])]

    def _alert(self, turn: Turn, level: int, path: str, count: int, seqs: list[int]) -> Alert:
        return turn_alert(
            turn,
            monitor=self.name,
            kind="same_file_reread",
            severity=GRADES[level],
            message=f"{path} read {count} times while nothing changed it",
            seqs=seqs,
            suggestion=(
                f"You have read {path} {count} times and it has not changed: what you need "
                "from it is already in the conversation. Write down what you are looking "
                "for, then act on it: edit the code, or run a test that tells you more."
            ),
        )


def _ceil(x: float) -> int:
    """``x`` rounded up, a product's float error aside (0.14 * 50 is 7, not 8)."""
    return math.ceil(round(x, 9))
