"""What the sandbox mounts over the workspace and the host, besides hiding Trestle's
own files (see :mod:`trestle.execution.sandbox`):

- **the workspace**, writable whole, or, for a child run with a carved scope, read-only
  but for the directories its scope names;
- **the repository's ``.git``**, read-only: whatever a command writes there (hooks,
  ``core.fsmonitor``, a filter, a ``commondir``) would run outside the sandbox at the
  operator's next ``git status``. A command a human approved may write it (``git
  commit``), but never its configuration, hooks, submodules, worktrees or ``info``;
  being a mount point, ``.git`` cannot be renamed or replaced either (nor can a
  submodule checkout's: :mod:`trestle.execution.submodule_checkouts`);
- **the host's UNIX sockets**, each one a command could reach covered: a socket is
  reached by its path, not through the network namespace, so a daemon's socket
  (Docker's, a database's) would otherwise be open to every command.

Each returns bubblewrap arguments; paths are the workspace's real ones.
"""

from __future__ import annotations

import functools
import os
import re
import stat
from collections.abc import Container, Iterable, Iterator, Sequence
from pathlib import Path

# judged where the driver finds its own programs too; taken from here by the sandbox's
# modules
from trestle.support.walk import walk
from trestle.support.whole_files import start_of
from trestle.workspace.beneath import is_real_dir
from trestle.workspace.reach import reached_through as reached_through

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
    None when the whole workspace must stay writable. A directory reached through a
    link (a step planted it), or in ``.git`` or ``.trestle``, is left read-only."""
    if not scope:
        return None
    found: list[Path] = []
    for glob in scope:
        root = _literal_root(glob)
        if root is None:
            return None
        target = ws / root
        if _WILDCARD.search(glob) is None and not is_real_dir(target):
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
    """``target`` (the workspace, or a path under it) if every directory on the way to it
    from the workspace is a real one (made where missing), and it is none of the
    protected directories; else None.

    A link on the way is never followed: a child run whose scope is ``notes/x.md``
    planted ``notes/x.md -> ../src`` (or ``notes -> ..``), and its next command had
    ``src`` (or the whole workspace) writable. What is bound is opened again beneath
    the workspace, no link followed, when the command starts (``_bound_by_descriptor``
    in :mod:`trestle.execution.sandbox`): a link swapped in after this look is refused
    there."""
    parts = target.relative_to(ws).parts
    if not parts:
        return ws  # a file at the top: the whole workspace, as the gate alone holds it
    if parts[0].lower() in (".git", ".trestle") or ".." in parts:
        return None
    here = ws
    for part in parts:
        here = here / part
        try:
            info = os.lstat(here)
        except FileNotFoundError:
            try:
                here.mkdir()
            except OSError:
                return None
            continue
        except OSError:
            return None
        if not stat.S_ISDIR(info.st_mode):  # a link, or a file
            return None
    return here


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


def small_file(path: Path, most: int = 65536) -> str:
    """The start of a regular file, or "": not blocking, nor through a link, since a
    ``.git`` a command made where there was none is the command's (a FIFO named
    ``config`` would hold every command's start)."""
    return start_of(path, most).decode("utf-8", errors="replace")


def _linked_git_dir(dot_git: Path, ws: Path) -> Path | None:
    """The repository directory a ``.git`` file or link leads to, if in the workspace."""
    try:
        if dot_git.is_symlink():
            target = dot_git.resolve(strict=True)
        else:
            # not blocking: a command may have made .git a FIFO, whose reading would
            # wait for a writer, freezing the driver's event loop at the next command
            named = small_file(dot_git, 4096).partition("gitdir:")[2].strip()
            if not named:
                return None
            target = (ws / named).resolve(strict=True)
    except OSError:
        return None
    if target.is_dir() and ws in target.parents:
        return target
    return None


def host_sockets(
    ws: Path,
    hidden: tuple[Path, ...] = (),
    shown: tuple[Path, ...] = (),
    resolved: Iterable[tuple[str, str]] = (),
    known: dict[str, tuple[int, int]] | None = None,
) -> Iterator[str]:
    """The paths of the UNIX sockets bound on this host (as far as this network
    namespace's ``/proc/net/unix`` lists them) that exist now and that a command could
    reach: all but those in a ``hidden`` directory (one nothing of the host is seen in:
    the private ``/tmp``, the hidden home) and outside what is ``shown`` again there
    (the workspace ``ws``, the tools' directories, ``sandbox.read``).

    A directory's sockets are judged by its name, without a look at each file: with
    2,000 sockets on the host, looking at each cost 12 ms a command. One listed in a
    hidden directory is skipped only once that directory is known to be where its
    name says: a link on the way (a host's ``~/.cache`` leading into the workspace,
    a ``..``) may lead to a reachable place, where it is covered by its real path.
    A shown path bubblewrap binds from elsewhere (``sandbox.read`` naming a link)
    shows what lies there under its own name too, where it is covered as well.
    ``resolved`` pairs shown paths with their real paths, for those no command can
    point elsewhere (not reached through the workspace); the others are resolved for
    each command.

    ``/proc/net/unix`` names the path a socket was bound at. A command may rename the
    workspace directory holding a daemon's socket (the socket is covered, not the
    directory): the socket then lies where nothing lists it, open to the next command.
    So when a listed socket in the workspace is no longer at its path, or another file
    is there than ``known`` (kept from one command to the next: the device and inode
    first found at each such path) says, every socket found in the workspace is given
    too."""
    try:
        with open("/proc/net/unix", encoding="utf-8", errors="replace") as table:
            listed = dict.fromkeys(_LISTED.findall(table.read()))
    except OSError:
        return
    if not listed:
        return
    reach = _Reach(ws, hidden, shown, resolved)
    covered: list[str] = []
    real_dirs: dict[str, str] = {}
    moved = False
    for socket in listed:
        directory, _, name = socket.rpartition("/")
        places = reach.places.get(directory)
        if places is None:
            places = reach.places[directory] = reach.placed(directory)
        for place, in_ws in places:
            path = socket if place == directory else os.path.join(place, name)
            try:
                info = os.lstat(path)
            except OSError:
                moved = moved or in_ws
                continue
            if stat.S_ISSOCK(info.st_mode):
                # the listed name's own directory may be reached through a link: covered
                # where it really is (which covers the name too), as bubblewrap follows a
                # link on the way to a mount's point from the host's root, not the
                # sandbox's, and fails to make one behind an absolute link
                covered.append(_real_dir(path, real_dirs) if place == directory else path)
            if known is not None and in_ws:
                # not the file first found there: a command moved the daemon's socket
                # away and left another (a socket of its own, a plain file) in its place
                first = known.setdefault(path, (info.st_dev, info.st_ino))
                moved = moved or first != (info.st_dev, info.st_ino)
    covered += reach.shown_sockets(listed)
    if moved:
        covered += (p for p in map(str, _sockets_under(ws)) if p not in listed)
    yield from dict.fromkeys(covered)


def _real_dir(path: str, known: dict[str, str]) -> str:
    """``path`` with its directory's links resolved (each directory resolved once)."""
    directory, _, name = path.rpartition("/")
    real = known.get(directory)
    if real is None:
        real = known[directory] = os.path.realpath(directory or "/")
    return path if real == directory else os.path.join(real, name)


# a line of /proc/net/unix naming a path (an abstract name starts with @): its fields
# before the path are numbers, so the path begins at the line's first /
_LISTED = re.compile(r"^[^/@\n]* (/.*)$", re.MULTILINE)


class _Reach:
    """Where a command could reach the sockets of each directory, for one command's
    mounts: worked out again for each, as a step changes links in its workspace
    between two. Judged once per directory, as a host's sockets gather in a few."""

    def __init__(
        self,
        ws: Path,
        hidden: tuple[Path, ...],
        shown: tuple[Path, ...],
        resolved: Iterable[tuple[str, str]],
    ) -> None:
        self._ws = ws
        # a directory: where what it holds is reached, each place in the workspace or not
        self.places: dict[str, tuple[tuple[str, bool], ...]] = {}
        self.ws, self._hidden, self._written, self._shown = _prefixes(ws, hidden, shown)
        self._resolved = {**dict(resolved), str(ws): str(ws)}
        self._links: list[tuple[str, str]] | None = None

    @property
    def _aliases(self) -> list[tuple[str, str]]:
        """(real, shown) of each shown path bubblewrap binds from elsewhere (a link:
        sandbox.read's ``~/data`` leading to ``~/realdata``): what lies there is
        reached by the shown name too. Resolved once needed, once per command."""
        if self._links is None:
            pairs = ((self._resolved.get(p) or os.path.realpath(p), p) for p in self._written)
            self._links = [(_prefix(r), _prefix(p)) for r, p in pairs if r != p]
        return self._links

    def placed(self, directory: str) -> tuple[tuple[str, bool], ...]:
        """The directories a command reaches what ``directory`` holds by: itself, unless
        hidden; where a link on the way leads, if that is not hidden; and the shown
        names of what it really is. Each with whether it lies in the workspace."""
        hidden = self._hidden_by_name(directory)
        real = directory
        if hidden or self._aliases:
            path = directory or "/"
            real = _settled(path, self._ws) or os.path.realpath(path)
        places: list[str] = []
        if not hidden:
            places.append(directory)
        elif real != directory and not self._hidden_by_name(real):
            places.append(real)
        for real_prefix, name in self._aliases:
            inside = _prefix(real)
            if inside.startswith(real_prefix):
                places.append((name + inside[len(real_prefix) :]).rstrip("/"))
        return tuple((p, _prefix(p).startswith(self.ws)) for p in dict.fromkeys(places))

    def shown_sockets(self, listed: Container[str]) -> list[str]:
        """The shown paths that are themselves listed sockets (``sandbox.read`` naming
        one, or a link to one): bound into view, so covered."""
        found = [p for p in self._written if p in listed]
        found += [name[:-1] for real, name in self._aliases if real[:-1] in listed]
        return [p for p in found if os.path.lexists(p)]

    def _hidden_by_name(self, path: str) -> bool:
        text = _prefix(path)
        return text.startswith(self._hidden) and not text.startswith(self._shown)


@functools.lru_cache(maxsize=1024)
def _settled(directory: str, ws: Path) -> str | None:
    """``directory``'s real path when no command can point it elsewhere (resolving it
    visits nothing in the workspace ``ws``: the rest of the host is read-only or
    private to each command), so worked out once; None when it is resolved each time."""
    if reached_through(Path(directory), ws):
        return None
    return os.path.realpath(directory)


@functools.lru_cache(maxsize=64)
def _prefixes(
    ws: Path, hidden: tuple[Path, ...], shown: tuple[Path, ...]
) -> tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The workspace's, the hidden and the shown paths' prefixes (and the shown ones as
    written): the same for every command of a layout, so worked out once."""
    written = tuple(p.rstrip("/") or "/" for p in (str(ws), *map(str, shown)))
    hidden_prefixes = tuple(_prefix(str(h)) for h in hidden)
    return _prefix(str(ws)), hidden_prefixes, written, tuple(_prefix(p) for p in written)


def _prefix(path: str) -> str:
    """``path`` ending in one ``/``: ``/tmp/`` starts ``/tmp/x/`` but not ``/tmpx/``."""
    return path.rstrip("/") + "/"


def _sockets_under(top: Path) -> Iterator[Path]:
    """The sockets under ``top``, its links not followed."""
    for where, _, files in walk(top):
        for name in files:
            path = Path(where, name)
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    yield path
            except OSError:
                continue
