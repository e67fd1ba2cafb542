"""The context monitor: the context plus the likely next observation against the window.

Constructed traces for the arithmetic, and live scripted agent runs in the real engine
and store for the alert's way through the hub to the agent, and for a model that
reports no usage: the size of the request as sent (after compression) is what counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from agent_helpers import (
    FIX_STEP,
    GOAL,
    agent_settings,
    call,
    drive,
    findings_json,
    of_kind,
    plan_json,
    recorded,
    sample_workspace,
    state_of,
)
from trestle.core.errors import ConfigError
from trestle.core.events import AlertRaised, ModelCalled, ReminderInjected
from trestle.core.records.agent import ContextBudget, bootstrap_plan
from trestle.core.records.monitors import Alert, MonitorSettings
from trestle.lifecycle.runs import create_run
from trestle.models import ModelResponse, ScriptedModel, Usage
from trestle.monitors.catalog import default_monitors
from trestle.monitors.context import BASE_TOKENS, ContextMonitor
from trestle.monitors.trace import Action, Observation, RunFacts, StepEnd, Turn
from trestle.monitors.windows import DEFAULT_WINDOW, window_of
from trestle.store import SqliteStore


def reads(sizes: Sequence[int], *, prompts: Sequence[int] = (), round_: int = 1) -> list[Turn]:
    """One turn per size: a ``cat`` whose output has that many characters."""
    return [
        Turn(
            index=i,
            seq=10 * (i + 1),
            step="fix",
            round=round_,
            actions=(
                Action(
                    seq=10 * (i + 1) + 1,
                    tool="bash",
                    kind="read",
                    arguments="",
                    output="x" * size,
                ),
            ),
            prompt_tokens=prompts[i] if i < len(prompts) else 0,
        )
        for i, size in enumerate(sizes)
    ]


def feed(items: Sequence[Observation], facts: RunFacts, monitor: ContextMonitor) -> list[Alert]:
    return [alert for item in items for alert in monitor.observe(item, facts)]


def test_windows_are_known_by_model_name_longest_prefix_first() -> None:
    assert window_of("anthropic:claude-3-5-sonnet-20241022") == 200_000
    assert window_of("openai:gpt-4o-mini") == 128_000
    assert window_of("gpt-4") == 8_192
    assert window_of("gpt-4.1-mini") == 1_047_576
    assert window_of("openrouter/google/gemini-3-pro-preview") == 1_048_576
    assert window_of("scripted") is None and window_of("") is None


def test_small_observations_in_a_large_window_raise_nothing() -> None:
    facts = RunFacts(model="claude-3-5-sonnet-20241022")
    assert feed(reads([3_000] * 40), facts, ContextMonitor()) == []


def test_large_observations_warn_then_go_critical_before_the_window_overflows() -> None:
    facts = RunFacts(model="openai:gpt-4o", goal="")  # 128,000 tokens
    sizes = [69_000] * 6  # 23,000 tokens each at three characters a token
    alerts = feed(reads(sizes), facts, ContextMonitor())
    # after n reads the context holds BASE + 23,000 n; one more read adds 23,000:
    # n = 4 projects 117,000 (over 90% of 128,000), n = 5 projects 140,000 (over it)
    assert [(a.kind, a.severity, a.turn) for a in alerts] == [
        ("context_pressure", "warning", 3),
        ("context_pressure", "critical", 4),
    ]
    warning, critical = alerts
    assert BASE_TOKENS + 4 * 23_000 == 94_000
    assert "about 94,000 tokens (estimated)" in warning.message
    assert "of the 128,000-token window of openai:gpt-4o (73%)" in warning.message
    assert "bring it to 117,000, over 90% of it" in warning.message
    assert "past the window" in critical.message
    assert warning.evidence == (40,) and warning.step == "fix"
    assert warning.suggestion.startswith("About 34,000 tokens of context are left")


def test_reported_prompt_tokens_replace_the_estimate() -> None:
    facts = RunFacts(model="claude-sonnet-4")  # 200,000 tokens: warning past 180,000
    monitor = ContextMonitor()
    # 60,000 characters shown (20,000 tokens) on top of a reported 100,000: no alert
    assert feed(reads([60_000], prompts=[100_000]), facts, monitor) == []
    # the next call reports 165,000: with a read as large as the last one, 185,100
    later = [reads([300], prompts=[165_000])[0].model_copy(update={"index": 1, "seq": 20})]
    alerts = feed(later, facts, monitor)
    assert [a.severity for a in alerts] == ["warning"]
    assert "about 165,100 tokens (as the model counted its last prompt)" in alerts[0].message


def test_an_observation_longer_than_what_was_kept_counts_whole() -> None:
    turn = reads([10])[0]
    action = turn.actions[0].model_copy(update={"output_chars": 400_000})
    whole = turn.model_copy(update={"actions": (action,)})
    alerts = feed([whole], RunFacts(), ContextMonitor())
    assert [a.severity for a in alerts] == ["critical"]  # 133,334 tokens > 128,000
    assert f"of the assumed {DEFAULT_WINDOW:,}-token window" in alerts[0].message


def test_a_new_round_is_a_fresh_conversation_and_a_configured_window_wins() -> None:
    monitor = ContextMonitor(window=10_000)
    facts = RunFacts(model="gemini-3-pro")  # a million tokens, but 10,000 configured
    first = feed(reads([7_500, 7_500]), facts, monitor)
    assert [a.severity for a in first] == ["warning"]  # 2,000 + 2 * 2,500, then 2,500 more
    end = StepEnd(seq=99, step="fix", attempt=1, ok=False, seconds=1.0)
    again = feed([end, *reads([3_000], round_=2)], facts, monitor)
    assert again == []
    assert "of the configured 10,000-token window" in first[0].message


def test_the_defaults_include_it_with_the_configured_window() -> None:
    monitors = default_monitors(MonitorSettings(context_window=5_000))
    context = [m for m in monitors if isinstance(m, ContextMonitor)]
    assert len(context) == 1 and context[0].window == 5_000
    with pytest.raises(ConfigError, match="window must be positive"):
        ContextMonitor(window=0)


def test_a_live_agent_near_its_window_is_told_before_its_next_call(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db")
    run_id = create_run(
        store,
        bootstrap_plan(GOAL),
        workspace=sample_workspace(tmp_path),
        agent=agent_settings(),
        monitors=MonitorSettings(context_window=10_000),
    )
    # the fix step's first call reports a prompt of 9,100 tokens; reading the short
    # test file adds about 200 more and one more like it would pass 90% of 10,000
    model = ScriptedModel(
        [
            call("read_file", path="calc.py"),
            findings_json(),
            plan_json(FIX_STEP, summary="fix add"),
            call("read_file", path="test_calc.py", usage=Usage(input_tokens=9_100)),
            call("edit_file", path="calc.py", old="a - b", new="a + b"),
            call("finish", summary="add() adds", claims=["test_add passes"]),
        ]
    )
    drive(store, run_id, model)

    assert state_of(store, run_id).finished == "succeeded"
    raised = [
        a for a in of_kind(recorded(store, run_id), AlertRaised) if a.alert.monitor == "context"
    ]
    assert [(a.alert.severity, a.alert.step, a.action) for a in raised] == [
        ("warning", "fix", "inject")
    ]
    assert "as the model counted its last prompt" in raised[0].alert.message
    told = [
        e
        for e in of_kind(recorded(store, run_id), ReminderInjected)
        if e.record.reason == "monitor"
    ]
    assert [t.record.alert for t in told] == [raised[0].alert.key]
    assert any(m.content == told[0].record.text for r in model.requests for m in r.messages)


NOTES = 24  # files the agent reads before it reports (within UNDERSTAND's 30 turns)
NOTE_CHARS = 5_000  # each: 1,667 tokens at three characters a token, 1,250 at four


def long_reader_run(tmp_path: Path, *, context_limit: int) -> tuple[SqliteStore, str]:
    """A scripted run that reads :data:`NOTES` notes, one a turn, with a model that
    reports no usage, under a 20,000-token window: all of them add up to 40,000 tokens
    (three characters a token), twice the window. Returns the store and the run."""
    workspace = sample_workspace(tmp_path)
    (workspace / "notes").mkdir()
    for i in range(NOTES):
        line = f"note {i:02d}: " + "the quick brown fox jumps over the lazy dog " * 2
        (workspace / "notes" / f"n{i:02d}.txt").write_text(
            "\n".join([line] * (NOTE_CHARS // len(line))), encoding="utf-8"
        )
    store = SqliteStore(tmp_path / "store.db")
    settings = agent_settings(context=ContextBudget(limit=context_limit))
    run_id = create_run(
        store,
        bootstrap_plan(GOAL),
        workspace=workspace,
        agent=settings,
        # reading notes the goal does not name is drifting and no progress: noted
        # only, so the context monitor alone can pause the run
        monitors=MonitorSettings(
            context_window=20_000,
            kinds={"drifting": "note", "no_progress": "note", "no_edit": "note"},
        ),
    )
    reads = [call("read_file", call_id=f"r{i}", path=f"notes/n{i:02d}.txt") for i in range(NOTES)]
    replies: list[ModelResponse | str] = [*reads, findings_json(), plan_json(FIX_STEP)]
    replies += [
        call("edit_file", path="calc.py", old="a - b", new="a + b"),
        call("finish", summary="add() adds", claims=["test_add passes"]),
    ]
    drive(store, run_id, ScriptedModel(replies))
    return store, run_id


def context_alerts(store: SqliteStore, run_id: str) -> list[AlertRaised]:
    return [
        a for a in of_kind(recorded(store, run_id), AlertRaised) if a.alert.monitor == "context"
    ]


def test_a_long_run_that_compresses_is_not_paused_when_its_model_reports_no_usage(
    tmp_path: Path,
) -> None:
    # compression keeps the request under 8,000 tokens (80% of 10,000), well inside
    # the window, though every note read would add up to twice the window
    store, run_id = long_reader_run(tmp_path, context_limit=10_000)

    assert state_of(store, run_id).finished == "succeeded"
    assert context_alerts(store, run_id) == []
    reads = of_kind(recorded(store, run_id), ModelCalled)[:NOTES]
    assert all(c.response.usage.input_tokens == 0 for c in reads)  # none reported
    sent = [c.prompt_estimate for c in reads]
    assert max(sent) < 10_000 and all(n > 0 for n in sent)


def test_a_run_whose_request_really_grows_past_the_window_is_paused(tmp_path: Path) -> None:
    # no compression before 80,000 tokens: the request sent grows past the window
    store, run_id = long_reader_run(tmp_path, context_limit=100_000)

    assert state_of(store, run_id).finished == "needs_human"
    raised = context_alerts(store, run_id)
    assert [(a.alert.severity, a.action) for a in raised] == [
        ("warning", "inject"),
        ("critical", "pause"),
    ]
    assert "as estimated from the last request sent" in raised[-1].alert.message
    sent = [c.prompt_estimate for c in of_kind(recorded(store, run_id), ModelCalled)]
    assert sent == sorted(sent) and 12_000 < sent[-1] < 20_000  # four characters a token
