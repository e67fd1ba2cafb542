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
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_checkpoint_traps import nest, remove_tree
from trestle.agent.runtime import workspace_files
from trestle.execution.sandbox_mounts import _sockets_under
from trestle.support.walk import walk

DEPTH = 1_500


@pytest.fixture
def deep(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path/a/a/.../a/f``, DEPTH deep; removed afterwards one descriptor at a
    time (pytest's own clean-up recurses too)."""
    nest(tmp_path, DEPTH)
    yield tmp_path
    remove_tree(tmp_path / "a")


def test_the_files_of_a_deep_tree_are_listed_for_the_plan(deep: Path) -> None:
    (deep / "top.txt").write_text("x")
    assert workspace_files(deep) == ["top.txt", "a/" * DEPTH + "f"]


def test_a_socket_beside_a_deep_tree_is_found(deep: Path) -> None:
    (deep / "s").mkdir()
    here = os.getcwd()
    os.chdir(deep / "s")  # a socket's path has room for 107 bytes
    try:
        listening = socket.socket(socket.AF_UNIX)
        listening.bind("daemon.sock")
    finally:
        os.chdir(here)
    try:
        assert list(_sockets_under(deep)) == [deep / "s" / "daemon.sock"]
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
