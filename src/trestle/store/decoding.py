"""Reading a run's stored events back, the same for every store that keeps rows, and
the form a row stores an event's body in (:func:`row_body`).

A store hands over its rows (seq, kind, body, packed), opened by :func:`opened`, and
the payloads the bodies refer to (:mod:`trestle.store.payloads`); this checks the
stream has no gap, begins with ``run_created``, and that each body reads as the kind
its row names. Anything else is damage, named by run and seq through the store's
``damaged``: the run's state cannot be trusted past it.

A snapshot's state is stored zlib-compressed since SQLite's schema 6 and PostgreSQL's
schema 2 (bytes; text before): :func:`state_text` reads either. Every compressed
row is read with a ceiling on what it expands to (:mod:`trestle.store.inflate`): a
row past it is damage, never a driver out of memory.

A row's ``packed`` is flags: :data:`REFERS`, its body refers to payloads (schema 3);
:data:`COMPRESSED`, its body is stored compressed (:mod:`trestle.store.bodies`,
SQLite's schema 6, PostgreSQL's schema 2). Rows from before either are 0 and read as
they were written. PostgreSQL hands every body and state over as bytes (one column of
its reads has one type), an uncompressed one as its text's UTF-8.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Container, Sequence
from typing import TYPE_CHECKING, NoReturn

from trestle.store import bodies, inflate, payloads

if TYPE_CHECKING:
    from trestle.core.events import AnyEvent, StoredEvent

Damaged = Callable[[str], NoReturn]  # raises the store's StoreDamagedError for the run
REFERS = 1  # the body refers to payloads
COMPRESSED = 2  # the body is stored compressed
FLAGS = REFERS | COMPRESSED
Row = tuple[object, object, object, object]  # (seq, kind, body, packed)


def opened(rows: Sequence[Sequence[object]], damaged: Damaged) -> list[Row]:
    """``rows`` with each compressed body as its text, and ``packed`` as whether it
    refers to payloads (which :func:`stream` then takes)."""
    out: list[Row] = []
    for seq, kind, data, packed in rows:
        if not isinstance(packed, int) or packed & ~FLAGS:
            damaged(f"event seq {seq} has flags {packed!r:.40}, not a number from 0 to 3")
        if packed & COMPRESSED:
            data = body(seq, data, damaged)
        elif isinstance(data, bytes):
            data = plain(seq, data, damaged)
        out.append((seq, kind, data, bool(packed & REFERS)))
    return out


# zlib's fastest level for a snapshot's state, compressed inside the commit every
# hundred events: a 1,000-turn agent run's (119 KB of JSON, a hash per tool call) took
# 3.0 ms at the default level and takes 1.0 ms at this one, for 3% more bytes (56.0 KB
# against 54.2; one snapshot per run is kept)
SNAPSHOT_LEVEL = 1


def stored_state(state_json: str) -> bytes:
    """A snapshot's state as a store keeps it (see :func:`state_text`)."""
    return zlib.compress(state_json.encode(), SNAPSHOT_LEVEL)


def state_text(stored: object) -> str | None:
    """A snapshot's state as its JSON text (see :func:`read_state`); None when it cannot
    be read (the events then stand)."""
    try:
        return read_state(stored)
    except ValueError:
        return None


def read_state(stored: object) -> str:
    """A snapshot's state as its JSON text: stored as text, compressed (bytes), or as
    its text's UTF-8 (a PostgreSQL store's snapshot from before schema 2: a JSON object
    starts with ``{``, which no zlib stream does).

    Raises:
        ValueError: it is none of those, does not decompress, or expands past
            :data:`trestle.store.inflate.STATE` bytes (the message says which).
    """
    if isinstance(stored, str):
        return stored
    if not isinstance(stored, bytes):
        raise ValueError(f"it holds {type(stored).__name__}, not text or bytes")
    try:
        if stored.startswith(b"{"):
            return stored.decode("utf-8", "surrogatepass")
        return inflate.inflated(stored, inflate.STATE).decode("utf-8", "surrogatepass")
    except (zlib.error, UnicodeDecodeError) as exc:
        raise ValueError(str(exc)) from exc


def body(seq: object, data: object, damaged: Damaged) -> str:
    """A compressed body as its text; damage if it is not one."""
    try:
        if not isinstance(data, bytes):
            raise ValueError(f"it holds {type(data).__name__}, not bytes")
        return bodies.decompressed(data)
    except (zlib.error, UnicodeDecodeError, ValueError) as exc:
        damaged(f"event seq {seq} cannot be read: its body is stored compressed, but {exc}")


def plain(seq: object, data: bytes, damaged: Damaged) -> str:
    """An uncompressed body handed over as bytes, as its text; damage if it is not UTF-8."""
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        damaged(f"event seq {seq} cannot be read: its body is not UTF-8 text ({exc.reason})")


def stream(
    run_id: str,
    after: int,
    rows: Sequence[Sequence[object]],
    found: dict[bytes, bytes],
    damaged: Damaged,
) -> list[StoredEvent]:
    """``rows`` (seq, kind, body, packed), in seq order from ``after + 1``, as events."""
    from trestle.core.events import StoredEvent  # see decoded

    stored = []
    restored: dict[bytes, tuple[str, int]] = {}  # the literals restored, for the next events
    for expected, (seq, kind, data, packed) in enumerate(rows, start=after + 1):
        if seq != expected:
            damaged(f"event seq {expected} is missing (next recorded: {seq})")
        if packed:
            data = unpacked(expected, data, found, damaged, restored)
        event = decoded(expected, data, damaged, kind)
        if expected == 1 and event.kind != "run_created":
            damaged(f"it does not begin with run_created (seq 1 is {kind!r})")
        if event.kind != kind:
            damaged(f"event seq {seq} is listed as {kind!r} but holds {event.kind!r}")
        stored.append(StoredEvent(run_id=run_id, seq=expected, event=event))
    return stored


def unpacked(
    seq: int,
    data: object,
    found: dict[bytes, bytes],
    damaged: Damaged,
    restored: dict[bytes, tuple[str, int]] | None = None,
) -> str:
    try:
        return payloads.unpack(str(data), found.__getitem__, restored)
    except KeyError as exc:
        damaged(f"event seq {seq} refers to payload {exc.args[0].hex()}, missing")
    except (zlib.error, UnicodeDecodeError) as exc:
        damaged(f"event seq {seq} has a payload that cannot be read: {exc}")


def decoded(seq: int, data: object, damaged: Damaged, kind: object) -> AnyEvent:
    # The event types load on first use: importing them takes a few hundred ms, and
    # opening a store to list runs or find one needs none of them.
    from pydantic import ValidationError

    from trestle.core.events import decode_event

    try:
        if not isinstance(data, str | bytes):
            raise ValueError(f"its body is {type(data).__name__}, not JSON text")
        return decode_event(data, str(kind))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(map(str, error["loc"]))
        damaged(f"event seq {seq} cannot be read: {error['msg']}" + f" at {where!r}" * bool(where))
    except ValueError as exc:
        damaged(f"event seq {seq} cannot be read: {exc}")


def row_body(
    body: str, committed: Container[bytes]
) -> tuple[str | bytes, int, list[payloads.Payload]]:
    """An event's JSON as a row stores it, the way back of :func:`opened`: its long
    strings moved out to payloads (those not ``committed`` returned, a long one as
    shared pieces), the rest compressed when that pays (bytes, else the text); and the
    row's flags saying which."""
    data, large = payloads.pack(body, committed, chunked=True)
    flags = REFERS if data != body else 0
    blob = bodies.compressed(data)
    if blob is None:
        return data, flags, large
    return blob, flags | COMPRESSED, large


def wanted(packed: Sequence[str]) -> list[bytes]:
    """The distinct payload hashes ``packed`` bodies refer to, sorted."""
    return sorted({h for data in packed for h in payloads.references(data)})
