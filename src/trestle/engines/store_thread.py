"""The engine's store thread: blocking store calls, one at a time, off the event loop.

Every plan step crosses to it and back once (its commit), so the crossing is kept
cheap: a queue to the thread and ``call_soon_threadsafe`` back to the loop. Through a
``ThreadPoolExecutor`` and ``run_in_executor``, each call built a concurrent future
chained to an asyncio one, with a lock and a condition of its own: 26-43 us a round
trip on the 2-vCPU benchmark machine, against 12-23 us this way.

Calls run in the order they were made, the loop's and other threads' alike (the
telemetry and notifier threads read the store through it), so a read made after a
commit sees it.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, ParamSpec, TypeVar

from trestle.support.handback import hand_back, outcome_of

P = ParamSpec("P")
T = TypeVar("T")


class _Call:
    """One queued call and where its outcome goes: an asyncio future on ``loop``, or a
    concurrent future (a caller on another thread)."""

    __slots__ = ("fn", "future", "loop", "waiter")

    def __init__(
        self,
        fn: Callable[[], Any],
        loop: asyncio.AbstractEventLoop | None = None,
        waiter: asyncio.Future[Any] | None = None,
        future: Future[Any] | None = None,
    ) -> None:
        self.fn = fn
        self.loop = loop
        self.waiter = waiter
        self.future = future

    def run(self) -> None:
        if self.future is not None:
            if self.future.set_running_or_notify_cancel():
                try:
                    self.future.set_result(self.fn())
                except BaseException as exc:  # the caller's to handle, as an executor does
                    self.future.set_exception(exc)
            return
        assert self.loop is not None and self.waiter is not None
        # a caller cancelled before its turn came does not want it done (as with an
        # executor, whose queued work a cancel withdraws); reading the flag from this
        # thread is safe: once cancelled, a future stays so
        if self.waiter.cancelled():
            return
        hand_back(self.loop, self.waiter, *outcome_of(self.fn))


class StoreThread:
    """One thread that runs the calls given to it in order; started on the first.

    It is a daemon thread, so an engine never closed does not keep its process from
    exiting; every call the engine makes is awaited before its drive ends, so nothing
    of it is left half done at exit but what a crash would leave (the store's
    transactions are atomic). The thread holds only the queue, not this object: one
    dropped without a shutdown ends its thread once it is collected, as an executor's
    does.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on the thread, awaited from the event loop."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        self._put(_Call(lambda: fn(*args, **kwargs), loop=loop, waiter=waiter))
        return await waiter

    def submit(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """``fn(*args, **kwargs)`` on the thread, for a caller on another thread."""
        future: Future[T] = Future()
        self._put(_Call(lambda: fn(*args, **kwargs), future=future))
        return future

    def shutdown(self) -> None:
        """Run what is queued, then end the thread; no call is taken after this."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            self._calls.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _put(self, call: _Call) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name}: cannot take calls after shutdown")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=_work, args=(self._calls,), name=self._name, daemon=True
                )
                self._thread.start()
                weakref.finalize(self, self._calls.put, None)
            self._calls.put(call)


def _work(calls: queue.SimpleQueue[_Call | None]) -> None:
    while (call := calls.get()) is not None:
        call.run()
        del call  # what it held (its caller's objects) is not kept while the queue waits
