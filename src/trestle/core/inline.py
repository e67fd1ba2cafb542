"""Interpreters given code on their command line or their input: can we tell it is harmless?

``python3 -c "import os; os.system('git push')"`` runs a push the shell reader never
sees. Code in a general-purpose language can build any command from strings at run time,
so the rule is narrow and errs towards asking a human:

- Python ``-c`` code is harmless only when it parses and stays inside a small safe
  subset: it imports only modules that start no process and reach no file or network
  (``json``, ``sys``, ``re``, ``math``…), calls no builtin that runs or opens anything
  (``eval``, ``exec``, ``open``, ``getattr``, ``breakpoint``…), and names nothing
  private (``_x``, ``__import__``) and no other standard module (``uuid.os``).
- awk programs are harmless unless they mention ``system``, a pipe ``|`` (to or from a
  command) or ``@`` (gawk's indirect calls and ``@load``): awk has no other way to run
  anything.
- sed scripts are read command by command and are harmless unless they hold GNU sed's
  ``e`` command or ``s///e`` flag, which run a shell command, or a command sed does not
  know.
- Every other interpreter (perl, ruby, node, php, lua, R, julia, tcl, expect,
  osascript, PowerShell, fish, csh…), Vim, Emacs and gdb given inline code, and any
  interpreter reading its code from its input, cannot be read: the policy asks.
- A database shell (sqlite3, psql, mysql) runs a program only through a few of its own
  commands (``.shell``, ``\\!``, ``system``, output piped to a command), which are looked
  for in its words; commands on its input cannot be read. ed, m4, at and batch always
  read theirs from their input.

Pure: no IO.
"""

from __future__ import annotations

import ast
import re
import sys
import unicodedata
from dataclasses import dataclass

from trestle.core.shellparse import Word

# (options whose value is inline code, options that take some other value)
# fmt: off
_INTERPRETERS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "perl": (frozenset({"-e", "-E"}), frozenset({"-I"})),
    "ruby": (frozenset({"-e"}), frozenset({"-r", "-I", "-C", "-E", "--encoding"})),
    "node": (frozenset({"-e", "--eval", "-p", "--print"}),
             frozenset({"-r", "--require", "--import", "--loader", "--input-type", "-C",
                        "--conditions", "--experimental-loader"})),
    "bun": (frozenset({"-e", "--eval", "-p", "--print"}), frozenset({"-r", "--preload"})),
    "php": (frozenset({"-r", "-B", "-R", "-E", "-a"}), frozenset({"-c", "-d", "-f", "-z"})),
    "lua": (frozenset({"-e"}), frozenset({"-l"})),
    "Rscript": (frozenset({"-e"}), frozenset()),
    "R": (frozenset({"-e"}), frozenset()),
    "julia": (frozenset({"-e", "-E", "--eval", "--print"}),
              frozenset({"-p", "-t", "--project", "-J", "--sysimage"})),
    "tclsh": (frozenset(), frozenset()),
    "wish": (frozenset(), frozenset()),
    "expect": (frozenset({"-c"}), frozenset({"-f"})),
    "osascript": (frozenset({"-e"}), frozenset({"-l", "-s"})),
    "deno": (frozenset({"eval"}), frozenset()),
}
# fmt: on
_ALIASES = {"nodejs": "node", "luajit": "lua", "bunx": "bun", "perl5": "perl"}
_OTHER_SHELLS = frozenset({"fish", "tcsh", "csh", "pwsh", "powershell", "xonsh", "elvish",
                           "nu", "rc", "es", "scsh", "ion", "oil", "osh", "ysh"})  # fmt: skip
_VIMS = frozenset({"vim", "vi", "nvim", "ex", "view", "vimdiff", "gvim", "evim", "nvi", "elvis"})
_EMACSES = frozenset({"emacs", "emacs-nox", "xemacs"})
_AWKS = frozenset({"awk", "gawk", "mawk", "nawk", "original-awk", "bwk-awk"})
_PYTHON = re.compile(r"(python|pypy)[0-9.]*(-dbg)?")
_QUIET = frozenset({"--version", "-V", "--help", "-h", "-version", "-help"})
# programs that read commands from their input, any of which may run a program
_INPUT_COMMANDS = {
    "ed": "reads editor commands from its input, and ! runs a program",
    "m4": "expands macros, and syscmd or esyscmd runs a program",
    "at": "runs the commands it reads later, outside this command",
    "batch": "runs the commands it reads later, outside this command",
}


# paths that are a process's input, not a file of code a step left
_INPUT_PATHS = re.compile(r"/dev/(?:stdin|tty|fd/\d+)|/proc/(?:self|thread-self|\d+)/fd/\d+")


def runs_code(name: str) -> bool:
    """Whether ``name`` runs code it is given (an interpreter, awk, sed, a database
    shell, ed...); the POSIX shells are :data:`trestle.core.invocations.SHELLS`."""
    return bool(
        _PYTHON.fullmatch(name)
        or _ALIASES.get(name, name) in _INTERPRETERS
        or name in _AWKS
        or name in _OTHER_SHELLS
        or name in _COMMAND_SHELLS
        or name in _INPUT_COMMANDS
        or name in ("sed", "source", ".")
    )


# a POSIX shell's options whose value is the next word
SHELL_VALUES = frozenset({"-o", "+o", "-O", "+O", "--rcfile", "--init-file"})


def code_file(name: str, values: list[str], *, shell: bool = False) -> str | None:
    """The file ``name values`` runs its code from, when ``name`` is an interpreter
    (``shell``: a POSIX shell): its first argument that is no option nor an option's
    value (``bash -euo pipefail deploy.sh``, ``perl -I lib x.pl``); ``-`` for its
    input (none given, ``-``, ``-s``, ``/dev/stdin``); None for code given on its
    command line, or a program that runs none."""
    shell = shell or name in _OTHER_SHELLS
    if shell:
        inline, takes_value = frozenset({"-c"}), SHELL_VALUES
    elif _PYTHON.fullmatch(name):
        inline, takes_value = frozenset({"-c", "-m"}), _PYTHON_VALUES
    elif _ALIASES.get(name, name) in _INTERPRETERS:
        inline, takes_value = _INTERPRETERS[_ALIASES.get(name, name)]
    else:
        return None
    arguments = iter(values)
    for value in arguments:
        if value == "-" or (shell and value == "-s") or _INPUT_PATHS.fullmatch(value):
            return "-"
        if not value.startswith(("-", "+")):
            return value
        if value.startswith("--"):
            option = value.partition("=")[0]
            if option in inline:
                return None
            if option in takes_value and "=" not in value:
                next(arguments, None)
            continue
        for k, letter in enumerate(value[1:]):  # short options, perhaps bundled: -euo
            option = value[0] + letter
            if option in inline or f"-{letter}" in inline:
                return None
            if option in takes_value:
                if k == len(value) - 2:
                    next(arguments, None)  # its value is the next word
                break  # or the rest of this one
    return "-"


def from_input(word: Word) -> bool:
    """Whether ``word``, given as a file of code, is a process's input or another
    command's output (``/dev/stdin``, ``/proc/self/fd/0``, ``<(echo git push)``)."""
    return word.raw.startswith(("<(", ">(")) or _INPUT_PATHS.fullmatch(word.value) is not None


def inline_code(name: str, rest: list[Word]) -> str | None:
    """Why what ``name rest`` runs cannot be told harmless, or None when it can (or
    ``name`` is no interpreter)."""
    values = [w.value for w in rest]
    if values and values[0] in _QUIET and name not in _AWKS and name != "sed":
        return None
    if _PYTHON.fullmatch(name):
        return _python(name, rest)
    if name in _AWKS:
        return _awk(name, rest)
    if name == "sed":
        return _sed_command(rest)
    if name in _OTHER_SHELLS:
        if any(v.lower() in ("-c", "-command", "-encodedcommand", "-ec", "-e") for v in values):
            return f"{name} runs code in a language this reader does not read"
        if not any(not v.startswith("-") for v in values):
            return f"{name} reads the commands it runs from its input"
        return None
    if name in _VIMS and any(_vim_runs(v) for v in values):
        return f"{name} runs editor commands given on its command line, which may run programs"
    if name in _EMACSES and any(v.split("=")[0] in _EMACS_CODE for v in values):
        return f"{name} evaluates Lisp given on its command line"
    if name == "gdb":
        return _gdb(values)
    if name == "make" and any(v.startswith("--eval") for v in values):
        return "make runs a rule given on its command line"
    if name in _COMMAND_SHELLS:
        return _command_shell(name, values)
    if name in _INPUT_COMMANDS:
        return f"{name} {_INPUT_COMMANDS[name]}"
    language = _ALIASES.get(name, name)
    if language in _INTERPRETERS:
        return _interpreter(name, language, values)
    return None


def _interpreter(name: str, language: str, values: list[str]) -> str | None:
    code, takes_value = _INTERPRETERS[language]
    if any(v in ("-v", "--version", "-h", "--help") for v in values[:1]):
        return None  # prints its version or usage
    i = 0
    while i < len(values):
        value = values[i]
        if value in code or value.split("=")[0] in code or _perl_inline(language, value):
            return f"{name} runs inline code, which this reader cannot tell harmless"
        if value == "-" or not value.startswith("-"):
            break
        i += 2 if value in takes_value else 1
    if i >= len(values) or values[i] == "-":
        return f"{name} reads the code it runs from its input"
    return None


# --- programs whose own commands run programs -------------------------------------------


@dataclass(frozen=True)
class _CommandShell:
    """A program whose own commands can run another (a database shell).

    Attributes:
        runs: what in one of its commands runs a program.
        given: options whose value is one of its commands, or names a file of them.
        values: short options that take a value (the rest of a bundle is that value).
    """

    runs: re.Pattern[str]
    given: frozenset[str]
    values: str = ""


_COMMAND_SHELLS: dict[str, _CommandShell] = {
    # .shell and .system run one; .output, .once, .import and .read open '|command'
    "sqlite3": _CommandShell(
        re.compile(
            r"(?m)^\s*\.(?:shell|system|load|edit)\b|^\s*\.(?:output|once|import|read)\s+['\"]?\|"
        ),
        frozenset(),
    ),
    # \! runs one and \e an editor; \o, \g and \w write to '|command'; COPY ... PROGRAM
    "psql": _CommandShell(
        re.compile(
            r"\\(?:!|e\b|edit\b|ef\b|ev\b)|\\(?:o|out|g|gx|w|write)\s+['\"]?\||\bprogram\b",
            re.IGNORECASE,
        ),
        frozenset({"c", "f", "--command", "--file"}),
        "hpUdvPoLFRT",
    ),
    # system and \! run one
    "mysql": _CommandShell(
        re.compile(r"(?im)(?:^|;)\s*(?:system\b|\\!)"),
        frozenset({"e", "--execute"}),
        "hPuDSO",
    ),
}
_COMMAND_SHELLS["sqlite"] = _COMMAND_SHELLS["sqlite3"]
_COMMAND_SHELLS["mariadb"] = _COMMAND_SHELLS["mysql"]


def _command_shell(name: str, values: list[str]) -> str | None:
    """Why a database shell given these words may run a program, or None."""
    shell = _COMMAND_SHELLS[name]
    # a command may be a word of its own or joined to its option (-c'\! cmd')
    if any(shell.runs.search(v) or shell.runs.search(v[2:]) for v in values):
        return f"{name} runs a program one of its own commands names"
    if name.startswith("sqlite"):  # sqlite3 [OPTIONS] DATABASE COMMAND...
        given = len([v for v in values if not v.startswith("-")]) > 1
    else:
        given = any(_gives(v, shell) for v in values)
    if not given:
        return f"{name} reads the commands it runs from its input, where one can run a program"
    return None


def _gives(word: str, shell: _CommandShell) -> bool:
    """Whether ``word`` is an option giving ``shell`` its commands (a short one maybe in a
    bundle, ``-Xc``, before any letter whose value is the rest)."""
    if word.startswith("--"):
        return word.split("=", 1)[0] in shell.given
    if not word.startswith("-"):
        return False
    for letter in word[1:]:
        if letter in shell.given:
            return True
        if letter in shell.values:
            return False
    return False


def _perl_inline(language: str, value: str) -> bool:
    """``-ne``, ``-lane``, ``-pi -e``: perl bundles flags before its ``-e``."""
    if language != "perl" or not value.startswith("-") or value.startswith("--"):
        return False
    for letter in value[1:]:
        if letter in "eE":
            return True
        if letter in "iIMmxFdDC0":
            return False  # the rest is this option's value
    return False


# --- Python -----------------------------------------------------------------------------

_SAFE_MODULES = frozenset({
    "json", "sys", "math", "cmath", "re", "datetime", "string", "textwrap", "itertools",
    "collections", "functools", "base64", "binascii", "hashlib", "statistics", "decimal",
    "fractions", "random", "time", "pprint", "unicodedata", "struct", "zlib", "heapq",
    "bisect", "difflib", "keyword", "numbers", "enum", "dataclasses", "typing", "copy",
})  # fmt: skip
# builtins that run, open, import, look up by name or read code from the input
_UNSAFE_NAMES = frozenset({
    "eval", "exec", "compile", "open", "getattr", "setattr", "delattr", "vars", "globals",
    "locals", "breakpoint", "input", "help", "memoryview", "exit", "quit",
})  # fmt: skip
# any other standard module (``uuid.os``, ``statistics.sys.modules``…) and what sys
# offers that loads or debugs code
_UNSAFE_ATTRIBUTES = (frozenset(sys.stdlib_module_names) - _SAFE_MODULES) | frozenset(
    {"modules", "meta_path", "path_hooks", "breakpointhook", "system", "popen"}
)
_PYTHON_VALUES = frozenset({"-W", "-X", "-Q", "--check-hash-based-pycs"})


def _python(name: str, rest: list[Word]) -> str | None:
    i = 0
    while i < len(rest):
        value = rest[i].value
        if value == "-" or not value.startswith("-") or value == "--":
            break
        if value == "-m" or (value.startswith("-") and "m" in value[1:] and value[1] != "-"):
            return None  # runs a module, as a script is run
        if value.startswith("-") and not value.startswith("--") and "c" in value[1:]:
            tail = value[value.index("c", 1) + 1 :]
            code = tail if tail else (rest[i + 1] if i + 1 < len(rest) else None)
            if code is None:
                return f"{name} -c without its code"
            if isinstance(code, Word) and not code.literal:
                return f"{name} -c runs code built at run time ({code.raw})"
            text = code if isinstance(code, str) else code.value
            return _python_code(name, text)
        i += 2 if value in _PYTHON_VALUES else 1
    if i >= len(rest) or rest[i].value == "-":
        return f"{name} reads the code it runs from its input"
    return None


def _python_code(name: str, code: str) -> str | None:
    """None when ``code`` stays inside the safe subset (module docstring)."""
    unsafe = f"{name} -c code may run or open something"
    try:
        # Python folds identifiers to NFKC: exec spelled in fullwidth letters is exec
        tree = ast.parse(unicodedata.normalize("NFKC", code))
    except (SyntaxError, ValueError):
        return f"{name} -c code this reader cannot parse"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if any(a.name.split(".")[0] not in _SAFE_MODULES for a in node.names):
                return f"{unsafe}: it imports {', '.join(a.name for a in node.names)}"
        elif isinstance(node, ast.ImportFrom):
            if node.level or (node.module or "").split(".")[0] not in _SAFE_MODULES:
                return f"{unsafe}: it imports from {node.module}"
            if any(a.name.startswith("_") or a.name in _UNSAFE_ATTRIBUTES for a in node.names):
                return f"{unsafe}: it imports a private or unsafe name"
        elif isinstance(node, ast.Name) and (node.id.startswith("_") or node.id in _UNSAFE_NAMES):
            return f"{unsafe}: it uses {node.id!r}"
        elif isinstance(node, ast.Attribute) and (
            node.attr.startswith("_") or node.attr in _UNSAFE_ATTRIBUTES
        ):
            return f"{unsafe}: it uses .{node.attr}"
    return None


# --- awk, sed, editors, debuggers -------------------------------------------------------

_AWK_VALUES = frozenset({"-F", "-v", "-W", "--field-separator", "--assign", "-i", "--include",
                         "-l", "--load"})  # fmt: skip
_AWK_RUNS = re.compile(r"system|\||@")


def _awk(name: str, rest: list[Word]) -> str | None:
    programs: list[str] = []
    i = 0
    while i < len(rest):
        value = rest[i].value
        if value in ("-e", "--source") and i + 1 < len(rest):
            programs.append(rest[i + 1].value)
            i += 2
            continue
        if value in ("-f", "--file", "-E", "--exec"):
            return None  # the program is a file, as a script is
        if value == "--" or not value.startswith("-") or value == "-":
            if not programs and value == "--":
                i += 1
            break
        i += 2 if value in _AWK_VALUES else 1
    if not programs:
        if i >= len(rest):
            return None  # no program: awk only prints its usage
        if not rest[i].literal:
            return f"{name} runs a program built at run time ({rest[i].raw})"
        programs.append(rest[i].value)
    found = next((m.group(0) for p in programs for m in [_AWK_RUNS.search(p)] if m), None)
    if found is not None:
        return f"{name}'s program may run a command (it uses {found!r})"
    return None


_SED_VALUES = frozenset({"-l", "--line-length", "-s"})


def _sed_command(rest: list[Word]) -> str | None:
    values = [w.value for w in rest]
    if "--sandbox" in values:
        return None  # GNU sed then refuses e, r and w
    scripts: list[str] = []
    positionals: list[Word] = []
    i = 0
    while i < len(rest):
        value = values[i]
        if value in ("-e", "--expression") and i + 1 < len(rest):
            scripts.append(values[i + 1])
            i += 2
            continue
        if value.startswith("--expression="):
            scripts.append(value.partition("=")[2])
        elif value.startswith("-e") and not value.startswith("--"):
            scripts.append(value[2:])
        elif value in ("-f", "--file") or value.startswith(("--file=", "-f")):
            return None  # the script is a file, as a shell script is
        elif not value.startswith("-") or value == "-":
            positionals.append(rest[i])
        elif value in _SED_VALUES:
            i += 1
        i += 1
    if not scripts and positionals:
        if not positionals[0].literal:
            return f"sed runs a script built at run time ({positionals[0].raw})"
        scripts.append(positionals[0].value)
    for script in scripts:
        why = sed_runs(script)
        if why is not None:
            return f"sed {why}"
    return None


def sed_runs(script: str) -> str | None:
    """Why the sed ``script`` may run a command (``e``, ``s///e``, a command sed does not
    know), or None when it cannot."""
    i, n = 0, len(script)
    while i < n:
        while i < n and script[i] in " \t\n;":
            i += 1
        if i >= n:
            break
        i = _sed_address(script, i)
        while i < n and script[i] in " \t!":
            i += 1
        if i >= n:
            break
        command = script[i]
        i += 1
        if command == "e":
            return "runs a shell command (its e command)"
        if command in "{}=dDgGhHnNpPxzF":
            continue
        if command == "#" or command in "aicrRwW:":
            while i < n and script[i] != "\n":
                i += 2 if script[i] == "\\" else 1
        elif command in "btTv":
            while i < n and script[i] not in ";\n}":
                i += 1
        elif command in "qQlL":
            while i < n and script[i] in " 0123456789":
                i += 1
        elif command in "sy":
            if i >= n or script[i] in "\\\n":
                return "has a command it cannot read"
            i = _sed_part(script, _sed_part(script, i + 1, script[i]), script[i])
            if command == "s":
                start = i
                while i < n and script[i] not in ";\n}#w":
                    i += 1
                if "e" in script[start:i]:
                    return "runs a shell command (the e flag of its s command)"
                if i < n and script[i] == "w":
                    while i < n and script[i] != "\n":
                        i += 1
        else:
            return f"has a command it does not know ({command!r})"
    return None


def _sed_address(script: str, i: int) -> int:
    for _ in range(2):
        if i < len(script) and script[i] in "/\\":
            delimiter = script[i] if script[i] == "/" else script[i + 1 : i + 2]
            i = _sed_part(script, i + (1 if script[i] == "/" else 2), delimiter)
            while i < len(script) and script[i] in "IM":
                i += 1
        else:
            while i < len(script) and (script[i].isdigit() or script[i] in "$~+"):
                i += 1
        if i < len(script) and script[i] == ",":
            i += 1
            continue
        break
    return i


def _sed_part(script: str, i: int, delimiter: str) -> int:
    """The index just past the ``delimiter`` that ends the part starting at ``i``."""
    while i < len(script) and script[i] != delimiter:
        i += 2 if script[i] == "\\" else 1
    return i + 1


def _vim_runs(value: str) -> bool:
    if value.startswith("+"):
        return not value[1:].isdigit() and value != "+"  # '+42' only moves the cursor
    return value in ("-c", "--cmd", "-S", "-s", "-e", "-E", "-es", "-Es", "-u", "-x", "-y")


_EMACS_CODE = frozenset({"--eval", "-eval", "--execute", "-execute", "-l", "--load", "-load",
                         "-f", "--funcall", "-funcall", "--script", "-script", "-x"})  # fmt: skip
_GDB_CODE = frozenset({"-ex", "-iex", "-eval-command", "--eval-command", "-init-eval-command"})
# gdb commands that run nothing beyond the program it was given
_GDB_SAFE = frozenset({"run", "r", "bt", "backtrace", "where", "quit", "q", "continue", "c",
                       "info", "frame", "up", "down", "list", "next", "step", "kill"})  # fmt: skip


def _gdb(values: list[str]) -> str | None:
    for i, value in enumerate(values[:-1]):
        if value.split("=")[0] in _GDB_CODE:
            first = (values[i + 1].split() or [""])[0]
            if first not in _GDB_SAFE:
                return f"gdb runs the command {values[i + 1]!r}, which may run programs"
    return None
