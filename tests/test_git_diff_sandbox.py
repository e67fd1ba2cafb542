"""git_diff reads the repository in the run's sandbox, as root and as a user.

A workspace with no ``.git`` of its own lets a step make one, and git reads what that
one names: its ``packed-refs`` linked to the approval key had the driver's git print
the key, as the line it could not parse, to the model; an ``alternates`` file and a
linked ref lent it a hidden repository, whose files came back as a diff. In a sandbox
git reads only what commands may read. Without one (``--sandbox off``, or a tool
called alone), a repository holding a link anywhere (``info/grafts`` linked to the key
too, loose objects' directories linked to a hidden repository's, which
``fetch_artifact`` read a file of) is refused. A plain repository is still diffed,
untracked files included, either way. ``fetch_artifact`` reads a commit's file the
same way: by git in the sandbox, or refused outside one.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from test_boundary import driver_host, run_as_driver
from test_sandbox import SECRET

DRIVER = """
import asyncio, json, sys
from pathlib import Path
from trestle.execution.sandbox import choose
from trestle.tools import ToolContext
from trestle.tools.artifacts import _commit_file, _commit_file_in_sandbox
from trestle.tools.base import ToolFailure
from trestle.tools.gitdiff import GitDiff, GitDiffArgs

base, sandboxed = Path(sys.argv[1]), json.loads(sys.argv[2])
sandbox = choose("require", hidden=(base / "hidden",)) if sandboxed else None
seen = {}
for name in ("plain", "packed-refs", "alternates", "grafts"):
    ctx = ToolContext(workspace=base / name, run_id="r", step_id="s", sandbox=sandbox)
    try:
        seen[name] = asyncio.run(GitDiff().run(ctx, GitDiffArgs())).content
    except ToolFailure as exc:
        seen[name] = "refused: " + str(exc)

def fetched(name, commit, path):  # fetch_artifact's read of a commit's file
    ctx = ToolContext(workspace=base / name, run_id="r", step_id="s", sandbox=sandbox)
    try:
        if sandbox is not None:
            return asyncio.run(_commit_file_in_sandbox(ctx, commit, path)).decode()
        return _commit_file(base / name, commit, path).decode()
    except ToolFailure as exc:
        return "refused: " + str(exc)

# a file at the hidden repository's commit, through loose objects linked to it
seen["fetched"] = fetched("loose", (base / "hidden" / "commit").read_text().strip(), "notes.txt")
seen["fetched plain"] = fetched("plain", (base / "plain-commit").read_text().strip(), "a.txt")
print(json.dumps(seen))
"""

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@x", "-c", "init.defaultBranch=main"]


def _git(*args: str | Path) -> None:
    subprocess.run([*GIT, *map(str, args)], check=True, capture_output=True)


def _out(*args: str | Path) -> str:
    done = subprocess.run([*GIT, *map(str, args)], check=True, capture_output=True, text=True)
    return done.stdout.strip()


def _lay_out(base: Path) -> None:
    hidden = base / "hidden"  # as the approval key's directory is
    hidden.mkdir()
    (hidden / "approval.key").write_text(SECRET)  # as the key is: one line, no end
    _git("init", "-q", hidden / "repo")
    (hidden / "repo" / "notes.txt").write_text(f"{SECRET} in a file\n")
    _git("-C", hidden / "repo", "add", "notes.txt")
    _git("-C", hidden / "repo", "commit", "-qm", "secret")
    plain = base / "plain"
    _git("init", "-q", plain)
    (plain / "a.txt").write_text("one\n")
    _git("-C", plain, "add", "a.txt")
    _git("-C", plain, "commit", "-qm", "a")
    (base / "plain-commit").write_text(_out("-C", plain, "rev-parse", "HEAD"))
    (plain / "a.txt").write_text("two\n")
    (plain / "new.txt").write_text("new\n")
    # what a step's commands made, in workspaces that had no .git
    linked = base / "packed-refs"
    _git("init", "-q", linked)
    (linked / ".git" / "packed-refs").symlink_to(hidden / "approval.key")
    borrowed = base / "alternates"
    _git("init", "-q", borrowed)
    objects = borrowed / ".git" / "objects" / "info" / "alternates"
    objects.write_text(f"{hidden / 'repo' / '.git' / 'objects'}\n")
    ref = borrowed / ".git" / "refs" / "heads" / "main"
    ref.symlink_to(hidden / "repo" / ".git" / "refs" / "heads" / "main")
    # a repository of the operator's with a commit, where a step linked info/grafts to
    # the key and took a tree away (so that git fails, printing each graft it read)
    grafted = base / "grafts"
    _git("init", "-q", grafted)
    (grafted / "a.txt").write_text("one\n")
    _git("-C", grafted, "add", "a.txt")
    _git("-C", grafted, "commit", "-qm", "a")
    (grafted / ".git" / "info" / "grafts").symlink_to(hidden / "approval.key")
    tree = _out("-C", grafted, "rev-parse", "HEAD^{tree}")
    (grafted / ".git" / "objects" / tree[:2] / tree[2:]).unlink()
    # a repository whose loose objects' directories lead to the hidden repository's
    commit = _out("-C", hidden / "repo", "rev-parse", "HEAD")
    (hidden / "commit").write_text(commit)
    loose = base / "loose"
    _git("init", "-q", loose)
    for directory in (hidden / "repo" / ".git" / "objects").iterdir():
        if len(directory.name) == 2:
            (loose / ".git" / "objects" / directory.name).symlink_to(directory)
    (base / "home").mkdir()


@pytest.fixture(params=["root", "user"])
def host(request: pytest.FixtureRequest) -> Iterator[tuple[Path, int | None]]:
    yield from driver_host(request.param, "trestle-gitdiff-", _lay_out)


@pytest.mark.parametrize("sandboxed", [True, False], ids=["in a sandbox", "unconfined"])
def test_git_diff_reads_nothing_a_step_led_its_repository_to(
    host: tuple[Path, int | None], sandboxed: bool
) -> None:
    base, uid = host
    seen = cast(dict[str, Any], run_as_driver(base, uid, DRIVER, sandboxed))
    assert not any(SECRET in text for text in seen.values()), json.dumps(seen, indent=1)
    plain = seen["plain"]
    assert plain.startswith("2 files changed since the last commit"), plain
    assert "-one\n+two" in plain and "+new" in plain
    if not sandboxed:
        assert "packed-refs' is a link: git would read whatever" in seen["packed-refs"]
        assert seen["alternates"].startswith("refused: "), seen["alternates"]
        assert "grafts' is a link" in seen["grafts"]
    assert seen["fetched plain"] == "one\n"
    if sandboxed:  # git ran in the sandbox, where the hidden repository is not
        assert seen["fetched"].startswith("refused: reading 'notes.txt' at commit"), seen
    else:
        assert "is a link: git would read whatever" in seen["fetched"]
