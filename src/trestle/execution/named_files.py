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
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from trestle.core.invocations import SHELLS
from trestle.core.launchers import launcher_key, launches, parallel_launches
from trestle.core.policy import command_shape
from trestle.core.shellparse import MAX_DEPTH, SimpleCommand, Word, parse

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
# programs that run the code of the first file they are given
INTERPRETER = re.compile(r"(python|pypy|perl|ruby|node|php|lua|Rscript|tclsh|bun|deno)[0-9.]*")
SCRIPT_DEPTH = 3  # scripts sourced or run by named scripts, this many levels down
MAX_SCRIPT_BYTES = 1 << 20
MAX_NAMED = 256


def named_files(command: str, workspace: Path, *, most: int | None = None) -> dict[str, str]:
    """``{path relative to the workspace: sha256 of its content, or "absent"}`` for
    every workspace file ``command`` names or reads its code from (see the module
    docstring); paths in sorted order. With ``most``, a file of more bytes is not read
    (see :func:`digest`): an approval is bound to every byte, a record of what an
    attempt read need not be."""
    root = workspace.resolve()
    found: dict[str, str] = {}
    scripts = [command]
    for depth in range(SCRIPT_DEPTH + 1):
        named: list[str] = []
        for text in scripts:
            named += _names(text, root, found, most)
        if depth == SCRIPT_DEPTH:
            break
        # what a named shell script sources or runs is as much the command's code
        scripts = [t for t in map(lambda r: _shell_script(root / r), named) if t is not None]
    return dict(sorted(found.items()))


def _names(command: str, root: Path, found: dict[str, str], most: int | None) -> list[str]:
    """Add to ``found`` the workspace files ``command`` names; return the new ones."""
    new: list[str] = []

    def add(relative: str) -> None:
        if relative not in found and len(found) < MAX_NAMED:
            found[relative] = digest(root / relative, most)
            new.append(relative)

    for simple in _simple_commands(command, 0):
        words = [w.value for w in simple.words if w.literal]
        # no words: a bare redirect reads its file too ("$(< deploy.sh)")
        program = PurePosixPath(words[0]).name if words else ""
        for name in IMPLICIT.get(program, ()):
            relative = _inside(root, name)
            if relative is not None:
                add(relative)
        read = [r.target.value for r in simple.redirects if not r.writes or r.op == "<>"]
        for word in words + read:
            for candidate in _candidates(word):
                relative = _inside(root, candidate)
                if relative is not None and (root / relative).is_file():
                    add(relative)
    return new


def _shell_script(path: Path) -> str | None:
    """The text of a shell script (``*.sh``, or a ``#!`` line naming a shell), else
    None. Read without following a FIFO, and only so much of it."""
    try:
        with _opened_regular(path) as f:
            head = f.read(MAX_SCRIPT_BYTES) if f is not None else None
    except OSError:
        return None
    if head is None:
        return None
    first = head.split(b"\n", 1)[0]
    shebang = first.startswith(b"#!") and any(
        os.path.basename(word.decode("latin-1")) in SHELLS for word in first[2:].split()[:2]
    )
    if not (shebang or path.suffix in (".sh", ".bash")):
        return None
    return head.decode("utf-8", errors="replace")


def executed_files(command: str, workspace: Path) -> set[str]:
    """The workspace files among those ``command`` names that it runs as code: a
    program given by its path, a script handed to a shell or an interpreter (through a
    launcher too: ``timeout 60 sh deploy.sh``, ``env bash deploy.sh``, ``nice
    ./deploy.sh``), or fed to one on its input (``sh < deploy.sh``), a file sourced
    (``.``, ``source``), a file a program reads its code from (``make``'s Makefile),
    the value of an option that names one (``awk -f``, ``make -f``, ``bash
    --init-file``, ``node --require``), a file named with the suffix of code (``pytest
    x.py``), and, inside named shell scripts, the same, a few levels down. Where a shell
    or an interpreter reads its code from a pipe (``cat deploy.sh | sh``), or the line
    holds a substitution (``bash -c "$(cat deploy.sh)"``, ``source <(cat x)``), every
    file the line names is. A file the line writes (``>> log``, ``sed -i x``) is not,
    nor one it only reads as data by no suffix of code (``< input``).

    A reader, not the shell: what it cannot see run as code is still bound to the
    approval by its digest, checked just before the command starts (see
    docs/security.md for what that leaves open)."""
    root = workspace.resolve()
    found: set[str] = set()
    scripts = [command]
    for depth in range(SCRIPT_DEPTH + 1):
        new: list[str] = []
        for text in scripts:
            simples = list(_simple_commands(text, 0))
            # which of its files reaches a pipe, or a substitution ("$(cat x.sh)",
            # <(cat x.sh)), is not read here: each file the line names counts
            piped = parse(text).substitutions or any(_code_unseen(s) for s in simples)
            # (but those the line writes: `echo x >> log; test "$(wc -l < log)"`)
            written = set(command_shape(text).writes)
            named = {
                r for r in _names(text, root, {}, 0) if r not in written and f"./{r}" not in written
            }
            # and a file named by the suffix of code, whatever runs it (awk -f x.awk,
            # pytest x.py, deno run x.ts)
            suffixed = {r for r in named if PurePosixPath(r).suffix in CODE_SUFFIXES}
            for simple in simples:
                code = set(_code_words(simple, root)) | set(named if piped else suffixed)
                for relative in sorted(code):
                    if relative not in found and len(found) < MAX_NAMED:
                        found.add(relative)
                        new.append(relative)
        if depth == SCRIPT_DEPTH:
            break
        scripts = [t for t in (_shell_script(root / r) for r in new) if t is not None]
    return found


# stands first in the words yielded for a command line a launcher runs, then the line
_LINE = "\0line"


def _launched(words: list[Word], depth: int = 0, *, lines: bool = False) -> Iterator[list[Word]]:
    """``words``, and what each launcher among them runs, as their words (``timeout 60
    sh x.sh``: also ``sh x.sh``; ``find . -exec sh {} ;``: ``sh {}``); with ``lines``, a
    command line a launcher runs as ``[_LINE, line]`` too (``watch 'sh x.sh'``)."""
    yield words
    if not words or depth >= MAX_DEPTH:
        return
    name, rest = PurePosixPath(words[0].value).name, list(words[1:])
    if name == "find":  # -exec CMD {} ; and the like
        for i, word in enumerate(rest):
            if word.value in ("-exec", "-execdir", "-ok", "-okdir"):
                ends = [j for j in range(i + 1, len(rest)) if rest[j].value in (";", "+")]
                yield from _launched(rest[i + 1 : ends[0] if ends else len(rest)], depth + 1)
        return
    keyed = launcher_key(name, rest)
    found = parallel_launches(rest) if name == "parallel" else None
    for launch in found or (launches(*keyed) if keyed is not None else []):
        if launch.kind == "words":
            yield from _launched(list(launch.words), depth + 1, lines=lines)
        elif launch.kind == "line" and lines and launch.line is not None:
            yield [Word(raw=_LINE, value=_LINE), launch.line]


# for each family of programs that run code from a file: the options that give the code
# on the command line instead, and those whose value is the next word (``bash -o
# pipefail x.sh``, ``perl -I lib x.pl``); ``-e`` is a shell's errexit, perl's code
_SHELL_OPTIONS = (frozenset({"-c"}), frozenset({"-o", "+o", "-O", "+O", "--rcfile", "--init-file"}))
_OPTIONS = {
    "python": (frozenset({"-c", "-m"}), frozenset({"-W", "-X", "-Q", "--check-hash-based-pycs"})),
    "perl": (frozenset({"-e", "-E"}), frozenset({"-I", "-M", "-m"})),
    "ruby": (frozenset({"-e"}), frozenset({"-I", "-r", "-E", "-C"})),
    "node": (
        frozenset({"-e", "-p", "--eval", "--print"}),
        frozenset({"-r", "--require", "--import", "--loader", "--experimental-loader", "-C"})
        | frozenset({"--conditions", "--title"}),
    ),
}
_NO_OPTIONS: tuple[frozenset[str], frozenset[str]] = (frozenset({"-c", "-e", "-E"}), frozenset())
# paths through which a program reads its own input or an open descriptor
_INPUT = re.compile(r"/dev/stdin|/dev/fd/[0-9]+|/proc/self/fd/[0-9]+")


def _script_of(values: list[str]) -> str | None:
    """For a shell or an interpreter (``values``: its words), the file it runs its code
    from: its first argument that is no option nor an option's value (``bash -euo
    pipefail deploy.sh``: deploy.sh); ``-`` when it reads its input (``sh``, ``sh -s``,
    ``sh /dev/stdin``); None for another program, or code on the command line."""
    program = PurePosixPath(values[0]).name if values else ""
    if program in SHELLS or program in ("fish", "csh", "tcsh"):
        inline, valued = _SHELL_OPTIONS
    elif INTERPRETER.fullmatch(program):
        family = re.sub(r"[0-9.]+$", "", program)
        inline, valued = _OPTIONS.get(family, _NO_OPTIONS)
    else:
        return None
    arguments = iter(values[1:])
    for word in arguments:
        if word in ("-", "-s") or _INPUT.fullmatch(word):
            return "-"
        if not word.startswith(("-", "+")):
            return word
        if word.startswith("--"):
            name = word.partition("=")[0]
            if name in inline:
                return None
            if name in valued and "=" not in word:
                next(arguments, None)
            continue
        letters = word[1:]  # short options, perhaps bundled: -euo, -ec, -Ilib
        for k, letter in enumerate(letters):
            option = word[0] + letter
            if option in inline or f"-{letter}" in inline:
                return None
            if option in valued:
                if k == len(letters) - 1:
                    next(arguments, None)  # its value is the next word
                break  # or the rest of this one
    return "-"


def _code_unseen(simple: SimpleCommand) -> bool:
    """Whether ``simple`` is (or launches) a shell or an interpreter whose code comes
    from where this reader cannot tell which file it is: a pipe (its input not
    redirected from a file, nor a here-document), or a file ``find`` or ``xargs``
    fills in (``{}``)."""
    redirected = simple.heredoc or any(r.op in ("<", "<>") for r in simple.redirects)
    for words in _launched(list(simple.words)):
        script = _script_of([w.value for w in words if w.literal])
        if script == "{}" or (script == "-" and not redirected):
            return True
    return False


# options whose value is a file of code, by program: awk -f x.awk, make -f x.mk,
# bash --init-file rc, node --require ./x.js
_CODE_OPTIONS: dict[str, frozenset[str]] = {
    **dict.fromkeys(
        ("awk", "gawk", "mawk", "nawk", "sed", "jq"), frozenset({"-f", "--file", "--from-file"})
    ),
    **dict.fromkeys(("make", "gmake"), frozenset({"-f", "--file", "--makefile"})),
    "gdb": frozenset({"-x", "--command", "-ix", "--init-command"}),
    **dict.fromkeys(("bash", "rbash"), frozenset({"--init-file", "--rcfile"})),
    **dict.fromkeys(
        ("node", "nodejs"),
        frozenset({"-r", "--require", "--import", "--loader", "--experimental-loader"}),
    ),
    "ruby": frozenset({"-r", "--require"}),
    "vim": frozenset({"-S", "-u"}),
    "emacs": frozenset({"--script", "-l", "--load"}),
}
# the suffixes of files that hold code, whatever program reads them
CODE_SUFFIXES = frozenset(
    [
        ".sh",
        ".bash",
        ".zsh",
        ".ksh",
        ".fish",
        ".csh",
        ".py",
        ".pyw",
        ".js",
        ".mjs",
        ".cjs",
        ".ts",
        ".rb",
        ".pl",
        ".pm",
        ".php",
        ".lua",
        ".awk",
        ".sed",
        ".mk",
        ".jq",
        ".tcl",
        ".exp",
        ".expect",
        ".el",
        ".vim",
        ".scm",
        ".r",
        ".R",
        ".gdb",
    ]
)


def _option_code(program: str, arguments: list[str]) -> list[str]:
    """The values of ``program``'s options that name a file of code (see
    :data:`_CODE_OPTIONS`), given as the next word or after ``=``."""
    options = _CODE_OPTIONS.get(program, frozenset())
    found = []
    for i, word in enumerate(arguments):
        name, equals, value = word.partition("=")
        if name in options and equals:
            found.append(value)
        elif word in options and i + 1 < len(arguments):
            found.append(arguments[i + 1])
    return found


def _code_words(simple: SimpleCommand, root: Path) -> Iterator[str]:
    for words in _launched(list(simple.words)):
        values = [w.value for w in words if w.literal]
        if not values:
            continue
        program = values[0] if values[0] == "." else PurePosixPath(values[0]).name
        code: list[str] = [values[0]] if "/" in values[0] else []
        script = _script_of(values)
        if program in (".", "source") and not _INPUT.fullmatch(values[1] if values[1:] else ""):
            code += values[1:2]
        elif program in (".", "source") or script == "-":  # sh < deploy.sh
            code += [r.target.value for r in simple.redirects if r.op in ("<", "<>")]
        elif script is not None:
            code.append(script)
        code += list(IMPLICIT.get(program, ()))
        code += _option_code(program, values[1:])
        for word in code:
            relative = _inside(root, word)
            if relative is not None and (root / relative).is_file():
                yield relative


def changed(before: dict[str, str], now: dict[str, str]) -> list[str]:
    """The paths whose content differs between two :func:`named_files` results."""
    return sorted(p for p in set(before) | set(now) if before.get(p) != now.get(p))


def _simple_commands(command: str, depth: int) -> Iterator[SimpleCommand]:
    script = parse(command)
    for simple in (*script.commands, *script.nested):
        yield simple
        if depth >= MAX_DEPTH:
            continue
        # a shell's -c string is a command line of its own, behind a launcher too
        # (timeout 5 sh -c '...'), as is a line a launcher runs (watch 'sh x.sh')
        for words in _launched(list(simple.words), lines=True):
            values = [w.value for w in words]
            if values and values[0] == _LINE:
                yield from _simple_commands(values[1], depth + 1)
            elif values and PurePosixPath(values[0]).name in SHELLS:
                for i, word in enumerate(values[1:-1], start=1):
                    if word.startswith("-") and "c" in word[1:]:
                        yield from _simple_commands(values[i + 1], depth + 1)
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


# the largest file an approval binds: hashing more held the driver for minutes (a
# sparse file of 200 GB), past its SIGTERM; a larger one is bound by its size alone,
# which binds nothing, so the command does not run (see trestle.execution.pinning)
APPROVED_MOST = 256 * 1024 * 1024
_NOT_HASHED = "not hashed: "


def not_hashed(value: str) -> bool:
    """Whether a :func:`digest` is a file's size, not its hash: too large to read."""
    return value.startswith(_NOT_HASHED)


def digest(path: Path, most: int | None = None) -> str:
    """The file's sha256, or ``absent``; a special file (FIFO, device) is never read,
    nor more of a file than its size: a step can leave a link to a file of /proc that
    says it is empty and reads on for ever (``/proc/self/pagemap``: 256 GB of the
    driver's own page table, minutes of hashing before every approval and every start).
    A file of more than ``most`` bytes is not read at all (a sparse file of 100 GB took
    minutes to hash)."""
    try:
        info = os.stat(path)
    except OSError:
        return ABSENT
    if not stat.S_ISREG(info.st_mode):
        return f"not a regular file (mode {stat.filemode(info.st_mode)})"
    if most is not None and info.st_size > most:
        return f"{_NOT_HASHED}{info.st_size} bytes, over {most}"
    h = hashlib.sha256()
    try:
        with _opened_regular(path) as f:
            if f is None:
                return "not a regular file (it changed while it was looked at)"
            left = os.fstat(f.fileno()).st_size
            while left > 0 and (chunk := f.read(min(_CHUNK, left))):
                h.update(chunk)
                left -= len(chunk)
            if f.read(1):
                return "not a plain file: it reads on past its size"
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    return h.hexdigest()


@contextmanager
def _opened_regular(path: Path) -> Iterator[BinaryIO | None]:
    """``path`` opened to read, or None when it is no regular file. A device is never
    opened (opening some acts); the file is opened without waiting (a FIFO put in its
    place since it was looked at would hold the driver until a writer came) and judged
    again by its descriptor."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        yield None
        return
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        yield f if stat.S_ISREG(os.fstat(fd).st_mode) else None
