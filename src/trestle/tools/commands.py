"""The tools that run processes: run_command and run_tests.

Both go through :func:`trestle.execution.actions.run_shell`: a new session per command, so a
timeout kills the whole process group (a test runner and the servers it started),
and output capped to the context's ``output_cap`` as it is read, its head and tail
kept (the error is usually at the end). The environment is the parent's without its
secrets (:mod:`trestle.tools.env`).
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
from pathlib import Path

from pydantic import Field, JsonValue, field_validator

from trestle.core.events import ActionResult
from trestle.core.policy import ActionFacts, command_shape, workspace_path
from trestle.execution.actions import run_shell
from trestle.execution.pinning import holding, unheld_reason
from trestle.execution.processes import KEY_VAR
from trestle.execution.sandbox import Cell, Pinned
from trestle.formats.exec_limits import COMMAND_BYTES, size
from trestle.tools.base import Observation, Tool, ToolArgs, ToolContext, ToolFailure
from trestle.tools.env import command_env
from trestle.tools.jail import resolve


def _cell(ctx: ToolContext, tool: str, pinned: Pinned) -> Cell | None:
    """Where ``tool``'s commands run: the run's sandbox, the network as the policy
    says for this tool, the files a human approved shown as they approved them."""
    if ctx.sandbox is None:
        return None
    return Cell(ctx.sandbox, ctx.workspace, tool, approved=ctx.approved, pinned=pinned)


async def _run(
    ctx: ToolContext, tool: str, command: str, cwd: Path, directory: str, timeout: float
) -> Observation:
    """Run ``command`` in ``cwd`` (``directory`` in the workspace); where a human
    approved it, with the files it names held as they read when asked (see
    :func:`trestle.execution.pinning.holding`), or not at all."""
    with contextlib.ExitStack() as held:
        pinned: Pinned = ()
        if ctx.bound is not None:  # reading and copying the files is IO: off the loop
            confined = ctx.sandbox is not None and ctx.sandbox.confines
            files = holding(command, ctx.bound, ctx.root, directory, confined=confined)
            pinned, moved, cannot = await asyncio.to_thread(held.enter_context, files)
            refusal = unheld_reason(cannot)
            if moved:
                refusal = (
                    f"refused: {', '.join(moved)} changed since a human approved this call: "
                    "it did not run; make the call again to ask again"
                )
            if refusal is not None:
                return Observation.failure(refusal, data={"status": "refused"})
        result = await run_shell(
            command,
            cwd=cwd,
            env=_env(ctx),
            timeout=timeout,
            cell=_cell(ctx, tool, pinned),
            limit=ctx.output_cap,
        )
    return command_observation(command, result)


def _env(ctx: ToolContext) -> dict[str, str]:
    env = command_env(
        run_id=ctx.run_id,
        step_id=ctx.step_id,
        workspace=str(ctx.root),
        parent=None if ctx.sandbox is None else ctx.sandbox.environ(),
    )
    if ctx.idempotency_key:
        # also how a resume finds the command's processes left by a crashed driver
        env[KEY_VAR] = ctx.idempotency_key
    return env


def command_observation(command: str, result: ActionResult) -> Observation:
    """What the model sees of a finished command: the command, how it ended, its output.

    The duration goes only into ``data``: the text a model sees stays the same for the
    same output, which keeps recorded runs comparable.
    """
    if result.status == "ok":
        ending = "exit code 0"
    elif result.status == "failed":
        ending = f"exit code {result.exit_code}"
    else:
        ending = result.error or result.status
    output = result.output or "(no output)"  # capped as it was read (run_shell)
    content = f"$ {command}\n[{ending}]\n{output}"
    if not content.endswith("\n"):
        content += "\n"
    data: dict[str, JsonValue] = {
        "status": result.status,
        "exit_code": result.exit_code,
        "duration": round(result.duration, 3),
    }
    if result.status == "ok":
        return Observation.success(content, data=data)
    return Observation.failure(ending, content=content, data=data)


class RunCommandArgs(ToolArgs):
    command: str = Field(min_length=1, description="A shell command (run with sh -c).")
    directory: str = Field(default=".", description="Working directory, relative.")
    timeout: float | None = Field(
        default=None,
        gt=0,
        description="Seconds before the command is killed; at most the run's command "
        "timeout, which is also the default.",
    )

    @field_validator("command")
    @classmethod
    def _startable(cls, command: str) -> str:
        # past it no start could pass the kernel's limit on one argument: refused here,
        # in words the model can act on, not as a sandbox that never started
        if size(command) > COMMAND_BYTES:
            raise ValueError(
                f"the command is {size(command):,} bytes, more than {COMMAND_BYTES:,}: "
                "write a script file and run that"
            )
        return command


class RunCommand(Tool[RunCommandArgs]):
    name = "run_command"
    description = (
        "Run a shell command in the workspace and return its exit code and output "
        "(stdout and stderr together; long output keeps its start and end). Secrets are "
        "not in its environment. Standard input is empty, so nothing interactive."
    )
    nature = "command"
    arguments = RunCommandArgs

    def facts(self, args: RunCommandArgs, ctx: ToolContext) -> ActionFacts:
        return ActionFacts(
            nature=self.nature,
            name=self.name,
            command=args.command,
            cwd=_cwd(args.directory),
            paths=_written_in(args),
        )

    async def run(self, ctx: ToolContext, args: RunCommandArgs) -> Observation:
        cwd = resolve(ctx, args.directory, what="directory")
        if not cwd.is_dir():
            raise ToolFailure(f"directory {args.directory!r} does not exist or is not one")
        timeout = min(args.timeout or ctx.command_timeout, ctx.command_timeout)
        return await _run(ctx, self.name, args.command, cwd, args.directory, timeout)


def _cwd(directory: str) -> str | None:
    """Where a command runs, for the gate: None at the workspace's top, else the
    directory as written, its ``..`` kept (``d/..`` runs where the link ``d`` leads,
    then up: no lexical reading can say where that is; see
    :func:`trestle.execution.named_files.named_files`)."""
    if posixpath.normpath(directory or ".") == "." and ".." not in directory.split("/"):
        return None
    return directory


def _written_in(args: RunCommandArgs) -> tuple[str, ...]:
    """The relative paths the command writes, from the workspace's root: the policy
    reads the command alone, as if run at the root, so ``echo x > src/f.py`` in
    ``tests`` read as a write to ``src/f.py`` (in a ``src/**`` scope) where it writes
    ``tests/src/f.py``. One the command's own reading finds outside stays so."""
    if posixpath.normpath(args.directory or ".") == ".":
        return ()
    joined = (
        posixpath.normpath(posixpath.join(args.directory, inside))
        for inside in map(workspace_path, command_shape(args.command).writes)
        if inside is not None
    )
    return tuple(dict.fromkeys(p for p in joined if p != ".." and not p.startswith("../")))


class RunTestsArgs(ToolArgs):
    pass


class RunTests(Tool[RunTestsArgs]):
    name = "run_tests"
    description = (
        "Run the project's configured test command in the workspace and return its "
        "exit code and output. Takes no arguments; to run one test, use run_command."
    )
    nature = "test"
    arguments = RunTestsArgs

    def facts(self, args: RunTestsArgs, ctx: ToolContext) -> ActionFacts:
        return ActionFacts(nature=self.nature, name=self.name, command=ctx.test_command)

    async def run(self, ctx: ToolContext, args: RunTestsArgs) -> Observation:
        if not ctx.test_command:
            raise ToolFailure(
                "no test command is configured for this run; find how the project is "
                "tested and use run_command"
            )
        command, timeout = ctx.test_command, ctx.command_timeout
        return await _run(ctx, self.name, command, ctx.workspace, ".", timeout)
