"""Large payloads stored once per run, by content hash, compressed.

An agent run's events carry long texts: a file the model read, its answer, a summary
of old turns. :func:`pack` takes an event's JSON and moves every string of at least
:data:`LARGE` characters out of it: the event keeps a reference in the string's place,
and the string (its JSON literal, quotes and escapes included) is stored apart,
compressed with zlib, keyed by the SHA-256 of that literal. The same file read twice
in a run is stored once. :func:`unpack` splices the literals back, so the JSON read
is the JSON written, byte for byte, and no event is parsed to store or to read it.

A reference is the JSON object ``{"$payload":"<64 hex digits>"}``. An event whose JSON
already holds a ``"$payload":`` key (a tool's data may hold anything) is stored whole,
so nothing recorded can be mistaken for a reference. Pure: the store does the IO.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Callable, Container, Iterable

LARGE = 512  # characters of a JSON string literal, quotes included, worth storing apart
LEVEL = 6  # zlib's default: most of level 9's gain at a fraction of its time
_KEY = '"$payload":'
# every string literal, in turn from the body's start, so a match never begins at a
# closing quote (written as runs of plain characters: far faster than one per step)
_LITERAL = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_REFERENCE = re.compile(r'\{"\$payload":"([0-9a-f]{64})"\}')

Payload = tuple[bytes, bytes]  # (SHA-256 of the literal, the literal zlib-compressed)


def pack(body: str, known: Container[bytes] = ()) -> tuple[str, list[Payload]]:
    """``body`` with its large strings replaced by references, and those strings,
    except those whose hash is ``known`` (stored already: not compressed again).

    Returns ``body`` itself and no payloads when it has no large string (or holds
    a ``"$payload":`` key of its own)."""
    if len(body) < LARGE or _KEY in body:
        return body, []
    payloads: list[Payload] = []

    def refer(match: re.Match[str]) -> str:
        if match.end() - match.start() < LARGE:
            return match.group(0)
        literal = match.group(0).encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(literal).digest()
        if digest not in known:
            payloads.append((digest, zlib.compress(literal, LEVEL)))
        return '{"$payload":"' + digest.hex() + '"}'

    packed = _LITERAL.sub(refer, body)
    return packed, payloads


def references(data: str) -> list[bytes]:
    """The hashes a packed body refers to, in order (repeats included)."""
    return [bytes.fromhex(h) for h in _REFERENCE.findall(data)]


def unpack(data: str, literal: Callable[[bytes], bytes]) -> str:
    """The event's JSON as written: each reference in ``data`` replaced by the
    literal ``literal(hash)`` returns (compressed, as stored).

    Raises:
        KeyError: a payload is missing (from ``literal``).
        zlib.error: a payload does not decompress.
    """

    def restore(match: re.Match[str]) -> str:
        stored = literal(bytes.fromhex(match.group(1)))
        return zlib.decompress(stored).decode("utf-8", "surrogatepass")

    return _REFERENCE.sub(restore, data)


def distinct(payloads: Iterable[Payload]) -> list[Payload]:
    """``payloads`` without repeats (by hash), first seen first."""
    seen: dict[bytes, bytes] = {}
    for digest, blob in payloads:
        seen.setdefault(digest, blob)
    return list(seen.items())
