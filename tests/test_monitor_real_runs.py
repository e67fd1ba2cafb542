"""The importers and the recalibrated monitors on excerpts of real agent runs.

The excerpts in ``tests/data/real_runs`` are the first turns of real OpenHands and
mini-swe-agent runs on SWE-bench Verified tasks (the folder's ``README.md`` names each one's
upstream file; ``scripts/make_real_excerpts.py`` wrote them). Each monitor that was
changed is shown a succeeded run it used to flag, and, where a real run of the
tuning half has the pattern, an exhausted run it must still flag.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bench_modules import load_bench
from trestle.core.errors import ConfigError
from trestle.core.records.monitors import (
    ACTION_ORDER,
    FLAGGING,
    Alert,
    MonitorSettings,
    merge_alerts,
)
from trestle.monitors.alerts import Monitor
from trestle.monitors.corpus import load_corpus
from trestle.monitors.cost import CostMonitor
from trestle.monitors.format import FormatMonitor
from trestle.monitors.importers import ImportedRun, load_trajectory_file
from trestle.monitors.loops import CycleMonitor, RepeatMonitor
from trestle.monitors.reruns import TestRerunMonitor
from trestle.monitors.trace import Action, RunFacts, Turn

DATA = Path(__file__).resolve().parent / "data" / "real_runs"


def excerpt(name: str) -> ImportedRun:
    return load_trajectory_file(DATA / name)


def openhands(instance: str) -> ImportedRun:
    return excerpt(f"openhands-{instance}.json.gz")


def mini(instance: str) -> ImportedRun:
    return excerpt(f"mini-swe-agent-{instance}.traj.json.gz")


def flags(monitor: Monitor, run: ImportedRun, facts: RunFacts | None = None) -> list[Alert]:
    facts = facts or run.facts
    alerts = [a for turn in run.turns for a in monitor.observe(turn, facts)]
    return [a for a in alerts if a.severity in FLAGGING]


def raw(name: str) -> Any:
    return json.loads(gzip.decompress((DATA / name).read_bytes()))


# --- importers ------------------------------------------------------------------------


def test_every_excerpt_names_its_source() -> None:
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    assert sorted(line.split("`")[1] for line in rows) == sorted(p.name for p in DATA.glob("*.gz"))
    for row in rows:  # the upstream file and its digest
        assert "/trajs/" in row and len(row.split("`")[7]) == 64


def test_the_excerpts_replay_through_monitors_eval(tmp_path: Path) -> None:
    runs, labels = load_corpus(DATA)
    assert len(runs) == 8 and labels == {}
    assert {r.source for r in runs} == {"openhands", "mini-swe-agent"}


def test_an_openhands_completion_log_becomes_turns_with_outcomes() -> None:
    run = openhands("sympy__sympy-16886")
    assert run.source == "openhands" and len(run.turns) == 24
    assert "morse" in run.facts.goal.lower()
    first = run.turns[0].actions[0]
    assert (first.tool, first.kind, first.ok) == ("execute_bash", "read", True)
    created = run.turns[4].actions[0]
    assert (created.kind, created.writes) == ("edit", ("/workspace/test_morse.py",))
    failed = run.turns[5].actions[0]
    assert (failed.kind, failed.ok, failed.error) == ("test", False, "exit code 2")
    # the tool message answering each call is its observation, found by its id
    assert "Command finished with exit code 2" in failed.output


def test_a_completion_log_with_messages_is_not_read_as_mini_swe_agent(tmp_path: Path) -> None:
    data = raw("openhands-django__django-11265.json.gz")
    data["messages"] = [{"role": "user", "content": "the same turns as text"}]
    data["response"] = {"choices": [{"message": {"role": "assistant", "content": "done"}}]}
    path = tmp_path / "log.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    run = load_trajectory_file(path)
    assert run.source == "openhands" and len(run.turns) == 12


def test_a_file_of_no_known_format_says_which_formats_were_tried(tmp_path: Path) -> None:
    path = tmp_path / "chat.json"
    path.write_text(json.dumps({"conversation": [{"role": "user"}]}), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_trajectory_file(path)
    said = str(caught.value)
    for name in ("swe-agent", "mini-swe-agent", "openhands", "openhands-events", "trestle"):
        assert f"{name}: " in said
    assert "missing key 'fncall_messages'" in said


def test_an_openhands_event_stream_becomes_turns(tmp_path: Path) -> None:
    # the shape the SWE-bench harness writes per instance (written here by hand: no
    # event stream is among the real runs); two calls of one response make one turn
    response = {"model_response": {"id": "r2"}}
    history = [
        {"id": 0, "source": "user", "action": "message", "args": {"content": "Fix add()"}},
        {"id": 1, "source": "agent", "action": "system", "args": {}},
        {
            "id": 2,
            "source": "agent",
            "action": "run",
            "args": {"command": "python -m pytest tests/test_calc.py", "thought": "run it"},
            "tool_call_metadata": {"model_response": {"id": "r1"}},
        },
        {
            "id": 3,
            "source": "agent",
            "observation": "run",
            "cause": 2,
            "content": "E assert 1 == 2\n1 failed",
            "extras": {"metadata": {"exit_code": 1}},
        },
        {
            "id": 4,
            "source": "agent",
            "action": "edit",
            "args": {
                "path": "/w/calc.py",
                "command": "str_replace",
                "old_str": "-",
                "new_str": "+",
            },
            "tool_call_metadata": response,
        },
        {
            "id": 5,
            "source": "agent",
            "action": "read",
            "args": {"path": "/w/calc.py"},
            "tool_call_metadata": response,
        },
        {"id": 6, "source": "agent", "observation": "edit", "cause": 4, "content": "edited"},
        {"id": 7, "source": "agent", "observation": "error", "cause": 5, "content": "no file"},
        {"id": 8, "source": "agent", "action": "finish", "args": {}},
    ]
    path = tmp_path / "output.json"
    path.write_text(json.dumps({"instance_id": "x", "history": history}), encoding="utf-8")
    run = load_trajectory_file(path)
    assert (run.source, run.facts.goal, run.exit_status, run.outcome) == (
        "openhands-events",
        "Fix add()",
        "finish",
        "succeeded",
    )
    assert [[a.kind for a in t.actions] for t in run.turns] == [
        ["test"],
        ["edit", "read"],
        ["finish"],
    ]
    test, (edit, read) = run.turns[0].actions[0], run.turns[1].actions
    assert (test.ok, test.error, run.turns[0].text) == (False, "exit code 1", "run it")
    assert (edit.ok, edit.writes) == (True, ("/w/calc.py",))
    assert (read.ok, read.error) == (False, "no file")


def test_an_early_event_stream_without_ids_pairs_each_observation_with_its_action(
    tmp_path: Path,
) -> None:
    history = [
        {"source": "agent", "action": "run", "args": {"command": "git status", "thought": ""}},
        {
            "source": "agent",
            "observation": "run",
            "content": "fatal: not a git repository",
            "extras": {"command": "git status", "exit_code": 128},
        },
        {"source": "agent", "action": "run", "args": {"command": "ls"}},
        {"source": "agent", "observation": "run", "content": "a.py", "extras": {"exit_code": 0}},
    ]
    path = tmp_path / "early.json"
    path.write_text(json.dumps(history), encoding="utf-8")
    run = load_trajectory_file(path)
    assert run.source == "openhands-events"
    assert [(a.ok, a.error, a.output) for t in run.turns for a in t.actions] == [
        (False, "exit code 128", "fatal: not a git repository"),
        (True, None, "a.py"),
    ]


# --- the monitors on real runs --------------------------------------------------------


def test_repeat_leaves_a_script_rerun_between_edits_alone() -> None:
    # it used to raise repeated_failure here: `python reproduce_issue.py` failed three
    # times, each after an edit, each time differently (the run was resolved)
    run = openhands("django__django-11265")
    assert flags(RepeatMonitor(), run) == []


def test_cycle_leaves_two_files_read_in_turn_alone() -> None:
    # it used to warn at turn 9: two files viewed in turn, each view showing new lines
    run = openhands("django__django-16082")
    assert flags(CycleMonitor(), run) == []


def test_test_rerun_leaves_a_reworked_test_script_alone() -> None:
    # it used to warn at turn 16: the same KeyError while test_morse.py was rewritten
    run = openhands("sympy__sympy-16886")
    assert flags(TestRerunMonitor(), run) == []


def test_test_rerun_still_flags_code_edits_that_do_not_change_the_failure() -> None:
    # exhausted its 50 calls; the marker test failed the same way across fixes
    run = openhands("pytest-dev__pytest-10356")
    [alert] = flags(TestRerunMonitor(), run)
    assert (alert.kind, alert.severity) == ("same_test_failure", "warning")
    assert alert.turn is not None and alert.turn < 25  # by half of its 50-call budget


def test_cost_leaves_a_run_well_inside_its_budget_alone_but_not_a_tighter_one() -> None:
    # $0.80 of a $3 limit in 57 calls; it used to warn of a burn rate and an overspend
    run = mini("django__django-12209")
    assert flags(CostMonitor(), run) == []
    notes = [a for t in run.turns for a in CostMonitor().observe(t, run.facts)]
    assert all(a.severity == "info" for a in notes)
    # the same real spending against a $0.60 budget: flagged while money is left
    tight = run.facts.model_copy(update={"cost_limit": 0.6})
    alerts = flags(CostMonitor(), run, tight)
    assert [a.kind for a in alerts][:1] == ["projected_overspend"]
    spent = sum(t.cost for t in run.turns[: (alerts[0].turn or 0) + 1])
    assert spent < 0.6


def test_format_weighs_a_streak_against_the_budget() -> None:
    # 3 malformed turns the model recovered from: it used to warn
    assert flags(FormatMonitor(), mini("django__django-11951")) == []
    # 8 in a row within a 250-step budget: notes; with no known budget, a warning
    run = mini("django__django-11299")
    assert flags(FormatMonitor(), run) == []
    [alert] = flags(FormatMonitor(), run, RunFacts())
    assert (alert.kind, alert.severity, alert.turn) == ("format_streak", "warning", 34)


# --- merging --------------------------------------------------------------------------


def alert(monitor: str, kind: str, severity: Any, evidence: Sequence[int]) -> Alert:
    return Alert(
        monitor=monitor,
        kind=kind,
        severity=severity,
        message=f"{kind} seen",
        evidence=tuple(evidence),
        suggestion="Do something else.",
    )


def test_alerts_on_one_event_merge_into_the_most_severe() -> None:
    repeat = alert("repeat", "repeated_action", "warning", [3, 5, 7])
    rerun = alert("test_rerun", "same_test_failure", "critical", [1, 7])
    other = alert("format", "no_action", "info", [8])
    merged = merge_alerts([repeat, rerun, other])
    assert [(a.monitor, a.severity) for a in merged] == [
        ("test_rerun", "critical"),
        ("format", "info"),
    ]
    assert merged[0].evidence == (1, 3, 5, 7)
    assert "also repeat/repeated_action: repeated_action seen" in merged[0].message
    assert merge_alerts([repeat, rerun, other]) == merged  # deterministic
    assert [(m.monitor, m.kind, m.severity) for m in merged[0].merged] == [
        ("repeat", "repeated_action", "warning")
    ]


def test_a_merged_alert_takes_the_strongest_action_of_those_it_speaks_for() -> None:
    repeat = alert("repeat", "repeated_action", "warning", [3, 5, 7])
    cycle = alert("cycle", "action_cycle", "warning", [4, 7])
    note = alert("format", "no_action", "info", [7])
    [merged] = merge_alerts([repeat, cycle, note])
    assert merged.kind == "repeated_action"  # the first among equals speaks
    assert [m.kind for m in merged.merged] == ["action_cycle", "no_action"]
    default = MonitorSettings()
    assert default.action_for(merged, agent_step=True) == "inject"
    replan = MonitorSettings(kinds={"action_cycle": "replan"})
    assert replan.action_for(merged, agent_step=True) == "replan"
    # steering needs an agent step: without one, each falls back to a note first
    assert replan.action_for(merged, agent_step=False) == "note"
    # stronger by ACTION_ORDER: a kind set to stop wins over anything, even merged away
    both = MonitorSettings(kinds={"action_cycle": "replan", "no_action": "stop"})
    assert both.action_for(merged, agent_step=True) == "stop"
    # a merged-away kind set weaker than the speaker's own action does not weaken it
    weaker = MonitorSettings(kinds={"action_cycle": "note"})
    assert weaker.action_for(merged, agent_step=True) == "inject"
    # merging is transitive: an alert merged into one that then merges away still counts
    critical = alert("test_rerun", "same_test_failure", "critical", [7])
    [top] = merge_alerts([repeat, cycle, critical])
    assert top.kind == "same_test_failure"
    assert [m.kind for m in top.merged] == ["repeated_action", "action_cycle"]
    assert MonitorSettings(kinds={"action_cycle": "stop"}).action_for(top, agent_step=True) == (
        "stop"
    )
    assert ACTION_ORDER == ("note", "inject", "replan", "pause", "stop")


# --- OpenHands' stuck rules, as the bench implements them ------------------------------


def turns(*actions: tuple[str, str, str | None], texts: int = 0) -> list[Turn]:
    out = [Turn(index=i, seq=i + 1, text="thinking") for i in range(texts)]
    for command, output, error in actions:
        i = len(out)
        act = Action(seq=100 + i, tool="bash", kind="run", arguments=command, output=output)
        out.append(Turn(index=i, seq=i + 1, actions=(act.model_copy(update={"error": error}),)))
    return out


@pytest.mark.parametrize(
    ("items", "rule"),
    [
        (turns(*[("ls", "a", None)] * 4), "repeating_action_observation"),
        (turns(*[("cat x", f"no x {n}", "timeout") for n in range(3)]), "repeating_action_error"),
        (turns(texts=3), "monologue"),
        (turns(*[("ls", "a", None), ("pwd", "/", None)] * 3), "alternating_pattern"),
    ],
)
def test_each_stuck_rule_fires_on_its_pattern(items: list[Turn], rule: str) -> None:
    rules = load_bench("stuck_rules").StuckRules()
    found = [a for t in items for a in rules.observe(t, RunFacts())]
    assert [(a.kind, a.severity, a.turn) for a in found] == [(rule, "critical", len(items) - 1)]


def test_the_stuck_rules_leave_near_misses_alone() -> None:
    rules = load_bench("stuck_rules").StuckRules()
    near = turns(("ls", "a", None), ("ls", "a", None), ("ls", "a", None), ("ls", "b", None))
    near += turns(*[("make", "error", "exit code 2")] * 3)  # a non-zero exit is output
    assert [a for t in near for a in rules.observe(t, RunFacts())] == []
