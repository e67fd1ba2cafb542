"""A blocking call's outcome handed from a worker thread back to an asyncio loop.

``call_soon_threadsafe`` and a plain future, rather than ``run_in_executor``'s asyncio
future chained to a concurrent one (a lock and a condition each time): the engine's
store thread and a step's thread both cross this way once per step.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any


def outcome_of(fn: Callable[..., Any], *args: Any) -> tuple[Any, bool]:
    """``fn(*args)``'s result and True, or what it raised and False.

    A StopIteration becomes a RuntimeError (from it): an asyncio future refuses one
    (a TypeError in the loop's callback), which would leave the caller waiting for
    ever; a generator's frame turns it the same way."""
    try:
        return fn(*args), True
    except StopIteration as exc:
        error = RuntimeError("StopIteration escaped the call (next() of an exhausted iterator?)")
        error.__cause__ = exc
        return error, False
    except BaseException as exc:  # the caller's to handle, as run_in_executor does
        return exc, False


def hand_back(
    loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[Any], outcome: Any, ok: bool
) -> None:
    """Settle ``waiter`` with ``outcome`` (a result if ``ok``, else an exception) on
    ``loop``, from any thread; nothing if the loop has closed (nobody is left to tell)
    or the waiter was cancelled meanwhile."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_settle, waiter, outcome, ok)


def _settle(waiter: asyncio.Future[Any], outcome: Any, ok: bool) -> None:
    if waiter.cancelled():
        return
    if ok:
        waiter.set_result(outcome)
    else:
        waiter.set_exception(outcome)
