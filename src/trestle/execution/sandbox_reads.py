"""Which of the policy's ``sandbox.read`` entries a command is shown, judged again for
every command (see :mod:`trestle.execution.sandbox`).

bubblewrap binds an entry wherever its path resolves when the command starts. An
entry that lies in the workspace, or that a link on the way leads through it, resolves
where a step chose: a step's command rewrites the workspace between two commands (a
link renamed, replaced, a ``..``), or while another step's command is starting, so it
could point the entry at the store's directory, the approval key's or ``~/.ssh``, and
the next command would see them. Such an entry is never bound, whatever it leads to
now. What is reached without the workspace, no command can change (the rest of the
host is read-only or private to each command); one of those is bound unless its real
path lies in, or holds, a hidden path (a link to ``~/.config`` would show the key
directory under another name, which the hiding by name does not cover).

Each entry left out is said in a line that names it and why; the command prints these
lines on its stderr, so its output says what it was not shown.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from trestle.execution.sandbox_mounts import reached_through


@dataclass(frozen=True)
class ScreenedReads:
    """The ``sandbox.read`` entries a command is shown and those it is not.

    Attributes:
        shown: the entries to bind, expanded (``~`` replaced), as the operator wrote them.
        left_out: one line for each entry not bound, naming it and why.
    """

    shown: tuple[Path, ...] = ()
    left_out: tuple[str, ...] = ()


def screen_reads(
    entries: Iterable[str],
    ws: Path,
    hidden: Sequence[Path],
    homes: Sequence[Path],
    what: str = "sandbox.read",
) -> ScreenedReads:
    """Judge each entry for one command: ``ws`` is the workspace's real path, ``hidden``
    the real paths no command may see (the store's, the key's and the configuration's
    directories), ``homes`` the hidden homes, which an entry may lie in (``~/.rustup``)
    but not hold; ``what`` the entries are, as a line left out names them."""
    shown: list[Path] = []
    left_out: list[str] = []
    for entry in entries:
        path = Path(os.path.expanduser(entry))
        why = _why_not(path, ws, hidden, homes)
        if why is None:
            shown.append(path)
        else:
            left_out.append(f"trestle: {what} {entry!r} is not shown to this command: {why}")
    return ScreenedReads(tuple(shown), tuple(left_out))


def _why_not(path: Path, ws: Path, hidden: Sequence[Path], homes: Sequence[Path]) -> str | None:
    if _within(str(ws), os.path.normpath(path)):
        return f"it lies in the workspace ({ws}), which the command sees anyway"
    if reached_through(path, ws):
        return (
            f"a link on the way to it leads through the workspace ({ws}), where a step "
            "can point it at any directory"
        )
    real = os.path.realpath(path)
    for secret in map(str, hidden):
        if _within(secret, real):
            return f"it resolves to {real}, inside {secret}, which the sandbox hides"
        if _within(real, secret):
            return f"it resolves to {real}, which holds {secret}, which the sandbox hides"
    for home in map(str, homes):
        if _within(real, home):
            return f"it resolves to {real}, which holds the home {home}, which the sandbox hides"
    return None


def _within(parent: str, path: str) -> bool:
    """``path`` is ``parent`` or lies under it, by their names: ``/a`` holds ``/a/b``,
    not ``/ab``. Compared as strings, as this runs for every command."""
    return (path.rstrip("/") + "/").startswith(parent.rstrip("/") + "/")
