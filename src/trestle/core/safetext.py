"""Text that can be stored: unpaired surrogates replaced.

A lone UTF-16 surrogate (``"\\ud83d"``) is a valid Python ``str`` that JSON can carry
escaped, but it cannot be encoded as UTF-8: writing it to the store fails, and a run
whose event cannot be written is stuck. Providers' replies, tools' output and
anything else from outside pass through here at the edges; the store's writer uses it
as a last resort for whatever slipped past them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_ARGUMENTS = 1 << 20  # characters of a model's JSON (tool arguments) taken at most
MAX_DEPTH = 64  # nesting of a model's JSON: nothing Trestle reads goes near it
REPLACEMENT = "\ufffd"


def without_surrogates(text: str) -> str:
    """``text`` with every unpaired surrogate replaced by U+FFFD; a well-formed pair
    (a character outside the BMP split in two) becomes that character."""
    # every message of a conversation passes here when it is read back (a resume reads
    # a 1,000-turn run's 331 KB save): an ASCII text, told in constant time, is not
    # searched (0.8 of 9.8 ms of the events a resume after 1,000 turns reads)
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def json_without_surrogates(value: Any) -> Any:
    """A JSON value (dicts, lists, strings, numbers) with every string, keys included,
    passed through :func:`without_surrogates`. Iterative: a deep value is no risk."""
    root: list[Any] = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        parent, key = stack.pop()
        item = parent[key]
        if isinstance(item, str):
            parent[key] = without_surrogates(item)
        elif isinstance(item, dict):
            cleaned = {without_surrogates(str(k)): v for k, v in item.items()}
            parent[key] = cleaned
            stack.extend((cleaned, k) for k in cleaned)
        elif isinstance(item, list | tuple):
            copied = list(item)
            parent[key] = copied
            stack.extend((copied, i) for i in range(len(copied)))
    return root[0]


def model_json(model: BaseModel, dump: Callable[[], bytes | str] | None = None, **kw: Any) -> str:
    """``model`` as JSON text (``dump`` says how, default ``model_dump_json(**kw)``);
    an unpaired surrogate that slipped past the edges is replaced rather than failing
    the write, which would leave the run stuck."""
    try:
        out = dump() if dump is not None else model.model_dump_json(**kw)
    except PydanticSerializationError:
        data = json_without_surrogates(model.model_dump(mode="json", **kw))
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return out.decode() if isinstance(out, bytes) else out


def json_depth(text: str) -> int:
    """How deeply ``text``'s arrays and objects nest, brackets in strings aside; counted
    without parsing, so a 100,000-deep value costs a scan, not a recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def loads_bounded(text: str) -> Any:
    """``json.loads`` for JSON a model wrote: at most :data:`MAX_ARGUMENTS` characters
    and :data:`MAX_DEPTH` levels (checked before parsing, so no recursion limit is
    met), unpaired surrogates replaced. Raises ValueError otherwise."""
    if len(text) > MAX_ARGUMENTS:
        raise ValueError(f"{len(text):,} characters, more than {MAX_ARGUMENTS:,}")
    if json_depth(text) > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    return json_without_surrogates(json.loads(text))
