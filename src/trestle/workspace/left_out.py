"""Files a checkpoint left out for their size, and how its message names them.

A file larger than the store's bound is not stored (:mod:`trestle.workspace.shadow`);
the snapshot's message ends with one line for each, before the line giving its order,
so whoever shows or restores the checkpoint can say which files it lacks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

# One file a snapshot left out for its size, a line of its message before the order's:
# its size, the bound then, and its path as a JSON string (a path may hold a newline).
LEFT_OUT_LINE = re.compile(r'trestle-left-out: (\d+) (\d+) ("(?:[^"\\\n]|\\.)*")')
LEFT_OUT_BLOCK = re.compile(r"(?:\A|\n\n)((?:trestle-left-out: [^\n]*(?:\n|\Z))+)\Z")
DEFAULT_MAX_FILE_SIZE = 64 * 1024 * 1024


@dataclass(frozen=True)
class LeftOut:
    """A file a snapshot did not store because it was larger than the bound.

    Attributes:
        path: workspace-relative, ``/``-separated.
        size: its apparent size in bytes (a sparse file's too), from ``lstat``.
        limit: the bound it passed, in bytes.
    """

    path: str
    size: int
    limit: int

    def describe(self) -> str:
        """``big.txt (20 GiB, over 64 MiB)``."""
        return f"{self.path} ({human_size(self.size)}, over {human_size(self.limit)})"


def human_size(size: int) -> str:
    """Bytes in binary units: ``512 bytes``, ``64 MiB``, ``1.5 GiB``."""
    amount = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            break
        amount /= 1024
    if unit == "bytes":
        return f"{size} bytes"
    return f"{amount:.1f}".removesuffix(".0") + f" {unit}"


def left_out_lines(files: Sequence[LeftOut]) -> str:
    """The lines naming ``files`` at the end of a snapshot's message."""
    return "".join(f"trestle-left-out: {f.size} {f.limit} {json.dumps(f.path)}\n" for f in files)


def split_left_out(message: str) -> tuple[str, tuple[LeftOut, ...]]:
    """A snapshot's message without its closing lines naming the files it left out,
    and those files."""
    block = LEFT_OUT_BLOCK.search(message)
    if block is None:
        return message, ()
    left_out = []
    for line in block.group(1).splitlines():
        parsed = LEFT_OUT_LINE.fullmatch(line)
        if parsed is None:  # not ours: the message's own text
            return message, ()
        path = json.loads(parsed.group(3))
        left_out.append(LeftOut(path, int(parsed.group(1)), int(parsed.group(2))))
    return message[: block.start()], tuple(left_out)
