"""Context compression: recent turns verbatim, older ones summarised, the pins always kept.

A conversation that outgrows the model's context is rebuilt as::

    leading system messages   the agent's instructions, untouched
    the pinned message        goal, requirements, rules, scope, plan status (fresh)
    the summary               of everything older than the kept turns
    the kept turns            the last K model turns, verbatim

A *turn* is one assistant message with the results of the tool calls it made, plus the
user messages just before it. The cut between summarised and kept messages never falls
between a tool call and its result: providers refuse a result without its call, and a
model that lost either half would act on half a fact.

The summary comes from an injected async :data:`Summariser` (for instance
:func:`model_summariser`); without one, or when it fails or answers nothing, an
extractive summary is built from the messages themselves. Either way it is held to a
share of the budget.

After every compression :func:`check_pins` verifies that goal, rules, scope and plan
status (and the requirements a user added mid-run) are all present, verbatim, in the
pinned message (invariant 7), and
:func:`compress` raises :class:`PinLostError` if one is not.

Pure apart from awaiting the summariser: no IO, no clock, token counts from the
offline :func:`~trestle.models.estimate_tokens`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from trestle.core.conversation import Message, Model, ToolSchema
from trestle.core.errors import PinLostError
from trestle.core.estimate import CHARS_PER_TOKEN, estimate_text_tokens, estimate_tokens
from trestle.core.record import Record
from trestle.core.records.agent import (
    PIN_HEADER,
    CompressionRecord,
    ContextBudget,
    Pins,
    SummarySource,
)

# tokens of a request (messages, tools on offer): estimate_tokens, or a TokenTally
TokenEstimate = Callable[[Sequence[Message], Sequence[ToolSchema]], int]

SUMMARY_HEADER = "[trestle: summary of earlier turns]"
REMINDER_HEADER = "[trestle: goal reminder]"


# --- pins ------------------------------------------------------------------------------


def is_pinned(message: Message) -> bool:
    """Is ``message`` a pinned message (as :meth:`Pins.message` makes them)?"""
    return message.role == "system" and message.content.startswith(PIN_HEADER)


def check_pins(messages: Sequence[Message], pins: Pins) -> list[str]:
    """The pins missing from the conversation's pinned message; empty when all are there.

    Only a pinned message counts: a summary or a model's reply that happens to quote
    the goal is not a pin, since the next summary may drop it.
    """
    pinned = [m for m in messages if is_pinned(m)]
    if not pinned:
        return ["the pinned message (goal, rules, scope and plan status)"]
    text = pinned[-1].content + "\n"
    return [name for name, line in pins.items() if f"\n{line}" not in text]


def ensure_pins(messages: Sequence[Message], pins: Pins) -> None:
    """Raise :class:`PinLostError` naming every pin :func:`check_pins` finds missing."""
    lost = check_pins(messages, pins)
    if lost:
        raise PinLostError(f"context lost pinned {', '.join(lost)}")


def refresh_pins(messages: Sequence[Message], pins: Pins) -> tuple[Message, ...]:
    """The conversation with its pinned message replaced by one rendered from ``pins``
    (placed after the leading system messages): call it when the plan status changes."""
    prefix, body = _split_frame(messages)
    return (*prefix, pins.message(), *body)


def is_summary(message: Message) -> bool:
    """Is ``message`` a summary that an earlier compression wrote?"""
    return message.role == "user" and message.content.startswith(SUMMARY_HEADER)


def _is_request(message: Message) -> bool:
    """A user message a turn answers (an earlier summary belongs to no turn)."""
    return message.role == "user" and not is_summary(message)


def _split_frame(messages: Sequence[Message]) -> tuple[list[Message], list[Message]]:
    """(leading system messages, the rest), with every pinned message left out."""
    prefix: list[Message] = []
    rest = list(messages)
    while rest and rest[0].role == "system":
        head = rest.pop(0)
        if not is_pinned(head):
            prefix.append(head)
    return prefix, [m for m in rest if not is_pinned(m)]


# --- summarising -----------------------------------------------------------------------


@dataclass(frozen=True)
class SummaryRequest:
    """What a summariser is given.

    Attributes:
        messages: the messages to summarise, oldest first (earlier summaries included).
        goal: the run's goal, so the summary keeps what matters to it.
        max_tokens: how long the summary may be; longer ones are clipped.
    """

    messages: tuple[Message, ...]
    goal: str
    max_tokens: int


Summariser = Callable[[SummaryRequest], Awaitable[str]]
"""An async callable that condenses older messages into text."""

SUMMARY_INSTRUCTIONS = (
    "You condense an agent's working transcript so it can continue with less context. "
    "Keep: what was found out (files, functions, facts, test results), what was changed "
    "and where, what failed and why, decisions taken and open questions. Drop chatter "
    "and repeated output. Write plain, dense notes, no preamble."
)


def model_summariser(model: Model, *, instructions: str = SUMMARY_INSTRUCTIONS) -> Summariser:
    """A :data:`Summariser` that asks ``model`` (no tools offered) for the summary."""

    async def summarise(request: SummaryRequest) -> str:
        prompt = (
            f"The agent's goal: {request.goal}\n\n"
            f"Summarise this transcript in at most about {request.max_tokens} tokens:\n\n"
            f"{transcript_text(request.messages)}"
        )
        response = await model.complete(
            [Message.system(instructions), Message.user(prompt)], max_tokens=request.max_tokens
        )
        return response.text

    return summarise


def transcript_text(messages: Sequence[Message]) -> str:
    """The messages as plain text, tool calls and results included, for a summariser."""
    lines = []
    for m in messages:
        if m.role == "tool":
            lines.append(f"[tool result {m.tool_call_id}] {m.content}")
            continue
        if m.content:
            lines.append(f"[{m.role}] {m.content}")
        lines += [f"[tool call {c.id}] {c.name}({c.arguments})" for c in m.tool_calls]
    return "\n".join(lines)


def extractive_summary(messages: Sequence[Message], max_tokens: int) -> str:
    """A summary without a model: a clipped line per message, earlier summaries kept
    in full where the budget allows, then held to ``max_tokens`` (head and tail kept)."""
    lines: list[str] = []
    for m in messages:
        content = m.content.strip()
        if is_summary(m):
            lines.append(content.removeprefix(SUMMARY_HEADER).strip())
        elif m.role == "user" and content.startswith(REMINDER_HEADER):
            continue  # a restatement of the pins, which are kept anyway
        elif m.role == "tool":
            lines.append(f"  -> {_first_line(content, 160) or '(no output)'}")
        else:
            label = {"user": "user", "assistant": "assistant", "system": "note"}[m.role]
            if content:
                lines.append(f"{label}: {_first_line(content, 200)}")
            lines += [f"called {c.name}({_clip(c.arguments, 120)})" for c in m.tool_calls]
    return clip_to_tokens("\n".join(lines), max_tokens)


def _first_line(text: str, width: int) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    more = " ..." if len(text.strip()) > len(first) else ""
    return _clip(first, width) + more


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def clip_to_tokens(text: str, max_tokens: int) -> str:
    """``text`` within ``max_tokens`` (estimated), keeping its head and its tail."""
    if estimate_text_tokens(text) <= max_tokens:
        return text
    note = "\n[... clipped ...]\n"
    room = max(0, max_tokens * CHARS_PER_TOKEN - len(note))
    head, tail = room - room // 2, room // 2
    return text[:head] + note + (text[-tail:] if tail else "")


# --- compression -----------------------------------------------------------------------


class Compression(Record):
    """The rebuilt conversation and the record of how it was rebuilt."""

    messages: tuple[Message, ...]
    record: CompressionRecord


async def compress(
    messages: Sequence[Message],
    pins: Pins,
    budget: ContextBudget,
    *,
    summariser: Summariser | None = None,
    tools: Sequence[ToolSchema] = (),
) -> Compression:
    """Rebuild the conversation within the budget: pins, a summary, the recent turns.

    Keeps ``budget.keep_turns`` turns, or fewer when they alone would not fit the
    target next to the pins and a summary; at least the latest turn is always kept.

    Raises:
        PinLostError: the result is missing a pin (never expected; it is checked
            rather than assumed).
    """
    before = estimate_tokens(messages, tools)
    prefix, body = _split_frame(messages)
    frame = [*prefix, pins.message()]
    cut, kept_turns = _choose_cut(frame, body, budget, tools)
    old, recent = body[:cut], body[cut:]
    source: SummarySource = "none"
    fallback: str | None = None
    rebuilt = [*frame, *recent]
    if old and all(is_summary(m) for m in old):
        # only an earlier summary is older than the kept turns: summarising it alone
        # would spend a call to say the same again
        rebuilt = [*frame, *old, *recent]
        old = []
    elif old:
        summary, source, fallback = await _summarise(old, pins.goal, budget, summariser)
        rebuilt = [*frame, Message.user(f"{SUMMARY_HEADER}\n{summary}"), *recent]
    ensure_pins(rebuilt, pins)
    after = estimate_tokens(rebuilt, tools)
    record = CompressionRecord(
        tokens_before=before,
        tokens_after=after,
        limit=budget.limit,
        summarised=len(old),
        kept=len(recent),
        kept_turns=kept_turns,
        source=source,
        fallback=fallback,
        within_target=after <= budget.target,
    )
    return Compression(messages=tuple(rebuilt), record=record)


async def compress_if_needed(
    messages: Sequence[Message],
    pins: Pins,
    budget: ContextBudget,
    *,
    summariser: Summariser | None = None,
    tools: Sequence[ToolSchema] = (),
    estimate: TokenEstimate = estimate_tokens,
) -> Compression | None:
    """:func:`compress` when the conversation is over the budget's threshold, else None.

    ``estimate`` measures the conversation as :func:`estimate_tokens` does: an agent
    checks its conversation every turn, grown by a turn, and passes a
    :class:`~trestle.core.estimate.TokenTally` that counts only the new messages."""
    if estimate(messages, tools) <= budget.target:  # ContextBudget.over_threshold's test
        return None
    return await compress(messages, pins, budget, summariser=summariser, tools=tools)


async def _summarise(
    old: Sequence[Message], goal: str, budget: ContextBudget, summariser: Summariser | None
) -> tuple[str, SummarySource, str | None]:
    if summariser is not None:
        request = SummaryRequest(messages=tuple(old), goal=goal, max_tokens=budget.summary_tokens)
        try:
            text = (await summariser(request)).strip()
        except Exception as exc:  # a provider error must cost the summary, not the run
            reason = f"summariser failed: {type(exc).__name__}: {exc}"
        else:
            if text:
                return clip_to_tokens(text, budget.summary_tokens), "model", None
            reason = "summariser returned nothing"
        return extractive_summary(old, budget.summary_tokens), "extractive", reason
    return extractive_summary(old, budget.summary_tokens), "extractive", None


def _choose_cut(
    frame: Sequence[Message],
    body: Sequence[Message],
    budget: ContextBudget,
    tools: Sequence[ToolSchema],
) -> tuple[int, int]:
    """(index in ``body`` where the kept messages start, turns kept): the most turns up
    to ``keep_turns`` that fit next to the frame and a full-size summary."""
    starts = _turn_starts(body)
    if not starts:  # no model turn yet: nothing is old enough to summarise
        return 0, 0
    cut = 0
    for turns in range(min(budget.keep_turns, len(starts)), 0, -1):
        cut = _safe_cut(body, starts[-turns])
        summary_room = budget.summary_tokens if cut > 0 else 0
        if estimate_tokens([*frame, *body[cut:]], tools) + summary_room <= budget.target:
            break
    return cut, sum(1 for m in body[cut:] if m.role == "assistant")


def _turn_starts(body: Sequence[Message]) -> list[int]:
    """Where each turn starts: at an assistant message, moved back over the user
    messages just before it (the request the turn answers)."""
    starts = []
    for i, m in enumerate(body):
        if m.role == "assistant":
            start = i
            while start > 0 and _is_request(body[start - 1]):
                start -= 1
            starts.append(start)
    return starts


def _safe_cut(body: Sequence[Message], cut: int) -> int:
    """``cut`` moved earlier until no tool result after it answers a call before it
    (and then over the user messages that the call's turn answered)."""
    origin = _call_origins(body)
    moved = True
    while moved:
        moved = False
        for i in range(cut, len(body)):
            start = origin.get(i)
            if start is not None and start < cut:
                cut, moved = start, True
                break
        while moved and cut > 0 and _is_request(body[cut - 1]):
            cut -= 1
    return cut


def _call_origins(body: Sequence[Message]) -> dict[int, int]:
    """For each tool result, the index of the assistant message that made its call
    (the nearest one before it: some servers reuse call ids within a conversation)."""
    latest: dict[str, int] = {}
    origin: dict[int, int] = {}
    for i, m in enumerate(body):
        for call in m.tool_calls:
            latest[call.id] = i
        if m.role == "tool" and m.tool_call_id in latest:
            origin[i] = latest[m.tool_call_id]
    return origin
