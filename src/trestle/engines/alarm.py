"""What ends a drive's wait: an attempt or probe ending, a running step posting events
to record, a stop, or the time (a retry falling due, the next poll for requests).

The wait sleeps on one future, and each of these sets it directly: an attempt as its
coroutine ends, a post as it is queued. ``asyncio.wait`` over the attempts' tasks did
the same with a callback added to every task and removed again on every wait, and
woke the drive a turn of the event loop later than this (a task's done callbacks run
on the turn after it ends): a no-op step took seven turns of the loop, and takes six.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class Alarm:
    """One drive's wake-up. Make one per drive, on its event loop."""

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None

    def ring(self, *_: object) -> None:
        """End the current wait, if there is one (callable as a done callback)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def sleep(self, timeout: float) -> None:
        """Until :meth:`ring` or ``timeout`` seconds. Whatever rang before it began is
        for the caller to have looked at (a task already done)."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, self.ring)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def then_ring(self, work: Awaitable[T]) -> T:
        """``work``, ringing as it ends, however it ends: inside the task that runs it,
        so the drive wakes on the very turn of the loop the work ended on."""
        try:
            return await work
        finally:
            self.ring()
