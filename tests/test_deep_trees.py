"""A tree a step made 1,500 directories deep, walked by the driver.

Python 3.11's ``os.walk`` recurses a level per directory: the agent's re-plan, which
lists the workspace's files, raised ``RecursionError``, exited 1 and left the run in
progress, and every ``trestle resume`` crashed the same way. The sandbox's search for
sockets in the workspace walked it the same way. Both now walk without recursion
(:mod:`trestle.support.walk`), in ``os.walk``'s order.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from trestle.agent.runtime import workspace_files
from trestle.execution.sandbox_mounts import _sockets_under
from trestle.support.walk import walk

DEPTH = 1_500


def deep_tree(root: Path, bottom: str | None = None) -> None:
    """``root/d/d/.../d``, DEPTH deep, made a directory at a time (``mkdir -p`` recurses
    too), with the file ``bottom`` in the deepest one."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(DEPTH):
            os.mkdir("d", dir_fd=fd)
            fd, above = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
            os.close(above)
        if bottom is not None:
            os.close(os.open(bottom, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)


def test_the_files_of_a_deep_tree_are_listed_for_the_plan(tmp_path: Path) -> None:
    deep_tree(tmp_path, "bottom.txt")
    (tmp_path / "top.txt").write_text("x")
    listed = workspace_files(tmp_path)
    assert listed == ["top.txt", "d/" * DEPTH + "bottom.txt"]


def test_a_socket_beside_a_deep_tree_is_found(tmp_path: Path) -> None:
    deep_tree(tmp_path)
    (tmp_path / "s").mkdir()
    here = os.getcwd()
    os.chdir(tmp_path / "s")  # a socket's path has room for 107 bytes
    try:
        listening = socket.socket(socket.AF_UNIX)
        listening.bind("daemon.sock")
    finally:
        os.chdir(here)
    try:
        assert list(_sockets_under(tmp_path)) == [tmp_path / "s" / "daemon.sock"]
    finally:
        listening.close()


def test_the_walk_goes_as_os_walk_does_and_may_be_pruned(tmp_path: Path) -> None:
    for path in ("a/b/c", "a/x", "b", "c/skip/deeper"):
        (tmp_path / path).mkdir(parents=True)
        (tmp_path / path / "f").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "a")

    def pruned(walker: object) -> list[tuple[str, list[str], list[str]]]:
        seen = []
        for folder, dirs, files in walker:  # type: ignore[attr-defined]
            dirs[:] = sorted(d for d in dirs if d != "skip")
            seen.append((folder, list(dirs), sorted(files)))
        return seen

    ours = pruned(walk(tmp_path))
    theirs = pruned(os.walk(tmp_path))
    # os.walk names a link to a directory among dirs and does not enter it; here it
    # is among the files: either way nothing is read through it
    assert [(f, d) for f, d, _ in ours] == [
        (f, [x for x in d if x != "link"]) for f, d, _ in theirs
    ]
    assert "link" in ours[0][2] and not any("skip" in f for f, _, _ in ours)
