"""The model protocol and the plain records that cross it.

Every request and response is a frozen pydantic record that round-trips through JSON,
so the engine can record a call (its :func:`request_hash` and its
:class:`ModelResponse`) as an event and replay it instead of calling again.
Providers translate these records to and from their wire formats; nothing
provider-specific lives here.

The records also hold whatever a provider (or a model of the user's own) builds to
what can be stored and sent again: text fields have unpaired surrogates replaced, a
response's tool-call ids are made usable and distinct, and :class:`Usage` refuses
counts and costs no call could have.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Protocol, Self, runtime_checkable

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from trestle.core.memo import ByIdentity, same_start
from trestle.core.safetext import MAX_ARGUMENTS, without_surrogates

Role = Literal["system", "user", "assistant", "tool"]

# Bump when the hashed shape changes, so old recordings stop matching instead of
# matching the wrong request.
_HASH_VERSION = "trestle-model-request/1"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# text from a provider: an unpaired surrogate (a model can send "\ud83d") could not be
# stored, so it is replaced here, at the edge, for every provider alike
Text = Annotated[str, AfterValidator(without_surrogates)]
MAX_CALL_TOKENS = 100_000_000  # far above any context window: more is a broken report
# dollars; finite is not enough: two costs of 1e308 add up to inf in the run's tally
MAX_CALL_COST = 1_000_000.0
# Characters an answer may carry, its text and its calls' arguments together: eight
# times the longest a model writes (128k output tokens of about 4 characters). More is
# refused before it is recorded: the store reads a text back only below a ceiling
# (store/inflate.py), and a run holding an answer past it could never be read again.
MAX_ANSWER = 4 * (1 << 20)
# Tool calls run from one answer; the rest are answered "not run". Models ask a handful
# at once; a server's answer can hold 100,000 within MAX_ANSWER, and the monitors judge
# a turn once its calls have ended: every one ran before any monitor could pause the run
# (83 s and 1 GB for reads alone).
MAX_CALLS = 32
# Longer than any API generates (``call_...``, ``toolu_...``), and no space or control
# character: an id is sent back to the server and is part of the call's idempotency key.
_CALL_ID = re.compile(r"[^\s\x00-\x1f\x7f-\x9f]{1,64}")


class ToolCall(_Record):
    """One tool call the model asked for.

    ``arguments`` is the raw JSON text the model produced, unparsed: malformed JSON must
    survive so the agent can tell the model what was wrong with it.
    """

    id: Text
    name: Text
    arguments: Text = "{}"


class ToolSchema(_Record):
    """A tool offered to the model: its name, what it does and a JSON Schema for its arguments."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class Message(_Record):
    """One turn of a conversation.

    ``tool_calls`` appear only on assistant messages; ``tool_call_id`` is required on
    tool messages and names the call whose result ``content`` holds.
    """

    role: Role
    content: Text = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _check_shape(self) -> Self:
        if self.tool_calls and self.role != "assistant":
            raise ValueError(f"a {self.role!r} message cannot carry tool_calls")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a 'tool' message needs the tool_call_id it answers")
        if self.role != "tool" and self.tool_call_id is not None:
            raise ValueError(f"a {self.role!r} message cannot carry a tool_call_id")
        return self

    @classmethod
    def system(cls, content: str) -> Message:
        """A system message: instructions that frame the whole conversation."""
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str) -> Message:
        """A user message."""
        return cls(role="user", content=content)

    @classmethod
    def assistant(cls, content: str = "", tool_calls: Sequence[ToolCall] = ()) -> Message:
        """An assistant message, with the tool calls it made, if any."""
        return cls(role="assistant", content=content, tool_calls=tuple(tool_calls))

    @classmethod
    def tool(cls, tool_call_id: str, content: str) -> Message:
        """The result of tool call ``tool_call_id``, as the model will read it."""
        return cls(role="tool", content=content, tool_call_id=tool_call_id)


class Usage(_Record):
    """What one call consumed.

    ``cost`` is in dollars, or None when the model has no price in the price table.
    ``estimated`` is True when the provider reported no usage and the token counts come
    from :func:`~trestle.core.estimate.estimate_tokens`. Counts run from 0 to
    :data:`MAX_CALL_TOKENS`, the cost from 0 to :data:`MAX_CALL_COST`: the run's budget
    adds them up, and a sum that is not a finite number would make its state unreadable.
    """

    input_tokens: int = Field(default=0, ge=0, le=MAX_CALL_TOKENS)
    output_tokens: int = Field(default=0, ge=0, le=MAX_CALL_TOKENS)
    cost: float | None = Field(default=None, ge=0, le=MAX_CALL_COST, allow_inf_nan=False)
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


class ModelResponse(_Record):
    """What a model answered.

    ``finish_reason`` is normalised across providers: ``"stop"`` (a natural end),
    ``"tool_calls"``, ``"length"`` (the token limit cut it short) or
    ``"content_filter"``; any other value a provider sends is passed through as is, and
    ``"unknown"`` stands for none at all.

    Tool-call ids are made usable and distinct (:func:`distinct_call_ids`), so each tool
    result names one call, also when a resumed run replays the turn.
    """

    text: Text = ""
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage()
    finish_reason: Text = "stop"
    model: Text = ""

    @model_validator(mode="after")
    def _distinct_call_ids(self) -> Self:
        ids = distinct_call_ids([call.id for call in self.tool_calls])
        if ids == [call.id for call in self.tool_calls]:
            return self
        calls = tuple(
            call.model_copy(update={"id": new})
            for call, new in zip(self.tool_calls, ids, strict=True)
        )
        # still construction: the frozen record takes its field directly
        object.__setattr__(self, "tool_calls", calls)
        return self

    @property
    def length(self) -> int:
        """Characters of its text and its calls' names and arguments (:data:`MAX_ANSWER`)."""
        calls = sum(len(c.id) + len(c.name) + len(c.arguments) for c in self.tool_calls)
        return len(self.text) + calls

    @property
    def is_empty(self) -> bool:
        """True when the model said nothing and called nothing."""
        return not self.text.strip() and not self.tool_calls

    def to_message(self) -> Message:
        """The assistant message to append to the conversation.

        Arguments longer than :data:`~trestle.core.safetext.MAX_ARGUMENTS` are replaced by a
        note saying so: the call was refused unread, and sending them back would cost
        every later call as much again.
        """
        calls = tuple(
            call
            if len(call.arguments) <= MAX_ARGUMENTS
            else call.model_copy(update={"arguments": _omitted(call.arguments)})
            for call in self.tool_calls
        )
        return Message.assistant(self.text, calls)


class ModelRequest(_Record):
    """One call as a record: what was sent, to which model, with which settings."""

    model: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSchema, ...] = ()
    max_tokens: int | None = None
    temperature: float | None = None

    def settings(self) -> dict[str, Any]:
        """The settings that take part in :meth:`hash`."""
        return {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }

    def hash(self) -> str:
        """The :func:`request_hash` of this request."""
        return request_hash(self.messages, self.tools, self.settings())


def distinct_call_ids(ids: Sequence[str]) -> list[str]:
    """One usable id per call, no two alike: a missing or odd id (empty, longer than 64
    characters, with a space or a control character) becomes ``call_<i>``, ``i`` its
    position, and a repeat gets ``_2``, ``_3``, ... until it is new."""
    out: list[str] = []
    seen: set[str] = set()
    for index, raw in enumerate(ids):
        base = raw if _CALL_ID.fullmatch(raw) else f"call_{index}"
        new, n = base, 1
        while new in seen:
            n += 1
            new = f"{base[:58]}_{n}"
        seen.add(new)
        out.append(new)
    return out


def _omitted(arguments: str) -> str:
    note = f"{len(arguments):,} characters of arguments, over the limit, left out"
    return json.dumps({"omitted": note})


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no insignificant whitespace: equal values, equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_hash(
    messages: Sequence[Message],
    tools: Sequence[ToolSchema],
    settings: Mapping[str, Any],
) -> str:
    """A stable identity for a model call, to match it with a recorded response.

    Args:
        messages: the conversation sent.
        tools: the tools offered.
        settings: everything else that shapes the answer (model name, max_tokens,
            temperature, ...); values must be JSON-serialisable.

    Returns:
        The hex sha256 of the canonical JSON of all three. Dict key order and the
        Python objects' identity do not matter; any change of content does.
    """
    payload = {
        "v": _HASH_VERSION,
        "messages": [m.model_dump(mode="json") for m in messages],
        "tools": [t.model_dump(mode="json") for t in tools],
        "settings": dict(settings),
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


class RequestHasher:
    """:func:`request_hash`, for a conversation that grows turn by turn.

    An agent sends its whole conversation every turn; hashing it afresh each time
    costs time in proportion to the context. This keeps the hash state after the
    messages it last saw and, when the next conversation begins with those very
    message objects, hashes only what was added. The digest is
    :func:`request_hash`'s, byte for byte (the canonical JSON of a list is its items'
    canonical JSON joined by commas); any other conversation is hashed from scratch.
    """

    def __init__(self) -> None:
        self._seen: list[Message] = []
        self._state = hashlib.sha256(b'{"messages":[')

    def hash(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSchema],
        settings: Mapping[str, Any],
    ) -> str:
        if same_start(self._seen, messages) < len(self._seen):
            self._seen, self._state = [], hashlib.sha256(b'{"messages":[')
        for message in messages[len(self._seen) :]:
            item = canonical_json(message.model_dump(mode="json"))
            self._state.update(("," if self._seen else "").encode() + item.encode("utf-8"))
            self._seen.append(message)
        rest = (
            '],"settings":'
            + canonical_json(dict(settings))
            + ',"tools":['
            + ",".join(map(tool_json, tools))
            + "]"
            + ',"v":'
            + canonical_json(_HASH_VERSION)
            + "}"
        )
        final = self._state.copy()
        final.update(rest.encode("utf-8"))
        return final.hexdigest()


# a tool schema's canonical JSON, as a request hash holds it: made once per schema
tool_json: ByIdentity[ToolSchema, str] = ByIdentity(
    lambda tool: canonical_json(tool.model_dump(mode="json"))
)


@runtime_checkable
class Model(Protocol):
    """Anything that completes a conversation: a provider, a scripted double, a replay.

    ``name`` identifies the model in records and reports (``"openai:gpt-4o-mini"``).
    """

    name: str

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSchema] = (),
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> ModelResponse:
        """Send the conversation and the tools on offer; return the model's answer."""
        ...
