"""Words for states and the small text cells every view shares (the CLI's tables, the
dashboard's pages): one name per state, times, clipped text. No event types here: the
listing of runs uses it and must start as fast as ``--help``."""

from __future__ import annotations

import time

# One name per state wherever a person reads it (JSON keeps the identifiers): a step
# that has not started is "not started" in the live view, the listing and the report.
SHOWN_AS = {"pending": "not started", "never_started": "not started"}


def shown(status: str) -> str:
    """A status or report category in words: ``awaiting_approval`` is "awaiting
    approval" everywhere it is printed."""
    return SHOWN_AS.get(status, status.replace("_", " "))


def clock(at: float, fmt: str) -> str:
    return time.strftime(fmt, time.localtime(at))


def clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
