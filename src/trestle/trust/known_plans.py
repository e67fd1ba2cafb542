"""The plan files this account has run, and the ``python:`` code they pin.

A run keeps its own plan file and code read-only to its commands
(:mod:`trestle.execution.run_files`). Another run in the same workspace (an agent
run, another plan) knows nothing of them, and its step could rewrite them for the
next ``trestle run``. So every run started from a plan file notes the file's real path,
and each file its ``python:`` steps import, here; every run's sandbox then holds those
in its workspace read-only too, and the agent's file tools refuse them.

The list is ``plans-run`` in Trestle's configuration directory, which every sandbox
hides: one JSON string a line (a path may hold a line break), appended under a lock.
Past :data:`MAX_BYTES` it is rewritten to the :data:`MAX_KNOWN` newest distinct
paths. Beside it, ``plans-code.json`` remembers what each plan's named modules imported
when it last ran (:func:`code_changed`), so a change there is said at the next run.
A list that cannot be written (a read-only home) leaves each run holding only its own
files; one that cannot be read holds nothing more.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from trestle.support.whole_files import locked, write_whole
from trestle.trust.signing import config_dir

KNOWN_FILE = "plans-run"
CODE_FILE = "plans-code.json"  # what each plan's python: code imported when it last ran
MAX_PLANS = 500  # plans whose code is remembered
MAX_KNOWN = 2_000  # distinct paths kept
MAX_BYTES = 512 * 1024  # appended before the list is rewritten


def known_file() -> Path:
    return config_dir() / KNOWN_FILE


def note_run_files(paths: Iterable[str]) -> None:
    """Add ``paths`` (real, absolute) to the list; a list that cannot be written is
    left as it is (the run still holds its own files)."""
    lines = "".join(json.dumps(p) + "\n" for p in dict.fromkeys(paths))
    if not lines:
        return
    path = known_file()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with locked(_lock(path)):  # one writer at a time: a rewrite loses no line appended
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, lines.encode())
                grown = os.fstat(fd).st_size > MAX_BYTES
            finally:
                os.close(fd)
            if grown:
                _compact(path)
    except OSError:
        return


def known_in(ws: Path) -> tuple[str, ...]:
    """The noted paths that lie in the workspace ``ws`` (a real path)."""
    inside = str(ws).rstrip("/") + "/"
    # asked at every drive's start: only the lines that can name a path inside are
    # decoded (a path's JSON begins with its own, but for what JSON escapes)
    begins = json.dumps(inside)[:-1]
    try:
        lines = [line for line in _read(known_file()) if line.startswith(begins)]
    except OSError:
        return ()
    return tuple(p for p in dict.fromkeys(_paths(lines)) if p.startswith(inside))


def code_changed(plan: str, imported: dict[str, str]) -> list[str]:
    """The files of ``imported`` (``{path: sha256}``: what a plan's named modules import
    in turn, found as :func:`trestle.formats.python_code.python_sources` finds them)
    that changed, or came, since the plan at ``plan`` last noted its code here; then
    note these. Nothing for a plan never noted, or where the record cannot be read.

    Later runs do not hold those files read-only (they are often the project's own
    code, which another run may be asked to change), so a change is said instead:
    a step of another run may have made it, and the next run imports it into the
    driver."""
    path = config_dir() / CODE_FILE
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with locked(_lock(path)):
            try:
                held = json.loads(path.read_text(encoding="utf-8"))
            except (FileNotFoundError, ValueError):
                held = {}
            if not isinstance(held, dict):
                held = {}
            before = held.pop(plan, None)
            held[plan] = imported  # the newest last: the oldest go first
            for name in list(held)[: max(0, len(held) - MAX_PLANS)]:
                del held[name]
            write_whole(path, json.dumps(held))
    except OSError:
        return []
    if not isinstance(before, dict):
        return []
    return [f for f, digest in imported.items() if before.get(f) != digest]


def _read(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def _paths(lines: list[str]) -> list[str]:
    paths = []
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError:
            continue  # a line cut short by a full disk: the others still count
        if isinstance(value, str) and value.startswith("/"):
            paths.append(value)
    return paths


def _lock(path: Path) -> Path:
    return path.with_name(f"{path.name}.lock")


def _compact(path: Path) -> None:
    """Rewrite the list to its newest :data:`MAX_KNOWN` distinct paths."""
    newest = list(dict.fromkeys(reversed(_paths(_read(path)))))[:MAX_KNOWN]
    write_whole(path, "".join(json.dumps(p) + "\n" for p in reversed(newest)))
