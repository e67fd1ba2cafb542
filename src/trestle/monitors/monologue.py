"""Behavioural monitoring: reasoning on and on without acting."""

from __future__ import annotations

from trestle.core.records.monitors import Alert
from trestle.monitors.attempt import GRADES, Attempts, check_thresholds, grade, turn_alert
from trestle.monitors.trace import Observation, RunFacts, Turn


class MonologueMonitor:
    """Turns of reasoning without any action, one after another.

    Counts consecutive well-formed turns that have text but no action; malformed turns
    are the :class:`~trestle.monitors.format.FormatMonitor`'s and neither count nor
    break the run. ``warning`` at ``warning_turns``, ``critical`` at ``critical_turns``.

    Args:
        warning_turns: consecutive action-less turns that make a warning.
        critical_turns: consecutive action-less turns that make it critical.
    """

    name = "monologue"

    def __init__(self, warning_turns: int = 3, critical_turns: int = 6) -> None:
        check_thresholds("MonologueMonitor", warning_turns, critical_turns, least=2)
        self.warning_turns = warning_turns
        self.critical_turns = critical_turns
        self._attempts: Attempts[list[Turn]] = Attempts(list)

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        """Extend or end the current run of action-less turns; alert as it grows."""
        current = self._attempts.current(item)
        if current is None:
            return []
        turn, quiet = current
        if turn.actions:
            quiet.clear()
            return []
        if turn.problem is not None or not turn.text.strip():
            return []
        quiet.append(turn)
        if len(quiet) not in (self.warning_turns, self.critical_turns):
            return []
        level = grade(len(quiet), self.warning_turns, self.critical_turns)
        return [
            turn_alert(
                turn,
                monitor=self.name,
                kind="monologue",
                severity=GRADES[level],
                message=(
                    f"{len(quiet)} turns in a row (turns {quiet[0].index}-{turn.index}) "
                    "with reasoning but no action"
                ),
                seqs=[t.seq for t in quiet],
                suggestion=(
                    f"You have reasoned for {len(quiet)} turns without acting; take one "
                    "concrete action now (read a file, make an edit or run the tests)."
                ),
            )
        ]
