"""A step or tool the policy lets keep the network, in an agent run with a streamable
HTTP MCP server: the driver reaches the server with no credentials (docs/mcp.md), so a
command that keeps the network reaches it too, and calls its destructive tool directly,
past the gate that would have asked a human. The run says so at its start.

tests/mcp_server.py serving streamable HTTP on 127.0.0.1; the model's run_command is a
real command in the real sandbox.
"""

from __future__ import annotations

import sys
from pathlib import Path

from agent_helpers import call, sample_workspace
from test_mcp_http import serving
from test_mcp_tools import effects, run
from trestle.core.events import SandboxChosen
from trestle.core.policy import Policy, SandboxPolicy
from trestle.execution.sandbox import find_bwrap
from trestle.store import SqliteStore

# what the command runs: the server's destructive tool, called as the driver would
CALL = """\
import asyncio, sys
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

async def main() -> None:
    async with streamable_http_client(sys.argv[1]) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            await session.call_tool("delete_note", {"name": "old"})

asyncio.run(main())
"""


def test_a_command_that_keeps_the_network_reaches_an_http_server_and_the_run_says_so(
    tmp_path: Path,
) -> None:
    found, why = find_bwrap()
    assert found is not None, f"{why}: scripts/setup-sandbox.sh installs bubblewrap"
    store = SqliteStore(tmp_path / "runs.db")
    workspace = sample_workspace(tmp_path)
    (workspace / "call.py").write_text(CALL)
    operator = Policy(sandbox=SandboxPolicy(network=("run_command",)))
    with serving(tmp_path) as (server, home):
        command = f"{sys.executable} call.py {server.url}"
        _, events, _ = run(
            store, workspace, call("run_command", command=command), server=server, operator=operator
        )
        # the destructive call reached the server, and no human was asked
        assert effects(home) == ['delete_note {"name": "old"}']
    assert not [e for e in events if e.event.kind == "approval_requested"]
    chosen = [e.event for e in events if isinstance(e.event, SandboxChosen)]
    assert chosen and all(c.confined for c in chosen), chosen
    said = " ".join(chosen[-1].exposed)
    assert f"the MCP server 'web' ({server.url}) is reached with no credentials" in said
    assert "lets run_command keep the network" in said
    store.close()
