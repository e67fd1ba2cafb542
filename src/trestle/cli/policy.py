"""``trestle policy show|accept``: which operator policy file a run here would obey, and
a human's acceptance of it (see :mod:`trestle.trust.policy_trust`); ``trestle policy
identity``: your public key, as ``[policy.groups]`` lists an approver."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from trestle.cli.console import _out, confirmed
from trestle.core.errors import ConfigError, PolicyNotAcceptedError

if TYPE_CHECKING:
    from trestle.formats.policyfile import PolicyFile

policy_app = typer.Typer(
    help="The operator's policy file: show it, and accept it so that runs obey it.",
    rich_markup_mode=None,
)

FileArg = Annotated[
    Path | None,
    typer.Argument(
        metavar="[PATH]",
        help="The policy file [default: the nearest trestle.toml a run in the workspace uses].",
    ),
]
WorkspaceOption = Annotated[
    Path,
    typer.Option("--workspace", "-w", help="The workspace whose policy file is meant."),
]


@policy_app.command("show")
def show_policy(path: FileArg = None, workspace: WorkspaceOption = Path(".")) -> None:
    """Print the policy file, its SHA-256 and whether runs obey it."""
    from trestle.trust.policy_trust import status

    read = _read(path, workspace)
    out = _out()
    for line in _head(read, status(read.path, read.sha256)):
        out.print(line, markup=False, soft_wrap=True)
    out.print(_body(read), markup=False, soft_wrap=True, end="")


@policy_app.command("accept")
def accept_policy(
    path: FileArg = None,
    workspace: WorkspaceOption = Path("."),
    sha256: Annotated[
        str | None,
        typer.Option(
            "--sha256",
            help="Accept without asking if the file's SHA-256 is this (for scripts; "
            "needed off a terminal).",
        ),
    ] = None,
) -> None:
    """Accept the policy file as it is now, so that runs obey it. On a terminal it is
    shown and you are asked; a later change must be accepted again."""
    from trestle.trust.policy_trust import accept, status

    read = _read(path, workspace)
    real = read.path.resolve()
    out = _out()
    if sha256 is not None:
        if sha256.strip().lower() != read.sha256:
            raise ConfigError(
                f"{real}: --sha256 {sha256} does not match the file, whose SHA-256 is "
                f"{read.sha256}: it was not accepted"
            )
    elif sys.stdin.isatty() and out.is_terminal:
        for line in _head(read, status(read.path, read.sha256)):
            out.print(line, markup=False, soft_wrap=True)
        out.print(_body(read), markup=False, soft_wrap=True, end="")
        if not confirmed("Runs will obey this file as your policy. Accept it?"):
            raise PolicyNotAcceptedError(f"{real}: not accepted; runs do not obey it")
    else:
        raise ConfigError(
            f"{real}: not accepted: off a terminal, read it (`trestle policy show {real}`) "
            f"and give `--sha256 {read.sha256}` to accept exactly these bytes"
        )
    done = accept(read)  # the bytes shown or checked, however the file changed since
    out.print(f"accepted {real} (sha256 {done.sha256})", markup=False, soft_wrap=True)


@policy_app.command("forget")
def forget_policy(
    path: Annotated[Path, typer.Argument(help="The policy file, as accepted (it may be gone).")],
) -> None:
    """Forget that you accepted a policy file: one you removed, so that runs below where
    it lay no longer stop to ask for it."""
    from trestle.trust.policy_trust import forget

    if not forget(path):
        raise ConfigError(f"{path}: no acceptance of it is recorded: nothing to forget")
    _out().print(f"forgot the acceptance of {path}", markup=False, soft_wrap=True)


@policy_app.command("identity")
def show_identity() -> None:
    """Print your public key (made on first use), for an operator's [policy.groups]."""
    from trestle.trust.identity import identity_path, public_key

    key = public_key()
    _out().print(key, markup=False, soft_wrap=True)
    print(f"(the private half is {identity_path()}: keep it to yourself)", file=sys.stderr)


def _read(path: Path | None, workspace: Path) -> PolicyFile:
    """The file read once, refused if it is not a valid policy file."""
    from trestle.formats.policyfile import find_policy_file, read_policy_file

    found = path if path is not None else find_policy_file(workspace)
    if found is None:
        raise ConfigError(
            f"{str(workspace)!r}: no trestle.toml here or above it, up to the repository's "
            "root: runs here use the plan's policy and the defaults"
        )
    read = read_policy_file(found)
    # a file that is not a valid policy is never accepted
    read.policy()
    read.monitors()
    read.mcp_servers()
    return read


def _head(read: PolicyFile, standing: str) -> list[str]:
    return [f"file: {read.path.resolve()}", f"sha256: {read.sha256}", f"status: {standing}", ""]


def _body(read: PolicyFile) -> str:
    return read.text if read.text.endswith("\n") or not read.text else read.text + "\n"
