"""The workspace side of checkpoints: which files a snapshot holds, and clearing on restore.

The walk is ours rather than git's because git stops at a nested repository and records
it as a gitlink (a bare commit id), which could not be restored. Here a nested
repository is just a directory: its files are walked, its ``.git`` is skipped like
every ``.git``.

``.gitignore`` files are still judged by git itself (``git check-ignore``), one batch
per directory level and only below a directory that holds a ``.gitignore``, so an
ignored directory is never descended into. git opens and reads each of them whole, so
one it would block on (a FIFO) or that would take its memory (a sparse 6 GiB file) is
refused before git is asked (:class:`UnsafeRulesFileError`).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from pathlib import Path

from trestle.core.errors import ConfigError
from trestle.core.globs import glob_regex
from trestle.support.walk import walk
from trestle.workspace.beneath import is_real_dir
from trestle.workspace.left_out import human_size

ALWAYS_SKIPPED = ".trestle"  # Trestle's own store and state, at any depth
# Characters git refuses in ref names (see git-check-ref-format).
BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
# The most a .gitignore git is given may hold: git reads one whole into memory, and a
# real one is a few KiB (a step's 6 GiB sparse one made git allocate 6 GiB and crash).
RULES_MAX_SIZE = 1 << 20
_NAME_MAX = 255  # bytes in one name, on every file system Linux and macOS use
_SPECIAL_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


class UnsafeRulesFileError(Exception):
    """A ``.gitignore`` that git must not be given: it would block opening it, or read
    more than :data:`RULES_MAX_SIZE` of it.

    Attributes:
        path: the workspace-relative path.
        why: what it is, and what git would do with it.
    """

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"{path!r} {why}")
        self.path = path
        self.why = why


def rules_file_problem(st: os.stat_result) -> str:
    """Why git must not open a rules file (``.gitignore``) of ``lstat`` ``st``, or "".

    git opens an in-tree rules file without following a symlink and fails to read a
    directory, so both are harmless; it opens anything else blocking (a FIFO waits
    for a writer forever) and reads a regular file whole.
    """
    kind = stat.S_IFMT(st.st_mode)
    if kind in _SPECIAL_KINDS:
        return f"is {_SPECIAL_KINDS[kind]}, which git would wait on forever when it reads the rules"
    if kind == stat.S_IFREG and st.st_size > RULES_MAX_SIZE:
        size, bound = human_size(st.st_size), human_size(RULES_MAX_SIZE)
        return f"is {size}, over {bound}, which git would read whole to know its rules"
    return ""


def is_rules_file(rel: str) -> bool:
    """Whether the workspace-relative ``rel`` is a ``.gitignore`` file, whose rules a
    snapshot honours: never itself ignored by them, and put back first by a restore."""
    return rel.rsplit("/", 1)[-1] == ".gitignore"


class IgnoreGlobs:
    """Gitignore-style globs given by the caller.

    A glob without ``/`` matches a file or directory name at any depth; one with a
    ``/`` matches the whole workspace-relative path (a leading ``/`` is allowed). A
    trailing ``/`` matches directories only. ``*`` and ``?`` stay within one path
    component, ``**`` crosses them, ``[...]`` is a character class. A matched
    directory excludes everything under it.

    Raises:
        ConfigError: a glob is empty or negated (``!``), which is not supported.
    """

    def __init__(self, globs: Iterable[str]) -> None:
        self.globs = tuple(globs)
        self._compiled: list[tuple[re.Pattern[str], bool, bool]] = []
        for glob in self.globs:
            text = glob.strip()
            if not text or text == "/":
                raise ConfigError(f"ignore glob {glob!r} is empty")
            if text.startswith("!"):
                raise ConfigError(f"ignore glob {glob!r}: negation is not supported")
            dir_only = text.endswith("/")
            text = text.rstrip("/")
            anchored = "/" in text
            self._compiled.append((re.compile(glob_regex(text.lstrip("/"))), anchored, dir_only))

    def matches(self, rel: str, name: str, is_dir: bool) -> bool:
        """Whether the entry at ``rel`` (named ``name``) is excluded by itself."""
        for regex, anchored, dir_only in self._compiled:
            if dir_only and not is_dir:
                continue
            if regex.fullmatch(rel if anchored else name):
                return True
        return False

    def matches_path(self, rel: str) -> bool:
        """Whether ``rel`` or one of its leading directories is excluded."""
        parts = rel.split("/")
        for depth in range(1, len(parts) + 1):
            leading = "/".join(parts[:depth])
            if self.matches(leading, parts[depth - 1], is_dir=depth < len(parts)):
                return True
        return False


def walk_workspace(
    root: Path,
    globs: IgnoreGlobs,
    *,
    extra_excluded: str = "",
    check_ignore: Callable[[Sequence[str]], set[str]] | None = None,
    gitignores: list[str] | None = None,
    max_size: int | None = None,
    too_large: dict[str, int] | None = None,
    stats: dict[str, os.stat_result] | None = None,
) -> list[str]:
    """Every regular file and symlink under ``root`` that a snapshot should hold.

    Skipped: anything named ``.git`` (any case, any depth), directories and files named
    ``.trestle``, ``extra_excluded`` (a relative path), what ``globs`` match, what
    ``check_ignore`` reports (given paths below a directory holding a ``.gitignore``),
    and special files (FIFOs, sockets, devices). Symlinks are never followed. The
    ``.gitignore`` files walked past are added to ``gitignores``, if given. A regular
    file whose size (its ``lstat``'s, so a sparse file's apparent size: what git would
    read) passes ``max_size`` is left out too, and added to ``too_large`` with its size.
    ``stats``, if given, gets each file's ``lstat`` (a file gone meanwhile is left out).
    A directory is read only if it is still the one its parent's listing showed
    (:func:`_listing`).

    Returns:
        ``/``-separated paths relative to ``root``.

    Raises:
        OSError: a directory cannot be listed (one gone since its parent was listed is
            left out), or holds a path too long to name (``ENAMETOOLONG``).
        UnsafeRulesFileError: with ``check_ignore``, a ``.gitignore`` git would block
            on or read too much of (before git is asked about its directory).
    """
    files: list[str] = []
    # (directory with trailing /, .gitignore seen, its device and inode when listed)
    level: list[tuple[str, bool, tuple[int, int] | None]] = [("", False, None)]
    top = os.fspath(root)
    judge = globs.matches if globs.globs else None  # most workspaces give none
    while level:
        candidates: list[tuple[str, os.stat_result, bool, bool]] = []
        for rel_dir, gitignore_above, identity in level:
            entries = _listing(top, rel_dir, identity)
            if entries is None:
                continue
            rules = [(name, st) for name, st in entries if name == ".gitignore"]
            here = [name for name, _ in rules]
            if check_ignore is not None:  # git will read them: refuse one it cannot
                _refuse_unsafe_rules(rel_dir, rules)
            gitignore_here = gitignore_above or bool(here)
            if gitignores is not None:
                gitignores.extend(rel_dir + name for name in here)
            for name, st in entries:
                if name == ALWAYS_SKIPPED or (len(name) == 4 and name.lower() == ".git"):
                    continue
                rel = rel_dir + name
                if rel == extra_excluded:
                    continue
                kind = stat.S_IFMT(st.st_mode)
                if kind == stat.S_IFREG or kind == stat.S_IFLNK:  # the most
                    is_dir = False
                elif kind == stat.S_IFDIR:
                    is_dir = True
                else:  # a FIFO, socket or device
                    continue
                if judge is not None and judge(rel, name, is_dir):
                    continue
                candidates.append((rel, st, is_dir, gitignore_here))
        ignored: set[str] = set()
        if check_ignore is not None:
            asked = [rel for rel, _, _, gitignore in candidates if gitignore]
            if asked:
                ignored = check_ignore(asked)
        level = []
        for rel, st, is_dir, gitignore in candidates:
            if rel in ignored:
                continue
            if is_dir:
                level.append((rel + "/", gitignore, (st.st_dev, st.st_ino)))
                continue
            if max_size is not None and st.st_size > max_size and not stat.S_ISLNK(st.st_mode):
                if too_large is not None:
                    too_large[rel] = st.st_size
                continue
            if stats is not None:
                stats[rel] = st
            files.append(rel)
    return files


def _refuse_unsafe_rules(rel_dir: str, rules: list[tuple[str, os.stat_result]]) -> None:
    """Raise :class:`UnsafeRulesFileError` if a directory's ``.gitignore`` (in ``rules``,
    with its ``lstat``) is one git must not read."""
    for name, st in rules:
        problem = rules_file_problem(st)
        if problem:
            raise UnsafeRulesFileError(rel_dir + name, problem)


def _listing(
    top: str, rel_dir: str, identity: tuple[int, int] | None
) -> list[tuple[str, os.stat_result]] | None:
    """The entries of directory ``rel_dir`` of the workspace at ``top``, each with its
    ``lstat``; None if it is gone, or is not the directory its parent's listing showed.

    A running step (one side by side, or one left running without a sandbox) can swap a
    directory for a symlink between its parent's listing and its own: listed by its
    path, the walk would go on through the symlink, anywhere (``/``, the driver's home),
    ``lstat`` what it found there and name in a snapshot what is too large. So each
    directory is opened (its last component not followed) and must be the very
    directory (device and inode) its parent's listing showed; its entries are read
    from that descriptor.

    A directory holding a name whose whole path is longer than the system allows
    (``PATH_MAX``) is refused with ``ENAMETOOLONG``, as the directory itself is by its
    open: a restore names each path it deletes or writes back whole, and could not put
    such a file back, nor remove it.
    """
    path = top + "/" + rel_dir if rel_dir else top
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (os.O_NOFOLLOW if rel_dir else 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        # gone since its parent was listed (a step side by side removed it, or made it
        # a file or a symlink): nothing of it to hold, as for a file gone meanwhile
        if rel_dir and exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return None
        raise
    try:
        if identity is not None:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != identity:  # reached through a swapped directory
                return None
        names = os.listdir(fd)
        if _too_long(path, names, fd):
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), path)
        entries = []
        for name in names:
            try:
                entries.append((name, os.stat(name, dir_fd=fd, follow_symlinks=False)))
            except FileNotFoundError:  # gone since it was listed
                continue
        return entries
    finally:
        os.close(fd)


def _too_long(path: str, names: list[str], fd: int) -> bool:
    """Whether the path of one of ``names`` in directory ``path`` (open as ``fd``) is
    longer than the system allows a path to be."""
    room = os.fpathconf(fd, "PC_PATH_MAX") - len(os.fsencode(path)) - 1  # after its "/"
    if room > _NAME_MAX:  # any name fits: not worth measuring each (the usual case)
        return False
    return any(len(os.fsencode(name)) >= room for name in names)


def find_conflicts(root: Path, to_write: Sequence[str], to_delete: set[str]) -> list[str]:
    """What blocks writing ``to_write`` once ``to_delete`` is gone: ignored files in the way.

    A path is blocked when one of its leading directories is a file or symlink that is
    not going to be deleted, or when it is a directory holding files that are not.
    """
    blocked: list[str] = []
    for path in to_write:
        for leading in _leading_dirs(path):
            full = root / leading
            if os.path.lexists(full) and not is_real_dir(full) and leading not in to_delete:
                blocked.append(f"{path!r} (its directory {leading!r} is a file)")
        full = root / path
        if is_real_dir(full):
            kept = [rel for rel in _files_under(full, path) if rel not in to_delete]
            if kept:
                blocked.append(f"{path!r} (a directory holding ignored {kept[0]!r})")
    return blocked


def leading_link(root: Path, path: str) -> str | None:
    """The first directory on the way to ``path`` (relative to ``root``) that is a
    symlink there now, or None."""
    return next((d for d in _leading_dirs(path) if (root / d).is_symlink()), None)


def _leading_dirs(path: str) -> Iterator[str]:
    """The directories on the way to ``path``, outermost first (``a``, ``a/b`` for
    ``a/b/c``)."""
    parts = path.split("/")
    for depth in range(1, len(parts)):
        yield "/".join(parts[:depth])


def delete_files(root: Path, paths: Iterable[str]) -> None:
    """Unlink files and symlinks under ``root``, never through a symlinked directory."""
    real_root = os.path.realpath(root)
    for path in paths:
        full = root / path
        expected_parent = os.path.join(real_root, os.path.dirname(path)).rstrip("/")
        if os.path.realpath(full.parent) != expected_parent:
            continue  # a leading directory became a symlink: it may lead out of root
        with suppress(FileNotFoundError):
            os.unlink(full)


def remove_emptied_dirs(root: Path, deleted: Sequence[str], keep: Iterable[str]) -> list[str]:
    """Remove the directories that deleting ``deleted`` left empty, bottom up.

    Directories leading to a path in ``keep`` (about to be written) stay.

    Returns:
        The removed directories, sorted.
    """
    needed = {""}
    for path in keep:
        parts = path.split("/")
        needed.update("/".join(parts[:depth]) for depth in range(1, len(parts)))
    removed: set[str] = set()
    parents = {os.path.dirname(p) for p in deleted}
    for parent in sorted(parents, key=lambda d: d.count("/"), reverse=True):
        current = parent
        while current not in needed and current not in removed:
            try:
                os.rmdir(root / current)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    break
                raise
            removed.add(current)
            current = os.path.dirname(current)
    return sorted(removed)


def snapshot_name_problem(name: str) -> str:
    """Why ``name`` cannot name a snapshot (git's ref name rules), or "" if it can."""
    if not name:
        return "it is empty"
    if BAD_REF_CHARS.search(name):
        return "it contains a space, a control character or one of ~ ^ : ? * [ \\"
    if ".." in name or "@{" in name or name == "@":
        return "it contains '..' or '@{' or is '@'"
    if name.endswith(".") or name.startswith("-"):
        return "it ends with '.' or starts with '-'"
    for part in name.split("/"):
        if not part:
            return "it has an empty path component (a leading, trailing or double '/')"
        if part.startswith(".") or part.endswith(".lock"):
            return f"component {part!r} starts with '.' or ends with '.lock'"
    return ""


def _files_under(directory: Path, rel: str) -> Iterator[str]:
    """Files and symlinks under ``directory``, as paths starting with ``rel``: walked
    without recursion (:mod:`trestle.support.walk`), as a step's tree 1,500 deep raised
    ``RecursionError`` in ``os.walk``."""
    top = os.fspath(directory)
    for folder, _, files in walk(top):
        inner = folder[len(top) + 1 :]
        base = f"{rel}/{inner}" if inner else rel
        for name in files:
            yield f"{base}/{name}"
