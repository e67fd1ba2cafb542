"""A directory tree walked top-down without recursion.

Python 3.11's ``os.walk`` recurses a level per directory, so a tree a step made 1,500
deep raised ``RecursionError`` in the driver, which then exited with the run left in
progress, and again on every resume. This walk keeps the directories still to read in a
list instead, in ``os.walk``'s order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def walk(top: str | Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """``(directory, dirs, files)`` for ``top`` and each directory under it, as
    ``os.walk(top)`` yields them top-down: the caller may prune ``dirs`` in place. No
    link is followed: a link to a directory is among ``files``. A directory that cannot
    be read is passed over, as ``os.walk`` does."""
    waiting = [os.fspath(top)]
    while waiting:
        folder = waiting.pop()
        try:
            with os.scandir(folder) as entries:
                found = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
        except OSError:
            continue
        dirs = [name for name, is_dir in found if is_dir]
        files = [name for name, is_dir in found if not is_dir]
        yield folder, dirs, files
        waiting.extend(os.path.join(folder, name) for name in reversed(dirs))
