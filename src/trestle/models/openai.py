"""OpenAI-compatible chat completions through the official ``openai`` SDK.

``base_url`` points it at any server that speaks the chat completions API: OpenAI
itself, vLLM, Ollama (``http://localhost:11434/v1``), llama.cpp's server, or
:class:`trestle.testing.OpenAIServer` in tests. The SDK is imported when a model is
built, not when this module is, so ``trestle --help`` never loads it.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

from trestle.core.conversation import Message, ToolCall, ToolSchema
from trestle.core.errors import MissingKeyError
from trestle.models.guard import is_loopback_url
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

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Local servers need no key, but the SDK insists on one.
PLACEHOLDER_KEY = "not-needed"

_FINISH_REASONS = {
    "stop": "stop",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "length": "length",
    "content_filter": "content_filter",
}

MaxTokensParam = Literal["max_tokens", "max_completion_tokens"]


class OpenAIModel(SDKModel):
    """A model served through the OpenAI chat completions API.

    Args:
        model: the model id, e.g. ``"gpt-4o-mini"`` or a local server's model name.
        api_key: the key; defaults to ``OPENAI_API_KEY``. A server at a custom
            ``base_url`` may need none, and gets a placeholder.
        base_url: the API root, e.g. ``"http://localhost:11434/v1"``; defaults to
            ``OPENAI_BASE_URL``, then OpenAI's own.
        timeout: seconds one request may take before it counts as timed out (and is
            retried).
        max_tokens_param: how to send ``max_tokens``. OpenAI's newer models accept
            only ``max_completion_tokens``; many compatible servers only
            ``max_tokens``. Defaults to the former for OpenAI's own API, the latter
            elsewhere.
        prices, retry, sleep, rng, clock: see :class:`~trestle.models.provider.SDKModel`.

    Raises:
        MissingExtraError: the ``openai`` package is not installed.
        MissingKeyError: no API key for OpenAI's own API (a ConfigError).
    """

    provider = "openai"

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_tokens_param: MaxTokensParam | None = None,
        prices: PriceTable | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(model, prices=prices, retry=retry, sleep=sleep, rng=rng, clock=clock)
        self.timeout = timeout
        sdk = import_sdk("openai", "openai")
        self._module = sdk
        custom_url = base_url or os.environ.get("OPENAI_BASE_URL")
        self._base_url = (custom_url or DEFAULT_BASE_URL).rstrip("/")
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if not custom_url:
                raise MissingKeyError("openai", model, "OPENAI_API_KEY")
            key = PLACEHOLDER_KEY
        if max_tokens_param is None:
            official = self._base_url == DEFAULT_BASE_URL
            max_tokens_param = "max_completion_tokens" if official else "max_tokens"
        self.max_tokens_param: MaxTokensParam = max_tokens_param
        # Retries are ours (trestle.models.retry): one policy for every provider.
        self._client = sdk.AsyncOpenAI(
            api_key=key,
            base_url=self._base_url,
            timeout=timeout,
            max_retries=0,
            http_client=bounded_client(sdk, f"openai at {self._base_url!r}"),
        )

    @property
    def is_local(self) -> bool:
        """True when the server is on this machine."""
        return is_loopback_url(self._base_url)

    def _request(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSchema],
        max_tokens: int | None,
        temperature: float | None,
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [_wire_message(m) for m in messages],
        }
        if tools:
            request["tools"] = [_wire_tool(t) for t in tools]
        if max_tokens is not None:
            request[self.max_tokens_param] = max_tokens
        if temperature is not None:
            request["temperature"] = temperature
        return request

    async def _create(self, request: dict[str, Any]) -> Any:
        return await self._client.chat.completions.create(**request)

    def _parse(self, reply: Any) -> ParsedReply:
        usage = getattr(reply, "usage", None)
        input_tokens = getattr(usage, "prompt_tokens", None) if usage is not None else None
        output_tokens = getattr(usage, "completion_tokens", None) if usage is not None else None
        model = getattr(reply, "model", None) or self.model
        choices = getattr(reply, "choices", None) or []
        if not choices:
            return ParsedReply("", (), "unknown", model, input_tokens, output_tokens)
        choice = choices[0]
        message = choice.message
        text = getattr(message, "content", None) or getattr(message, "refusal", None) or ""
        calls = tuple(
            _parse_tool_call(raw, index)
            for index, raw in enumerate(getattr(message, "tool_calls", None) or [])
        )
        reason = finish_reason(getattr(choice, "finish_reason", None), _FINISH_REASONS)
        return ParsedReply(text, calls, reason, model, input_tokens, output_tokens)


def _wire_message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        # A tool-calling turn with no text sends null content, as the API itself does.
        wire["content"] = message.content or None
        wire["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    return wire


def _wire_tool(tool: ToolSchema) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def _parse_tool_call(raw: Any, index: int) -> ToolCall:
    # Some compatible servers omit ids; the tool result must still name its call
    # (ModelResponse also replaces odd ones and repeats).
    call_id = getattr(raw, "id", None) or f"call_{index}"
    function = getattr(raw, "function", None)
    if function is not None:
        name, arguments = function.name, function.arguments
    else:  # a "custom" tool call carries free-form input instead of JSON arguments
        custom = raw.custom
        name, arguments = custom.name, custom.input
    if arguments is None:
        arguments = ""
    elif not isinstance(arguments, str):
        # A few servers send parsed arguments; keep them as the JSON text they were.
        arguments = json.dumps(arguments, ensure_ascii=False)
    return ToolCall(id=call_id, name=name or "", arguments=arguments)
