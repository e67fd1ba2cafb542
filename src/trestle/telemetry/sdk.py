"""The OpenTelemetry SDK side: span records handed to a tracer provider, configured from
the standard ``OTEL_*`` environment variables. Importing this module needs the
``otel`` extra (``pip install "trestle-runtime[otel]"``).

The SDK does the configuring: ``TracerProvider`` reads ``OTEL_SDK_DISABLED``,
``OTEL_TRACES_SAMPLER`` and the span limits, ``Resource.create`` reads
``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` (the service is ``trestle``
unless they name one; ``host.name`` and ``process.pid`` are this process's unless they
say otherwise), ``BatchSpanProcessor`` reads ``OTEL_BSP_*``, and the OTLP
exporter reads ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``, ``_HEADERS``, ``_TIMEOUT`` and
the rest. ``OTEL_TRACES_EXPORTER`` names the exporters (default ``otlp``, over
HTTP/protobuf unless ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`` is ``grpc``), each found
by the name it registers under the SDK's ``opentelemetry_traces_exporter`` entry point.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
import threading
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from trestle.core.redaction import redact, secret_values
from trestle.core.safetext import without_surrogates
from trestle.telemetry.spans import SpanRecord

SCOPE = "trestle"
_KINDS = {"internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT}
_PROTOCOLS = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}


class _GivenIds(IdGenerator):
    """Hands the SDK the ids a span record already has (see :mod:`.ids`)."""

    def __init__(self) -> None:
        self.next = threading.local()

    def generate_span_id(self) -> int:
        value: int = self.next.span_id
        return value

    def generate_trace_id(self) -> int:
        value: int = self.next.trace_id
        return value


class SdkSink:
    """Span records made into SDK spans, through ``processors`` (an exporter's batch
    processor; the SDK's in-memory exporter in tests).

    Args:
        processors: where finished spans go, in order.
        resource: the resource spans carry; default from the environment, with
            ``service.name`` ``trestle`` unless the environment names a service.
    """

    def __init__(
        self,
        processors: Sequence[SpanProcessor],
        *,
        resource: Resource | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        # a span leaves this machine: what a run recorded in it (a failed check's reason
        # quoting a step's output) goes with the secrets of the environment (``environ``,
        # default this process's) and credential-shaped strings redacted, as a notice's
        # and a model's request are, and with no unpaired surrogate (a file name of
        # bytes that are not UTF-8), on which the exporter dropped the whole batch
        self._secrets = secret_values(os.environ if environ is None else environ)
        # a span's texts are mostly the same few (ids, names, statuses) again and again
        self._text = functools.lru_cache(maxsize=4096)(self._redacted)
        self._ids = _GivenIds()
        self.provider = TracerProvider(id_generator=self._ids, resource=resource or _resource())
        for processor in processors:
            self.provider.add_span_processor(processor)
        self._tracer = self.provider.get_tracer(SCOPE)
        self._lock = threading.Lock()

    def emit(self, spans: Sequence[SpanRecord]) -> None:
        with self._lock:
            for record in spans:
                self._one(record)

    def _one(self, record: SpanRecord) -> None:
        self._ids.next.trace_id, self._ids.next.span_id = record.trace_id, record.span_id
        context = Context()  # never the caller's current span: the ids are the record's
        if record.parent_id is not None:
            parent = SpanContext(
                record.trace_id,
                record.parent_id,
                is_remote=True,
                trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
            )
            context = trace.set_span_in_context(NonRecordingSpan(parent), context)
        span = self._tracer.start_span(
            record.name,
            context=context,
            kind=_KINDS[record.kind],
            attributes=self._sent(record.attributes),
            start_time=_ns(record.start),
        )
        for event in record.events:
            span.add_event(event.name, self._sent(event.attributes), timestamp=_ns(event.at))
        if record.error is not None:
            span.set_status(Status(StatusCode.ERROR, self._text(record.error)))
        span.end(end_time=_ns(record.end))

    def _sent(self, attributes: Mapping[str, AttributeValue]) -> dict[str, AttributeValue]:
        """``attributes`` as they may leave: each text redacted (see ``__init__``)."""
        return {key: self._value(value) for key, value in attributes.items()}

    def _value(self, value: AttributeValue) -> AttributeValue:
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, tuple | list) and value and isinstance(value[0], str):
            return [self._text(str(item)) for item in value]
        return value

    def _redacted(self, text: str) -> str:
        return redact(without_surrogates(text), self._secrets)

    def flush(self) -> None:
        self.provider.force_flush()

    def shutdown(self) -> None:
        self.provider.shutdown()


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def _resource() -> Resource:
    """The environment's resource, over this process's host and pid (which worker sent
    a span), with the service ``trestle`` unless the environment names one."""
    found = Resource.create()
    attributes: dict[str, AttributeValue] = {
        "host.name": socket.gethostname(),
        "process.pid": os.getpid(),
    }
    attributes.update(found.attributes)
    if str(attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        attributes[SERVICE_NAME] = "trestle"
    return Resource(attributes, found.schema_url)


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The entry-point names of the exporters ``OTEL_TRACES_EXPORTER`` asks for."""
    names = []
    for name in (environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(","):
        name = name.strip().lower()
        if name in ("", "none"):
            continue
        if name == "otlp":
            protocol = (
                environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf"
            ).strip()
            name = _PROTOCOLS.get(protocol, f"otlp ({protocol}, unsupported)")
        names.append(name)
    return names


def sink_from_env(environ: Mapping[str, str] | None = None) -> SdkSink:
    """A sink with a batch processor for each exporter the environment names; one that
    is not installed is reported on stderr and left out."""
    environ = os.environ if environ is None else environ
    processors: list[SpanProcessor] = []
    for name in exporter_names(environ):
        found = entry_points(group="opentelemetry_traces_exporter", name=name)
        if not found:
            sys.stderr.write(
                f"trestle: OTEL_TRACES_EXPORTER: no trace exporter {name!r} is installed; "
                "its spans are not sent\n"
            )
            continue
        exporter_class = next(iter(found)).load()
        exporter: SpanExporter = exporter_class()
        processors.append(BatchSpanProcessor(exporter))
    return SdkSink(processors)
