"""The gitlinks of a git index, read without git, against ``git ls-files`` itself: index
versions 2, 3 and 4, SHA-1 and SHA-256 repositories, a split index, paths with quotes,
backslashes, tabs and names longer than the flags can hold. An index cut short is
refused, or read whole when only its extensions were cut; one damaged anywhere is
refused or read as some list of paths, never raising anything else."""

from __future__ import annotations

import os
import random
import subprocess
import threading
from pathlib import Path

import pytest

from trestle.workspace import git_index
from trestle.workspace.git_index import Room, UnreadableIndex, _entries, gitlinks

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@x", "-c", "init.defaultBranch=main"]
ODD = ["vendor/a", 'vendor/q"uote\\back', "z/n e w\tx", "aa", "deep/" + "x" * 4200]


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run([*GIT, "-C", str(repo), *args], capture_output=True, check=True)
    return done.stdout.decode()


def _repository(path: Path, *init: str) -> Path:
    subprocess.run([*GIT, "init", "-q", *init, str(path)], check=True)
    for n in range(40):
        (path / f"d{n % 3}").mkdir(exist_ok=True)
        (path / f"d{n % 3}" / f"f{n}").write_text(f"{n}\n")
    _git(path, "add", "-A")
    commit = _git(path, "commit-tree", _git(path, "write-tree").strip(), "-m", "x").strip()
    for link in ODD:
        _git(path, "update-index", "--add", "--cacheinfo", f"160000,{commit},{link}")
    return path


def _listed(repo: Path) -> tuple[bytes, ...]:
    out = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "--stage", "-z"], capture_output=True, check=True
    ).stdout
    return tuple(e.partition(b"\t")[2] for e in out.split(b"\0") if e.startswith(b"160000 "))


@pytest.mark.parametrize("version", ["2", "3", "4"])
@pytest.mark.parametrize("objects", ["sha1", "sha256"])
def test_the_gitlinks_are_those_git_lists(tmp_path: Path, version: str, objects: str) -> None:
    repo = _repository(tmp_path / "r", f"--object-format={objects}")
    _git(repo, "update-index", "--index-version", version)
    if version == "3":  # an entry with the extended flags
        _git(repo, "update-index", "--skip-worktree", "d0/f0")
    assert len(_listed(repo)) == len(ODD)
    assert gitlinks(str(repo / ".git")) == _listed(repo)


def test_a_split_index_is_read_with_its_shared_index(tmp_path: Path) -> None:
    repo = _repository(tmp_path / "r")
    _git(repo, "update-index", "--split-index")
    commit = _git(repo, "commit-tree", _git(repo, "write-tree").strip(), "-m", "y").strip()
    _git(repo, "update-index", "--add", "--cacheinfo", f"160000,{commit},late/link")
    assert list((repo / ".git").glob("sharedindex.*"))
    found = gitlinks(str(repo / ".git"))
    assert found is not None and set(_listed(repo)) == set(found) and b"late/link" in found


def test_no_index_has_no_gitlinks(tmp_path: Path) -> None:
    subprocess.run([*GIT, "init", "-q", str(tmp_path / "r")], check=True)
    assert gitlinks(str(tmp_path / "r" / ".git")) == ()


@pytest.mark.parametrize("version", ["2", "4"])
def test_an_index_cut_short_or_damaged_is_refused_or_read_whole(
    tmp_path: Path, version: str
) -> None:
    repo = _repository(tmp_path / "r")
    _git(repo, "update-index", "--index-version", version)
    data = (repo / ".git" / "index").read_bytes()
    whole = _entries(data, 20)[0]
    refused = 0
    for cut in range(0, len(data) - 20, 7):  # refused, or cut after the entries: all read
        try:
            assert _entries(data[:cut], 20)[0] == whole
        except UnreadableIndex:
            refused += 1
    assert refused > len(data) // 14
    with pytest.raises(UnreadableIndex, match="version 5"):
        _entries(data[:4] + (5).to_bytes(4, "big") + data[8:], 20)
    with pytest.raises(UnreadableIndex, match="DIRC"):
        _entries(b"RIDC" + data[4:], 20)
    draw = random.Random(7)
    for _ in range(500):  # a byte changed anywhere: refused, or some list of paths
        damaged = bytearray(data)
        damaged[draw.randrange(len(data))] = draw.randrange(256)
        try:
            found = _entries(bytes(damaged), 20)[0]
        except UnreadableIndex:
            continue
        assert all(isinstance(path, bytes) for path in found)
    assert len(whole) == len(ODD)


def test_an_index_is_read_once_under_all_its_names_and_only_within_the_room_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _repository(tmp_path / "r")
    other = tmp_path / "linked" / ".git"
    other.mkdir(parents=True)
    os.link(repo / ".git" / "index", other / "index")  # one file, two names
    read: list[int] = []

    def counted(data: bytes, hash_size: int) -> tuple[list[bytes], str | None]:
        read.append(len(data))
        return _entries(data, hash_size)

    monkeypatch.setattr(git_index, "_entries", counted)
    size = (repo / ".git" / "index").stat().st_size
    assert gitlinks(str(other), Room(left=size - 1)) is None  # too large for the room
    room = Room(left=size)
    assert gitlinks(str(repo / ".git"), room) == gitlinks(str(other)) == _listed(repo)
    assert read == [size] and room.left == 0


def test_a_fifo_for_a_configuration_holds_no_one(tmp_path: Path) -> None:
    """A repository a step made: an index with no checksum, so the configuration is
    read for the hash's size, and the configuration a FIFO with no writer."""
    git_dir = tmp_path / ".git"
    git_dir.mkdir()
    (git_dir / "index").write_bytes(b"DIRC" + (2).to_bytes(4, "big") + bytes(4) + bytes(20))
    os.mkfifo(git_dir / "config")
    found: list[object] = []
    reader = threading.Thread(target=lambda: found.append(gitlinks(str(git_dir))), daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert found == [()], "the look waited on the FIFO"
