"""The driver's git, attacked through what a step can write.

``git_diff``, ``fetch_artifact`` (a file at a commit) and the checkpoint store run git
outside the sandbox, with the driver's rights, on a repository a step may have
written: the workspace's ``.git`` (a sandboxed ``run_command`` can write it), and the
checkpoint store when it sits where a step reaches it (beside a store file kept in the
workspace). Each attack arms one of git's ways of running a program (a promisor
remote's ``uploadpack``, ssh, ``ext::``, filters, textconv, external diff, fsmonitor,
hooks, a pager, signing), directly or through an include, a ``commondir``, a worktree
configuration, a ``gitdir:`` file or a repository made of workspace files, with a
program that leaves a mark outside the workspace. Every attack is tried against every
git path; the tests count those that ran the program, which must be none.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from test_handoff import fetch, receiver
from test_tools import RecordingGate
from trestle.core.handoff import ArtifactRef, HandoffPacket
from trestle.store import SqliteStore
from trestle.tools import Observation, ToolContext
from trestle.tools.coding import coding_registry
from trestle.workspace.git import (
    INERT,
    UnsafeRepositoryError,
    check_git_dir,
    command,
    environment,
    workspace_git_dir,
)
from trestle.workspace.shadow import ShadowRepo, ShadowRepoError, UnknownSnapshotError

HOOKS = (
    "post-index-change", "reference-transaction", "pre-commit", "post-commit",
    "post-checkout", "post-merge", "pre-auto-gc", "post-rewrite", "fsmonitor-watchman",
)  # fmt: skip


@dataclass
class Lab:
    """A workspace with a committed file changed since, and an attacker's program
    outside it that marks ``ran`` when anything runs it."""

    root: Path

    def __post_init__(self) -> None:
        self.ws = self.root / "ws"
        self.outside = self.root / "outside"
        self.ws.mkdir(parents=True, exist_ok=True)
        self.outside.mkdir(exist_ok=True)
        self.ran = self.outside / "ran"
        self.evil = self.outside / "evil.sh"
        # exits 1: a fetch, filter or pager it stands for fails rather than waits
        self.evil.write_text(f"#!/bin/sh\ntouch {self.ran}\nexit 1\n")
        self.evil.chmod(0o755)
        self.commit = ""

    def git(self, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=cwd or self.ws,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    def repository(self, where: Path | None = None) -> Path:
        """A repository with ``a.txt`` committed and changed since; its git directory."""
        top = where or self.ws
        self.git("init", "-q", "-b", "main", cwd=top)
        (top / "a.txt").write_text("one\n")
        self.git("add", "a.txt", cwd=top)
        self.git("commit", "-qm", "one", cwd=top)
        self.commit = self.git("rev-parse", "HEAD", cwd=top)
        (top / "a.txt").write_text("two, longer\n")  # another size: no racy stat cache
        return top / ".git"

    def configure(self, git_dir: Path, text: str) -> None:
        with (git_dir / "config").open("a") as config:
            config.write(textwrap.dedent(text))

    def promisor(self, git_dir: Path, remote: str = "", objects: str = "all") -> None:
        """Make ``git_dir`` a partial clone of a remote armed with ``remote``'s settings,
        missing its objects (all of them, or only a.txt's committed blob)."""
        text = (
            (git_dir / "config")
            .read_text()
            .replace("repositoryformatversion = 0", "repositoryformatversion = 1")
        )
        (git_dir / "config").write_text(text)
        self.configure(
            git_dir,
            """
            [extensions]
            \tpartialclone = o
            [remote "o"]
            \tpromisor = true
            """
            + textwrap.indent(textwrap.dedent(remote), "\t"),
        )
        store = git_dir / "objects"
        if objects == "all":
            for path in store.glob("??/*"):
                path.unlink()
        else:
            blob = self.git(f"--git-dir={git_dir}", "rev-parse", f"{self.commit}:a.txt")
            (store / blob[:2] / blob[2:]).unlink()

    def uploadpack(self) -> str:
        return f"url = {self.outside / 'nowhere'}\nuploadpack = {self.evil}\n"

    def ran_and_reset(self) -> bool:
        ran = self.ran.exists()
        self.ran.unlink(missing_ok=True)
        return ran


Arm = Callable[[Lab, Path], None]


def _evil_config(lab: Lab) -> Path:
    """A configuration file outside the workspace that runs the program two ways."""
    path = lab.outside / "evil.cfg"
    path.write_text(f'[core]\n\tfsmonitor = {lab.evil}\n[remote "o"]\n\tuploadpack = {lab.evil}\n')
    return path


def _included(lab: Lab, git_dir: Path, include: str) -> None:
    lab.promisor(git_dir, f"url = {lab.outside / 'nowhere'}\n", "blob")
    lab.configure(git_dir, f"{include}\n\tpath = {_evil_config(lab)}\n")


def _elsewhere(lab: Lab, git_dir: Path) -> Path:
    """An armed copy of ``git_dir`` outside the workspace."""
    other = lab.outside / "elsewhere.git"
    shutil.copytree(git_dir, other, symlinks=True)
    lab.promisor(other, lab.uploadpack(), "blob")
    lab.configure(other, f"[core]\n\tfsmonitor = {lab.evil}\n")
    return other


def _commondir(lab: Lab, git_dir: Path) -> None:
    (git_dir / "commondir").write_text(f"{_elsewhere(lab, git_dir)}\n")


def _gitdir_file(lab: Lab, git_dir: Path) -> None:
    other = _elsewhere(lab, git_dir)
    shutil.rmtree(git_dir)
    git_dir.write_text(f"gitdir: {other}\n")


def _git_link(lab: Lab, git_dir: Path) -> None:
    other = _elsewhere(lab, git_dir)
    shutil.rmtree(git_dir)
    git_dir.symlink_to(other)


def _bare_of_workspace_files(lab: Lab, git_dir: Path) -> None:
    """No .git: the workspace itself laid out as a bare repository."""
    other = _elsewhere(lab, git_dir)
    shutil.rmtree(git_dir)
    for entry in other.iterdir():
        shutil.move(entry, lab.ws / entry.name)
    lab.configure(lab.ws, "[core]\n\tbare = true\n")


def _above(lab: Lab, git_dir: Path) -> None:
    """No .git: the workspace lies in an armed repository."""
    shutil.rmtree(git_dir)
    above = lab.repository(lab.root)
    lab.promisor(above, lab.uploadpack(), "blob")
    lab.configure(above, f"[core]\n\tfsmonitor = {lab.evil}\n")


def _hooks(lab: Lab, git_dir: Path) -> None:
    (git_dir / "hooks").mkdir(exist_ok=True)
    for name in HOOKS:
        shutil.copy(lab.evil, git_dir / "hooks" / name)


def _hooks_path(lab: Lab, git_dir: Path) -> None:
    hooks = lab.outside / "hooks"
    hooks.mkdir()
    for name in HOOKS:
        shutil.copy(lab.evil, hooks / name)
    lab.configure(git_dir, f"[core]\n\thooksPath = {hooks}\n")


def _worktree_config(lab: Lab, git_dir: Path) -> None:
    lab.promisor(git_dir, f"url = {lab.outside / 'nowhere'}\n", "blob")
    lab.configure(git_dir, "[extensions]\n\tworktreeConfig = true\n")
    (git_dir / "config.worktree").write_text(
        f'[core]\n\tfsmonitor = {lab.evil}\n[remote "o"]\n\tuploadpack = {lab.evil}\n'
    )


def _submodule_of_its_own(lab: Lab, git_dir: Path) -> None:
    """A submodule (a gitlink in the index) whose checkout a step gave a repository of
    its own, with a filter: for a gitlink `git add` asks `git status` in the checkout."""
    lib = lab.outside / "lib"
    lib.mkdir()
    lab.repository(lib)
    lab.git("commit", "-qam", "two", cwd=lib)
    lab.git("-c", "protocol.file.allow=always", "submodule", "-q", "add", str(lib), "vendor/lib")
    lab.git("commit", "-qm", "a submodule")
    checkout = lab.ws / "vendor" / "lib"
    (checkout / ".git").unlink()  # a gitdir: file, into .git/modules
    shutil.copytree(git_dir / "modules" / "vendor" / "lib", checkout / ".git")
    config = (checkout / ".git" / "config").read_text()
    (checkout / ".git" / "config").write_text(
        "".join(line for line in config.splitlines(True) if "worktree" not in line)
        + f'[filter "x"]\n\tclean = {lab.evil}\n'
    )
    (checkout / ".gitattributes").write_text("* filter=x\n")
    os.utime(checkout / "a.txt", (978307200, 978307200))  # its stat cache stale


def _setting(config: str, attributes: str = "", promisor: str | None = None) -> Arm:
    """An attack that appends ``config`` to the repository's configuration, writes
    ``attributes`` as the workspace's .gitattributes and, given ``promisor`` (the remote's
    settings), makes the repository a partial clone missing a.txt's committed blob.
    ``{evil}`` and ``{nowhere}`` stand for the program and a path with no repository."""

    def arm(lab: Lab, git_dir: Path) -> None:
        names = {"evil": lab.evil, "nowhere": lab.outside / "nowhere"}
        if promisor is not None:
            lab.promisor(git_dir, promisor.format(**names), "blob")
        if attributes:
            (lab.ws / ".gitattributes").write_text(attributes)
        lab.configure(git_dir, config.format(**names))

    return arm


UPLOADPACK = "url = {nowhere}\nuploadpack = {evil}\n"
ATTACKS: dict[str, Arm] = {
    # the reported route: a blob missing from a partial clone is fetched by running
    # the promisor remote's upload-pack
    "promisor uploadpack": _setting("", promisor=UPLOADPACK),
    "promisor uploadpack, file transport allowed": _setting(
        '[protocol "file"]\n\tallow = always\n', promisor=UPLOADPACK
    ),
    "promisor over ssh": _setting(
        "[core]\n\tsshCommand = {evil}\n", promisor="url = ssh://example.invalid/x\n"
    ),
    "promisor over ext::": _setting(
        '[protocol "ext"]\n\tallow = always\n', promisor="url = ext::{evil}\n"
    ),
    "promisor through a git proxy": _setting(
        "[core]\n\tgitProxy = {evil}\n", promisor="url = git://example.invalid/x\n"
    ),
    "filter clean and smudge": _setting(
        '[filter "x"]\n\tclean = {evil}\n\tsmudge = {evil}\n', "* filter=x\n"
    ),
    "filter process": _setting('[filter "x"]\n\tprocess = {evil}\n\trequired\n', "* filter=x\n"),
    "textconv": _setting('[diff "x"]\n\ttextconv = {evil}\n', "* diff=x\n"),
    "diff driver command": _setting('[diff "x"]\n\tcommand = {evil}\n', "* diff=x\n"),
    "diff.external": _setting("[diff]\n\texternal = {evil}\n"),
    "fsmonitor": _setting("[core]\n\tfsmonitor = {evil}\n"),
    "hooks": _hooks,
    "core.hooksPath": _hooks_path,
    "pager": _setting("[core]\n\tpager = {evil}\n[pager]\n\tdiff = {evil}\n"),
    "signing": _setting("[commit]\n\tgpgSign = true\n[gpg]\n\tprogram = {evil}\n"),
    "include.path": lambda lab, git_dir: _included(lab, git_dir, "[include]"),
    "includeIf": lambda lab, git_dir: _included(lab, git_dir, '[includeIf "gitdir:/"]'),
    "commondir": _commondir,
    "worktree configuration": _worktree_config,
}
# ways to make the driver's git use a repository other than the workspace's own .git
ELSEWHERE: dict[str, Arm] = {
    ".git is a gitdir: file": _gitdir_file,
    ".git is a link": _git_link,
    "the workspace laid out as a bare repository": _bare_of_workspace_files,
    "a repository above the workspace": _above,
    "a submodule's checkout with a repository of its own": _submodule_of_its_own,
}


def _git_diff(lab: Lab) -> Observation:
    """The git_diff tool, called as a model's call is."""
    ctx = ToolContext(workspace=lab.ws, run_id="run-1", step_id="fix")
    return asyncio.run(coding_registry().call("git_diff", "{}", ctx, RecordingGate()))


def _fetch_commit(lab: Lab) -> Observation:
    """fetch_artifact on a.txt at the commit, by a run handed a packet that lists it."""
    store = SqliteStore(lab.root / "state" / "trestle.db")
    try:
        packet = HandoffPacket(goal="g", artifacts=(ArtifactRef(kind="commit", ref=lab.commit),))
        return fetch(store, receiver(store, lab.ws, packet), ref=lab.commit, path="a.txt")
    finally:
        store.close()


def _escapes(
    tmp_path: Path, attacks: dict[str, Arm], attempt: Callable[[Lab], object]
) -> list[str]:
    """The attacks after which ``attempt`` had run the program (each in a fresh lab)."""
    ran = []
    for n, (name, arm) in enumerate(attacks.items()):
        lab = Lab(tmp_path / str(n))
        arm(lab, lab.repository())
        attempt(lab)
        if lab.ran_and_reset():
            ran.append(name)
    print(f"{len(attacks)} attacks, {len(ran)} ran the program: {ran}", file=sys.stderr)
    return ran


# --- the workspace's .git: git_diff and fetch_artifact ------------------------------------


def test_git_diff_runs_nothing_a_step_configured(tmp_path: Path) -> None:
    assert _escapes(tmp_path, {**ATTACKS, **ELSEWHERE}, _git_diff) == []


def test_fetch_artifact_reads_no_commit_of_a_repository_a_step_configured(
    tmp_path: Path,
) -> None:
    assert _escapes(tmp_path, {**ATTACKS, **ELSEWHERE}, _fetch_commit) == []


def test_a_refusal_names_the_settings_and_where_git_may_run_them(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    ATTACKS["include.path"](lab, lab.repository())
    with pytest.raises(UnsafeRepositoryError) as caught:
        workspace_git_dir(lab.ws)
    message = str(caught.value)
    for setting in ("extensions.partialclone", "include.path", "remote.o.promisor"):
        assert setting in message
    assert "run_command" in message and "sandbox" in message


def test_an_ordinary_clone_is_diffed_and_its_commits_read(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    git_dir = lab.repository()
    lab.configure(
        git_dir,
        """
        [remote "origin"]
        \turl = https://example.invalid/project.git
        \tfetch = +refs/heads/*:refs/remotes/origin/*
        [branch "main"]
        \tremote = origin
        \tmerge = refs/heads/main
        [user]
        \tname = Someone
        \temail = someone@example.invalid
        """,
    )
    observation = _git_diff(lab)
    assert observation.ok and "+two, longer" in observation.content
    got = _fetch_commit(lab)
    assert got.ok and got.content.endswith("\none\n")


def test_what_a_fresh_git_init_writes_is_inert(tmp_path: Path) -> None:
    for args in (["init", "-q"], ["init", "-q", "--bare", "bare"], ["init", "-q", "--template="]):
        where = tmp_path / str(len(args))
        where.mkdir()
        subprocess.run(["git", *args], cwd=where, check=True)
        git_dir = where / "bare" if "--bare" in args else where / ".git"
        check_git_dir(git_dir)


@pytest.mark.parametrize(
    "key",
    [
        "include.path", "includeif.gitdir:/.path", "extensions.partialclone",
        "extensions.worktreeconfig", "remote.o.promisor", "remote.o.uploadpack",
        "remote.o.receivepack", "remote.o.vcs", "remote.o.proxy", "filter.x.clean",
        "diff.x.textconv", "diff.external", "core.worktree", "core.gitproxy",
        "core.fsmonitor", "core.hookspath", "core.sshcommand", "core.pager",
        "credential.helper", "protocol.file.allow", "submodule.s.update", "alias.st",
        "remote.origin.url.uploadpack",
    ],
)  # fmt: skip
def test_settings_that_may_run_a_program_are_not_inert(key: str) -> None:
    assert INERT.fullmatch(key) is None


def test_the_command_line_alone_stops_what_it_can_when_the_check_is_raced(
    tmp_path: Path,
) -> None:
    """A step's process may rewrite the configuration after the check: the settings
    given on the command line and the environment still stop every transport (so no
    promisor fetch), fsmonitor, hooks, pager and ssh, on the calls git_diff and
    fetch_artifact make. (Filters and diff drivers are named by the repository, so only
    the check refuses them.)"""
    raced = {
        name: arm
        for name, arm in ATTACKS.items()
        if name.startswith("promisor") or name in ("fsmonitor", "hooks", "core.hooksPath", "pager")
    }

    def attempt(lab: Lab) -> None:
        git_dir = lab.ws / ".git"
        scratch = lab.root / "scratch-index"
        env = environment(git_dir, lab.ws, {"GIT_INDEX_FILE": str(scratch)})
        for args in (
            ["add", "--all"],
            ["diff", "--cached", "--no-ext-diff", "--no-textconv", "HEAD"],
            ["cat-file", "blob", f"{lab.commit}:a.txt"],
            ["status"],
        ):
            subprocess.run(
                command(*args), cwd=lab.ws, env=env, capture_output=True, check=False, timeout=60
            )

    assert _escapes(tmp_path, raced, attempt) == []


# --- the checkpoint store -----------------------------------------------------------------


SHADOW_OPERATIONS: dict[str, Callable[[ShadowRepo, str], object]] = {
    "snapshot": lambda repo, first: repo.snapshot("run/two/1/before"),
    "changes": lambda repo, first: repo.changes(first),
    "diff": lambda repo, first: repo.diff(first),
    "read": lambda repo, first: repo.read(first, "a.txt", 1 << 20),
    "restore (rewind)": lambda repo, first: repo.restore(first),
    "prune": lambda repo, first: repo.prune(),
}


def test_the_checkpoint_store_runs_nothing_a_step_configured_in_it(tmp_path: Path) -> None:
    """The store reached as a step could reach it beside a store file in the workspace:
    every operation on it is refused, and none runs the program."""
    tried = 0
    ran: list[str] = []
    for n, (name, arm) in enumerate(ATTACKS.items()):
        lab = Lab(tmp_path / str(n))
        shadow = lab.ws / "shadow.git"
        repo = ShadowRepo(shadow, lab.ws)
        (lab.ws / "a.txt").write_text("one\n")
        first = repo.snapshot("run/one/1/before")
        lab.commit = first
        (lab.ws / "a.txt").write_text("two, longer\n")
        arm(lab, shadow)
        for operation, call in SHADOW_OPERATIONS.items():
            tried += 1
            # refused (the settings named), or the objects are gone: either way, no run
            with contextlib.suppress(ShadowRepoError, UnknownSnapshotError):
                call(ShadowRepo(shadow, lab.ws), first)
            if lab.ran_and_reset():
                ran.append(f"{name}: {operation}")
    print(f"{tried} attempts on an armed checkpoint store, {len(ran)} ran: {ran}", file=sys.stderr)
    assert ran == []


def test_a_workspace_cannot_arm_the_checkpoint_store_from_its_own_files(tmp_path: Path) -> None:
    """What lies in the workspace (attributes naming filters and drivers, a nested
    repository's configuration) is data to the store: snapshots and restores are exact."""
    lab = Lab(tmp_path)
    (lab.ws / ".gitattributes").write_text("* filter=x diff=x text eol=crlf ident\n")
    nested = lab.ws / "sub"
    nested.mkdir()
    _hooks(lab, lab.repository(nested))
    lab.configure(nested / ".git", f"[core]\n\tfsmonitor = {lab.evil}\n")
    (lab.ws / "a.txt").write_text("$Id$\nline\n")
    repo = ShadowRepo(tmp_path / "shadow.git", lab.ws)
    first = repo.snapshot("run/one/1/before")
    (lab.ws / "a.txt").write_text("changed\n")
    repo.diff(first)
    repo.restore(first)
    assert (lab.ws / "a.txt").read_bytes() == b"$Id$\nline\n"
    assert not lab.ran.exists()


def test_a_step_arming_the_checkpoint_store_in_a_run_is_refused_outside_the_sandbox(
    tmp_path: Path,
) -> None:
    """End to end: a store file kept in the workspace puts the checkpoint store there
    too. The sandbox hides it from every command (tests/test_boundary.py); a step run
    unconfined (``--sandbox off``) still reaches it, and makes it a partial clone whose
    objects are gone. The next checkpoint is refused, and the program never runs."""
    lab = Lab(tmp_path)
    config = "shadow.git/config"
    arm = "\n".join(
        [
            f"sed -i 's/repositoryformatversion = 0/repositoryformatversion = 1/' {config}",
            "printf '[extensions]\\n\\tpartialclone = o\\n' >> " + config,
            "printf '[remote \"o\"]\\n\\turl = /nowhere\\n\\tpromisor = true\\n' >> " + config,
            f"printf '\\tuploadpack = {lab.evil}\\n' >> {config}",
            "find shadow.git/objects -type f -delete",
        ]
    )
    (tmp_path / "plan.yaml").write_text(
        textwrap.dedent(
            f"""\
            workspace: ws
            checkpoints: every_step
            policy:
              confirm_commands: []
            steps:
              - id: one
                run: echo one > a.txt
              - id: arm
                needs: [one]
                run: {json.dumps(arm)}
              - id: three
                needs: [arm]
                run: echo three > b.txt
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "TRESTLE_STORE"}
    env.update(TRESTLE_STORE=str(lab.ws / "trestle.db"), COLUMNS="200", NO_COLOR="1")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "trestle", "run", "plan.yaml"),
            *("--no-live", "--no-prompt", "--sandbox", "off"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert not lab.ran.exists()
    assert "holds settings that could make git run a program" in done.stdout, done.stdout
    assert "extensions.partialclone" in done.stdout


BIG_BLOB = """
import resource, sys
from pathlib import Path
from trestle.tools.artifacts import _commit_file
from trestle.tools.base import ToolFailure
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    _commit_file(Path(sys.argv[1]), sys.argv[2], "big.bin")
except ToolFailure as exc:
    print("refused:", exc)
print("grew_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_a_commits_blob_too_large_to_show_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """A step can commit a huge file, then hand the commit on: fetch_artifact asks
    the blob's size first and never holds it."""
    ws = tmp_path / "ws"
    git = ["git", "-C", str(ws), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(ws)], check=True)
    with open(ws / "big.bin", "wb") as big:
        big.truncate(64 * 1024 * 1024)  # 64 MiB of zeros: cheap to write, compressed well
    subprocess.run([*git, "add", "big.bin"], check=True)
    subprocess.run([*git, "commit", "-qm", "big"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    done = subprocess.run(
        [sys.executable, "-c", BIG_BLOB, str(ws), head.strip()],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "refused: 'big.bin' at" in done.stdout and "more than" in done.stdout
    grew = int(done.stdout.split("grew_kib")[1])
    assert grew < 16 * 1024, f"the driver grew by {grew} KiB reading a blob it refuses"


BIG_DIFF = """
import asyncio, sys, tracemalloc
from pathlib import Path
from trestle.tools import ToolContext
from trestle.tools.gitdiff import GitDiff, GitDiffArgs
ctx = ToolContext(workspace=Path(sys.argv[1]), run_id="r", step_id="s", output_cap=8000)
tracemalloc.start()
seen = asyncio.run(GitDiff().run(ctx, GitDiffArgs()))
print("chars", len(seen.content), "cut" in seen.content)
print("grew_kib", tracemalloc.get_traced_memory()[1] // 1024)
"""


def test_git_diff_of_a_huge_change_holds_only_what_it_shows(tmp_path: Path) -> None:
    """A step writes a file of millions of lines; the patch is read as it comes and
    only its head and tail are held, as a command's output is."""
    ws = tmp_path / "ws"
    subprocess.run(["git", "init", "-q", str(ws)], check=True)
    (ws / "huge.txt").write_bytes(b"x\n" * (8 * 1024 * 1024))  # 16 MiB, 8 Mi lines
    done = subprocess.run(
        [sys.executable, "-c", BIG_DIFF, str(ws)], capture_output=True, text=True, check=True
    )
    chars, cut = done.stdout.split()[1:3]
    assert int(chars) < 9_000 and cut == "True", done.stdout
    grew = int(done.stdout.split("grew_kib")[1])
    # Python's own allocations at their peak: the whole patch is 24 MiB
    assert grew < 4 * 1024, f"the driver held {grew} KiB for a diff it shows 8,000 of"
