"""Paths a model gives, held inside the workspace; plus the walk, the read and the
write the file tools share.

Every path argument goes through :func:`resolve` to be named (absolute paths are
refused outright, and ``..`` and symlinks that lead outside), and every read, write
and listing then opens it beneath the workspace's descriptor
(:mod:`trestle.workspace.beneath`), so a symlink swapped in between cannot carry it out. A
symlink that stays inside is followed. ``.git`` (a hook written there runs on the
user's next commit) and ``.trestle`` (the run's own store) are never read, listed,
searched or written, at any depth and in any case.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from pathlib import Path

from trestle.execution.actions import jailed_in
from trestle.tools.base import ToolContext, ToolFailure
from trestle.workspace.beneath import (
    PROTECTED,
    Refused,
    protected_part,
    read_regular,
    scan,
    write_replacing,
)

MAX_PATH_CHARS = 4096  # Linux's PATH_MAX
PROTECTED_DIRS = PROTECTED  # never read, listed, searched or written, at any depth
NOISE_DIRS = frozenset(
    {
        "__pycache__",
        "node_modules",
        ".venv",
        "venv",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
        ".hypothesis",
    }
)  # listed, but not walked into unless asked for by name


def resolve(ctx: ToolContext, path: str, *, what: str = "path") -> Path:
    """The real path of ``path`` inside the workspace, or :class:`ToolFailure`."""
    if len(path) > MAX_PATH_CHARS:  # the OS refuses it anyway; say so without echoing it
        raise ToolFailure(
            f"{what} {path[:60]!r}... is {len(path):,} characters long; "
            f"a path has at most {MAX_PATH_CHARS:,}"
        )
    if Path(path).is_absolute():
        raise ToolFailure(f"{what} {path!r} is absolute; give it relative to the workspace")
    try:
        return jailed_in(ctx.root, path or ".")
    except (ValueError, OSError) as exc:
        # ValueError: outside the jail, or a NUL byte; OSError: a symlink loop
        raise ToolFailure(f"{what} {path!r} is refused: {exc}") from None


def relative(ctx: ToolContext, target: Path) -> str:
    """``target`` as the model should write it: relative, with ``/``."""
    rel = target.relative_to(ctx.root).as_posix()
    return rel or "."


def normalise(ctx: ToolContext, path: str) -> str:
    """The canonical workspace-relative form of a path (what a policy's rules match)."""
    return relative(ctx, resolve(ctx, path))


def resolve_for_write(ctx: ToolContext, path: str) -> Path:
    """Like :func:`resolve_for_read`, and also refuse the workspace itself and the
    run's plan file and ``python:`` code (:mod:`trestle.execution.run_files`)."""
    target = resolve_for_read(ctx, path)
    if relative(ctx, target) == ".":
        raise ToolFailure(f"path {path!r} is the workspace itself, not a file")
    kept = ctx.sandbox.held_files(ctx.root) if ctx.sandbox is not None else ()
    if Path(os.path.realpath(target)) in kept:
        raise ToolFailure(
            f"path {path!r} is a plan file or its python: code, which no step may change: "
            "the next run of that plan would obey what a step wrote; write another file, "
            "or ask a human to change it"
        )
    return target


def resolve_for_read(ctx: ToolContext, path: str, *, what: str = "path") -> Path:
    """Like :func:`resolve`, and also refuse ``.git`` and ``.trestle`` at any depth,
    as named and as the path resolves."""
    target = resolve(ctx, path, what=what)
    for name in (path, relative(ctx, target)):
        part = protected_part(name)
        if part is not None:
            raise ToolFailure(f"{what} {path!r} is inside {part!r}; no tool reads or writes it")
    return target


def refused(path: str, why: Refused) -> ToolFailure:
    return ToolFailure(f"path {path!r} is refused: {why}")


def missing(ctx: ToolContext, path: str, target: Path) -> ToolFailure:
    """The error for a path that does not exist, with a near name if there is one."""
    hint = ""
    if target.parent.is_dir():
        close = difflib.get_close_matches(target.name, [p.name for p in target.parent.iterdir()], 1)
        if close:
            near = relative(ctx, target.parent / close[0])
            hint = f" (did you mean {near!r}?)"
    return ToolFailure(f"no such file or directory {path!r}{hint}")


def walk(ctx: ToolContext, top: Path, max_depth: int) -> Iterator[tuple[Path, bool]]:
    """Yield ``(path, is_dir)`` under ``top`` in sorted order, depth first.

    Each directory is read through a descriptor opened beneath the workspace, so one
    swapped for a symlink meanwhile is skipped, never followed out. Protected
    directories are left out, noise directories are yielded but not entered, and
    symlinked directories are not followed (they may lead anywhere).
    """
    root = ctx.root
    stack: list[tuple[str, int]] = [(relative(ctx, top), max_depth)]
    while stack:
        where, depth = stack.pop()
        try:
            entries = scan(root, where)
        except (OSError, Refused):
            continue
        below: list[tuple[str, int]] = []
        for name, is_dir in entries:
            rel = name if where == "." else f"{where}/{name}"
            yield root / rel, is_dir
            if is_dir and depth > 1 and name not in NOISE_DIRS:
                below.append((rel, depth - 1))
        stack.extend(reversed(below))


def _as_written(ctx: ToolContext, path: str) -> str:
    """``path`` relative to the workspace, as its words say (no link followed); empty
    when they say a place outside it."""
    lexical = Path(os.path.normpath(ctx.root / path))
    return lexical.relative_to(ctx.root).as_posix() if lexical.is_relative_to(ctx.root) else ""


def read_bytes(ctx: ToolContext, path: str, target: Path, limit: int) -> bytes:
    """A regular file's bytes, read beneath the workspace (see :mod:`.beneath`)."""
    try:
        return read_regular(ctx.root, relative(ctx, target), limit)
    except Refused as why:
        raise refused(path, why) from None
    except FileNotFoundError:
        raise missing(ctx, path, target) from None
    except IsADirectoryError:
        raise ToolFailure(f"{path!r} is a directory; use list_files to see what is in it") from None


def atomic_write(ctx: ToolContext, path: str, target: Path, content: str) -> bool:
    """Write ``content`` so readers never see half a file; keep an existing file's mode;
    return whether the file existed. Done through the directory's descriptor, beneath
    the workspace: a swapped symlink cannot carry the write out."""
    where = relative(ctx, target)
    if ctx.approved and where != _as_written(ctx, path):
        # a write a human approved goes where its path says, through no link: one a
        # step pointed elsewhere while the card waited carried it there
        raise ToolFailure(
            f"{path!r} leads through a link to {where!r}: a write a human approved is "
            "made through no link; write to the path it leads to"
        )
    try:
        # newline="" semantics: the model's line endings are written as given
        kept = ctx.sandbox.held_files(ctx.root) if ctx.sandbox is not None else ()
        data = content.encode()
        return write_replacing(ctx.root, where, data, kept, links=not ctx.approved)
    except Refused as why:
        raise refused(path, why) from None
    except IsADirectoryError:
        raise ToolFailure(f"{path!r} is a directory, not a file") from None
    except NotADirectoryError:
        raise ToolFailure(f"a part of {path!r} is a file, not a directory") from None
