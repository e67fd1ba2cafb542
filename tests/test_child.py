"""A command's process, started both ways the driver starts one: watched through a pidfd,
and by asyncio's own subprocess where there are none. Real processes throughout."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from trestle.execution.child import Child, _pidfds, spawn_asyncio, spawn_watched

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
