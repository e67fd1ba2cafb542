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
import shlex
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from trestle.core.inline import code_file, from_input
from trestle.core.invocations import SHELLS, Invocation, follow
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
SCRIPT_DEPTH = 3  # scripts sourced or run by named scripts, this many levels down
MAX_SCRIPT_BYTES = 1 << 20
MAX_NAMED = 256


def named_files(
    command: str, workspace: Path, *, most: int | None = None, cwd: str = "."
) -> dict[str, str]:
    """``{path relative to the workspace: sha256 of its content, or "absent"}`` for
    every workspace file ``command`` names or reads its code from (see the module
    docstring); paths in sorted order. With ``most``, a file of more bytes is not read
    (see :func:`digest`): an approval is bound to every byte, a record of what an
    attempt read need not be. ``cwd``: the directory, relative to the workspace, the
    command runs in, which its relative paths start from (an agent's ``run_command``
    may be given one)."""
    root = workspace.resolve()
    base = _base(root, cwd)
    found: dict[str, str] = {}
    scripts = [command]
    for depth in range(SCRIPT_DEPTH + 1):
        named: list[str] = []
        for text in scripts:
            named += _names(text, root, base, found, most)
        if depth == SCRIPT_DEPTH:
            break
        # what a named shell script sources or runs is as much the command's code
        scripts = [t for t in map(lambda r: _shell_script(root / r), named) if t is not None]
    return dict(sorted(found.items()))


def names_any(command: str, workspace: Path) -> bool:
    """Whether ``command`` names a workspace file or reads its code from one: where it
    does not, :func:`named_files` finds none. Nothing is read, only looked up (the
    command's words, each a path at most), so a caller on the event loop can skip a
    thread for a command that names no file."""
    root = workspace.resolve()
    return next(_named(command, root, root), None) is not None


def _base(root: Path, cwd: str) -> Path:
    """The directory a command's relative paths start from: ``cwd`` in the workspace,
    as written (a ``..`` in it is the kernel's to follow: see :func:`_inside`)."""
    return root / cwd


def _names(
    command: str, root: Path, base: Path, found: dict[str, str], most: int | None
) -> list[str]:
    """Add to ``found`` the workspace files ``command`` names; return the new ones."""
    new: list[str] = []
    for relative in _named(command, root, base):
        if relative not in found and len(found) < MAX_NAMED:
            found[relative] = digest(root / relative, most)
            new.append(relative)
    return new


def _named(command: str, root: Path, base: Path) -> Iterator[str]:
    """The workspace paths ``command``, run in ``base``, names or reads its code from,
    relative to ``root``, in the order it first gives them."""
    # each word looked up once: a wrapper's invocation holds the words of every one
    # inside it, and nested ones repeat them (a long line of them took seconds)
    seen: set[str] = set()
    for simple in _simple_commands(command, 0):
        words = [w.value for w in simple.words if w.literal]
        # no words: a bare redirect reads its file too ("$(< deploy.sh)")
        program = PurePosixPath(words[0]).name if words else ""
        for name in IMPLICIT.get(program, ()):
            relative = _inside(root, name, base)
            if relative is not None:
                yield relative
        read = [r.target.value for r in simple.redirects if not r.writes or r.op == "<>"]
        words = [*map(_unquoted, simple.assignments), *words, *read]
        yield from _files_among(words, root, base, seen)
    # and the words of what a launcher runs as a command line of its own (timeout 5 sh
    # -c '...', watch '...'), as the policy's reader follows them
    for invocation in follow(parse(command)).invocations:
        stdin = [invocation.stdin] if invocation.stdin is not None else []
        words = [w.value for w in invocation.words if w.literal] + stdin
        yield from _files_among(words, root, base, seen)


def _files_among(words: list[str], root: Path, base: Path, seen: set[str]) -> Iterator[str]:
    """The workspace files ``words``, read from ``base``, name, relative to ``root``;
    none of those ``seen`` (each looked up is added to it)."""
    for word in words:
        if word in seen:
            continue
        seen.add(word)
        for candidate in _candidates(word):
            relative = _inside(root, candidate, base)
            if relative is not None and _regular(root / relative):
                yield relative


def _regular(path: Path) -> bool:
    """Whether ``path`` is a regular file (a link followed), as ``Path.is_file`` says,
    but False where it cannot be looked up at all: ``is_file`` raises for a word longer
    than a file name may be (any argument of 256 bytes or more, ``python -c '...'``) or a
    directory a step made unsearchable, and a command line that names either is no file's
    name, not a reason for the driver to stop."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):  # ValueError: a NUL byte (no word here holds one)
        return False


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


def executed_files(command: str, workspace: Path, cwd: str = ".") -> set[str]:
    """The workspace files among those ``command`` names that it runs as code, read
    from what it runs as :func:`trestle.core.invocations.follow` sees it (through
    launchers: ``timeout 60 sh deploy.sh``, ``find -exec``, ``sh -c '...'``): a program
    given by its path, the file a shell or an interpreter runs
    (:func:`trestle.core.inline.code_file`: ``bash -euo pipefail deploy.sh``, or its
    input, ``sh < deploy.sh``), a file sourced (``.``, ``source``), a file a program
    reads its code from (``make``'s Makefile), the value of an option that names one
    (``awk -f``, ``bash --init-file``, ``node --require``), a file named with the
    suffix of code (``pytest x.py``), and, inside named shell scripts, the same, a few
    levels down. Where the line runs something the follower cannot see (code from a
    pipe, ``cat deploy.sh | sh``; a substitution, ``bash -c "$(cat deploy.sh)"``;
    ``eval``), every file it names is. A file the line writes (``>> log``, ``sed -i
    x``) never is.

    A reader, not the shell: what it cannot see run as code is still bound to the
    approval by its digest, checked just before the command starts (see
    docs/security.md for what that leaves open). ``cwd`` as for :func:`named_files`."""
    root = workspace.resolve()
    base = _base(root, cwd)
    found: set[str] = set()
    scripts = [command]
    for depth in range(SCRIPT_DEPTH + 1):
        new: list[str] = []
        for text in scripts:
            script = parse(text)
            meaning = follow(script)
            written = {_inside(root, w, base) for w in meaning.writes} - {None}
            named = {r for r in _names(text, root, base, {}, 0) if r not in written}
            code = {r for r in named if PurePosixPath(r).suffix in CODE_SUFFIXES}
            words = [w for i in meaning.invocations for w in _code_words(i)]
            words += _variables_code(text)
            if script.substitutions or meaning.unknown or "{}" in words:
                code |= named  # which of them it runs is not read here
            code |= {r for r in (_inside(root, w, base) for w in words) if r is not None}
            # one it writes too stays writable (sh x > x), but what a program reads its
            # code from on its input, opened read-write or not (sh <>x)
            fed = {
                _inside(root, i.stdin, base)
                for i in meaning.invocations
                if i.stdin is not None and i.stdin in words
            }
            code -= {r for r in code if r in written and r not in fed}
            for relative in sorted(code):
                fresh = relative not in found and len(found) < MAX_NAMED
                if fresh and _regular(root / relative):
                    found.add(relative)
                    new.append(relative)
        if depth == SCRIPT_DEPTH:
            break
        scripts = [t for t in (_shell_script(root / r) for r in new) if t is not None]
    return found


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
# fmt: off
CODE_SUFFIXES = frozenset({
    ".sh", ".bash", ".zsh", ".ksh", ".fish", ".csh", ".py", ".pyw", ".js", ".mjs", ".cjs",
    ".ts", ".rb", ".pl", ".pm", ".php", ".lua", ".awk", ".sed", ".mk", ".jq", ".tcl",
    ".exp", ".expect", ".el", ".vim", ".scm", ".r", ".R", ".gdb",
})
# fmt: on


def _code_words(invocation: Invocation) -> list[str]:
    """The words of one program a line runs that name its code (see
    :func:`executed_files`); ``{}`` where ``find`` or ``xargs`` fills the file in."""
    if not invocation.words:
        return []
    values = [w.value for w in invocation.words if w.literal]
    head, arguments = invocation.words[0].value, values[1:]
    program = invocation.program
    code = [head] if "/" in head else []
    script: str | None
    if program in (".", "source"):  # . /dev/stdin < x sources its input
        given = arguments[1:] if arguments[:1] == ["--"] else arguments
        script = given[0] if given else None
        if any(from_input(w) for w in invocation.words[1:] if w.value == script):
            script = "-"
    else:
        script = code_file(program, arguments, shell=program in SHELLS)
    if script == "-":
        code += [invocation.stdin] if invocation.stdin is not None else []
    elif script is not None:
        code.append(script)
    code += IMPLICIT.get(program, ())
    return code + _option_values(arguments, _CODE_OPTIONS.get(program, frozenset()))


def _option_values(arguments: list[str], options: frozenset[str]) -> list[str]:
    """The values ``arguments`` give ``options`` (``-f x``, ``--file=x``)."""
    values = []
    for i, word in enumerate(arguments):
        name, equals, value = word.partition("=")
        if name in options and equals:
            values.append(value)
        elif word in options and i + 1 < len(arguments):
            values.append(arguments[i + 1])
    return values


# variables naming files a program runs as code as it starts, whatever the line runs:
# bash sources $BASH_ENV (sh, $ENV), the dynamic loader maps each library of
# $LD_PRELOAD and $LD_AUDIT, Python runs $PYTHONSTARTUP; and those holding options
# of a program's, read as its command line's (NODE_OPTIONS="--require ./x.js")
_CODE_VARIABLES = frozenset({"BASH_ENV", "ENV", "LD_PRELOAD", "LD_AUDIT", "PYTHONSTARTUP"})
_OPTION_VARIABLES = {"NODE_OPTIONS": "node", "RUBYOPT": "ruby"}


def _variables_code(command: str) -> list[str]:
    """The files the variables a line sets (``BASH_ENV=x bash ...``, ``env
    LD_PRELOAD=x.so ls``, ``export``) name as code (see :data:`_CODE_VARIABLES`)."""
    code: list[str] = []
    for simple in _simple_commands(command, 0):
        assigned = map(_unquoted, simple.assignments)
        for item in (*assigned, *(w.value for w in simple.words if w.literal)):
            name, equals, value = item.partition("=")
            if not equals or not _ASSIGNMENT.match(item):
                continue
            if name in _CODE_VARIABLES:
                code += [part for part in _VALUE_PARTS.split(value) if part]
            elif name in _OPTION_VARIABLES:
                options = _CODE_OPTIONS[_OPTION_VARIABLES[name]]
                code += _option_values(value.split(), options)
    return code


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
    elif _ASSIGNMENT.match(word):  # BASH_ENV=lib.sh, LD_PRELOAD=a.so:b.so, env's too
        for part in _VALUE_PARTS.split(word.partition("=")[2]):
            yield from _candidates(part)  # NODE_OPTIONS=--require=./x.js


_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def _unquoted(assignment: str) -> str:
    """An assignment as written (``A="x y"``) as the shell reads it (``A=x y``)."""
    try:
        words = shlex.split(assignment)
    except ValueError:
        return assignment
    return words[0] if len(words) == 1 else assignment


_VALUE_PARTS = re.compile(r"[:\s]+")


def _inside(root: Path, name: str, base: Path) -> str | None:
    """``name`` (relative to ``base``, a directory in the workspace, or absolute) as a
    path relative to the workspace, if it is written inside it. Lexically: a link in
    the workspace to a script elsewhere is still named here, and its target's content
    is what is hashed.

    But not past a ``..`` that follows a link: ``sh d/../deploy.sh`` with ``d`` a link
    to ``a/b`` runs ``a/deploy.sh``, not the ``deploy.sh`` the words spell once
    ``d/..`` is taken away (an approval was bound to, and pinned, the file that did not
    run). Such a path is named as written, ``d/../deploy.sh``, hashed as the kernel
    reads it, and, a link on its way, it cannot be held as approved (see
    :mod:`trestle.execution.pinning`): a command naming it as code does not run
    sandboxed, and its file is checked again before it runs unconfined."""
    spelled = base / name
    path = Path(os.path.normpath(spelled))
    if path == root or not path.is_relative_to(root):
        return None
    written = spelled.as_posix()
    through = ".." in written and ".." in spelled.parts  # a string's test first: cheap
    if through and os.path.realpath(spelled) != os.path.realpath(path):
        return written.removeprefix(f"{root.as_posix()}/")
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
