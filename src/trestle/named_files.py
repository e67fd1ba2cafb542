"""The workspace files a command names, by content: what an approval of it is bound to.

Approving ``sh deploy.sh`` approves the script as it read when the human saw it. The
action's hash covers only the command's text, so the engine also records, with the
approval request, a digest of every workspace file the command line names (any word,
at any depth of ``sh -c``, that is a path to a regular file in the workspace, and the
value of ``--opt=FILE``), plus the files a program reads its code from without naming
them (``make``: the Makefile; ``npm``/``yarn``/``pnpm``: ``package.json``; ``just``:
the justfile). Just before the approved action runs, the engine computes the same
digests again: any difference (a file changed, appeared or went away) refuses the
attempt and asks for a new approval.

A file that is not there is recorded as such (``absent``) only where a program reads
it implicitly; a word that names no file is an argument, not code.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from trestle.core.invocations import SHELLS
from trestle.core.shellparse import MAX_DEPTH, SimpleCommand, parse

ABSENT = "absent"

# programs that read their code from a file in the working directory they are not given
IMPLICIT: dict[str, tuple[str, ...]] = {
    "make": ("GNUmakefile", "makefile", "Makefile"),
    "gmake": ("GNUmakefile", "makefile", "Makefile"),
    "npm": ("package.json",),
    "yarn": ("package.json",),
    "pnpm": ("package.json",),
    "just": ("justfile", "Justfile", ".justfile"),
}

_CHUNK = 1 << 20


def named_files(command: str, workspace: Path) -> dict[str, str]:
    """``{path relative to the workspace: sha256 of its content, or "absent"}`` for
    every workspace file ``command`` names or reads its code from (see the module
    docstring); paths in sorted order."""
    root = workspace.resolve()
    found: dict[str, str] = {}
    for simple in _simple_commands(command, 0):
        words = [w.value for w in simple.words if w.literal]
        if not words:
            continue
        program = PurePosixPath(words[0]).name
        for name in IMPLICIT.get(program, ()):
            relative = _inside(root, name)
            if relative is not None:
                found[relative] = _digest(root / relative)
        for word in words + [r.target.value for r in simple.redirects if not r.writes]:
            for candidate in _candidates(word):
                relative = _inside(root, candidate)
                if relative is not None and (root / relative).is_file():
                    found[relative] = _digest(root / relative)
    return dict(sorted(found.items()))


def changed(before: dict[str, str], now: dict[str, str]) -> list[str]:
    """The paths whose content differs between two :func:`named_files` results."""
    return sorted(p for p in set(before) | set(now) if before.get(p) != now.get(p))


def _simple_commands(command: str, depth: int) -> Iterator[SimpleCommand]:
    script = parse(command)
    for simple in (*script.commands, *script.nested):
        yield simple
        words = [w.value for w in simple.words]
        # a shell's -c string is a command line of its own
        if depth < MAX_DEPTH and words and PurePosixPath(words[0]).name in SHELLS:
            for i, word in enumerate(words[1:-1], start=1):
                if word.startswith("-") and "c" in word[1:]:
                    yield from _simple_commands(words[i + 1], depth + 1)
                    break


def _candidates(word: str) -> Iterator[str]:
    if not word or "\0" in word:
        return
    yield word
    if word.startswith("-") and "=" in word:
        yield word.partition("=")[2]  # --file=deploy.sh


def _inside(root: Path, name: str) -> str | None:
    """``name`` (relative to the workspace, or absolute) as a path relative to it, if
    it is written inside it. Lexically: a link in the workspace to a script elsewhere
    is still named here, and its target's content is what is hashed."""
    path = Path(os.path.normpath(root / name))
    if path == root or not path.is_relative_to(root):
        return None
    return path.relative_to(root).as_posix()


def _digest(path: Path) -> str:
    """The file's sha256, or ``absent``; a special file (FIFO, device) is never read."""
    try:
        info = os.stat(path)
    except OSError:
        return ABSENT
    if not stat.S_ISREG(info.st_mode):
        return f"not a regular file (mode {stat.filemode(info.st_mode)})"
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    return h.hexdigest()
