"""git run by one shell script in the run's sandbox, for the tools that read a
repository a step could have made (``git_diff``, ``fetch_artifact``'s commits).

Outside the sandbox, a ``.git`` a command made is checked for links that lead out of
the workspace and then read by git; a step running beside the tool can change it in
between (a ``packed-refs`` linked to the approval key had git print the key as the
line it could not parse). In the sandbox git reads the repository only as commands
may, whatever it holds. The script's errors go to a file in the sandbox's private
``/tmp`` and are printed only if it fails, so what it prints is its output alone.
"""

from __future__ import annotations

from trestle.tools.base import ToolContext, ToolFailure

# the start of every script: errors kept aside ($s/err), printed only on failure; $s
# is a private scratch directory
START = """set -e
s=$(mktemp -d)
trap 'code=$?; [ $code -eq 0 ] || cat "$s/err"; exit $code' EXIT
exec 2>"$s/err"
"""


def confined(ctx: ToolContext) -> bool:
    """Whether the run's commands run in a sandbox, where git can run too."""
    return ctx.sandbox is not None and ctx.sandbox.confines


async def run_script(
    ctx: ToolContext, body: str, git_env: dict[str, str], what: str, limit: int
) -> str:
    """``START`` then ``body``, run in the sandbox in the workspace with git's clean
    environment (:func:`trestle.workspace.git.environment`; the sandbox's own
    ``PATH``); its output, up to ``limit`` characters, or a :class:`ToolFailure`
    naming ``what`` failed and the last thing it said."""
    from trestle.execution.actions import run_shell
    from trestle.execution.sandbox import Cell

    assert ctx.sandbox is not None
    env = {**ctx.sandbox.environ(), **{k: v for k, v in git_env.items() if k != "PATH"}}
    done = await run_shell(
        START + body,
        cwd=ctx.workspace,
        env=env,
        timeout=ctx.command_timeout,
        cell=Cell(ctx.sandbox, ctx.workspace, what.replace(" ", "_")),
        limit=limit,
    )
    if done.status != "ok":
        said = done.output.strip() or done.status
        raise ToolFailure(f"{what} failed (exit code {done.exit_code}): {said}")
    return done.output
