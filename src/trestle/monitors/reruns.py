"""Behavioural monitoring: the same failing test, run after run, between edits.

A stuck agent edits, re-runs the tests, sees the same failure, and edits again
somewhere else, each time with a new explanation. The edits change the code but not
the failure: :class:`TestRerunMonitor` notices that the failure stays the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trestle.core.records.monitors import Alert
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
    failure_fingerprint,
    shows_traceback,
)
from trestle.monitors.trace import Action, Observation, RunFacts, Turn


@dataclass
class _Failure:
    fingerprint: tuple[str, ...]
    edits_at: int  # the attempt's edit count when last counted
    runs: list[tuple[int, int]]  # (turn seq, action seq) of the runs counted
    files: frozenset[str]  # the files the command names: the test (or script) itself
    raised: int = 0


@dataclass
class _Reruns:
    edits: int = 0
    by_command: dict[str, _Failure] = field(default_factory=dict)


def _named_files(command: str) -> frozenset[str]:
    """The file names a command line names (``python repro.py``, ``pytest tests/t.py::x``)."""
    names = set()
    for token in command.replace("::", " ").split():
        token = token.strip("'\"")
        if "." in token.rsplit("/", 1)[-1] and not token.startswith("-"):
            names.add(token.rsplit("/", 1)[-1])
    return frozenset(names)


def _edits_the_test(action: Action, files: frozenset[str]) -> bool:
    written = {w.rsplit("/", 1)[-1] for w in (*action.writes, action.target) if w}
    return bool(written & files)


class TestRerunMonitor:
    """The same failing test output, run after run, with edits in between.

    For each test command (and each script run that ends in a traceback), keyed by its
    shape (:func:`~trestle.monitors.fingerprint.command_shape`), the monitor keeps the
    failure's fingerprint (:func:`~trestle.monitors.fingerprint.failure_fingerprint`:
    failing test ids and error lines, without timings, addresses or line numbers). A
    run that fails the same way after at least one edit since the last counted run adds
    one; a different failure, or a pass, starts over, since the edits are changing
    something. ``warning`` at ``warning_runs`` counted runs, ``critical`` at
    ``critical_runs``. Re-running without editing is the business of
    :class:`~trestle.monitors.loops.RepeatMonitor`.

    An edit to the test itself (a file the command names: the script it runs, the
    test file it selects) starts the count again: the test now asks something else.
    On real runs agents write a reproduction script, run it, and rework it between
    fixes as often as they rework the code; the same failure across such edits is
    the test being changed, not the fix failing.

    Args:
        warning_runs: same-failure runs, edits between each, that make a warning.
        critical_runs: same-failure runs that make it critical.
    """

    __test__ = False  # a monitor, not a pytest test class
    name = "test_rerun"

    def __init__(self, warning_runs: int = 3, critical_runs: int = 5) -> None:
        check_thresholds("TestRerunMonitor", warning_runs, critical_runs, least=2)
        self.warning_runs = warning_runs
        self.critical_runs = critical_runs
        self._attempts: Attempts[_Reruns] = Attempts(_Reruns)

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        """Compare each test run's failure with the previous run of the same command."""
        current = self._attempts.current(item)
        if current is None:
            return []
        turn, state = current
        alerts = []
        for action in turn.actions:
            if changes_workspace(action):
                state.edits += 1
                for command, failure in list(state.by_command.items()):
                    if _edits_the_test(action, failure.files):
                        del state.by_command[command]  # the test changed: a new question
                continue
            if action.kind not in ("test", "run"):
                continue
            command = command_shape(action.target or arguments_text(action.arguments))
            fingerprint = self._fingerprint(action)
            previous = state.by_command.get(command)
            if not fingerprint:
                state.by_command.pop(command, None)
            elif previous is None or previous.fingerprint != fingerprint:
                state.by_command[command] = _Failure(
                    fingerprint,
                    state.edits,
                    [(turn.seq, action.seq)],
                    _named_files(action.target or arguments_text(action.arguments)),
                )
            elif state.edits > previous.edits_at:
                previous.edits_at = state.edits
                previous.runs.append((turn.seq, action.seq))
                level = grade(len(previous.runs), self.warning_runs, self.critical_runs)
                if level > previous.raised:
                    previous.raised = level
                    alerts.append(self._alert(turn, action, level, previous))
        return alerts

    @staticmethod
    def _fingerprint(action: Action) -> tuple[str, ...]:
        output = f"{action.output}\n{action.error or ''}"
        if action.kind == "run" and action.ok is not False and not shows_traceback(output):
            return ()  # a script that ran through: whatever it printed, it did not crash
        return failure_fingerprint(output, failed=action.ok is False)

    def _alert(self, turn: Turn, action: Action, level: int, failure: _Failure) -> Alert:
        command = short(action.target or arguments_text(action.arguments), 60)
        runs = len(failure.runs)
        first = short(failure.fingerprint[0], 100)
        more = (
            f" (and {len(failure.fingerprint) - 1} more lines)" if failure.fingerprint[1:] else ""
        )
        return turn_alert(
            turn,
            monitor=self.name,
            kind="same_test_failure",
            severity=GRADES[level],
            message=(
                f"`{command}` failed the same way {runs} times with edits in between: {first}{more}"
            ),
            seqs=[seq for pair in failure.runs for seq in pair],
            suggestion=(
                f"Your edits are not changing the failure of `{command}` ({first}). Stop "
                "adjusting the same code: re-read the error, find where the failing value "
                "really comes from, and try a different fix."
            ),
        )
