"""Test doubles that ship with the library: a scripted model and a function model.

Both record every request they receive (:attr:`ScriptedModel.requests`), so a test can
assert what the agent sent, and both fail loudly rather than invent an answer.
A plain string reply becomes a text :class:`~trestle.core.conversation.ModelResponse` whose
usage is the offline estimate (marked ``estimated``), so budgets see realistic numbers.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence

from trestle.core.conversation import Message, ModelRequest, ModelResponse, ToolSchema, Usage
from trestle.core.errors import ScriptExhaustedError
from trestle.core.estimate import estimate_text_tokens, estimate_tokens

Reply = ModelResponse | str
ReplyFunction = Callable[[Sequence[Message], Sequence[ToolSchema]], Reply | Awaitable[Reply]]


class _RecordingModel:
    """Records requests and turns replies into responses; subclasses choose the reply."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[ModelRequest] = []

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSchema] = (),
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> ModelResponse:
        """Record the request, then answer with the next reply."""
        self.requests.append(
            ModelRequest(
                model=self.name,
                messages=tuple(messages),
                tools=tuple(tools),
                max_tokens=max_tokens,
                temperature=temperature,
            )
        )
        reply = await self._reply(messages, tools)
        return self._to_response(reply, messages, tools)

    async def _reply(self, messages: Sequence[Message], tools: Sequence[ToolSchema]) -> Reply:
        raise NotImplementedError

    def _to_response(
        self, reply: Reply, messages: Sequence[Message], tools: Sequence[ToolSchema]
    ) -> ModelResponse:
        if isinstance(reply, str):
            usage = Usage(
                input_tokens=estimate_tokens(messages, tools),
                output_tokens=estimate_text_tokens(reply),
                estimated=True,
            )
            return ModelResponse(text=reply, usage=usage, model=self.name)
        if isinstance(reply, ModelResponse):
            return reply if reply.model else reply.model_copy(update={"model": self.name})
        raise TypeError(
            f"model {self.name!r}: a reply must be a ModelResponse or a str, "
            f"got {type(reply).__name__}"
        )


class ScriptedModel(_RecordingModel):
    """Answers with a fixed list of replies, in order.

    Args:
        replies: ModelResponses or plain strings (text replies).
        name: how the model is named in records.

    Raises:
        ScriptExhaustedError: (from :meth:`complete`) asked once more than there are
            replies.
    """

    def __init__(self, replies: Iterable[Reply], *, name: str = "scripted") -> None:
        super().__init__(name)
        self._replies: deque[Reply] = deque(replies)
        self._total = len(self._replies)

    @property
    def remaining(self) -> int:
        """Replies not yet given."""
        return len(self._replies)

    async def _reply(self, messages: Sequence[Message], tools: Sequence[ToolSchema]) -> Reply:
        if not self._replies:
            last = messages[-1] if messages else None
            about = f"; the last message was {last.role} {last.content[:80]!r}" if last else ""
            raise ScriptExhaustedError(
                f"scripted model {self.name!r} has no reply left for request "
                f"#{len(self.requests)}: its script held {self._total}{about}"
            )
        return self._replies.popleft()


class FunctionModel(_RecordingModel):
    """Answers by calling a function of the conversation (sync or async).

    Useful when the reply depends on what was sent, e.g. echoing a tool result.

    Args:
        function: called with ``(messages, tools)``; returns a ModelResponse or a str,
            or an awaitable of one. Whatever it raises propagates.
        name: how the model is named in records.
    """

    def __init__(self, function: ReplyFunction, *, name: str = "function") -> None:
        super().__init__(name)
        self._function = function

    async def _reply(self, messages: Sequence[Message], tools: Sequence[ToolSchema]) -> Reply:
        result = self._function(messages, tools)
        if inspect.isawaitable(result):
            return await result
        return result
