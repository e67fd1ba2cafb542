"""A loopback server that speaks Anthropic's ``POST /v1/messages``.

Example::

    with AnthropicServer() as server:
        server.queue_tool_calls(("read_file", {"path": "a.py"})).queue_text("done")
        model = AnthropicModel("claude-sonnet-4-6", base_url=server.base_url)
        ...
        assert server.requests[0].body["system"] == "You are careful."
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

from trestle.testing.loopback import LoopbackServer, ScriptedReply

# Anthropic's error "type" for each status it documents.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}

# (name, input): input is the arguments object, or a string sent as is in its place.
ToolUseSpec = tuple[str, Mapping[str, Any] | str]


class AnthropicServer(LoopbackServer):
    """A scriptable Anthropic-compatible messages server on 127.0.0.1.

    Args:
        model: the model name replies report unless a reply says otherwise.
    """

    default_model = "claude-sonnet-4-6"
    endpoint = "/v1/messages"

    def message(
        self,
        content: Sequence[Mapping[str, Any]],
        *,
        stop_reason: str | None,
        usage: tuple[int, int] | None,
        model: str | None = None,
    ) -> dict[str, Any]:
        """A ``message`` object with these content blocks."""
        body: dict[str, Any] = {
            "id": f"msg_{next(self._ids):04d}",
            "type": "message",
            "role": "assistant",
            "model": model or self.model,
            "content": [dict(block) for block in content],
            "stop_reason": stop_reason,
            "stop_sequence": None,
        }
        if usage is not None:
            body["usage"] = {"input_tokens": usage[0], "output_tokens": usage[1]}
        return body

    def queue_text(
        self,
        text: str,
        *,
        stop_reason: str = "end_turn",
        usage: tuple[int, int] | None = (10, 5),
        model: str | None = None,
        delay: float = 0.0,
    ) -> Self:
        """Queue a text reply. ``usage`` is (input, output) tokens, or None to omit it."""
        body = self.message(
            [{"type": "text", "text": text}], stop_reason=stop_reason, usage=usage, model=model
        )
        return self.queue(ScriptedReply(200, body, {}, delay))

    def queue_tool_calls(
        self,
        *calls: ToolUseSpec,
        text: str | None = None,
        usage: tuple[int, int] | None = (10, 5),
        model: str | None = None,
        delay: float = 0.0,
    ) -> Self:
        """Queue a reply with ``tool_use`` blocks, after an optional text block.

        Each call is ``(name, input)``. The real API always sends ``input`` as an
        object; a string is sent as is, standing in for a compatible server that
        passes a model's malformed JSON through.
        """
        content: list[dict[str, Any]] = []
        if text:
            content.append({"type": "text", "text": text})
        for name, arguments in calls:
            content.append(
                {
                    "type": "tool_use",
                    "id": f"toolu_{next(self._ids):04d}",
                    "name": name,
                    "input": arguments if isinstance(arguments, str) else dict(arguments),
                }
            )
        body = self.message(content, stop_reason="tool_use", usage=usage, model=model)
        return self.queue(ScriptedReply(200, body, {}, delay))

    def queue_empty(
        self,
        *,
        stop_reason: str = "end_turn",
        usage: tuple[int, int] | None = (10, 0),
        delay: float = 0.0,
    ) -> Self:
        """Queue a reply with no content blocks at all."""
        body = self.message([], stop_reason=stop_reason, usage=usage)
        return self.queue(ScriptedReply(200, body, {}, delay))

    def error_body(self, status: int, message: str) -> Any:
        """Anthropic's error format: ``{"type": "error", "error": {"type", "message"}}``."""
        kind = _ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
