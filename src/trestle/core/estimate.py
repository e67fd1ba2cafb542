"""An offline estimate of a request's token count, for budgeting before a call.

Providers report exact usage after a call; before it, a budget needs a number without a
tokenizer or the network. The heuristic: about four characters per token (the usual
rule of thumb for English text and code with BPE tokenizers), rounded up per piece,
plus a small fixed overhead for each message's framing and each tool's definition.

It is an estimate: dense code, JSON and non-Latin scripts take more tokens per
character, so budgets built on it should keep a margin. It is deterministic, so the
same request always gets the same estimate.
"""

from __future__ import annotations

from collections.abc import Sequence

from trestle.core.conversation import Message, ToolSchema, canonical_json
from trestle.core.memo import ByIdentity, same_start

CHARS_PER_TOKEN = 4
# Role markers and separators the chat formats wrap around every message.
MESSAGE_OVERHEAD = 4
# Per tool call: its id, type and the framing of name and arguments.
TOOL_CALL_OVERHEAD = 8
# Per tool offered: the framing around its name, description and schema.
TOOL_OVERHEAD = 8
# The tokens that prime the assistant's reply.
REPLY_OVERHEAD = 3


def estimate_text_tokens(text: str) -> int:
    """Tokens in ``text``: its length over :data:`CHARS_PER_TOKEN`, rounded up."""
    return -(-len(text) // CHARS_PER_TOKEN)


def estimate_tokens(messages: Sequence[Message], tools: Sequence[ToolSchema] = ()) -> int:
    """Estimate the input tokens of a request, offline.

    Args:
        messages: the conversation to send.
        tools: the tools to offer.

    Returns:
        A deterministic estimate (see the module docstring for the heuristic).
    """
    return REPLY_OVERHEAD + sum(map(_message_tokens, messages)) + sum(map(_tool_tokens, tools))


class TokenTally:
    """:func:`estimate_tokens`, for a conversation sent again every turn, grown.

    The messages that begin the conversation as the very objects counted last time
    keep their counts; only the rest are counted. The result is
    :func:`estimate_tokens`'s for any conversation.
    """

    def __init__(self) -> None:
        self._counted: list[Message] = []
        self._totals = [0]  # tokens of the first i messages counted

    def __call__(self, messages: Sequence[Message], tools: Sequence[ToolSchema] = ()) -> int:
        kept = same_start(self._counted, messages)
        del self._counted[kept:], self._totals[kept + 1 :]
        for message in messages[kept:]:
            self._counted.append(message)
            self._totals.append(self._totals[-1] + _message_tokens(message))
        return REPLY_OVERHEAD + self._totals[-1] + sum(map(_tool_tokens, tools))


def _message_tokens(message: Message) -> int:
    tokens = MESSAGE_OVERHEAD + estimate_text_tokens(message.content)
    for call in message.tool_calls:
        tokens += TOOL_CALL_OVERHEAD
        tokens += estimate_text_tokens(call.name) + estimate_text_tokens(call.arguments)
    return tokens


def _estimate_tool_tokens(tool: ToolSchema) -> int:
    return (
        TOOL_OVERHEAD
        + estimate_text_tokens(tool.name)
        + estimate_text_tokens(tool.description)
        + estimate_text_tokens(canonical_json(tool.parameters))
    )


_tool_tokens = ByIdentity(_estimate_tool_tokens)  # the same tools are offered every turn
