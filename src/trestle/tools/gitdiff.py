"""git_diff: what changed in the workspace since the last commit, new files included.

``git diff HEAD`` leaves out untracked files, and ``git add -N`` would change the
user's index. So the diff is taken through a scratch index instead: a copy of the
user's index (its stat cache keeps ``git add`` fast) in a temporary directory, filled
with ``git add -A``, then compared with HEAD. The blobs that ``git add`` writes go to
a temporary object directory, with the repository's own store as an alternate for
reading. The user's index, objects, refs and stash are never written.

git runs here, outside the sandbox, on files a model may have written, so nothing it
reads may make it run a program: only the workspace's own ``.git`` directory is used
(no repository found above it, none made of files in the workspace itself); system
and global configuration are ignored; hooks, fsmonitor, external diff and textconv
are off; and a repository whose configuration defines a filter, diff or ssh command
is refused rather than diffed (a ``run_command`` in the sandbox may create such a
``.git``).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from pydantic import Field

from trestle.actions import cap_output
from trestle.tools.base import Observation, Tool, ToolArgs, ToolContext, ToolFailure
from trestle.tools.jail import normalise

# settings that would make git write outside the scratch index or run user programs
_GIT_CONFIG = (
    "-c", "core.splitIndex=false",
    "-c", "core.fsmonitor=false",
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.attributesFile=/dev/null",
    "-c", "core.quotePath=false",
    "-c", "color.ui=never",
)  # fmt: skip
# configuration that names a program git would run while adding or diffing
_RUNS_A_PROGRAM = re.compile(
    r"^(filter\..+\.(clean|smudge|process)|diff\..+\.(command|textconv)|"
    r"core\.(fsmonitor|sshcommand|gitproxy|pager|askpass)|credential\..*helper)$"
)


class GitDiffArgs(ToolArgs):
    paths: tuple[str, ...] = Field(
        default=(), description="Only these files or directories (relative). Default: all."
    )
    stat_only: bool = Field(default=False, description="Only the summary of changed files.")


class GitDiff(Tool[GitDiffArgs]):
    name = "git_diff"
    description = (
        "Show the workspace's changes since the last commit as a unified diff, new "
        "untracked files included (ignored files are not). Changes nothing."
    )
    nature = "read"
    arguments = GitDiffArgs

    async def run(self, ctx: ToolContext, args: GitDiffArgs) -> Observation:
        pathspec = [normalise(ctx, p) for p in args.paths] or ["."]
        git = _Git(ctx)
        await _refuse_programs(git)
        code, out, err = await git(
            "rev-parse", "--path-format=absolute", "--git-path", "index", "--git-path", "objects"
        )
        if code != 0:
            raise ToolFailure(f"the workspace is not a git repository ({err.strip()})")
        index, objects = out.splitlines()[:2]
        code, _, _ = await git("rev-parse", "--verify", "--quiet", "HEAD^{commit}")
        base = "HEAD" if code == 0 else await _empty_tree(git)
        with tempfile.TemporaryDirectory(prefix="trestle-diff-") as scratch:
            scratch_index = Path(scratch) / "index"
            scratch_objects = Path(scratch) / "objects"
            scratch_objects.mkdir()  # git refuses an object directory that does not exist
            if Path(index).exists():
                await asyncio.to_thread(shutil.copyfile, index, scratch_index)
            git.env.update(
                GIT_INDEX_FILE=str(scratch_index),
                GIT_OBJECT_DIRECTORY=str(scratch_objects),
                GIT_ALTERNATE_OBJECT_DIRECTORIES=objects,
            )
            await git.ok("add", "--all", "--", *pathspec)
            diff = ("diff", "--cached", "--relative", "--no-ext-diff", "--no-textconv", base)
            names = await git.ok(*diff, "--name-only", "-z", "--", *pathspec)
            shown = "--stat=120" if args.stat_only else "--patch-with-stat"
            text = await git.ok(*diff, shown, "--", *pathspec)
        files: list[str] = [name for name in names.split("\0") if name]
        since = "the last commit" if base == "HEAD" else "an empty tree (no commits yet)"
        if not files:
            return Observation.success(f"no changes since {since}", data={"files": []})
        header = f"{len(files)} file(s) changed since {since}:\n"
        return Observation.success(
            header + cap_output(text, ctx.output_cap), data={"files": list(files)}
        )


class _Git:
    """Runs git in the workspace with a clean, non-interactive environment."""

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx
        # GIT_DIR, GIT_INDEX_FILE and friends from the parent would point elsewhere
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        workspace = ctx.root
        dot_git = workspace / ".git"
        try:
            real_dir = stat.S_ISDIR(os.lstat(dot_git).st_mode)
        except OSError:
            real_dir = False
        if not real_dir:  # never a repository found above, or made of workspace files
            raise ToolFailure("the workspace is not a git repository (it has no .git directory)")
        self.env.update(
            LC_ALL="C",
            GIT_TERMINAL_PROMPT="0",
            GIT_OPTIONAL_LOCKS="0",
            GIT_DIR=str(dot_git),
            GIT_WORK_TREE=str(workspace),
            GIT_CONFIG_NOSYSTEM="1",
            GIT_CONFIG_GLOBAL=os.devnull,
            GIT_ATTR_NOSYSTEM="1",
        )

    async def __call__(self, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            "git", *_GIT_CONFIG, *args,
            cwd=self.ctx.workspace,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.ctx.command_timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise ToolFailure(
                f"git {args[0]} took longer than {self.ctx.command_timeout:g}s"
            ) from None
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        return proc.returncode or 0, _text(out), _text(err)

    async def ok(self, *args: str) -> str:
        """Run git and return its output; a failure becomes a :class:`ToolFailure`."""
        code, out, err = await self(*args)
        if code != 0:
            raise ToolFailure(f"git {args[0]} failed (exit code {code}): {err.strip()}")
        return out


async def _refuse_programs(git: _Git) -> None:
    """Refuse a repository whose configuration (includes followed) names a program
    that adding or diffing could run."""
    code, out, _ = await git("config", "--local", "--includes", "--name-only", "--list", "-z")
    if code != 0:
        return  # no configuration to read: nothing in it runs
    risky = sorted({k for k in out.split("\0") if _RUNS_A_PROGRAM.match(k.lower())})
    if risky:
        raise ToolFailure(
            f"the repository's configuration names programs git would run ({', '.join(risky)}); "
            "git_diff does not run them: use run_command with `git diff`, which runs in "
            "the sandbox"
        )


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


async def _empty_tree(git: _Git) -> str:
    # the hash depends on the repository's hash algorithm (sha1 or sha256)
    return (await git.ok("hash-object", "-t", "tree", os.devnull)).strip()
