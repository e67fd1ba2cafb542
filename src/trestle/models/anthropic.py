"""Anthropic's messages API through the official ``anthropic`` SDK.

The translation to the wire format follows the API's rules: system messages become the
``system`` parameter, tool calls become ``tool_use`` blocks, tool results become
``tool_result`` blocks in a user turn, and consecutive turns of one role are merged
(the API wants user and assistant turns to alternate). The SDK is imported when a model
is built, not when this module is.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from trestle.core.conversation import Message, ToolCall, ToolSchema
from trestle.core.errors import MissingKeyError
from trestle.core.safetext import loads_bounded
from trestle.models.pricing import PriceTable
from trestle.models.provider import (
    DEFAULT_TIMEOUT,
    ParsedReply,
    SDKModel,
    bounded_client,
    finish_reason,
    import_sdk,
)
from trestle.models.retry import RetryPolicy, Sleep

DEFAULT_BASE_URL = "https://api.anthropic.com"
PLACEHOLDER_KEY = "not-needed"
# The messages API requires max_tokens on every request.
DEFAULT_MAX_TOKENS = 4096

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
}


class AnthropicModel(SDKModel):
    """A Claude model served through the messages API.

    Args:
        model: the model id, e.g. ``"claude-sonnet-4-6"``.
        api_key: the key; defaults to ``ANTHROPIC_API_KEY`` (or a bearer token from
            ``ANTHROPIC_AUTH_TOKEN``). A server at a custom ``base_url`` may need
            none, and gets a placeholder.
        base_url: the API root; defaults to ``ANTHROPIC_BASE_URL``, then Anthropic's own.
        timeout: seconds one request may take before it counts as timed out.
        default_max_tokens: sent when a call gives no ``max_tokens`` (the API needs one).
        prices, retry, sleep, rng, clock: see :class:`~trestle.models.provider.SDKModel`.

    Raises:
        MissingExtraError: the ``anthropic`` package is not installed.
        MissingKeyError: no credentials for Anthropic's own API (a ConfigError).
    """

    provider = "anthropic"

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        prices: PriceTable | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(model, prices=prices, retry=retry, sleep=sleep, rng=rng, clock=clock)
        self.timeout = timeout
        sdk = import_sdk("anthropic", "anthropic")
        self._module = sdk
        self.default_max_tokens = default_max_tokens
        custom_url = base_url or os.environ.get("ANTHROPIC_BASE_URL")
        self._base_url = (custom_url or DEFAULT_BASE_URL).rstrip("/")
        key = api_key or os.environ.get("ANTHROPIC_API_KEY")
        token = None if key else os.environ.get("ANTHROPIC_AUTH_TOKEN")
        if not key and not token:
            if not custom_url:
                raise MissingKeyError("anthropic", model, "ANTHROPIC_API_KEY")
            key = PLACEHOLDER_KEY
        # Retries are ours (trestle.models.retry): one policy for every provider.
        self._client = sdk.AsyncAnthropic(
            api_key=key,
            auth_token=token,
            base_url=self._base_url,
            timeout=timeout,
            max_retries=0,
            http_client=bounded_client(sdk, f"anthropic at {self._base_url!r}"),
        )

    def _request(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSchema],
        max_tokens: int | None,
        temperature: float | None,
    ) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content)
        request: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens if max_tokens is not None else self.default_max_tokens,
            "messages": wire_messages(messages),
        }
        if system:
            request["system"] = system
        if tools:
            request["tools"] = [_wire_tool(t) for t in tools]
        if temperature is not None:
            # Newer SDKs dropped the keyword (newer models refuse sampling settings);
            # extra_body still sends it, in every SDK version, for servers that take it.
            request["extra_body"] = {"temperature": temperature}
        return request

    async def _create(self, request: dict[str, Any]) -> Any:
        return await self._client.messages.create(**request)

    def _parse(self, reply: Any) -> ParsedReply:
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in getattr(reply, "content", None) or []:
            kind = getattr(block, "type", None)
            if kind == "text":
                texts.append(block.text)
            elif kind == "tool_use":
                calls.append(_parse_tool_use(block, len(calls)))
        usage = getattr(reply, "usage", None)
        input_tokens = output_tokens = None
        if usage is not None:
            output_tokens = getattr(usage, "output_tokens", None)
            input_tokens = getattr(usage, "input_tokens", None)
            if input_tokens is not None:
                # Cached prompt tokens are reported apart but still read (and billed).
                for extra in ("cache_creation_input_tokens", "cache_read_input_tokens"):
                    cached = getattr(usage, extra, None) or 0
                    if not isinstance(cached, int) or cached < 0:  # would offset the rest
                        raise ValueError(f"usage.{extra} is {cached!r}, not a count")
                    input_tokens += cached
        reason = finish_reason(getattr(reply, "stop_reason", None), _FINISH_REASONS)
        model = getattr(reply, "model", None) or self.model
        return ParsedReply(
            "\n".join(texts), tuple(calls), reason, model, input_tokens, output_tokens
        )


def wire_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Translate a conversation into the messages API's ``messages`` list.

    System messages are left out (they go to ``system``). Tool results become
    ``tool_result`` blocks in a user turn. Messages with nothing to say are left out,
    because the API refuses empty content. Consecutive turns of one role are merged.
    """
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [
            {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.content,
            }
        ]
    blocks: list[dict[str, Any]] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": _tool_input(call)}
        )
    return blocks


def _tool_input(call: ToolCall) -> dict[str, Any]:
    """The ``input`` object of a past tool call.

    The API accepts only a JSON object here. A call whose arguments were malformed (the
    agent answered it with an error) is sent with its raw text under ``invalid_json``,
    so the model still sees what it wrote. Arguments are read within the registry's
    limits (:func:`~trestle.core.safetext.loads_bounded`): a 100,000-deep call must not
    recurse out of the request being built.
    """
    try:
        parsed = loads_bounded(call.arguments)
    except ValueError:
        return {"invalid_json": call.arguments}
    if not isinstance(parsed, dict):
        return {"invalid_json": call.arguments}
    return parsed


def _wire_tool(tool: ToolSchema) -> dict[str, Any]:
    wire: dict[str, Any] = {"name": tool.name, "input_schema": tool.parameters}
    if tool.description:
        wire["description"] = tool.description
    return wire


def _parse_tool_use(block: Any, index: int) -> ToolCall:
    raw_input = getattr(block, "input", None)
    if isinstance(raw_input, str):
        # A compatible server may pass the model's text through unparsed; keep it so.
        arguments = raw_input
    else:
        arguments = json.dumps(raw_input if raw_input is not None else {}, ensure_ascii=False)
    call_id = getattr(block, "id", None) or f"toolu_{index}"
    return ToolCall(id=call_id, name=getattr(block, "name", None) or "", arguments=arguments)
