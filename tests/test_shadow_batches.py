"""Snapshots and comparisons asked for at once are served together, with the real git.

Steps that run side by side each snapshot the workspace before and after they run, and
compare the two. Each of those held the store's lock for several git processes, so the
32 steps of a fan-out waited in line for one another's. Now the requests that gather
while the lock is held are served in one go. These tests make the requests gather for
certain: they hold the store's lock themselves until every request has queued.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from trestle.support.combining import Combiner
from trestle.workspace import shadow, staging
from trestle.workspace.shadow import ShadowRepo, UnknownSnapshotError
from trestle.workspace.shadow_changes import pairs_changes

PLAIN_ENV = {"PATH": os.environ["PATH"], "LC_ALL": "C"}


def _until(check: Callable[[], bool]) -> None:
    """Wait for ``check`` (threads queueing): an event with nothing to signal it."""
    done = threading.Event()
    for _ in range(2000):
        if check():
            return
        done.wait(0.005)
    raise AssertionError("the requests never queued")


def _in_threads(calls: Sequence[Callable[[], object]]) -> list[threading.Thread]:
    threads = [threading.Thread(target=call) for call in calls]
    for thread in threads:
        thread.start()
    return threads


# -- the combining lock ------------------------------------------------------------------


def test_requests_queued_while_a_batch_is_served_are_served_together_next() -> None:
    combiner: Combiner[int, int] = Combiner()
    batches: list[list[int]] = []
    first_inside, release = threading.Event(), threading.Event()

    def serve(asked: Sequence[int]) -> list[int]:
        batches.append(list(asked))
        if len(batches) == 1:
            first_inside.set()
            release.wait(10)
        return [a * 10 for a in asked]

    answers: dict[int, int] = {}

    def ask(n: int) -> Callable[[], None]:
        return lambda: answers.__setitem__(n, combiner.call(n, serve))

    leader = _in_threads([ask(0)])
    assert first_inside.wait(10) and combiner.serving == 1
    others = _in_threads([ask(n) for n in (1, 2, 3, 4)])
    _until(lambda: combiner.waiting == 4)
    release.set()
    for thread in leader + others:
        thread.join(10)
    assert batches[0] == [0]
    assert sorted(batches[1]) == [1, 2, 3, 4] and len(batches) == 2
    assert answers == {n: n * 10 for n in range(5)}


def test_an_error_reaches_every_caller_of_its_batch_and_no_later_one() -> None:
    combiner: Combiner[str, str] = Combiner()
    inside, release = threading.Event(), threading.Event()
    calls = 0

    def serve(asked: Sequence[str]) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            inside.set()
            release.wait(10)
            return ["first"]
        if calls == 2:
            raise OSError("the disk is full")
        return [f"fine {a}" for a in asked]

    outcomes: dict[str, str] = {}

    def ask(name: str) -> Callable[[], None]:
        def call() -> None:
            try:
                outcomes[name] = combiner.call(name, serve)
            except OSError as exc:
                outcomes[name] = f"raised {exc}"

        return call

    threads = _in_threads([ask("a")])
    assert inside.wait(10)
    threads += _in_threads([ask("b"), ask("c")])
    _until(lambda: combiner.waiting == 2)
    release.set()
    for thread in threads:
        thread.join(10)
    assert outcomes == {
        "a": "first",
        "b": "raised the disk is full",
        "c": "raised the disk is full",
    }
    assert combiner.call("d", serve) == "fine d"


def test_a_serve_that_answers_the_wrong_number_fails_its_callers() -> None:
    combiner: Combiner[int, int] = Combiner()
    with pytest.raises(RuntimeError, match="0 answers to 1 requests"):
        combiner.call(1, lambda asked: [])


# -- the shadow store --------------------------------------------------------------------


@contextmanager
def _store_held(git_dir: Path) -> Iterator[None]:
    """Hold the shadow store's lock, as another process taking a snapshot would."""
    fd = os.open(git_dir / "trestle.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _counting_git(tmp_path: Path) -> tuple[str, Path]:
    """A ``git`` that notes each subcommand it runs, then runs the real one."""
    log = tmp_path / "git.log"
    script = tmp_path / "git-counting"
    real = subprocess.run(["sh", "-c", "command -v git"], capture_output=True, text=True)
    script.write_text(
        "#!/bin/sh\n"
        f'for a in "$@"; do case "$a" in -*|*=*) ;; *) echo "$a" >> {log}; break;; esac; done\n'
        f'exec {real.stdout.strip()} "$@"\n'
    )
    script.chmod(0o755)
    return str(script), log


def _ran(log: Path, subcommand: str) -> int:
    return log.read_text().split().count(subcommand) if log.exists() else 0


def _workspace(tmp_path: Path, files: int = 5) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    for i in range(files):
        (ws / f"f{i}.txt").write_text(f"file {i}\n")
    return ws


def _git_read(git_dir: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["git", f"--git-dir={git_dir}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**PLAIN_ENV, **(env or {})},
        check=True,
    )
    return done.stdout


def _gathered(repo: ShadowRepo, names: Sequence[str], message: str) -> dict[str, str]:
    """Ordered snapshots under ``names``, the first taken alone and the rest together:
    the test holds the store's lock until they have all asked."""
    taken: dict[str, str] = {}

    def take(name: str) -> Callable[[], None]:
        return lambda: taken.__setitem__(name, repo.snapshot(name, message + name, ordered=True))

    combiner = shadow._TAKING[repo._staging_key]
    with _store_held(repo.git_dir):
        threads = _in_threads([take(names[0])])
        _until(lambda: combiner.serving == 1)  # the first has taken its batch: itself
        threads += _in_threads([take(n) for n in names[1:]])
        _until(lambda: combiner.waiting == len(names) - 1)
    for thread in threads:
        thread.join(30)
    return taken


def test_snapshots_asked_at_once_are_staged_once_and_each_kept_under_its_own_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = _workspace(tmp_path)
    git, log = _counting_git(tmp_path)
    repo = ShadowRepo(tmp_path / "shadow.git", ws, git=git)
    repo.snapshot("warm", ordered=True)  # the store made, and found safe
    log.unlink()
    stagings: list[int] = []
    stage = staging.stage

    def counted(*args: Any) -> staging.Staged:
        stagings.append(1)
        return stage(*args)

    monkeypatch.setattr(staging, "stage", counted)
    names = [f"run/w{i}/1/before" for i in range(6)]
    taken = _gathered(repo, names, "before ")
    assert sorted(taken) == sorted(names)
    # two batches (the first, then the five that queued behind it), two stagings; the
    # index, blobs, trees, commits and refs written as git writes them, with no process
    assert len(stagings) == 2
    for written in ("update-index", "write-tree", "commit-tree", "update-ref"):
        assert _ran(log, written) == 0, written
    assert _git_read(repo.git_dir, "fsck", "--strict", "--no-dangling") == ""
    listed = {r.name: r for r in repo.list("run")}
    assert {n: listed[n].commit for n in names} == taken
    assert len(set(taken.values())) == 6  # a commit each: each names its own step
    assert {listed[n].message for n in names} == {f"before {n}" for n in names}
    orders = [r.order for r in listed.values()]
    assert None not in orders and len(set(orders)) == 6
    assert listed[names[0]].order == min(o for o in orders if o is not None)
    assert len({r.tree for r in listed.values()}) == 1


def test_a_snapshot_is_the_very_commit_git_commit_tree_writes(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    (ws / "big.bin").write_bytes(b"x" * 2048)
    git_dir = tmp_path / "shadow.git"
    repo = ShadowRepo(git_dir, ws, clock=lambda: 1_764_230_000.7, max_file_size=1024)
    commits = {
        "plain": repo.snapshot("plain", "before build\nsecond line"),
        **_gathered(repo, ["alone", "together/1", "together/2"], "before build\nof "),
    }
    for name, commit in commits.items():
        raw = _git_read(git_dir, "cat-file", "commit", commit)
        tree = raw.split("\n", 1)[0].removeprefix("tree ")
        message = raw.split("\n\n", 1)[1]
        assert "big.bin" in message  # the file left out for its size, named
        assert ("trestle-order: " in message) == (name != "plain")
        date = {"GIT_AUTHOR_DATE": "@1764230000 +0000", "GIT_COMMITTER_DATE": "@1764230000 +0000"}
        names = {"GIT_AUTHOR_NAME": "Trestle", "GIT_AUTHOR_EMAIL": "trestle@localhost"}
        names |= {"GIT_COMMITTER_NAME": "Trestle", "GIT_COMMITTER_EMAIL": "trestle@localhost"}
        again = _git_read(git_dir, "commit-tree", tree, stdin=message, env=date | names)
        assert again.strip() == commit, name


def test_comparisons_asked_at_once_run_one_diff_and_a_bad_name_fails_only_its_own(
    tmp_path: Path,
) -> None:
    ws = _workspace(tmp_path)
    git, log = _counting_git(tmp_path)
    git_dir = tmp_path / "shadow.git"
    repo = ShadowRepo(git_dir, ws, git=git)
    first = repo.snapshot("first")
    (ws / "f0.txt").write_text("changed\n")
    (ws / "new file\nwith a line break").write_text("new\n")
    (ws / "f1.txt").unlink()
    second = repo.snapshot("second")
    (ws / "f2.txt").chmod(0o755)
    third = repo.snapshot("third")
    expected = {
        (first, second): [
            ("f0.txt", "modified"),
            ("f1.txt", "deleted"),
            ("new file\nwith a line break", "added"),
        ],
        (second, third): [("f2.txt", "mode")],
        (third, third): [],
        ("first", "third"): [
            ("f0.txt", "modified"),
            ("f1.txt", "deleted"),
            ("f2.txt", "mode"),
            ("new file\nwith a line break", "added"),
        ],
    }
    log.unlink()
    found: dict[tuple[str, str], object] = {}

    def compare(a: str, b: str) -> Callable[[], None]:
        def call() -> None:
            try:
                found[(a, b)] = sorted((c.path, c.kind) for c in repo.changes(a, b))
            except UnknownSnapshotError as exc:
                found[(a, b)] = exc

        return call

    combiner = shadow._COMPARING[repo._staging_key]
    pairs = [*expected, ("first", "no-such-snapshot")]
    with _store_held(git_dir):
        threads = _in_threads([compare(*pairs[0])])
        _until(lambda: combiner.serving == 1)
        threads += _in_threads([compare(a, b) for a, b in pairs[1:]])
        _until(lambda: combiner.waiting == len(pairs) - 1)
    for thread in threads:
        thread.join(30)
    assert isinstance(found.pop(("first", "no-such-snapshot")), UnknownSnapshotError)
    assert found == expected
    assert _ran(log, "diff-tree") == 2
    # asked one at a time, the same answers
    for (a, b), changes in expected.items():
        assert sorted((c.path, c.kind) for c in repo.changes(a, b)) == changes


def test_diff_tree_output_for_many_pairs_is_read_pair_by_pair() -> None:
    oid = "1" * 40
    entry = f":100644 100644 {oid} {'2' * 40} M".encode()
    head = f"{'a' * 40} {'b' * 40}\n".encode()
    out = head + head + entry + b"\0:odd\nname\0" + head + entry + b"\0x\0"
    read = pairs_changes(out, 3)
    assert [[c.path for c in pair] for pair in read] == [[], [":odd\nname"], ["x"]]
    with pytest.raises(ValueError, match="answered 3 of 4"):
        pairs_changes(out, 4)
    with pytest.raises(ValueError, match="an entry before a pair"):
        pairs_changes(entry + b"\0x\0", 1)


def test_a_step_that_changed_nothing_is_compared_without_a_process(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    git, log = _counting_git(tmp_path)
    repo = ShadowRepo(tmp_path / "shadow.git", ws, git=git)
    before = repo.snapshot("run/s/1/before", ordered=True)
    after = repo.snapshot("run/s/1/after", ordered=True)
    (ws / "f0.txt").write_text("changed\n")
    later = repo.snapshot("run/t/1/after", ordered=True)
    log.unlink(missing_ok=True)
    assert repo.changes(before, after) == []
    assert not log.exists()  # one tree on both sides: nothing to ask git
    assert [c.path for c in repo.changes(after, later)] == ["f0.txt"]
    assert _ran(log, "diff-tree") == 1
