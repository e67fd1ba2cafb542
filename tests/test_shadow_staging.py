"""A workspace staged without git is staged as git stages it.

Each check asks the real git: the tree ``git write-tree`` makes of the index written
here, the tree ``git add -A`` makes of the same files in an index of git's own, ``git
diff-files`` (the stat data: a file git would read again shows up there), and ``git fsck
--strict``. Then what a step running beside the driver can do between the walk and the
read: a directory swapped for a symlink out of the workspace, a file swapped for a FIFO,
a file grown past the bound, an index that does not parse.
"""

from __future__ import annotations

import os
import random
import resource
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from test_boundary import driver_host, run_as_driver
from trestle.workspace import staging
from trestle.workspace.shadow import ShadowRepo

PLAIN_ENV = {"PATH": os.environ["PATH"], "LC_ALL": "C", "HOME": "/nonexistent"}


def _git(git_dir: Path, *args: str, index: Path | None = None, work: Path | None = None) -> str:
    env = {**PLAIN_ENV, "GIT_DIR": str(git_dir)}
    if index is not None:
        env["GIT_INDEX_FILE"] = str(index)
    if work is not None:
        env["GIT_WORK_TREE"] = str(work)
    done = subprocess.run(
        ["git", "-c", "core.autocrlf=false", *args],
        capture_output=True,
        env=env,
        cwd=work or git_dir,
        check=True,
    )
    return done.stdout.decode()


def _index(repo: ShadowRepo) -> Path:
    [index] = [p for p in (repo.git_dir / "trestle-index").iterdir() if p.suffix != ".lock"]
    return index


def _as_git_stages(repo: ShadowRepo, tmp_path: Path) -> str:
    """The tree of the workspace as git itself stages it, in an index of its own."""
    index = tmp_path / f"git-index-{time.monotonic_ns()}"
    _git(repo.git_dir, "add", "-A", "--force", ".", index=index, work=repo.workspace)
    return _git(repo.git_dir, "write-tree", index=index).strip()


def _check(repo: ShadowRepo, commit: str, tmp_path: Path) -> None:
    tree = _git(repo.git_dir, "rev-parse", f"{commit}^{{tree}}").strip()
    index = _index(repo)
    assert _git(repo.git_dir, "write-tree", index=index).strip() == tree
    assert _as_git_stages(repo, tmp_path) == tree
    # every entry's stat data is the file's: git finds nothing to read again
    changed = _git(repo.git_dir, "diff-files", "--name-only", index=index, work=repo.workspace)
    assert changed == ""
    assert _git(repo.git_dir, "fsck", "--strict", "--no-dangling") == ""


def _workspace(root: Path, rng: random.Random) -> None:
    names = ["a", "a.b", "a-b", "a0", "b/a", "b/a.b", "b-c/d", "ünï cödé.txt", "sp ace/x y"]
    names += [f"deep/{'/'.join('d' * (i + 1) for i in range(6))}/leaf{i}" for i in range(3)]
    names += [f"many/f{i:03d}.py" for i in range(40)]
    names.append("/".join(["long" * 40] * 3))  # 482 bytes: a long entry, padded as any
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randrange(0, 3000)))
    (root / "empty").write_bytes(b"")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    (root / "link").symlink_to("a.b")
    (root / "b" / "dangling").symlink_to("../nowhere/at/all")
    (root / "b" / "dirlink").symlink_to("../deep")
    (root / os.fsdecode(b"bytes-\xff\xfe")).write_bytes(b"not utf-8 in its name\n")
    (root / "emptydir").mkdir()


def test_a_workspace_staged_here_is_the_tree_git_stages(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    rng = random.Random(40)
    _workspace(ws, rng)
    repo = ShadowRepo(tmp_path / "shadow.git", ws)
    first = repo.snapshot("one")
    _check(repo, first, tmp_path)

    # changed in place with the same size in the same tick (racily clean), deleted,
    # added, made executable, a file turned into a symlink and a symlink into a file
    (ws / "a").write_bytes(b"x" * (ws / "a").stat().st_size)
    (ws / "many" / "f001.py").unlink()
    (ws / "many" / "new.py").write_text("new\n")
    (ws / "many" / "f002.py").chmod(0o755)
    (ws / "a0").unlink()
    (ws / "a0").symlink_to("a")
    (ws / "link").unlink()
    (ws / "link").write_text("now a file\n")
    second = repo.snapshot("two")
    _check(repo, second, tmp_path)
    changed = {c.path for c in repo.changes("one", "two")}
    assert changed == {"a", "many/f001.py", "many/new.py", "many/f002.py", "a0", "link"}

    # restored by git through the index written here, then staged here again
    repo.restore("one")
    first_tree = _git(repo.git_dir, "rev-parse", f"{first}^{{tree}}").strip()
    assert _as_git_stages(repo, tmp_path) == first_tree
    again = repo.snapshot("three")
    _check(repo, again, tmp_path)
    assert repo.changes("one", "three") == []


def test_a_file_changed_in_the_tick_the_index_was_written_is_read_again(tmp_path: Path) -> None:
    # written twice within one tick of the clock file times come from (milliseconds),
    # with the same size, a file keeps the stat data its first version was indexed
    # with: only its mtime, not older than the index's own, says it may have changed
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "f.txt").write_text("bbbb\n")
    git_dir = tmp_path / "shadow.git"
    _git(tmp_path, "init", "--bare", "--quiet", str(git_dir))
    st = os.lstat(ws / "f.txt")
    stale = staging.entry(staging.words(st, staging.REGULAR), bytes(20), b"f.txt")  # "aaaa"
    mtime = staging.modified(st)

    racy = staging.stage(git_dir, ws, {"f.txt": st}, {"f.txt": stale}, mtime, None)
    kept = staging.stage(git_dir, ws, {"f.txt": st}, {"f.txt": stale}, (mtime[0] + 1, 0), None)

    blob = _git(git_dir, "hash-object", str(ws / "f.txt")).strip()
    assert racy.index["f.txt"].oid.hex() == blob
    assert kept.index["f.txt"] is stale  # an index written later: its cache is trusted


def test_an_index_that_does_not_parse_is_no_cache(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "f.txt").write_text("one\n")
    repo = ShadowRepo(tmp_path / "shadow.git", ws)
    repo.snapshot("one")
    _index(repo).write_bytes(b"DIRC\0\0\0\x02\0\0\0\x05garbage")
    (ws / "g.txt").write_text("two\n")
    second = repo.snapshot("two")
    _check(repo, second, tmp_path)
    assert staging.read_index(b"DIRC\0\0\0\x02\0\0\0\x05garbage") is None
    assert staging.read_index(b"") is None


def test_what_a_step_swaps_in_after_the_walk_is_not_read(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "sub").mkdir(parents=True)
    (ws / "sub" / "secret").write_text("the step's own\n")
    (ws / "pipe").write_text("a file when walked\n")
    (ws / "grows").write_text("small when walked\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("the driver's, never to be stored\n")
    walked = {
        path: os.lstat(ws / path) for path in ("sub/secret", "pipe", "grows")
    }  # as the walk saw them
    # then, before they are read: the directory becomes a symlink out of the workspace,
    # the file a FIFO (an open of which would wait for a writer), the other grows
    (ws / "sub" / "secret").unlink()
    (ws / "sub").rmdir()
    (ws / "sub").symlink_to(outside)
    (ws / "pipe").unlink()
    os.mkfifo(ws / "pipe")
    (ws / "grows").write_bytes(b"x" * 4096)
    git_dir = tmp_path / "shadow.git"
    _git(tmp_path, "init", "--bare", "--quiet", str(git_dir))

    staged = staging.stage(git_dir, ws, walked, {}, (0, 0), limit=1024)

    assert staged.index == {}
    assert staged.too_large == {"grows": 4096}
    assert _git(git_dir, "ls-tree", "-r", staged.tree) == ""
    stored = _git(git_dir, "cat-file", "--batch-all-objects", "--batch-check")
    assert "blob" not in stored  # nothing of the outside file was read into the store


@pytest.mark.parametrize("layout", ["logAllRefUpdates", "sha256"])
def test_a_store_of_another_layout_is_staged_by_git(tmp_path: Path, layout: str) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    rng = random.Random(41)
    _workspace(ws, rng)
    git_dir = tmp_path / "shadow.git"
    if layout == "sha256":
        _git(tmp_path, "init", "--bare", "--quiet", "--object-format=sha256", str(git_dir))
    else:
        _git(tmp_path, "init", "--bare", "--quiet", str(git_dir))
        _git(git_dir, "config", "core.logAllRefUpdates", "always")
    repo = ShadowRepo(git_dir, ws)
    first = repo.snapshot("one")
    tree = _git(git_dir, "rev-parse", f"{first}^{{tree}}").strip()
    assert _as_git_stages(repo, tmp_path) == tree
    (ws / "a").write_text("changed\n")
    (ws / "a.b").unlink()
    repo.snapshot("two")
    assert [(c.path, c.kind) for c in repo.changes("one", "two")] == [
        ("a", "modified"),
        ("a.b", "deleted"),
    ]


# the driver as root and as a user: a file its owner made unreadable to others. Root
# reads it (and stores it); a user may not: the snapshot fails, naming it, as git's
# update-index did, rather than leave it out of a snapshot whose restore would delete it
UNREADABLE = """
import json, os, sys
from pathlib import Path
from trestle.workspace.shadow import ShadowRepo, ShadowRepoError

base = Path(sys.argv[1])
ws = base / "ws"
repo = ShadowRepo(base / "shadow.git", ws)
repo.snapshot("before")
(ws / "sub" / "locked.txt").write_text("locked\\n")
(ws / "sub" / "locked.txt").chmod(0)
(ws / "open.txt").write_text("changed\\n")
try:
    repo.snapshot("after")
except ShadowRepoError as exc:
    print(json.dumps({"error": str(exc)}))
else:
    print(json.dumps({"changed": sorted(c.path for c in repo.changes("before", "after"))}))
"""


@pytest.fixture(params=["root", "user"])
def host(request: pytest.FixtureRequest) -> Iterator[tuple[Path, int | None]]:
    def lay_out(base: Path) -> None:
        (base / "ws" / "sub").mkdir(parents=True)
        (base / "ws" / "open.txt").write_text("open\n")

    yield from driver_host(request.param, "trestle-staging-", lay_out)


def test_a_file_the_driver_may_not_read_fails_the_snapshot_naming_it(
    host: tuple[Path, int | None],
) -> None:
    base, uid = host
    said = run_as_driver(base, uid, UNREADABLE, None)
    if uid is None:
        assert said == {"changed": ["open.txt", "sub/locked.txt"]}
    else:
        assert isinstance(said, dict)
        error = said["error"]
        assert "sub/locked.txt" in error and "Permission denied" in error, error


def test_a_first_snapshot_of_more_directories_than_a_process_may_open(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    for i in range(300):
        (ws / f"d{i:03d}" / "e").mkdir(parents=True)
        (ws / f"d{i:03d}" / "e" / "f.txt").write_text(f"{i}\n")
    repo = ShadowRepo(tmp_path / "shadow.git", ws)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (held + 64, hard))  # far fewer than 600
    try:
        commit = repo.snapshot("one")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert len(_git(repo.git_dir, "ls-tree", "-r", "--name-only", commit).split()) == 300


def _before_opening(
    monkeypatch: pytest.MonkeyPatch, directory: str, then: Callable[[], None]
) -> None:
    """Call ``then`` as the walk opens the workspace directory ``directory`` (once)."""
    opened = os.open
    done: list[bool] = []

    def opening(path: str, flags: int, *args: Any, **kwargs: Any) -> int:
        if not done and str(path).rstrip("/").endswith("/" + directory):
            done.append(True)
            then()
        return opened(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", opening)


def test_a_directory_removed_while_the_workspace_is_walked_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a step side by side removes its scratch directory while another step's checkpoint
    # walks the workspace: that checkpoint holds the rest, and its step goes on
    ws = tmp_path / "ws"
    (ws / "scratch" / "deep").mkdir(parents=True)
    (ws / "scratch" / "deep" / "t.txt").write_text("temporary\n")
    (ws / "kept.txt").write_text("kept\n")
    repo = ShadowRepo(tmp_path / "shadow.git", ws)
    _before_opening(monkeypatch, "scratch", lambda: shutil.rmtree(ws / "scratch"))
    commit = repo.snapshot("one")
    monkeypatch.undo()
    assert _git(repo.git_dir, "ls-tree", "-r", "--name-only", commit).split() == ["kept.txt"]


@pytest.mark.parametrize("swapped", ["sub", "sub/inner"])
def test_the_walk_does_not_go_through_a_directory_swapped_for_a_symlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, swapped: str
) -> None:
    # a running step swaps a directory for a symlink to the driver's files between its
    # parent's listing and its own (or, for sub/inner, its parent sub after listing it):
    # the walk must not list, stat or name what is there (a file past the size bound
    # would be named in the snapshot's left-out lines)
    ws = tmp_path / "ws"
    (ws / "sub" / "inner").mkdir(parents=True)
    (ws / "sub" / "inner" / "mine.txt").write_text("the step's\n")
    (ws / "kept.txt").write_text("kept\n")
    outside = tmp_path / "outside"
    (outside / "inner").mkdir(parents=True)
    (outside / "inner" / "driver-secret-name.bin").write_bytes(b"x" * 4096)
    (outside / "driver-secret-name.bin").write_bytes(b"x" * 4096)

    def swap() -> None:
        moved = tmp_path / "moved"
        (ws / "sub").rename(moved)
        (ws / "sub").symlink_to(outside)

    repo = ShadowRepo(tmp_path / "shadow.git", ws, max_file_size=1024)
    _before_opening(monkeypatch, swapped, swap)
    commit = repo.snapshot("one")
    monkeypatch.undo()
    listed = _git(repo.git_dir, "ls-tree", "-r", "--name-only", commit).split()
    message = _git(repo.git_dir, "cat-file", "commit", commit)
    assert "driver-secret-name" not in message
    assert listed == ["kept.txt"]
