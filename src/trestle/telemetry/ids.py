"""Trace and span ids derived from a run's record, so every process agrees on them.

A run tree's trace id comes from its root run's id, and each span's id from the run,
the kind of span and what names it (a step, an attempt, a call): a resumed driver, a
child run driven elsewhere and every Temporal worker that commits a batch of the run
continue the same trace, and a span is named the same whoever emits it.
"""

from __future__ import annotations

import hashlib

_SPACE = b"trestle-otel/1\0"


def _digest(parts: tuple[str | int, ...]) -> bytes:
    text = "\0".join(str(part) for part in parts).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(_SPACE + text, digest_size=24).digest()


def trace_id_for(root_run: str) -> int:
    """The 128-bit trace id of the run tree whose root is ``root_run``."""
    value = int.from_bytes(_digest(("trace", root_run))[:16], "big")
    return value or 1  # zero is the invalid trace id


def span_id_for(run_id: str, *parts: str | int) -> int:
    """The 64-bit id of the span of ``run_id`` named by ``parts``."""
    value = int.from_bytes(_digest(("span", run_id, *parts))[16:], "big")
    return value or 1  # zero is the invalid span id
