"""git_diff reads the repository in the run's sandbox, as root and as a user.

A workspace with no ``.git`` of its own lets a step make one, and git reads what that
one names: its ``packed-refs`` linked to the approval key had the driver's git print
the key, as the line it could not parse, to the model; an ``alternates`` file and a
linked ref lent it a hidden repository, whose files came back as a diff. In a sandbox
git reads only what commands may read. Without one (``--sandbox off``, or a tool
called alone), such a repository is refused. A plain repository is still diffed,
untracked files included, either way.
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
from trestle.tools.base import ToolFailure
from trestle.tools.gitdiff import GitDiff, GitDiffArgs

base, sandboxed = Path(sys.argv[1]), json.loads(sys.argv[2])
sandbox = choose("require", hidden=(base / "hidden",)) if sandboxed else None
seen = {}
for name in ("plain", "packed-refs", "alternates"):
    ctx = ToolContext(workspace=base / name, run_id="r", step_id="s", sandbox=sandbox)
    try:
        seen[name] = asyncio.run(GitDiff().run(ctx, GitDiffArgs())).content
    except ToolFailure as exc:
        seen[name] = "refused: " + str(exc)
print(json.dumps(seen))
"""

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@x", "-c", "init.defaultBranch=main"]


def _git(*args: str | Path) -> None:
    subprocess.run([*GIT, *map(str, args)], check=True, capture_output=True)


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
