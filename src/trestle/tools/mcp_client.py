"""One connection to an MCP server, through the official ``mcp`` SDK (an extra).

:class:`McpConnection` starts a stdio server inside the run's sandbox (or reaches a
streamable HTTP server from the driver), lists its tools and calls them. It never
decides whether a call may run: only :class:`~trestle.tools.mcp.McpTool`, behind the
registry and the gate, calls :meth:`McpConnection.call`.

The SDK's transports hold anyio task groups, which must be left by the task that
entered them, so one background task owns the connection for its whole life; calls
are sent from the session's tasks and wait for their answer, the server's death, or
their timeout, whichever comes first.

A call ends in one of four ways (:class:`CallEnd`):

- ``result``: the server answered (``is_error`` set when the tool reported a failure);
- ``unknown``: the server died or hung (timed out) while the call was in it, so whether
  it took effect is unknown; a hung server is stopped, and the next call starts it again;
- ``refused``: the call was never sent (the server is not running and would not start,
  or the tool changed since the step began);
- ``malformed``: the server answered with something that is not a tool result.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sys
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from trestle.core.errors import ConfigError
from trestle.core.records.mcp import McpServer, ToolHints
from trestle.execution import keeper
from trestle.execution.sandbox import Sandbox
from trestle.execution.sandbox_start import (
    SANDBOX_STARTS,
    StartSignal,
    before_start,
)

if TYPE_CHECKING:
    from trestle.tools.mcp_stdio import StderrTail

MAX_STARTS = 3  # starts of one server within one connection (a hung server restarts)
# the longest line read from a stdio server: room for a result of max_result characters
# each escaped by JSON (\uXXXX), and for the message around it
LINE_BYTES_PER_CHARACTER = 6
LINE_SLACK = 1 << 20
STDERR_TAIL = 1_500  # characters of a server's stderr quoted when it fails
UNKEPT = (
    "runs unsandboxed and with no child subreaper on this system: processes it starts "
    "in a session of their own (setsid) may outlive the run"
)
CLOSE_GRACE = 5.0  # seconds the SDK gets to stop a server before its task is cancelled

Ending = Literal["result", "unknown", "refused", "malformed"]


class McpStartError(Exception):
    """A server did not start or did not list its tools."""


@dataclass(frozen=True)
class ListedTool:
    """One tool as its server listed it."""

    name: str
    description: str
    input_schema: dict[str, Any]
    hints: ToolHints | None

    def same_as(self, other: ListedTool) -> bool:
        return (self.input_schema, self.hints) == (other.input_schema, other.hints)


@dataclass(frozen=True)
class CallEnd:
    """How one call ended (see the module docstring)."""

    ending: Ending
    text: str = ""
    is_error: bool = False
    data: dict[str, Any] = field(default_factory=dict)


def require_sdk() -> None:
    """Raise a :class:`ConfigError` naming the extra when the SDK is missing."""
    try:
        import mcp  # noqa: F401
    except ImportError:
        raise ConfigError(
            'MCP servers need the mcp SDK: pip install "trestle-runtime[mcp]"'
        ) from None


def line_limit(server: McpServer) -> int:
    """The most bytes of one line the driver reads from the stdio ``server``."""
    return LINE_BYTES_PER_CHARACTER * server.max_result + LINE_SLACK


def server_argv(
    server: McpServer,
    sandbox: Sandbox | None,
    workspace: Path,
    held_open: list[int] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment a stdio ``server`` starts with: its command inside the
    run's sandbox (network only if ``sandbox.network`` names ``mcp:NAME``), with the
    sandbox's environment plus the variables the server's ``env`` names; ``held_open``
    as :meth:`Sandbox.argv` takes it. Unconfined, it runs under a keeper, which ends
    what it starts in sessions of its own when it ends (:mod:`trestle.execution.keeper`)."""
    command = shlex.join(server.command)
    if sandbox is None or not sandbox.confines:
        argv = ["/bin/sh", "-c", f"exec {command}"]
        env = dict(os.environ) if sandbox is None else sandbox.environ()
        if keeper.AVAILABLE:
            argv = keeper.argv(argv)
    else:
        argv = sandbox.argv(
            f"exec {command}",
            cwd=workspace,
            workspace=workspace,
            name=server.tag,
            held_open=held_open,
        )
        env = sandbox.environ()
    for name in server.env:
        if name in os.environ:
            env[name] = os.environ[name]
    return argv, env


class McpConnection:
    """One server's connection for one attempt of an agent step.

    Args:
        server: what to connect to.
        sandbox: the run's sandbox a stdio server starts in (None: unconfined).
        workspace: the stdio server's working directory.
    """

    def __init__(self, server: McpServer, sandbox: Sandbox | None, workspace: Path) -> None:
        self.server, self.sandbox, self.workspace = server, sandbox, workspace
        self.tools: dict[str, ListedTool] = {}  # as first listed: what the step offers
        self.changed = False  # the server said its tool list changed
        self._current: dict[str, ListedTool] | None = None  # its tools since it changed
        self._session: Any = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._dead = asyncio.Event()
        self._ready = asyncio.Event()
        self._gone = asyncio.Event()  # a stdio server's output ended: it is gone
        self._failure: BaseException | None = None
        self._errlog: StderrTail | None = None
        self._starts = 0
        self._held: StartSignal | None = None  # the sandbox's start under way
        # why the driver stopped the server: a line past its limit, or a flood of stderr
        self._overflow: str | None = None
        self._unread: Exception | None = None  # the last message it sent that was unread

    # --- life --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start (or restart) the server and list its tools.

        Raises:
            McpStartError: it did not start, answer or list its tools in time.
        """
        require_sdk()
        self._starts += 1
        if self._starts == 1 and self.server.url is None and not self._kept():
            print(f"warning: {self._what()} {UNKEPT}", file=sys.stderr)
        if self._errlog is None:  # kept across restarts, let go of by aclose
            from trestle.tools.mcp_stdio import StderrTail  # the extra's anyio: on use

            self._errlog = StderrTail(4 * STDERR_TAIL + 4)  # bytes enough for its characters
        # a stdio server's sandbox that could not start ran nothing: started again, as a
        # command's is (see trestle.execution.sandbox_start)
        sandboxed = self.server.url is None and self.sandbox is not None and self.sandbox.confines
        for start in range(SANDBOX_STARTS if sandboxed else 1):
            await before_start(start)
            with StartSignal() as held:
                self._held = held if sandboxed else None
                try:
                    if await self._started():
                        break
                finally:
                    self._held = None
                await self.close()  # ended before its byte is looked at: it cannot begin later
                if held.began():
                    break
        if self._session is None:
            failure = self._failure
            await self.close()
            if self._overflow is not None:
                raise McpStartError(f"{self._overflow} while it started")
            why = (
                f"did not start within {self.server.start_timeout:g}s"
                if failure is None
                else f"did not start: {_described(failure)}"
            )
            if failure is None and self._unread is not None:
                why += f"; a message it sent could not be read: {_unread_said(self._unread)}"
            raise McpStartError(f"{self._what()} {why}{self._stderr()}")

    async def _started(self) -> bool:
        """Start the server once; whether it listed its tools in time."""
        self._stop, self._dead, self._ready = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self._gone = asyncio.Event()
        self._failure, self._session, self._overflow, self._unread = None, None, None, None
        self._task = asyncio.create_task(self._serve(), name=f"mcp:{self.server.name}")
        ready = asyncio.create_task(self._ready.wait())
        try:
            await asyncio.wait(
                {ready, self._task},
                timeout=self.server.start_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            ready.cancel()
        return self._session is not None

    async def close(self) -> None:
        """Stop the server (the SDK closes its stdin, then ends its processes)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        done, _ = await asyncio.wait({task}, timeout=CLOSE_GRACE)
        if not done:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self._session = None

    async def aclose(self) -> None:
        """Stop the server and let go of its stderr."""
        await self.close()
        self._errlog = None

    async def _serve(self) -> None:
        from mcp import ClientSession

        try:
            async with contextlib.AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(self._transport())
                session = await stack.enter_async_context(
                    ClientSession(read, write, message_handler=self._on_message)
                )
                await session.initialize()
                listed = await session.list_tools()
                tools = {t.name: _listed(t) for t in listed.tools}
                if not self.tools:
                    self.tools = tools
                self._session = session
                self._ready.set()
                # until stopped, or until it is gone: a server that died (or was ended)
                # between calls is started afresh for the next one, which was never
                # sent to it, rather than that call told its outcome is unknown
                await _first(self._stop.wait(), self._gone.wait())
        except Exception as exc:
            self._failure = exc
        finally:
            self._session = None
            self._dead.set()

    def _transport(self) -> contextlib.AbstractAsyncContextManager[Any]:
        if self.server.url is not None:
            from trestle.tools.mcp_http import http_streams  # the extra's httpx2: on use

            return http_streams(self.server.url, limit=line_limit(self.server), what=self._what())
        held = self._held
        argv, env = server_argv(
            self.server, self.sandbox, self.workspace, None if held is None else held.bound
        )
        passed: list[int] = []
        if held is not None:  # bubblewrap is handed its pipe and what it binds, by number
            argv = held.argv(argv)  # its options through a descriptor, in held.passed
            passed = list(held.passed)
        assert self._errlog is not None
        from trestle.tools.mcp_stdio import stdio_streams  # the extra's anyio: on use

        return stdio_streams(
            argv,
            env=env,
            cwd=str(self.workspace),
            errlog=self._errlog,
            limit=line_limit(self.server),
            on_overflow=self._overflowed,
            on_flood=self._flooded,
            on_end=self._gone.set,
            pass_fds=passed,
            # a keeper ends what is below it when told to end; killed, it could not
            at_once=signal.SIGTERM if held is None and keeper.AVAILABLE else signal.SIGKILL,
        )

    def _kept(self) -> bool:
        """Whether everything the server starts ends with it: its sandbox ends it, or
        its keeper does."""
        return (self.sandbox is not None and self.sandbox.confines) or keeper.AVAILABLE

    def _overflowed(self, limit: int) -> None:
        self._overflow = (
            f"{self._what()} wrote a line of more than {limit:,} bytes on its standard output "
            f"(the most the driver reads: {LINE_BYTES_PER_CHARACTER} bytes for each character "
            f"of its max_result, {self.server.max_result:,}, and {LINE_SLACK:,}) and was stopped"
        )

    def _flooded(self, volume: int) -> None:
        self._overflow = (
            f"{self._what()} wrote more than {volume >> 20} MiB ({volume:,} bytes) on its "
            "stderr, the most the driver reads of it in one start, and was stopped"
        )

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            # a message the SDK could not read (too deeply nested, not JSON-RPC): it
            # drops it, and a start that waited for it would only say it timed out
            self._unread = message
            return
        if type(message).__name__ == "ToolListChangedNotification" or (
            getattr(getattr(message, "root", None), "method", None)
            == "notifications/tools/list_changed"
        ):
            self.changed = True

    # --- calls -------------------------------------------------------------------------

    async def call(self, name: str, arguments: Mapping[str, Any]) -> CallEnd:
        """Call tool ``name`` (its server's own name) once; see the module docstring."""
        if self._session is None:
            if self._starts >= MAX_STARTS:
                return CallEnd(
                    "refused",
                    f"{self._what()} is not running; it was started "
                    f"{self._starts} times in this attempt",
                )
            try:
                await self.start()
            except McpStartError as exc:
                return CallEnd("refused", str(exc))
        refused = await self._still_offered(name)
        if refused is not None:
            return CallEnd("refused", refused)
        session = self._session
        call = asyncio.create_task(session.call_tool(name, dict(arguments)))
        dead = asyncio.create_task(self._dead.wait())
        try:
            await asyncio.wait(
                {call, dead}, timeout=self.server.timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            dead.cancel()
        if not call.done():
            call.cancel()
            with contextlib.suppress(BaseException):
                await call
            if self._dead.is_set():
                return CallEnd("unknown", self._exited(), data={"server": "exited"})
            await self.close()  # whatever it was doing must not land later
            return CallEnd(
                "unknown",
                f"{self._what()} did not answer within {self.server.timeout:g}s and was stopped",
                data={"server": "hung"},
            )
        try:
            result = call.result()
        except Exception as exc:
            if self._dead.is_set() or "closed" in str(exc).lower():
                await self.close()
                return CallEnd("unknown", self._exited(), data={"server": "exited"})
            return CallEnd("malformed", f"{self._what()} answered with an error: {_described(exc)}")
        return _rendered(result, self.server.max_result, self._what())

    async def _still_offered(self, name: str) -> str | None:
        """Why ``name`` may not be called now, when the server changed it since the step
        began; None while it is as listed."""
        if self.changed:
            self.changed = False
            try:
                listed = await asyncio.wait_for(self._session.list_tools(), self.server.timeout)
            except Exception as exc:
                why = _described(exc)
                return f"{self._what()} changed its tools and could not list them: {why}"
            self._current = {t.name: _listed(t) for t in listed.tools}
        now = self._current
        if now is None:
            return None
        first = self.tools.get(name)
        if name not in now:
            offered = ", ".join(sorted(now)) or "none"
            return (
                f"{self._what()} no longer offers {name!r} (its tool list changed during "
                f"this step); it now offers: {offered}"
            )
        if first is not None and not now[name].same_as(first):
            return (
                f"{self._what()} changed {name!r} (its arguments or annotations) during "
                "this step; it is not called as changed: the change applies from the "
                "step's next attempt"
            )
        return None

    def _what(self) -> str:
        return f"MCP server {self.server.name!r}"

    def _exited(self) -> str:
        """Why the server ended during a call: stopped past a line's limit, or exited."""
        if self._overflow is not None:
            return f"{self._overflow} during the call"
        return f"{self._what()} exited during the call{self._stderr()}"

    def _stderr(self) -> str:
        tail = "" if self._errlog is None else self._errlog.text().strip()[-STDERR_TAIL:]
        return f"; its stderr ends:\n{tail}" if tail else ""


async def _first(*waits: Coroutine[Any, Any, Any]) -> None:
    """Wait until the first of ``waits`` is done; the others are cancelled."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _listed(tool: Any) -> ListedTool:
    notes = tool.annotations
    hints = None
    if notes is not None:
        hints = ToolHints(
            read_only=notes.read_only_hint,
            destructive=notes.destructive_hint,
            idempotent=notes.idempotent_hint,
            open_world=notes.open_world_hint,
        )
    schema = tool.input_schema if isinstance(tool.input_schema, dict) else {}
    return ListedTool(
        name=tool.name, description=tool.description or "", input_schema=schema, hints=hints
    )


def _unread_said(exc: Exception) -> str:
    """Why a message could not be read, on one line: pydantic's first error alone (its
    whole text quotes the message, which is the server's to fill)."""
    errors = getattr(exc, "errors", None)
    try:
        first = errors()[0]["msg"] if callable(errors) else None
    except (TypeError, LookupError):
        first = None
    said = str(first) if first else _described(exc)
    return " ".join(said.split())[:300]


def _described(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _described(exc.exceptions[0])
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text[:500]}" if text != type(exc).__name__ else text


def _rendered(result: Any, limit: int, what: str) -> CallEnd:
    """A tool result as text: its text blocks, other blocks named, or the structured
    content as JSON when there is no text; refused past ``limit`` characters."""
    import json

    parts: list[str] = []
    for block in getattr(result, "content", None) or ():
        kind = getattr(block, "type", "?")
        if kind == "text":
            parts.append(str(block.text))
        elif kind in ("image", "audio"):
            size = len(getattr(block, "data", "") or "")
            parts.append(f"[{kind} {getattr(block, 'mime_type', '?')}, {size:,} base64 characters]")
        elif kind == "resource":
            inner = block.resource
            text = getattr(inner, "text", None)
            parts.append(text if text is not None else f"[resource {inner.uri}]")
        elif kind == "resource_link":
            parts.append(f"[resource link {block.uri}]")
        else:
            parts.append(f"[{kind} content]")
    structured = getattr(result, "structured_content", None)
    if not parts and structured is not None:
        parts.append(json.dumps(structured, ensure_ascii=False, indent=1))
    text = "\n".join(parts)
    if len(text) > limit:
        return CallEnd(
            "malformed",
            f"{what} returned {len(text):,} characters, more than the {limit:,} accepted "
            "(max_result); ask for less",
            data={"size": len(text)},
        )
    return CallEnd("result", text or "(no content)", is_error=bool(result.is_error))
