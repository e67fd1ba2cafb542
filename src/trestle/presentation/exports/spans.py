"""The spans a run's record makes, for ``otlp-json``: the same spans live tracing emits.

:func:`recorded_spans` feeds the events to :class:`trestle.telemetry.fold.RunSpans`, the
one mapping of events to spans, so an exported trace and a live one agree span for span
and id for id. A run that has not finished leaves spans open (its run, a running step,
attempt, tool call); they are ended at its last recorded event and marked
``trestle.unfinished``, so the export shows what is recorded so far.
"""

from __future__ import annotations

from collections.abc import Sequence

from trestle.core.events import StoredEvent
from trestle.telemetry.fold import RunSpans
from trestle.telemetry.spans import OpenSpan, SpanRecord


def recorded_spans(events: Sequence[StoredEvent]) -> list[SpanRecord]:
    """The run's spans, in the order they end (children before their parents)."""
    fold = RunSpans()
    spans: list[SpanRecord] = []
    for stored in events:
        spans.extend(fold.feed(stored.seq, stored.event))
    if fold.finished or not events:
        return spans
    at = events[-1].event.at
    still_open: list[OpenSpan] = [
        *fold.tools.values(),
        *(attempt.span for attempt in fold.attempts.values()),
        *fold.probes.values(),
        *fold.steps.values(),
        *([fold.phase] if fold.phase is not None else []),
        *([fold.run] if fold.run is not None else []),
    ]
    spans.extend(s.close(fold.trace_id, at, trestle__unfinished=True) for s in still_open)
    return spans
