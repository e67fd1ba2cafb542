"""What a step can redirect: a path whose resolving visits the workspace, and the
driver's own search path without such entries.

A step writes its workspace (and nothing else the host keeps), so wherever a path is
resolved through it, a link there or the workspace itself decides what it leads to:
that is the step's choice, at any later time. The sandbox uses this to judge what it
may show a command (:mod:`trestle.execution.sandbox_mounts`); the driver to find the
programs it runs itself, outside the sandbox (:func:`program`: git, bubblewrap,
``notify-send``, the human's editor).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

# Every workspace this process has noted (each run's, as its sandbox is chosen; the
# runs an approver or the sweep reads): a program the driver runs is
# found outside all of them, also where the caller knows no workspace (the notifier
# sends a run's notices from its own thread; an approver's editor). A process-wide set,
# not a parameter, since a step of any run this process drives can write its workspace
# for as long as the process lives; it only grows.
_WORKSPACES: set[str] = set()
_WORKSPACES_LOCK = threading.Lock()


def reached_through(entry: Path | str, ws: Path) -> bool:
    """Whether resolving ``entry`` visits the workspace ``ws``: the path as written, a
    directory on the way, or a link's target. Where it does, what it resolves to is a
    step's choice. What is reached only through what lies outside, no step can change,
    so this is decided once (the tool directories, a hidden directory's real path).

    Walked on strings, not paths: ``sandbox.read`` entries are judged for every
    command, and building a path for each step of the walk tripled its cost."""
    top = _prefix(str(ws))
    return any(place is None or _prefix(place).startswith(top) for place in _visits(entry))


def _reaches_any(entry: str, spaces: frozenset[str]) -> bool:
    """Whether resolving ``entry`` visits any of the real paths ``spaces``: each place
    visited is looked up with its parents, so the cost does not grow with their count."""
    for place in _visits(entry):
        if place is None:
            return True
        while True:
            if place in spaces:
                return True
            if place == "/":
                break
            place = os.path.dirname(place)
    return False


def _visits(entry: Path | str, links: int = 0) -> Iterator[str | None]:
    """Every place resolving ``entry`` visits, without a link in it: each directory on
    the way as written, then each link's target in turn; None for a loop of links."""
    if links > 40:
        yield None  # a loop of links: nothing to show
        return
    text = os.fspath(entry)
    if not text.startswith("/"):
        text = os.path.join(os.getcwd(), text)
    current = "/"
    for name in text.split("/"):
        if not name:
            continue
        current = os.path.normpath(os.path.join(current, name))  # no link in it so far
        yield current
        try:
            target = os.readlink(current)
        except OSError:
            continue  # not a link, or missing
        linked = os.path.join(os.path.dirname(current), target)
        yield from _visits(linked, links + 1)
        current = os.path.realpath(linked)


def note_workspace(ws: Path | str) -> None:
    """Remember ``ws`` as a workspace of this process: :func:`program` and
    :func:`search_path_outside` leave out the ``PATH`` entries it reaches, from now on."""
    real = os.path.realpath(ws)
    with _WORKSPACES_LOCK:
        _WORKSPACES.add(real)


def search_path_outside(search_path: str, ws: Path | None = None) -> str:
    """``search_path`` (a ``PATH``) without the entries a step could fill: those that
    are relative (the working directory is often the workspace) or that resolve
    through the workspace ``ws`` or any other this process noted (a project's activated
    virtualenv, ``node_modules/.bin``). The driver finds the programs it runs itself on
    what is left: a ``git``, ``bwrap`` or ``notify-send`` a step planted there would
    otherwise run unconfined, as the driver."""
    with _WORKSPACES_LOCK:
        spaces = frozenset(_WORKSPACES)
    if ws is not None:
        spaces |= {os.path.realpath(ws)}
    kept = [
        entry
        for entry in search_path.split(os.pathsep)
        if entry.startswith("/") and not _reaches_any(entry, spaces)
    ]
    return os.pathsep.join(kept)


def program(
    name: str, search_path: str | None = None, workspaces: Iterable[Path | str] = ()
) -> str | None:
    """The program ``name`` the driver runs itself, unconfined, or None: an absolute
    ``name`` as the operator named it, else ``name`` found on ``search_path`` (default
    ``$PATH``) without the entries a step could fill (see :func:`search_path_outside`;
    ``workspaces`` are noted first). Never one resolving through a noted workspace (a
    link to it, a ``$EDITOR`` named there), nor a relative name with a ``/`` (the
    working directory is often a workspace)."""
    for ws in workspaces:
        note_workspace(ws)
    if "/" in name and not name.startswith("/"):
        return None
    if name.startswith("/"):
        found = shutil.which(name)  # if it is an executable file
    else:
        search = os.environ.get("PATH", os.defpath) if search_path is None else search_path
        found = shutil.which(name, path=search_path_outside(search))
    with _WORKSPACES_LOCK:
        spaces = frozenset(_WORKSPACES)
    if found is None or _reaches_any(found, spaces):
        return None
    return found


def _prefix(path: str) -> str:
    """``path`` ending in one ``/``: ``/tmp/`` starts ``/tmp/x/`` but not ``/tmpx/``."""
    return path.rstrip("/") + "/"
