"""``trestle.execution.actions.in_thread``: blocking work on a drive's step threads
(``trestle.support.step_threads``), its outcome handed back to the event loop. As with
``run_in_executor``: the value or the exception reaches the caller, a caller cancelled
before the work began withdraws it, and work the pool drops unbegun (shut down with
``cancel_futures``) cancels its caller rather than leave it waiting for ever."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from trestle.execution.actions import in_thread
from trestle.support.step_threads import StepThreads


def pools(size: int) -> StepThreads:
    return StepThreads(size, "test-step")


def test_the_value_and_the_failure_reach_the_caller() -> None:
    def double(n: int) -> int:
        return 2 * n

    def refuse(why: str) -> None:
        raise PermissionError(why)

    async def main() -> None:
        with pools(2) as pool:
            assert await in_thread(pool, double, 21) == 42
            with pytest.raises(PermissionError, match="no notes file"):
                await in_thread(pool, refuse, "no notes file")
            assert await in_thread(None, double, 4) == 8  # asyncio's own pool

    asyncio.run(main())


def test_a_stop_iteration_fails_the_caller_rather_than_leave_it_waiting() -> None:
    """A step's callable that raises StopIteration (``next()`` on an empty iterator):
    an asyncio future refuses that exception, and the caller waited for ever."""

    def first_of(items: list[int]) -> int:
        return next(iter(items))

    async def main() -> None:
        with pools(1) as pool:
            with pytest.raises(RuntimeError, match="StopIteration") as raised:
                await asyncio.wait_for(in_thread(pool, first_of, []), 10)
            assert isinstance(raised.value.__cause__, StopIteration)

    asyncio.run(main())


def test_a_caller_cancelled_before_its_work_began_withdraws_it() -> None:
    busy, release = threading.Event(), threading.Event()
    made: list[str] = []

    def hold() -> None:
        busy.set()
        release.wait(10)

    async def main() -> None:
        with pools(1) as pool:
            holding = asyncio.create_task(in_thread(pool, hold))
            await asyncio.to_thread(busy.wait, 10)
            queued = asyncio.create_task(in_thread(pool, made.append, "withdrawn"))
            await asyncio.sleep(0)
            queued.cancel()
            release.set()
            await holding
            with pytest.raises(asyncio.CancelledError):
                await queued
            await in_thread(pool, made.append, "after")

    asyncio.run(main())
    assert made == ["after"]


def test_work_the_pool_drops_unbegun_cancels_its_caller() -> None:
    busy, release = threading.Event(), threading.Event()

    def hold() -> None:
        busy.set()
        release.wait(10)

    async def main() -> None:
        pool = pools(1)
        holding = asyncio.create_task(in_thread(pool, hold))
        await asyncio.to_thread(busy.wait, 10)
        queued = asyncio.create_task(in_thread(pool, print, "never"))
        await asyncio.sleep(0)
        pool.shutdown(wait=False, cancel_futures=True)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(queued, 10)
        release.set()
        await holding

    asyncio.run(main())


def test_step_threads_start_a_thread_only_when_none_is_free_and_never_more_than_asked() -> None:
    release = threading.Event()
    seen: list[str] = []
    pool = StepThreads(2, "test-step")
    try:
        for _ in range(3):  # one at a time: the one thread is free each time
            pool.submit(lambda: seen.append(threading.current_thread().name)).result(10)
        assert set(seen) == {"test-step-0"}
        held = [pool.submit(release.wait, 10) for _ in range(2)]
        queued = pool.submit(lambda: threading.current_thread().name)
        assert not queued.done()  # both threads are held: the third call waits its turn
        assert sorted(t.name for t in threading.enumerate() if t.name.startswith("test-")) == [
            "test-step-0",
            "test-step-1",
        ]
        release.set()
        assert [f.result(10) for f in held] == [True, True]
        assert queued.result(10).startswith("test-step-")
    finally:
        release.set()
        pool.shutdown(wait=True)
    assert not [t for t in threading.enumerate() if t.name.startswith("test-step-")]
    with pytest.raises(RuntimeError, match="test-step: cannot take work after shutdown"):
        pool.submit(print)


def test_step_threads_drop_what_has_not_begun_and_tell_whoever_gave_it() -> None:
    busy, release = threading.Event(), threading.Event()
    dropped: list[str] = []
    pool = StepThreads(1, "test-step")

    def hold() -> None:
        busy.set()
        release.wait(10)

    pool.start(hold)
    busy.wait(10)
    pool.start(lambda: dropped.append("ran"), lambda: dropped.append("dropped"))
    future = pool.submit(print, "never")
    pool.shutdown(wait=False, cancel_futures=True)
    assert dropped == ["dropped"]
    assert future.cancelled()
    release.set()


def test_a_job_that_raises_is_reported_and_its_thread_takes_the_next(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``start``'s jobs must not raise; one that does anyway is printed on stderr, and
    the pool's one thread still runs what comes after it (it was counted busy for
    ever, and the next job waited for a thread that never came)."""
    pool = StepThreads(1, "test-step")
    try:

        def broken() -> None:
            raise ValueError("a job against the contract")

        pool.start(broken)
        assert pool.submit(lambda: "next").result(10) == "next"
    finally:
        pool.shutdown(wait=True)
    assert "ValueError: a job against the contract" in capsys.readouterr().err


def test_a_python_step_raising_stop_iteration_fails_and_the_run_ends(tmp_path: Path) -> None:
    """Through the command a user runs: the run used to wait for ever."""
    (tmp_path / "steps.py").write_text("def first(ctx):\n    return next(iter([]))\n")
    (tmp_path / "plan.yaml").write_text(
        "goal: take the first item\nsteps:\n  - id: first\n    python: steps:first\n"
    )
    ran = _run_plan(tmp_path, timeout=120)
    flat = " ".join(ran.stdout.split())
    assert "'first' failed after 1 attempt: RuntimeError: StopIteration escaped" in flat, (
        ran.stdout + ran.stderr
    )


def test_a_python_step_past_its_timeout_does_not_hold_the_driver_at_exit(tmp_path: Path) -> None:
    """The callable cannot be stopped: the attempt fails at its timeout and the driver
    exits with the run's answer, ending the callable with it. Through an executor's
    threads, the interpreter waited for the callable at exit (here 30 s), which then
    did its work after the run had said it failed."""
    (tmp_path / "steps.py").write_text(
        "import time\n"
        "def slow(ctx):\n"
        "    time.sleep(30)\n"
        "    open('late.txt', 'w').write('after the timeout')\n"
    )
    (tmp_path / "plan.yaml").write_text(
        "goal: outlast the timeout\nsteps:\n"
        "  - id: slow\n    python: steps:slow\n    timeout: 0.5\n    retries: 0\n"
    )
    ran = _run_plan(tmp_path, timeout=20)  # not the 30 s the callable would take
    assert ran.returncode == 3, ran.stdout + ran.stderr
    said = " ".join(ran.stdout.split())
    assert "timed out after 0.5s; the callable cannot be stopped" in said  # said at run time
    assert "the step's next attempt in that process waits for it to return" in said
    assert not (tmp_path / "late.txt").exists()


def _run_plan(work: Path, *, timeout: float) -> subprocess.CompletedProcess[str]:
    """``trestle run plan.yaml`` in ``work``, as a user starts it (a fresh process)."""
    return subprocess.run(
        [sys.executable, "-m", "trestle", "run", "plan.yaml", "--store", "s.db", "--no-live"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
