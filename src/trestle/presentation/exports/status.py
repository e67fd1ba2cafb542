"""Whether a run's record is complete: how it last ended, or that it goes on."""

from __future__ import annotations

from collections.abc import Sequence

from trestle.core.events import RunFinished, RunResumed, RunStatus, StoredEvent


def run_status(events: Sequence[StoredEvent]) -> RunStatus | None:
    """How the run last ended, or None while it goes on (not finished, or resumed since
    it last finished)."""
    for stored in reversed(events):
        if isinstance(stored.event, RunFinished):
            return stored.event.status
        if isinstance(stored.event, RunResumed):
            return None
    return None
