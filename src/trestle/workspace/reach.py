"""What a step can redirect: a path whose resolving visits the workspace, and the
driver's own search path without such entries.

A step writes its workspace (and nothing else the host keeps), so wherever a path is
resolved through it, a link there or the workspace itself decides what it leads to:
that is the step's choice, at any later time. The sandbox uses this to judge what it
may show a command (:mod:`trestle.execution.sandbox_mounts`); the driver to find the
programs it runs itself, outside the sandbox (git, bubblewrap).
"""

from __future__ import annotations

import os
from pathlib import Path


def reached_through(entry: Path | str, ws: Path, links: int = 0) -> bool:
    """Whether resolving ``entry`` visits the workspace ``ws``: the path as written, a
    directory on the way, or a link's target. Where it does, what it resolves to is a
    step's choice. What is reached only through what lies outside, no step can change,
    so this is decided once (the tool directories, a hidden directory's real path).

    Walked on strings, not paths: ``sandbox.read`` entries are judged for every
    command, and building a path for each step of the walk tripled its cost."""
    if links > 40:
        return True  # a loop of links: nothing to show
    text, top = os.fspath(entry), _prefix(str(ws))
    if not text.startswith("/"):
        text = os.path.join(os.getcwd(), text)
    current = "/"
    for name in text.split("/"):
        if not name:
            continue
        current = os.path.normpath(os.path.join(current, name))  # no link in it so far
        if _prefix(current).startswith(top):
            return True
        try:
            target = os.readlink(current)
        except OSError:
            continue  # not a link, or missing
        linked = os.path.join(os.path.dirname(current), target)
        if reached_through(linked, ws, links + 1):
            return True
        current = os.path.realpath(linked)
    return False


def search_path_outside(search_path: str, ws: Path) -> str:
    """``search_path`` (a ``PATH``) without the entries a step could fill: those that
    are relative (the working directory is often the workspace) or that resolve
    through the workspace ``ws`` (a project's activated virtualenv, ``node_modules/.bin``).
    The driver finds the programs it runs itself on what is left: a ``git`` or
    ``bwrap`` a step planted there would otherwise run unconfined, as the driver."""
    real = Path(os.path.realpath(ws))
    kept = [
        entry
        for entry in search_path.split(os.pathsep)
        if entry.startswith("/") and not reached_through(entry, real)
    ]
    return os.pathsep.join(kept)


def _prefix(path: str) -> str:
    """``path`` ending in one ``/``: ``/tmp/`` starts ``/tmp/x/`` but not ``/tmpx/``."""
    return path.rstrip("/") + "/"
