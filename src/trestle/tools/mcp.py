"""MCP servers' tools as agent tools: the same registry, gate, ledger and monitors.

Each tool a server lists becomes an :class:`McpTool` named ``SERVER__TOOL``, with the
server's JSON Schema as what the model is shown. It describes its calls to the gate
like any tool: its nature and, where its annotations ask for a human, why
(:func:`~trestle.core.records.mcp.annotation_tier`), tagged ``mcp``, ``mcp:SERVER`` and
``mcp:SERVER/TOOL`` for policy rules. Only its :meth:`McpTool.run`, which the registry
calls after the gate allowed, sends anything to a server.

:class:`McpServers` holds one attempt's connections: started when the attempt offers
its tools, stopped when it ends (see docs/mcp.md for why a server lives that long).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import BaseModel, ConfigDict

from trestle.core.conversation import ToolSchema
from trestle.core.policy import ActionFacts
from trestle.core.records.mcp import SEPARATOR, AnnotationTier, McpServer, annotation_tier
from trestle.execution.actions import cap_output
from trestle.execution.sandbox import Sandbox
from trestle.execution.workspace_hold import held_shared
from trestle.tools.base import Observation, Tool, ToolContext
from trestle.tools.mcp_client import ListedTool, McpConnection, McpStartError

UNFIT = re.compile(r"[^A-Za-z0-9_-]")
MAX_DESCRIPTION = 2_000  # characters of a server's description of a tool shown


class McpArguments(BaseModel):
    """Whatever the model passes: the server checks them against its own schema."""

    model_config = ConfigDict(extra="allow", frozen=True)


class McpTool(Tool[McpArguments]):
    """One tool of one MCP server (see the module docstring).

    Attributes:
        server: the server's declaration.
        listed: the tool as the server listed it when the attempt began.
        tier: what its annotations make of its calls.
        escalates: an unknown outcome of one of its calls goes to a human (it may
            destroy, and cannot be re-run or asked about).
    """

    arguments = McpArguments

    def __init__(self, connection: McpConnection, listed: ListedTool, name: str) -> None:
        self.connection, self.listed, self.name = connection, listed, name
        self.server = connection.server
        self.tier: AnnotationTier = annotation_tier(self.server.name, listed.name, listed.hints)
        self.nature = self.tier.nature
        self.idempotent = self.tier.idempotent
        hints = listed.hints
        self.escalates = not self.idempotent and (hints is None or hints.destructive is not False)
        said = listed.description.strip()[:MAX_DESCRIPTION] or "(no description)"
        self.description = f"{said}\n(MCP tool {listed.name!r} of server {self.server.name!r})"

    def schema(self) -> ToolSchema:
        parameters = dict(self.listed.input_schema) or {"type": "object", "properties": {}}
        parameters.setdefault("type", "object")
        return ToolSchema(name=self.name, description=self.description, parameters=parameters)

    def facts(self, args: McpArguments, ctx: ToolContext) -> ActionFacts:
        return ActionFacts(
            nature=self.nature,
            name=self.name,
            tags=("mcp", self.server.tag, f"{self.server.tag}/{self.listed.name}"),
            confirm=self.tier.confirm,
        )

    async def run(self, ctx: ToolContext, args: McpArguments) -> Observation:
        # a server may write the workspace (stdio: it runs in the run's sandbox): each
        # call holds it, never beside another run's approved command
        async with held_shared(ctx.workspace):
            return await self._call(ctx, args)

    async def _call(self, ctx: ToolContext, args: McpArguments) -> Observation:
        arguments = args.model_dump(mode="json")
        end = await self.connection.call(self.listed.name, arguments)
        if end.ending == "unknown" and self.idempotent:
            # it may run again whatever it did: once, on a fresh start of the server
            again = await self.connection.call(self.listed.name, arguments)
            if again.ending != "unknown":
                note = f"({end.text}; it was called again, which it allows)\n"
                end = again.__class__(again.ending, note + again.text, again.is_error, again.data)
        data: dict[str, Any] = {"mcp": self.server.name, "ending": end.ending, **end.data}
        if end.ending == "unknown":
            data["outcome"] = "unknown"
            return Observation.failure(
                f"{end.text}, so whether {self.listed.name} took effect is unknown; look "
                "before doing it again",
                data=data,
            )
        if end.ending in ("refused", "malformed"):
            return Observation.failure(end.text, data=data)
        text = cap_output(end.text, ctx.output_cap)
        if end.is_error:
            return Observation.failure(f"{self.name} reported an error: {text}", data=data)
        return Observation.success(text, data=data)


def tool_name(server: str, tool: str) -> str:
    """``SERVER__TOOL``, in the characters a model's API accepts, at most 64 of them."""
    return (server + SEPARATOR + UNFIT.sub("_", tool))[:64]


class McpServers:
    """One attempt's MCP connections and their tools (an async context manager: every
    server is stopped when the attempt ends, however it ends).

    Args:
        servers: the run's declared servers.
        sandbox: the sandbox stdio servers start in.
        workspace: their working directory (the run's workspace).
        taken: names already held by other tools; an MCP tool never shadows one.
    """

    def __init__(
        self,
        servers: Sequence[McpServer],
        sandbox: Sandbox | None,
        workspace: Path,
        taken: Sequence[str] = (),
    ) -> None:
        self.connections = [McpConnection(s, sandbox, workspace) for s in servers]
        self.taken = set(taken)
        self.tools: list[McpTool] = []

    async def __aenter__(self) -> McpServers:
        """Start every server and list its tools.

        Raises:
            McpStartError: one did not start (the others are stopped).
        """
        try:
            for connection in self.connections:
                await connection.start()
                for listed in connection.tools.values():
                    name = tool_name(connection.server.name, listed.name)
                    if name in self.taken:
                        continue  # two tools cut to the same 64 characters: the first wins
                    self.taken.add(name)
                    self.tools.append(McpTool(connection, listed, name))
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for connection in self.connections:
            await connection.aclose()


__all__ = ["McpServers", "McpStartError", "McpTool", "tool_name"]
