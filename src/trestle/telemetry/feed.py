"""Telemetry: the committed batches of every run a process writes, turned into spans.

An engine calls :meth:`Telemetry.committed` once a batch is durable (the local engine
after its append; a Temporal worker in its commit activity). A run this process has
not followed from its start, or whose last batch another process committed (a resume,
another Temporal worker), is caught up first from the store: its earlier events are
folded without emitting anything, so each span is emitted once, by the process that
commits the event that ends it (:mod:`.fold`). Telemetry never stops a run: an error
in it is reported once on stderr, and spans are then dropped.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

from trestle.core.events import AnyEvent, ChildRunStarted, RunCreated, StoredEvent
from trestle.telemetry.fold import RunSpans
from trestle.telemetry.ids import span_id_for
from trestle.telemetry.spans import SpanRecord

# the store's events(run_id, after, limit): events with seq > after, at most limit
Reader = Callable[[str, int, int | None], Sequence[StoredEvent]]
KEEP_RUNS = 256  # runs followed at once; one dropped is caught up again if it goes on


class SpanSink(Protocol):
    """Where finished spans go (:class:`trestle.telemetry.sdk.SdkSink`: OpenTelemetry)."""

    def emit(self, spans: Sequence[SpanRecord]) -> None: ...

    def flush(self) -> None: ...


class Telemetry:
    """The spans of the runs this process commits to, handed to ``sink``.

    Thread-safe: the local engine calls it from its store thread, a Temporal worker
    from its activities' store thread, children's engines from theirs.
    """

    def __init__(self, sink: SpanSink) -> None:
        self.sink = sink
        self._runs: OrderedDict[str, RunSpans] = OrderedDict()
        self._lock = threading.Lock()
        self._broken = False

    def committed(
        self, run_id: str, first_seq: int, events: Sequence[AnyEvent], read: Reader
    ) -> None:
        """``events`` are durable as ``run_id``'s ``first_seq``..; emit what they end."""
        if self._broken or not events:
            return
        try:
            with self._lock:
                spans = self._follow(run_id, first_seq, read)
                out: list[SpanRecord] = []
                for offset, event in enumerate(events):
                    self._feed(spans, first_seq + offset, event, read, out)
                if spans.finished:
                    self._runs.pop(run_id, None)
            if out:
                self.sink.emit(out)
        except Exception as exc:  # telemetry must never stop a run
            self._broken = True
            sys.stderr.write(f"trestle: telemetry stopped, no more spans are sent: {exc!r}\n")

    def flush(self) -> None:
        """Send what the sink still holds (before a process ends without exit hooks)."""
        try:
            self.sink.flush()
        except Exception as exc:
            sys.stderr.write(f"trestle: telemetry could not send its last spans: {exc!r}\n")

    def _follow(self, run_id: str, first_seq: int, read: Reader) -> RunSpans:
        """The run's spans, caught up to just before ``first_seq``."""
        spans = self._runs.get(run_id)
        if spans is None or spans.seq >= first_seq:
            spans = RunSpans()
        if spans.seq < first_seq - 1:
            for item in read(run_id, spans.seq, first_seq - 1 - spans.seq):
                self._feed(spans, item.seq, item.event, read, [])
        self._runs[run_id] = spans
        self._runs.move_to_end(run_id)
        while len(self._runs) > KEEP_RUNS:
            self._runs.popitem(last=False)
        return spans

    def _feed(
        self, spans: RunSpans, seq: int, event: AnyEvent, read: Reader, out: list[SpanRecord]
    ) -> None:
        if isinstance(event, RunCreated) and event.parent is not None:
            spans.parent_span = _delegating_attempt(event, read)
        out += spans.feed(seq, event)


def _delegating_attempt(created: RunCreated, read: Reader) -> int | None:
    """The span of the parent's attempt that started this child (its latest)."""
    assert created.parent is not None
    found = None
    for item in read(created.parent.parent, 0, None):
        event = item.event
        if isinstance(event, ChildRunStarted) and event.child == created.run_id:
            found = span_id_for(created.parent.parent, "attempt", event.step, event.attempt)
    return found
