"""Values worked out once per turn of the running event loop, for everything asking in it.

A wide fan-out's steps begin in one turn of the loop: each builds its command's sandbox
from what it reads of the filesystem, one after another on the loop's thread, before
any of them has started. Read once for all of them, the reading is as fresh for each as
its own would have been. A turn runs only callbacks queued before it began (what
another thread or the kernel reports meanwhile waits for the next), so nothing a
callback of the turn can know is newer than a reading made during it. The value is let
go by a callback queued as it is made: in the next turn, only what was queued before
that (and so knew nothing newer) is still served it. After that the next caller reads
again, as does a caller with no running loop. (Other processes may change what was read
meanwhile, as they may between any reading and its use: a caller guards that as it
would without sharing.)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

_TABLE_LIMIT = 64  # loops with a value held; past it, those of closed loops are let go


class ThisTurn(Generic[V]):
    """What :meth:`get` made for a key in the running loop's current turn."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # loops on other threads ask too (a worker's)
        self._held: dict[asyncio.AbstractEventLoop, dict[Hashable, V]] = {}

    def get(self, key: Hashable, make: Callable[[], V]) -> V:
        """``make()``, or what it gave for ``key`` earlier in this turn of the loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return make()
        with self._lock:
            turn = self._held.get(loop)
            if turn is not None and key in turn:
                return turn[key]
        value = make()
        with self._lock:
            if loop not in self._held:
                # let go at the start of the next turn: what is ready now runs then
                loop.call_soon(self._end_turn, loop)
                self._let_go_of_closed()
            self._held.setdefault(loop, {})[key] = value
        return value

    def _end_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._held.pop(loop, None)

    def _let_go_of_closed(self) -> None:
        # a loop closed before its next turn never ends this one: nothing is served
        # from it again (it cannot run), and past the limit it is dropped
        if len(self._held) >= _TABLE_LIMIT:
            for loop in [loop for loop in self._held if loop.is_closed()]:
                del self._held[loop]
