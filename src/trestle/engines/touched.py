"""What an attempt read and wrote in the workspace, as far as it can be seen: recorded
with its end (:class:`~trestle.core.records.lineage.AttemptFiles`) so that cascade
tracing and rewind know the run's data dependencies (:mod:`trestle.core.lineage`).

- **Writes** come from the workspace's checkpoints before and after the attempt (every
  file changed, by whatever means: a shell redirect, a tool, a child process), so they
  are known only where both were taken (``checkpoints: every_step``); a ``write`` step's
  one path is known without them. Otherwise they are unknown, never guessed. A file
  the ``after`` checkpoint left out for its size counts as written (its content
  unknown) unless the ``before`` one left it out at the same size; one the ``before``
  left out and the ``after`` holds no longer, as deleted.
- **Reads** of a command are the workspace files its command line names (its script,
  its operands: :func:`~trestle.execution.named_files.named_files`), hashed as they were
  when it began; a program may open others, so its reads stay partly unknown. A
  ``write`` step reads nothing; an agent's reads are its ``read_file`` calls, which its
  own events record; a Python callable's are unknown.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from trestle.core.plan import Step
from trestle.core.records.lineage import ABSENT, DELETED, AttemptFiles
from trestle.execution.named_files import named_files, names_any
from trestle.workspace.beneath import Refused, read_regular
from trestle.workspace.shadow import ShadowRepo

MAX_WRITES = 2_000  # paths recorded per attempt; past this its writes are "unknown"
MAX_HASHED = 64 << 20  # bytes of a written file hashed; a larger one's digest is unknown


def reads_of(step: Step, workspace: Path) -> dict[str, str]:
    """The workspace files the step's command names, each with its SHA-256 (or
    ``"absent"``, or why it was not hashed: one over :data:`MAX_HASHED` bytes is not
    read) as it begins; none for any other action."""
    if step.run is None:
        return {}
    return named_files(step.run, workspace, most=MAX_HASHED)


def may_read(step: Step, workspace: Path) -> bool:
    """Whether :func:`reads_of` can find any file: the step runs a command that names
    one (looked up, nothing read: see :func:`~trestle.execution.named_files.names_any`)."""
    return step.run is not None and names_any(step.run, workspace)


def attempt_files(
    step: Step,
    workspace: Path,
    read: dict[str, str],
    repo: ShadowRepo | None,
    before: str | None,
    after: str | None,
) -> AttemptFiles:
    """What the attempt touched: ``read`` as taken before it ran, and its writes from
    the checkpoints ``before`` and ``after`` it (see the module)."""
    wrote: dict[str, str] | None = None
    if repo is not None and before is not None and after is not None:
        root = workspace.resolve()
        changes = repo.changes(before, after)
        then, now = repo.left_out(before), repo.left_out(after)
        kept = {(f.path, f.size) for f in then}
        too_large = [f.path for f in now if (f.path, f.size) not in kept]
        changed = {c.path for c in changes} | {f.path for f in now}
        gone = [f.path for f in then if f.path not in changed]
        if len(changes) + len(too_large) + len(gone) <= MAX_WRITES:
            wrote = {
                c.path: DELETED if c.kind == "deleted" else _digest(root, c.path) for c in changes
            }
            wrote.update((path, "") for path in too_large)  # never read: content unknown
            wrote.update((path, DELETED) for path in gone)
    elif step.write is not None:
        content = step.write.content.encode()
        wrote = {os.path.normpath(step.write.path): hashlib.sha256(content).hexdigest()}
    return AttemptFiles(wrote=wrote, read=read, reads_known=step.write is not None)


def _digest(root: Path, path: str) -> str:
    """The SHA-256 of a written file's content, read beneath the workspace (a step
    running beside may swap a directory for a link out of it); ``"absent"`` when it is
    gone; ``""`` (unknown) for anything else: a link, a special file, a hard link, one
    past :data:`MAX_HASHED` bytes."""
    try:
        data = read_regular(root, path, MAX_HASHED)
    except FileNotFoundError:
        return ABSENT
    except (Refused, OSError):
        return ""
    return hashlib.sha256(data).hexdigest()
