"""The workspace hold's locks, as runs take them (real files, real flock, real tasks):
which commands an approved command waits for, which wait for it, and which go on
beside it (``trestle.execution.workspace_hold``). The runs themselves, and the payload a
step beside an approved command rewrites, are in ``tests/test_tool_call_alone.py``."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from trestle.execution.workspace_hold import held_shared, hold_exclusive

SOON = 0.3  # seconds within which a hold not waited on is taken


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``top`` and below it ``a``, ``a/sub`` and ``b``; the locks under ``config``."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("top/a/sub", "top/b"):
        (tmp_path / name).mkdir(parents=True)
    return tmp_path / "top"


async def taken(hold: Awaitable[object], within: float = SOON) -> bool:
    """Whether ``hold`` is taken within ``within`` seconds (if not, it is given up)."""
    try:
        await asyncio.wait_for(hold, within)
    except TimeoutError:
        return False
    return True


async def command(workspace: Path, started: asyncio.Event, ends: asyncio.Event) -> None:
    async with held_shared(workspace):
        started.set()
        await ends.wait()


def run(case: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(case())


class Approved:
    """An approved command's hold of ``workspace``, taken in a task of its own (a task
    made from the holding one would be the command's own, which its hold lets pass)."""

    def __init__(self, workspace: Path) -> None:
        self.held, self.ends = asyncio.Event(), asyncio.Event()
        self.task = asyncio.create_task(self._hold(workspace))

    async def _hold(self, workspace: Path) -> None:
        release = await hold_exclusive(workspace)
        self.held.set()
        await self.ends.wait()
        await release()

    async def taken(self, within: float = SOON) -> bool:
        return await taken(self.held.wait(), within)

    async def end(self) -> None:
        self.ends.set()
        await self.task


@pytest.mark.parametrize("where", ["a", ".", "a/sub"])  # its workspace, above, below
def test_an_approved_command_waits_for_a_command_running_in_above_or_below_it(
    tree: Path, where: str
) -> None:
    async def case() -> None:
        started, ends = asyncio.Event(), asyncio.Event()
        running = asyncio.create_task(command(tree / where, started, ends))
        await started.wait()
        approved = Approved(tree / "a")
        assert not await approved.taken()
        ends.set()
        await running
        assert await approved.taken(5)
        await approved.end()

    run(case)


def test_no_command_starts_in_or_below_a_held_workspace_nor_above_it(tree: Path) -> None:
    async def case() -> None:
        approved = Approved(tree / "a")
        assert await approved.taken()
        for where in (tree / "a", tree / "a" / "sub", tree):
            started = asyncio.Event()
            blocked = asyncio.create_task(command(where, started, asyncio.Event()))
            assert not await taken(started.wait()), where
            blocked.cancel()
        beside = asyncio.Event()  # a workspace beside it goes on
        task = asyncio.create_task(command(tree / "b", beside, asyncio.Event()))
        assert await taken(beside.wait())
        task.cancel()
        await approved.end()

    run(case)


def test_approved_commands_beside_each_other_do_not_wait_for_one_another(tree: Path) -> None:
    async def case() -> None:
        first = Approved(tree / "a")
        assert await first.taken()
        beside = Approved(tree / "b")
        assert await beside.taken()  # beside it: at once
        below = Approved(tree / "a" / "sub")
        assert not await below.taken()  # below it: after it
        await first.end()
        assert await below.taken(5)
        await below.end()
        await beside.end()

    run(case)


@pytest.mark.parametrize("where", ["a", "a/sub"])
def test_a_busy_run_does_not_keep_an_approved_command_waiting(tree: Path, where: str) -> None:
    """Commands that overlap one another, each short, in the approved command's
    workspace or below it: once it asks, no new one starts (they pass its gate, or the
    pass of each directory above them, which it closes), so it runs once those running
    end (before, it waited for a moment when none ran, which such a run never gives,
    and every command in its workspace and above waited with it)."""

    async def case() -> None:
        stop = asyncio.Event()

        async def busy(offset: float) -> None:
            await asyncio.sleep(offset)
            while not stop.is_set():
                async with held_shared(tree / where):
                    await asyncio.sleep(0.2)

        runs = [asyncio.create_task(busy(i * 0.1)) for i in range(2)]
        await asyncio.sleep(0.5)
        approved = Approved(tree / "a")
        assert await approved.taken(2)
        stop.set()
        await approved.end()
        await asyncio.gather(*runs)

    run(case)


def test_a_task_holding_its_workspace_runs_its_own_commands(tree: Path) -> None:
    async def case() -> None:
        release = await hold_exclusive(tree / "a")
        started, ends = asyncio.Event(), asyncio.Event()
        ends.set()
        assert await taken(command(tree / "a", started, ends))  # its own: not held
        await release()

    run(case)


@pytest.fixture
def bound(tree: Path) -> Iterator[Path]:
    """``top/a`` bound at ``top/alias`` as well (root only)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a bind mount needs root")
    alias = tree / "alias"
    alias.mkdir()
    done = subprocess.run(["mount", "--bind", str(tree / "a"), str(alias)], check=False)
    if done.returncode != 0:
        pytest.skip("mount --bind is not allowed here")
    try:
        yield alias
    finally:
        subprocess.run(["umount", str(alias)], check=False)


def test_a_workspace_reached_through_a_bind_mount_is_the_workspace(tree: Path, bound: Path) -> None:
    """Named by device and inode, not by path (before, the alias had locks of its own,
    and another run's step working there rewrote what the command read)."""

    async def case() -> None:
        approved = Approved(tree / "a")
        assert await approved.taken()
        started = asyncio.Event()
        blocked = asyncio.create_task(command(bound, started, asyncio.Event()))
        assert not await taken(started.wait())
        blocked.cancel()
        await approved.end()

    run(case)


def test_file_writes_waiting_for_a_held_workspace_leave_the_loop_its_threads(
    tree: Path,
) -> None:
    """More agents' writes than the event loop has threads to hand off to, all waiting
    for an approved command of another run, which then needs a thread itself (its
    files' pinning): they wait on the loop, so it goes on (before, each write waited in
    one of those threads, and the approved command waited for ever)."""
    from trestle.tools.base import ToolContext
    from trestle.tools.edits import WriteFile, WriteFileArgs

    async def case() -> None:
        approved = Approved(tree / "a")
        assert await approved.taken()
        ctx = ToolContext(workspace=tree / "a", run_id="r", step_id="s")
        writes = [
            asyncio.create_task(WriteFile().run(ctx, WriteFileArgs(path=f"f{i}", content="x")))
            for i in range(4 * (os.cpu_count() or 1) + 8)
        ]
        await asyncio.sleep(0.3)
        assert await taken(asyncio.to_thread(lambda: None), 5)  # a thread is free
        await approved.end()
        await asyncio.wait_for(asyncio.gather(*writes), 10)

    run(case)


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_a_file_read_as_data_that_the_hold_cannot_reach_is_not_run(
    tmp_path: Path, link: str
) -> None:
    """``payload`` in the workspace is a link to a file of another workspace, which the
    hold of this one does not cover: a run there rewrote it between the check and the
    deploy's read. So it is not run, as code that cannot be copied is not."""
    from trestle.execution.named_files import digest
    from trestle.execution.pinning import pinned

    workspace, elsewhere = tmp_path / "ws", tmp_path / "other"
    workspace.mkdir()
    elsewhere.mkdir()
    (elsewhere / "payload").write_text("echo GOOD\n")
    (workspace / "deploy.sh").write_text('. "./$1"\n')
    if link == "symbolic":
        (workspace / "payload").symlink_to(elsewhere / "payload")
    else:
        os.link(elsewhere / "payload", workspace / "payload")
    command = "sh deploy.sh payload"
    approved = {name: digest(workspace / name, 1 << 20) for name in ("deploy.sh", "payload")}
    with pinned(command, approved, workspace) as (_, moved, unheld):
        assert moved == [] and unheld == ["payload"]
    (workspace / "payload").unlink()
    (workspace / "payload").write_text("echo GOOD\n")  # a plain file of one name: held
    approved["payload"] = digest(workspace / "payload", 1 << 20)
    with pinned(command, approved, workspace) as (_, moved, unheld):
        assert moved == [] and unheld == []


def test_a_command_in_a_workspace_gone_fails_to_start_saying_so(tree: Path) -> None:
    """Its holds are named by the missing directory's path: the command itself says
    why it could not start (before the hold, a stat of it stopped the attempt)."""
    from trestle.execution.actions import run_shell
    from trestle.execution.sandbox import Cell, choose

    gone = tree / "gone"
    cell = Cell(sandbox=choose("off"), workspace=gone, name="s")
    result = asyncio.run(run_shell("true", cwd=gone, env={}, timeout=5, cell=cell))
    assert result.status == "error" and "No such file or directory" in (result.error or "")
