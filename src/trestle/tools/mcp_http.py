"""The driver's side of a streamable HTTP MCP server: a response read up to a stated
length.

The SDK reads a JSON answer whole (``response.aread()``), with no bound, so a hostile
server answering with an endless body, or a gzip that decodes to 1.5 GB, held the
driver's memory. Here each response's body is decoded and counted as it arrives and
the read fails past ``limit`` decoded bytes, naming the server and the limit
(:mod:`trestle.support.bounded_http`); the SDK turns the failure into an error answer to
the request. An event stream (``text/event-stream``) is not limited as a whole: the SDK
bounds each event (``max_sse_event_size``) and may keep it open for the whole session.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2

from trestle.support.bounded_http import bounded_hooks

# as the SDK's own client: the connection, a write and the pool 30 s; a read may wait
# on an event stream for 5 minutes
TIMEOUT = httpx2.Timeout(30.0, read=300.0)


@contextlib.asynccontextmanager
async def http_streams(url: str, *, limit: int, what: str) -> AsyncIterator[tuple[Any, Any]]:
    """The (read, write) streams of a session with the server at ``url``, each of its
    answers read up to ``limit`` bytes."""
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx2.AsyncClient(
            timeout=TIMEOUT, event_hooks=bounded_hooks(limit, what, streams=True)
        ) as client,
        streamable_http_client(url, http_client=client) as streams,
    ):
        yield streams
