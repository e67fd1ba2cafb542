"""The token-level monitor: malformed turns are noted, and a streak of them escalates."""

from __future__ import annotations

import pytest

from trestle.core.errors import ConfigError
from trestle.core.records.monitors import Alert
from trestle.monitors.format import FormatMonitor
from trestle.monitors.trace import Action, Malformed, RunFacts, Stall, StepEnd, Turn

FACTS = RunFacts()


def turns(*problems: Malformed | None, step: str = "", round: int = 1) -> list[Turn]:
    """One turn per entry (``None``: a well-formed turn with one action); seqs 10, 20..."""
    out = []
    for index, problem in enumerate(problems):
        seq = 10 * (index + 1)
        actions = () if problem else (Action(seq=seq + 1, tool="bash", kind="run", arguments="ls"),)
        out.append(
            Turn(index=index, seq=seq, step=step, round=round, problem=problem, actions=actions)
        )
    return out


def feed(monitor: FormatMonitor, items: list[Turn], facts: RunFacts = FACTS) -> list[Alert]:
    return [alert for item in items for alert in monitor.observe(item, facts)]


def short_fused() -> FormatMonitor:
    """A monitor that warns at 3 malformed turns in a row and is critical at 5."""
    return FormatMonitor(warning_streak=3, critical_streak=5)


def test_one_malformed_turn_is_a_note_named_after_its_problem() -> None:
    [alert] = feed(FormatMonitor(), turns(None, "unparseable", None))
    assert (alert.kind, alert.severity, alert.monitor) == ("unparseable", "info", "format")
    assert alert.evidence == (20,)
    assert (alert.turn, alert.round, alert.step) == (1, 1, None)
    assert "JSON" in alert.suggestion


def test_errors_the_model_recovers_from_stay_notes() -> None:
    problems: list[Malformed | None] = ["truncated", None, "empty", "empty", None] * 4
    alerts = feed(FormatMonitor(), turns(*problems))
    assert {alert.severity for alert in alerts} == {"info"}
    # one note per streak, not one per malformed turn
    assert len(alerts) == 8
    assert len({alert.key for alert in alerts}) == len(alerts)


def test_a_streak_warns_then_turns_critical_then_stays_quiet() -> None:
    problems: list[Malformed | None] = [
        None,
        "unparseable",
        "unknown_tool",
        "unparseable",
        "truncated",
        "unparseable",
        "unparseable",
        "unparseable",
    ]
    alerts = feed(short_fused(), turns(*problems))
    assert [(a.kind, a.severity, a.turn) for a in alerts] == [
        ("unparseable", "info", 1),
        ("format_streak", "warning", 3),
        ("format_streak", "critical", 5),
    ]
    warning = alerts[1]
    assert "3 malformed turns in a row" in warning.message
    assert "unknown_tool x1" in warning.message and "unparseable x2" in warning.message
    assert warning.evidence == (20, 30, 40)
    assert "JSON" in warning.suggestion  # advice for the commonest problem
    assert alerts[2].evidence == (20, 30, 40, 50, 60)


def test_a_streak_is_weighed_against_the_turn_budget() -> None:
    # mini-swe-agent's 250-step limit: a streak warns at 13 turns (5%) and is critical
    # at 25 (10%); without a limit at 5 and 10; never below those counts
    nine: list[Malformed | None] = ["several_actions"] * 9
    assert FormatMonitor().thresholds(RunFacts(turn_limit=250)) == (13, 25)
    assert FormatMonitor().thresholds(RunFacts(turn_limit=50)) == (5, 10)
    assert FormatMonitor().thresholds(FACTS) == (5, 10)
    assert [a.severity for a in feed(FormatMonitor(), turns(*nine), RunFacts(turn_limit=250))] == [
        "info"
    ]
    assert [a.severity for a in feed(FormatMonitor(), turns(*nine))] == ["info", "warning"]


def test_a_good_turn_ends_the_streak() -> None:
    alerts = feed(FormatMonitor(), turns("empty", "empty", None, "empty", "empty", None))
    assert [(a.severity, a.turn) for a in alerts] == [("info", 0), ("info", 3)]


def test_thresholds_are_the_constructors() -> None:
    alerts = feed(FormatMonitor(warning_streak=2, critical_streak=3), turns("empty", "empty"))
    assert [a.severity for a in alerts] == ["info", "warning"]
    with pytest.raises(ConfigError, match="FormatMonitor"):
        FormatMonitor(warning_streak=4, critical_streak=4)
    with pytest.raises(ConfigError, match="FormatMonitor"):
        FormatMonitor(warning_streak=1)


def test_a_new_round_starts_a_new_streak() -> None:
    monitor = FormatMonitor()
    first = feed(monitor, turns("empty", "empty", step="fix", round=1))
    second = feed(monitor, turns("empty", step="fix", round=2))
    assert [a.severity for a in first + second] == ["info", "info"]
    assert (second[0].step, second[0].round) == ("fix", 2)


def test_steps_running_side_by_side_keep_their_own_streaks() -> None:
    monitor = short_fused()
    a, b = turns("empty", "empty", "empty", step="a"), turns("empty", "empty", step="b")
    interleaved = [a[0], b[0], a[1], b[1], a[2]]
    alerts = feed(monitor, interleaved)
    assert [(a.step, a.severity) for a in alerts] == [
        ("a", "info"),
        ("b", "info"),
        ("a", "warning"),
    ]


def test_step_ends_and_stalls_raise_nothing_and_an_end_closes_the_streak() -> None:
    monitor = FormatMonitor()
    alerts = feed(monitor, turns("empty", "empty", step="s"))
    end = StepEnd(seq=99, step="s", attempt=1, ok=False, seconds=1.0)
    stall = Stall(seq=98, step="s", attempt=1, silent=100.0)
    assert monitor.observe(stall, FACTS) == [] and monitor.observe(end, FACTS) == []
    alerts += feed(monitor, turns("empty", step="s"))
    assert [a.severity for a in alerts] == ["info", "info"]
