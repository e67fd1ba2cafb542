"""Token-level monitoring: model output that could not be used as an action.

A model now and then returns an empty reply, arguments that are not JSON, a tool
that was not offered or a reply cut off at the token limit. Once is noise: the agent
is shown the error and usually recovers, so a single malformed turn is only noted.
Several in a row mean the model is stuck producing output it cannot get right, and
each further one is a wasted call.
"""

from __future__ import annotations

import math
from collections import Counter

from trestle.core.records.monitors import Alert, Severity
from trestle.monitors.attempt import Attempts, check_thresholds, turn_alert
from trestle.monitors.trace import Malformed, Observation, RunFacts, Turn

_ADVICE: dict[Malformed, str] = {
    "empty": "reply with exactly one tool call",
    "unparseable": "give the tool arguments as one valid JSON object",
    "invalid_arguments": "give exactly the arguments the tool's schema asks for",
    "unknown_tool": "call only the tools you were offered",
    "truncated": "keep your reply short: less reasoning, smaller edits",
    "several_actions": "make exactly one action per reply",
    "no_action": "end your reply with exactly one action in the required format",
}


class FormatMonitor:
    """Notes malformed turns and escalates a streak of them.

    A malformed turn (``Turn.problem`` set) raises ``info`` under the problem's own
    kind (``"unparseable"``, ``"truncated"``, ...) when it starts a streak. Consecutive
    malformed turns raise ``format_streak``: ``warning`` at ``warning_streak`` and
    ``critical`` at ``critical_streak``, or, when the run's turn limit is known, once
    the streak has used ``warning_share`` (``critical_share``) of it, whichever is
    later. A well-formed turn ends the streak, so errors the model recovers from stay
    ``info``.

    The agent's own harness already answers every malformed turn with what was wrong,
    and on real runs models often need several tries: streaks of 8 and 9 occur in runs
    that went on to succeed. So a streak is weighed by the calls it wastes against the
    budget, not taken as a sign that the run is lost.

    Args:
        warning_streak: the fewest consecutive malformed turns that make a warning.
        critical_streak: the fewest that make it critical.
        warning_share: share of the turn limit a streak must use to warn.
        critical_share: share of the turn limit a streak must use to be critical.
    """

    name = "format"

    def __init__(
        self,
        warning_streak: int = 5,
        critical_streak: int = 10,
        warning_share: float = 0.05,
        critical_share: float = 0.1,
    ) -> None:
        check_thresholds("FormatMonitor", warning_streak, critical_streak, least=2)
        self.warning_streak = warning_streak
        self.critical_streak = critical_streak
        self.warning_share = warning_share
        self.critical_share = critical_share
        self._streaks: Attempts[list[Turn]] = Attempts(list)

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        """Note a malformed turn; warn when they run on."""
        current = self._streaks.current(item)
        if current is None:
            return []
        turn, streak = current
        if turn.problem is None:
            streak.clear()
            return []
        streak.append(turn)
        if len(streak) == 1:
            return [self._single(turn, turn.problem)]
        warning_at, critical_at = self.thresholds(facts)
        severity: Severity | None = None
        if len(streak) == warning_at:
            severity = "warning"
        elif len(streak) == critical_at:
            severity = "critical"
        return [self._streak(turn, streak, severity)] if severity else []

    def thresholds(self, facts: RunFacts) -> tuple[int, int]:
        """The streak lengths that warn and that are critical for this run."""
        limit = facts.turn_limit
        if limit is None:
            return self.warning_streak, self.critical_streak
        warning = max(self.warning_streak, math.ceil(self.warning_share * limit))
        critical = max(self.critical_streak, math.ceil(self.critical_share * limit))
        return warning, max(warning + 1, critical)

    def _single(self, turn: Turn, problem: Malformed) -> Alert:
        return turn_alert(
            turn,
            monitor=self.name,
            kind=problem,
            severity="info",
            message=f"turn {turn.index}: malformed output ({problem})",
            seqs=turn.evidence,
            suggestion=f"Your last reply could not be used: {_ADVICE[problem]}.",
        )

    def _streak(self, turn: Turn, streak: list[Turn], severity: Severity) -> Alert:
        counts = Counter(t.problem for t in streak if t.problem is not None)
        problems = ", ".join(f"{problem} x{n}" for problem, n in sorted(counts.items()))
        commonest = max(sorted(counts), key=lambda problem: counts[problem])
        return turn_alert(
            turn,
            monitor=self.name,
            kind="format_streak",
            severity=severity,
            message=(
                f"{len(streak)} malformed turns in a row "
                f"(turns {streak[0].index}-{turn.index}): {problems}"
            ),
            seqs=[seq for t in streak for seq in t.evidence],
            suggestion=(
                f"Your last {len(streak)} replies could not be used; "
                f"{_ADVICE[commonest]}, and nothing else."
            ),
        )
