"""Sync callables that outlive their attempt, so that none is called beside itself.

Python cannot stop a thread. When a ``python:`` step's sync callable passes its timeout,
or its attempt is cancelled, the attempt ends and the callable runs on in its thread
until it returns (or its process exits). The step's next attempt in this process would
call it again beside the first: two calls of one side effect at once. So a call left
running is remembered here, by run, step and callable, and the next call of it waits
for it to return first, within that call's own timeout. Only this process can know: on
Temporal, an attempt another worker takes does not wait (the timed-out attempt's error
says so).

The wait polls: the earlier call may have begun on another event loop (a library caller
driving the run again), and a poll is cancelled with its attempt, where a thread
blocked on an event would hold the interpreter's exit.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, Literal

Key = tuple[str, str, str]  # run, step, the callable's reference
POLL = 0.02  # seconds between looks at a call still running

_left_running: dict[Key, Call] = {}


class Call:
    """One call of a sync callable, under ``key``, run by a step thread, which says
    whether it is running. A call its attempt gave up before it began is withdrawn,
    never begun: the lock makes beginning and withdrawing one or the other."""

    __slots__ = ("_fn", "_key", "_lock", "_state", "gave_up_waiting")

    def __init__(self, fn: Callable[..., Any], key: Key) -> None:
        self._fn = fn
        self._key = key
        self._lock = threading.Lock()
        self._state: Literal["new", "running", "returned", "withdrawn"] = "new"
        self.gave_up_waiting = False  # its attempt ended waiting for an earlier call

    def __call__(self, *args: Any) -> Any:
        with self._lock:
            if self._state == "withdrawn":
                return None
            self._state = "running"
        try:
            return self._fn(*args)
        finally:
            self._state = "returned"

    @property
    def running(self) -> bool:
        return self._state == "running"

    def follows_one_running(self) -> bool:
        """An earlier call under its key may still run (a look at a dict: every call
        asks)."""
        return self._key in _left_running

    async def after_earlier(self) -> None:
        """Return once no earlier call under its key is still running."""
        earlier = _left_running.get(self._key)
        if earlier is None:
            return
        try:
            while earlier.running:
                await asyncio.sleep(POLL)
        except asyncio.CancelledError:
            self.gave_up_waiting = True
            raise
        if _left_running.get(self._key) is earlier:
            del _left_running[self._key]

    def ended(self) -> None:
        """Its attempt has ended (returned, timed out or cancelled): if the call still
        runs, remember it for the next call under its key; if it never began, it never
        will."""
        with self._lock:
            if self._state == "new":
                self._state = "withdrawn"
            if self._state != "running":
                return
        for done in [k for k, call in list(_left_running.items()) if not call.running]:
            del _left_running[done]
        _left_running[self._key] = self
