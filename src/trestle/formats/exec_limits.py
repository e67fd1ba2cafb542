"""What a sandboxed command can start with, checked when a plan is loaded.

bubblewrap reads its own options (every mount: one for each ``sandbox.read`` entry)
from a descriptor (:mod:`trestle.execution.sandbox_start`), so they pass no kernel
limit; but it takes at most 9,000 arguments in all, and the command itself is still
started by ``execve``: Linux refuses (``Argument list too long``) one argument or
one variable past 128 KiB, and arguments and environment together past a quarter of
the stack's limit (2 MiB at the usual 8 MiB). A plan past them would be accepted and
then fail every start of the step; it is refused here instead, naming the step, the
field and the limit.
"""

from __future__ import annotations

from typing import Any

# the kernel's limit on one argument or one variable (MAX_ARG_STRLEN), its NUL included
ARG_STRING_BYTES = 128 * 1024
# the most the sandbox puts before a command, naming the sandbox.read entries left out
# (trestle.execution.sandbox): past this they are counted, not named
LEFT_OUT_BYTES = 16 * 1024
# a command's text: the argument limit, less the lines put before it, with room to spare
COMMAND_BYTES = 100_000
# a step's own variables together, beside its command and the driver's allowed
# variables within the 2 MiB an exec takes
ENV_BYTES = 1_000_000
# sandbox.read entries: bubblewrap takes 9,000 arguments, three for each entry shown,
# and the sandbox's own mounts (hidden paths, host sockets covered) need the rest
READ_ENTRIES = 2_000

Loc = tuple[str | int, ...]


def size(text: str) -> int:
    """``text``'s length in bytes, as the kernel counts it."""
    return len(text.encode("utf-8", "surrogatepass"))


def limit_problems(raw: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Where the plan document ``raw`` passes a limit above, and how: its commands
    (``run``, a ``verify`` check's ``command``, an agent's ``test_command``), a step's
    ``env`` and the policy's ``sandbox.read``. A value of the wrong type is the
    schema's to refuse."""
    problems: list[tuple[Loc, str]] = []
    steps = raw.get("steps")
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        if not isinstance(step, dict):
            continue
        commands: list[tuple[Loc, object]] = [(("steps", i, "run"), step.get("run"))]
        checks = step.get("verify")
        for j, check in enumerate(checks if isinstance(checks, list) else []):
            if isinstance(check, dict):
                commands.append((("steps", i, "verify", j, "command"), check.get("command")))
        agent = step.get("agent")
        if isinstance(agent, dict):
            commands.append((("steps", i, "agent", "test_command"), agent.get("test_command")))
        for loc, command in commands:
            if isinstance(command, str) and size(command) > COMMAND_BYTES:
                problems.append((loc, _too_long("the command", size(command), COMMAND_BYTES)))
        env = step.get("env")
        if isinstance(env, dict):
            problems += _env_problems(i, env)
    reads = _reads(raw)
    too_many = None if reads is None else too_many_reads(len(reads))
    if too_many is not None:
        problems.append((("policy", "sandbox", "read"), too_many))
    return problems


def too_many_reads(count: int) -> str | None:
    """What is wrong with ``count`` ``sandbox.read`` entries (a plan's or an operator's
    policy), None if nothing."""
    if count <= READ_ENTRIES:
        return None
    return (
        f"{count:,} entries, more than the {READ_ENTRIES:,} a sandbox can show (bubblewrap "
        "takes 9,000 arguments, three for each); list their common parent directories instead"
    )


def _env_problems(index: int, env: dict[Any, Any]) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    total = 0
    for name, value in env.items():
        if not isinstance(name, str) or not isinstance(value, str):
            continue
        # the kernel holds each as NAME=value and its NUL
        held = size(name) + size(value) + 2
        total += held
        if held > ARG_STRING_BYTES:
            problems.append(
                (
                    ("steps", index, "env", name),
                    f"the variable is {held:,} bytes with its name, more than the "
                    f"{ARG_STRING_BYTES:,} the kernel starts a command with; pass it in a "
                    "file the command reads",
                )
            )
    if total > ENV_BYTES:
        problems.append(
            (
                ("steps", index, "env"),
                f"the variables are {total:,} bytes together, more than {ENV_BYTES:,} "
                "(a command's arguments and environment together must stay within the "
                "2 MiB the kernel starts one with); pass them in a file the command reads",
            )
        )
    return problems


def _too_long(what: str, length: int, limit: int) -> str:
    return (
        f"{what} is {length:,} bytes, more than {limit:,} (the kernel starts a command "
        f"with no argument past {ARG_STRING_BYTES:,} bytes, and the sandbox puts lines of "
        "its own before it); put it in a script in the workspace and run that"
    )


def _reads(raw: dict[str, Any]) -> list[Any] | None:
    policy = raw.get("policy")
    sandbox = policy.get("sandbox") if isinstance(policy, dict) else None
    reads = sandbox.get("read") if isinstance(sandbox, dict) else None
    return reads if isinstance(reads, list) else None
