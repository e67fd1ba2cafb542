"""What a command's sandbox is built from is read again for every command.

Working a sandbox's mounts out once per run would be cheaper, but a step changes what
they are built from between two commands: it writes its workspace (a ``.git`` it
creates, a directory that must stay hidden) and the host binds sockets. One ``Cell``
runs the commands here, as a run's steps share their sandbox, so whatever it kept from
one command to the next would show.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_boundary import outside_tmp
from test_sandbox import _require_bwrap
from trestle.execution.actions import run_shell
from trestle.execution.sandbox import Cell, choose, hidden_paths


def _run(cell: Cell, ws: Path, command: str) -> int | None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ws)}
    result = asyncio.run(run_shell(command, cwd=ws, env=env, timeout=30, cell=cell))
    return result.exit_code


@pytest.fixture
def cell(tmp_path: Path) -> Iterator[Cell]:
    _require_bwrap()
    ws = tmp_path / "ws"
    ws.mkdir()
    yield Cell(choose("require", hidden=(ws / ".trestle",)), ws, "step")


def test_a_git_a_step_made_is_read_only_to_the_next_command(cell: Cell) -> None:
    ws = cell.workspace
    assert _run(cell, ws, "true") == 0  # the first command: no .git yet
    subprocess.run(["git", "init", "-q", str(ws)], check=True)
    assert _run(cell, ws, "echo x > .git/hooks/pre-commit") != 0
    assert not (ws / ".git" / "hooks" / "pre-commit").exists()


def test_a_daemons_socket_bound_in_the_workspace_after_the_first_command_is_covered(
    cell: Cell,
) -> None:
    # the workspace lies under /tmp, private in the sandbox but for the workspace itself,
    # as a workspace in the (hidden) home does: its sockets are reachable all the same
    ws = cell.workspace
    assert _run(cell, ws, "true") == 0
    daemon = socket.socket(socket.AF_UNIX)
    daemon.bind(str(ws / "daemon.sock"))  # a host daemon's, where the commands can see it
    daemon.listen()
    try:
        connect = "import socket; socket.socket(socket.AF_UNIX).connect('daemon.sock')"
        assert _run(cell, ws, f'python3 -c "{connect}"') != 0
    finally:
        daemon.close()


def test_a_hidden_directory_made_after_the_first_command_is_hidden_from_the_next(
    cell: Cell,
) -> None:
    ws = cell.workspace
    assert _run(cell, ws, "test ! -e .trestle") == 0
    (ws / ".trestle").mkdir()  # the store, made once the run had started
    (ws / ".trestle" / "trestle.db").write_text("secret")
    assert _run(cell, ws, "cat .trestle/trestle.db") != 0


@pytest.mark.parametrize("how", ["entry", "link"])
def test_a_tool_directory_a_step_can_point_elsewhere_shows_nothing_of_the_home(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _require_bwrap()
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id").write_text("secret")
    ws = tmp_path / "ws"
    ws.mkdir()
    # what a step made of a PATH entry in the workspace (a virtualenv's bin, say), or of
    # the directory a link outside it leads to
    (ws / "bin").symlink_to(home / ".ssh")
    entry = ws / "bin"
    if how == "link":
        entry = home / "tools"
        entry.symlink_to(ws / "bin")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", f"{entry}:/usr/bin:/bin")
    cell = Cell(choose("require"), ws, "step")
    assert _run(cell, ws, "true") == 0
    assert _run(cell, ws, f"cat {home}/.ssh/id") != 0


@pytest.mark.parametrize("move", ["mv run run2", "mkdir deep && mv run deep/er"])
def test_a_daemons_socket_stays_covered_when_a_command_renames_its_directory(
    cell: Cell, move: str
) -> None:
    # the daemon's socket is covered, its directory is not: renamed by one command, the
    # socket is where /proc/net/unix does not list it for the next
    ws = cell.workspace
    (ws / "run").mkdir()
    daemon = socket.socket(socket.AF_UNIX)
    daemon.bind(str(ws / "run" / "daemon.sock"))
    daemon.listen()
    try:
        assert _run(cell, ws, move) == 0
        moved = next(ws.rglob("daemon.sock")).relative_to(ws)
        assert moved != Path("run/daemon.sock")
        connect = f"import socket; socket.socket(socket.AF_UNIX).connect('{moved}')"
        assert _run(cell, ws, f'python3 -c "{connect}"') != 0
    finally:
        daemon.close()


@pytest.mark.parametrize("plant", ["ln -s .trestle .git", "echo 'gitdir: .trestle' > .git"])
def test_a_git_link_a_command_planted_does_not_show_a_hidden_directory_again(
    cell: Cell, plant: str
) -> None:
    # .git and the directory a .git link or file names are bound read-only for the next
    # command; naming the store's hidden directory must not bind it back into view
    ws = cell.workspace
    (ws / ".trestle").mkdir()
    (ws / ".trestle" / "trestle.db").write_text("secret")
    assert _run(cell, ws, plant) == 0
    assert _run(cell, ws, "cat .trestle/trestle.db || cat .git/trestle.db") != 0


@pytest.mark.parametrize("move", ["mv var var2", "mv var/trestle var/t2"])
def test_a_store_kept_deeper_in_the_workspace_stays_hidden_when_a_command_renames_its_way(
    tmp_path: Path, move: str
) -> None:
    # the store's directory is hidden by a mount on it; a directory on the way to it,
    # renamed by one command, would carry the store out from under the next one's
    _require_bwrap()
    ws = tmp_path / "ws"
    (ws / "var" / "trestle").mkdir(parents=True)
    store = ws / "var" / "trestle" / "trestle.db"
    store.write_text("secret")
    hidden = hidden_paths(ws, store, tmp_path / "key" / "approval.key", None)
    cell = Cell(choose("require", hidden=hidden), ws, "step")
    assert _run(cell, ws, move) != 0
    assert store.read_text() == "secret"
    assert _run(cell, ws, "cat */trestle/trestle.db */*/trestle.db") != 0


@pytest.mark.parametrize("plant", ["mkfifo .git", "mkfifo x && ln -s x .git"])
def test_a_git_fifo_a_command_made_does_not_hold_up_the_next_command(
    cell: Cell, plant: str
) -> None:
    # the next command's mounts read a .git file for its gitdir: line; a FIFO's reading
    # waits for a writer, which froze the driver's event loop
    ws = cell.workspace
    assert _run(cell, ws, plant) == 0
    done: list[int | None] = []
    thread = threading.Thread(target=lambda: done.append(_run(cell, ws, "true")), daemon=True)
    thread.start()
    thread.join(60)  # a hang's guard, however busy the machine
    held = not done
    if held:  # let the reader go before failing, so nothing is left waiting
        os.close(os.open(ws / ".git", os.O_WRONLY | os.O_NONBLOCK))
        thread.join(60)
    assert not held, "the next command's start waited on the FIFO"
    assert done == [0]


def test_a_command_whose_sandbox_could_not_start_runs_once_it_can(
    cell: Cell, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host daemon's socket the driver saw went away, file and directory, after the
    command's sandbox was worked out and before bubblewrap started (another program's
    short-lived daemon): bubblewrap cannot make the mount's point that covers it, and
    runs nothing. The start is made again, the sockets looked at afresh, and the command
    runs once."""
    ws = cell.workspace
    # read-only to the commands but reachable (not in /tmp or a home, which they do not
    # see): bubblewrap must make the covering mount's point itself
    top = outside_tmp("trestle-vanish-")
    place = top / "daemon"
    place.mkdir()
    daemon = socket.socket(socket.AF_UNIX)
    daemon.bind(str(place / "d.sock"))
    daemon.listen()
    built = Cell.argv
    starts: list[list[str]] = []

    def vanishing(
        self: Cell, command: str, cwd: Path, held_open: list[int] | None = None
    ) -> list[str]:
        argv = built(self, command, cwd, held_open)
        starts.append(argv)
        if len(starts) == 1:  # it goes away between the look and the start
            daemon.close()
            (place / "d.sock").unlink()
            place.rmdir()
        return argv

    monkeypatch.setattr(Cell, "argv", vanishing)
    try:
        assert _run(cell, ws, "echo ran >> runs.txt") == 0
    finally:
        shutil.rmtree(top, ignore_errors=True)
    assert str(place / "d.sock") in starts[0] and len(starts) == 2
    assert str(place / "d.sock") not in starts[1]
    assert (ws / "runs.txt").read_text() == "ran\n"


def test_a_command_that_began_is_never_started_again_whatever_it_prints(cell: Cell) -> None:
    ws = cell.workspace
    fake = 'echo "bwrap: Can\'t create file at /gone/d.sock: No such file or directory" >&2'
    assert _run(cell, ws, f"echo ran >> runs.txt; {fake}; exit 1") == 1
    assert (ws / "runs.txt").read_text() == "ran\n"


def test_a_listed_socket_whose_file_is_gone_does_not_stop_a_command(cell: Cell) -> None:
    """/proc/net/unix lists a socket for as long as it is open, after its file was
    removed (a daemon's cleanup that unlinks before it closes): nothing is left there
    to reach, and covering it would fail every start."""
    ws = cell.workspace
    top = outside_tmp("trestle-gone-")
    (top / "real").mkdir()
    (top / "link").symlink_to(top / "real")  # bound through a link, as a home's cache is
    daemon = socket.socket(socket.AF_UNIX)
    try:
        daemon.bind(str(top / "link" / "d.sock"))
        daemon.listen()
        shutil.rmtree(top / "real")  # the link is left pointing at nothing
        assert str(top / "link" / "d.sock") in Path("/proc/net/unix").read_text()
        assert _run(cell, ws, "echo ran >> runs.txt") == 0
        assert (ws / "runs.txt").read_text() == "ran\n"
    finally:
        daemon.close()
        shutil.rmtree(top, ignore_errors=True)


def test_a_daemons_socket_bound_through_a_link_is_covered_and_commands_still_start(
    cell: Cell,
) -> None:
    """A daemon bound its socket through an absolute link (``/var/run/x.sock`` and the
    like): bubblewrap cannot make a mount's point behind such a link, and every command
    failed to start while the daemon ran. It is covered where it really is."""
    ws = cell.workspace
    top = outside_tmp("trestle-linked-")
    (top / "real").mkdir()
    (top / "link").symlink_to(top / "real")
    daemon = socket.socket(socket.AF_UNIX)
    try:
        daemon.bind(str(top / "link" / "d.sock"))
        daemon.listen()
        os.chmod(top / "real" / "d.sock", 0o777)
        assert _run(cell, ws, "true") == 0
        connect = f"import socket; socket.socket(socket.AF_UNIX).connect('{top}/link/d.sock')"
        assert _run(cell, ws, f'python3 -c "{connect}"') != 0
    finally:
        daemon.close()
        shutil.rmtree(top, ignore_errors=True)
