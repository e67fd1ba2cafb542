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

With ``chunked`` (the SQLite store, schema 6), a literal of :data:`CHUNKED` bytes or
more is cut into pieces where its own content says (after a line whose checksum ends
in four zero bits), each piece stored once per run under its own hash, and the
literal's payload is then a list of those hashes (a *manifest*). Long texts that
mostly repeat one another share their pieces: each summary of a compressed
conversation holds the one before, and an agent's saved conversation repeats the
latest summary under a header line. Over a 1,000-turn agent run their 1.29 MB
(compressed) became 0.27 MB. Pieces are hashed apart from literals (a prefix), so a
piece never names a manifest.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Callable, Container, Iterable
from itertools import accumulate

from trestle.store import inflate

LARGE = 512  # characters of a JSON string literal, quotes included, worth storing apart
LEVEL = 6  # zlib's default: most of level 9's gain at a fraction of its time
_KEY = '"$payload":'
# a body with its escaped backslashes, then its escaped quotes, each written as two
# characters that are neither (a literal ending in an escaped backslash keeps its
# closing quote): every quote left opens or closes a string literal, and every
# position is the body's
_ESCAPED_BACKSLASH, _ESCAPED_QUOTE, _MASK = "\\\\", '\\"', "\0\0"
_REFERENCE = re.compile(r'\{"\$payload":"([0-9a-f]{64})"\}')

CHUNKED = 8192  # bytes of a literal from which it is stored in pieces (when asked)
_PIECE_MIN = 256  # bytes before a line may end a piece
_PIECE_MAX = 16384  # bytes after which a piece ends wherever it is
_PIECE_MASK = 15  # a line ends a piece when its CRC-32 & this is 0: 1 line in 16
_LINE = b"\\n"  # a newline as a JSON literal writes it
_PIECE_SALT = b"trestle piece\x00"  # a piece's hash: SHA-256 of this and its bytes
MANIFEST = b"\x00"  # a stored manifest starts so; zlib's output never does

Payload = tuple[bytes, bytes]  # (SHA-256 of the literal, the literal zlib-compressed)


def pack(
    body: str, known: Container[bytes] = (), *, chunked: bool = False
) -> tuple[str, list[Payload]]:
    """``body`` with its large strings replaced by references, and those strings,
    except those whose hash is ``known`` (stored already: not compressed again);
    with ``chunked``, a string of :data:`CHUNKED` bytes or more as a manifest and
    its pieces (those not ``known``).

    Returns ``body`` itself and no payloads when it has no large string (or holds
    a ``"$payload":`` key of its own)."""
    if len(body) < LARGE or _KEY in body:
        return body, []
    spans = _large_literals(body)
    if not spans:
        return body, []
    payloads: list[Payload] = []
    out: list[str] = []
    end = 0
    for start, stop in spans:
        literal = body[start:stop].encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(literal).digest()
        if digest in known:
            pass
        elif chunked and len(literal) >= CHUNKED:
            payloads.extend(_pieces(literal, digest, known))
        else:
            payloads.append((digest, zlib.compress(literal, LEVEL)))
        out += (body[end:start], '{"$payload":"', digest.hex(), '"}')
        end = stop
    out.append(body[end:])
    return "".join(out), payloads


def _large_literals(body: str) -> list[tuple[int, int]]:
    """Where ``body``'s string literals of :data:`LARGE` characters or more (quotes
    included) start and stop, in order; none in a body whose quotes do not pair (no
    JSON text: stored whole). Found by splitting at quotes (see :data:`_MASK`), which
    is C's work; a regular expression stepping through every literal's characters
    took twice as long, and a 110 KB saved conversation's literals 0.9 ms."""
    masked = body.replace(_ESCAPED_BACKSLASH, _MASK).replace(_ESCAPED_QUOTE, _MASK)
    pieces = masked.split('"')
    if len(pieces) % 2 == 0:
        return []
    large = [i for i in range(1, len(pieces), 2) if len(pieces[i]) >= LARGE - 2]
    if not large:
        return []
    ends = list(accumulate(map(len, pieces)))  # where each piece ends, quotes left out
    spans = []
    for i in large:
        start = ends[i - 1] + i - 1  # its opening quote: pieces 0..i-1, and i-1 quotes
        spans.append((start, start + len(pieces[i]) + 2))
    return spans


def _pieces(literal: bytes, digest: bytes, known: Container[bytes]) -> list[Payload]:
    """The manifest of ``literal`` (under ``digest``), then its pieces not ``known``."""
    out: list[Payload] = []
    hashes = []
    for piece in _cut(literal):
        piece_digest = hashlib.sha256(_PIECE_SALT + piece).digest()
        hashes.append(piece_digest)
        if piece_digest not in known:
            out.append((piece_digest, zlib.compress(piece, LEVEL)))
    return [(digest, MANIFEST + b"".join(hashes)), *out]


def _cut(literal: bytes) -> list[bytes]:
    """``literal`` in pieces whose ends its content decides, so the same run of lines
    is cut the same way wherever it stands (a line longer than a piece is cut at
    every :data:`_PIECE_MAX` bytes)."""
    pieces: list[bytes] = []
    start = end = 0
    for line in literal.split(_LINE):
        end = min(end + len(line) + len(_LINE), len(literal))
        while end - start > _PIECE_MAX:
            pieces.append(literal[start : start + _PIECE_MAX])
            start += _PIECE_MAX
        if end - start >= _PIECE_MIN and zlib.crc32(line) & _PIECE_MASK == 0:
            pieces.append(literal[start:end])
            start = end
    if start < len(literal):
        pieces.append(literal[start:])
    return pieces


def parts(stored: Iterable[bytes]) -> list[bytes]:
    """The pieces the ``stored`` payloads' manifests name, in order (repeats included)."""
    return [
        blob[i : i + 32]
        for blob in stored
        if blob.startswith(MANIFEST)
        for i in range(len(MANIFEST), len(blob), 32)
    ]


def references(data: str) -> list[bytes]:
    """The hashes a packed body refers to, in order (repeats included)."""
    return [bytes.fromhex(h) for h in _REFERENCE.findall(data)]


def unpack(
    data: str,
    literal: Callable[[bytes], bytes],
    restored: dict[bytes, tuple[str, int]] | None = None,
) -> str:
    """The event's JSON as written: each reference in ``data`` replaced by the
    literal ``literal(hash)`` returns (compressed, as stored).

    A manifest's pieces are looked up with ``literal`` too, and joined.

    ``restored`` keeps each literal restored (its text and its size in bytes) for the
    next event of the same read: a saved conversation holds the very texts of the tool
    results and answers read beside it, which are then inflated once, not twice.

    Raises:
        KeyError: a payload is missing (from ``literal``).
        zlib.error: a payload does not decompress, or expands past its ceiling
            (:mod:`trestle.store.inflate`), or a manifest is not whole hashes.
    """

    spliced = 0  # bytes of literals put back so far: one payload named many times

    def restore(match: re.Match[str]) -> str:
        nonlocal spliced
        digest = bytes.fromhex(match.group(1))
        known = restored.get(digest) if restored is not None else None
        if known is None:
            known = _restored(literal, digest)
            if restored is not None:
                restored[digest] = known
        text, size = known
        spliced += size
        if spliced > inflate.EVENT:
            raise zlib.error(f"its texts expand past {inflate.EVENT:,} bytes in all")
        return text

    return _REFERENCE.sub(restore, data)


def _restored(literal: Callable[[bytes], bytes], digest: bytes) -> tuple[str, int]:
    """The literal stored under ``digest`` as text, and its size in bytes."""
    stored = literal(digest)
    if stored.startswith(MANIFEST):
        if (len(stored) - len(MANIFEST)) % 32:
            raise zlib.error("a manifest whose length is not a whole number of hashes")
        raw = _joined(literal(h) for h in parts([stored]))
    else:
        raw = inflate.inflated(stored, inflate.LITERAL)
    return raw.decode("utf-8", "surrogatepass"), len(raw)


def _joined(pieces: Iterable[bytes]) -> bytes:
    """A long text from its stored pieces, refused past :data:`inflate.LITERAL` bytes
    (a manifest may name one piece any number of times)."""
    out: list[bytes] = []
    size = 0
    for stored in pieces:
        out.append(inflate.inflated(stored, inflate.PIECE))
        size += len(out[-1])
        if size > inflate.LITERAL:
            raise zlib.error(f"its pieces expand past {inflate.LITERAL:,} bytes in all")
    return b"".join(out)


def distinct(payloads: Iterable[Payload]) -> list[Payload]:
    """``payloads`` without repeats (by hash), first seen first."""
    seen: dict[bytes, bytes] = {}
    for digest, blob in payloads:
        seen.setdefault(digest, blob)
    return list(seen.items())
