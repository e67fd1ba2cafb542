"""Behavioural monitoring: an agent going round in circles.

The monitors here watch the actions themselves, never the reasoning around them (a
stuck agent rewords its reasoning every turn): :class:`RepeatMonitor` (the very same
call, again and again) and :class:`CycleMonitor` (a lap of calls that are equal up to
trivia, see :func:`near_key`, repeated). The others live beside them:
:mod:`~trestle.monitors.monologue` (reasoning without acting),
:mod:`~trestle.monitors.progress` (no progress, exploring without editing) and
:mod:`~trestle.monitors.reruns` (the same failing test between edits);
:func:`behaviour_monitors` makes all of them. :mod:`~trestle.monitors.rereads` (one
file read again and again while nothing changes it) is off unless the settings ask
for it (:func:`~trestle.monitors.catalog.default_monitors`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trestle.core.errors import ConfigError
from trestle.core.records.monitors import Alert
from trestle.monitors.alerts import Monitor
from trestle.monitors.attempt import (
    GRADES,
    Attempts,
    changes_workspace,
    check_thresholds,
    grade,
    short,
    turn_alert,
)
from trestle.monitors.fingerprint import (
    arguments_text,
    command_shape,
    content_hash,
    failure_fingerprint,
    observation_digest,
)
from trestle.monitors.monologue import MonologueMonitor
from trestle.monitors.progress import ExplorationMonitor, ProgressMonitor
from trestle.monitors.reruns import TestRerunMonitor
from trestle.monitors.shown import ShownLines
from trestle.monitors.trace import Action, Observation, RunFacts, Turn

_NEW_LINES = 3  # lines never shown before that make an observation new, as for progress
# Bounds on what an attempt's state keeps, so it (and each snapshot of it) stops growing
# with a long history: the latest actions a lap is looked for in, and the latest
# distinct calls a repeat is counted for
_LAPS_KEPT = 256
_CALLS_KEPT = 1_024


def near_key(action: Action) -> str:
    """What ``action`` amounts to, with trivial differences dropped.

    Two actions are *near-equal* when their near-keys are equal:

    - reads (``kind == "read"``) of the same file, whatever the line range or the tool
      (``read:<file>``); a read with no known file falls back to its arguments' shape;
    - commands (tests, runs, other tools) whose text is equal after normalising
      whitespace, quoting, number literals and flag order (``<kind>:<shape>``, see
      :func:`~trestle.monitors.fingerprint.command_shape`), so ``grep -rn "x" . | head
      -20`` and ``grep -n -r x . | head -40`` are near-equal; other tools also keep
      their name;
    - edits only when they write identical content (the exact arguments) to the same
      file (``edit:<file>:<digest>``): a different edit is progress, never a repeat;
    - every ``finish`` (``finish``).
    """
    if action.kind == "read":
        if action.target:
            return f"read:{_path(action.target)}"
        return f"read:{action.tool}:{command_shape(arguments_text(action.arguments))}"
    if action.kind == "edit":
        where = action.target or ",".join(sorted(action.writes)) or action.tool
        return f"edit:{_path(where)}:{content_hash(arguments_text(action.arguments))}"
    if action.kind == "finish":
        return "finish"
    shape = command_shape(action.target or arguments_text(action.arguments))
    if action.kind == "other":
        return f"other:{action.tool}:{shape}"
    return f"{action.kind}:{shape}"


def _path(path: str) -> str:
    path = path.strip()
    while path.startswith("./"):
        path = path[2:]
    return path.rstrip("/") or path


def describe(action: Action) -> str:
    """``action`` named for a message: its file or command, else its tool and arguments."""
    if action.kind in ("read", "edit"):
        return action.target or f"{action.tool} {short(action.arguments, 60)}".strip()
    return f"`{short(action.target or arguments_text(action.arguments), 60)}`"


def _failed(action: Action) -> bool:
    return action.ok is False or action.error is not None


@dataclass
class _Repeats:
    # (turn seq, action seq) of each occurrence since the workspace last changed
    same: dict[tuple[str, str], list[tuple[int, int]]] = field(default_factory=dict)
    failures: dict[tuple[str, tuple[str, ...]], list[tuple[int, int]]] = field(default_factory=dict)
    raised: dict[str, int] = field(default_factory=dict)


class RepeatMonitor:
    """The same call (tool and arguments exactly) repeated without effect.

    ``repeated_action``: the same call got the same observation (up to timestamps,
    durations and addresses) ``warning_repeats`` times; ``repeated_failure``: the same
    call failed the same way (the same failure fingerprint, see
    :func:`~trestle.monitors.fingerprint.failure_fingerprint`) ``warning_repeats``
    times. Each becomes critical at ``critical_repeats``.

    Only calls made while the workspace stayed as it was count: any change to the
    files (an edit that did not fail, a write) starts every count again. Re-running a
    script after an edit checks the edit, and on real runs healthy agents do it all
    the time; whether the edits are changing the failure is the business of
    :class:`~trestle.monitors.reruns.TestRerunMonitor`. A call that fails differently
    each time is not counted as a repeat either: the agent is learning something.
    One call raises each severity once between changes.

    Args:
        warning_repeats: occurrences that make a warning.
        critical_repeats: occurrences that make it critical.
    """

    name = "repeat"

    def __init__(self, warning_repeats: int = 3, critical_repeats: int = 5) -> None:
        check_thresholds("RepeatMonitor", warning_repeats, critical_repeats, least=2)
        self.warning_repeats = warning_repeats
        self.critical_repeats = critical_repeats
        self._attempts: Attempts[_Repeats] = Attempts(_Repeats)

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        """Count ``item``'s calls; alert when one repeats without effect."""
        current = self._attempts.current(item)
        if current is None:
            return []
        turn, state = current
        alerts = []
        for action in turn.actions:
            if changes_workspace(action):
                state.same.clear()
                state.failures.clear()
                state.raised.clear()
                continue
            call = f"{action.tool}\0{action.arguments}"
            output = f"{action.output}\n{action.error or ''}"
            if len(state.same) >= _CALLS_KEPT:  # the oldest call, long done with
                del state.same[next(iter(state.same))]
            same = state.same.setdefault((call, observation_digest(output)), [])
            same.append((turn.seq, action.seq))
            failures: list[tuple[int, int]] = []
            if _failed(action):
                fingerprint = failure_fingerprint(output, failed=True)
                failures = state.failures.setdefault((call, fingerprint), [])
                failures.append((turn.seq, action.seq))
            same_grade = grade(len(same), self.warning_repeats, self.critical_repeats)
            failed_grade = grade(len(failures), self.warning_repeats, self.critical_repeats)
            level = max(same_grade, failed_grade)
            if level <= state.raised.get(call, 0):
                continue
            state.raised[call] = level
            if same_grade >= failed_grade:
                alerts.append(self._same(turn, action, level, same))
            else:
                alerts.append(self._failing(turn, action, level, failures))
        return alerts

    def _same(self, turn: Turn, action: Action, level: int, seen: list[tuple[int, int]]) -> Alert:
        what, times = describe(action), len(seen)
        return turn_alert(
            turn,
            monitor=self.name,
            kind="repeated_action",
            severity=GRADES[level],
            message=f"{what} was run {times} times with the same result and no change between",
            seqs=[seq for pair in seen for seq in pair],
            suggestion=(
                f"You have run {what} {times} times and got the same result each time; "
                "running it again will not change it. Use what it showed, or do something "
                "different."
            ),
        )

    def _failing(
        self, turn: Turn, action: Action, level: int, seen: list[tuple[int, int]]
    ) -> Alert:
        what, times = describe(action), len(seen)
        error = short(action.error or action.output, 100)
        return turn_alert(
            turn,
            monitor=self.name,
            kind="repeated_failure",
            severity=GRADES[level],
            message=(
                f"{what} failed the same way {times} times with no change between (last: {error})"
            ),
            seqs=[seq for pair in seen for seq in pair],
            suggestion=(
                f"{what} has failed {times} times; do not repeat it as it is. Read the "
                "error, then change the arguments, use another tool, or fix the cause first."
            ),
        )


@dataclass
class _Laps:
    keys: list[str] = field(default_factory=list)
    seqs: list[tuple[int, int]] = field(default_factory=list)  # (turn seq, action seq)
    fresh: list[bool] = field(default_factory=list)  # whether each action showed anything new
    raised: dict[tuple[str, ...], int] = field(default_factory=dict)


class CycleMonitor:
    """A lap of near-equal actions (see :func:`near_key`) gone round again and again.

    After each action, the monitor looks for the shortest lap of ``shortest_lap`` to
    ``longest_lap`` actions (with at least two different near-keys) that the latest
    actions repeat, and counts its complete laps. A/B/A/B/A/B is lap 2 three times; a
    6-step lap of files re-viewed with shifting ranges, twice round, is 12 actions.
    ``warning`` needs two laps covering at least ``min_span`` actions; ``critical``
    three laps covering at least twice that. So laps of three or more warn on their
    second round, while two files looked at in turn (a healthy cross-check) must
    alternate three times. One lap (in whichever rotation) raises each severity once.

    A lap counts only when its latest round showed nothing new (no observation with
    at least three lines never shown before, as :class:`~trestle.monitors.progress.
    ProgressMonitor` judges it): on real runs, healthy agents page through two or three
    files in turn, each view showing lines they had not seen, and that is reading,
    not going in circles.

    Args:
        shortest_lap: the shortest lap looked for.
        longest_lap: the longest lap looked for.
        min_span: the fewest actions a lap repeated twice must cover to warn.
        shown: the lines each attempt was shown, shared with the other monitors of its
            set that ask the same (by default its own).
    """

    name = "cycle"

    def __init__(
        self,
        shortest_lap: int = 2,
        longest_lap: int = 8,
        min_span: int = 6,
        shown: ShownLines | None = None,
    ) -> None:
        if not 2 <= shortest_lap <= longest_lap or min_span < 2:
            raise ConfigError(
                f"CycleMonitor: need 2 <= shortest_lap <= longest_lap and min_span >= 2, got "
                f"{shortest_lap!r}, {longest_lap!r} and {min_span!r}"
            )
        self.shortest_lap = shortest_lap
        self.longest_lap = longest_lap
        self.min_span = min_span
        self._shown = shown if shown is not None else ShownLines()
        self._reader = self._shown.join()
        self._attempts: Attempts[_Laps] = Attempts(_Laps)

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        """Add ``item``'s actions to the attempt's sequence; alert on a repeated lap."""
        current = self._attempts.current(item)
        novelties = self._shown.novelty(self._reader, item)
        if current is None:
            return []
        turn, state = current
        alerts = []
        for action, novelty in zip(turn.actions, novelties, strict=True):
            state.keys.append(near_key(action))
            state.seqs.append((turn.seq, action.seq))
            state.fresh.append(novelty.informs(_NEW_LINES))
            if len(state.keys) > 2 * _LAPS_KEPT:  # laps this long are counted no further
                del state.keys[:-_LAPS_KEPT], state.seqs[:-_LAPS_KEPT], state.fresh[:-_LAPS_KEPT]
            found = self._lap(state.keys)
            if found is None:
                continue
            length, laps = found
            if any(state.fresh[-length:]):
                continue  # the latest lap showed something new: reading on, not circling
            span = length * laps
            if laps >= 3 and span >= 2 * self.min_span:
                level = 2
            elif span >= self.min_span:
                level = 1
            else:
                continue
            lap = tuple(state.keys[-length:])
            canonical = min(lap[i:] + lap[:i] for i in range(length))
            if level <= state.raised.get(canonical, 0):
                continue
            state.raised[canonical] = level
            seqs = [seq for pair in state.seqs[-span:] for seq in pair]
            alerts.append(self._alert(turn, level, lap, laps, seqs))
        return alerts

    def _lap(self, keys: list[str]) -> tuple[int, int] | None:
        """The shortest lap the latest keys repeat (at least twice), and its full laps."""
        for length in range(self.shortest_lap, self.longest_lap + 1):
            if len(keys) < 2 * length:
                return None
            if keys[-2 * length : -length] != keys[-length:] or len(set(keys[-length:])) < 2:
                continue
            periodic = 2 * length
            while periodic < len(keys) and keys[-periodic - 1] == keys[-periodic - 1 + length]:
                periodic += 1
            return length, periodic // length
        return None

    def _alert(
        self, turn: Turn, level: int, lap: tuple[str, ...], laps: int, seqs: list[int]
    ) -> Alert:
        route = " -> ".join(short(key, 50) for key in lap)
        return turn_alert(
            turn,
            monitor=self.name,
            kind="action_cycle",
            severity=GRADES[level],
            message=(
                f"the last {len(lap) * laps} actions go {laps} times round the same "
                f"{len(lap)}-step lap: {route}"
            ),
            seqs=seqs,
            suggestion=(
                f"You are going in circles ({route}), {laps} times so far. Stop re-checking "
                "the same things: say what you still do not know, then make a change or try "
                "a different approach."
            ),
        )


def behaviour_monitors() -> list[Monitor]:
    """Fresh instances of every behavioural monitor, with their default thresholds; the
    cycle and progress monitors share one memory of the lines each attempt was shown."""
    shown = ShownLines()
    return [
        RepeatMonitor(),
        CycleMonitor(shown=shown),
        MonologueMonitor(),
        ProgressMonitor(shown=shown),
        ExplorationMonitor(),
        TestRerunMonitor(),
    ]
