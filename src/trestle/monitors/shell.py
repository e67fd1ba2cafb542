"""What an action is: a shell command line or a tool call, classified for the monitors.

Monitors care about a few things only: did the agent read (and what), edit (which
files), test (with which command), run something else, or declare itself done. The
same questions are asked of three sources: shell commands as SWE-agent and
mini-swe-agent agents issue them (``cd repo && grep -rn foo src``), SWE-agent's own
commands (``open``, ``str_replace_editor view``, ...), and Trestle's coding tools with
their JSON arguments. Both functions here answer with one :class:`Classified`.

A command line may chain several commands (``cd x && sed -i ... f && pytest``). It is
classified by its most consequential part: finish > edit > test > run > read, so a
chain that edits a file is an edit whatever it reads on the way. Reads keep their
target without line ranges (``sed -n '10,40p' a.py`` reads ``a.py``), so views of one
file with shifting ranges share a target. Pure functions, no IO.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from typing import NamedTuple

from trestle.monitors.trace import ActionKind

# Higher wins when a chain holds several kinds of command.
_RANK: dict[ActionKind, int] = {"other": 0, "read": 1, "run": 2, "test": 3, "edit": 4, "finish": 5}

SUBMIT_MARKERS = ("COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT", "MINI_SWE_AGENT_FINAL_OUTPUT")

_READERS = frozenset({"cat", "head", "tail", "less", "more", "nl", "wc", "tree", "ls", "file"})
_SEARCHERS = frozenset({"grep", "egrep", "fgrep", "rg", "ag", "ack"})
_MUTATORS = frozenset({"rm", "mv", "cp", "touch", "mkdir", "rmdir", "ln", "chmod"})
_GIT_READS = frozenset({"diff", "status", "log", "show", "blame", "grep", "ls-files"})
_GIT_WRITES = frozenset({"checkout", "restore", "reset", "stash", "apply", "am", "mv", "rm"})
_PYTHONS = re.compile(r"^python(\d(\.\d+)?)?$")
_TEST_SCRIPT = re.compile(
    r"(^|/)(test_[^/]*|[^/]*_test|reproduce[^/]*|repro[^/]*|runtests)\.py$", re.IGNORECASE
)
_TEST_RUNNERS = frozenset({"pytest", "py.test", "tox", "nox"})
# options whose next word is their value, not a path (head -n 20, grep -A 3 pat)
_HEAD_VALUED = frozenset({"-n", "-c", "--lines", "--bytes"})
_READER_VALUED: dict[str, frozenset[str]] = {
    "head": _HEAD_VALUED,
    "tail": _HEAD_VALUED,
    "tree": frozenset({"-L", "-I", "-P"}),
}
_GREP_VALUED = frozenset(
    {
        "-A",
        "-B",
        "-C",
        "-m",
        "-e",
        "-f",
        "-d",
        "-D",
        "-g",
        "-t",
        "-T",
        "--include",
        "--exclude",
        "--exclude-dir",
        "--glob",
        "--type",
        "--max-count",
        "--context",
    }
)
# SWE-agent's tools: the whole (possibly multi-line) command is one call, named by the
# first line; the lines after it are arguments (``edit``'s new text), not commands
_SWE_TOOLS = frozenset(
    {
        "open",
        "goto",
        "scroll_up",
        "scroll_down",
        "search_file",
        "search_dir",
        "find_file",
        "edit",
        "create",
        "str_replace_editor",
        "submit",
        "exit_forfeit",
    }
)
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")
_DIFF_TARGET = re.compile(r"^\+\+\+ (?:b/)?(\S+)", re.MULTILINE)
_PY_WRITE = re.compile(
    r"open\(\s*['\"]([^'\"]+)['\"]\s*,\s*['\"][wa]|Path\(\s*['\"]([^'\"]+)['\"]\s*\)\s*\.write_"
)
_QUIET_DEVICES = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr"})


class Classified(NamedTuple):
    """What an action is, what it is about, and which files it changes.

    Attributes:
        kind: read, edit, test, run, finish (or other: a tool nobody knows).
        target: for a read, the file or directory (no line range); for an edit, the
            first file written; for a test or a run, the command normalised.
        writes: the files an edit changes, when the command says which.
    """

    kind: ActionKind
    target: str
    writes: tuple[str, ...] = ()


def classify_command(command: str, *, open_file: str = "") -> Classified:
    """Classify a shell command line as an agent issued it.

    Args:
        command: the whole command line, possibly a chain, possibly with heredocs.
        open_file: the file SWE-agent's editor has open, which ``goto``, ``scroll_up``,
            ``scroll_down``, ``search_file`` and ``edit`` act on when they name none.

    Returns:
        The most consequential part's kind and target, and every file the line writes.
    """
    stripped = command.strip()
    first = stripped.split(maxsplit=1)[0] if stripped else ""
    if first in _SWE_TOOLS:
        stripped = stripped.splitlines()[0]
    lines, bodies = _strip_heredocs(stripped)
    parts: list[Classified] = []
    for segment in _segments(_separate_lines("\n".join(lines))):
        part = _classify_segment(segment, bodies, open_file)
        if part is not None:
            parts.append(part)
    if not parts:
        return Classified("run", _normalise(command))
    best = max(parts, key=lambda p: _RANK[p.kind])  # max keeps the first among equals
    writes = tuple(dict.fromkeys(w for p in parts for w in p.writes))
    if best.kind == "edit" and writes and not best.target:
        best = best._replace(target=writes[0])
    return best._replace(writes=writes)


def classify_tool_call(tool: str, arguments: str) -> Classified:
    """Classify a tool call by its name and raw JSON arguments.

    Knows Trestle's coding tools (``read_file``, ``list_files``, ``search_text``,
    ``git_diff``, ``write_file``, ``edit_file``, ``run_command``, ``run_tests``,
    ``finish``), a shell tool (``bash``/``shell``/``execute_bash`` with ``command``)
    and SWE-agent's ``str_replace_editor``. Arguments that are not a JSON object
    classify as what the tool would have done, with what could be read of them.
    """
    args = _json_object(arguments)

    def text(key: str, default: str = "") -> str:
        value = args.get(key, default)
        return value if isinstance(value, str) else default

    match tool:
        case "read_file":
            return Classified("read", _path(text("path")))
        case "list_files":
            return Classified("read", _path(text("directory", ".")))
        case "search_text" | "search":
            return Classified("read", _path(text("directory", ".")))
        case "git_diff":
            paths = args.get("paths")
            listed = (
                [_path(p) for p in paths if isinstance(p, str)] if isinstance(paths, list) else []
            )
            return Classified("read", " ".join(listed) or ".")
        case "write_file" | "edit_file":
            path = _path(text("path"))
            return Classified("edit", path, (path,) if path else ())
        case "run_tests":
            return Classified("test", "run_tests")
        case "finish" | "submit":
            return Classified("finish", "")
        case "run_command" | "bash" | "shell" | "execute_bash":
            return classify_command(text("command"))
        case "str_replace_editor":
            line = f"str_replace_editor {text('command')} {shlex.quote(text('path'))}"
            return classify_command(line)
    return Classified("other", tool)


# --- splitting a command line ---------------------------------------------------------


def _strip_heredocs(command: str) -> tuple[list[str], list[str]]:
    """The command's lines without heredoc bodies, and the bodies themselves.

    A heredoc body is data (a file's new content, a patch, a Python script), not
    commands: it must not be split into segments, but it tells what is written.
    """
    lines: list[str] = []
    bodies: list[str] = []
    pending: list[str] = []  # terminators still to find, in order
    body: list[str] = []
    for line in command.splitlines():
        if pending:
            if line.strip() == pending[0]:
                pending.pop(0)
                bodies.append("\n".join(body))
                body = []
            else:
                body.append(line)
            continue
        lines.append(line)
        pending.extend(m.group(2) for m in _HEREDOC.finditer(line))
    if pending and body:
        bodies.append("\n".join(body))
    return lines, bodies


def _separate_lines(text: str) -> str:
    """``text`` with each newline outside quotes turned into ``;``: lines are separate
    commands, but a quoted argument (``python -c "..."``) may span several."""
    out: list[str] = []
    quote = ""
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "\n":
            char = ";"
        out.append(char)
    return "".join(out)


def _segments(text: str) -> list[list[str]]:
    """Simple commands of a command line, each as words, with pipes kept inside.

    ``a && b | c; d`` gives ``[a]``, ``[b, |, c]``, ``[d]``.
    """
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        words = list(lexer)
    except ValueError:  # unbalanced quotes: fall back to plain words
        words = text.replace(";", " ; ").split()
    segments: list[list[str]] = [[]]
    for word in words:
        if word in ("&&", "||", ";", "&", "(", ")", ";;"):
            segments.append([])
        else:
            segments[-1].append(word)
    return [s for s in segments if s]


def _classify_segment(words: list[str], bodies: list[str], open_file: str) -> Classified | None:
    """One simple command (or pipeline); None for one that does nothing of note (cd)."""
    pipeline = _split_on(words, "|")
    commands = [_redirects(part) for part in pipeline]
    writes = tuple(w for _, redirected in commands for w in redirected)
    parts = [_classify_words(argv, bodies, open_file) for argv, _ in commands if argv]
    found = [p for p in parts if p is not None]
    if writes:
        first = next((p for p in found if p.kind == "finish"), None)
        return first or Classified("edit", writes[0], writes)
    if not found:
        return None
    # a pipeline is its most consequential command; among reads, the first one with a
    # target (``nl -ba f | sed -n 10,20p`` reads f; the filter reads stdin)
    return max(found, key=lambda p: (_RANK[p.kind], bool(p.target)))


def _split_on(words: list[str], operator: str) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for word in words:
        if word == operator:
            parts.append([])
        else:
            parts[-1].append(word)
    return parts


def _redirects(words: list[str]) -> tuple[list[str], tuple[str, ...]]:
    """The words without redirections, and the files output is redirected into."""
    argv: list[str] = []
    writes: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word in (">", ">>", ">|", "&>", "&>>"):
            target = words[i + 1] if i + 1 < len(words) else ""
            if argv and argv[-1].isdigit():  # "2>file": the descriptor is not an argument
                argv.pop()
            if target and target not in _QUIET_DEVICES and not target.startswith("&"):
                writes.append(_path(target))
            i += 2
            continue
        if word in ("<", ">&", "<&", "<<", "<<-", "<<<"):
            if word == ">&" and argv and argv[-1].isdigit():
                argv.pop()
            i += 2
            continue
        argv.append(word)
        i += 1
    return argv, tuple(writes)


# --- one command ----------------------------------------------------------------------


def _classify_words(argv: list[str], bodies: list[str], open_file: str) -> Classified | None:
    argv = _unwrap(argv)
    if not argv:
        return None
    name, args = posixpath.basename(argv[0]), argv[1:]
    if name in ("cd", "pushd", "popd", "export", "set", "source", "."):
        return None
    if name == "echo" and any(m in args for m in SUBMIT_MARKERS):
        return Classified("finish", "")
    if name in ("submit", "exit_forfeit"):
        return Classified("finish", "")
    swe = _swe_agent_command(name, args, open_file)
    if swe is not None:
        return swe
    if name in _READERS:
        path = _first(_positionals(args, _READER_VALUED.get(name, frozenset())))
        return Classified("read", path or ("." if name in ("ls", "tree") else ""))
    if name in _SEARCHERS:
        return _search(args)
    if name == "find":
        paths = [a for a in _leading(args)]
        return Classified("read", _path(paths[0]) if paths else ".")
    if name in ("sed", "perl"):
        return _sed(args, name)
    if name == "awk":
        return Classified("read", _first(_positionals(args, frozenset({"-F", "-v", "-f"}))[1:]))
    if name == "tee":
        files = tuple(_path(a) for a in _positionals(args))
        return Classified("edit", files[0] if files else "", files)
    if name in _MUTATORS:
        files = tuple(_path(a) for a in _positionals(args))
        if name in ("mv", "cp", "ln") and files:
            files = files[-1:]
        return Classified("edit", files[0] if files else "", files)
    if name == "patch":
        files = _patched(bodies)
        return Classified("edit", files[0] if files else _normalise(" ".join(argv)), files)
    if name == "git":
        return _git(args, bodies, argv)
    if name in _TEST_RUNNERS:
        return Classified("test", _normalise(" ".join(argv)))
    if _PYTHONS.match(name):
        return _python(argv, bodies)
    if _TEST_SCRIPT.search(name):  # ./runtests.py, ./reproduce.py
        return Classified("test", _normalise(" ".join(argv)))
    return Classified("run", _normalise(" ".join(argv)))


def _unwrap(argv: list[str]) -> list[str]:
    """Drop what only wraps a command: ``FOO=1``, ``timeout 60``, ``sudo``, ``env``."""
    while argv:
        head = argv[0]
        if (
            "=" in head and not head.startswith(("-", "=")) and re.match(r"^\w+=", head)
        ) or head in ("sudo", "env", "nohup", "time", "command", "exec"):
            argv = argv[1:]
        elif head == "timeout" and len(argv) > 1:
            rest = argv[1:]
            while rest and rest[0].startswith("-"):
                rest = rest[1:]
            argv = rest[1:]  # the duration
        else:
            break
    return argv


def _swe_agent_command(name: str, args: list[str], open_file: str) -> Classified | None:
    """SWE-agent's own commands (its editor, viewer and search tools)."""
    words = _positionals(args)
    match name:
        case "open":
            return Classified("read", _path(words[0]) if words else open_file)
        case "goto" | "scroll_up" | "scroll_down":
            return Classified("read", open_file)
        case "search_file":
            return Classified("read", _path(words[1]) if len(words) > 1 else open_file)
        case "search_dir" | "find_file":
            return Classified("read", _path(words[1]) if len(words) > 1 else ".")
        case "edit":
            return Classified("edit", open_file, (open_file,) if open_file else ())
        case "create":
            path = _path(words[0]) if words else ""
            return Classified("edit", path, (path,) if path else ())
        case "str_replace_editor":
            sub = args[0] if args else ""
            path = _path(args[1]) if len(args) > 1 else ""
            if sub == "view":
                return Classified("read", path)
            return Classified("edit", path, (path,) if path else ())
    return None


def _search(args: list[str]) -> Classified:
    words = _positionals(args, _GREP_VALUED)
    explicit = any(a in ("-e", "-f") or a.startswith("--regexp") for a in args)
    paths = words if explicit else words[1:]
    return Classified("read", " ".join(_path(p) for p in paths) or ".")


def _sed(args: list[str], name: str) -> Classified:
    in_place = False
    script_given = False
    words: list[str] = []
    take_script = False
    for arg in args:
        if take_script:
            take_script, script_given = False, True
        elif arg in ("-e", "-f", "--expression", "--file"):
            take_script = True
        elif arg.startswith("-i") or arg.startswith("--in-place") or arg == "-pi":
            in_place = True
        elif not arg.startswith("-"):
            words.append(arg)
    files = tuple(_path(w) for w in (words if script_given else words[1:]))
    if in_place:
        return Classified("edit", files[0] if files else "", files)
    return Classified("read", files[0] if files else "")


def _git(args: list[str], bodies: list[str], argv: list[str]) -> Classified:
    sub = next((a for a in args if not a.startswith("-")), "")
    rest = _positionals(args[args.index(sub) + 1 :]) if sub else []
    if sub in _GIT_WRITES:
        files = _patched(bodies) if sub in ("apply", "am") else tuple(_path(p) for p in rest)
        files = tuple(f for f in files if f != "--")
        return Classified("edit", files[0] if files else _normalise(" ".join(argv)), files)
    if sub in _GIT_READS:
        return Classified("read", " ".join(_path(p) for p in rest if p != "--") or ".")
    return Classified("run", _normalise(" ".join(argv)))


def _python(argv: list[str], bodies: list[str]) -> Classified:
    args = argv[1:]
    command = _normalise(" ".join(["python", *args]))
    if args[:2] in (["-m", "pytest"], ["-m", "unittest"], ["-m", "tox"]):
        return Classified("test", command)
    if args and args[0] == "-c":
        code = args[1] if len(args) > 1 else ""
        files = _python_writes(code)
        return Classified("edit", files[0], files) if files else Classified("run", command)
    if args and args[0] == "-":  # a script on stdin, usually a heredoc
        files = tuple(f for body in bodies for f in _python_writes(body))
        return Classified("edit", files[0], files) if files else Classified("run", command)
    script = next((a for a in args if not a.startswith("-")), "")
    if script and _TEST_SCRIPT.search(script):
        return Classified("test", command)
    return Classified("run", command)


def _python_writes(code: str) -> tuple[str, ...]:
    found = (a or b for a, b in _PY_WRITE.findall(code))
    return tuple(dict.fromkeys(_path(f) for f in found if f))


def _patched(bodies: list[str]) -> tuple[str, ...]:
    found = (m for body in bodies for m in _DIFF_TARGET.findall(body))
    return tuple(dict.fromkeys(_path(f) for f in found if f != "/dev/null"))


# --- words ----------------------------------------------------------------------------


def _positionals(args: list[str], valued: frozenset[str] = frozenset()) -> list[str]:
    """Arguments that are not options or the values of ``valued`` options."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--":
            continue
        if arg.startswith("-") and arg != "-":
            skip = arg in valued
            continue
        out.append(arg)
    return out


def _leading(args: list[str]) -> list[str]:
    """``find``'s paths: the words before its first expression (``-name``, ``(``...)."""
    out: list[str] = []
    for arg in args:
        if arg.startswith("-") or arg in ("(", "!"):
            break
        out.append(arg)
    return out


def _first(words: list[str]) -> str:
    return _path(words[0]) if words else ""


def _path(path: str) -> str:
    """A path without ``./``, doubled slashes, trailing slashes or a ``:line`` suffix."""
    path = path.strip()
    if not path:
        return ""
    for _ in range(2):  # a ``:line`` or ``:line:column`` suffix, without a regular
        # expression: compiling one was 0.6 ms of a resumed run's first catch-up
        head, colon, number = path.rpartition(":")
        if not (colon and number.isdecimal()):
            break
        path = head
    normal = posixpath.normpath(path)
    return "." if normal == "." else normal


def _normalise(command: str) -> str:
    """A command as words: whitespace collapsed, ``python3`` spelled ``python``."""
    words = command.split()
    if words and _PYTHONS.match(words[0]):
        words[0] = "python"
    return " ".join(words)


def _json_object(arguments: str) -> dict[str, object]:
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}
