"""Where a key sits in a TOML text, so a problem found after parsing (an unknown key, a
value of the wrong type) can name its line as a plan file's problems do.

``tomllib`` keeps no positions, so the text is scanned again: table headers
(``[policy.monitors]``, ``[[policy.rules]]``, counted to give each array element its
index) and ``key = value`` lines, skipping what sits inside strings and inside
multi-line arrays or inline tables. A key written inside an inline table or array gets
the line of the key holding it: the nearest line known, never a wrong one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

KeyPath = tuple[str | int, ...]

_PART = re.compile(r"""\s*(?:([A-Za-z0-9_-]+)|"((?:[^"\\]|\\.)*)"|'([^']*)')\s*""")
_SYNTAX_AT = re.compile(r"^(.*) \(at line (\d+), column (\d+)\)$")


def key_lines(text: str) -> dict[KeyPath, int]:
    """The 1-based line where each table and key of ``text`` is first written."""
    lines: dict[KeyPath, int] = {}
    arrays: dict[tuple[str, ...], int] = {}  # an array of tables -> its last element
    table: KeyPath = ()
    for number, line in _top_lines(text):
        stripped = line.lstrip()
        if stripped.startswith("[["):
            names = _dotted(stripped[2:])
            if names is None:
                continue
            index = arrays[names] = arrays.get(names, -1) + 1
            holder = _resolved(names[:-1], arrays)
            lines.setdefault((*holder, names[-1]), number)
            table = (*holder, names[-1], index)
        elif stripped.startswith("["):
            names = _dotted(stripped[1:])
            if names is None:
                continue
            table = _resolved(names, arrays)
        else:
            names = _dotted(stripped, until="=")
            if names is None:
                continue
            for end in range(1, len(names) + 1):  # dotted keys make tables too
                lines.setdefault((*table, *names[:end]), number)
            continue
        lines.setdefault(table, number)
    return lines


def line_of(lines: dict[KeyPath, int], path: Sequence[str | int]) -> int | None:
    """The line of ``path``, or of the nearest key holding it; None when none is known."""
    for end in range(len(path), 0, -1):
        found = lines.get(tuple(path[:end]))
        if found is not None:
            return found
    return None


def syntax_problem(message: str) -> tuple[str, int | None]:
    """``tomllib``'s ``Invalid value (at line 2, column 7)`` as ``invalid value
    (column 7)`` and its line, for the ``file:line:`` prefix."""
    match = _SYNTAX_AT.match(message)
    if match is None:
        return message, None
    what, line, column = match.groups()
    return f"{what[:1].lower()}{what[1:]} (column {column})", int(line)


def _resolved(names: Sequence[str], arrays: dict[tuple[str, ...], int]) -> KeyPath:
    """A header's path, with the element of each array of tables it sits in."""
    path: list[str | int] = []
    for end, name in enumerate(names, 1):
        path.append(name)
        if tuple(names[:end]) in arrays:
            path.append(arrays[tuple(names[:end])])
    return tuple(path)


def _dotted(text: str, until: str = "]") -> tuple[str, ...] | None:
    """The dotted key at the start of ``text``, ended by ``until``; None if there is none."""
    parts: list[str] = []
    at = 0
    while True:
        match = _PART.match(text, at)
        if match is None:
            return None
        parts.append(next(group for group in match.groups() if group is not None))
        at = match.end()
        if text.startswith(".", at):
            at += 1
            continue
        return tuple(parts) if text.startswith(until, at) else None


def _top_lines(text: str) -> Iterator[tuple[int, str]]:
    """Each line that starts outside any string, array or inline table, numbered."""
    closing: str | None = None  # the delimiter of the multi-line string we are in
    depth = 0
    for number, line in enumerate(text.splitlines(), 1):
        if closing is None and depth == 0:
            yield number, line
        at = 0
        while at < len(line):
            if closing is not None:
                end = line.find(closing, at)
                if end < 0:
                    break
                at, closing = end + 3, None
                continue
            char = line[at]
            if char == "#":
                break
            if line.startswith(('"""', "'''"), at):
                closing, at = line[at : at + 3], at + 3
                continue
            if char in "\"'":
                at = _string_end(line, at)
                continue
            depth += (char in "[{") - (char in "]}")
            at += 1


def _string_end(line: str, start: int) -> int:
    """Where a one-line string opened at ``start`` ends (past its closing quote)."""
    quote, at = line[start], start + 1
    while at < len(line):
        if quote == '"' and line[at] == "\\":
            at += 2
            continue
        if line[at] == quote:
            return at + 1
        at += 1
    return at
