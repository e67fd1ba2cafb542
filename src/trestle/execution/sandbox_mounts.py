"""What the sandbox mounts over the workspace and the host, besides hiding Trestle's
own files (see :mod:`trestle.execution.sandbox`):

- **the workspace**, writable whole, or, for a child run with a carved scope, read-only
  but for the directories its scope names;
- **the repository's ``.git``**, read-only: whatever a command writes there (hooks,
  ``core.fsmonitor``, a filter, a ``commondir``) would run outside the sandbox at the
  operator's next ``git status``. A command a human approved may write it (``git
  commit``), but never its configuration, hooks, submodules, worktrees or ``info``;
  being a mount point, ``.git`` cannot be renamed or replaced either;
- **the host's UNIX sockets**, each covered: a socket is reached by its path, not
  through the network namespace, so a daemon's socket (Docker's, a database's) would
  otherwise be open to every command.

Each returns bubblewrap arguments; paths are the workspace's real ones.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

# what of a writable .git a command must not change: each makes git run a program or
# read its settings elsewhere (hooks; config; a submodule's or worktree's own config;
# info/attributes; commondir, config.worktree and alternates redirect what git reads)
GIT_EXECUTABLE = (
    "config",
    "config.worktree",
    "hooks",
    "info",
    "modules",
    "worktrees",
    "commondir",
    "objects/info/alternates",
)
_WILDCARD = re.compile(r"[*?\[\]{}!]")


def workspace_mounts(ws: Path, scope: tuple[str, ...], hidden: Sequence[Path] = ()) -> list[str]:
    """The workspace read-write; with a ``scope`` (a child run's write globs), read-only
    but for the directories the globs are rooted in. A glob rooted at the top (``*.md``,
    ``**``) leaves the whole workspace writable: the gate still asks for a write
    outside the scope, but the sandbox cannot tell those files apart.

    A path hidden inside the workspace (``hidden``, real paths; a store kept in
    ``var/trestle/``) is hidden by a mount on it, so it cannot be renamed, but the
    directories on the way to it could: renamed by one command, the store would lie
    where the next command's mounts no longer hide it. Each writable one is bound on
    itself here, a mount point that no command can rename either."""
    dirs = writable_dirs(ws, scope)
    writable = [ws] if dirs is None else dirs
    args = ["--bind", str(ws), str(ws)] if dirs is None else ["--ro-bind", str(ws), str(ws)]
    for path in dirs or ():
        args += ["--bind", str(path), str(path)]
    pinned: set[Path] = set()
    for path in hidden:
        for way in reversed(path.parents):  # outermost first
            inside = any(way.parts[: len(w.parts)] == w.parts != way.parts for w in writable)
            if inside and way not in pinned and way.is_dir() and not way.is_symlink():
                pinned.add(way)
                args += ["--bind", str(way), str(way)]
    return args


def writable_dirs(ws: Path, scope: tuple[str, ...]) -> list[Path] | None:
    """The real directories ``scope`` may write, outermost first, created when missing;
    None when the whole workspace must stay writable. A directory that leads outside
    the workspace (a link a step planted) or into ``.git`` or ``.trestle`` is left
    read-only."""
    if not scope:
        return None
    found: list[Path] = []
    for glob in scope:
        root = _literal_root(glob)
        if root is None:
            return None
        target = ws / root
        if _WILDCARD.search(glob) is None and not target.is_dir():
            target = target.parent  # a file the scope names: its directory
        real = _made_real(target, ws)
        if real is not None:
            found.append(real)
    kept: list[Path] = []
    for path in sorted(set(found), key=lambda p: len(p.parts)):
        if not any(path == k or k in path.parents for k in kept):
            kept.append(path)
    return kept


def _literal_root(glob: str) -> str | None:
    """The path a glob's matches all lie under (``src/pkg`` for ``src/pkg/**/*.py``),
    the glob itself when it has no wildcard, or None when it is rooted at the top."""
    parts = [p for p in glob.strip("/").split("/") if p not in ("", ".")]
    literal: list[str] = []
    for part in parts:
        if _WILDCARD.search(part):
            break
        literal.append(part)
    return "/".join(literal) or None


def _made_real(target: Path, ws: Path) -> Path | None:
    """``target``'s real path if it stays inside the workspace and out of its
    protected directories, created when missing; else None."""
    try:
        if not target.exists():
            target.mkdir(parents=True, exist_ok=True)
        real = target.resolve(strict=True)
    except OSError:
        return None
    if real == ws:
        return real  # a file at the top: the whole workspace, as the gate alone holds it
    if ws not in real.parents:
        return None
    top = real.relative_to(ws).parts[0].lower()
    if top in (".git", ".trestle"):
        return None
    return real


def git_mounts(ws: Path, *, approved: bool) -> list[str]:
    """``.git`` read-only (see the module docstring); where it is a file (``gitdir:``,
    a worktree or submodule checkout) or a link, that and the directory it leads to
    when that lies in the workspace."""
    dot_git = ws / ".git"
    try:
        info = os.lstat(dot_git)
    except OSError:
        return []  # none yet: see docs/security.md for a .git a command creates
    if stat.S_ISDIR(info.st_mode):
        if not approved:
            return ["--ro-bind", str(dot_git), str(dot_git)]
        writable = ["--bind", str(dot_git), str(dot_git)]
        for name in GIT_EXECUTABLE:
            path = dot_git / name
            if os.path.lexists(path) and not path.is_symlink():
                writable += ["--ro-bind", str(path), str(path)]
        return writable
    args: list[str] = []
    if stat.S_ISREG(info.st_mode):
        args += ["--ro-bind", str(dot_git), str(dot_git)]
    target = _linked_git_dir(dot_git, ws)
    if target is not None:
        args += ["--ro-bind", str(target), str(target)]
    return args


def _linked_git_dir(dot_git: Path, ws: Path) -> Path | None:
    """The repository directory a ``.git`` file or link leads to, if in the workspace."""
    try:
        if dot_git.is_symlink():
            target = dot_git.resolve(strict=True)
        else:
            # not blocking: a command may have made .git a FIFO, whose reading would
            # wait for a writer, freezing the driver's event loop at the next command
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
            with os.fdopen(os.open(dot_git, flags), "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    return None
                text = handle.read(4096).decode("utf-8", errors="replace")
            named = text.partition("gitdir:")[2].strip()
            if not named:
                return None
            target = (ws / named).resolve(strict=True)
    except OSError:
        return None
    if target.is_dir() and ws in target.parents:
        return target
    return None


def host_sockets(ws: Path) -> Iterator[Path]:
    """The paths of the UNIX sockets bound on this host (as far as this network
    namespace's ``/proc/net/unix`` lists them) that exist now.

    ``/proc/net/unix`` names the path a socket was bound at. A command may rename the
    workspace directory holding a daemon's socket (the socket is covered, not the
    directory): the socket then lies where nothing lists it, open to the next command.
    So when a listed socket in the workspace is no longer at its path, every socket
    found in the workspace is given too."""
    try:
        with open("/proc/net/unix", encoding="utf-8", errors="replace") as table:
            lines = table.read().splitlines()[1:]
    except OSError:
        return
    seen: set[str] = set()
    moved = False
    for line in lines:
        fields = line.split(maxsplit=7)
        if len(fields) < 8 or not fields[7].startswith("/") or fields[7] in seen:
            continue
        seen.add(fields[7])
        path = Path(fields[7])
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                yield path
        except OSError:
            moved = moved or path.parts[: len(ws.parts)] == ws.parts
    if moved:
        yield from (p for p in _sockets_under(ws) if str(p) not in seen)


def _sockets_under(top: Path) -> Iterator[Path]:
    """The sockets under ``top``, its links not followed."""
    for where, _, files in os.walk(top):
        for name in files:
            path = Path(where, name)
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    yield path
            except OSError:
                continue
