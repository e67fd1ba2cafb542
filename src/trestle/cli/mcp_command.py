"""``trestle mcp``: Trestle and the Model Context Protocol. ``trestle mcp serve`` serves a
store's runs, inbox and decisions to an MCP client over stdio
(:mod:`trestle.cli.mcp_server`), behind the ``mcp`` extra."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Annotated

import typer

from trestle.cli.options import StoreOption
from trestle.core.errors import ConfigError

mcp_app = typer.Typer(
    help="Trestle and the Model Context Protocol (needs the mcp extra).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def require_mcp() -> None:
    """ConfigError naming the install command when the MCP SDK (2 or later) is missing."""
    try:
        found = importlib.util.find_spec("mcp.server.mcpserver") is not None
    except ImportError:  # no `mcp` package at all, or one that cannot load
        found = False
    if not found:
        raise ConfigError(
            "trestle mcp needs the MCP SDK (mcp 2 or later): install it with: "
            'pip install "trestle-runtime[mcp]"'
        )


def use_identity(path: Path) -> None:
    """Sign this process's decisions with the identity key at ``path``, which must be
    one already (a typo must not make a new key nobody lists)."""
    from trestle.trust.identity import IDENTITY_ENV, public_key

    if not path.is_file():
        raise ConfigError(
            f"--identity {str(path)!r}: no such identity key file; make one with "
            f"`TRESTLE_IDENTITY_FILE={path} trestle policy identity` (it prints the public "
            "key to list in [policy.groups])"
        )
    public_key(path)  # a file that is not a key is refused now, naming it
    os.environ[IDENTITY_ENV] = str(path.resolve())


@mcp_app.command(
    "serve", short_help="Serve runs, the inbox and decisions to an MCP client (stdio)."
)
def serve(
    store: StoreOption = None,
    identity: Annotated[
        Path | None,
        typer.Option(
            "--identity",
            metavar="FILE",
            help="The identity key approvals and rejections are signed with "
            "[default: $TRESTLE_IDENTITY_FILE, else identity.key in your config directory].",
        ),
    ] = None,
) -> None:
    """Serve the store to an MCP client over stdio: tools runs, show_run, inbox, and
    approve, reject, retry, skip, tell, cancel.

    Decisions are signed with your approval key and your identity key (or --identity
    FILE's: one server per person) and recorded as made by mcp:CLIENT:USER@HOST
    (CLIENT: the name the MCP client connects with), shown as the operator's groups name
    the key (alice (mcp:CLIENT)); they are refused when the server or the call is part
    of a running step. Configure it in an IDE as the command `trestle mcp serve --store
    PATH --identity FILE`."""
    from trestle.cli.stores import reading_store

    require_mcp()
    if identity is not None:
        use_identity(identity)
    where = reading_store(store)

    from trestle.cli.mcp_server import build_server

    build_server(where).run("stdio")
