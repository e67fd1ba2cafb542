"""An OTLP/HTTP trace receiver on 127.0.0.1, for tests of what a run sends.

:class:`OtlpReceiver` accepts ``POST /v1/traces`` (an ``ExportTraceServiceRequest`` in
protobuf, gzip or not), decodes it with ``opentelemetry-proto`` (installed with the
``otel`` extra) and keeps every span as a :class:`ReceivedSpan`. Point a process at it
with ``OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint``::

    with OtlpReceiver() as receiver:
        subprocess.run(["trestle", "run", "plan.yaml"], env={..., **receiver.env()})
        spans = receiver.wait_for(lambda spans: any(s.parent_id is None for s in spans))
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

AttrValue = str | bool | int | float | tuple[str | bool | int | float, ...] | None


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the receiver decoded it; ids in lowercase hex."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    start_ns: int
    end_ns: int
    attributes: Mapping[str, AttrValue]
    events: tuple[tuple[str, Mapping[str, AttrValue]], ...]
    error: str | None  # the status message of a span whose status is ERROR
    service: str
    scope: str
    kind: int = 0
    resource: Mapping[str, AttrValue] = field(default_factory=dict)

    @property
    def event_names(self) -> list[str]:
        return [name for name, _ in self.events]


def _value(value: AnyValue) -> AttrValue:
    which = value.WhichOneof("value")
    if which == "array_value":
        items = [_value(v) for v in value.array_value.values]
        return tuple(i for i in items if i is not None and not isinstance(i, tuple))
    if which in ("string_value", "bool_value", "int_value", "double_value"):
        scalar: str | bool | int | float = getattr(value, which)
        return scalar
    return None


def _attrs(pairs: list[KeyValue]) -> dict[str, AttrValue]:
    return {kv.key: _value(kv.value) for kv in pairs}


def decode(body: bytes) -> list[ReceivedSpan]:
    """The spans of one ``ExportTraceServiceRequest``."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    out = []
    for resource_spans in request.resource_spans:
        resource = _attrs(list(resource_spans.resource.attributes))
        service = str(resource.get("service.name", ""))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                events = tuple((e.name, _attrs(list(e.attributes))) for e in span.events)
                out.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex() or None,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes=_attrs(list(span.attributes)),
                        events=events,
                        error=span.status.message if span.status.code == 2 else None,
                        service=service,
                        scope=scope_spans.scope.name,
                        kind=span.kind,
                        resource=resource,
                    )
                )
    return out


class OtlpReceiver:
    """Receives OTLP/HTTP traces on 127.0.0.1 in a daemon thread; a context manager.

    Attributes:
        requests: how many export requests arrived.
        refused: how many it could not decode (answered 400).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self.requests = 0
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/traces":
                    self.send_error(404)
                    return
                try:
                    if self.headers.get("Content-Encoding", "").lower() == "gzip":
                        body = gzip.decompress(body)
                    spans = decode(body)
                except Exception as exc:  # a body that is not a trace export
                    with receiver._lock:
                        receiver.refused += 1
                    self.send_error(400, str(exc))
                    return
                with receiver._lock:
                    receiver.requests += 1
                    receiver._spans += spans
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                return  # quiet: a test's output is its own

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``: the value for ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def env(self) -> dict[str, str]:
        """The environment that sends a process's traces here, promptly."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: a killed process loses little
        }

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def wait_for(
        self, done: Callable[[list[ReceivedSpan]], bool], timeout: float = 10.0
    ) -> list[ReceivedSpan]:
        """The spans received once ``done`` holds for them; AssertionError at timeout."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans
            if done(spans):
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(f"the receiver got {len(spans)} spans, not what was awaited")
            time.sleep(0.02)

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
