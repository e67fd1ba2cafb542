"""Paths a model gives, held inside the workspace; plus the walk and the write the
file tools share.

Every path argument goes through :func:`resolve`: absolute paths are refused outright,
and :func:`trestle.actions.jailed` refuses ``..`` and symlinks that lead outside. A
symlink that stays inside is followed. Writes are also refused inside ``.git`` (a hook
written there runs on the user's next commit) and ``.trestle`` (the run's own store).
"""

from __future__ import annotations

import difflib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from trestle.actions import jailed
from trestle.tools.base import ToolContext, ToolFailure

MAX_PATH_CHARS = 4096  # Linux's PATH_MAX
PROTECTED_DIRS = frozenset({".git", ".trestle"})  # never listed, searched or written
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
        return jailed(ctx.workspace, path or ".")
    except (ValueError, OSError) as exc:
        # ValueError: outside the jail, or a NUL byte; OSError: a symlink loop
        raise ToolFailure(f"{what} {path!r} is refused: {exc}") from None


def relative(ctx: ToolContext, target: Path) -> str:
    """``target`` as the model should write it: relative, with ``/``."""
    rel = target.relative_to(ctx.workspace.resolve()).as_posix()
    return rel or "."


def normalise(ctx: ToolContext, path: str) -> str:
    """The canonical workspace-relative form of a path (what a policy's rules match)."""
    return relative(ctx, resolve(ctx, path))


def resolve_for_write(ctx: ToolContext, path: str) -> Path:
    """Like :func:`resolve`, and also refuse the protected directories and ``.``."""
    target = resolve(ctx, path)
    rel = relative(ctx, target)
    if rel == ".":
        raise ToolFailure(f"path {path!r} is the workspace itself, not a file")
    if rel.split("/", 1)[0] in PROTECTED_DIRS:
        raise ToolFailure(f"path {path!r} is inside {rel.split('/', 1)[0]!r}; it is not writable")
    return target


def missing(ctx: ToolContext, path: str, target: Path) -> ToolFailure:
    """The error for a path that does not exist, with a near name if there is one."""
    hint = ""
    if target.parent.is_dir():
        close = difflib.get_close_matches(target.name, [p.name for p in target.parent.iterdir()], 1)
        if close:
            near = relative(ctx, target.parent / close[0])
            hint = f" (did you mean {near!r}?)"
    return ToolFailure(f"no such file or directory {path!r}{hint}")


def walk(top: Path, max_depth: int) -> Iterator[tuple[Path, bool]]:
    """Yield ``(path, is_dir)`` under ``top`` in sorted order, depth first.

    Protected directories are skipped, noise directories are yielded but not entered,
    and symlinked directories are not followed (they may lead anywhere).
    """
    try:
        entries = sorted(os.scandir(top), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.name in PROTECTED_DIRS:
            continue
        is_dir = entry.is_dir(follow_symlinks=False)
        yield Path(entry.path), is_dir
        if is_dir and max_depth > 1 and entry.name not in NOISE_DIRS:
            yield from walk(Path(entry.path), max_depth - 1)


def atomic_write(target: Path, content: str) -> None:
    """Write ``content`` so readers never see half a file; keep an existing file's mode."""
    mode = target.stat().st_mode if target.exists() else None
    target.parent.mkdir(parents=True, exist_ok=True)
    # a unique name, so parallel steps writing the same file never share a temp file
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.trestle-tmp")
    try:
        # newline="" keeps the model's line endings as written; "x" never clobbers
        with tmp.open("x", encoding="utf-8", newline="") as fh:
            fh.write(content)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
