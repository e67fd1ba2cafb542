"""A run's events as JSON Lines: one object per stored event, read back unchanged.

Each line is ``{"seq": N, "kind": ..., "v": ..., "at": ..., <the event's fields>}``,
the shape ``trestle log RUN --json`` prints for each event, so ``trestle monitors eval``
reads the file as a Trestle run. :func:`read_event_lines` turns the text back into
``(seq, event)`` pairs equal to the stored ones: the events' one ``TypeAdapter``
writes and reads every field, and JSON keeps a float's every digit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from pydantic import ValidationError

from trestle.core import events as recorded
from trestle.core.errors import ConfigError
from trestle.core.events import AnyEvent, StoredEvent


def event_lines(events: Iterable[StoredEvent]) -> str:
    """The events as JSON Lines, in the order given (the store's: by ``seq``)."""
    lines = []
    for stored in events:
        body = stored.event.model_dump(mode="json")
        lines.append(json.dumps({"seq": stored.seq, **body}, ensure_ascii=False) + "\n")
    return "".join(lines)


def read_event_lines(text: str, source: str = "<events>") -> list[tuple[int, AnyEvent]]:
    """The ``(seq, event)`` pairs of JSON Lines written by :func:`event_lines`.

    Raises:
        ConfigError: a line is not JSON, has no integer ``seq``, or is not an event;
            the message names ``source``, the line and the field.
    """
    found: list[tuple[int, AnyEvent]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not JSON: {exc.msg}") from None
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: an event must be an object")
        seq = item.pop("seq", None)
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise ConfigError(f"{where}: 'seq' must be an integer, not {seq!r}")
        try:
            found.append((seq, recorded.EVENT_ADAPTER.validate_python(item)))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            field = ".".join(str(p) for p in first["loc"]) or "event"
            raise ConfigError(f"{where} (seq {seq}): {field}: {first['msg']}") from None
    return found
