"""The outbox between a running step and its engine: the events a step asks to record,
committed in the engine's next batch, each step then told their seqs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from trestle.core.events import (
    AnyEvent,
)

Ack = tuple[asyncio.Future[list[int]], int, int]  # who waits, offset in inbound, count
# how often a step performed for another driver looks at that driver's record again,
# while it waits for the run to move (see Outbox.until)
FOLLOW_EVERY = 0.25


class Outbox:
    """Events a running step asks to record: the engine commits them in its next batch
    and then tells the step their seqs."""

    def __init__(
        self,
        forward: Callable[[Sequence[AnyEvent]], Awaitable[list[int]]] | None = None,
        *,
        posted: Callable[[], None] = lambda: None,
        follow: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._forward = forward  # another driver records them (see perform_for)
        self._follow = follow  # reads what that driver recorded since, into the state
        self._posted = posted  # wakes the engine: something waits for a commit
        self._moved = asyncio.Event()  # set by each commit, for who waits in until()
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

    def committed(self) -> None:
        """The engine committed a batch and applied it: who waits in :meth:`until`
        looks again."""
        self._moved.set()

    async def until(self, ready: Callable[[], bool]) -> None:
        """Wait until ``ready()`` holds of the run's state, looked at again after each
        commit; for a step performed for another driver, after each reading of what
        that driver recorded (every ``FOLLOW_EVERY`` seconds)."""
        while not ready():
            if self._forward is not None:
                await asyncio.sleep(FOLLOW_EVERY)
                if self._follow is not None:
                    await self._follow()
            else:
                self._moved.clear()
                await self._moved.wait()
