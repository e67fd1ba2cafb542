"""Workspace checkpoints and rewind in runs, end to end.

Each test drives the real console script (``python -m trestle``) in subprocesses, with
``$TRESTLE_STORE`` pointing at a fresh SQLite file outside the workspace (so the shadow
checkpoint store beside it is outside too), on plan files whose shell steps create,
modify, delete and chmod files. Workspaces are real git repositories, with staged,
unstaged and untracked changes, a stash and a second branch, or plain directories.

What is compared is what a user would look at: every path in the workspace (type,
executable bit, content), every file under the user's ``.git`` byte for byte, what
``git status`` and ``git stash list`` say, the events in the store, and ledgers outside
the workspace that each step appends a line to, to count how often it really ran.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from forked_cli import run_trestle
from trestle.store import SqliteStore
from trestle.workspace.shadow import ShadowRepo

# its ledgers live outside the workspace, out of the rewind's reach
pytestmark = pytest.mark.usefixtures("unconfined")

Tree = dict[str, str]
RUN_LINE = re.compile(r"run (\d{8}-\d{6}-[0-9a-f]{4})")
SAFETY_LINE = re.compile(r"the workspace as it was is kept as checkpoint ([0-9a-f]{12})")


# --- the world a test runs in --------------------------------------------------------


def run_id_of(done: subprocess.CompletedProcess[str]) -> str:
    """The id `trestle run` prints on its first line."""
    match = RUN_LINE.fullmatch(done.stdout.splitlines()[0] if done.stdout else "")
    assert match, done.stdout + done.stderr
    return match.group(1)


@dataclass(frozen=True)
class World:
    """A workspace, a store outside it, a ledger outside it, and the ``trestle`` CLI."""

    root: Path

    @property
    def ws(self) -> Path:
        return self.root / "ws"

    @property
    def store(self) -> Path:
        return self.root / "state" / "trestle.db"

    @property
    def shadow(self) -> Path:
        """Where the engine keeps checkpoints: beside the store file."""
        return self.store.parent / "shadow.git"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.txt"

    def plan(self, text: str) -> Path:
        """Write ``plan.yaml`` (``LEDGER`` stands for the ledger's absolute path)."""
        path = self.root / "plan.yaml"
        body = textwrap.dedent(text).replace("LEDGER", str(self.ledger))
        path.write_text(body, encoding="utf-8")
        return path

    def cli(
        self, *args: str, path: str | None = None, store: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "TRESTLE_STORE"}
        env.update(COLUMNS="100", NO_COLOR="1", TERM="dumb", TRESTLE_STORE=str(store or self.store))
        if path is not None:
            env["PATH"] = path
        return run_trestle(args, cwd=self.root, env=env, timeout=120)

    def ok(self, *args: str) -> str:
        """Run a command that must exit 0; return its stdout."""
        done = self.cli(*args)
        assert done.returncode == 0, f"trestle {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    def run(self, text: str, expect: int = 0) -> str:
        """Run a plan to its end; return the run id."""
        self.plan(text)
        done = self.cli("run", "plan.yaml", "--no-live", "--no-prompt")
        assert done.returncode == expect, done.stdout + done.stderr
        return run_id_of(done)

    def log(self, run_id: str) -> list[dict[str, Any]]:
        """``trestle log --json``: every event of the run, oldest first."""
        events: list[dict[str, Any]] = json.loads(self.ok("log", run_id, "--json"))
        return events

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """The same as :meth:`log`, read from the store file in this process (faster)."""
        store = SqliteStore(self.store)
        try:
            return [{"seq": e.seq, **e.event.model_dump(mode="json")} for e in store.events(run_id)]
        finally:
            store.close()

    def ledger_lines(self) -> list[str]:
        return self.ledger.read_text("utf-8").split() if self.ledger.exists() else []


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path)
    w.ws.mkdir()
    return w


# --- what the workspace and the user's git hold ----------------------------------------


def flat(text: str) -> str:
    """Messages wrapped at the console's width, joined back into one line."""
    return " ".join(text.split())


def file(content: str, executable: bool = False) -> str:
    return f"file {'x' if executable else '-'} {content!r}"


def tree(root: Path) -> Tree:
    """Every directory, file and symlink under ``root`` except ``.git``."""
    found: Tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                found[rel] = f"link {os.readlink(path)}"
            elif path.is_dir():
                found[rel] = "dir"
            else:
                content = path.read_bytes().decode("utf-8", errors="backslashreplace")
                found[rel] = file(content, os.access(path, os.X_OK))
    return found


def git_env(root: Path) -> dict[str, str]:
    """The test's own git commands act as the user, with no outside config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        HOME=str(root),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_AUTHOR_NAME="User",
        GIT_AUTHOR_EMAIL="user@example.com",
        GIT_COMMITTER_NAME="User",
        GIT_COMMITTER_EMAIL="user@example.com",
        GIT_OPTIONAL_LOCKS="0",  # `git status` must not refresh (rewrite) the user's index
        LC_ALL="C",
    )
    return env


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, env=git_env(repo.parent), capture_output=True, text=True
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


def dot_git(repo: Path) -> dict[str, str]:
    """Every directory and file under ``.git``: mode and content hash, byte for byte."""
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(repo / ".git"):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            info = path.lstat()
            digest = "" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
            found[path.relative_to(repo).as_posix()] = f"{info.st_mode:o} {digest}"
    return found


def git_view(repo: Path) -> tuple[str, str]:
    """What the user sees: branch, HEAD, index and work tree status, and the stash."""
    return git(repo, "status", "--porcelain=v2", "--branch"), git(repo, "stash", "list")


def seed(ws: Path, *, with_git: bool) -> None:
    """A workspace with a bit of everything; as a git repo, with every kind of change."""
    write = {
        "keep.txt": "keep\n",
        "mod.txt": "original\n",
        "staged.txt": "v1\n",
        "del.txt": "delete me\n",
        "script.sh": "#!/bin/sh\necho script\n",
        "tool.sh": "#!/bin/sh\necho tool\n",
        "sub/dir/nested.txt": "nested\n",
        ".gitignore": "*.log\n",
    }
    for rel, content in write.items():
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text(content, encoding="utf-8")
    (ws / "script.sh").chmod(0o644)
    (ws / "tool.sh").chmod(0o755)
    if with_git:
        git(ws, "init", "-q", "-b", "main")
        git(ws, "add", "-A")
        git(ws, "commit", "-q", "-m", "base")
        git(ws, "checkout", "-q", "-b", "topic")
        (ws / "topic.txt").write_text("topic\n", encoding="utf-8")
        git(ws, "add", "topic.txt")
        git(ws, "commit", "-q", "-m", "topic work")
        git(ws, "checkout", "-q", "main")
        (ws / "keep.txt").write_text("keep\nwork in progress\n", encoding="utf-8")
        git(ws, "stash", "push", "-q", "-m", "wip")
    (ws / "staged.txt").write_text("v2 staged\n", encoding="utf-8")
    if with_git:
        git(ws, "add", "staged.txt")
    (ws / "mod.txt").write_text("original\nunstaged edit\n", encoding="utf-8")
    (ws / "untracked.txt").write_text("untracked\n", encoding="utf-8")


# Five steps in a chain, each changing the workspace differently, each counted in LEDGER.
# The ledger lies outside the workspace, which the default policy would ask a human
# about: `approval: log` lets the steps run unattended.
CHAIN_PLAN = """\
    workspace: ws
    checkpoints: every_step
    parallelism: 1
    steps:
      - id: s1
        approval: log
        run: mkdir -p gen && printf 'one\\n' > gen/one.txt && printf 'new\\n' > created.txt && echo s1 >> LEDGER
      - id: s2
        approval: log
        needs: [s1]
        run: printf 'rewritten\\n' > mod.txt && printf 'v3\\n' >> staged.txt && echo s2 >> LEDGER
      - id: s3
        approval: log
        needs: [s2]
        run: rm del.txt untracked.txt && chmod +x script.sh && chmod -x tool.sh && echo s3 >> LEDGER
      - id: s4
        approval: log
        needs: [s3]
        run: printf 'four\\n' > gen/four.txt && printf 'log\\n' > build.log && rm keep.txt && echo s4 >> LEDGER
      - id: s5
        approval: log
        needs: [s4]
        run: printf 'five\\n' >> mod.txt && echo s5 >> LEDGER
"""  # noqa: E501  (a shell command per line reads better than a folded one)


def rewound_line(step: str, restored: int, recreated: int, deleted: int) -> str:
    return (
        f"workspace restored to before {step!r} (attempt 1): "
        f"{restored} file{'' if restored == 1 else 's'} restored, "
        f"{recreated} recreated, {deleted} deleted"
    )


# --- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("with_git", [True, False], ids=["git-repo", "plain-dir"])
def test_rewind_restores_files_exactly_and_leaves_the_users_git_alone(
    world: World, with_git: bool
) -> None:
    ws = world.ws
    seed(ws, with_git=with_git)
    initial = tree(ws)
    if with_git:
        git_before, view_before = dot_git(ws), git_view(ws)
        assert "# branch.head main" in view_before[0]
        assert "1 M. " in view_before[0] and "1 .M " in view_before[0]  # staged, unstaged
        assert "? untracked.txt" in view_before[0]
        assert view_before[1] == "stash@{0}: On main: wip\n"
        assert "topic" in git(ws, "branch", "--list")

    def same_git() -> None:
        if with_git:
            assert dot_git(ws) == git_before

    run_id = world.run(CHAIN_PLAN)
    same_git()
    finished = tree(ws)
    assert finished["script.sh"] == file("#!/bin/sh\necho script\n", executable=True)
    assert finished["tool.sh"] == file("#!/bin/sh\necho tool\n", executable=False)
    assert "del.txt" not in finished and "keep.txt" not in finished

    # back to before s3: s1's and s2's work stays, s3's to s5's is undone
    out = world.ok("rewind", run_id, "--to", "s3", "--yes")
    assert rewound_line("s3", restored=3, recreated=3, deleted=1) in out
    assert "reopened: s3, s4, s5" in out
    expected = dict(initial)
    expected.update(
        {
            "gen": "dir",
            "gen/one.txt": file("one\n"),
            "created.txt": file("new\n"),
            "mod.txt": file("rewritten\n"),
            "staged.txt": file("v2 staged\nv3\n"),
            "build.log": file("log\n"),  # ignored by .gitignore: never recorded, left alone
        }
    )
    assert tree(ws) == expected
    assert tree(ws)["script.sh"] == file("#!/bin/sh\necho script\n", executable=False)
    assert tree(ws)["tool.sh"] == file("#!/bin/sh\necho tool\n", executable=True)
    same_git()

    out = world.ok("resume", run_id)
    assert "finished succeeded" in out
    assert tree(ws) == finished
    same_git()

    # back to the very start: the workspace is the user's again, as it was
    out = world.ok("rewind", run_id, "--to", "s1", "--yes")
    assert rewound_line("s1", restored=4, recreated=3, deleted=3) in out
    assert tree(ws) == {**initial, "build.log": file("log\n")}
    same_git()
    if with_git:
        assert git_view(ws) == view_before
    assert world.ledger_lines() == ["s1", "s2", "s3", "s4", "s5", "s3", "s4", "s5"]


# --- the run's state after a rewind ---------------------------------------------------


BRANCHING_PLAN = """\
    workspace: ws
    checkpoints: every_step
    parallelism: 1
    steps:
      - id: prep
        approval: log
        run: echo prep >> LEDGER
      - id: a
        approval: log
        needs: [prep]
        run: echo a >> LEDGER && echo a > a.txt
      - id: b
        approval: log
        needs: [a]
        run: echo b >> LEDGER && echo b > b.txt
      - id: c
        approval: log
        needs: [b]
        run: echo c >> LEDGER && echo c > c.txt
      - id: side
        approval: log
        needs: [prep]
        run: echo side >> LEDGER && echo side > side.txt
"""


def test_rewind_reopens_the_step_what_started_after_it_and_its_dependents(
    world: World,
) -> None:
    run_id = world.run(BRANCHING_PLAN)
    before = world.events(run_id)
    started = [e["step"] for e in before if e["kind"] == "step_started"]
    # one slot, frontier in plan order: 'side' (not downstream of 'b') starts after 'b'
    assert started == ["prep", "a", "b", "c", "side"]

    out = world.ok("rewind", run_id, "--to", "b", "--yes")

    assert "reopened: b, c, side" in out
    assert sorted(p.name for p in world.ws.iterdir()) == ["a.txt"]
    shown = json.loads(world.ok("show", run_id, "--json"))
    # nothing drives it until it is resumed, and the rewind, not a lost driver, says why
    assert shown["status"] == "interrupted"
    assert not shown["driver_lost"]
    listed = world.ok("runs")
    assert f"run {run_id} was left unfinished (as `trestle rewind` leaves it)" in listed
    assert "lost its driver" not in listed
    assert {s["id"]: s["status"] for s in shown["steps"]} == {
        "prep": "succeeded",
        "a": "succeeded",
        "b": "pending",
        "c": "pending",
        "side": "pending",
    }
    after = world.log(run_id)
    assert after[: len(before)] == before  # the abandoned branch is still there
    [rewound] = after[len(before) :]
    assert rewound["kind"] == "run_rewound"
    assert (rewound["to_step"], rewound["attempt"]) == ("b", 1)
    assert rewound["reopened"] == ["b", "c", "side"]
    b_before = next(e for e in before if e["kind"] == "step_attempt_ended" and e["step"] == "b")
    assert rewound["checkpoint"] == b_before["checkpoint_before"]

    out = world.ok("resume", run_id)

    assert "finished succeeded" in out
    assert Counter(world.ledger_lines()) == {"prep": 1, "a": 1, "b": 2, "c": 2, "side": 2}
    assert sorted(p.name for p in world.ws.iterdir()) == ["a.txt", "b.txt", "c.txt", "side.txt"]
    final = world.events(run_id)
    assert final[: len(after)] == after
    again = [(e["step"], e["attempt"]) for e in final[len(after) :] if e["kind"] == "step_started"]
    assert sorted(again) == [("b", 2), ("c", 2), ("side", 2)]


# --- `checkpoints: irreversible`: checkpoints before irreversible steps only ----------


DEPLOY_PLAN = """\
    workspace: ws
    checkpoints: irreversible
    steps:
      - id: build
        approval: log
        run: echo built > build.txt && echo build >> LEDGER
      - id: deploy
        needs: [build]
        irreversible: true
        run: echo deployed >> deploys.log && echo deploy >> LEDGER
"""


def test_checkpoints_irreversible_takes_one_before_irreversible_steps_only(world: World) -> None:
    run_id = world.run(DEPLOY_PLAN, expect=3)  # deploy waits for approval
    world.ok("approve", f"{run_id}.1", "--reason", "go")
    world.ok("resume", run_id)
    assert (world.ws / "deploys.log").read_text() == "deployed\n"

    listed = json.loads(world.ok("checkpoints", run_id, "--json"))
    assert [(c["step"], c["attempt"], c["when"]) for c in listed] == [("deploy", 1, "before")]

    seen = len(world.events(run_id))
    refused = world.cli("rewind", run_id, "--to", "build", "--yes")
    assert refused.returncode == 2, refused.stderr
    message = flat(refused.stderr)
    assert f"error: run {run_id!r}: step 'build' has no checkpoint" in message
    assert "`checkpoints: every_step`" in message  # names the fix

    misspelt = world.cli("rewind", run_id, "--to", "deploi", "--yes")
    assert misspelt.returncode == 2, misspelt.stderr
    assert f"run {run_id!r} has no step 'deploi' (did you mean 'deploy'?)" in flat(misspelt.stderr)

    other = run_id[:-1] + ("0" if run_id[-1] != "0" else "1")
    unknown = world.cli("rewind", other, "--to", "deploy", "--yes")
    assert unknown.returncode == 2, unknown.stderr
    assert f"no run {other!r} in {world.store} (did you mean {run_id!r}?)" in flat(unknown.stderr)
    assert len(world.events(run_id)) == seen
    assert (world.ws / "deploys.log").exists()

    out = world.ok("rewind", run_id, "--to", "deploy", "--yes")
    assert "reopened: deploy" in out
    assert sorted(p.name for p in world.ws.iterdir()) == ["build.txt"]

    # the irreversible step starts over: it asks again rather than reuse the old approval
    again = world.cli("resume", run_id, "--no-live", "--no-prompt")
    assert again.returncode == 3, again.stdout + again.stderr
    assert f"APPROVE? deploy ({run_id}.2): 'deploy' is irreversible" in again.stdout
    assert not (world.ws / "deploys.log").exists()
    assert world.ledger_lines() == ["build", "deploy"]


# --- diff -----------------------------------------------------------------------------


def without_index_lines(diff: str) -> str:
    """A unified diff without its ``index <blob>..<blob>`` lines."""
    return "".join(line for line in diff.splitlines(True) if not line.startswith("index "))


EDIT_DIFF = """\
diff --git a/a.txt b/a.txt
--- a/a.txt
+++ b/a.txt
@@ -1,3 +1,3 @@
 line1
-line2
+LINE TWO
 line3
diff --git a/b.txt b/b.txt
new file mode 100644
--- /dev/null
+++ b/b.txt
@@ -0,0 +1 @@
+brand new
diff --git a/c.txt b/c.txt
deleted file mode 100644
--- a/c.txt
+++ /dev/null
@@ -1 +0,0 @@
-gone
diff --git a/run.sh b/run.sh
old mode 100644
new mode 100755
"""


def test_diff_shows_exactly_what_the_step_changed(world: World) -> None:
    (world.ws / "a.txt").write_text("line1\nline2\nline3\n")
    (world.ws / "c.txt").write_text("gone\n")
    (world.ws / "run.sh").write_text("#!/bin/sh\n")
    (world.ws / "run.sh").chmod(0o644)
    run_id = world.run(
        """\
        workspace: ws
        checkpoints: every_step
        parallelism: 1
        steps:
          - id: setup
            run: printf 'setup\\n' > setup.txt
          - id: edit
            needs: [setup]
            run: >-
              printf 'line1\\nLINE TWO\\nline3\\n' > a.txt && printf 'brand new\\n' > b.txt
              && rm c.txt && chmod +x run.sh
          - id: look
            needs: [edit]
            run: cat a.txt
          - id: later
            needs: [look]
            run: printf 'later\\n' > later.txt
        """
    )
    (world.ws / "after-the-run.txt").write_text("not the step's doing\n")

    edit = world.cli("diff", run_id, "edit")
    look = world.cli("diff", run_id, "look")

    assert edit.returncode == 0, edit.stderr
    assert edit.stderr == ""
    assert without_index_lines(edit.stdout) == EDIT_DIFF
    assert look.returncode == 0, look.stderr
    assert look.stdout == "no changes\n"


def test_diff_without_an_after_checkpoint_is_refused_not_guessed(world: World) -> None:
    run_id = world.run(
        """\
        workspace: ws
        checkpoints: irreversible
        steps:
          - id: build
            run: printf 'built\\n' > build.txt
          - id: deploy
            needs: [build]
            irreversible: true
            approval: auto
            run: printf 'deployed\\n' > deploys.log
        """
    )
    (world.ws / "notes.txt").write_text("written by hand afterwards\n")

    done = world.cli("diff", run_id, "deploy")
    no_checkpoint = world.cli("diff", run_id, "build")

    # what deploy changed cannot be told from the hand edit since: no diff is made up
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    message = flat(done.stderr)
    assert f"run {run_id!r}: attempt 1 of 'deploy' has no checkpoint after it" in message
    assert "cannot be told from what changed since" in message
    assert no_checkpoint.returncode == 2
    assert "step 'build' has no checkpoint" in flat(no_checkpoint.stderr)


# --- listing ----------------------------------------------------------------------------


def listed_steps(text: str) -> list[tuple[str, int, str, str]]:
    """(step, attempt, when, commit prefix) of each line of `trestle checkpoints`."""
    rows = re.findall(
        r"^\d\d:\d\d:\d\d  (\S+) attempt (\d+) (before|after) +([0-9a-f]{12})$", text, re.M
    )
    return [(step, int(n), when, commit) for step, n, when, commit in rows]


def test_checkpoints_lists_before_and_after_of_every_attempt_in_order(world: World) -> None:
    run_id = world.run(
        """\
        workspace: ws
        checkpoints: every_step
        parallelism: 1
        steps:
          - id: first
            run: echo first > first.txt
          - id: flaky
            needs: [first]
            retries: 1
            backoff: {initial: 0}
            run: echo "try $TRESTLE_ATTEMPT" >> flaky.txt && test "$TRESTLE_ATTEMPT" -gt 1
          - id: last
            needs: [flaky]
            run: echo last > last.txt
        """
    )

    text = world.ok("checkpoints", run_id)
    listed = json.loads(world.ok("checkpoints", run_id, "--json"))

    order = [
        ("first", 1, "before"),
        ("first", 1, "after"),
        ("flaky", 1, "before"),
        ("flaky", 1, "after"),
        ("flaky", 2, "before"),
        ("flaky", 2, "after"),
        ("last", 1, "before"),
        ("last", 1, "after"),
    ]
    assert [(c["step"], c["attempt"], c["when"]) for c in listed] == order
    assert listed_steps(text) == [
        (*o, c["commit"][:12]) for o, c in zip(order, listed, strict=True)
    ]
    recorded = {}
    for e in world.events(run_id):
        if e["kind"] == "step_attempt_ended":
            recorded[(e["step"], e["attempt"], "before")] = e["checkpoint_before"]
            recorded[(e["step"], e["attempt"], "after")] = e["checkpoint_after"]
    assert {(c["step"], c["attempt"], c["when"]): c["commit"] for c in listed} == recorded
    # the first attempt of 'flaky' failed but its work is in its after-checkpoint
    repo = ShadowRepo(world.shadow, world.ws)
    [change] = repo.changes(recorded[("flaky", 1, "before")], recorded[("flaky", 1, "after")])
    assert (change.path, change.kind) == ("flaky.txt", "added")


def test_checkpoints_are_listed_in_the_order_they_were_taken(world: World) -> None:
    # A chain written last step first. (Were each step's checkpoints a second apart, the
    # times alone would put them in order; six fast steps cannot all be.)
    chain = "".join(
        f"  - id: s{n}\n    needs: [s{n - 1}]\n    run: echo {n} > {n}.txt\n"
        for n in range(6, 1, -1)
    )
    run_id = world.run(
        f"workspace: ws\ncheckpoints: every_step\nsteps:\n{chain}  - id: s1\n    run: 'true'\n"
    )

    listed = json.loads(world.ok("checkpoints", run_id, "--json"))

    taken = [(f"s{n}", when) for n in range(1, 7) for when in ("before", "after")]
    assert [(c["step"], c["when"]) for c in listed] == taken


# --- undoing a rewind -------------------------------------------------------------------


def test_a_rewind_can_be_undone_from_its_safety_snapshot(world: World) -> None:
    (world.ws / "data.txt").write_text("v1\n")
    run_id = world.run(
        """\
        workspace: ws
        checkpoints: every_step
        parallelism: 1
        steps:
          - id: grow
            run: printf 'v2\\n' > data.txt && mkdir -p out && printf 'x\\n' > out/x.txt
          - id: tidy
            needs: [grow]
            run: chmod +x data.txt && rm -r out && printf 'y\\n' > y.txt
        """
    )
    (world.ws / "hand.txt").write_text("edited by hand before the rewind\n")
    before_rewind = tree(world.ws)

    out = world.ok("rewind", run_id, "--to", "grow", "--yes")

    assert tree(world.ws) == {"data.txt": file("v1\n")}
    match = SAFETY_LINE.search(out)
    assert match, out
    [rewound] = [e for e in world.events(run_id) if e["kind"] == "run_rewound"]
    assert rewound["safety"].startswith(match.group(1))
    repo = ShadowRepo(world.shadow, world.ws)
    assert repo.resolve(match.group(1)) == rewound["safety"]
    repo.restore(match.group(1))
    assert tree(world.ws) == before_rewind


# --- a checkpoint that cannot be taken ---------------------------------------------------


FAILING_CHECKPOINT_PLAN = """\
    workspace: ws
    escalate: false
    checkpoints: irreversible
    steps:
      - id: plain
        run: echo plain > plain.txt
      - id: deploy
        needs: [plain]
        irreversible: true
        approval: auto
        run: echo deployed > deployed.txt
"""


def test_without_git_an_irreversible_step_fails_and_never_runs(world: World) -> None:
    no_git = world.root / "empty-bin"
    no_git.mkdir()

    world.plan(FAILING_CHECKPOINT_PLAN)
    done = world.cli("run", "plan.yaml", "--no-live", "--no-prompt", path=str(no_git))

    assert done.returncode == 1, done.stdout + done.stderr
    run_id = run_id_of(done)
    assert (world.ws / "plain.txt").exists()  # no checkpoint wanted, so no git needed
    assert not (world.ws / "deployed.txt").exists()
    [ended] = [
        e
        for e in world.events(run_id)
        if e["kind"] == "step_attempt_ended" and e["step"] == "deploy"
    ]
    assert not ended["ok"] and ended["checkpoint_before"] is None
    assert ended["action"]["error"].startswith("workspace checkpoint failed: cannot run git")


def test_an_unusable_shadow_store_fails_the_step_and_it_never_runs(world: World) -> None:
    world.shadow.parent.mkdir()
    world.shadow.write_text("a file where the shadow store should be\n")

    world.plan(FAILING_CHECKPOINT_PLAN)
    done = world.cli("run", "plan.yaml", "--no-live", "--no-prompt")

    assert not (world.ws / "deployed.txt").exists()
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stdout + done.stderr
    run_id = run_id_of(done)
    [ended] = [
        e
        for e in world.events(run_id)
        if e["kind"] == "step_attempt_ended" and e["step"] == "deploy"
    ]
    assert ended["action"]["error"].startswith("workspace checkpoint failed")


# --- leases and the store ------------------------------------------------------------------


HOLD_LEASE = """\
import os, socket, sys, time
from trestle.store import Owner, SqliteStore
store = SqliteStore(sys.argv[1])
owner = Owner(name="holder", pid=os.getpid(), host=socket.gethostname())
lease = store.acquire_lease(sys.argv[2], owner, ttl=600.0, now=time.time())
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin
store.release_lease(sys.argv[2], lease.token)
store.close()
"""


def test_rewind_is_refused_while_another_process_drives_the_run(world: World) -> None:
    seed(world.ws, with_git=False)
    run_id = world.run(CHAIN_PLAN)
    files, events = tree(world.ws), world.events(run_id)
    refs = [r.name for r in ShadowRepo(world.shadow, world.ws).list()]
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LEASE, str(world.store), run_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"

        refused = world.cli("rewind", run_id, "--to", "s3", "--yes")
    finally:
        holder.communicate("", timeout=60)

    assert holder.returncode == 0
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert f"run {run_id!r} is being driven by holder (pid {holder.pid}" in flat(refused.stderr)
    assert tree(world.ws) == files
    assert world.events(run_id) == events
    assert [r.name for r in ShadowRepo(world.shadow, world.ws).list()] == refs  # no safety


def test_a_store_inside_the_workspace_survives_a_rewind(world: World) -> None:
    inside = world.ws / "trestle.db"
    world.plan(
        """\
        workspace: ws
        checkpoints: every_step
        steps:
          - id: one
            run: echo one > one.txt
          - id: two
            needs: [one]
            run: echo two > two.txt
        """
    )
    done = world.cli("run", "plan.yaml", "--no-live", "--no-prompt", store=inside)
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = run_id_of(done)

    rewound = world.cli("rewind", run_id, "--to", "one", "--yes", store=inside)
    log = world.cli("log", run_id, "--json", store=inside)

    assert rewound.returncode == 0, rewound.stderr
    assert log.returncode == 0, log.stderr
    kinds = [e["kind"] for e in json.loads(log.stdout)]
    assert kinds.count("step_attempt_ended") == 2
    assert kinds[-2:] == ["run_finished", "run_rewound"]
    assert "0 files restored" in rewound.stdout  # only one.txt and two.txt go
