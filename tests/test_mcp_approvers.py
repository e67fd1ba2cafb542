"""``trestle mcp serve --identity FILE`` under the operator's approver rules: the real
server in a subprocess, driven by the MCP SDK's stdio client, over a run that waits on
an approval a rule covers.

A server started with bob's identity key decides as bob: refused, the refusal saying
who may decide. One started with alice's decides as alice: the run goes on, and the
record names her as the group does, with the client (``alice (mcp:test-ide)``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

pytest.importorskip("mcp.server.mcpserver")

from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp_types import CallToolResult, Implementation

from test_approvals_cli import flat
from test_approver_groups import Person, _export, _policy, _refusals, _resume, _start, people

__all__ = ["people"]  # the fixture, shared
pytestmark = pytest.mark.usefixtures("unconfined")


def approve_as(server_user: Person, identity: Path, ref: str) -> CallToolResult:
    """``approve`` through a server ``server_user`` started with ``--identity identity``."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "trestle", "mcp", "serve", "--identity", str(identity)],
        env=server_user.env(),
        cwd=str(server_user.dir),
    )

    async def go() -> CallToolResult:
        with open(server_user.dir / "server.err", "a", encoding="utf-8") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(
                    read, write, client_info=Implementation(name="test-ide", version="1")
                ) as session,
            ):
                await session.initialize()
                return await session.call_tool("approve", {"ref": ref})

    return anyio.run(go)


def test_the_identity_file_decides_who_approves(people: dict[str, Person]) -> None:
    sam, alice, bob = people["sam"], people["alice"], people["bob"]
    run_id = _start(sam, _policy(people, ("alice",), approvals=1))
    alice.key(), bob.key()  # their identity files exist

    # one server, the same user: only the identity file differs
    refused = approve_as(sam, bob.identity_file(), f"{run_id}.1")  # as it is made
    assert refused.is_error
    assert "is not in group 'release'; who may decide: release (alice)" in str(refused.content)
    _resume(sam, run_id, 3)
    assert not (sam.dir / "deploys.log").exists()
    assert _refusals(sam, run_id) == []  # nothing was queued

    approved = approve_as(sam, alice.identity_file(), f"{run_id}.1")
    assert not approved.is_error, approved.content
    _resume(sam, run_id, 0)
    assert (sam.dir / "deploys.log").read_text() == "deployed\n"
    decided = [e for e in sam.json("log", run_id) if e["kind"] == "approval_decided"]
    assert [e["by"] for e in decided] == ["alice (mcp:test-ide)"]
    assert "alice (mcp:test-ide)" in flat(sam("log", run_id).stdout)
    rows = [r for r in _export(sam) if r["decision"] == "approved"]
    assert [r["by"] for r in rows] == ["alice (mcp:test-ide)"]


def test_an_identity_file_that_is_not_there_is_refused(people: dict[str, Person]) -> None:
    sam = people["sam"]
    result = sam("mcp", "serve", "--identity", "nobody.key")
    assert result.returncode == 2
    assert "--identity 'nobody.key': no such identity key file" in flat(result.stderr)
    assert not (sam.dir / "nobody.key").exists()
