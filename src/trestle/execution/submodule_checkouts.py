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

import functools
import os
import stat
from pathlib import Path

from trestle.execution.sandbox_mounts import small_file
from trestle.workspace.beneath import Refused, is_real_dir, make_dirs
from trestle.workspace.git_index import Room, UnreadableIndex, gitlinks

# how many checkouts are held at most, and how deep submodules are followed into
# submodules: each command's start looks at each one
MOST_CHECKOUTS = 1_000
MOST_DEPTH = 8
_NOT_PLAIN = frozenset({"", ".", ".."})
_PROTECTED = frozenset({".git", ".trestle"})


def submodule_holds(ws: Path) -> tuple[Path, ...]:
    """What to hold read-only so that no gitlink's checkout in the workspace ``ws`` (a
    real path) becomes a repository a command configured (see the module docstring).

    The repositories around the workspace are looked at from the outermost in: those
    above it are out of every step's reach, and a ``.git`` a step made in the workspace
    (where it had none) comes last, so that the checkouts it lists, or an index too
    large to read, never crowd out the others within the limits of one look. Paths are
    worked as strings: this runs at every command's start."""
    look = _Look(str(ws))
    for top, git_dir in reversed(_repositories_around(look.root)):
        look.checkouts_of(top, git_dir, depth=0)
    return tuple(Path(path) for path in dict.fromkeys(look.held))


def unheld_workspace_checkout(ws: Path) -> tuple[str, ...]:
    """A sentence, if the workspace is itself a submodule's checkout with no ``.git`` (never
    checked out, or deinitialised): nothing can be held there short of the whole
    workspace, and a repository a step makes in it is one the ``git status`` of the
    repository above obeys."""
    root = str(ws)
    if os.path.lexists(os.path.join(root, ".git")):
        return ()
    for top, git_dir in _repositories_around(root)[:1]:  # the nearest one above
        links = _links(git_dir, None)
        relative = os.fsencode(root[len(top) + 1 :])
        if links and relative in links:
            return (
                f"the workspace {root} is the checkout of a submodule of {top} with no "
                f"repository of its own (never checked out, or deinitialised): a step can "
                f"make one there, and `git status` in {top} runs what its configuration "
                f"names; look at {root}/.git before you run git in {top}, or run in a "
                f"checkout that has its .git",
            )
    return ()


def _repositories_around(root: str) -> list[tuple[str, str]]:
    """Each directory from ``root`` upward that holds a ``.git``, with the git
    directory that leads to, nearest first."""
    found = []
    top = root
    while True:
        git_dir = _git_dir_of(top)
        if git_dir is not None:
            found.append((top, git_dir))
        above = os.path.dirname(top)
        if above == top:
            return found
        top = above


def _links(git_dir: str, room: Room | None) -> tuple[bytes, ...] | None:
    """``git_dir``'s gitlinks; None when it could not be read (nor could git read it),
    or not within ``room``."""
    try:
        return gitlinks(git_dir, room)
    except UnreadableIndex:
        return None


def _git_dir_of(checkout: str) -> str | None:
    """The git directory ``checkout/.git`` is, or names (a ``gitdir:`` file: a linked
    worktree's, a submodule's), if that is a directory."""
    dot_git = os.path.join(checkout, ".git")
    try:
        info = os.lstat(dot_git)
    except OSError:
        return None
    if stat.S_ISDIR(info.st_mode):
        return dot_git
    if not stat.S_ISREG(info.st_mode):
        return None
    named = _named_git_dir(dot_git, info.st_ino, info.st_size, info.st_mtime_ns)
    target = os.path.normpath(os.path.join(checkout, named)) if named else None
    return target if target is not None and is_real_dir(target) else None


@functools.lru_cache(maxsize=256)
def _named_git_dir(dot_git: str, *version: int) -> str:
    """What a ``.git`` file names after ``gitdir:`` (read once for each ``version``)."""
    return small_file(Path(dot_git), 4096).partition("gitdir:")[2].strip()


def _plain(name: str) -> bool:
    """Whether a gitlink's path is one git would check out: relative, with no empty,
    ``.`` or ``..`` part, nor one of the directories no command writes (``.git``,
    ``.trestle``, in any case)."""
    parts = name.split("/")
    return "\0" not in name and not any(p in _NOT_PLAIN or p.lower() in _PROTECTED for p in parts)


class _Look:
    """One command's look at the checkouts in the workspace ``root``: what holds them,
    and each directory on their way judged once (a repository's share theirs)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.held: list[str] = []
        self._real: dict[str, bool] = {}
        self._room = Room()

    def checkouts_of(self, top: str, git_dir: str, depth: int) -> None:
        """Hold each checkout of ``git_dir``'s gitlinks (paths from ``top``) that lies in
        the workspace; then the same for the submodules of each one."""
        links = _links(git_dir, self._room)
        if links is None:
            return
        root = self.root
        inside = top == root or top.startswith(root + os.sep)
        beneath = "" if top == root else top[len(root) + 1 :] + "/"
        for link in links:
            if len(self.held) >= MOST_CHECKOUTS:
                return
            name = os.fsdecode(link)
            if not _plain(name):
                continue  # git itself refuses such an entry
            if not inside:  # a repository above the workspace: its gitlinks in it
                checkout = os.path.join(top, name)
                if not checkout.startswith(root + os.sep):
                    continue
                relative = checkout[len(root) + 1 :]
            else:
                relative = beneath + name
            hold = self._hold_of(relative)
            if hold is None:
                continue
            self.held.append(hold)
            if hold.endswith("/.git") and depth < MOST_DEPTH:
                inner = _git_dir_of(hold[: -len("/.git")])
                if inner is not None:
                    self.checkouts_of(hold[: -len("/.git")], inner, depth + 1)

    def _hold_of(self, relative: str) -> str | None:
        """The path that holds the checkout at ``relative``: its ``.git`` file or
        directory, or the checkout itself (made again, empty, when gone); None for one
        that cannot be held: reached through a link."""
        checkout = f"{self.root}/{relative}"
        try:
            try:
                mode = os.lstat(checkout).st_mode
            except FileNotFoundError:
                make_dirs(Path(self.root), relative)  # each beneath the one before
                mode = os.lstat(checkout).st_mode
            if not self._real_ways(relative):
                return None
            if not stat.S_ISDIR(mode):
                return None if stat.S_ISLNK(mode) else checkout
            dot_git = os.lstat(f"{checkout}/.git").st_mode
        except FileNotFoundError:
            return checkout  # no .git: none may be made
        except (OSError, ValueError, Refused):
            return None
        if stat.S_ISDIR(dot_git) or stat.S_ISREG(dot_git):
            return f"{checkout}/.git"
        return checkout

    def _real_ways(self, relative: str) -> bool:
        """Whether each directory on the way to ``relative`` is a real one, no link."""
        way = self.root
        for part in relative.split("/")[:-1]:
            way = f"{way}/{part}"
            real = self._real.get(way)
            if real is None:
                real = self._real[way] = is_real_dir(way)
            if not real:
                return False
        return True
