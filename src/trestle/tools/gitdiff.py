"""git_diff: what changed in the workspace since the last commit, new files included.

``git diff HEAD`` leaves out untracked files, and ``git add -N`` would change the
user's index. So the diff is taken through a scratch index instead: a copy of the
user's index (its stat cache keeps ``git add`` fast) in a temporary directory, filled
with ``git add -A``, then compared with HEAD. The blobs that ``git add`` writes go to
a temporary object directory, with the repository's own store as an alternate for
reading. The user's index, objects, refs and stash are never written.

In a run with a sandbox, the whole diff is taken by one script in it (``_IN_SANDBOX``):
git reads the repository only as commands may. Without one, git runs here, outside the
sandbox, on files a model may have written, so it runs the one way
:mod:`trestle.workspace.git` allows (links among what git reads, and borrowed objects,
refused too): only the workspace's own ``.git``
directory is used (no repository found above it, none a ``.git`` file points to, none
made of files in the workspace itself), a repository whose configuration holds any
setting not known to be inert is refused rather than diffed, and hooks, fsmonitor,
transports (so no promisor fetch), pagers and helpers are switched off on the command
line. A ``run_command`` in the sandbox may create such a ``.git``: ``git diff`` there
runs in the sandbox.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import tempfile
from pathlib import Path

from pydantic import Field

from trestle.execution.actions import CHUNK, OutputKeeper
from trestle.presentation.wording import counted
from trestle.tools.base import Observation, Tool, ToolArgs, ToolContext, ToolFailure
from trestle.tools.jail import normalise
from trestle.tools.sandboxed_git import confined, run_script
from trestle.workspace.git import (
    UnsafeRepositoryError,
    command,
    environment,
    refuse_links_read_outside,
    workspace_git_dir,
)

# beside workspace_git's: the scratch index stays whole, the output plain
_SETTINGS = (
    "core.splitIndex=false",
    "core.attributesFile=/dev/null",
    "core.quotePath=false",
    "color.ui=never",
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
        git = await _Git.checked(ctx)
        if confined(ctx):
            base, files, text = await _diff_in_sandbox(ctx, git, pathspec, args.stat_only)
            return _observed(base, files, text)
        try:
            await asyncio.to_thread(refuse_links_read_outside, git.git_dir)
        except UnsafeRepositoryError as exc:
            raise ToolFailure(str(exc)) from None
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
                # its times kept: git trusts no stat entry as new as the index itself
                await asyncio.to_thread(shutil.copy2, index, scratch_index)
            git.env.update(
                GIT_INDEX_FILE=str(scratch_index),
                GIT_OBJECT_DIRECTORY=str(scratch_objects),
                GIT_ALTERNATE_OBJECT_DIRECTORIES=objects,
            )
            # a submodule's checkout is left out: for a gitlink git add asks `git
            # status` in its checkout, where a command could have made .git a directory
            # of its own whose config and attributes (a filter) git obeys there
            await git.ok("add", "--all", "--", *pathspec, *await _submodules_left_out(git))
            diff = ("diff", "--cached", "--relative", "--no-ext-diff", "--no-textconv", base)
            names = await git.ok(*diff, "--name-only", "-z", "--", *pathspec)
            shown = "--stat=120" if args.stat_only else "--patch-with-stat"
            text = await git.ok(*diff, shown, "--", *pathspec, keep=ctx.output_cap)
        return _observed(base, [name for name in names.split("\0") if name], text)


def _observed(base: str, files: list[str], text: str) -> Observation:
    since = "the last commit" if base == "HEAD" else "an empty tree (no commits yet)"
    if not files:
        return Observation.success(f"no changes since {since}", data={"files": []})
    header = f"{counted(len(files), 'file')} changed since {since}:\n"
    return Observation.success(header + text, data={"files": list(files)})


# The same diff, taken by one script in the run's sandbox: git reads the repository
# there, where a .git a command made can lead only to what commands may read (outside,
# its packed-refs linked to the approval key had git print the key in its error). The
# scratch index and objects live in the sandbox's private /tmp; the first line printed
# is the base. A submodule's checkout need not be left out: what git runs there is
# confined too (see trestle.tools.sandboxed_git).
_IN_SANDBOX = """i=$({git} rev-parse --path-format=absolute --git-path index)
o=$({git} rev-parse --path-format=absolute --git-path objects)
if [ -f "$i" ]; then cp -p "$i" "$s/index"; fi
mkdir "$s/objects"
if {git} rev-parse --verify --quiet 'HEAD^{{commit}}' >/dev/null; then b=HEAD
else b=$({git} hash-object -t tree /dev/null); fi
export GIT_INDEX_FILE="$s/index" GIT_OBJECT_DIRECTORY="$s/objects"
export GIT_ALTERNATE_OBJECT_DIRECTORIES="$o"
{git} add --all -- {pathspec}
echo "$b"
{git} diff --cached --relative --no-ext-diff --no-textconv "$b" {shown} -- {pathspec}
"""
# the names are kept whole, up to this many characters
NAMES_MOST = 4 * 1024 * 1024


async def _diff_in_sandbox(
    ctx: ToolContext, git: _Git, pathspec: list[str], stat_only: bool
) -> tuple[str, list[str], str]:
    """The base, the files changed and the diff's text, each taken in the sandbox."""
    shown = "--stat=120" if stat_only else "--patch-with-stat"
    base, names = await _in_sandbox(ctx, git, pathspec, "--name-only -z", NAMES_MOST)
    _, text = await _in_sandbox(ctx, git, pathspec, shown, ctx.output_cap)
    return base, [name for name in names.split("\0") if name], text


async def _in_sandbox(
    ctx: ToolContext, git: _Git, pathspec: list[str], shown: str, limit: int
) -> tuple[str, str]:
    script = _IN_SANDBOX.format(
        git=shlex.join(command(settings=_SETTINGS)),
        pathspec=shlex.join(pathspec),
        shown=shown,
    )
    output = await run_script(ctx, script, git.env, "git diff", limit)
    base, _, rest = output.partition("\n")
    return base.strip(), rest


class _Git:
    """Runs git in the workspace with a clean, non-interactive environment."""

    def __init__(self, ctx: ToolContext, git_dir: Path) -> None:
        self.ctx = ctx
        self.git_dir = git_dir
        self.env = environment(git_dir, ctx.root, {"GIT_OPTIONAL_LOCKS": "0"})

    @classmethod
    async def checked(cls, ctx: ToolContext) -> _Git:
        """For the workspace's own repository, once it is checked (see
        :mod:`trestle.workspace.git`)."""
        try:
            git_dir = await asyncio.to_thread(workspace_git_dir, ctx.root)
        except UnsafeRepositoryError as exc:
            raise ToolFailure(str(exc)) from None
        return cls(ctx, git_dir)

    async def __call__(self, *args: str, keep: int | None = None) -> tuple[int, str, str]:
        """git's exit code, output and errors; with ``keep``, the output is read as it
        comes and only what :func:`cap_output` would keep of it is held (a patch of a
        huge file must not fill the driver's memory)."""
        proc = await asyncio.create_subprocess_exec(
            *command(*args, settings=_SETTINGS),
            cwd=self.ctx.workspace,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            if keep is None:
                out, err = await asyncio.wait_for(proc.communicate(), self.ctx.command_timeout)
                text = _text(out)
            else:
                kept = OutputKeeper(keep)
                reading = _kept(proc, kept)
                err = await asyncio.wait_for(reading, self.ctx.command_timeout)
                text = kept.text()
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
        return proc.returncode or 0, text, _text(err)

    async def ok(self, *args: str, keep: int | None = None) -> str:
        """Run git and return its output; a failure becomes a :class:`ToolFailure`."""
        code, out, err = await self(*args, keep=keep)
        if code != 0:
            raise ToolFailure(f"git {args[0]} failed (exit code {code}): {err.strip()}")
        return out


async def _kept(proc: asyncio.subprocess.Process, kept: OutputKeeper) -> bytes:
    """Read ``proc``'s output into ``kept`` a chunk at a time; its errors whole."""
    assert proc.stdout is not None and proc.stderr is not None
    errors = asyncio.ensure_future(proc.stderr.read())
    while chunk := await proc.stdout.read(CHUNK):
        kept.feed(chunk)
    await proc.wait()
    return await errors


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


async def _submodules_left_out(git: _Git) -> list[str]:
    """A pathspec leaving out each gitlink (a submodule's checkout) of the index, read
    from the index alone; named exactly (``literal``), from the top of the tree."""
    listed = await git.ok("ls-files", "--stage", "--full-name", "-z")
    paths = [e.partition("\t")[2] for e in listed.split("\0") if e.startswith("160000 ")]
    if any("\ufffd" in path for path in paths):  # read as text, it would name no file
        raise ToolFailure("a submodule's path is not UTF-8: the diff is not taken")
    return [f":(top,exclude,literal){path}" for path in paths]


async def _empty_tree(git: _Git) -> str:
    # the hash depends on the repository's hash algorithm (sha1 or sha256)
    return (await git.ok("hash-object", "-t", "tree", os.devnull)).strip()
