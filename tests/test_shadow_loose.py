"""A snapshot's commit and ref, written without git, are what git itself would write.

Checked with the real git on the stores the tests make: ``git fsck --strict``, ``git
rev-parse``, ``git cat-file``, and the reflog git keeps where a store asks for one.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from trestle.workspace import loose
from trestle.workspace.shadow import ShadowRepo

PLAIN_ENV = {"PATH": os.environ["PATH"], "LC_ALL": "C"}


def git(git_dir: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", f"--git-dir={git_dir}", *args],
        capture_output=True,
        text=True,
        env=PLAIN_ENV,
        check=True,
    )
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path) -> ShadowRepo:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.txt").write_text("a\n")
    return ShadowRepo(tmp_path / "shadow.git", ws)


def test_commits_and_refs_read_back_through_git(repo: ShadowRepo) -> None:
    first = repo.snapshot("run/s/1/before", "before s", ordered=True)
    (repo.workspace / "a.txt").write_text("changed\n")
    second = repo.snapshot("run/s/1/after", "after s", ordered=True)
    assert loose.plain(repo.git_dir)
    assert git(repo.git_dir, "rev-parse", "refs/trestle/run/s/1/before").strip() == first
    assert git(repo.git_dir, "cat-file", "-t", second).strip() == "commit"
    assert git(repo.git_dir, "fsck", "--strict", "--no-dangling") == ""
    listed = git(repo.git_dir, "for-each-ref", "--format=%(refname) %(objectname)")
    assert listed.split("\n")[:2] == [
        f"refs/trestle/run/s/1/after {second}",
        f"refs/trestle/run/s/1/before {first}",
    ]
    assert [c.path for c in repo.changes(first, second)] == ["a.txt"]
    # the same content in the same second is the same commit, written once, under both
    still = ShadowRepo(repo.git_dir, repo.workspace, clock=lambda: 1_764_230_000.0)
    same = still.snapshot("plain", "same")
    assert still.snapshot("plain-too", "same") == same
    assert git(repo.git_dir, "rev-parse", "refs/trestle/plain-too").strip() == same
    content = git(repo.git_dir, "cat-file", "commit", same).encode()
    assert loose.write_object(repo.git_dir, b"commit", content) == same


def test_a_lock_a_crashed_writer_left_is_taken_over(repo: ShadowRepo) -> None:
    repo.snapshot("run/s/1/before", ordered=True)
    lock = repo.git_dir / "refs/trestle/run/s/1/after.lock"
    lock.write_text("half written")
    taken = repo.snapshot("run/s/1/after", ordered=True)
    assert not lock.exists()
    assert git(repo.git_dir, "rev-parse", "refs/trestle/run/s/1/after").strip() == taken


def test_a_store_laid_out_otherwise_is_written_by_git(repo: ShadowRepo) -> None:
    repo.snapshot("warm")
    git(repo.git_dir, "config", "core.logAllRefUpdates", "always")
    assert not loose.plain(repo.git_dir)
    taken = repo.snapshot("run/s/1/before", ordered=True)
    # git kept the reflog this store asks for, which a ref written here would not
    reflog = repo.git_dir / "logs/refs/trestle/run/s/1/before"
    assert taken in reflog.read_text()
    assert git(repo.git_dir, "fsck", "--strict", "--no-dangling") == ""
