"""The files a run obeys or runs in the driver: its plan file and its ``python:`` code.

A plan file usually lies in the workspace it runs in, and so does the module its
``python:`` steps import. A command that rewrote either would not change the run that
ran it (the plan is read once, when the run is created, and the code is pinned by its
SHA-256), but the next ``trestle run`` of that file would obey it: a step set to
``approval: auto``, or code that runs in the driver, outside the sandbox, where the
approval key is. So every command of the run, of the child runs it delegates to, and
of any later run in the same workspace (the files are noted outside every sandbox:
:mod:`trestle.trust.known_plans`) sees these files read-only
(:func:`trestle.execution.driver_files.read_only_mounts`), and the directories on the
way to them are mount points no command can rename away.

A plan first run while another run goes on in the same workspace is held from that
run's next command on (:func:`noted_in`, asked for each): its commands started before
could still change it.

Where that cannot hold, it is said with the sandbox chosen, at every drive's start:
a file reached through a link in the workspace (a command can point the link
elsewhere), or a file with more than one name (a command writes it through another).
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from trestle.execution.driver_files import link_in, within
from trestle.trust.known_plans import known_file, known_in


@dataclass(frozen=True)
class RunFiles:
    """What of a run's own files lies in its workspace.

    Attributes:
        held: the real paths mounted read-only for every command.
        exposed: one sentence for each that no mount can keep from a command.
    """

    held: tuple[Path, ...] = ()
    exposed: tuple[str, ...] = ()

    def note(self) -> str:
        """Said in the sandbox's detail: why a command that writes one fails."""
        if not self.held:
            return ""
        return "; read-only to commands (plan files and their python: code): " + ", ".join(
            map(str, self.held)
        )


def run_files(ws: Path, named: Iterable[str]) -> RunFiles:
    """The run's files (``named``: absolute paths, as the run recorded them) that lie
    in the workspace ``ws`` (a real path), judged now."""
    held: list[Path] = []
    exposed: list[str] = []
    for name in dict.fromkeys(named):
        path = Path(name)
        real = Path(os.path.realpath(path))
        if not within(ws, path) and not within(ws, real):
            continue  # out of every command's reach: the rest of the system is read-only
        try:
            info = os.lstat(real)
        except OSError:
            continue  # gone: the next run of it fails to find it
        if not stat.S_ISREG(info.st_mode):
            continue
        if link_in(path, ws):
            exposed.append(
                f"{path} is reached through a link in the workspace: a step's command can "
                "point the link elsewhere, and the next run of this plan then reads "
                "what the command chose; name the plan's real path"
            )
        elif info.st_nlink > 1:
            exposed.append(
                f"{real} has {info.st_nlink} names (hard links): a step's command can "
                "change it through another one, and the next run of this plan then "
                "obeys or runs what the command wrote; give it a single name "
                "(cp it, then mv the copy over it)"
            )
        elif real not in held:
            held.append(real)
    return RunFiles(tuple(held), tuple(exposed))


def noted_in(ws: Path) -> tuple[Path, ...]:
    """The files held for every run in the workspace ``ws`` (a real path) as the list of
    plans run says now: a run chose its sandbox at its drive's start, and a plan first
    run since (from another terminal) is held from its next command on. Read again
    only when the list changed (one ``stat`` for each command otherwise)."""
    try:
        info = os.stat(known_file())
    except OSError:
        return ()
    return _noted(ws, (info.st_ino, info.st_size, info.st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _noted(ws: Path, version: tuple[int, int, int]) -> tuple[Path, ...]:
    return run_files(ws, known_in(ws)).held


def still_regular(paths: tuple[Path, ...]) -> tuple[Path, ...]:
    """Those of ``paths`` that are regular files now: a file removed meanwhile (by the
    operator, or by a command of another run) has nothing left to bind."""
    kept = []
    for path in paths:
        try:
            if stat.S_ISREG(os.lstat(path).st_mode):
                kept.append(path)
        except OSError:
            continue
    return tuple(kept)
