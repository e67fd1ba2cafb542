"""A scriptable HTTP server on 127.0.0.1, the base of the provider test servers.

The server answers each POST to its endpoint with the next reply from a queue and
records every request it receives. It runs the standard library's HTTP server in a
daemon thread on a free port, so tests drive the real SDK clients over a real socket
without touching the network. When the queue is empty it answers 400 with a message
that says so, which a provider does not retry: a test that sends one request too many
fails at once.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self


@dataclass(frozen=True)
class ScriptedReply:
    """One HTTP answer: status, JSON (or text) body, extra headers, and a delay before it."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it; ``body`` is the parsed JSON, or None."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    raw: bytes


class LoopbackServer:
    """A scriptable server for one JSON endpoint. Use it as a context manager.

    Subclasses set :attr:`endpoint` and write replies in their API's format.

    Args:
        model: the model name replies report unless a reply says otherwise;
            :attr:`default_model` if None.
    """

    endpoint: ClassVar[str] = "/"
    default_model: ClassVar[str] = "loopback-model"

    def __init__(self, model: str | None = None) -> None:
        self.model = model or self.default_model
        # Numbers ids in replies (completion, message and tool call ids).
        self._ids = itertools.count(1)
        self.requests: list[RecordedRequest] = []
        self._replies: deque[ScriptedReply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        """Bind 127.0.0.1 on a free port and serve in a background thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        # Never wait for handler threads on close: a client may hold a connection open.
        server.block_on_close = False
        self._server = server
        self._port = int(server.server_address[1])
        # A short poll interval: shutdown() waits for the loop's next look at its flag.
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port; delayed replies are cut short."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the server listens (or, once stopped, listened) on."""
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started; use it in a with block")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What to pass as a client's ``base_url``."""
        return self.url

    # -- script ----------------------------------------------------------------------

    def queue(self, reply: ScriptedReply) -> Self:
        """Add a reply to the end of the queue."""
        with self._lock:
            self._replies.append(reply)
        return self

    def queue_raw(
        self,
        body: Any,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> Self:
        """Queue a reply with exactly this body (a dict or list is sent as JSON)."""
        return self.queue(ScriptedReply(status, body, dict(headers or {}), delay))

    def queue_json(
        self,
        text: str,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> Self:
        """Queue a reply whose body is exactly this JSON text, sent as ``application/json``.

        For what a dict cannot say, or says differently: an escape written by hand
        (``"\\ud83d"``, a lone surrogate, as a real server would send one), ``1e999``,
        a repeated key, JSON cut short.
        """
        sent = dict(headers or {})
        if "content-type" not in {name.lower() for name in sent}:
            sent["Content-Type"] = "application/json"
        return self.queue(ScriptedReply(status, text.encode("utf-8"), sent, delay))

    def queue_error(
        self,
        status: int,
        message: str = "",
        *,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> Self:
        """Queue an HTTP error in the API's own error format.

        Args:
            status: e.g. 429, 500, 401, 400.
            message: the error's message; a default names the status.
            headers: e.g. ``{"Retry-After": "2"}``.
            delay: seconds to wait before answering.
        """
        text = message or f"scripted HTTP {status}"
        return self.queue(
            ScriptedReply(status, self.error_body(status, text), dict(headers or {}), delay)
        )

    @property
    def pending(self) -> int:
        """Replies queued and not yet sent."""
        with self._lock:
            return len(self._replies)

    def error_body(self, status: int, message: str) -> Any:
        """The API's error body for ``status``; subclasses speak their API's format."""
        return {"error": {"message": message, "status": status}}

    # -- serving (called on the server's threads) -----------------------------------

    def _take(self, request: RecordedRequest) -> ScriptedReply:
        with self._lock:
            self.requests.append(request)
            number = len(self.requests)
            if request.method != "POST" or request.path.split("?")[0] != self.endpoint:
                message = (
                    f"loopback server: no endpoint {request.method} {request.path!r}; "
                    f"this server answers POST {self.endpoint!r}"
                )
                return ScriptedReply(404, self.error_body(404, message))
            if not self._replies:
                message = (
                    f"loopback server: no scripted reply left for request #{number} "
                    f"(POST {self.endpoint})"
                )
                return ScriptedReply(400, self.error_body(400, message))
            return self._replies.popleft()


def _handler_for(owner: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "trestle-loopback/1"

        def do_POST(self) -> None:
            self._answer()

        def do_GET(self) -> None:
            self._answer()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean; the requests are recorded instead

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = None
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = owner._take(RecordedRequest(self.command, self.path, headers, body, raw))
            if reply.delay > 0 and owner._stopping.wait(reply.delay):
                return
            self._send(reply)

        def _send(self, reply: ScriptedReply) -> None:
            if isinstance(reply.body, bytes):
                payload, content_type = reply.body, "application/octet-stream"
            elif isinstance(reply.body, str):
                payload, content_type = reply.body.encode("utf-8"), "text/plain"
            else:
                payload = json.dumps(reply.body).encode("utf-8")
                content_type = "application/json"
            try:
                self.send_response(reply.status)
                names = {k.lower() for k in reply.headers}
                if "content-type" not in names:
                    self.send_header("Content-Type", content_type)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (e.g. its timeout fired); nothing to tell it

    return Handler
