"""The commands a turn of the event loop starts (a fan-out's) share one reading of the
filesystem for their sandboxes (``trestle.support.this_turn``); each still decides its
own network, ``.git`` and approved files, and the next turn reads again: what a
command left in between is judged afresh. As root or not alike (nothing here starts a
command)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from test_sandbox import _require_bwrap
from trestle.core.policy import SandboxPolicy
from trestle.execution.sandbox import Cell, Sandbox, choose


@pytest.fixture
def readings(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The workspace of every reading the sandboxes make, in order."""
    read = Sandbox._read
    made: list[Path] = []

    def counted(self: Sandbox, workspace: Path) -> Any:
        made.append(workspace)
        return read(self, workspace)

    monkeypatch.setattr(Sandbox, "_read", counted)
    return made


def _argv(cell: Cell, ws: Path) -> list[str]:
    bound: list[int] = []
    try:
        return cell.argv("true", ws, held_open=bound)
    finally:
        for fd in bound:
            os.close(fd)


def test_commands_of_one_turn_share_a_reading_and_the_next_turn_reads_again(
    tmp_path: Path, readings: list[Path]
) -> None:
    _require_bwrap()
    ws = tmp_path / "ws"
    ws.mkdir()
    subprocess.run(["git", "init", "-q", str(ws)], check=True)
    sandbox = choose("require", policy=SandboxPolicy(network=("fetch",)), workspace=ws)
    cells = [
        Cell(sandbox, ws, "build"),
        Cell(sandbox, ws, "fetch"),
        Cell(sandbox, ws, "commit", True),
    ]

    async def main() -> tuple[list[list[str]], list[str]]:
        together = [_argv(cell, ws) for cell in cells]  # one turn
        await asyncio.sleep(0)
        (ws / "trestle.toml").write_text("")  # as a command of that turn could have
        await asyncio.sleep(0)
        return together, _argv(cells[0], ws)

    (build, fetch, commit), later = asyncio.run(main())
    assert readings == [ws, ws]
    # each its own: the network for the step the policy names, .git writable for the
    # command a human approved
    assert "--share-net" in fetch and "--share-net" not in build
    git = str((ws / ".git").resolve())
    assert _bound(commit, git) == "--bind-fd" and _bound(build, git) == "--ro-bind-fd"
    toml = str((ws / "trestle.toml").resolve())
    assert toml not in build and toml in later  # judged again in the next turn


def test_without_a_running_loop_every_command_reads(tmp_path: Path, readings: list[Path]) -> None:
    _require_bwrap()
    cell = Cell(choose("require", workspace=tmp_path), tmp_path, "step")
    _argv(cell, tmp_path)
    _argv(cell, tmp_path)
    assert len(readings) == 2


def _bound(argv: list[str], path: str) -> str:
    """How ``path`` is bound in ``argv`` (the option before its descriptor)."""
    at = argv.index(path)
    return argv[at - 2]


def test_a_copy_with_another_policy_reads_for_itself(tmp_path: Path, readings: list[Path]) -> None:
    _require_bwrap()
    sandbox = choose("require", workspace=tmp_path)
    other = dataclasses.replace(sandbox, policy=SandboxPolicy(read=("/etc/hostname",)))

    async def main() -> tuple[list[str], list[str]]:
        return _argv(Cell(sandbox, tmp_path, "a"), tmp_path), _argv(
            Cell(other, tmp_path, "a"), tmp_path
        )

    plain, reading = asyncio.run(main())
    assert len(readings) == 2
    assert "/etc/hostname" not in plain and "/etc/hostname" in reading
