"""The driver's own files a step could reach through the workspace.

The driver runs outside the sandbox, so whatever it imports or opens after a step ran
must be out of that step's reach. Two setups put some of it in the workspace:

- **its Python environment** (a project virtualenv at ``<workspace>/.venv`` that
  ``trestle`` runs from): a ``.pth`` file or a module planted there runs, unconfined, at
  the driver's next lazy import and in every process it starts. Such an environment is
  mounted read-only in every sandbox (:func:`read_only_mounts`), and the directories on
  the way to it are mount points, so no command renames it away either. Where that
  cannot hold (the path passes through a link in the workspace, which a command can
  point elsewhere; a ``sys.path`` entry that is the project's own source), it is said.
- **the store, the key or the configuration named through a workspace link** (or
  through a directory a command could still create there): the sandbox hides what the
  path leads to now, but a command can repoint the link, and the next driver then
  opens a store or key the command chose. That is said at every drive's start.

What is said (:attr:`DriverFiles.exposed`) is recorded with the sandbox chosen, shown
when the run starts and by ``trestle show``.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from trestle.execution.sandbox_mounts import reached_through, writable_dirs
from trestle.workspace.beneath import is_real_dir

_MAX_LINKS = 40


@dataclass(frozen=True)
class DriverFiles:
    """What of the driver's Python lies in a workspace.

    Attributes:
        held: real directories inside the workspace mounted read-only in every sandbox
            (the driver's ``sys.prefix`` and friends).
        exposed: one sentence for each path no mount can keep from a step: the path,
            what a step could do with it, and the fix.
    """

    held: tuple[Path, ...] = ()
    exposed: tuple[str, ...] = ()

    def note(self) -> str:
        """Said in the sandbox's detail: why an install into that environment fails."""
        if not self.held:
            return ""
        return "; read-only to commands (the driver's own Python): " + ", ".join(
            map(str, self.held)
        )


def driver_python(ws: Path) -> DriverFiles:
    """The driver's Python environment as it lies in the workspace ``ws`` (real path)."""
    prefixes = (sys.prefix, sys.exec_prefix, sys.base_prefix)
    return _driver_python(ws, prefixes, tuple(sys.path), _package())


@functools.cache
def _package() -> str:
    """The trestle package's directory (asked for every command: resolved once)."""
    return str(Path(__file__).resolve().parents[1])


@functools.lru_cache(maxsize=8)
def _driver_python(
    ws: Path, prefixes: tuple[str, ...], import_path: tuple[str, ...], package: str
) -> DriverFiles:
    # Decided once per setting: a held directory is read-only to every command and a
    # mount point, so no command can change the answer afterwards.
    held: list[Path] = []
    exposed: list[str] = []
    for prefix in dict.fromkeys(Path(p) for p in prefixes):
        if not reached_through(prefix, ws):
            continue
        real = Path(os.path.realpath(prefix))
        if real == ws or not within(ws, real) or link_in(prefix, ws):
            exposed.append(
                f"the driver's Python environment {prefix} is reached through the "
                "workspace where no mount can keep it: a step's command can plant a .pth "
                "file or a module there, which this driver and the processes it starts "
                "run outside the sandbox; move the virtualenv out of the workspace (or "
                "install trestle elsewhere: pipx, uv tool)"
            )
        elif real not in held:
            held.append(real)
    for entry in (*import_path, package):
        path = Path(entry or os.getcwd())
        if not reached_through(path, ws):
            continue
        real = Path(os.path.realpath(path))
        fixed = tuple(held)  # a link inside a read-only directory stays as it is
        if any(within(h, real) for h in held) and not link_in(path, ws, fixed):
            continue
        exposed.append(
            f"the driver imports Python from {path}, in the workspace: a step's command "
            "can plant or change a module there, which this driver imports later outside "
            "the sandbox; install trestle out of the workspace (not in editable mode from "
            "the project, not run with python -m from inside it)"
        )
    return DriverFiles(tuple(held), tuple(dict.fromkeys(exposed)))


def read_only_mounts(ws: Path, scope: tuple[str, ...], held: tuple[Path, ...]) -> list[str]:
    """Bubblewrap arguments that make each ``held`` directory read-only, after the
    workspace's own mounts; each writable directory on the way to one is bound on
    itself, so no command renames it away and leaves one of its own in its place."""
    if not held:
        return []
    dirs = writable_dirs(ws, scope)
    writable = [f"{w}{os.sep}" for w in ([ws] if dirs is None else dirs)]
    args: list[str] = []
    seen: set[str] = set()  # each way judged once: a repository's submodules share theirs
    for path in held:
        ways = []
        way = os.path.dirname(str(path))
        while way not in seen and way != os.path.dirname(way):
            ways.append(way)
            way = os.path.dirname(way)
        for way in reversed(ways):  # outermost first
            seen.add(way)
            if any(way.startswith(w) for w in writable) and is_real_dir(way):
                args += ["--bind", way, way]
        args += ["--ro-bind", str(path), str(path)]
    return args


def named_paths(ws: Path, named: Mapping[str, Path | None]) -> tuple[str, ...]:
    """For each of the driver's files (``named``: what it is -> its path as the driver
    names it) that a command could redirect: a sentence naming it, what a command
    could do, and the fix."""
    said: list[str] = []
    for what, path in named.items():
        if path is None or not link_in(path, ws):
            continue
        said.append(
            f"{what} is named through the workspace ({path}): a step's command can point "
            f"a link on the way somewhere else, and the next driver then opens {what} the "
            f"command chose; keep {what} out of the workspace, or name its real path"
        )
    return tuple(said)


def link_in(entry: Path, ws: Path, fixed: tuple[Path, ...] = (), links: int = 0) -> bool:
    """Whether resolving ``entry`` crosses a link that lies in the workspace ``ws``, or
    a name in it that does not exist yet (a command can make either lead anywhere),
    but for those in a ``fixed`` directory (read-only to every command)."""
    if links > _MAX_LINKS:
        return True
    current = Path(entry.absolute().anchor)
    for name in entry.absolute().parts[1:]:
        current = Path(os.path.normpath(current / name))  # no link in current so far
        inside = within(ws, current) and not any(within(f, current) for f in fixed)
        if inside and not os.path.lexists(current):
            return True
        try:
            target = os.readlink(current)
        except OSError:
            continue  # not a link, or missing
        if inside:
            return True
        linked = current.parent / target
        if link_in(linked, ws, fixed, links + 1):
            return True
        current = Path(os.path.realpath(linked))
    return False


def within(parent: Path, path: Path) -> bool:
    return path.parts[: len(parent.parts)] == parent.parts
