"""What differs between two snapshots, read from git's ``--raw -z`` output.

``git diff-tree`` and ``git diff-index`` name each path that differs with its modes,
its object ids and a letter (added, deleted, modified, type changed); a comparison of
many pairs of trees at once (``diff-tree --stdin --always``) heads each pair's entries
with the pair's line. Pure: the shadow store runs git and raises its own error for a
:class:`ValueError` here (output git would not write).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Literal

RAW_ENTRY = re.compile(rb":(\d{6}) (\d{6}) ([0-9a-f]+) ([0-9a-f]+) ([A-Z])\d*")

ChangeKind = Literal["added", "modified", "deleted", "mode"]


@dataclass(frozen=True)
class Change:
    """One path that differs between two states of a workspace.

    Attributes:
        path: workspace-relative, ``/``-separated.
        kind: ``added``, ``deleted``, ``modified`` (content or file type changed) or
            ``mode`` (only the executable bit changed).
        old_mode: git mode before (``100644``, ``100755``, ``120000``), "" if added.
        new_mode: git mode after, "" if deleted.
    """

    path: str
    kind: ChangeKind
    old_mode: str
    new_mode: str


@dataclass(frozen=True)
class RawChange:
    """One entry of git's ``--raw`` output, as read."""

    status: str  # git's letter: A, D, M or T
    old_mode: str
    new_mode: str
    old_oid: str
    new_oid: str
    path: str


def raw_change(entry: bytes, path: bytes) -> RawChange:
    """One entry of git's ``--raw -z`` output: its modes, ids and letter, then its path."""
    match = RAW_ENTRY.fullmatch(entry)
    if match is None:
        raise ValueError(f"unexpected git diff output: {entry!r}")
    old_mode, new_mode, old_oid, new_oid, status = (g.decode() for g in match.groups())
    return RawChange(status, old_mode, new_mode, old_oid, new_oid, os.fsdecode(path))


def pairs_changes(out: bytes, pairs: int) -> list[list[RawChange]]:
    """``git diff-tree --stdin --always --raw -z``'s output for ``pairs`` pairs of trees:
    each pair's line ("<tree> <tree>\\n"), then its entries ("<entry>\\0<path>\\0")."""
    found: list[list[RawChange]] = []
    pos = 0
    while pos < len(out):
        if out[pos : pos + 1] == b":":  # an entry of the pair above
            if not found:
                raise ValueError("unexpected git diff-tree output: an entry before a pair")
            entry_end = out.index(b"\0", pos)
            path_end = out.index(b"\0", entry_end + 1)
            found[-1].append(raw_change(out[pos:entry_end], out[entry_end + 1 : path_end]))
            pos = path_end + 1
        else:
            pos = out.index(b"\n", pos) + 1
            found.append([])
    if len(found) != pairs:
        raise ValueError(f"git diff-tree answered {len(found)} of {pairs} comparisons")
    return found


def to_change(raw: RawChange) -> Change:
    kind: ChangeKind
    if raw.status == "A":
        kind = "added"
    elif raw.status == "D":
        kind = "deleted"
    elif raw.status == "M" and raw.old_oid == raw.new_oid:
        kind = "mode"
    else:
        kind = "modified"
    old_mode = "" if raw.status == "A" else raw.old_mode
    new_mode = "" if raw.status == "D" else raw.new_mode
    return Change(raw.path, kind, old_mode, new_mode)
