"""Each submodule's checkout in the workspace, held so that no command gives it a
repository of its own.

The operator's ``git status`` (and ``git add``, ``git commit``) at the top of a
repository asks each gitlink's checkout for its state: wherever the checkout holds a
``.git`` (a ``gitdir:`` file, a directory, or one a command just made in an empty
one), git runs there, obeying that repository's configuration (``core.fsmonitor``, a
filter): a program of the step's choosing, outside the sandbox. So for every gitlink
that the index of a repository the workspace lies in (or of a submodule in it) lists
inside the workspace, each command gets, read-only:

- the checkout's ``.git``, file or directory, when it has one (a submodule's own
  repository is never written by a command, as ``.git/modules`` is not);
- the checkout itself, when it has none (never checked out, or deinitialised), so that
  none can be made there; a checkout that is gone is made again first, empty, as git
  leaves one;
- the checkout itself, too, when its ``.git`` is a link or neither file nor directory.

The index is read, not asked of git (:mod:`trestle.workspace.git_index`): this holds
for a checkout with a ``"`` or ``\\`` in its path, for a workspace that is a
subdirectory or a linked worktree of its repository, and for nested submodules. What is
not held, a checkout reached through a link, is said in docs/security.md.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from trestle.execution.sandbox_mounts import small_file
from trestle.workspace.beneath import Refused, is_real_dir, make_dirs, protected_part
from trestle.workspace.git_index import UnreadableIndex, gitlinks

# how many checkouts are held at most, and how deep submodules are followed into
# submodules: each command's start looks at each one
MOST_CHECKOUTS = 2_000
MOST_DEPTH = 8


def submodule_holds(ws: Path) -> tuple[Path, ...]:
    """What to hold read-only so that no gitlink's checkout in the workspace ``ws`` (a
    real path) becomes a repository a command configured (see the module docstring)."""
    held: list[Path] = []
    for top, git_dir in _repositories_around(ws):
        _hold_checkouts(ws, top, git_dir, held, depth=0)
    return tuple(dict.fromkeys(held))


def _repositories_around(ws: Path) -> list[tuple[Path, Path]]:
    """The repositories ``ws`` lies in: each directory from it upward that holds a
    ``.git``, with the git directory that leads to (a linked worktree's, a submodule's)."""
    found = []
    for top in (ws, *ws.parents):
        git_dir = _git_dir_of(top)
        if git_dir is not None:
            found.append((top, git_dir))
    return found


def _git_dir_of(checkout: Path) -> Path | None:
    """The git directory ``checkout/.git`` is or names, if it is a directory."""
    dot_git = checkout / ".git"
    try:
        mode = os.lstat(dot_git).st_mode
    except OSError:
        return None
    if stat.S_ISDIR(mode):
        return dot_git
    if not stat.S_ISREG(mode):
        return None
    named = small_file(dot_git, 4096).partition("gitdir:")[2].strip()
    target = Path(os.path.normpath(checkout / named)) if named else None
    return target if target is not None and is_real_dir(target) else None


def _hold_checkouts(ws: Path, top: Path, git_dir: Path, held: list[Path], depth: int) -> None:
    """Add to ``held`` what holds each checkout of ``git_dir``'s gitlinks (paths from
    ``top``) that lies in ``ws``; then the same for the submodules of each one."""
    try:
        links = gitlinks(git_dir)
    except UnreadableIndex:
        return  # git could not read it either: no status asks a checkout anything
    for link in links:
        if len(held) >= MOST_CHECKOUTS:
            return
        checkout = top / os.fsdecode(link)
        if checkout == ws or not checkout.is_relative_to(ws):
            continue
        hold = _hold_of(ws, checkout)
        if hold is None:
            continue
        held.append(hold)
        inner = _git_dir_of(checkout) if hold.name == ".git" else None
        if inner is not None and depth < MOST_DEPTH:
            _hold_checkouts(ws, checkout, inner, held, depth + 1)


def _hold_of(ws: Path, checkout: Path) -> Path | None:
    """The path that holds ``checkout``: its ``.git`` file or directory, or the
    checkout itself (made again, empty, when gone); None for one that cannot be held:
    reached through a link, or in ``.git`` or ``.trestle``."""
    relative = checkout.relative_to(ws)
    if protected_part(relative.as_posix()) is not None:
        return None
    try:
        if not os.path.lexists(checkout):
            make_dirs(ws, relative.as_posix())  # each beneath the one before: no link followed
        if not all(is_real_dir(ws / way) for way in relative.parents):
            return None
        mode = os.lstat(checkout).st_mode
        if not stat.S_ISDIR(mode):
            return None if stat.S_ISLNK(mode) else checkout
        dot_git = os.lstat(checkout / ".git").st_mode
    except FileNotFoundError:
        return checkout  # no .git: none may be made
    except (OSError, Refused):
        return None
    return checkout / ".git" if stat.S_ISDIR(dot_git) or stat.S_ISREG(dot_git) else checkout
