"""Decompressing a stored row with a ceiling on what it may expand to.

Event bodies, payloads, their pieces and snapshot states are stored zlib-compressed.
A row written behind the store's back (by anyone who can open its file or database)
can be a few MB that expand to gigabytes (zlib reaches about 1,000 to 1): read without
a limit, it would exhaust the driver's memory instead of being named as damage. Each
kind of row has a ceiling far above anything Trestle writes, and a row that expands
past it is damage (a ``zlib.error``, which the readers already name), found after at
most that many bytes.

The largest legitimate sizes, and the margins:

- a piece of a long text is at most ``payloads._PIECE_MAX`` (16 KiB) by construction:
  :data:`PIECE` is 64 times that;
- one long string (a payload, whole or joined from its pieces): a tool's output is
  capped at 8,000 characters (``OUTPUT_LIMIT``), an MCP result at ``output_cap`` too,
  a hand-off body at 1 M characters, a model's answer at 4 Mi characters
  (``MAX_ANSWER``, refused before it is recorded); the longest are a conversation (a
  2 M-token context is about 8 MB of text) and a string of an 8 MiB plan file (at most about
  12 MB once JSON escapes it): :data:`LITERAL` is 128 MiB, ten times those;
- a body, its long strings stored apart (each of those left is under 512 bytes):
  25.9 KB at most over a 1,000-turn agent run (4,204 events, the conversation save the
  largest); the largest possible is a ``run_created`` holding a 10,000-step plan from
  an 8 MiB file, about 10-20 MB with every field written: :data:`BODY` is 64 MiB;
- an event with its strings spliced back: :data:`EVENT` is 256 MiB, twice one string,
  so that a body naming one payload many times cannot multiply it without bound;
- a snapshot's state: 117 KB after 1,000 turns (seq 4,131), growing about 117 bytes a
  turn, so 12 MB at 100,000 turns: :data:`STATE` is 256 MiB, past two million turns.

Pure: the store does the IO. Reading stops at the ceiling plus one byte, so a bomb
costs at most that much memory and the time to inflate it.
"""

from __future__ import annotations

import zlib

MIB = 1 << 20
PIECE = 1 * MIB
LITERAL = 128 * MIB
BODY = 64 * MIB
EVENT = 256 * MIB
STATE = 256 * MIB


def inflated(blob: bytes, limit: int, *, zdict: bytes = b"") -> bytes:
    """``blob`` decompressed, refused past ``limit`` bytes.

    Raises:
        zlib.error: it expands past ``limit`` bytes, is cut short, has bytes after its
            end, or is not a zlib stream (with ``zdict``, not one primed with it).
    """
    unpacker = zlib.decompressobj(zdict=zdict) if zdict else zlib.decompressobj()
    raw = unpacker.decompress(blob, limit + 1)
    if len(raw) > limit:
        raise zlib.error(f"it expands past {limit:,} bytes, more than Trestle ever writes")
    if not unpacker.eof or unpacker.unused_data:
        raise zlib.error("the compressed bytes are cut short or have bytes after their end")
    return raw
