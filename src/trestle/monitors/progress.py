"""Behavioural monitoring: an agent that is busy but not getting anywhere.

- :class:`ProgressMonitor`: many actions in a row that changed no file and showed
  nothing new;
- :class:`ExplorationMonitor`: a large share of the turn budget spent reading without
  ever editing.

Like the monitors in :mod:`trestle.monitors.loops`, these look at actions and
observations only, never at the reasoning.
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
from trestle.monitors.shown import ShownLines
from trestle.monitors.trace import Observation, RunFacts, Turn


@dataclass
class _Stillness:
    still: list[tuple[int, int]] = field(default_factory=list)  # (turn seq, action seq)
    raised: int = 0


class ProgressMonitor:
    """Many actions in a row with no workspace change and no new information.

    An action makes progress when it changes files (an edit that did not fail, or any
    write) or shows something new: at least ``min_new_lines`` lines (or all of a shorter
    observation) never shown before in the attempt, compared loosely (numbers,
    whitespace, timestamps and line-number prefixes normalised, see
    :func:`~trestle.monitors.fingerprint.observation_lines`). Re-viewing a file with a
    shifted range shows mostly known lines, so it is not progress; reading a new file
    is. ``warning`` after ``warning_actions`` actions without progress, ``critical``
    after ``critical_actions``; progress starts the count again.

    Args:
        warning_actions: actions without progress that make a warning.
        critical_actions: actions without progress that make it critical.
        min_new_lines: new lines an observation needs to count as new information.
        shown: the lines each attempt was shown, shared with the other monitors of its
            set that ask the same (by default its own).
    """

    name = "progress"

    def __init__(
        self,
        warning_actions: int = 12,
        critical_actions: int = 24,
        min_new_lines: int = 3,
        shown: ShownLines | None = None,
    ) -> None:
        check_thresholds("ProgressMonitor", warning_actions, critical_actions, least=2)
        if min_new_lines < 1:
            raise ConfigError(f"ProgressMonitor: min_new_lines must be >= 1, got {min_new_lines!r}")
        self.warning_actions = warning_actions
        self.critical_actions = critical_actions
        self.min_new_lines = min_new_lines
        self._shown = shown if shown is not None else ShownLines()
        self._reader = self._shown.join()
        self._attempts: Attempts[_Stillness] = Attempts(_Stillness)

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        """Extend or end the attempt's run of actions without progress."""
        current = self._attempts.current(item)
        novelties = self._shown.novelty(self._reader, item)
        if current is None:
            return []
        turn, state = current
        alerts = []
        for action, novelty in zip(turn.actions, novelties, strict=True):
            if changes_workspace(action) or novelty.informs(self.min_new_lines):
                state.still.clear()
                state.raised = 0
                continue
            state.still.append((turn.seq, action.seq))
            level = grade(len(state.still), self.warning_actions, self.critical_actions)
            if level > state.raised:
                state.raised = level
                alerts.append(self._alert(turn, level, state.still))
        return alerts

    def _alert(self, turn: Turn, level: int, still: list[tuple[int, int]]) -> Alert:
        count = len(still)
        return turn_alert(
            turn,
            monitor=self.name,
            kind="no_progress",
            severity=GRADES[level],
            message=f"{count} actions in a row changed no file and showed nothing new",
            seqs=[seq for pair in still for seq in pair],
            suggestion=(
                f"Your last {count} actions changed nothing and showed you nothing you had "
                "not already seen. Stop re-checking: make the change you think is needed, "
                "or try a different approach."
            ),
        )


@dataclass
class _Reading:
    turns: int = 0
    edited: bool = False
    raised: int = 0
    reads: Counter[str] = field(default_factory=Counter)
    read_seqs: list[int] = field(default_factory=list)


class ExplorationMonitor:
    """Reading on and on without ever editing.

    Counts the attempt's turns until its first edit (any action of kind ``edit``, even
    a failed one, or any write: trying to edit is no longer exploring). When the turn
    limit is known (:attr:`RunFacts.turn_limit`), ``warning`` when
    ``warning_fraction`` of it has gone with no edit, ``critical`` at
    ``critical_fraction``, but never before ``min_turns`` turns; when it is not known,
    at ``warning_turns`` and ``critical_turns``. A healthy agent often reads 10-20
    files first, but edits by about a third of its budget.

    Args:
        warning_fraction: share of the turn limit gone without an edit that warns.
        critical_fraction: share of the turn limit gone without an edit that is critical.
        min_turns: the fewest turns before a warning, whatever the limit.
        warning_turns: turns without an edit that warn when the limit is unknown.
        critical_turns: turns without an edit that are critical when it is unknown.
        fresh_share: when at least this share of the reads were of files not read
            before, the agent is still exploring new ground: each alert comes one grade
            lower (a warning only where it would have been critical). Doomed runs mostly
            go over the same files again.
    """

    name = "exploration"

    def __init__(
        self,
        warning_fraction: float = 0.45,
        critical_fraction: float = 0.6,
        min_turns: int = 10,
        warning_turns: int = 25,
        critical_turns: int = 40,
        fresh_share: float = 0.7,
    ) -> None:
        if not 0 < warning_fraction < critical_fraction <= 1:
            raise ConfigError(
                "ExplorationMonitor: need 0 < warning_fraction < critical_fraction <= 1, got "
                f"{warning_fraction!r} and {critical_fraction!r}"
            )
        check_thresholds("ExplorationMonitor", warning_turns, critical_turns, least=min_turns)
        self.warning_fraction = warning_fraction
        self.critical_fraction = critical_fraction
        self.min_turns = min_turns
        self.warning_turns = warning_turns
        self.critical_turns = critical_turns
        self.fresh_share = fresh_share
        self._attempts: Attempts[_Reading] = Attempts(_Reading)

    def thresholds(self, facts: RunFacts) -> tuple[int, int]:
        """The turn counts without an edit that warn and that are critical for this run."""
        limit = facts.turn_limit
        if limit is None:
            return self.warning_turns, self.critical_turns
        warning = max(self.min_turns, math.ceil(self.warning_fraction * limit))
        return warning, max(warning + 1, math.ceil(self.critical_fraction * limit))

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        """Count a turn of the attempt; alert when too many have gone without an edit."""
        current = self._attempts.current(item)
        if current is None or current[0].step in facts.read_only:  # reading is the whole job
            return []
        turn, state = current
        if state.edited:
            return []
        state.turns += 1
        for action in turn.actions:
            if action.kind == "edit" or action.writes:
                state.edited = True
                return []
            if action.kind == "read":
                state.reads[action.target or action.tool] += 1
                state.read_seqs.append(action.seq)
        level = grade(state.turns, *self.thresholds(facts))
        reads = sum(state.reads.values())
        if reads and len(state.reads) / reads >= self.fresh_share:
            level -= 1  # still reading new files: exploring, one grade less alarming
        if level <= state.raised:
            return []
        state.raised = level
        return [self._alert(turn, level, state, facts.turn_limit)]

    def _alert(self, turn: Turn, level: int, state: _Reading, limit: int | None) -> Alert:
        used = f"{state.turns} of {limit}" if limit else f"{state.turns}"
        reads = sum(state.reads.values())
        top = [name for name, _ in state.reads.most_common(2)]
        where = f" {' or '.join(top)}" if top else ""
        return turn_alert(
            turn,
            monitor=self.name,
            kind="no_edit",
            severity=GRADES[level],
            message=(
                f"{used} turns used without any edit ({reads} reads of {len(state.reads)} files)"
            ),
            seqs=state.read_seqs,
            suggestion=(
                f"You have used {used} turns reading without changing anything. You know "
                f"enough to act: decide on the most likely fix and edit{where or ' the code'} "
                "now."
            ),
        )
