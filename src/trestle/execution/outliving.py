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
    """One call of a sync callable, run by a step thread, which says whether it is
    running. A call its attempt gave up before it began is withdrawn, never begun: the
    lock makes beginning and withdrawing one or the other."""

    __slots__ = ("_fn", "_lock", "_state")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self._state: Literal["new", "running", "returned", "withdrawn"] = "new"

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

    def left_running(self, key: Key) -> None:
        """Its attempt has ended (returned, timed out or cancelled): if the call still
        runs, remember it for the next call under ``key``; if it never began, it never
        will."""
        with self._lock:
            if self._state == "new":
                self._state = "withdrawn"
            if self._state != "running":
                return
        for done in [k for k, call in _left_running.items() if not call.running]:
            del _left_running[done]
        _left_running[key] = self


async def after_earlier(key: Key) -> None:
    """Return once no earlier call under ``key`` is still running (at once if none)."""
    earlier = _left_running.get(key)
    if earlier is None:
        return
    while earlier.running:
        await asyncio.sleep(POLL)
    if _left_running.get(key) is earlier:
        del _left_running[key]
