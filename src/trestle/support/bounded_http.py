"""HTTP answers read up to a stated length, counted after they are decoded.

The SDKs built on httpx (the model providers', MCP's) read a response's body whole,
with no bound, and httpx decodes it as it reads: a server that answered with a huge
body, or with a 2 MB gzip that decodes to 2 GB, held the driver's memory (4.2 GB for one
model answer). :func:`bounded_hooks` gives a client event hooks that ask only for gzip
or deflate, decode each body here, a piece at a time, and fail the read past ``limit``
decoded bytes, naming ``what`` answered and the limit. A body in an encoding that was
not asked for, or that does not decode as it says, is not read on. For a client that
reads event streams (MCP's), one (``text/event-stream``) is decoded the same way but not
limited as a whole: it may stay open for a whole session, and its reader bounds each
event; for one that asks for none (a model's), the type changes nothing.

Event hooks, not a transport: a client's proxies (``HTTPS_PROXY``) get transports of
their own, which a wrapped transport would not cover.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx2

ASKED = "gzip, deflate"  # the encodings asked for: the only ones decoded
PIECE = 1 << 16  # bytes decoded at a time, so a bomb is caught a piece past the limit

Hook = Callable[[Any], Awaitable[None]]


class BodyRefused(httpx2.StreamError):
    """A server's answer the driver does not read on: longer than it reads, or in an
    encoding it did not ask for."""


def bounded_hooks(limit: int, what: str, *, streams: bool = False) -> dict[str, list[Hook]]:
    """A client's ``event_hooks`` that read each answer of ``what`` (a server, named
    in the refusal) up to ``limit`` decoded bytes. With ``streams``, an event stream is
    not limited as a whole (its reader bounds each event); without, the answer's type
    changes nothing: a client that asks for no stream reads whatever comes whole, and
    a server answered a model's request with a 2 GB "event stream"."""

    async def ask(request: httpx2.Request) -> None:
        request.headers["accept-encoding"] = ASKED

    async def answered(response: httpx2.Response) -> None:
        values = response.headers.get_list("content-encoding", split_commas=True)
        encodings = [v.strip().lower() for v in values if v.strip().lower() not in ("", "identity")]
        if len(encodings) > 1 or (encodings and encodings[0] not in ("gzip", "x-gzip", "deflate")):
            await response.aclose()
            raise BodyRefused(
                f"{what} answered in an encoding the driver did not ask for "
                f"({', '.join(encodings)}; it asks for {ASKED}); it was not read"
            )
        kind = response.headers.get("content-type", "").lower()
        whole = None if streams and kind.startswith("text/event-stream") else limit
        stream = response.stream
        assert isinstance(stream, httpx2.AsyncByteStream)
        encoding = encodings[0] if encodings else None
        response.stream = _Decoded(stream, encoding, whole, what)
        if encodings:  # decoded here: httpx must not decode it again
            del response.headers["content-encoding"]
            response.headers.pop("content-length", None)

    return {"request": [ask], "response": [answered]}


class _Decoded(httpx2.AsyncByteStream):
    def __init__(
        self, inner: httpx2.AsyncByteStream, encoding: str | None, limit: int | None, what: str
    ) -> None:
        self._inner, self._limit, self._what = inner, limit, what
        self._encoding = encoding
        # gzip or zlib, told apart by their headers; deflate may also come raw, with none
        self._decoder = zlib.decompressobj(zlib.MAX_WBITS | 32) if encoding else None
        self._raw_tried = encoding != "deflate"

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            for piece in self._pieces(chunk):
                seen += len(piece)
                if self._limit is not None and seen > self._limit:
                    raise BodyRefused(
                        f"{self._what} answered with more than {self._limit:,} bytes, the "
                        "most the driver reads of one answer; it was not read further"
                    )
                yield piece

    def _pieces(self, chunk: bytes) -> Iterator[bytes]:
        if self._decoder is None:
            yield chunk
            return
        data = chunk
        while True:
            try:
                out = self._decoder.decompress(data, PIECE)
            except zlib.error as exc:
                if not self._raw_tried:  # deflate without zlib's header, as some send it
                    self._raw_tried = True
                    self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise BodyRefused(
                    f"{self._what} answered with a body that does not decode as "
                    f"{self._encoding}, as it said ({exc})"
                ) from None
            self._raw_tried = True  # its header was read: it is what it said
            data = self._decoder.unconsumed_tail
            if out:
                yield out
            if not data and len(out) < PIECE:
                return

    async def aclose(self) -> None:
        await self._inner.aclose()
