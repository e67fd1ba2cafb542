"""What a human approved is what runs: the approved bytes of the files a command names.

An approval of ``sh deploy.sh`` is bound to the digest of ``deploy.sh`` as the human
saw it (:mod:`trestle.execution.named_files`). Checking the file again just before the command
starts leaves a window: a parallel step can change it between the check and the
shell's read, and the command itself could rewrite what it sources next. So, where a
sandbox confines the command, the engine copies each named file to a private
directory no step can see, checks the copy's digest against the approved one, and
shows the copy, read-only, in the file's place inside the sandbox: the command reads
the approved bytes or does not run.

A file of code that cannot be copied safely (one reached through a link, even inside
the workspace, a file of several names, a special file, one too large) is not run
unpinned: a parallel step
flipped such a file's bytes between the check of its digest and the shell's read
(``ln deploy.sh .other.sh``, then writes through ``.other.sh``), and the command ran
bytes nobody approved. It is said instead, and the attempt fails. The files the command
reads or writes as data are checked in place, and held by the workspace's hold against
other runs (:mod:`trestle.execution.workspace_hold`); one that hold cannot reach (through
a link out of the workspace, or of several names) is not run either, nor one too large
to hash (:data:`~trestle.execution.named_files.APPROVED_MOST`), which binds no approval.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trestle.core.gate import moved_files
from trestle.execution.named_files import (
    ABSENT,
    APPROVED_MOST,
    digest,
    executed_files,
    named_files,
    not_hashed,
)
from trestle.execution.sandbox import Pinned
from trestle.workspace.beneath import Refused, read_regular

MAX_PINNED_BYTES = 16 * 1024 * 1024

Held = tuple[Pinned, list[str], list[str]]
"""The approved files shown in their place, the paths that moved, those that cannot be
held (see :func:`pinned`)."""


@contextmanager
def holding(
    command: str, approved: dict[str, str], workspace: Path, cwd: str = ".", *, confined: bool
) -> Iterator[Held]:
    """The files an approved command names, held as approved while it runs: pinned
    (see :func:`pinned`) where a sandbox confines it; else only checked, now, as they
    read (a file too large to hash then binds nothing, so it cannot be held either),
    which leaves the window between the check and the command's read that only the
    sandbox closes (docs/security.md)."""
    if confined:
        with pinned(command, approved, workspace, cwd) as held:
            yield held
        return
    now = named_files(command, workspace, most=APPROVED_MOST, cwd=cwd)
    yield (), moved_files(approved, now), [p for p, value in approved.items() if not_hashed(value)]


def unheld_reason(unheld: list[str]) -> str | None:
    """Why an approved command does not run, when files it names read as approved but
    cannot be held so while it runs (see the module docstring); None when all can."""
    if not unheld:
        return None
    return (
        f"refused: {', '.join(unheld)} cannot be held as approved while the command runs "
        "(reached through a link, a file of several names, a special file, code over "
        f"{MAX_PINNED_BYTES // (1024 * 1024)} MiB or a file over "
        f"{APPROVED_MOST // (1024 * 1024)} MiB): the command did not run; make each a "
        "plain file of one name, then retry the step"
    )


@contextmanager
def pinned(
    command: str, approved: dict[str, str], workspace: Path, cwd: str = "."
) -> Iterator[tuple[Pinned, list[str], list[str]]]:
    """Private copies of the approved files ``command`` runs as code, the paths that no
    longer read as approved (changed, appeared or went away), and those that read as
    approved but cannot be held so while it runs (see the module docstring); the
    copies are removed on exit. The files it reads or writes as data are checked, not
    copied: it may go on writing them.

    Args:
        command: the approved command.
        approved: ``{path in the workspace: sha256 or "absent"}``, as the approval
            recorded them.
        workspace: the workspace.
        cwd: the directory in it the command runs in (see
            :func:`~trestle.execution.named_files.named_files`).
    """
    root = workspace.resolve()
    code = executed_files(command, root, cwd)
    # a file the command names now that it did not name when the approval was asked
    # (``sh deploy.sh`` approved before any deploy.sh was there, made by a step since):
    # its bytes are no human's approval. The names alone (most=0: none is hashed)
    appeared = sorted(set(named_files(command, root, most=0, cwd=cwd)) - set(approved))
    directory = Path(tempfile.mkdtemp(prefix="trestle-approved-"))
    try:
        copies: list[tuple[str, str]] = []
        moved: list[str] = [*appeared]
        unheld: list[str] = []
        for index, (relative, approved_digest) in enumerate(sorted(approved.items())):
            data = _read(root, relative) if relative in code else None
            if data is None:
                now = digest(root / relative, APPROVED_MOST)
            else:
                now = hashlib.sha256(data).hexdigest()
            if now != approved_digest:
                moved.append(relative)
            elif data is None and _unheld(root, relative, now, relative in code):
                unheld.append(relative)
            elif data is not None:
                copy = directory / str(index)
                copy.write_bytes(data)
                copy.chmod(0o555 if _executable(root / relative) else 0o444)
                copies.append((relative, str(copy)))
        yield tuple(copies), moved, unheld
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _unheld(root: Path, relative: str, now: str, code: bool) -> bool:
    """Whether a file that reads as approved but is not copied cannot be held so: code
    (which is copied where it can be), a file too large to hash, or one the workspace's
    hold does not reach (:func:`_elsewhere`)."""
    if (code and now != ABSENT) or not_hashed(now):
        return True
    return now != ABSENT and _elsewhere(root, relative)


def _elsewhere(root: Path, relative: str) -> bool:
    """Whether a file the command reads as data lies where the hold of this workspace
    does not reach (:mod:`trestle.execution.workspace_hold`): reached through a link
    leading out of it, or a file of several names (its other name may be in another
    run's workspace). A run working there changed it between the check and the read."""
    path = root / relative
    try:
        info = os.stat(path)
        real = Path(os.path.realpath(path))
    except OSError:
        return False
    return not real.is_relative_to(root) or (stat.S_ISREG(info.st_mode) and info.st_nlink > 1)


def _read(root: Path, relative: str) -> bytes | None:
    """The file's bytes, read beneath the workspace with no link followed at all;
    None when it is missing or not a single-named regular file of at most the size
    pinned (its digest is then checked in place). A link on its way would leave the
    copy shown where the link led when the sandbox started: a step beside it pointing
    the link elsewhere before the shell's read had it read unpinned bytes."""
    try:
        return read_regular(root, relative, MAX_PINNED_BYTES, links=False)
    except (Refused, OSError):
        return None


def _executable(path: Path) -> bool:
    try:
        return bool(os.stat(path).st_mode & 0o111)
    except OSError:
        return False
