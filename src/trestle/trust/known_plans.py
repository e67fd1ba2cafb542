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
paths. A list that cannot be written (a read-only
home) leaves each run holding only its own files; one that cannot be read holds
nothing more.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from trestle.trust.signing import config_dir

KNOWN_FILE = "plans-run"
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
        with _locked(path):  # one writer at a time: a rewrite loses no line appended
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


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path.with_name(f"{KNOWN_FILE}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _compact(path: Path) -> None:
    """Rewrite the list to its newest :data:`MAX_KNOWN` distinct paths, whole: a
    reader sees the old list or the new one."""
    newest = list(dict.fromkeys(reversed(_paths(_read(path)))))[:MAX_KNOWN]
    temporary = path.with_name(f".{KNOWN_FILE}.{secrets.token_hex(4)}")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(p) + "\n" for p in reversed(newest))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
