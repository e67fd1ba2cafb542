"""The driver's side of a streamable HTTP MCP server: a response read up to a stated
length.

The SDK reads a JSON answer whole (``response.aread()``), with no bound, so a hostile
server answering with an endless body held the driver's memory. Here each response's
body is counted as it arrives and the read fails past ``limit`` bytes, naming the
server and the limit; the SDK turns the failure into an error answer to the request.
An event stream (``text/event-stream``) is left to the SDK, which bounds each event
(``max_sse_event_size``) and may keep the stream open for the whole session.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2

# as the SDK's own client: the connection, a write and the pool 30 s; a read may wait
# on an event stream for 5 minutes
TIMEOUT = httpx2.Timeout(30.0, read=300.0)


class ResponseTooLong(httpx2.StreamError):
    """A server's response went past the length the driver reads."""


class _Counted(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, limit: int, what: str) -> None:
        self._inner, self._limit, self._what = inner, limit, what

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._limit:
                raise ResponseTooLong(
                    f"{self._what} answered with more than {self._limit:,} bytes, the most "
                    "the driver reads of one answer; it was not read further"
                )
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Bounded(httpx2.AsyncBaseTransport):
    def __init__(self, limit: int, what: str) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self._limit, self._what = limit, what

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        kind = response.headers.get("content-type", "").lower()
        if not kind.startswith("text/event-stream"):
            stream = response.stream
            assert isinstance(stream, httpx2.AsyncByteStream)
            response.stream = _Counted(stream, self._limit, self._what)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@contextlib.asynccontextmanager
async def http_streams(url: str, *, limit: int, what: str) -> AsyncIterator[tuple[Any, Any]]:
    """The (read, write) streams of a session with the server at ``url``, each of its
    answers read up to ``limit`` bytes."""
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx2.AsyncClient(timeout=TIMEOUT, transport=_Bounded(limit, what)) as client,
        streamable_http_client(url, http_client=client) as streams,
    ):
        yield streams
