"""Workspace checkpoints: snapshots of a whole directory in a git object store of our own.

A :class:`ShadowRepo` records every file under a workspace (tracked or not by the user's
own git, whoever wrote it) as a commit in a separate, bare git directory, names it with
a ref under ``refs/trestle/``, and can put the workspace back exactly as it was.

Isolation is the point: every git command runs with an explicit ``GIT_DIR``,
``GIT_WORK_TREE`` and ``GIT_INDEX_FILE`` in the shadow directory, no system or global
config, no inherited ``GIT_*`` variables, a fixed identity, hooks off and content
filters off. Nothing is ever read from or written to the user's ``.git``.

The work tree is a step's to write, and the store itself may be where a step can
reach it (beside a store file kept in the workspace, or with no sandbox), so git runs
here as :mod:`trestle.workspace.git` runs it: the store's configuration must hold only
inert settings (Trestle writes no other) and executable settings are switched off on
the command line; the workspace's ``.gitattributes`` are outranked by the store's own
``info/attributes``, so no filter or conversion applies. Nor does git read them where
a step's could block it (a FIFO) or hide a change (``* -diff``): diffs run with no work
tree, and a restore writes files back with an empty work tree of its own
(:meth:`ShadowRepo._write_back`).

A file larger than the store's bound (``max_file_size``, 64 MiB unless told) is not
stored: its size is read with ``lstat`` before git would read it, so a step's 20 GiB
sparse file or multi-gigabyte log neither stalls the driver nor fills the store's disk.
The snapshot's message names such files (:class:`LeftOut`), and a restore that would
need one refuses (:class:`LeftOutError`) rather than put back a tree without it.

The store's index of each workspace doubles as a stat cache: a file whose size, times
and inode have not changed is not read again. In a store laid out as Trestle lays it
out, the files are staged, and the index, blobs and trees written, without a git
process (:mod:`trestle.workspace.staging`); in any other, by ``git update-index`` and
``git write-tree``. The workspace walk is ours (see
:mod:`trestle.workspace.shadow_files`), so a nested git repository is recorded as plain
files rather than as a gitlink.

Errors::

    RunError
    └── ShadowRepoError          git is missing, or a git command failed
        ├── RestoreConflictError restore would have to destroy ignored files
        └── LeftOutError         restore would need a file too large to be stored
    ConfigError
    └── UnknownSnapshotError     no snapshot by that name or id
"""

from __future__ import annotations

import builtins
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from datetime import UTC, datetime
from pathlib import Path

from trestle.core.errors import ConfigError, RunError
from trestle.store.base import Store
from trestle.store.sqlite_file import GITIGNORE, STORE_DIRECTORY
from trestle.support.combining import Combiners
from trestle.support.kept import keep
from trestle.support.walk import walk
from trestle.workspace import loose, staging
from trestle.workspace.git import UnsafeRepositoryError, check_git_dir, command, environment
from trestle.workspace.left_out import (
    DEFAULT_MAX_FILE_SIZE,
    LeftOut,
    left_out_lines,
    split_left_out,
)
from trestle.workspace.shadow_changes import (
    Change,
    RawChange,
    pairs_changes,
    raw_change,
    to_change,
)
from trestle.workspace.shadow_files import (
    IgnoreGlobs,
    UnsafeRulesFileError,
    delete_files,
    find_conflicts,
    is_rules_file,
    leading_link,
    remove_emptied_dirs,
    snapshot_name_problem,
    walk_workspace,
)

REF_ROOT = "refs/trestle/"
IDENTITY = ("Trestle", "trestle@localhost")
# Settings passed with ``-c`` on every call (after workspace_git's, which switch off
# hooks, fsmonitor, transports and helpers), so they hold whatever the shadow config says.
GIT_SETTINGS = (
    "core.autocrlf=false",
    "core.safecrlf=false",
    "core.symlinks=true",
    "core.fileMode=true",
    "core.ignoreCase=false",
    "core.precomposeUnicode=false",
    "core.quotePath=false",
    "core.untrackedCache=false",
    "core.splitIndex=false",
    "core.sparseCheckout=false",
    "core.excludesFile=/dev/null",
    "core.attributesFile=/dev/null",
    "init.defaultBranch=trestle",
)
# Highest-precedence attributes: bytes go in and come out unchanged, whatever the
# workspace's .gitattributes say (no end-of-line conversion, no clean/smudge filters),
# and a diff is shown as git would show it with none (`!diff` undoes a `-diff` or
# `binary` that made a text change "Binary files ... differ"). The diffs run with no
# work tree anyway, so git reads no .gitattributes of the workspace for them.
ATTRIBUTES = "* -text -eol -filter -ident -working-tree-encoding !diff\n"
PATHSPEC_PREFIX = ":/:"
# seconds git may take to judge paths by the workspace's .gitignore files: each is
# checked to be a plain file before, but a step running beside the snapshot can swap
# one for a FIFO between that look and git's open, which would block git for ever
RULES_TIMEOUT = 120.0
SHADOW_ADVICE = (
    "Trestle writes no such thing in its checkpoint store, so something else did: no "
    "checkpoint is read or taken from it until it is looked at and put right (or moved "
    "aside, which loses its checkpoints)"
)
# An ordered snapshot's place among the store's snapshots, the last line of its message.
ORDER_LINE = re.compile(r"(?:\A|\n\n)trestle-order: (\d+)\n?\Z")
# the last order given, in a directory of its own in the store (read under its lock):
# writing it beside ``config`` would change the store directory's times each snapshot,
# which :meth:`ShadowRepo._refuse_unsafe` takes as a sign to read the configuration again
ORDER_FILE = "trestle-order/last"

KEPT_WORKSPACES = 64  # workspaces whose .gitignore answers one process keeps
Rules = tuple[tuple[object, ...], ...]  # .gitignore files: path, inode, size, mode, times


def shadow_dir_for(store: Store, workspace: Path | None = None) -> Path | None:
    """Where a store keeps a run's checkpoints: ``shadow.git`` beside a store file;
    for a store kept elsewhere (a PostgreSQL database, named by its ``where``), in
    ``.trestle/shadow.git`` in the run's ``workspace``, where the default store's
    file would be; for a store in memory, or without the workspace, nowhere."""
    path = getattr(store, "path", None)
    if isinstance(path, Path):
        return path.parent / "shadow.git"
    if workspace is not None and isinstance(getattr(store, "where", None), str):
        return workspace / STORE_DIRECTORY / "shadow.git"
    return None


class ShadowRepoError(RunError):
    """The shadow git store failed: git is missing, or one of its commands failed.

    Attributes:
        command: the git command line, when a command failed.
        stderr: what git said on its standard error.
    """

    def __init__(self, message: str, command: Sequence[str] = (), stderr: str = "") -> None:
        super().__init__(message)
        self.command = tuple(command)
        self.stderr = stderr


class RestoreConflictError(ShadowRepoError):
    """Restoring would overwrite or delete files that are ignored, so it was not started."""


class LeftOutError(ShadowRepoError):
    """A restore would need a file too large to be stored: one the snapshot left out
    (it cannot be written back), or one in the workspace now (it could be neither
    deleted safely nor kept in a checkpoint). Nothing was changed.

    Attributes:
        left_out: the files, with their sizes.
    """

    # the CLI's exit code for a rewind it cannot do as asked, as for one to a step with
    # no checkpoint: what failed is the request, and nothing was run or changed
    exit_code = 2

    def __init__(self, message: str, left_out: Sequence[LeftOut]) -> None:
        super().__init__(message)
        self.left_out = tuple(left_out)


class UnknownSnapshotError(ConfigError):
    """No snapshot has that name, and it is not the id of a commit in the shadow store."""


@dataclass(frozen=True)
class SnapshotRef:
    """One named snapshot.

    Attributes:
        name: the name given to :meth:`ShadowRepo.snapshot` (the ref without
            ``refs/trestle/``).
        commit: the commit id.
        tree: the id of the recorded tree; equal trees mean equal workspaces.
        time: when it was taken (UTC, whole seconds).
        message: the message given to :meth:`ShadowRepo.snapshot`.
        order: for a snapshot taken with ``ordered``, its place among the store's
            snapshots: a later one has a greater order, however close in time; else None.
        left_out: the files it did not store for their size.
    """

    name: str
    commit: str
    tree: str
    time: datetime
    message: str
    order: int | None = None
    left_out: tuple[LeftOut, ...] = ()


@dataclass(frozen=True)
class RestoreResult:
    """What :meth:`ShadowRepo.restore` did to the workspace.

    Attributes:
        deleted: files created after the snapshot, now deleted.
        restored: files changed since (content, executable bit or type), put back.
        recreated: files deleted since, written again.
        skipped_ignored: files in the snapshot that are ignored now, left alone.
        removed_dirs: directories left empty by the deletions, removed.
    """

    deleted: tuple[str, ...] = ()
    restored: tuple[str, ...] = ()
    recreated: tuple[str, ...] = ()
    skipped_ignored: tuple[str, ...] = ()
    removed_dirs: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether any file was deleted, restored or recreated."""
        return bool(self.deleted or self.restored or self.recreated)

    def merged(self, later: RestoreResult) -> RestoreResult:
        """What this restore and a ``later`` one of the same snapshot did together."""
        pairs = zip(astuple(self), astuple(later), strict=True)
        return RestoreResult(*(tuple(sorted({*a, *b})) for a, b in pairs))


class ShadowRepo:
    """Snapshots of one workspace in a git object store that belongs to Trestle.

    Args:
        git_dir: the shadow store; created (bare) on first use. Several workspaces and
            runs may share one; snapshots are told apart by name.
        workspace: the directory to snapshot and restore. It need not be a git repository.
        ignore: extra gitignore-style globs to leave out (``*.log``, ``build/``,
            ``data/**/*.bin``); negation (``!``) is not supported.
        use_gitignore: honour the ``.gitignore`` files inside the workspace.
        git: the git executable.
        clock: seconds since the epoch, for snapshot times.
        max_file_size: a file larger than this many bytes is left out of snapshots
            (and named in them, :class:`LeftOut`); None: no bound.

    Every method is safe to call from several threads and processes at once: they
    serialise on a lock file in ``git_dir``.
    """

    def __init__(
        self,
        git_dir: Path,
        workspace: Path,
        *,
        ignore: Sequence[str] = (),
        use_gitignore: bool = True,
        git: str = "git",
        clock: Callable[[], float] = time.time,
        max_file_size: int | None = DEFAULT_MAX_FILE_SIZE,
    ) -> None:
        self.git_dir = Path(os.path.abspath(git_dir))
        self.workspace = Path(os.path.abspath(workspace))
        self.use_gitignore = use_gitignore
        self._git_exe = git
        self._clock = clock
        self.max_file_size = max_file_size
        self._globs = IgnoreGlobs(ignore)
        # what a snapshot's staging depends on: snapshots asked for at once by stores
        # alike in all of it are taken together (see trestle.support.combining)
        self._staging_key = (
            self.git_dir,
            self.workspace,
            tuple(ignore),
            use_gitignore,
            git,
            clock,
            max_file_size,
        )
        key = hashlib.sha256(os.fsencode(os.path.realpath(self.workspace))).hexdigest()[:24]
        self._index = self.git_dir / "trestle-index" / key
        self._own_dir = self._inside_workspace(self.git_dir)
        self._env = self._make_env()

    # -- public operations ----------------------------------------------------------

    def snapshot(self, name: str, message: str = "", *, ordered: bool = False) -> str:
        """Record the workspace as a commit and point ``refs/trestle/<name>`` at it.

        Taking the same name again with nothing changed returns the same commit and
        writes nothing; an existing name with a different tree is moved to the new one.

        Args:
            name: the snapshot's name, a valid git ref path such as ``run-1/build/before``.
            message: free text stored with it (shown by :meth:`list`).
            ordered: record the snapshot's place among the store's snapshots
                (:attr:`SnapshotRef.order`): whole-second times cannot order the
                snapshots of steps running side by side. The same name taken again
                then always makes a new commit, at its new place.

        Returns:
            The commit id.

        Raises:
            ConfigError: the name is not a valid ref name, or the message holds a NUL.
            ShadowRepoError: git failed.
        """
        problem = snapshot_name_problem(name)
        if problem:
            raise ConfigError(f"snapshot name {name!r}: {problem}")
        if "\0" in message:
            raise ConfigError(f"snapshot {name!r}: the message must not contain NUL")
        if ordered:  # steps side by side ask at once: those asked together, taken together
            return _TAKING[self._staging_key].call((name, message), self._snapshots)
        with self._locked():
            left_out, tree = self._staged(tree=True)
            existing = self._refs(name, exact=True)
            if (
                existing
                and existing[0].tree == tree
                and existing[0].message == message
                and existing[0].left_out == left_out
            ):
                return existing[0].commit
            return self._commit(tree, [(name, message)], left_out, ordered=False)[0]

    def _snapshots(self, asked: Sequence[tuple[str, str]]) -> builtins.list[str]:
        """Ordered snapshots of the workspace as it is now, one per (name, message) of
        ``asked``, in that order: it is staged and its tree written once for them all."""
        with self._locked():
            left_out, tree = self._staged(tree=True)
            return self._commit(tree, asked, left_out, ordered=True)

    def _commit(
        self,
        tree: str,
        asked: Sequence[tuple[str, str]],
        left_out: tuple[LeftOut, ...],
        *,
        ordered: bool,
    ) -> builtins.list[str]:
        """A commit of ``tree`` per (name, message) of ``asked``, each ref pointed at
        its own (under the lock)."""
        orders = self._next_orders(len(asked)) if ordered else [None] * len(asked)
        stamp = int(self._clock())
        messages = []
        for (_, message), order in zip(asked, orders, strict=True):
            if left_out:
                message = f"{message}\n\n{left_out_lines(left_out)}".lstrip("\n")
            if order is not None:
                message = f"{message}\n\ntrestle-order: {order}".lstrip("\n")
            messages.append(message)
        person = f"{IDENTITY[0]} <{IDENTITY[1]}> {stamp} +0000"
        head = f"tree {tree}\nauthor {person}\ncommitter {person}\n\n"
        refs = [REF_ROOT + name for name, _ in asked]
        if loose.plain(self.git_dir):  # written as git writes them, no process each
            commits = []
            for ref, message in zip(refs, messages, strict=True):
                try:
                    commits.append(
                        loose.write_object(self.git_dir, b"commit", (head + message).encode())
                    )
                    loose.write_ref(self.git_dir, ref, commits[-1])
                except OSError as exc:
                    name = ref.removeprefix(REF_ROOT)
                    raise ShadowRepoError(
                        f"cannot write snapshot {name!r} in shadow store {str(self.git_dir)!r}: "
                        f"{exc.strerror or exc}: {exc.filename} (a snapshot's name cannot be "
                        "another's directory too)"
                    ) from None
        else:  # a layout of another's making: git's own commands
            date = f"@{stamp} +0000"
            commits = [
                self._git("commit-tree", tree, stdin=m.encode(), date=date).decode().strip()
                for m in messages
            ]
            updates = "".join(
                f"update {ref}\0{commit}\0\0" for ref, commit in zip(refs, commits, strict=True)
            )
            self._git("update-ref", "-m", "snapshot", "-z", "--stdin", stdin=updates.encode())
        for commit in commits:
            _keep_left_out((self.git_dir, commit), left_out)
        return commits

    def restore(self, snapshot: str, paths: Collection[str] | None = None) -> RestoreResult:
        """Make the workspace exactly as it was in a snapshot (or only ``paths`` of it).

        Files created since are deleted (and directories that leaves empty), files
        changed or deleted since are written back with their executable bit, symlinks
        as symlinks. Ignored paths (``.git``, ``.trestle``, the ignore globs and, if
        enabled, ``.gitignore``) are neither deleted, overwritten nor recreated; which
        ``.gitignore`` rules count is the snapshot's: its ``.gitignore`` files are put
        back first (among ``paths``, if given), then the rest is judged by them.

        Args:
            snapshot: a snapshot name or a commit id.
            paths: restore only these workspace-relative files (a rewind that undoes
                some steps' work and keeps the rest); None: every file.

        Raises:
            UnknownSnapshotError: no such snapshot.
            RestoreConflictError: a file to write back is blocked by ignored files
                (checked before anything is changed).
            LeftOutError: the snapshot left out a file for its size, or the workspace
                holds one now (checked before anything is changed).
            ShadowRepoError: git failed.
        """
        with self._locked():
            target = self._resolve(snapshot)
            rules = self._changed_rules(target, paths)
            if not rules:
                return self._restore_locked(target, paths)
            # The snapshot's rules first, then the rest judged by them: rules written
            # since (a step's `*`) would hide what it wrote from the restore.
            first = self._restore_locked(target, rules)
            return first.merged(self._restore_locked(target, paths))

    def _changed_rules(self, target: str, paths: Collection[str] | None) -> builtins.list[str]:
        """The ``.gitignore`` files (among ``paths``) that differ from the snapshot's."""
        if not self.use_gitignore:
            return []
        self._stage()
        raw = self._raw_changes(["diff-index", "--cached", "--raw", target])
        return [c.path for c in raw if is_rules_file(c.path) and (paths is None or c.path in paths)]

    def _restore_locked(self, target: str, paths: Collection[str] | None) -> RestoreResult:
        """:meth:`restore`'s work, the store's lock held, the rules as they are now."""
        self._check_restorable(target, self._stage())
        # diff-index compares the snapshot (old side) with the workspace (new side).
        raw = self._raw_changes(["diff-index", "--cached", "--raw", target])
        if paths is not None:
            wanted = set(paths)
            raw = [c for c in raw if c.path in wanted]
        to_delete = sorted(c.path for c in raw if c.status == "A")
        restored = [c.path for c in raw if c.status in "MT"]
        missing = [c.path for c in raw if c.status == "D"]
        ignored_now = self._ignored_beyond_links(missing)
        recreated = [p for p in missing if p not in ignored_now]
        to_write = sorted(restored + recreated)
        blocked = find_conflicts(self.workspace, to_write, set(to_delete))
        if blocked:
            raise RestoreConflictError(
                f"cannot restore {str(self.workspace)!r}: ignored files are in the way "
                f"and restore leaves them alone: {', '.join(blocked[:5])}"
            )
        with _empty_directory() as nowhere:  # made before anything changes: it may fail
            delete_files(self.workspace, to_delete)
            removed_dirs = remove_emptied_dirs(self.workspace, to_delete, keep=to_write)
            self._write_back(target, to_write, nowhere)
        return RestoreResult(
            deleted=tuple(to_delete),
            restored=tuple(sorted(restored)),
            recreated=tuple(sorted(recreated)),
            skipped_ignored=tuple(sorted(ignored_now)),
            removed_dirs=tuple(removed_dirs),
        )

    def _write_back(self, target: str, to_write: Sequence[str], nowhere: Path) -> None:
        """Make the index ``target``'s and write the files ``to_write`` back from it,
        with the empty directory ``nowhere`` as git's work tree.

        Given the workspace as its work tree, git reads its ``.gitattributes``: read-tree
        for the entries whose stat data it cannot trust as it writes the index,
        checkout-index before it writes each file out. A FIFO a step named so blocked
        them, the files to delete gone and none written back. So the files go to the
        workspace by ``--prefix`` (git still refuses a symlink on the way below it).
        With a prefix, ``checkout-index`` leaves the index's stat data alone: the next
        snapshot reads those files again.
        """
        # Keeps the stat cache of every file whose content already matches.
        self._git("read-tree", "-m", target, work_tree=nowhere)
        if to_write:
            self._git(
                "checkout-index", "-f", "-z", "--stdin", f"--prefix={self.workspace}/",
                stdin=_nul(to_write), work_tree=nowhere,
            )  # fmt: skip

    def changes(self, a: str, b: str | None = None) -> builtins.list[Change]:
        """The paths that differ from snapshot ``a`` to ``b`` (or to the workspace now).

        Args:
            a: a snapshot name or commit id: the old side.
            b: the new side; ``None`` means the workspace as it is now.

        Raises:
            UnknownSnapshotError: no such snapshot.
        """
        if b is not None:  # steps ending together ask at once: compared in one process
            found = _COMPARING[self._staging_key].call((a, b), self._changes_between)
            if isinstance(found, Exception):
                raise found
            return [to_change(c) for c in found]
        with self._locked():
            old = self._resolve(a)
            self._stage()
            raw = self._raw_changes(["diff-index", "--cached", "--raw", old])
        return [to_change(c) for c in raw]

    def _changes_between(
        self, pairs: Sequence[tuple[str, str]]
    ) -> builtins.list[builtins.list[RawChange] | ConfigError]:
        """What differs between each pair of snapshots, by one ``git diff-tree`` over
        their trees (a pair naming no snapshot gets its error, a pair of one tree no
        change, the others their answer)."""
        with self._locked():
            # None: the answer is in the diff's output
            found: builtins.list[builtins.list[RawChange] | ConfigError | None] = []
            lines = []
            for a, b in pairs:
                try:
                    trees = (self._tree_of(self._resolve(a)), self._tree_of(self._resolve(b)))
                except UnknownSnapshotError as exc:
                    found.append(exc)
                    continue
                if trees[0] == trees[1]:  # a step that changed nothing: no process
                    found.append([])
                    continue
                found.append(None)
                lines.append(f"{trees[0]} {trees[1]}\n")
            out = b""
            if lines:
                # two trees a line: the first compared with the second (two commits
                # would be a commit and its parent); --always heads each pair's output
                out = self._git(
                    "diff-tree", "--stdin", "--always", "-z", "--no-renames", "-r", "--raw",
                    stdin="".join(lines).encode(), bare=True,
                )  # fmt: skip
        try:
            answers = iter(pairs_changes(out, len(lines)))
        except ValueError as exc:
            raise ShadowRepoError(str(exc)) from None
        return [next(answers) if f is None else f for f in found]

    def _tree_of(self, commit: str) -> str:
        """The tree of ``commit`` (a whole id): read from its loose object, or else
        asked of git."""
        found = loose.tree_of(self.git_dir, commit)
        if found is not None:
            return found
        return self._git("rev-parse", "--verify", f"{commit}^{{tree}}").decode().strip()

    def diff(self, a: str, b: str | None = None, paths: Collection[str] | None = None) -> str:
        """A unified diff from snapshot ``a`` to ``b`` (or to the workspace now), of
        every path or only of ``paths`` (workspace-relative; none: an empty diff).

        Binary files appear as ``Binary files ... differ``.

        Raises:
            UnknownSnapshotError: no such snapshot.
        """
        options = ["-p", "--no-color", "--no-ext-diff", "--no-textconv", "--no-renames"]
        if paths is not None and not paths:
            return ""
        groups = _batches(sorted(paths)) if paths is not None else [[]]
        # Both compare what the store holds (two trees, or a tree and the index): with
        # no work tree, git reads no .gitattributes a step wrote, one of `* -diff` that
        # showed its change as "Binary files ... differ", or a FIFO it blocked on.
        with self._locked():
            old = self._resolve(a)
            if b is None:
                self._stage()
                compare = ["diff-index", "--cached", *options, old]
            else:
                compare = ["diff-tree", "-r", *options, old, self._resolve(b)]
            out = b"".join(
                self._git(*compare, *(["--", *group] if group else []), bare=True)
                for group in groups
            )
        return out.decode("utf-8", errors="replace")

    def left_out(self, snapshot: str | None = None) -> tuple[LeftOut, ...]:
        """The files ``snapshot`` did not store for their size (None: the files the
        workspace now holds past the bound).

        Raises:
            UnknownSnapshotError: no such snapshot.
        """
        known = _LEFT_OUT_OF.get((self.git_dir, snapshot)) if snapshot is not None else None
        if known is not None:  # a commit this process took or read: it never changes
            return known
        with self._locked():
            if snapshot is None:
                return self._stage()
            return self._left_out_of(self._resolve(snapshot))

    def _left_out_of(self, commit: str) -> tuple[LeftOut, ...]:
        """What the commit's message names as left out: a commit never changes, so the
        answer is kept (an attempt's end asks about the two it has just taken)."""
        key = (self.git_dir, commit)
        if key in _LEFT_OUT_OF:
            return _LEFT_OUT_OF[key]
        raw = self._git("cat-file", "commit", commit).decode("utf-8", errors="replace")
        message = raw.split("\n\n", 1)[1] if "\n\n" in raw else ""
        found = ORDER_LINE.search(message)
        if found:
            message = message[: found.start()]
        return _keep_left_out(key, split_left_out(message)[1])

    def check_restorable(self, snapshot: str) -> None:
        """Refuse, before anything changes, a restore of ``snapshot`` that would need a
        file too large to be stored.

        Raises:
            UnknownSnapshotError: no such snapshot.
            LeftOutError: the snapshot left such a file out, or the workspace holds one.
        """
        with self._locked():
            self._check_restorable(self._resolve(snapshot), self._stage())

    def _check_restorable(self, commit: str, now: Sequence[LeftOut]) -> None:
        then = self._left_out_of(commit)
        if not then and not now:
            return
        said = []
        if then:
            it = "it" if len(then) == 1 else "them"
            named = ", ".join(f.describe() for f in then)
            said.append(
                f"that checkpoint did not store {named}, so a restore cannot write {it} back"
            )
        if now:
            it = "it" if len(now) == 1 else "them"
            named = ", ".join(f.describe() for f in now)
            said.append(
                f"the workspace now holds {named}, too large to keep in a checkpoint, which a "
                f"restore could neither delete safely nor leave as it is: move {it} out of the "
                f"workspace (or delete {it}) and try again"
            )
        raise LeftOutError(
            f"cannot restore {str(self.workspace)!r} to {commit[:12]}: " + "; ".join(said),
            [*then, *now],
        )

    def mark(self, name: str, commit: str) -> None:
        """Point the snapshot name ``name`` at ``commit``, a snapshot taken already."""
        problem = snapshot_name_problem(name)
        if problem:
            raise ConfigError(f"snapshot name {name!r}: {problem}")
        with self._locked():
            if loose.plain(self.git_dir):
                loose.write_ref(self.git_dir, REF_ROOT + name, commit)
            else:
                self._git("update-ref", REF_ROOT + name, commit)

    def resolve(self, snapshot: str) -> str:
        """The commit id of a snapshot name or (possibly abbreviated) commit id.

        Raises:
            UnknownSnapshotError: no such snapshot.
        """
        with self._locked():
            return self._resolve(snapshot)

    def read(self, snapshot: str, path: str, limit: int) -> bytes:
        """One file's bytes as ``snapshot`` holds it (``path`` workspace-relative, with
        ``/``); more than ``limit`` bytes is an error.

        Raises:
            UnknownSnapshotError: no such snapshot.
            ShadowRepoError: the snapshot has no such file, or it is too large.
        """
        with self._locked():
            commit = self._resolve(snapshot)
            size = int(self._git("cat-file", "-s", f"{commit}:{path}").decode().strip() or 0)
            if size > limit:
                raise ShadowRepoError(f"{path!r} in snapshot {snapshot!r} is {size} bytes")
            return self._git("cat-file", "blob", f"{commit}:{path}")

    def delete(self, prefix: str) -> builtins.list[str]:
        """Delete the snapshots named ``prefix`` or ``prefix/...``; return their names.

        The objects stay until :meth:`prune`. An empty prefix is refused, so a missing
        argument cannot delete everything.

        Raises:
            ConfigError: the prefix is empty or could not begin a snapshot name.
        """
        if not prefix.strip("/"):
            raise ConfigError("refusing to delete snapshots with an empty prefix")
        with self._locked():
            self._clear_stale_locks()
            refs = self._refs(prefix)
            if refs:
                lines = "".join(f"delete {REF_ROOT}{r.name} {r.commit}\n" for r in refs)
                self._git("update-ref", "--stdin", stdin=lines.encode())
        return [r.name for r in refs]

    def prune(self) -> None:
        """Drop objects no snapshot refers to any more (after :meth:`delete`).

        The stat caches are dropped first because they may point at such objects; the
        next snapshot of each workspace reads its files once more.
        """
        with self._locked():
            self._clear_stale_locks()
            cache_dir = self._index.parent
            if cache_dir.is_dir():
                for entry in cache_dir.iterdir():
                    entry.unlink()
            self._git("reflog", "expire", "--expire=now", "--all")
            self._git("gc", "--prune=now", "--quiet")

    def list(self, prefix: str = "") -> builtins.list[SnapshotRef]:
        """Snapshots named ``prefix`` or ``prefix/...`` (all if empty), oldest first.

        Raises:
            ConfigError: the prefix could not begin a snapshot name (``*``, ``..``...).
        """
        with self._locked():
            return self._refs(prefix)

    # -- staging: bring the index in line with the workspace ---------------------------

    def _stage(self) -> tuple[LeftOut, ...]:
        """Update the workspace's index (the stat cache) to match the files on disk;
        return the files left out of it for their size (a file that grew past the bound
        leaves the index as a deleted one does)."""
        return self._staged(tree=False)[0]

    def _staged(self, *, tree: bool) -> tuple[tuple[LeftOut, ...], str]:
        """:meth:`_stage`, and the id of the tree the index holds if ``tree`` is true
        (else ""): written here (:mod:`trestle.workspace.staging`) in a store laid out as
        Trestle lays it out, by git's ``update-index`` and ``write-tree`` in any other."""
        if not self.workspace.is_dir():
            raise ConfigError(f"workspace {str(self.workspace)!r} is not a directory")
        too_large: dict[str, int] = {}
        stats: dict[str, os.stat_result] = {}
        try:
            files = self._walk(too_large, stats)
        except UnsafeRulesFileError as exc:
            raise ShadowRepoError(
                f"cannot read workspace {str(self.workspace)!r}: its {_shown(exc.path)} "
                f"{exc.why}: remove it (or make it a plain file of its rules) and try again"
            ) from None
        except OSError as exc:
            raise ShadowRepoError(
                f"cannot read workspace {str(self.workspace)!r}: {_said(exc)}"
            ) from None
        if loose.plain(self.git_dir):
            written = self._stage_here(stats, too_large)
        else:
            self._stage_with_git(files)
            written = self._git("write-tree").decode().strip() if tree else ""
        limit = self.max_file_size or 0
        left_out = tuple(LeftOut(p, size, limit) for p, size in sorted(too_large.items()))
        return left_out, written

    def _stage_here(self, stats: dict[str, os.stat_result], too_large: dict[str, int]) -> str:
        """Stage the walked files without git; the tree's id."""
        cached, racy_from, tree = self._cached_index()
        try:
            staged = staging.stage(
                self.git_dir, self.workspace, stats, cached, racy_from, self.max_file_size, tree
            )
            if staged.changed:
                written = staging.write_index(self._index, staged.index)
                keep(_INDEXED, self._index, (_identity(written), staged), KEPT_WORKSPACES)
        except OSError as exc:
            raise ShadowRepoError(
                f"cannot stage workspace {str(self.workspace)!r} in shadow store "
                f"{str(self.git_dir)!r}: {_said(exc)}"
            ) from None
        too_large.update(staged.too_large)
        return staged.tree

    def _cached_index(self) -> tuple[staging.Index, tuple[int, int], str]:
        """The index's entries (kept from this process's last staging while the file is
        as it left it, with their tree's id; else read, the tree unknown), and its
        mtime: an entry not older is racy."""
        try:
            st = os.stat(self._index)
        except FileNotFoundError:
            return {}, (0, 0), ""
        kept = _INDEXED.get(self._index)
        if kept is not None and kept[0] == _identity(st):
            return kept[1].index, staging.modified(st), kept[1].tree
        try:
            found = staging.read_index(self._index.read_bytes())
        except FileNotFoundError:
            found = None
        return found or {}, staging.modified(st), ""

    def _stage_with_git(self, files: builtins.list[str]) -> None:
        """Stage the walked files with git's own commands, in a store of another layout
        (whose index may name objects by other than SHA-1: git lists its paths)."""
        present = set(files)
        listed = self._git("ls-files", "-z").split(b"\0")
        gone = [p for p in map(os.fsdecode, listed) if p and p not in present]
        if gone:
            self._git("update-index", "--force-remove", "-z", "--stdin", stdin=_nul(gone))
        if files:
            # --remove covers a file deleted between the walk and this command.
            self._git("update-index", "--add", "--remove", "-z", "--stdin", stdin=_nul(files))

    def _walk(
        self, too_large: dict[str, int], stats: dict[str, os.stat_result]
    ) -> builtins.list[str]:
        """The files a snapshot holds (:func:`walk_workspace`); those past the size bound
        go to ``too_large`` instead.

        Which paths the ``.gitignore`` files exclude is asked of git (a process per
        directory level), so the answers are kept (per store and workspace, in this
        process) and used again while the walk finds the very same ``.gitignore`` files
        unchanged (path, inode, size, times): the rules are then the same, and so is
        every answer. When they differ, the walk is made again asking git anew.
        """
        if not self.use_gitignore:
            return walk_workspace(
                self.workspace,
                self._globs,
                extra_excluded=self._own_dir,
                max_size=self.max_file_size,
                too_large=too_large,
                stats=stats,
            )
        key = (self.git_dir, self.workspace)
        known_rules, kept = _IGNORE_ANSWERS.get(key, ((), {}))
        files, rules, answers = self._walk_judged(kept, too_large, stats)
        if rules != known_rules and kept:  # answers to other rules: walk again, asking git
            too_large.clear()
            stats.clear()
            files, rules, answers = self._walk_judged({}, too_large, stats)
        if rules is not None:
            keep(_IGNORE_ANSWERS, key, (rules, answers), KEPT_WORKSPACES)
        return files

    def _walk_judged(
        self, answers: dict[str, bool], too_large: dict[str, int], stats: dict[str, os.stat_result]
    ) -> tuple[builtins.list[str], Rules | None, dict[str, bool]]:
        """The walk, asking git only about paths ``answers`` does not hold (then adding
        them); also the ``.gitignore`` files it found, as :func:`_stat_rules` gives them."""

        def judge(paths: Sequence[str]) -> set[str]:
            unknown = [p for p in paths if p not in answers]
            if unknown:
                found = self._gitignored(unknown)
                answers.update((p, p in found) for p in unknown)
            return {p for p in paths if answers[p]}

        rule_files: builtins.list[str] = []
        files = walk_workspace(
            self.workspace,
            self._globs,
            extra_excluded=self._own_dir,
            check_ignore=judge,
            gitignores=rule_files,
            max_size=self.max_file_size,
            too_large=too_large,
            stats=stats,
        )
        return files, _stat_rules(self.workspace, rule_files), answers

    def _ignored(self, paths: Sequence[str]) -> set[str]:
        """The paths that our globs or (if enabled) the .gitignore files exclude."""
        ignored = {p for p in paths if self._globs.matches_path(p)}
        if self.use_gitignore:
            ignored |= self._gitignored(paths)
        return ignored

    def _ignored_beyond_links(self, paths: Sequence[str]) -> set[str]:
        """:meth:`_ignored`, for paths some of which lie beyond a symlink in the
        workspace now (a step put ``d -> /elsewhere`` where the snapshot had ``d/x``):
        git refuses to judge those, which stopped every restore. Such a path is judged
        as its link is: the link is deleted and the snapshot's directory written back
        in its place, so what ignores the one ignores what the other held."""
        beyond = {p: link for p in paths if (link := leading_link(self.workspace, p))}
        judged = self._ignored([p for p in paths if p not in beyond] + sorted(set(beyond.values())))
        return {p for p in paths if beyond.get(p, p) in judged}

    def _gitignored(self, paths: Sequence[str]) -> set[str]:
        """The paths that the workspace's .gitignore files exclude, as git judges them."""
        # A .gitignore file is always kept, never judged by a rule: one of `*` ignores
        # itself, and so hid from the checkpoint, its diff and a rewind that it was written.
        paths = [p for p in paths if not is_rules_file(p)]
        if not paths:
            return set()
        # --no-index: judge by the rules alone, not by what the shadow index holds.
        # check-ignore takes pathspecs but refuses literal ones: ":/:" (from the top, no
        # other magic) keeps a name that starts with ":" from being read as magic.
        out = self._git(
            "check-ignore",
            "--no-index",
            "-z",
            "--stdin",
            stdin=_nul([PATHSPEC_PREFIX + p for p in paths]),
            ok=(0, 1),
            literal=False,
            timeout=RULES_TIMEOUT,
        )
        return {os.fsdecode(b).removeprefix(PATHSPEC_PREFIX) for b in out.split(b"\0") if b}

    # -- refs ----------------------------------------------------------------------------

    def _resolve(self, snapshot: str) -> str:
        if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", snapshot):  # a whole id, as recorded
            if self._loose_commit(snapshot):
                return snapshot
            out = self._git("rev-parse", "--verify", "-q", f"{snapshot}^{{commit}}", ok=(0, 1))
            if out.strip():
                return out.decode().strip()
        if not snapshot_name_problem(snapshot):  # a well-formed name: try it as a ref
            out = self._git(
                "rev-parse", "--verify", "-q", f"{REF_ROOT}{snapshot}^{{commit}}", ok=(0, 1)
            )
            if out.strip():
                return out.decode().strip()
        if re.fullmatch(r"[0-9a-f]{4,64}", snapshot):
            out = self._git("rev-parse", "--verify", "-q", f"{snapshot}^{{commit}}", ok=(0, 1))
            if out.strip():
                return out.decode().strip()
        raise UnknownSnapshotError(f"no snapshot {snapshot!r} in {str(self.git_dir)!r}")

    def _loose_commit(self, oid: str) -> bool:
        """Whether the store holds ``oid`` as a loose commit object, read here without a
        git process (a step's diff looks up the two ids its attempt recorded); a packed
        or missing one is left to ``git rev-parse``."""
        return loose.commit_header(self.git_dir, oid).startswith(b"commit ")

    def _refs(self, prefix: str, *, exact: bool = False) -> builtins.list[SnapshotRef]:
        stripped = prefix.strip("/")
        # for-each-ref would read glob characters as a pattern: refuse what no name holds.
        if stripped and snapshot_name_problem(stripped):
            raise ConfigError(f"snapshot prefix {prefix!r}: {snapshot_name_problem(stripped)}")
        pattern = REF_ROOT + stripped
        fields = "%(refname)%00%(objectname)%00%(tree)%00%(committerdate:unix)%00%(contents)"
        out = self._git("for-each-ref", f"--format={fields}%00", pattern)
        refs = []
        for record in out.split(b"\0\n"):
            if not record:
                continue
            ref, commit, tree, stamp, message = record.decode().split("\0", 4)
            name = ref.removeprefix(REF_ROOT)
            if exact and name != prefix:
                continue
            when = datetime.fromtimestamp(int(stamp), tz=UTC)
            found = ORDER_LINE.search(message)
            order = int(found.group(1)) if found else None
            if found:
                message = message[: found.start()]
            message, left_out = split_left_out(message)
            refs.append(SnapshotRef(name, commit, tree, when, message, order, left_out))
        refs.sort(key=lambda r: (r.time, r.name))
        return refs

    def _next_orders(self, count: int) -> builtins.list[int]:
        """The next ``count`` snapshots' orders (under the lock), in turn: past the last
        one given, and never behind the clock's nanoseconds, so a count lost or written
        back by something else still cannot put a new snapshot before an older one."""
        path = self.git_dir / ORDER_FILE
        try:
            last = int(path.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            last = 0
        first = max(last + 1, time.time_ns())
        path.parent.mkdir(exist_ok=True)
        scratch = path.with_name(f"{path.name}.{os.getpid()}")
        scratch.write_text(f"{first + count - 1}\n", encoding="ascii")
        os.replace(scratch, path)
        return list(range(first, first + count))

    # -- running git -----------------------------------------------------------------

    def _raw_changes(self, args: builtins.list[str]) -> builtins.list[RawChange]:
        """What ``git diff-index ... --raw`` (``args``) finds; it compares the index with
        a tree, so it runs with no work tree (:meth:`_git`'s ``bare``)."""
        out = self._git(args[0], "-z", "--no-renames", *args[1:], bare=True)
        fields = out.split(b"\0")
        try:
            return [raw_change(fields[i], fields[i + 1]) for i in range(0, len(fields) - 1, 2)]
        except ValueError as exc:
            raise ShadowRepoError(str(exc)) from None

    def _git(
        self,
        *args: str,
        stdin: bytes = b"",
        date: str = "",
        ok: Sequence[int] = (0,),
        literal: bool = True,
        bare: bool = False,
        work_tree: Path | None = None,
        timeout: float | None = None,
    ) -> bytes:
        """Run ``git ARGS`` on the store; its stdout.

        ``bare``: with no work tree at all, for a command that compares trees or the
        index and so reads no file of the workspace, nor its ``.gitattributes``.
        ``work_tree``: with that directory as the work tree instead of the workspace.
        ``timeout``: seconds it may take before it is killed and the call refused.
        """
        top = ("--bare",) if bare else ()  # no work tree, whatever the store's config says
        argv = command(*top, *args, git=self._git_exe, settings=GIT_SETTINGS)
        env = self._env
        if bare:
            env = {k: v for k, v in env.items() if k != "GIT_WORK_TREE"}
        elif work_tree is not None:
            env = {**env, "GIT_WORK_TREE": str(work_tree)}
        if date:
            env = {**env, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
        if not literal:
            env = {k: v for k, v in env.items() if k != "GIT_LITERAL_PATHSPECS"}
        if args[0] == "init":  # init takes the directory as its argument and no work tree
            env = {k: v for k, v in env.items() if k not in ("GIT_DIR", "GIT_WORK_TREE")}
        try:
            done = subprocess.run(
                argv,
                input=stdin,
                capture_output=True,
                cwd=self.workspace if self.workspace.is_dir() else self.git_dir,
                env=env,
                check=False,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise ShadowRepoError(
                f"'git {args[0]}' did not end within {timeout:g} s in shadow store "
                f"{str(self.git_dir)!r}, and was stopped: a file of the workspace it reads "
                "(a .gitignore) may have been made a FIFO by a step running beside it",
                command=[self._git_exe, *args],
            ) from None
        except OSError as exc:
            raise ShadowRepoError(
                f"cannot run git ({self._git_exe!r}) for the shadow store "
                f"{str(self.git_dir)!r}: {exc}; install git, or run the plan with "
                "`checkpoints: off` (no snapshots, no diff or rewind)",
                command=[self._git_exe, *args],
            ) from exc
        if done.returncode not in ok:
            stderr = done.stderr.decode("utf-8", errors="replace").strip()
            shown = " ".join(["git", *args])
            raise ShadowRepoError(
                f"{shown!r} failed with exit {done.returncode} in shadow store "
                f"{str(self.git_dir)!r}: {stderr}",
                command=[self._git_exe, *args],
                stderr=stderr,
            )
        return done.stdout

    def _make_env(self) -> dict[str, str]:
        # Nothing GIT_* from the caller leaks in: GIT_DIR, GIT_INDEX_FILE,
        # GIT_CONFIG_PARAMETERS, GIT_OBJECT_DIRECTORY... would all redirect or change us.
        return environment(
            self.git_dir,
            self.workspace,
            dict(
                GIT_INDEX_FILE=str(self._index),
                GIT_LITERAL_PATHSPECS="1",
                GIT_AUTHOR_NAME=IDENTITY[0],
                GIT_AUTHOR_EMAIL=IDENTITY[1],
                GIT_COMMITTER_NAME=IDENTITY[0],
                GIT_COMMITTER_EMAIL=IDENTITY[1],
                GIT_AUTHOR_DATE="@0 +0000",
                GIT_COMMITTER_DATE="@0 +0000",
            ),
        )

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the store's lock (threads and processes alike) and make sure it exists."""
        try:
            self.git_dir.mkdir(parents=True, exist_ok=True)
            # Each call opens its own descriptor: flock then excludes other threads too.
            fd = os.open(self.git_dir / "trestle.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ShadowRepoError(f"{self.git_dir}: cannot open the shadow store: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._ensure_store()
            self._refuse_unsafe()
            yield
        finally:
            os.close(fd)

    def _ensure_store(self) -> None:
        if not (self.git_dir / "objects").is_dir():
            self._git("init", "--bare", "--quiet", "--template=", str(self.git_dir))
            _ignore_store_directory(self.git_dir.parent)
        attributes = self.git_dir / "info" / "attributes"
        if not attributes.is_file() or attributes.read_text() != ATTRIBUTES:
            attributes.parent.mkdir(exist_ok=True)
            attributes.write_text(ATTRIBUTES)
        self._index.parent.mkdir(exist_ok=True)
        # Under our lock nobody else can be writing the index: a lock file is stale.
        stale = self._index.with_name(self._index.name + ".lock")
        if stale.exists():
            stale.unlink()

    def _clear_stale_locks(self) -> None:
        """Remove what a killed git left to hold the refs: under the store's lock no
        git of Trestle's is at work on it, so a ref's ``.lock``, ``packed-refs.lock``
        or ``gc.pid`` is a killed one's (``git gc`` locks every ref while it packs
        them), and made every later deletion and prune fail ("remove the file
        manually"). Called by the operator's deletions alone: a step's snapshot writes
        its own ref, whose stale lock :func:`loose.write_ref` removes."""
        for folder, _, files in walk(self.git_dir / "refs"):
            for name in files:
                if name.endswith(".lock"):
                    Path(folder, name).unlink(missing_ok=True)
        for name in ("packed-refs.lock", "gc.pid"):
            (self.git_dir / name).unlink(missing_ok=True)

    def _refuse_unsafe(self) -> None:
        """Refuse a store whose layout or configuration could make git run a program.

        Reading the configuration runs git, which every checkpoint of every step would
        pay again: a store found safe is not read again while its directory and its
        ``config`` keep the same inode, size and times. Any write changes a file's
        ctime, which no unprivileged process can set back, and a ``config`` or
        ``commondir`` put in by rename changes the directory's.
        """
        key = _layout_key(self.git_dir)
        if key is not None and _SAFE_LAYOUTS.get(self.git_dir) == key:
            return
        try:
            check_git_dir(
                self.git_dir, git=self._git_exe, advice=SHADOW_ADVICE, workspace=self.workspace
            )
        except UnsafeRepositoryError as exc:
            raise ShadowRepoError(str(exc)) from None
        if key is not None and key == _layout_key(self.git_dir):
            _SAFE_LAYOUTS[self.git_dir] = key

    def _inside_workspace(self, path: Path) -> str:
        """``path`` relative to the workspace if it lies inside it, else ""."""
        real = os.path.realpath(path)
        root = os.path.realpath(self.workspace)
        if real.startswith(root + os.sep):
            return os.path.relpath(real, root).replace(os.sep, "/")
        return ""


# What git answered about the .gitignore rules of a workspace (per store), with the
# .gitignore files as they were then (see ShadowRepo._walk).
_IGNORE_ANSWERS: dict[tuple[Path, Path], tuple[Rules, dict[str, bool]]] = {}


def _stat_rules(root: Path, rule_files: Sequence[str]) -> Rules | None:
    """Each ``.gitignore`` found, with its inode, size and times (None: one is gone)."""
    found = []
    for rel in sorted(rule_files):
        try:
            st = os.lstat(root / rel)
        except OSError:
            return None
        found.append((rel, st.st_ino, st.st_size, st.st_mode, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(found)


# What the commits of each store left out (commits never change), the latest last.
_LEFT_OUT_OF: dict[tuple[Path, str], tuple[LeftOut, ...]] = {}
KEPT_COMMITS = 4096


def _keep_left_out(key: tuple[Path, str], left_out: tuple[LeftOut, ...]) -> tuple[LeftOut, ...]:
    return keep(_LEFT_OUT_OF, key, left_out, KEPT_COMMITS)


# The ordered snapshots being taken, and the snapshots being compared, per store and
# what its staging depends on.
_TAKING: Combiners[tuple[str, str], str] = Combiners(KEPT_WORKSPACES)
_COMPARING: Combiners[tuple[str, str], builtins.list[RawChange] | ConfigError] = Combiners(
    KEPT_WORKSPACES
)

# Each workspace index as this process last staged it (its entries and tree), with the
# index file's identity then (a write by anything else, git's lock and rename, changes it).
_INDEXED: dict[Path, tuple[tuple[int, ...], staging.Staged]] = {}


def _identity(st: os.stat_result) -> tuple[int, ...]:
    """What any write changes in a file: its device, inode, size, mode and times."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mode, st.st_mtime_ns, st.st_ctime_ns)


# The shadow stores this process found safe, each with the layout it had then.
_SAFE_LAYOUTS: dict[Path, tuple[tuple[int, ...], ...]] = {}


def _layout_key(git_dir: Path) -> tuple[tuple[int, ...], ...] | None:
    """What any change to a store's layout or configuration changes: the directory's and
    its ``config``'s device, inode, size, mode and times (None: one cannot be read)."""
    found: list[tuple[int, ...]] = []
    for path in (git_dir, git_dir / "config"):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            found.append((0,))
            continue
        except OSError:
            return None
        found.append(_identity(st))
    return tuple(found)


def _ignore_store_directory(directory: Path) -> None:
    """A ``.trestle`` directory holding checkpoints gets the ``.gitignore`` of ``*`` a
    store file's gets (:func:`trestle.store.sqlite_file.prepare_directory`), so a step's
    ``git add -A`` never commits them; one already there is left as it is."""
    if directory.name != STORE_DIRECTORY:
        return
    try:
        fd = os.open(directory / ".gitignore", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError:  # already there, or a directory that cannot be written
        return
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(GITIGNORE)


PATHS_MOST = 64 << 10  # bytes of paths one git command is given on its command line


def _batches(paths: Sequence[str]) -> builtins.list[builtins.list[str]]:
    """``paths`` in order, split so that no batch's names pass :data:`PATHS_MOST` bytes:
    the diff of a step that wrote 20,000 files of 200-byte names passed what a command
    line may hold ("Argument list too long")."""
    batches: builtins.list[builtins.list[str]] = [[]]
    size = 0
    for path in paths:
        length = len(os.fsencode(path)) + 1
        if batches[-1] and size + length > PATHS_MOST:
            batches.append([])
            size = 0
        batches[-1].append(path)
        size += length
    return batches


def _said(exc: OSError) -> str:
    """What an ``OSError`` says, its path shortened: a step's tree thousands of
    directories deep made a line of 10 KB."""
    if not exc.filename:
        return str(exc.strerror or exc)
    return f"{exc.strerror or exc}: {_shown(os.fsdecode(exc.filename))}"


def _shown(path: str, most: int = 160) -> str:
    """``path`` quoted, its middle left out if it is longer than ``most``."""
    if len(path) <= most:
        return repr(path)
    half = most // 2
    return f"{path[:half]!r} ... {path[-half:]!r} ({len(path):,} characters)"


@contextmanager
def _empty_directory() -> Iterator[Path]:
    """A new empty directory only the driver can write, removed after."""
    try:
        path = Path(tempfile.mkdtemp(prefix="trestle-nowhere-"))
    except OSError as exc:
        raise ShadowRepoError(f"cannot make an empty directory for git: {_said(exc)}") from None
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _nul(paths: Sequence[str]) -> bytes:
    return b"".join(os.fsencode(p) + b"\0" for p in paths)
