"""The reread monitor (off unless asked for): one file read again and again while
nothing changes it.

Runs built by hand for the counting, and real runs' excerpts for what it was tuned on:
an OpenHands run that used up its 50 calls, flagged before half of them, and a
successful mini-swe-agent run with a 250-call budget that pages through one file and
must be left alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from test_cli import Cli
from test_monitor_loops import Run, act, edit, feed, summary, view
from test_monitor_real_runs import flags, mini, openhands
from trestle.core.errors import ConfigError
from trestle.core.records.monitors import MonitorSettings
from trestle.monitors.catalog import default_monitors
from trestle.monitors.rereads import RereadMonitor
from trestle.monitors.trace import RunFacts


def test_one_file_read_seven_times_unchanged_warns_then_is_critical_at_twelve() -> None:
    run = Run()
    for i in range(12):
        run.turn(view("src/parser.py", 1 + 20 * i, 40 + 20 * i))
        run.turn(act("run", "python reproduce.py", output=f"still wrong {i}", ok=False))
    alerts = feed(RereadMonitor(), run.turns)
    assert summary(alerts) == [
        ("same_file_reread", "warning", 12),
        ("same_file_reread", "critical", 22),
    ]
    assert alerts[0].message == "src/parser.py read 7 times while nothing changed it"
    assert len(alerts[0].evidence) == 1 + 7  # the turn, and the seven reads
    assert "edit the code, or run a test" in alerts[0].suggestion


def test_an_edit_of_the_file_starts_its_count_again_and_other_files_do_not() -> None:
    run = Run()
    for _ in range(6):
        run.turn(view("src/parser.py"))
    run.turn(edit("src/parser.py", "fixed"), edit("src/other.py", "too"))
    for _ in range(6):
        run.turn(view("src/parser.py"), view("src/lexer.py"))
    assert feed(RereadMonitor(), run.turns) == []  # six and six, and six of the lexer
    run.turn(view("src/lexer.py"))
    assert summary(feed(RereadMonitor(), run.turns)) == [("same_file_reread", "warning", 13)]


def test_the_thresholds_grow_with_a_long_turn_limit_and_planning_steps_are_exempt() -> None:
    run = Run(step="fix")
    for _ in range(20):
        run.turn(view("src/parser.py"))
    monitor = RereadMonitor()
    assert monitor.thresholds(RunFacts(turn_limit=50)) == (7, 12)
    assert monitor.thresholds(RunFacts(turn_limit=250)) == (35, 60)
    assert feed(RereadMonitor(), run.turns, RunFacts(turn_limit=250)) == []
    looking = RunFacts(read_only=frozenset({"fix"}))
    assert feed(RereadMonitor(), run.turns, looking) == []
    with pytest.raises(ConfigError, match="RereadMonitor"):
        RereadMonitor(warning_reads=5, critical_reads=5)
    with pytest.raises(ConfigError, match="RereadMonitor"):
        RereadMonitor(warning_share=0.3, critical_share=0.2)


def test_it_is_off_unless_the_settings_ask_for_it() -> None:
    assert not any(isinstance(m, RereadMonitor) for m in default_monitors(MonitorSettings()))
    chosen = default_monitors(MonitorSettings.model_validate({"reread": True}))
    assert sum(isinstance(m, RereadMonitor) for m in chosen) == 1


def test_a_real_run_that_used_up_its_calls_is_flagged_before_half_of_them() -> None:
    # OpenHands on matplotlib-26208 (tuning half): axes/_base.py viewed range after
    # range between failing runs of its script; it ended at its 50-call limit
    run = openhands("matplotlib__matplotlib-26208")
    [alert] = flags(RereadMonitor(), run)
    assert (alert.kind, alert.severity) == ("same_file_reread", "warning")
    assert "lib/matplotlib/axes/_base.py read 7 times" in alert.message
    assert alert.turn is not None and alert.turn < 25


def test_a_long_budget_run_paging_through_one_file_is_left_alone() -> None:
    # mini-swe-agent on django-11299 (resolved, 250-call budget): sql/query.py read 8
    # times with sed -n by turn 15; at seven reads it would have been flagged
    run = mini("django__django-11299")
    assert run.facts.turn_limit == 250
    assert flags(RereadMonitor(), run) == []
    assert flags(RereadMonitor(), run, RunFacts(turn_limit=50)) != []


def test_monitors_eval_replays_the_excerpts_with_it_when_asked(tmp_path: Path) -> None:
    cli = Cli(tmp_path, tmp_path / "t.db")
    real = Path(__file__).parent / "data" / "real_runs"
    without, asked = cli("monitors", "eval", real), cli("monitors", "eval", real, "--reread")
    assert without.returncode == asked.returncode == 0, asked.stderr
    assert "| reread |" not in without.stdout
    # matplotlib-26208 alone: seven reads by its 17th call, the end of its excerpt
    assert "| reread | same_file_reread | 1/8 |" in asked.stdout
