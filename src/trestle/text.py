"""Text that can be stored: what a model or a tool hands over, made into real text.

A JSON body may hold an unpaired UTF-16 surrogate (``"\\ud83d"``: half an emoji, cut
by a tokenizer or a truncation), and a file name that is not UTF-8 reaches Python as
one (PEP 383). Python strings carry them, but UTF-8 cannot encode them: the event that
held one could not be written, and a JSON reader refuses the escape written in its
place. So each is replaced with U+FFFD, the replacement character, where text enters
(the model records, tool observations) and again, as a last resort, where events are
written. A surrogate pair split into two code points is joined into its character.

NUL and other control characters are kept: JSON escapes them, so they store and read
back as they were, and refusing them would refuse binary a tool legitimately shows.
"""

from __future__ import annotations

import re
from typing import Any

import pydantic_core

REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with every unpaired surrogate replaced by U+FFFD; itself if it has none."""
    if not _SURROGATE.search(text):
        return text
    # through UTF-16: a pair becomes its character, a half becomes one U+FFFD
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def storable_value(value: Any) -> Any:
    """A JSON-like value (dicts, lists, tuples, strings, scalars) with every string in
    it, keys included, made :func:`storable`; scalars and other objects as they are."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable_value(k): storable_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(storable_value(v) for v in value)
    return value


def storable_json(value: Any) -> str:
    """JSON text of a dumped record (``model_dump(mode="json")``) with every string made
    :func:`storable`: the writers' fallback when a record's own JSON cannot be encoded."""
    return pydantic_core.to_json(storable_value(value)).decode()
