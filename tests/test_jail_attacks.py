"""The path jail, attacked: a process swapping a directory for a symlink while the file
tools run, hard links, FIFOs, and ``.git``/``.trestle`` at any depth and in any case.

The swapper is a real process exchanging the two names atomically (``renameat2`` with
``RENAME_EXCHANGE``) as fast as it can, as a helper started through ``run_command``
could; the tools are the real ones, called through the registry as a model's calls
are. Each attack counts the times it got out.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_tools import World
from trestle.tools import Observation

SECRET = "the secret outside"
CALLS = 300  # per tool: enough for a window to be hit many times where there is one

SWAPPER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = (os.fsencode(p) for p in sys.argv[1:3])
print("ready", flush=True)
while True:
    if libc.renameat2(-100, a, -100, b, 2) != 0:  # AT_FDCWD, RENAME_EXCHANGE
        raise SystemExit(f"renameat2: {os.strerror(ctypes.get_errno())}")
"""


@pytest.fixture
def w(tmp_path: Path) -> World:
    world = World(tmp_path)
    (world.outside / "f.txt").write_text(SECRET)
    return world


@pytest.fixture
def swapping(w: World) -> Iterator[None]:
    """``d`` flips between a directory in the workspace and a link to the outside."""
    w.write("d/f.txt", "inside")
    (w.ws / "link").symlink_to(w.outside)
    swapper = subprocess.Popen(
        [sys.executable, "-c", SWAPPER, str(w.ws / "d"), str(w.ws / "link")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert swapper.stdout is not None and swapper.stdout.readline().strip() == "ready"
    try:
        yield
    finally:
        swapper.kill()
        swapper.wait()


@pytest.mark.usefixtures("swapping")
def test_a_swapped_symlink_never_carries_a_read_or_a_write_outside(w: World) -> None:
    read_escapes = sum(
        SECRET in w.call("read_file", {"path": "d/f.txt"}).content for _ in range(CALLS)
    )
    for n in range(CALLS):
        w.call("write_file", {"path": f"d/w{n}.txt", "content": "x"})
    for n in range(CALLS):
        w.call("edit_file", {"path": "d/f.txt", "old": "inside", "new": "inside"})
        w.call("write_file", {"path": f"d/sub{n}/x.txt", "content": "x"})
    search_escapes = sum(
        SECRET in w.call("search_text", {"pattern": "secret", "directory": "d"}).content
        for _ in range(CALLS // 3)
    )
    written_outside = sorted(p.name for p in w.outside.iterdir() if p.name != "f.txt")
    print(
        f"jail race: {CALLS} reads, {2 * CALLS} writes, {CALLS // 3} searches: "
        f"{read_escapes} reads and {search_escapes} searches got the secret, "
        f"{len(written_outside)} writes landed outside"
    )
    assert (read_escapes, search_escapes, written_outside) == (0, 0, [])
    assert (w.outside / "f.txt").read_text() == SECRET


def test_a_hard_link_to_a_file_outside_is_not_read(w: World) -> None:
    os.link(w.outside / "f.txt", w.ws / "alias.txt")
    observation = w.call("read_file", {"path": "alias.txt"})
    assert not observation.ok and SECRET not in observation.content
    assert "hard link" in observation.content
    searched = w.call("search_text", {"pattern": "secret"})
    assert SECRET not in searched.content


def _within(seconds: float, fn: object, *args: object) -> Observation:
    done: list[Observation] = []
    thread = threading.Thread(target=lambda: done.append(fn(*args)), daemon=True)  # type: ignore[operator]
    thread.start()
    thread.join(seconds)
    assert done, f"still waiting after {seconds}s"
    return done[0]


def test_a_fifo_is_refused_at_once_not_waited_on(w: World) -> None:
    os.mkfifo(w.ws / "pipe")
    read = _within(10, w.call, "read_file", {"path": "pipe"})
    assert not read.ok and "not a regular file" in read.content
    searched = _within(10, w.call, "search_text", {"pattern": "x"})
    assert searched.ok
    listed = _within(10, w.call, "list_files", {"directory": "."})
    assert "pipe" in listed.content  # named, never opened


@pytest.mark.parametrize(
    "path",
    [
        ".git/hooks/pre-commit",
        "sub/.git/hooks/pre-commit",
        ".GIT/hooks/pre-commit",
        "sub/.Git/config",
        "x/.Trestle/trestle.db",
        ".trestle/trestle.db",
        "hooks/pre-commit",  # a link to .git/hooks: refused by where it really is
    ],
)
def test_git_and_trestle_are_never_written_at_any_depth_or_case(w: World, path: str) -> None:
    for git in (".git", "sub/.git", ".GIT", "sub/.Git", "x/.Trestle", ".trestle"):
        (w.ws / git / "hooks").mkdir(parents=True, exist_ok=True)
    (w.ws / "hooks").symlink_to(w.ws / ".git" / "hooks")
    observation = w.call("write_file", {"path": path, "content": "#!/bin/sh\ntouch PWNED\n"})
    assert not observation.ok, path
    assert "no tool reads or writes it" in observation.content
    assert not list(w.ws.rglob("pre-commit")) and not list(w.ws.rglob("config"))


def test_git_and_trestle_are_never_listed_searched_or_read_even_by_name(w: World) -> None:
    for place in (".git", "sub/.git", ".GIT", "x/.trestle"):
        w.write(f"{place}/config", "[core]\nsecret = in git\n")
    w.write("sub/code.py", "x = 1\n")
    listed = w.call("list_files", {"directory": ".", "depth": 5}).content
    assert "code.py" in listed
    assert ".git" not in listed.lower() and ".trestle" not in listed
    assert w.call("search_text", {"pattern": "in git"}).data["matches"] == 0
    for place in (".git", "sub/.git", ".GIT", "x/.trestle"):
        for tool, args in (
            ("list_files", {"directory": place}),
            ("search_text", {"pattern": "secret", "directory": place}),
            ("read_file", {"path": f"{place}/config"}),
        ):
            observation = w.call(tool, args)
            assert not observation.ok, (tool, place)
            assert "no tool reads or writes it" in observation.content


# --- git_diff on files a model wrote ------------------------------------------------------

FILTER = '[filter "x"]\n\tclean = touch PWNED; cat\n\tsmudge = cat\n'


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_git_diff_never_makes_a_repository_of_workspace_files(w: World) -> None:
    # a bare repository's layout, written by the model into a workspace that has none
    w.write("HEAD", "ref: refs/heads/main\n")
    w.write("config", "[core]\n\tbare = false\n\tworktree = .\n" + FILTER)
    (w.ws / "objects").mkdir()
    (w.ws / "refs" / "heads").mkdir(parents=True)
    w.write(".gitattributes", "* filter=x\n")
    observation = w.call("git_diff", {})
    assert not observation.ok and "not a git repository" in observation.content
    assert not (w.ws / "PWNED").exists()


@pytest.mark.parametrize(
    "setting",
    [
        FILTER,
        '[diff "x"]\n\ttextconv = touch PWNED; cat\n',
        '[diff "x"]\n\tcommand = touch PWNED\n',
        "[core]\n\tfsmonitor = touch PWNED\n",
    ],
)
def test_git_diff_refuses_a_repository_configured_to_run_programs(w: World, setting: str) -> None:
    _git(w.ws, "init", "-q", "-b", "main")
    w.write("a.txt", "one\n")
    _git(w.ws, "-c", "user.name=t", "-c", "user.email=t@t", "add", "a.txt")
    _git(w.ws, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    w.write("a.txt", "two\n")
    w.write(".gitattributes", "* filter=x diff=x\n")
    with (w.ws / ".git" / "config").open("a") as config:  # as a sandboxed command could
        config.write(setting)
    observation = w.call("git_diff", {})
    assert not observation.ok and "could make git run a program" in observation.content
    assert not (w.ws / "PWNED").exists()
