"""A sleep that records how long it was asked to wait, and returns at once.

Inject it wherever Trestle takes a ``sleep`` (e.g. a provider's retry backoff) to
check waits without spending them.
"""

from __future__ import annotations


class RecordingSleep:
    """An awaitable ``sleep(seconds)`` that appends ``seconds`` to :attr:`calls`."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)

    @property
    def total(self) -> float:
        """Seconds asked for, in total."""
        return sum(self.calls)
