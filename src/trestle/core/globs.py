"""Path globs where only ``**`` crosses directories, shared by the policy and checkpoints."""

from __future__ import annotations

import re


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
