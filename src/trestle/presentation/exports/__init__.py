"""A run's record in formats other tools open: ``trestle export RUN --format ...``.

- ``jsonl`` (:mod:`.jsonl`): every stored event, one JSON object a line, lossless;
- ``swe-agent`` (:mod:`.swe_agent`): a SWE-agent trajectory (``.traj``), for SWE-agent's
  inspectors and ``trestle monitors eval``;
- ``otlp-json`` (:mod:`.otlp`): the run's spans as an OTLP/JSON trace export request.

Pure: the events are handed in and the text handed back. The spans are
:mod:`trestle.telemetry`'s, made from the events as live tracing makes them
(:mod:`.spans`); :mod:`.otlp` encodes them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

from trestle.core.events import StoredEvent
from trestle.presentation.exports.jsonl import event_lines, read_event_lines
from trestle.presentation.exports.otlp import SpanLike, otlp_request
from trestle.presentation.exports.spans import recorded_spans
from trestle.presentation.exports.status import run_status
from trestle.presentation.exports.swe_agent import command_of, swe_agent_trajectory
from trestle.presentation.wording import shown_json

Format = Literal["jsonl", "swe-agent", "otlp-json"]
FORMATS: tuple[Format, ...] = ("jsonl", "swe-agent", "otlp-json")

__all__ = [
    "FORMATS",
    "Format",
    "SpanLike",
    "command_of",
    "event_lines",
    "export_text",
    "otlp_request",
    "read_event_lines",
    "recorded_spans",
    "run_status",
    "swe_agent_trajectory",
]


def export_text(fmt: str, events: Sequence[StoredEvent]) -> str:
    """The run whose stored events these are, in format ``fmt`` (one of
    :data:`FORMATS`), as the text of a file, safe to print (:func:`shown_json`).

    Raises:
        ValueError: ``fmt`` is not one of :data:`FORMATS`, or the events do not begin
            with ``run_created``.
    """
    if fmt == "jsonl":
        return shown_json(event_lines(events))
    if fmt == "swe-agent":
        text = json.dumps(swe_agent_trajectory(events), indent=2, ensure_ascii=False)
        return shown_json(text) + "\n"
    if fmt == "otlp-json":
        text = json.dumps(otlp_request(recorded_spans(events)), ensure_ascii=False)
        return shown_json(text) + "\n"
    raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
