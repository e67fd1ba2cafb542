"""Spans as OTLP/JSON: an ``ExportTraceServiceRequest`` an OpenTelemetry collector,
Jaeger or any OTLP file reader takes.

The encoding is the OTLP specification's JSON mapping of the protobuf messages:
``resourceSpans`` → ``scopeSpans`` → ``spans``, field names in lowerCamelCase, trace
and span ids as lowercase hex (32 and 16 digits; the one place OTLP departs from the
protobuf JSON mapping, which would use base64), times as nanoseconds since the epoch in
decimal strings, enums as integers (``kind`` 1 internal, 3 client; ``status.code`` 2
error), attribute values as ``{"stringValue": ...}``, ``{"intValue": "..."}`` (a
string, being 64-bit), ``{"doubleValue": ...}``, ``{"boolValue": ...}`` or an
``arrayValue``. A span that did not fail has no status (unset), as instrumentation
leaves it.

:func:`otlp_request` encodes anything shaped like a span record (:class:`SpanLike`:
``trestle.telemetry``'s ``SpanRecord`` fits it), so this module needs nothing of how
spans are made.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

AttrValue = str | bool | int | float | tuple[str, ...]
_KINDS = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
_STATUS_ERROR = 2
SCOPE = "trestle"


class SpanEventLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def at(self) -> float: ...
    @property
    def attributes(self) -> Mapping[str, AttrValue]: ...


class SpanLike(Protocol):
    """What :func:`otlp_request` reads of a span: ids as integers, times in seconds."""

    @property
    def name(self) -> str: ...
    @property
    def trace_id(self) -> int: ...
    @property
    def span_id(self) -> int: ...
    @property
    def parent_id(self) -> int | None: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def attributes(self) -> Mapping[str, AttrValue]: ...
    @property
    def events(self) -> Sequence[SpanEventLike]: ...
    @property
    def kind(self) -> str: ...
    @property
    def error(self) -> str | None: ...


def otlp_request(
    spans: Iterable[SpanLike], resource: Mapping[str, AttrValue] | None = None
) -> dict[str, Any]:
    """The spans as one OTLP/JSON ``ExportTraceServiceRequest`` (see module), under one
    resource (``service.name`` is ``trestle`` unless ``resource`` names another)."""
    attributes = {"service.name": "trestle", **(resource or {})}
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _attributes(attributes)},
                "scopeSpans": [
                    {"scope": {"name": SCOPE}, "spans": [_span(s) for s in spans]},
                ],
            }
        ]
    }


def _span(span: SpanLike) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": f"{span.trace_id:032x}",
        "spanId": f"{span.span_id:016x}",
    }
    if span.parent_id is not None:
        out["parentSpanId"] = f"{span.parent_id:016x}"
    out.update(
        name=span.name,
        kind=_KINDS.get(span.kind, _KINDS["internal"]),
        startTimeUnixNano=nanos(span.start),
        endTimeUnixNano=nanos(max(span.end, span.start)),
        attributes=_attributes(span.attributes),
    )
    if span.events:
        out["events"] = [
            {"timeUnixNano": nanos(e.at), "name": e.name, "attributes": _attributes(e.attributes)}
            for e in span.events
        ]
    if span.error is not None:
        out["status"] = {"code": _STATUS_ERROR, "message": span.error}
    return out


def nanos(seconds: float) -> str:
    """Seconds since the epoch as OTLP's nanoseconds, a decimal string (microseconds
    kept exactly: a float's nanoseconds are noise)."""
    return str(round(seconds * 1_000_000) * 1_000)


def _attributes(attributes: Mapping[str, AttrValue]) -> list[dict[str, Any]]:
    return [{"key": key, "value": _value(value)} for key, value in attributes.items()]


def _value(value: AttrValue) -> dict[str, Any]:
    if isinstance(value, bool):  # before int: a bool is an int
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, tuple):
        return {"arrayValue": {"values": [{"stringValue": str(v)} for v in value]}}
    return {"stringValue": value}
