"""The MCP servers an agent run connects to, as recorded with the run.

A server is declared in ``trestle.toml`` (``[mcp.servers.NAME]``) or with
``trestle agent --mcp NAME=...``, and recorded in the run's :class:`AgentSettings`, so a
resumed run connects to the very servers it started with (the file is not read again).
Pure data: the client that speaks to a server lives in :mod:`trestle.tools.mcp_client`.

Each tool a server lists becomes an agent tool named ``SERVER__TOOL``; its tier comes
from the tool's annotations (:func:`annotation_tier`), below every policy rule.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from trestle.core.policy import Nature
from trestle.core.record import Record

SERVER_NAME = re.compile(r"[A-Za-z0-9-]{1,24}")  # leaves 38 characters for a tool's name
SEPARATOR = "__"  # between the server's name and its tool's: ``git__git_status``
DEFAULT_CALL_TIMEOUT = 60.0  # seconds one tool call may take
DEFAULT_START_TIMEOUT = 30.0  # seconds a server may take to start and list its tools
DEFAULT_MAX_RESULT = 1_000_000  # characters of one result kept before it is refused


class McpServer(Record):
    """One MCP server: a command run over stdio in the sandbox, or a streamable HTTP URL.

    Attributes:
        name: what its tools are prefixed with (``time`` → ``time__get_current_time``),
            and what policy rules name it by (the tag ``mcp:time``).
        command: the program and its arguments (stdio), run in the run's sandbox.
        url: the endpoint of a streamable HTTP server, reached by the driver.
        env: names of variables passed from the driver's environment to a stdio server
            (its only way to a credential: the sandbox passes no others).
        timeout: seconds one call may take before it is given up as hung.
        start_timeout: seconds the server may take to start and list its tools.
        max_result: characters of one result accepted; a bigger one is refused.
    """

    name: str = Field(pattern=SERVER_NAME.pattern)
    command: tuple[str, ...] = ()
    url: str | None = None
    env: tuple[str, ...] = ()
    timeout: float = Field(default=DEFAULT_CALL_TIMEOUT, gt=0, le=86_400, allow_inf_nan=False)
    start_timeout: float = Field(default=DEFAULT_START_TIMEOUT, gt=0, le=3_600)
    max_result: int = Field(default=DEFAULT_MAX_RESULT, ge=1_000, le=100_000_000)

    @model_validator(mode="after")
    def _one_transport(self) -> McpServer:
        if bool(self.command) == (self.url is not None):
            raise ValueError(
                f"MCP server {self.name!r} needs exactly one of command (stdio) or url "
                "(streamable HTTP)"
            )
        if self.url is not None and not re.match(r"https?://", self.url):
            raise ValueError(f"MCP server {self.name!r}: url must start with http:// or https://")
        return self

    @property
    def transport(self) -> Literal["stdio", "http"]:
        return "stdio" if self.command else "http"

    @property
    def tag(self) -> str:
        """The tag every call to this server carries, for policy rules."""
        return f"mcp:{self.name}"


class ToolHints(Record):
    """A tool's annotations as its server listed them (MCP's ``ToolAnnotations``);
    None where the server said nothing."""

    read_only: bool | None = None
    destructive: bool | None = None
    idempotent: bool | None = None
    open_world: bool | None = None


class AnnotationTier(Record):
    """What a tool's annotations make of its calls: their nature, whether a human must
    confirm each one (and why), and whether one may run again after an unknown outcome."""

    nature: Nature
    confirm: str | None
    idempotent: bool


def annotation_tier(server: str, tool: str, hints: ToolHints | None) -> AnnotationTier:
    """The tier ``hints`` give a tool, by MCP's defaults for what a server leaves out
    (not read-only, destructive, open-world, not idempotent):

    - no annotations at all: confirm;
    - read-only: a read (auto), unless it says it reaches an open world: confirm;
    - otherwise destructive or open-world (as said, or by default): confirm;
    - otherwise (additive, closed world): a call, logged.
    """
    who = f"MCP tool {tool!r} of server {server!r}"
    if hints is None:
        return AnnotationTier(
            nature="call", confirm=f"{who} declares no annotations", idempotent=False
        )
    idempotent = bool(hints.idempotent) or bool(hints.read_only)
    if hints.read_only:
        if hints.open_world:
            why = f"{who} is read-only but reaches an open world"
            return AnnotationTier(nature="read", confirm=why, idempotent=True)
        return AnnotationTier(nature="read", confirm=None, idempotent=True)
    if hints.destructive is not False:
        said = "is destructive" if hints.destructive else "does not say it is not destructive"
        return AnnotationTier(nature="call", confirm=f"{who} {said}", idempotent=idempotent)
    if hints.open_world is not False:
        said = "reaches an open world" if hints.open_world else "does not say its world is closed"
        return AnnotationTier(nature="call", confirm=f"{who} {said}", idempotent=idempotent)
    return AnnotationTier(nature="call", confirm=None, idempotent=idempotent)
