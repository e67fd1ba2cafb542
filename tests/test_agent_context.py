"""Context compression: pins survive, tool calls keep their results, recent turns stay
verbatim, and a failing summariser costs the summary's quality, never the run.

The hypothesis test builds random transcripts (text turns, tool calls with their
results, reminders, earlier summaries) and random budgets, compresses them, and checks
every invariant on the result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trestle.agent import (
    PIN_HEADER,
    REMINDER_HEADER,
    SUMMARY_HEADER,
    Compression,
    ContextBudget,
    PinLostError,
    Pins,
    Summariser,
    SummaryRequest,
    check_pins,
    compress,
    compress_if_needed,
    ensure_pins,
    extractive_summary,
    is_pinned,
    model_summariser,
    refresh_pins,
)
from trestle.agent.context import clip_to_tokens
from trestle.core.estimate import TokenTally
from trestle.models import FunctionModel, Message, ToolCall, ToolSchema, estimate_tokens

PINS = Pins(
    goal="make parse() accept empty input",
    rules=("never push", "run the tests before finish"),
    scope=("src/**", "tests/**"),
    plan_status="1 of 2 steps done",
)
SYSTEM = Message.system("You are a careful coding agent.")


def tool_turn(n: int, size: int = 40, calls: int = 1) -> list[Message]:
    """A user request, an assistant reply calling tools, and each call's result."""
    ids = [f"call-{n}-{i}" for i in range(calls)]
    return [
        Message.user(f"request {n}"),
        Message.assistant(
            f"looking at part {n}",
            [ToolCall(id=i, name="read_file", arguments=f'{{"path": "src/m{n}.py"}}') for i in ids],
        ),
        *(Message.tool(i, f"result {n}: " + "x" * size) for i in ids),
    ]


def transcript(turns: int, size: int = 40) -> list[Message]:
    messages = [SYSTEM, PINS.message()]
    for n in range(turns):
        messages += tool_turn(n, size)
    return messages


def run(
    messages: Sequence[Message],
    budget: ContextBudget,
    summariser: Summariser | None = None,
    pins: Pins = PINS,
) -> Compression:
    return asyncio.run(compress(messages, pins, budget, summariser=summariser))


def assert_pairs_intact(before: Sequence[Message], after: Sequence[Message]) -> None:
    """Every tool result follows its call, and a call kept keeps every result it had."""
    results_before = {m.tool_call_id for m in before if m.role == "tool"}
    open_calls: set[str] = set()
    calls_after: set[str] = set()
    results_after: set[str] = set()
    for m in after:
        if m.role == "tool":
            assert m.tool_call_id in open_calls, f"result {m.tool_call_id} without its call"
            results_after.add(m.tool_call_id or "")
        else:
            open_calls = {c.id for c in m.tool_calls}
            calls_after |= open_calls
    assert {c for c in calls_after if c in results_before} == results_after


# --- what is kept ------------------------------------------------------------------------


def test_old_turns_are_summarised_and_the_last_k_kept_verbatim() -> None:
    messages = transcript(10)
    result = run(messages, ContextBudget(limit=100_000, keep_turns=3))
    out = result.messages
    assert out[0] == SYSTEM and is_pinned(out[1])
    assert out[2].role == "user" and out[2].content.startswith(SUMMARY_HEADER)
    assert list(out[3:]) == messages[-9:]  # three turns of three messages, verbatim
    record = result.record
    assert (record.summarised, record.kept, record.kept_turns) == (21, 9, 3)
    assert record.source == "extractive" and record.fallback is None
    assert record.tokens_after < record.tokens_before and record.within_target
    assert check_pins(out, PINS) == []


def test_nothing_old_enough_means_no_summary() -> None:
    messages = transcript(2)
    result = run(messages, ContextBudget(limit=100_000, keep_turns=3))
    assert result.record.source == "none" and result.record.summarised == 0
    assert list(result.messages) == messages


def test_a_call_and_its_results_are_never_split() -> None:
    # a result that arrives late, inside the kept turn, pulls its call's turn in too
    messages = [SYSTEM, *tool_turn(0), *tool_turn(1, calls=3)[:-1]]
    messages += [Message.assistant("done reading"), Message.user("go on")]
    messages += [Message.assistant("second"), Message.tool("call-1-2", "late result")]
    result = run(messages, ContextBudget(limit=100_000, keep_turns=1))
    seen_calls: set[str] = set()
    for m in result.messages:
        seen_calls |= {c.id for c in m.tool_calls}
        assert m.role != "tool" or m.tool_call_id in seen_calls
    kept = result.messages[-result.record.kept :]
    assert kept == tuple(messages[4:])  # from the call's turn (and its request) on
    assert result.record.summarised == 3


def test_fewer_turns_are_kept_when_they_alone_do_not_fit() -> None:
    messages = transcript(6, size=2_000)  # each turn is ~500 tokens
    budget = ContextBudget(limit=2_000, keep_turns=5, threshold=0.8, summary_share=0.1)
    result = run(messages, budget)
    assert 1 <= result.record.kept_turns < 5
    assert result.record.within_target
    assert estimate_tokens(result.messages) <= budget.target


def test_the_latest_turn_is_kept_even_when_it_alone_is_too_big() -> None:
    messages = transcript(3, size=20_000)
    result = run(messages, ContextBudget(limit=1_000, keep_turns=2))
    assert result.record.kept_turns == 1 and not result.record.within_target
    assert list(result.messages[-3:]) == messages[-3:]


def test_compress_if_needed_acts_only_over_the_threshold() -> None:
    messages = transcript(8)
    tokens = estimate_tokens(messages)
    roomy = ContextBudget(limit=tokens * 2, keep_turns=2)
    assert asyncio.run(compress_if_needed(messages, PINS, roomy)) is None
    tight = ContextBudget(limit=tokens, threshold=0.5, keep_turns=2)
    assert tight.over_threshold(messages)
    tools = [ToolSchema(name="read_file", description="d" * 4_000)]
    assert ContextBudget(limit=tokens * 2, keep_turns=2).over_threshold(messages, tools)
    result = asyncio.run(compress_if_needed(messages, PINS, tight))
    assert result is not None and result.record.summarised > 0


def test_a_tally_of_the_growing_conversation_decides_as_a_fresh_estimate() -> None:
    """The session measures its conversation with a TokenTally (only new messages
    counted); the threshold is crossed at the same turn as with estimate_tokens."""
    turns = transcript(12)
    budget = ContextBudget(limit=estimate_tokens(turns) // 2, keep_turns=2)
    tally = TokenTally()
    crossed = []
    for end in range(1, len(turns) + 1):
        grown = turns[:end]  # the very message objects, one more each time
        fresh = asyncio.run(compress_if_needed(grown, PINS, budget))
        counted = asyncio.run(compress_if_needed(grown, PINS, budget, estimate=tally))
        assert (fresh is None) == (counted is None)
        assert fresh is None or fresh == counted
        crossed.append(fresh is not None)
    assert not crossed[0] and crossed[-1]  # it was crossed on the way
    # a conversation that is not the last one grown is counted afresh
    other = [Message.user("y" * 4 * budget.limit)]
    assert asyncio.run(compress_if_needed(other, PINS, budget, estimate=tally)) is not None
    assert asyncio.run(compress_if_needed(turns[:1], PINS, budget, estimate=tally)) is None


# --- summarisers -------------------------------------------------------------------------


def test_a_summariser_writes_the_summary_and_is_given_the_goal() -> None:
    seen: list[SummaryRequest] = []

    async def summarise(request: SummaryRequest) -> str:
        seen.append(request)
        return "read m0..m6; nothing changed yet"

    messages = transcript(9)
    result = run(messages, ContextBudget(limit=100_000, keep_turns=2), summarise)
    (request,) = seen
    assert request.goal == PINS.goal and request.max_tokens == 15_000
    assert request.messages == tuple(messages[2:-6])  # pins left out, kept turns left out
    assert result.record.source == "model"
    assert result.messages[2].content == f"{SUMMARY_HEADER}\nread m0..m6; nothing changed yet"


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (RuntimeError("provider unavailable"), "summariser failed: RuntimeError: provider"),
        ("   ", "summariser returned nothing"),
    ],
)
def test_a_failing_summariser_falls_back_to_the_extractive_summary(
    reply: object, reason: str
) -> None:
    async def summarise(request: SummaryRequest) -> str:
        if isinstance(reply, Exception):
            raise reply
        assert isinstance(reply, str)
        return reply

    result = run(transcript(6), ContextBudget(limit=100_000, keep_turns=2), summarise)
    assert result.record.source == "extractive"
    assert result.record.fallback is not None and result.record.fallback.startswith(reason)
    summary = result.messages[2].content
    assert 'called read_file({"path": "src/m0.py"})' in summary
    assert check_pins(result.messages, PINS) == []


def test_the_model_summariser_sends_the_transcript_and_returns_the_reply() -> None:
    def reply(messages: Sequence[Message], tools: Sequence[ToolSchema]) -> str:
        assert not tools
        prompt = messages[-1].content
        assert PINS.goal in prompt and "[tool call call-0-0] read_file" in prompt
        assert "[tool result call-0-0] result 0" in prompt
        return "the model's summary"

    model = FunctionModel(reply)
    result = run(transcript(5), ContextBudget(limit=100_000, keep_turns=2), model_summariser(model))
    assert result.record.source == "model"
    assert "the model's summary" in result.messages[2].content
    assert model.requests[0].max_tokens == 15_000


def test_a_long_summary_is_clipped_to_its_share() -> None:
    async def verbose(request: SummaryRequest) -> str:
        return "word " * 10_000

    budget = ContextBudget(limit=4_000, keep_turns=1, summary_share=0.1)
    result = run(transcript(4), budget, verbose)
    summary = result.messages[2].content.removeprefix(SUMMARY_HEADER)
    assert len(summary) <= 400 * 4 + 2 and "[... clipped ...]" in summary


def test_repeated_compression_carries_the_earlier_summary_forward() -> None:
    budget = ContextBudget(limit=100_000, keep_turns=2)
    first = run(transcript(5), budget)
    longer = [*first.messages, *tool_turn(50), *tool_turn(51), *tool_turn(52)]
    second = run(longer, budget)
    summary = second.messages[2].content
    assert "request 0" in summary and "request 50" in summary
    assert sum(1 for m in second.messages if m.content.startswith(SUMMARY_HEADER)) == 1
    assert sum(1 for m in second.messages if is_pinned(m)) == 1


def test_an_earlier_summary_alone_is_kept_rather_than_summarised_again() -> None:
    calls: list[SummaryRequest] = []

    async def summarise(request: SummaryRequest) -> str:
        calls.append(request)
        return "new summary"

    earlier = Message.user(f"{SUMMARY_HEADER}\nread m0..m4")
    messages = [SYSTEM, PINS.message(), earlier, *tool_turn(5), *tool_turn(6)]
    result = run(messages, ContextBudget(limit=100_000, keep_turns=2), summarise)
    assert calls == [] and result.record.source == "none"
    assert list(result.messages) == messages


def test_the_extractive_summary_skips_reminders_and_clips_long_lines() -> None:
    messages = [
        Message.user(f"{REMINDER_HEADER}\nGoal: x"),
        Message.assistant("a" * 500),
        Message.tool("t", ""),
    ]
    text = extractive_summary(messages, max_tokens=1_000)
    assert REMINDER_HEADER not in text and "Goal: x" not in text
    assert "assistant: " + "a" * 197 + "..." in text and "-> (no output)" in text


def test_clip_to_tokens_keeps_head_and_tail_within_the_budget() -> None:
    text = "HEAD" + "m" * 10_000 + "TAIL"
    clipped = clip_to_tokens(text, 100)
    assert clipped.startswith("HEAD") and clipped.endswith("TAIL")
    assert len(clipped) <= 400
    assert clip_to_tokens("short", 100) == "short"


# --- pins --------------------------------------------------------------------------------


def test_check_pins_names_each_pin_that_is_missing() -> None:
    assert check_pins([SYSTEM, Message.user(PINS.render())], PINS) == [
        "the pinned message (goal, rules, scope and plan status)"
    ]
    tampered = Message.system(PINS.render().replace("Rule: never push\n", ""))
    assert check_pins([tampered], PINS) == ["rule 'never push'"]
    later = PINS.model_copy(update={"plan_status": "2 of 2 steps done", "scope": ("src/**",)})
    assert check_pins([PINS.message()], later) == ["plan status"]
    with pytest.raises(PinLostError, match="context lost pinned plan status"):
        ensure_pins([PINS.message()], later)
    refreshed = refresh_pins([SYSTEM, PINS.message(), Message.user("hi")], later)
    assert refreshed[0] == SYSTEM and refreshed[1] == later.message() and len(refreshed) == 3
    ensure_pins(refreshed, later)


def test_a_quoted_goal_is_not_a_pin() -> None:
    echo = Message.assistant(PINS.render())  # a model repeating the pins keeps nothing safe
    assert check_pins([echo], PINS) == ["the pinned message (goal, rules, scope and plan status)"]


def test_compression_pins_current_facts_even_without_a_pinned_message() -> None:
    messages = [SYSTEM, *tool_turn(0), *tool_turn(1), *tool_turn(2)]
    result = run(messages, ContextBudget(limit=100_000, keep_turns=1))
    assert result.messages[1] == PINS.message()
    assert result.messages[1].content.startswith(PIN_HEADER)
    empty_scope = Pins(goal="g")
    rendered = empty_scope.render()
    assert "Scope: the whole workspace" in rendered and "no plan yet" in rendered
    assert check_pins([empty_scope.message()], empty_scope) == []


# --- properties --------------------------------------------------------------------------

line = st.text(st.characters(codec="utf-8"), max_size=30)


@st.composite
def transcripts(draw: st.DrawFn) -> list[Message]:
    messages: list[Message] = [SYSTEM] if draw(st.booleans()) else []
    if draw(st.booleans()):
        messages.append(PINS.message())
    if draw(st.booleans()):  # an earlier compression's summary
        messages.append(Message.user(f"{SUMMARY_HEADER}\n{draw(line)}"))
    serial = 0
    for _ in range(draw(st.integers(0, 14))):
        kind = draw(st.sampled_from(["user", "text", "tools", "tools", "reminder"]))
        if kind == "user":
            messages.append(Message.user(draw(line)))
        elif kind == "text":
            messages.append(Message.assistant(draw(line)))
        elif kind == "reminder":
            messages.append(Message.user(f"{REMINDER_HEADER}\n{draw(line)}"))
        else:
            ids = [f"c{serial + i}" for i in range(draw(st.integers(1, 3)))]
            serial += len(ids)
            calls = [ToolCall(id=i, name="run_tests", arguments="{}") for i in ids]
            messages.append(Message.assistant(draw(line), calls))
            answered = ids if draw(st.integers(0, 4)) else ids[:-1]  # sometimes one is pending
            messages += [Message.tool(i, draw(line) * draw(st.integers(1, 40))) for i in answered]
    return messages


pins_strategy = st.builds(
    Pins,
    goal=line.filter(bool),
    rules=st.lists(line, max_size=3).map(tuple),
    scope=st.lists(line, max_size=3).map(tuple),
    plan_status=line,
)
budgets = st.builds(
    ContextBudget,
    limit=st.integers(50, 3_000),
    threshold=st.floats(0.3, 1.0),
    keep_turns=st.integers(1, 5),
    summary_share=st.floats(0.05, 0.5),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transcripts(), pins_strategy, budgets, st.sampled_from(["none", "model", "fails"]))
def test_compression_keeps_pins_pairs_and_recent_turns(
    messages: list[Message], pins: Pins, budget: ContextBudget, summariser_kind: str
) -> None:
    async def model(request: SummaryRequest) -> str:
        return f"summary of {len(request.messages)} messages"

    async def fails(request: SummaryRequest) -> str:
        raise ConnectionError("down")

    summariser: Any = {"none": None, "model": model, "fails": fails}[summariser_kind]
    result = run(messages, budget, summariser, pins=pins)
    out = list(result.messages)
    record = result.record

    assert check_pins(out, pins) == []
    assert sum(1 for m in out if is_pinned(m)) == 1
    assert_pairs_intact(messages, out)
    body = [m for m in messages if not is_pinned(m)]
    kept = out[len(out) - record.kept :] if record.kept else []
    assert kept == body[len(body) - record.kept :]  # recent messages verbatim, in order
    if any(m.role != "system" for m in body):
        assert out[-1] == body[-1]
    if messages and messages[0] == SYSTEM:
        assert out[0] == SYSTEM
    assert record.kept_turns == sum(1 for m in kept if m.role == "assistant")
    if any(m.role == "assistant" for m in body):
        assert record.kept_turns >= 1  # the latest turn always stays
    summaries = [m for m in out if m.role == "user" and m.content.startswith(SUMMARY_HEADER)]
    assert summaries == [m for m in out[:3] if m in summaries]  # at most one, right after pins
    assert len(summaries) <= 1 and (len(summaries) == 1 or not record.summarised)
    if record.summarised:
        expected = {"none": "extractive", "model": "model", "fails": "extractive"}
        assert record.source == expected[summariser_kind]
        assert (record.fallback is not None) == (summariser_kind == "fails")
    assert record.tokens_after == estimate_tokens(out)
