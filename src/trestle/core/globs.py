"""Globs: path globs where only ``**`` crosses directories, shared by the policy and
checkpoints; and shell-style globs matched without a regex where none is needed."""

from __future__ import annotations

import fnmatch
import functools
import re

GLOB_CHARS = frozenset("*?[")


def literal_head(pattern: str) -> str:
    """The text of ``pattern`` before its first glob character: what every text it
    matches begins with."""
    for i, c in enumerate(pattern):
        if c in GLOB_CHARS:
            return pattern[:i]
    return pattern


def glob_matches(text: str, pattern: str) -> bool:
    """``fnmatch.fnmatchcase(text, pattern)``, compiling a regex only when the literal
    checks cannot decide. fnmatch compiles each pattern the first time it sees it, and
    the policy's defaults alone are about a hundred command patterns, most of them a
    command's name and a star (``git push*``): each new process (a driver, a CLI
    command) paid about 10 ms compiling them on its first step (BENCHMARKS.md)."""
    head, rest = _glob_parts(pattern)
    if not text.startswith(head):
        return False
    if rest == "":
        return len(text) == len(head)
    if rest == "*":  # only stars after the head: any text that begins so
        return True
    return fnmatch.fnmatchcase(text, pattern)


@functools.lru_cache(maxsize=4096)
def _glob_parts(pattern: str) -> tuple[str, str]:
    """``pattern``'s literal head, and what follows it: "" for nothing, "*" for only
    stars, else the rest as written. Split once per pattern: every command is matched
    against each of the policy's patterns."""
    head = literal_head(pattern)
    rest = pattern[len(head) :]
    return head, "*" if rest and not rest.strip("*") else rest


def glob_regex(glob: str) -> str:
    """Translate a path glob to a regex (for ``fullmatch``) where only ``**`` crosses ``/``.

    ``**/`` matches zero or more directories, ``*`` and ``?`` stay within one, ``[...]``
    and ``[!...]`` are character classes, and an unclosed ``[`` is literal.
    """
    out: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[" and (end := glob.find("]", i + 2)) != -1:
            body = glob[i + 1 : end].replace("\\", "\\\\")
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return "".join(out)
