"""A tool call's arguments, read: JSON object text, within limits.

A model writes a call's arguments as JSON text (:attr:`ToolCall.arguments`). Before
anything reads them they are held to :data:`MAX_ARGUMENT_CHARS` characters and
:data:`MAX_ARGUMENT_DEPTH` levels of nesting: no tool takes more, and text past
either is a model gone astray whose call would otherwise cost a parse, a validation
and an echo of all of it. What is wrong is said so the model can write it again
(:class:`ArgumentsError`); nothing here raises anything else.
"""

from __future__ import annotations

import json
from typing import Any

from trestle.text import storable_value

MAX_ARGUMENT_CHARS = 1 << 20  # 1 MiB of text; a whole file to write fits many times
MAX_ARGUMENT_DEPTH = 64  # the object itself is level 1


class ArgumentsError(ValueError):
    """What is wrong with a call's arguments, worded to follow "arguments for TOOL".

    Attributes:
        unread: the text was not read at all (too long, too deep): it is not worth
            showing back.
        shape: it was JSON, but not an object; the tool's signature helps.
    """

    def __init__(self, problem: str, *, unread: bool = False, shape: bool = False) -> None:
        super().__init__(problem)
        self.unread, self.shape = unread, shape


def parse_arguments(raw: str) -> dict[str, Any]:
    """The arguments as a dict, every string in it storable (:mod:`trestle.text`).

    Empty text is no arguments (``{}``): some servers send it for a call without any.

    Raises:
        ArgumentsError: too long, not JSON, too deep, or not an object.
    """
    if len(raw) > MAX_ARGUMENT_CHARS:
        raise ArgumentsError(
            f"are too long: {len(raw):,} characters, at most {MAX_ARGUMENT_CHARS:,} "
            "(1 MiB); do the work in smaller calls",
            unread=True,
        )
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        before = raw[max(exc.pos - 30, 0) : exc.pos]
        where = f"just after {before!r}" if before else "at the start"
        raise ArgumentsError(
            f"are not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno} "
            f"(character {exc.pos}), {where}"
        ) from None
    except RecursionError:  # far deeper than the limit below
        raise _too_deep() from None
    except ValueError as exc:  # a number of too many digits
        raise ArgumentsError(f"are not usable JSON: {exc}") from None
    if _deeper_than(value, MAX_ARGUMENT_DEPTH):
        raise _too_deep()
    if not isinstance(value, dict):
        raise ArgumentsError(f"must be a JSON object, not {type(value).__name__}", shape=True)
    # the text may escape a lone surrogate ("\ud83d") that only parsing reveals
    parsed: dict[str, Any] = storable_value(value)
    return parsed


def _too_deep() -> ArgumentsError:
    return ArgumentsError(
        f"are nested deeper than {MAX_ARGUMENT_DEPTH} levels; flatten them", unread=True
    )


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest past ``limit`` levels; iterative, so any depth
    json.loads returned is measured without recursion."""
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        node, level = todo.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if level > limit:
            return True
        todo.extend((child, level + 1) for child in children)
    return False
