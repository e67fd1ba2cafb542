"""Workspace checkpoints against the real git binary, real files and real shell commands.

Every test builds its own workspace and shadow store under ``tmp_path``, changes files
with ``sh -c`` the way a step would, and compares what is on disk (a manifest of every
path: type, executable bit, content hash or link target) before and after. Tests that
use a real user repository also compare that repository's whole git state, byte for
byte, before and after.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from trestle.core.errors import ConfigError, RunError
from trestle.workspace.shadow import (
    RestoreConflictError,
    ShadowRepo,
    ShadowRepoError,
    UnknownSnapshotError,
)
from trestle.workspace.shadow_files import IgnoreGlobs, snapshot_name_problem
from trestle.workspace.staging import read_index

Manifest = dict[str, tuple[str, ...]]
PLAIN_ENV = {"PATH": os.environ["PATH"], "LC_ALL": "C"}  # for reading the shadow store


@pytest.fixture
def git_env(tmp_path: Path) -> dict[str, str]:
    """The environment for the test's own git commands (acting as the user)."""
    config = tmp_path / "user.gitconfig"
    config.write_text("[user]\n\tname = User\n\temail = user@example.com\n")
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": str(config),
        "GIT_OPTIONAL_LOCKS": "0",  # so `git status` never refreshes the user's index
        "LC_ALL": "C",
    }


def sh(cwd: Path, script: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["sh", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"{script!r} failed: {done.stderr}"
    return done.stdout


def manifest(root: Path) -> Manifest:
    """Every directory, file and symlink under ``root`` except ``.git``: what restore keeps."""
    found: Manifest = {}
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in [*dirnames, *filenames]:
            path = base / name
            rel = path.relative_to(root).as_posix()
            if name == ".git":
                continue
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                found[rel] = ("dir",)
            else:
                exe = "x" if os.access(path, os.X_OK) else "-"
                found[rel] = ("file", exe, hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def git_state(repo: Path, env: dict[str, str]) -> dict[str, str]:
    """The user's repository as git sees it, plus a hash of every file under ``.git``."""
    state = {}
    for path in sorted((repo / ".git").rglob("*")):
        if path.is_file() and not path.is_symlink():
            state[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    for args in (
        ["status", "--porcelain=v2", "--branch", "--untracked-files=all"],
        ["stash", "list"],
        ["config", "-l", "--local"],
        ["branch", "-a", "-v"],
        ["reflog", "--all"],
    ):
        state[" ".join(args)] = sh(repo, "git " + " ".join(args), env)
    return state


def objects(git_dir: Path, env: dict[str, str]) -> dict[str, str]:
    """Every object in the shadow store: id -> type."""
    out = subprocess.run(
        ["git", "--git-dir", str(git_dir), "cat-file", "--batch-all-objects", "--batch-check"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.split()[0]: line.split()[1] for line in out.splitlines()}


def tree_entries(git_dir: Path, commit: str, env: dict[str, str]) -> dict[str, str]:
    """path -> git mode of every entry in a snapshot."""
    out = subprocess.run(
        ["git", "--git-dir", str(git_dir), "ls-tree", "-r", "-z", commit],
        env=env,
        capture_output=True,
        check=True,
    ).stdout
    entries = {}
    for record in out.split(b"\0"):
        if record:
            meta, path = record.split(b"\t", 1)
            entries[os.fsdecode(path)] = meta.split()[0].decode()
    return entries


def make_user_repo(root: Path, env: dict[str, str]) -> None:
    """A repository with history, a branch, a stash, staged, unstaged and untracked work."""
    root.mkdir()
    sh(
        root,
        """
        git init -q -b main .
        git config core.autocrlf false
        git config trestle.test "local value"
        printf 'one\\n' > tracked.txt
        printf 'keep\\n' > staged.txt
        mkdir -p src && printf 'print(1)\\n' > src/app.py
        printf '*.log\\n' > .gitignore
        git add -A && git commit -q -m first
        git branch feature
        printf 'stashed\\n' >> tracked.txt && git stash -q
        printf 'staged change\\n' >> staged.txt && git add staged.txt
        printf 'unstaged change\\n' >> tracked.txt
        printf 'untracked\\n' > untracked.txt
        printf 'noise\\n' > debug.log
        printf 'windows\\r\\n' > crlf.txt
        printf '#!/bin/sh\\ntouch "$GIT_DIR/../hook-ran"\\n' > .git/hooks/post-commit
        chmod +x .git/hooks/post-commit
        """,
        env,
    )


def test_round_trip_in_a_plain_directory(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    sh(
        ws,
        """
        printf 'alpha\\n' > a.txt
        mkdir -p lib/deep && printf 'x = 1\\n' > lib/deep/mod.py
        printf '#!/bin/sh\\necho hi\\n' > run.sh && chmod +x run.sh
        printf 'plain\\n' > tool && printf 'was a file\\n' > becomes_dir
        mkdir was_dir && printf 'inside\\n' > was_dir/f
        """,
    )
    before = manifest(ws)
    repo = ShadowRepo(tmp_path / "shadow.git", ws)
    commit = repo.snapshot("run-1/build/before", "before build")
    sh(
        ws,
        """
        printf 'beta\\n' >> a.txt
        rm lib/deep/mod.py
        chmod -x run.sh && chmod +x tool
        mkdir -p new/nested/dirs && printf 'made\\n' > new/nested/dirs/out.txt
        printf 'fresh\\n' > lib/deep/other.py
        rm becomes_dir && mkdir becomes_dir && printf 'child\\n' > becomes_dir/c
        rm -r was_dir && printf 'now a file\\n' > was_dir
        """,
    )
    assert manifest(ws) != before

    result = repo.restore(commit)

    assert manifest(ws) == before
    assert result.deleted == (
        "becomes_dir/c",
        "lib/deep/other.py",
        "new/nested/dirs/out.txt",
        "was_dir",
    )
    assert result.restored == ("a.txt", "run.sh", "tool")
    assert result.recreated == ("becomes_dir", "lib/deep/mod.py", "was_dir/f")
    assert result.removed_dirs == ("becomes_dir", "new", "new/nested", "new/nested/dirs")
    assert result.changed
    assert not repo.restore("run-1/build/before").changed  # already there: nothing to do


def test_user_repository_is_never_touched(
    tmp_path: Path, git_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "repo"
    make_user_repo(ws, git_env)
    sh(ws, "git status >/dev/null", git_env)  # let git settle anything it lazily writes
    before_state = git_state(ws, git_env)
    before_files = manifest(ws)
    # The caller's environment points git at the user's repository and at hostile
    # settings; none of it may reach the shadow store's commands.
    home = tmp_path / "home"
    home.mkdir()
    hostile = home / ".gitconfig"
    hostile.write_text("[core]\n\tautocrlf = input\n\texcludesFile = /etc/passwd\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(hostile))
    monkeypatch.setenv("GIT_DIR", str(ws / ".git"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(ws / ".git" / "index"))
    monkeypatch.setenv("GIT_WORK_TREE", str(ws))
    monkeypatch.setenv("GIT_OBJECT_DIRECTORY", str(ws / ".git" / "objects"))
    monkeypatch.setenv("GIT_AUTHOR_DATE", "@1 +0000")

    repo = ShadowRepo(tmp_path / "shadow.git", ws)
    first = repo.snapshot("s/1")
    sh(
        ws,
        """
        printf 'edited by a step\\n' >> tracked.txt
        printf 'line\\r\\n' >> crlf.txt
        rm staged.txt
        printf 'created\\r\\n' > created.txt
        chmod +x src/app.py
        printf 'more noise\\n' >> debug.log
        """,
    )
    kinds = {c.path: c.kind for c in repo.changes("s/1")}
    assert kinds == {
        "tracked.txt": "modified",
        "crlf.txt": "modified",
        "staged.txt": "deleted",
        "created.txt": "added",
        "src/app.py": "mode",
    }
    assert "+edited by a step" in repo.diff("s/1")
    second = repo.snapshot("s/2")
    assert [c.path for c in repo.changes(first, second)] == sorted(kinds)
    repo.list()
    repo.restore(first)

    after_files = manifest(ws)
    assert after_files.pop("debug.log") != before_files.pop("debug.log")  # ignored: kept
    assert after_files == before_files
    assert git_state(ws, git_env) == before_state
    assert not (ws / "hook-ran").exists()
    # The snapshot holds the user's untracked file and none of their git internals.
    entries = tree_entries(tmp_path / "shadow.git", first, git_env)
    assert "untracked.txt" in entries
    assert "debug.log" not in entries
    assert not any(p.startswith(".git/") for p in entries)


def test_symlinks_stay_symlinks_and_are_never_followed(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    outside = tmp_path / "outside"
    ws.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("not ours\n")
    sh(
        ws,
        f"""
        printf 'target\\n' > target.txt
        ln -s target.txt to_file
        ln -s {outside} to_outside
        ln -s missing dangling
        mkdir d && ln -s ../target.txt d/up
        printf 'regular\\n' > becomes_link
        """,
    )
    before = manifest(ws)
    repo = ShadowRepo(tmp_path / "shadow.git", ws)
    snap = repo.snapshot("links")
    entries = tree_entries(tmp_path / "shadow.git", snap, PLAIN_ENV)
    assert entries["to_outside"] == "120000"
    assert entries["dangling"] == "120000"
    assert not any(p.startswith("to_outside/") for p in entries)
    sh(
        ws,
        f"""
        ln -sfn d to_file
        rm dangling && printf 'now a file\\n' > dangling
        rm becomes_link && ln -s target.txt becomes_link
        printf 'written through the link\\n' > {outside}/created.txt
        """,
    )
    result = repo.restore("links")
    assert manifest(ws) == before
    assert set(result.restored) == {"to_file", "dangling", "becomes_link"}
    assert sorted(os.listdir(outside)) == ["created.txt", "secret.txt"]  # never touched


def test_odd_names_binary_content_and_attributes_round_trip(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    names = [
        "with space.txt",
        "ünïcødé-日本.txt",
        ":colon-first",
        "*star",
        "-dash",
        "new\nline",
        "[brackets]",
        "dir with space/inner file",
    ]
    for name in names:
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_bytes(name.encode() + b"\r\n")
    (ws / "blob.bin").write_bytes(bytes(range(256)) * 64)
    (ws / "crlf.txt").write_bytes(b"line one\r\nline two\r\n")
    (ws / "lf.txt").write_bytes(b"lf only\n")
    # Attributes that would rewrite bytes in a normal repository must not apply here.
    (ws / ".gitattributes").write_text("* text=auto eol=crlf\n*.bin filter=lfs diff=lfs\n")
    before = manifest(ws)
    repo = ShadowRepo(tmp_path / "shadow.git", ws)
    repo.snapshot("odd")
    sh(ws, "rm -rf ./* ./.gitattributes && printf 'x' > '\\-other'")
    assert list(manifest(ws)) == ["\\-other"]
    result = repo.restore("odd")
    assert manifest(ws) == before
    assert set(result.recreated) == {*names, "blob.bin", "crlf.txt", "lf.txt", ".gitattributes"}
    assert result.deleted == ("\\-other",)
    assert repo.diff("odd") == ""
    (ws / "blob.bin").write_bytes(b"\0changed")
    assert "Binary files a/blob.bin and b/blob.bin differ" in repo.diff("odd")


def test_ignored_paths_are_neither_saved_nor_restored(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    sh(
        ws,
        """
        printf '*.log\\nbuild/\\n!keep.log\\n' > .gitignore
        mkdir -p build src/cache logs
        printf 'artifact\\n' > build/out.o
        printf 'code\\n' > src/main.c
        printf 'cached\\n' > src/cache/blob
        printf 'old log\\n' > logs/run.log
        printf 'kept log\\n' > keep.log
        printf 'scratch\\n' > notes.tmp
        """,
    )
    repo = ShadowRepo(tmp_path / "shadow.git", ws, ignore=["cache/", "*.tmp"])
    snap = repo.snapshot("ignored")
    entries = tree_entries(tmp_path / "shadow.git", snap, PLAIN_ENV)
    assert sorted(entries) == [".gitignore", "keep.log", "src/main.c"]
    sh(
        ws,
        """
        printf 'new log\\n' >> logs/run.log
        printf 'fresh\\n' > logs/extra.log
        printf 'not ignored\\n' > logs/readme
        rm build/out.o && printf 'rebuilt\\n' > build/other.o
        printf 'changed\\n' > src/cache/blob
        rm notes.tmp
        mkdir -p gen/a && printf 'gen\\n' > gen/a/file
        """,
    )
    ignored_before = {p: v for p, v in manifest(ws).items() if not p.startswith("gen")}
    del ignored_before["logs/readme"]
    result = repo.restore(snap)
    assert result.deleted == ("gen/a/file", "logs/readme")
    assert result.removed_dirs == ("gen", "gen/a")  # logs/ still holds ignored files
    assert manifest(ws) == ignored_before

    # Without .gitignore the same files are recorded; the caller's globs still apply.
    plain = ShadowRepo(tmp_path / "shadow.git", ws, ignore=["cache/"], use_gitignore=False)
    entries = tree_entries(tmp_path / "shadow.git", plain.snapshot("all"), PLAIN_ENV)
    assert {"build/other.o", "logs/run.log", "logs/extra.log"} <= set(entries)
    assert "src/cache/blob" not in entries


def test_restore_leaves_paths_ignored_now_alone(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "data.csv").write_text("v1\n")
    repo = ShadowRepo(tmp_path / "shadow.git", ws, ignore=["*.csv"])
    unignored = ShadowRepo(tmp_path / "shadow.git", ws)
    unignored.snapshot("with-csv")
    (ws / "data.csv").write_text("v2\n")
    result = repo.restore("with-csv")
    assert result.skipped_ignored == ("data.csv",)
    assert (ws / "data.csv").read_text() == "v2\n"


def test_restore_refuses_to_destroy_ignored_files(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "out").write_text("a file\n")
    (ws / "other.txt").write_text("one\n")
    repo = ShadowRepo(tmp_path / "shadow.git", ws, ignore=["*.o"])
    repo.snapshot("file")
    sh(ws, "rm out && mkdir out && echo obj > out/x.o && echo two > other.txt")
    before = manifest(ws)
    with pytest.raises(RestoreConflictError, match=r"'out'.*'out/x\.o'"):
        repo.restore("file")
    assert manifest(ws) == before  # refused before anything changed


def test_nested_repository_is_recorded_as_plain_files(
    tmp_path: Path, git_env: dict[str, str]
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "top.txt").write_text("top\n")
    make_user_repo(ws / "vendor", git_env)
    nested_state = git_state(ws / "vendor", git_env)
    repo = ShadowRepo(tmp_path / "shadow.git", ws)
    snap = repo.snapshot("nested")
    entries = tree_entries(tmp_path / "shadow.git", snap, git_env)
    assert "160000" not in entries.values()  # no gitlinks
    assert entries["vendor/tracked.txt"] == "100644"
    assert "vendor/untracked.txt" in entries
    assert "vendor/debug.log" not in entries  # the nested .gitignore applies
    sh(ws, "echo broken > vendor/src/app.py && echo new > vendor/new.txt")
    repo.restore(snap)
    assert (ws / "vendor/src/app.py").read_text() == "print(1)\n"
    assert not (ws / "vendor/new.txt").exists()
    assert git_state(ws / "vendor", git_env) == nested_state


def test_changes_and_diff_between_snapshots_and_now(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    sh(
        ws,
        "printf 'a\\n' > keep; printf 'b\\n' > edit; printf 'c\\n' > gone; printf 'd\\n' > exe",
    )
    repo = ShadowRepo(tmp_path / "shadow.git", ws)
    one = repo.snapshot("one")
    sh(ws, "printf 'b2\\n' >> edit && rm gone && chmod +x exe && printf 'n\\n' > added")
    assert [(c.path, c.kind, c.old_mode, c.new_mode) for c in repo.changes("one")] == [
        ("added", "added", "", "100644"),
        ("edit", "modified", "100644", "100644"),
        ("exe", "mode", "100644", "100755"),
        ("gone", "deleted", "100644", ""),
    ]
    two = repo.snapshot("two")
    assert repo.changes(one, two) == repo.changes("one")
    assert repo.changes("two") == []
    assert repo.diff("two") == ""
    text = repo.diff("one", "two")
    assert "diff --git a/edit b/edit" in text
    assert "+b2" in text
    assert "deleted file mode 100644" in text
    assert "old mode 100644\nnew mode 100755" in text
    assert [c.kind for c in repo.changes("two", "one")] == ["deleted", "modified", "mode", "added"]


def test_unchanged_tree_costs_nothing(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    for i in range(30):
        (ws / f"d{i % 3}").mkdir(exist_ok=True)
        (ws / f"d{i % 3}" / f"f{i}.txt").write_text(f"file {i}\n")
    git_dir = tmp_path / "shadow.git"
    env = PLAIN_ENV
    ticks = iter(range(1_700_000_000, 1_700_000_100))
    repo = ShadowRepo(git_dir, ws, clock=lambda: next(ticks))
    first = repo.snapshot("a", "same")
    after_first = objects(git_dir, env)
    assert repo.snapshot("a", "same") == first
    assert objects(git_dir, env) == after_first  # same name, same tree: nothing written

    second = repo.snapshot("b", "same")
    added = set(objects(git_dir, env)) - set(after_first)
    assert added == {second}
    assert objects(git_dir, env)[second] == "commit"
    trees = {r.name: r.tree for r in repo.list()}
    assert trees["a"] == trees["b"]

    (ws / "d1" / "f1.txt").write_text("changed\n")
    third = repo.snapshot("c")
    new_objects = {o: t for o, t in objects(git_dir, env).items() if o not in after_first}
    assert sorted(new_objects.values()) == ["blob", "commit", "commit", "tree", "tree"]
    assert third in new_objects


def test_list_names_messages_and_delete(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "f").write_text("x\n")
    now = [1_700_000_000.0]
    repo = ShadowRepo(tmp_path / "shadow.git", ws, clock=lambda: now[0])
    for name in ("run-10/s1", "run-1/s2", "run-1/s1"):
        now[0] += 60
        repo.snapshot(name, f"before {name}\n\nwith détails")
    listed = repo.list()
    assert [r.name for r in listed] == ["run-10/s1", "run-1/s2", "run-1/s1"]
    assert listed[0].time == datetime(2023, 11, 14, 22, 14, 20, tzinfo=UTC)
    assert listed[1].message == "before run-1/s2\n\nwith détails"
    assert [r.name for r in repo.list("run-1")] == ["run-1/s2", "run-1/s1"]
    assert repo.resolve(listed[2].commit[:10]) == listed[2].commit
    assert repo.resolve("run-1/s1") == listed[2].commit

    assert repo.delete("run-1/") == ["run-1/s2", "run-1/s1"]
    assert [r.name for r in repo.list()] == ["run-10/s1"]
    with pytest.raises(UnknownSnapshotError, match="'run-1/s1'"):
        repo.restore("run-1/s1")
    with pytest.raises(ConfigError, match="empty prefix"):
        repo.delete("")
    with pytest.raises(ConfigError, match=r"snapshot prefix '\*'"):
        repo.delete("*")
    for bad in ("", "a..b", "has space", "x/.hidden", "end/", "a.lock", "-opt"):
        with pytest.raises(ConfigError, match="snapshot name"):
            repo.snapshot(bad)
    with pytest.raises(UnknownSnapshotError):
        repo.diff("deadbeef")
    repo.prune()
    assert [r.name for r in repo.list()] == ["run-10/s1"]
    assert repo.restore("run-10/s1").changed is False


def test_a_failing_git_command_names_the_command_and_stderr(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    repo = ShadowRepo(tmp_path / "shadow.git", ws)
    repo.snapshot("step")
    with pytest.raises(ShadowRepoError, match=r"cannot write snapshot 'step/inner' in") as said:
        repo.snapshot("step/inner")  # a ref cannot be both a name and a directory
    assert "refs/trestle/step" in str(said.value) and isinstance(said.value, RunError)

    # a store laid out otherwise (here: keeping reflogs) has git write its refs
    other = ShadowRepo(tmp_path / "logged.git", ws)
    other.snapshot("step")
    sh(tmp_path, "git --git-dir=logged.git config core.logAllRefUpdates true", PLAIN_ENV)
    with pytest.raises(ShadowRepoError) as caught:
        other.snapshot("step/inner")
    assert isinstance(caught.value, RunError)
    assert caught.value.command[1] == "update-ref"
    assert "refs/trestle/step" in caught.value.stderr
    assert "'git update-ref" in str(caught.value)

    missing = ShadowRepo(tmp_path / "other.git", ws, git=str(tmp_path / "no-such-git"))
    with pytest.raises(ShadowRepoError, match=r"cannot run git .*no-such-git"):
        missing.snapshot("x")


def test_store_inside_the_workspace_is_not_snapshotted(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "f").write_text("x\n")
    (ws / ".trestle").mkdir()
    (ws / ".trestle" / "trestle.db").write_text("db")
    repo = ShadowRepo(ws / "checkpoints.git", ws)
    snap = repo.snapshot("one")
    assert list(tree_entries(ws / "checkpoints.git", snap, PLAIN_ENV)) == ["f"]
    (ws / "f").write_text("y\n")
    repo.restore(snap)
    assert (ws / "f").read_text() == "x\n"
    assert (ws / "checkpoints.git" / "objects").is_dir()
    assert (ws / ".trestle" / "trestle.db").read_text() == "db"


def test_concurrent_snapshots_from_threads_and_another_process(tmp_path: Path) -> None:
    git_dir = tmp_path / "shadow.git"
    workspaces = []
    for i in range(2):
        ws = tmp_path / f"ws{i}"
        ws.mkdir()
        for j in range(20):
            (ws / f"f{j}.txt").write_text(f"{i}:{j}\n")
        workspaces.append(ws)
    expected = [
        ShadowRepo(git_dir, ws).snapshot(f"expected/{i}") for i, ws in enumerate(workspaces)
    ]
    trees = {r.name: r.tree for r in ShadowRepo(git_dir, workspaces[0]).list("expected")}
    shared = ShadowRepo(git_dir, workspaces[0])
    script = (
        "import sys; from pathlib import Path; from trestle.workspace.shadow import ShadowRepo\n"
        "r = ShadowRepo(Path(sys.argv[1]), Path(sys.argv[2]))\n"
        "for n in range(6): r.snapshot(f'proc/{n}')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(git_dir), str(workspaces[1])])
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for n in range(4):
                ws_index = (k + n) % 2
                repo = (
                    shared if ws_index == 0 and k % 2 else ShadowRepo(git_dir, workspaces[ws_index])
                )
                repo.snapshot(f"thread{k}/{n}/ws{ws_index}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert proc.wait() == 0
    assert errors == []
    listed = ShadowRepo(git_dir, workspaces[0]).list()
    assert len(listed) == 2 + 6 * 4 + 6
    for ref in listed:
        ws_index = 1 if ref.name.startswith("proc/") else int(ref.name[-1])
        assert ref.tree == trees[f"expected/{ws_index}"], ref.name
    assert len(set(expected)) == 2


@pytest.mark.parametrize(
    ("glob", "path", "is_dir", "hit"),
    [
        ("*.log", "a/b/run.log", False, True),
        ("*.log", "a/run.log.txt", False, False),
        ("build/", "x/build", True, True),
        ("build/", "x/build", False, False),
        ("/build", "build", True, True),
        ("/build", "x/build", True, False),
        ("src/*.c", "src/a.c", False, True),
        ("src/*.c", "src/sub/a.c", False, False),
        ("src/**/*.c", "src/sub/deep/a.c", False, True),
        ("src/**/*.c", "src/a.c", False, True),
        ("**/cache", "a/b/cache", True, True),
        ("data/**", "data/x/y", False, True),
        ("file?.[ch]", "file1.c", False, True),
        ("file[!0-9].c", "file1.c", False, False),
    ],
)
def test_ignore_globs(glob: str, path: str, is_dir: bool, hit: bool) -> None:
    assert IgnoreGlobs([glob]).matches(path, path.rsplit("/", 1)[-1], is_dir) is hit


def test_ignore_globs_and_names_refuse_what_they_cannot_mean() -> None:
    with pytest.raises(ConfigError, match="negation"):
        IgnoreGlobs(["!keep"])
    with pytest.raises(ConfigError, match="empty"):
        IgnoreGlobs(["  "])
    assert IgnoreGlobs(["out/"]).matches_path("out/deep/file")
    assert snapshot_name_problem("run-1/step.a/before") == ""
    assert "'..'" in snapshot_name_problem("a..b")
    assert "@{" in snapshot_name_problem("a@{1}")


def test_gitignore_rules_changed_between_snapshots_take_effect(tmp_path: Path) -> None:
    # git's answers about the .gitignore rules are kept between snapshots while the
    # .gitignore files stay the same: a rewrite (even of the same size), a new one
    # deeper down and one removed must each be seen at the next snapshot
    ws = tmp_path / "ws"
    (ws / "sub").mkdir(parents=True)
    for name in ("a.log", "b.log", "sub/c.log"):
        (ws / name).write_text(f"{name}\n")
    (ws / ".gitignore").write_text("a.log\n")
    repo = ShadowRepo(tmp_path / "shadow.git", ws)

    def changed(a: str, b: str) -> list[tuple[str, str]]:
        return sorted((c.path, c.kind) for c in repo.changes(a, b))

    repo.snapshot("one")
    (ws / ".gitignore").write_text("b.log\n")
    repo.snapshot("two")
    (ws / "sub" / ".gitignore").write_text("c.log\n")
    repo.snapshot("three")
    (ws / "sub" / ".gitignore").unlink()
    repo.snapshot("four")

    assert changed("one", "two") == [
        (".gitignore", "modified"),
        ("a.log", "added"),
        ("b.log", "deleted"),
    ]
    assert changed("two", "three") == [("sub/.gitignore", "added"), ("sub/c.log", "deleted")]
    assert changed("three", "four") == [("sub/.gitignore", "deleted"), ("sub/c.log", "added")]


def test_the_index_is_read_as_git_lists_it(tmp_path: Path) -> None:
    # a snapshot reads the paths of its index itself instead of running `git ls-files`
    ws = tmp_path / "ws"
    names = ["a", "b" * 7, "c" * 8, "dir/x" * 3, "ünï cödé.txt", "-dash", "sp ace/é"]
    names.append("/".join(["d" * 200] * 17))  # a long path: entries are padded to 8 bytes
    for name in names:
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_text(name)
    repo = ShadowRepo(tmp_path / "shadow.git", ws)
    repo.snapshot("one")
    (ws / "a").unlink()
    repo.snapshot("two")
    [index] = (tmp_path / "shadow.git" / "trestle-index").iterdir()
    listed = subprocess.run(
        ["git", "ls-files", "-z"],
        env={**PLAIN_ENV, "GIT_DIR": str(tmp_path / "shadow.git"), "GIT_INDEX_FILE": str(index)},
        capture_output=True,
        check=True,
    ).stdout

    assert list(read_index(index.read_bytes()) or {}) == [
        os.fsdecode(p) for p in listed.split(b"\0") if p
    ]
    assert [c.path for c in repo.changes("one", "two")] == ["a"]
    assert read_index(b"DIRC\0\0\0\x04\0\0\0\0") is None  # version 4: git lists it


def test_an_index_another_process_wrote_is_read_again_not_taken_as_left(
    tmp_path: Path,
) -> None:
    # this process keeps the paths it last staged; another staging the same workspace
    # adds one to the index, which is then deleted: it must leave the next snapshot
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "kept.txt").write_text("kept\n")
    git_dir = tmp_path / "shadow.git"
    repo = ShadowRepo(git_dir, ws)
    repo.snapshot("before")
    (ws / "brief.txt").write_text("here a moment\n")
    script = (
        "import sys; from pathlib import Path; from trestle.workspace.shadow import ShadowRepo\n"
        "ShadowRepo(Path(sys.argv[1]), Path(sys.argv[2])).snapshot('elsewhere')\n"
    )
    subprocess.run([sys.executable, "-c", script, str(git_dir), str(ws)], check=True)
    (ws / "brief.txt").unlink()
    repo.snapshot("after")
    assert [c.path for c in repo.changes("elsewhere", "after")] == ["brief.txt"]
    assert repo.changes("before", "after") == []


def test_a_whole_id_resolves_loose_or_packed_and_only_as_a_commit(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "f.txt").write_text("x\n")
    repo = ShadowRepo(tmp_path / "shadow.git", ws)
    commit = repo.snapshot("run/one")
    [ref] = repo.list("run/one")

    assert repo.resolve(commit) == commit  # a loose object, read without git
    with pytest.raises(UnknownSnapshotError):
        repo.resolve(ref.tree)  # a tree's whole id is not a snapshot
    repo.prune()  # packs the objects
    assert not (tmp_path / "shadow.git" / "objects" / commit[:2] / commit[2:]).exists()
    assert repo.resolve(commit) == commit
    with pytest.raises(UnknownSnapshotError):
        repo.resolve(ref.tree)
