"""Span records: what a run's committed events say a trace should show, without the SDK.

A :class:`SpanRecord` is a finished span as plain data (ids, times in the run's clock
seconds, attributes, events, error); :mod:`.fold` makes them from events and
:mod:`.sdk` hands them to OpenTelemetry. The attribute names follow the OpenTelemetry
GenAI semantic conventions where one exists (``gen_ai.*``, ``error.type``) and are
``trestle.*`` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

AttrValue = str | bool | int | float | tuple[str, ...]
SpanKind = Literal["internal", "client"]

# the GenAI semantic conventions' names (https://opentelemetry.io/docs/specs/semconv/gen-ai/)
OPERATION = "gen_ai.operation.name"
AGENT_NAME = "gen_ai.agent.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_TYPE = "gen_ai.tool.type"
ERROR_TYPE = "error.type"
# Trestle's own
RUN_ID = "trestle.run.id"
COST = "trestle.cost"


@dataclass(frozen=True)
class SpanEvent:
    """Something that happened at one moment within a span (an approval, an alert)."""

    name: str
    at: float
    attributes: Mapping[str, AttrValue] = field(default_factory=dict)


@dataclass(frozen=True)
class SpanRecord:
    """A finished span.

    Attributes:
        trace_id: 128 bits, from the run tree's root (:func:`.ids.trace_id_for`).
        span_id: 64 bits, from what the span stands for (:func:`.ids.span_id_for`).
        parent_id: the parent span's id in the same trace; None for the trace's root.
        start, end: seconds since the epoch, from the run's recorded events.
        error: None for a span that did not fail; else what went wrong, in words
            (``error.type`` among the attributes names its kind).
    """

    name: str
    trace_id: int
    span_id: int
    parent_id: int | None
    start: float
    end: float
    attributes: Mapping[str, AttrValue]
    events: tuple[SpanEvent, ...] = ()
    kind: SpanKind = "internal"
    error: str | None = None


@dataclass
class OpenSpan:
    """A span whose start is recorded and whose end is not yet."""

    name: str
    span_id: int
    parent_id: int | None
    start: float
    attributes: dict[str, AttrValue]
    kind: SpanKind = "internal"
    events: list[SpanEvent] = field(default_factory=list)

    def note(self, name: str, at: float, **attributes: AttrValue | None) -> None:
        """Add a span event; attributes that are None are left out."""
        kept = {k.replace("__", "."): v for k, v in attributes.items() if v is not None}
        self.events.append(SpanEvent(name=name, at=at, attributes=kept))

    def close(
        self,
        trace_id: int,
        end: float,
        *,
        error: str | None = None,
        error_type: str | None = None,
        **attributes: AttrValue | None,
    ) -> SpanRecord:
        """The finished span; ``attributes`` (``a__b`` for ``a.b``) join its own."""
        attrs = dict(self.attributes)
        attrs.update({k.replace("__", "."): v for k, v in attributes.items() if v is not None})
        if error is not None:
            attrs[ERROR_TYPE] = error_type or "error"
        return SpanRecord(
            name=self.name,
            trace_id=trace_id,
            span_id=self.span_id,
            parent_id=self.parent_id,
            start=self.start,
            end=max(end, self.start),
            attributes=attrs,
            events=tuple(self.events),
            kind=self.kind,
            error=error,
        )
