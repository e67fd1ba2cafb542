"""The drive's wake-up (``trestle.engines.alarm``): a wait ends on a ring, on its time,
and as any work wrapped by ``then_ring`` ends, however it ends."""

from __future__ import annotations

import asyncio

import pytest

from trestle.engines.alarm import Alarm


def test_a_ring_ends_the_wait_and_the_time_ends_one_nobody_rings() -> None:
    async def scenario() -> tuple[float, float]:
        alarm, loop = Alarm(), asyncio.get_running_loop()
        started = loop.time()
        loop.call_later(0.01, alarm.ring)
        await alarm.sleep(30)
        rung = loop.time() - started
        started = loop.time()
        await alarm.sleep(0.05)
        return rung, loop.time() - started

    rung, timed_out = asyncio.run(scenario())
    assert rung < 5
    assert 0.04 < timed_out < 5


@pytest.mark.parametrize("ending", ["returns", "raises", "cancelled"])
def test_work_wrapped_by_then_ring_wakes_the_wait_however_it_ends(ending: str) -> None:
    async def scenario() -> bool:
        alarm, gate = Alarm(), asyncio.Event()

        async def work() -> str:
            await gate.wait()
            if ending == "raises":
                raise ValueError("the step's error")
            return "done"

        task = asyncio.create_task(alarm.then_ring(work()))
        sleeping = asyncio.create_task(alarm.sleep(30))
        await asyncio.sleep(0)  # both begin waiting
        if ending == "cancelled":
            task.cancel()
        else:
            gate.set()
        await asyncio.wait_for(sleeping, 5)
        # the wait ended on the turn the work ended: the task is done by the time it wakes
        done = task.done()
        await asyncio.gather(task, return_exceptions=True)
        return done

    assert asyncio.run(scenario())


def test_a_ring_with_nobody_waiting_is_not_kept_for_the_next_wait() -> None:
    async def scenario() -> float:
        alarm, loop = Alarm(), asyncio.get_running_loop()
        alarm.ring()
        started = loop.time()
        await alarm.sleep(0.05)
        return loop.time() - started

    assert asyncio.run(scenario()) >= 0.04
