"""A command's process, started both ways the driver starts one: watched through a pidfd,
and by asyncio's own subprocess where there are none. Real processes throughout."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from trestle.execution.child import Child, _pidfds, spawn_asyncio, spawn_watched
from trestle.execution.processes import die_with_parent

Start = Callable[..., Coroutine[Any, Any, Child]]
ENV = {"PATH": "/usr/bin:/bin"}


@pytest.fixture(params=["pidfd", "asyncio"])
def start(request: pytest.FixtureRequest) -> Start:
    if request.param == "asyncio":
        return spawn_asyncio
    if not _pidfds():
        pytest.skip("this kernel gives no pidfds")
    return spawn_watched


def test_output_and_exit_code_arrive_and_stderr_shares_the_pipe(
    start: Start, tmp_path: Path
) -> None:
    async def main() -> tuple[bytes, int, int | None]:
        script = "echo out; echo err >&2; pwd; exit 3"
        child = await start(["/bin/sh", "-c", script], cwd=tmp_path, env=ENV)
        try:
            assert child.stdout is not None
            out = await child.stdout.read()
            return out, await child.wait(), child.returncode
        finally:
            child.close()

    out, code, returncode = asyncio.run(main())
    assert out.decode().split() == ["out", "err", str(tmp_path)]
    assert code == returncode == 3


def test_a_wait_given_up_on_leaves_the_exit_to_a_later_wait(start: Start, tmp_path: Path) -> None:
    async def main() -> int:
        child = await start(["/bin/sh", "-c", "sleep 30"], cwd=tmp_path, env=ENV)
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(child.wait(), 0.05)
            os.killpg(child.pid, signal.SIGKILL)  # its own session: the group is its own
            return await child.wait()
        finally:
            child.close()

    assert asyncio.run(main()) == -signal.SIGKILL


def test_a_program_that_does_not_exist_is_an_os_error(start: Start, tmp_path: Path) -> None:
    with pytest.raises(OSError):
        asyncio.run(start(["/nonexistent/program"], cwd=tmp_path, env=ENV))


def test_a_leader_is_reaped_while_a_process_that_left_its_group_holds_the_pipe(
    tmp_path: Path,
) -> None:
    # asyncio's own (3.11) waits for the pipe to close as well: not this one
    if not _pidfds():
        pytest.skip("this kernel gives no pidfds")

    async def main() -> tuple[int, int]:
        script = "setsid sleep 30 & echo $!; exec sleep 30"
        child = await spawn_watched(["/bin/sh", "-c", script], cwd=tmp_path, env=ENV)
        try:
            assert child.stdout is not None
            escaped = int((await child.stdout.readline()).decode())
            os.killpg(child.pid, signal.SIGTERM)
            return await child.wait(), escaped
        finally:
            child.close()

    code, escaped = asyncio.run(main())
    os.kill(escaped, signal.SIGKILL)
    assert code == -signal.SIGTERM


def test_a_child_let_go_of_while_it_runs_is_killed(start: Start, tmp_path: Path) -> None:
    async def main() -> int:
        child = await start(["/bin/sh", "-c", "sleep 30"], cwd=tmp_path, env=ENV)
        child.close()  # as after an error before its outcome was read
        return await child.wait()

    assert asyncio.run(main()) == -signal.SIGKILL


# --- a watched command started beside another is started on a thread kept for starts ---


def _needs_pidfds() -> None:
    if not _pidfds():
        pytest.skip("this kernel gives no pidfds")


@pytest.fixture
def slow_starts(monkeypatch: pytest.MonkeyPatch) -> list[threading.Thread]:
    """Every process start held 0.3 s before it is made (as a start waiting for its
    exec on a busy machine), and the threads that made them."""
    made = subprocess.Popen.__init__
    threads: list[threading.Thread] = []

    def slow(popen: Any, *args: Any, **kwargs: Any) -> None:
        threads.append(threading.current_thread())
        time.sleep(0.3)
        made(popen, *args, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", slow)
    return threads


async def _beside(cwd: Path) -> Child:
    """A command left running, so that the next start is made beside it."""
    return await spawn_watched(["/bin/sleep", "30"], cwd=cwd, env=ENV)


async def _end(child: Child) -> None:
    child.close()
    await child.wait()


def test_the_loop_goes_on_while_a_command_starts_beside_another(
    tmp_path: Path, slow_starts: list[threading.Thread]
) -> None:
    # made on the loop's thread, a start held it until the exec: a width-32 fan-out's
    # starts waited on one another, and the loop did nothing else meanwhile
    _needs_pidfds()

    async def main() -> tuple[int, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        running = await _beside(tmp_path)  # alone: made on the loop's thread
        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)
        child = await spawn_watched(["/bin/true"], cwd=tmp_path, env=ENV)
        during = ticks
        ticker.cancel()
        try:
            return during, await child.wait()
        finally:
            child.close()
            await _end(running)

    during, code = asyncio.run(main())
    assert code == 0
    assert during >= 5, f"the loop ticked {during} times in a 0.3 s start"
    loop_thread, beside = slow_starts
    assert loop_thread is threading.main_thread() and beside is not loop_thread


def test_a_start_by_fork_stays_on_the_loops_thread(
    tmp_path: Path, slow_starts: list[threading.Thread]
) -> None:
    # a preexec makes it a fork: beside the loop's own work, a fan-out of them cost the
    # driver a quarter more CPU, so it is made where it always was
    _needs_pidfds()

    async def main() -> None:
        running = await _beside(tmp_path)
        child = await spawn_watched(["/bin/true"], cwd=tmp_path, env=ENV, preexec=die_with_parent())
        await _end(child)
        await _end(running)

    asyncio.run(main())
    assert slow_starts == [threading.main_thread()] * 2


def test_a_caller_cancelled_as_its_command_starts_leaves_nothing_running(
    tmp_path: Path, slow_starts: list[threading.Thread]
) -> None:
    _needs_pidfds()
    mark = f"child-start-{os.getpid()}"
    env = {**ENV, "CHILD_MARK": mark}

    async def main() -> None:
        running = await _beside(tmp_path)
        try:
            starting = asyncio.create_task(
                spawn_watched(["/bin/sleep", "30"], cwd=tmp_path, env=env)
            )
            await asyncio.sleep(0.1)  # the start is under way on its thread
            starting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await starting
        finally:
            await _end(running)

    asyncio.run(main())
    # the start was waited for, and what it started killed and reaped, before the
    # cancellation reached the caller
    assert _marked(mark) == []


def _marked(mark: str) -> list[int]:
    """Live processes whose environment holds ``CHILD_MARK=<mark>`` (zombies excluded)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            environ = Path(entry.path, "environ").read_bytes()
        except OSError:
            continue
        if f"CHILD_MARK={mark}".encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


# a process that asks for the parent-death signal (PR_SET_PDEATHSIG, SIGKILL), says so,
# then becomes ``sleep 30``: the signal outlives the exec
ARMED_SLEEP = [
    sys.executable,
    "-c",
    "import ctypes, os; ctypes.CDLL(None).prctl(1, 9, 0, 0, 0); "
    "os.write(1, b'armed\\n'); os.execv('/bin/sleep', ['sleep', '30'])",
]


def test_a_command_started_on_a_starter_thread_outlives_the_loop_that_asked(
    tmp_path: Path,
) -> None:
    # the parent-death signal follows the thread that made the process: the starter
    # threads live as long as the process, so a command they started is not killed
    # when the thread whose loop asked for it ends
    _needs_pidfds()
    started: list[int] = []

    def run_loop_on_a_thread() -> None:
        async def main() -> None:
            running = await _beside(tmp_path)
            try:
                # armed by the command itself, as bubblewrap's --die-with-parent arms it
                child = await spawn_watched(ARMED_SLEEP, cwd=tmp_path, env=ENV)
                started.append(child.pid)
                assert child.stdout is not None
                assert await child.stdout.readline() == b"armed\n"  # before this thread ends
            finally:
                await _end(running)

        asyncio.run(main())

    thread = threading.Thread(target=run_loop_on_a_thread)
    thread.start()
    thread.join()
    (pid,) = started
    try:
        time.sleep(0.3)
        os.kill(pid, 0)  # still running
        assert Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def test_a_forked_child_starts_commands_with_a_pool_of_its_own(tmp_path: Path) -> None:
    # the parent's pool has threads the child does not: a pool believed to have idle
    # threads would never run the child's starts
    _needs_pidfds()

    async def two() -> int:
        running = await _beside(tmp_path)
        try:
            child = await spawn_watched(["/bin/true"], cwd=tmp_path, env=ENV)
            try:
                return await child.wait()
            finally:
                child.close()
        finally:
            await _end(running)

    assert asyncio.run(two()) == 0  # the parent's pool exists, with an idle thread
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        signal.alarm(20)  # a hang ends as a failure, not a stuck suite
        code = 1
        try:
            code = asyncio.run(two())
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# the main thread ends first; the thread running the loop goes on, and looks 0.5 s later
# whether the command started beside another is still running
_MAIN_ENDS_FIRST = """
import asyncio, json, os, sys, threading, time
from pathlib import Path
from trestle.execution.child import spawn_watched

ARMED, ENV, CWD = json.loads(sys.argv[1]), {"PATH": "/usr/bin:/bin"}, Path(sys.argv[2])

async def main():
    running = await spawn_watched(["/bin/sleep", "30"], cwd=CWD, env=ENV)
    child = await spawn_watched(ARMED, cwd=CWD, env=ENV)
    assert await child.stdout.readline() == b"armed\\n"
    threading.main_thread().join()  # the main thread has ended, and the interpreter
    time.sleep(0.5)                  # waits for this one
    alive = os.waitpid(child.pid, os.WNOHANG) == (0, 0)
    for one in (child, running):
        one.close()
        await one.wait()
    print(json.dumps(alive))

threading.Thread(target=lambda: asyncio.run(main())).start()
"""


def test_a_command_started_beside_another_outlives_the_main_thread(tmp_path: Path) -> None:
    # a ThreadPoolExecutor's threads end when the main thread does, before the
    # interpreter waits for the others: a command one of them started for a loop on
    # another thread was killed then by its parent-death signal
    _needs_pidfds()
    script = [sys.executable, "-c", _MAIN_ENDS_FIRST, json.dumps(ARMED_SLEEP), str(tmp_path)]
    done = subprocess.run(script, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) is True, done.stdout


def test_many_starts_beside_one_another_all_run_on_a_bounded_pool(tmp_path: Path) -> None:
    _needs_pidfds()

    async def main() -> list[int]:
        running = await _beside(tmp_path)
        try:
            children = await asyncio.gather(
                *(
                    spawn_watched(["/bin/sh", "-c", "exit 7"], cwd=tmp_path, env=ENV)
                    for _ in range(40)
                )
            )
            codes = [await child.wait() for child in children]
            for child in children:
                child.close()
            return codes
        finally:
            await _end(running)

    assert asyncio.run(main()) == [7] * 40
    starters = [t for t in threading.enumerate() if t.name.startswith("trestle-start-")]
    assert 1 <= len(starters) <= min(32, (os.cpu_count() or 1) + 4)
    assert all(t.daemon for t in starters)
