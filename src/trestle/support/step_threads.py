"""Threads for a drive's blocking work: the ``python:`` steps' callables, file checks,
checkpoints. One thread per piece of work that may run at once, started as needed.

A ``ThreadPoolExecutor`` does this with a concurrent future per call, settled under a
lock and a condition, and a semaphore taken to decide whether to start a thread; every
``python:`` step crossed it once. Here a call is a queue put and a counter under one
lock (:meth:`StepThreads.start`), and the caller says how its outcome comes back (see
:func:`trestle.execution.actions.in_thread`): 68-74 us a round trip from an event loop
on the 2-vCPU benchmark machine, against 107-108 us through the executor in the same
run. ``submit`` keeps the executor's interface for callers that want a future.

Work queued but not begun when the threads are shut down with ``cancel_futures`` is
dropped, and whoever gave it is told (``dropped``), as an executor cancels its
futures. A thread still at work when they are shut down finishes that work first (a
Python callable cannot be stopped). The threads are daemons: the interpreter does not
wait for one at exit, where it waited for an executor's. Only work the drive gave up
on is still running then (a callable past its timeout, or one a stop did not see end
within ``FINISH_WAIT``): its attempt is recorded as failed or stopped, the drive's
lease is released, and a process left running it could race the next driver.
"""

from __future__ import annotations

import queue
import sys
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

Job = tuple[Callable[[], None], Callable[[], object] | None]  # the work, and its drop


class _Shared:
    """What the threads share with the pool: its queue and how busy it is. The
    threads hold this, not the pool, so a pool dropped without a shutdown ends them
    once it is collected."""

    def __init__(self) -> None:
        self.calls: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.busy = 0  # work queued or running

    def work(self) -> None:
        while (job := self.calls.get()) is not None:
            try:
                job[0]()
            except BaseException:  # against start's contract: said, and the thread goes on
                sys.excepthook(*sys.exc_info())
            finally:
                del job  # what it held (its caller's objects) is not kept while it waits
                with self.lock:
                    self.busy -= 1  # else the pool would count a thread that is gone


class StepThreads(Executor):
    """Up to ``size`` threads named ``name-N``, each started when work arrives and no
    thread is free."""

    def __init__(self, size: int, name: str) -> None:
        if size < 1:
            raise ValueError(f"{name}: at least one thread, not {size}")
        self._size = size
        self._name = name
        self._shared = _Shared()
        self._threads: list[threading.Thread] = []
        self._closed = False
        weakref.finalize(self, _end, self._shared, self._threads)

    def start(self, job: Callable[[], None], dropped: Callable[[], object] | None = None) -> None:
        """Run ``job()`` on a thread; ``dropped()`` instead if the threads are shut
        down (``cancel_futures``) before it begins. ``job`` must not raise: what it
        does with its outcome is its own."""
        shared = self._shared
        with shared.lock:
            if self._closed:
                raise RuntimeError(f"{self._name}: cannot take work after shutdown")
            shared.busy += 1
            if shared.busy > len(self._threads) and len(self._threads) < self._size:
                thread = threading.Thread(
                    target=shared.work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
            shared.calls.put((job, dropped))

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return  # cancelled before it began
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # the caller's to handle, as an executor does
                future.set_exception(exc)

        self.start(job, future.cancel)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more work; drop what has not begun if ``cancel_futures``; end each
        thread once it is free; wait for them if ``wait``."""
        shared = self._shared
        with shared.lock:
            if self._closed:
                return
            self._closed = True
        if cancel_futures:
            while True:
                try:
                    job = shared.calls.get_nowait()
                except queue.Empty:
                    break
                if job is not None and job[1] is not None:
                    job[1]()
        _end(shared, self._threads)
        if wait:
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join()


def _end(shared: _Shared, threads: list[threading.Thread]) -> None:
    """One end-of-work mark per thread: each thread takes one once its work is done."""
    for _ in threads:
        shared.calls.put(None)
