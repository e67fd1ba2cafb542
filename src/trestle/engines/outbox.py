"""The outbox between a running step and its engine: the events a step asks to record,
committed in the engine's next batch, each step then told their seqs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from trestle.core.events import (
    AnyEvent,
)

Ack = tuple[asyncio.Future[list[int]], int, int]  # who waits, offset in inbound, count


class Outbox:
    """Events a running step asks to record: the engine commits them in its next batch
    and then tells the step their seqs."""

    def __init__(
        self,
        forward: Callable[[Sequence[AnyEvent]], Awaitable[list[int]]] | None = None,
        *,
        posted: Callable[[], None] = lambda: None,
    ) -> None:
        self._forward = forward  # another driver records them (see perform_for)
        self._posted = posted  # wakes the engine: something waits for a commit
        self._items: list[tuple[list[AnyEvent], asyncio.Future[list[int]]]] = []
        self._notes: list[AnyEvent] = []

    @property
    def waiting(self) -> bool:
        return bool(self._items)

    @property
    def commits_notes(self) -> bool:
        """Whether a note reaches a commit: a forwarding outbox's never does."""
        return self._forward is None

    def note(self, event: AnyEvent) -> None:
        """Record ``event`` with the next commit, without waking the engine for it."""
        self._notes.append(event)

    def withdraw(self, event: AnyEvent) -> None:
        """Take back a note not yet committed (it no longer matters)."""
        self._notes = [e for e in self._notes if e is not event]

    async def record(self, events: Sequence[AnyEvent]) -> list[int]:
        if not events:
            return []
        if self._forward is not None:
            return await self._forward(events)
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._items.append((list(events), future))
        self._posted()
        return await future

    def drain(self, inbound: list[AnyEvent]) -> tuple[list[AnyEvent], list[Ack]]:
        """``inbound`` followed by every posted event, and who waits for which."""
        acks: list[Ack] = []
        events = [*self._notes, *inbound]
        self._notes.clear()
        for posted, future in self._items:
            acks.append((future, len(events), len(posted)))
            events += posted
        self._items.clear()
        return events, acks
