"""A small MCP server for tests/test_mcp_tools.py, written with the ``mcp`` SDK.

Every call appends ``TOOL ARGS`` to ``calls.log`` in its working directory (the run's
workspace) before it answers, so a test counts the effects that really happened.
``--fail-start`` exits before speaking MCP, saying why on stderr. ``--http PORT`` serves
streamable HTTP on 127.0.0.1:PORT (path ``/mcp``) instead of stdio
(tests/test_mcp_http.py; ``--gzip``: its answers gzipped). A file ``slow-once`` holding
a number of seconds makes the next ``delete_note`` or ``set_flag`` write ``in-call``
after its effect, then wait that long before answering, once (tests/test_mcp_crash.py
kills its driver meanwhile).
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import sys
import threading
import time
from pathlib import Path

# before the SDK's import, which takes about a second of CPU: the suite starts this
# server failing many times
if "--fail-start" in sys.argv:
    print("notes server: cannot open its database", file=sys.stderr)
    sys.exit(2)

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

app = MCPServer("notes")
READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
ADDITIVE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)
IDEMPOTENT = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)


def option(name: str) -> str | None:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else None


def effect(tool: str, **arguments: object) -> None:
    with Path("calls.log").open("a", encoding="utf-8") as log:
        log.write(f"{tool} {json.dumps(arguments, sort_keys=True)}\n")


def slowly() -> None:
    """Wait after the effect, once (a driver killed meanwhile leaves the call's outcome
    unknown)."""
    marker = Path("slow-once")
    if marker.exists():
        seconds = float(marker.read_text() or 30)
        marker.unlink()
        Path("in-call").write_text("")
        time.sleep(seconds)


@app.tool(annotations=READ)
def read_note(name: str) -> str:
    """Read a note."""
    effect("read_note", name=name)
    return f"note {name}: hello"


@app.tool(annotations=ADDITIVE)
def add_note(name: str) -> str:
    """Add a note."""
    effect("add_note", name=name)
    return f"added {name}"


@app.tool(annotations=DESTRUCTIVE)
def delete_note(name: str) -> str:
    """Delete a note."""
    effect("delete_note", name=name)
    slowly()
    if os.environ.get("NOTES_DIE") == "1" or Path("die").exists():
        os._exit(3)  # dies mid-call, after its effect
    return f"deleted {name}"


@app.tool(annotations=IDEMPOTENT)
def set_flag(value: str) -> str:
    """Set the flag."""
    effect("set_flag", value=value)
    slowly()
    marker = Path("die-once")
    if marker.exists():
        marker.unlink()
        os._exit(3)
    return f"flag={value}"


@app.tool(annotations=ADDITIVE)
def overwrite(path: str, text: str) -> str:
    """Write a file of the workspace (tests/test_tool_call_alone.py: another run's call)."""
    effect("overwrite", path=path)
    Path(path).write_text(text, encoding="utf-8")
    return f"wrote {path}"


@app.tool()
def bare(text: str) -> str:
    """A tool without annotations."""
    effect("bare", text=text)
    return text


@app.tool(annotations=READ)
def hang() -> str:
    """Never answers."""
    effect("hang")
    time.sleep(3600)
    return "never"


@app.tool(annotations=ADDITIVE)
def huge(size: int) -> str:
    """Answers with ``size`` characters."""
    effect("huge", size=size)
    return "x" * size


def _wire() -> int:
    """The descriptor the SDK answers on: it moves the protocol's pipes above the
    standard three (and points 1 at stderr); the one open for writing."""
    for fd in range(3, 256):
        try:
            info, flags = os.fstat(fd), fcntl.fcntl(fd, fcntl.F_GETFL)
        except OSError:
            continue
        if stat.S_ISFIFO(info.st_mode) and flags & os.O_ACCMODE == os.O_WRONLY:
            return fd
    raise RuntimeError("no wire")


@app.tool(annotations=ADDITIVE)
def chatter() -> str:
    """Writes on stderr as fast as it can, without end."""
    effect("chatter")
    return _flood_stderr()


def _flood_stderr() -> str:
    os.set_blocking(2, True)
    chunk = b"e" * (1 << 20)
    while True:
        os.write(2, chunk)


@app.tool(annotations=ADDITIVE)
def chatter_after(seconds: float) -> str:
    """Answers, then writes on stderr as fast as it can, without end, from ``seconds``
    on."""
    effect("chatter_after", seconds=seconds)

    def flood() -> None:
        time.sleep(seconds)
        _flood_stderr()

    threading.Thread(target=flood, daemon=True).start()
    return "chattering"


@app.tool(annotations=ADDITIVE)
def endless(size: int) -> str:
    """Writes ``size`` bytes of one line that never ends on stdout, then hangs."""
    effect("endless", size=size)
    wire = _wire()
    os.set_blocking(wire, True)  # the SDK's writer made it non-blocking
    for _ in range(0, size, 1 << 16):
        os.write(wire, b"x" * (1 << 16))
    time.sleep(3600)
    return "never"


@app.tool(annotations=ADDITIVE)
async def malformed(ctx: Context) -> str:
    """Answers its call with a result that is not a tool result."""
    effect("malformed")
    line = {"jsonrpc": "2.0", "id": ctx.request_id, "result": {"content": "not a list"}}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
    return "late"


@app.tool(annotations=ADDITIVE)
async def reshape(ctx: Context) -> str:
    """Removes read_note and changes add_note, and says its tool list changed."""
    effect("reshape")
    app.remove_tool("read_note")
    app.remove_tool("add_note")

    def add_note(name: str, colour: str) -> str:
        return f"added {name} in {colour}"

    app.add_tool(add_note, annotations=ADDITIVE)
    await ctx.session.send_tool_list_changed()
    return "reshaped"


if __name__ == "__main__":
    port = option("--http")
    if port is not None:
        as_json = "--json" in sys.argv  # answers as JSON bodies, not event streams
        if "--gzip" in sys.argv:  # every answer gzipped, as a proxy in front may send it
            import uvicorn
            from starlette.middleware.gzip import GZipMiddleware

            served = app.streamable_http_app(json_response=as_json, host="127.0.0.1")
            zipped = GZipMiddleware(served, minimum_size=100)
            uvicorn.run(zipped, host="127.0.0.1", port=int(port), log_level="warning")
        else:
            app.run(
                transport="streamable-http",
                host="127.0.0.1",
                port=int(port),
                json_response=as_json,
            )
    else:
        app.run()
