"""The engine's store thread (``trestle.engines.store_thread``): calls run one at a time,
in the order made, from the event loop and from other threads alike; a failure reaches
its caller; a call cancelled before its turn is not made; after shutdown none is taken.
"""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from trestle.engines.store_thread import StoreThread


def test_calls_run_on_one_thread_in_the_order_made_and_return_their_values() -> None:
    io = StoreThread("test-store")
    seen: list[tuple[int, str]] = []

    def note(n: int) -> int:
        seen.append((n, threading.current_thread().name))
        return n * 2

    async def main() -> list[int]:
        return list(await asyncio.gather(*(io.call(note, n) for n in range(20))))

    try:
        assert asyncio.run(main()) == [n * 2 for n in range(20)]
        assert io.submit(note, 20).result(timeout=10) == 40  # from a thread off the loop
    finally:
        io.shutdown()
    assert [n for n, _ in seen] == list(range(21))
    assert {name for _, name in seen} == {"test-store"}


def test_a_failure_reaches_the_caller_as_raised() -> None:
    io = StoreThread("test-store")

    def fail(what: str) -> None:
        raise LookupError(what)

    try:
        with pytest.raises(LookupError, match="run 'r1'"):
            asyncio.run(io.call(fail, "run 'r1'"))
        with pytest.raises(LookupError, match="run 'r2'"):
            io.submit(fail, "run 'r2'").result(timeout=10)
    finally:
        io.shutdown()


def test_a_call_cancelled_before_its_turn_is_not_made() -> None:
    io = StoreThread("test-store")
    busy, release = threading.Event(), threading.Event()
    made: list[str] = []

    def hold() -> None:
        busy.set()
        release.wait(10)

    async def main() -> None:
        holding = asyncio.create_task(io.call(hold))
        await asyncio.to_thread(busy.wait, 10)
        waiting = asyncio.create_task(io.call(made.append, "withdrawn"))
        await asyncio.sleep(0)
        waiting.cancel()
        release.set()
        await holding
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await io.call(made.append, "after")

    try:
        asyncio.run(main())
    finally:
        io.shutdown()
    assert made == ["after"]


def test_shutdown_runs_what_is_queued_then_takes_no_more() -> None:
    io = StoreThread("test-store")
    made: list[int] = []
    futures = [io.submit(made.append, n) for n in range(5)]
    io.shutdown()
    assert made == [0, 1, 2, 3, 4] and all(f.done() for f in futures)
    with pytest.raises(RuntimeError, match="test-store: cannot take calls after shutdown"):
        io.submit(made.append, 5)
    io.shutdown()  # a second shutdown is harmless


def test_a_thread_never_used_is_never_started() -> None:
    before = {t.name for t in threading.enumerate()}
    io = StoreThread("test-store-unused")
    io.shutdown()
    assert "test-store-unused" not in before | {t.name for t in threading.enumerate()}


def test_a_call_raising_stop_iteration_fails_its_caller_rather_than_leaving_it_waiting() -> None:
    # fold() of an empty stream raises it; an asyncio future cannot hold it, and the
    # drive awaiting the call waited for ever (as it did through run_in_executor)
    io = StoreThread("test-store")

    def first_of(events: list[int]) -> int:
        return next(iter(events))

    async def main() -> int:
        return await asyncio.wait_for(io.call(first_of, []), timeout=60)  # a hang's guard

    try:
        with pytest.raises(RuntimeError, match="StopIteration") as raised:
            asyncio.run(main())
        assert isinstance(raised.value.__cause__, StopIteration)
        assert io.submit(first_of, [7]).result(timeout=10) == 7  # the thread goes on
    finally:
        io.shutdown()


def test_a_thread_whose_owner_is_dropped_without_shutdown_ends() -> None:
    io = StoreThread("test-store-dropped")
    assert io.submit(sum, [1, 2]).result(timeout=10) == 3
    (thread,) = [t for t in threading.enumerate() if t.name == "test-store-dropped"]
    del io
    gc.collect()
    thread.join(timeout=10)
    assert not thread.is_alive()
