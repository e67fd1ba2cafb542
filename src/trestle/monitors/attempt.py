"""What the behavioural monitors share: state per step attempt, edits, alerts on a turn.

A behavioural monitor judges one agent's stretch of work: a plan step's attempt in a
Trestle run (steps may run side by side, so each has its own state), or a whole
imported trajectory (whose turns all carry step ``""``). A new round of a step starts
from a clean slate, as the agent itself does, and a :class:`StepEnd` closes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from trestle.core.errors import ConfigError
from trestle.core.records.monitors import Alert, Severity
from trestle.monitors.trace import Action, Observation, StepEnd, Turn

State = TypeVar("State")

# Evidence names the events that show a finding; past this many, the latest suffice.
EVIDENCE_LIMIT = 40


class Attempts(Generic[State]):
    """One state per running step attempt, made fresh by ``fresh`` when an attempt starts."""

    def __init__(self, fresh: Callable[[], State]) -> None:
        self._fresh = fresh
        self._by_step: dict[str, tuple[int, State]] = {}

    def of(self, turn: Turn) -> State:
        """The state of the attempt ``turn`` belongs to (a new round starts afresh)."""
        entry = self._by_step.get(turn.step)
        if entry is None or entry[0] != turn.round:
            entry = (turn.round, self._fresh())
            self._by_step[turn.step] = entry
        return entry[1]

    def current(self, item: Observation) -> tuple[Turn, State] | None:
        """``item`` and its attempt's state if it is a turn, else None (a step's end
        closes its attempt): what every per-attempt monitor starts with."""
        turn = self.turn_of(item)
        return None if turn is None else (turn, self.of(turn))

    def turn_of(self, item: Observation) -> Turn | None:
        """``item`` if it is a turn; closes the attempt if it is a step's end."""
        if isinstance(item, StepEnd):
            self._by_step.pop(item.step, None)
        return item if isinstance(item, Turn) else None


def changes_workspace(action: Action) -> bool:
    """Whether ``action`` changed files: an edit not known to have failed, or any write."""
    return bool(action.writes) or (action.kind == "edit" and action.ok is not False)


def evidence(seqs: Iterable[int]) -> tuple[int, ...]:
    """Sorted, distinct seqs, the latest :data:`EVIDENCE_LIMIT` of them."""
    return tuple(sorted(set(seqs)))[-EVIDENCE_LIMIT:]


def turn_alert(
    turn: Turn,
    *,
    monitor: str,
    kind: str,
    severity: Severity,
    message: str,
    seqs: Iterable[int],
    suggestion: str,
) -> Alert:
    """An alert raised on ``turn``, placed at its step, round and index."""
    return Alert(
        monitor=monitor,
        kind=kind,
        severity=severity,
        message=message,
        evidence=evidence([*seqs, turn.seq]),
        suggestion=suggestion,
        step=turn.step or None,
        round=turn.round,
        turn=turn.index,
    )


def short(text: str, limit: int = 80) -> str:
    """``text`` on one line, cut to ``limit`` characters, for a message."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def grade(count: int, warning_at: int, critical_at: int) -> int:
    """0 below ``warning_at``, 1 (warning) from it, 2 (critical) from ``critical_at``."""
    return 2 if count >= critical_at else 1 if count >= warning_at else 0


GRADES: dict[int, Severity] = {1: "warning", 2: "critical"}


def check_thresholds(owner: str, warning_at: int, critical_at: int, *, least: int = 1) -> None:
    """Refuse thresholds that cannot escalate: need ``least <= warning_at < critical_at``."""
    if not least <= warning_at < critical_at:
        raise ConfigError(
            f"{owner}: need {least} <= warning threshold < critical threshold, "
            f"got {warning_at!r} and {critical_at!r}"
        )
