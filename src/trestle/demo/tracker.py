"""The issue tracker ``trestle demo --mcp`` connects its agent to: a tiny stdio MCP
server, written with the ``mcp`` SDK (the extra), with one tool that destroys.

``close_issue`` says it is destructive, so each call waits for a human's approval
(docs/mcp.md). Every call it answers is appended to ``tracker.log`` in its working
directory (the run's workspace), so the demo shows what reached the server and when.

Run as a program (``python tracker.py``), never imported by Trestle.
"""

from __future__ import annotations

from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

app = MCPServer("tracker")
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)


@app.tool(annotations=DESTRUCTIVE)
def close_issue(number: int, comment: str) -> str:
    """Close an issue of the tracker for good, with a closing comment."""
    with Path("tracker.log").open("a", encoding="utf-8") as log:
        log.write(f"closed #{number}: {comment}\n")
    return f"issue #{number} closed"


if __name__ == "__main__":
    app.run()
