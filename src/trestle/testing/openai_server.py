"""A loopback server that speaks OpenAI's ``POST /v1/chat/completions``.

Example::

    with OpenAIServer() as server:
        server.queue_tool_calls(("read_file", '{"path": "a.py"}')).queue_text("done")
        model = OpenAIModel("gpt-4o-mini", base_url=server.base_url)
        ...
        assert server.requests[0].body["tools"][0]["function"]["name"] == "read_file"
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from trestle.core.conversation import ToolCall
from trestle.testing.loopback import LoopbackServer, ScriptedReply

# OpenAI's error "type" for the statuses tests use most.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    422: "invalid_request_error",
    429: "rate_limit_exceeded",
}

ToolCallSpec = ToolCall | tuple[str, str]


class OpenAIServer(LoopbackServer):
    """A scriptable OpenAI-compatible chat completions server on 127.0.0.1.

    Args:
        model: the model name replies report unless a reply says otherwise.
    """

    default_model = "gpt-4o-mini"
    endpoint = "/v1/chat/completions"

    @property
    def base_url(self) -> str:
        """The ``base_url`` for the ``openai`` client: ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    def completion(
        self,
        message: Mapping[str, Any],
        *,
        finish_reason: str | None,
        usage: tuple[int, int] | None,
        model: str | None = None,
    ) -> dict[str, Any]:
        """A ``chat.completion`` object with one choice holding ``message``."""
        body: dict[str, Any] = {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model or self.model,
            "choices": [
                {
                    "index": 0,
                    "message": dict(message),
                    "finish_reason": finish_reason,
                    "logprobs": None,
                }
            ],
        }
        if usage is not None:
            prompt, completion = usage
            body["usage"] = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
        return body

    def queue_text(
        self,
        text: str,
        *,
        finish_reason: str = "stop",
        usage: tuple[int, int] | None = (10, 5),
        model: str | None = None,
        delay: float = 0.0,
    ) -> Self:
        """Queue an assistant text reply. ``usage`` is (prompt, completion) tokens, or None."""
        message = {"role": "assistant", "content": text}
        body = self.completion(message, finish_reason=finish_reason, usage=usage, model=model)
        return self.queue(ScriptedReply(200, body, {}, delay))

    def queue_tool_calls(
        self,
        *calls: ToolCallSpec,
        text: str | None = None,
        usage: tuple[int, int] | None = (10, 5),
        model: str | None = None,
        delay: float = 0.0,
    ) -> Self:
        """Queue a reply that calls tools.

        Each call is a :class:`ToolCall` or a ``(name, arguments)`` pair, where
        ``arguments`` is the raw JSON text, sent exactly as given: malformed JSON and
        names of tools that were never offered go out unchanged.
        """
        wire_calls = []
        for call in calls:
            if isinstance(call, ToolCall):
                call_id, name, arguments = call.id, call.name, call.arguments
            else:
                (name, arguments), call_id = call, f"call_{next(self._ids)}"
            wire_calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            )
        message = {"role": "assistant", "content": text, "tool_calls": wire_calls}
        body = self.completion(message, finish_reason="tool_calls", usage=usage, model=model)
        return self.queue(ScriptedReply(200, body, {}, delay))

    def queue_empty(
        self,
        *,
        finish_reason: str = "stop",
        usage: tuple[int, int] | None = (10, 0),
        delay: float = 0.0,
    ) -> Self:
        """Queue a reply with null content and no tool calls."""
        message = {"role": "assistant", "content": None}
        body = self.completion(message, finish_reason=finish_reason, usage=usage)
        return self.queue(ScriptedReply(200, body, {}, delay))

    def error_body(self, status: int, message: str) -> Any:
        """OpenAI's error format: ``{"error": {"message", "type", "param", "code"}}``."""
        kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "api_error")
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}
