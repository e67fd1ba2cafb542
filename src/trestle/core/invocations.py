"""What a parsed command line runs, seen through its wrappers, and which files it changes.

Each simple command of a :class:`~trestle.core.shellparse.Script` is followed through what
only launches another program (``env``, ``VAR=… cmd``, ``command``, ``exec``, ``nice``,
``nohup``, ``timeout N``, ``sudo``, ``xargs``, ``find -exec``, ``sh -c '…'``, an
absolute or relative program path) to the program that really runs; git's (and a few
other tools') global options before the subcommand are set aside, so ``git -C . -c k=v
push`` reads as ``git push``. What cannot be followed (``eval``, a program named by an
expansion, a shell reading commands from its input) is reported as unknown.

Pure: no IO.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from trestle.core import gitcommand
from trestle.core.inline import SHELL_VALUES, from_input, inline_code, runs_code
from trestle.core.launchers import (
    COMMAND_OPTIONS,
    LAUNCHERS,
    SSH_COMMANDS,
    Launch,
    launcher_key,
    launches,
    parallel_launches,
    runs_unseen,
)
from trestle.core.shellparse import MAX_DEPTH, Script, SimpleCommand, Word, parse

# wrappers one inside another (``timeout 9 nice env ... cmd``, ``find -exec find
# -exec``): a real command line nests a few; past this many what it runs is not
# followed (unknown), and 800 ``timeout 9`` in 8 KB no longer exhaust the reader's
# stack (a RecursionError stopped the driver, and a plan's check so written stopped
# every resume of its run)
MAX_WRAPPERS = 32


@dataclass(frozen=True)
class Invocation:
    """One program a command line runs.

    Attributes:
        program: the program's name (``/usr/bin/git`` is ``git``).
        texts: how it reads for the policy's patterns: the program, then its words with
            wrappers and global options set aside (``git push origin``); more than one
            when an option before the subcommand is ambiguous.
        via: the wrappers it was reached through, outermost first.
        words: its words as written, the program's first.
        stdin: the file its input is redirected from (``sh < deploy.sh``), if any.
    """

    program: str
    texts: tuple[str, ...]
    via: tuple[str, ...] = ()
    words: tuple[Word, ...] = field(default=(), compare=False)
    stdin: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Meaning:
    """Everything a command line runs and writes; ``unknown`` says what was not followed."""

    invocations: tuple[Invocation, ...]
    writes: tuple[str, ...]
    unknown: tuple[str, ...]
    lines: tuple[str, ...] = ()  # what ran a command line of its own (``rg --pre``)


SHELLS = frozenset({"sh", "bash", "rbash", "dash", "zsh", "ksh", "ash", "mksh", "yash", "posh"})

WRAPPERS = frozenset(key for key in LAUNCHERS if " " not in key)
"""Programs that run the command they are given (:mod:`trestle.core.launchers`)."""

# programs with subcommands: options before the subcommand that take a value
_GLOBAL_OPTIONS: dict[str, frozenset[str]] = {
    "git": frozenset({"-C", "-c", "--git-dir", "--work-tree", "--namespace",
                      "--super-prefix", "--config-env", "--exec-path", "--list-cmds"}),
    "kubectl": frozenset({"-n", "--namespace", "--context", "--kubeconfig", "--cluster",
                          "--user", "-s", "--server", "--token", "--as", "--as-group"}),
    "docker": frozenset({"-H", "--host", "--context", "-c", "--config", "-l", "--log-level",
                         "--tlscacert", "--tlscert", "--tlskey"}),
    "podman": frozenset({"--connection", "-c", "--url", "--root", "--runroot"}),
    "helm": frozenset({"-n", "--namespace", "--kube-context", "--kubeconfig"}),
    "npm": frozenset({"--prefix", "-w", "--workspace", "--registry", "--userconfig", "-C"}),
    "pnpm": frozenset({"-C", "--dir", "--filter", "-F", "-w", "--workspace"}),
    "yarn": frozenset({"--cwd"}),
    "cargo": frozenset({"--config", "-Z", "--manifest-path", "-C"}),
    "poetry": frozenset({"-C", "--directory", "-P", "--project"}),
    "gh": frozenset({"-R", "--repo"}),
    "terraform": frozenset(),
    "twine": frozenset(),
}  # fmt: skip

# where git finds a global configuration (a step could write one there)
_HOMES = frozenset({"HOME", "XDG_CONFIG_HOME"})


def _may_run_git(program: str) -> bool:
    """Whether ``program``, given variables before it, may run git with them: git, one
    of its programs, a shell or a wrapper."""
    return (
        program == "git"
        or gitcommand.dashed(program) is not None
        or program in SHELLS
        or program in WRAPPERS
    )


# builtins that set a variable for the commands after them (``export GIT_SSH_COMMAND=…``)
_DECLARERS = frozenset({"export", "declare", "typeset", "local", "readonly"})
# programs that change the files they name: (options taking a value, which positionals)
_WRITERS: dict[str, tuple[frozenset[str], str]] = {
    "rm": (frozenset(), "all"),
    "rmdir": (frozenset(), "all"),
    "unlink": (frozenset(), "all"),
    "shred": (frozenset({"-n", "-s", "--iterations", "--size"}), "all"),
    "truncate": (frozenset({"-s", "-r", "--size", "--reference"}), "all"),
    "touch": (frozenset({"-d", "-r", "-t", "--date", "--reference"}), "all"),
    "mkdir": (frozenset({"-m", "--mode"}), "all"),
    "tee": (frozenset(), "all"),
    "mv": (frozenset({"-t", "--target-directory", "-S", "--suffix"}), "all"),
    "cp": (frozenset({"-t", "--target-directory", "-S", "--suffix"}), "last"),
    "ln": (frozenset({"-t", "--target-directory", "-S", "--suffix"}), "last"),
    "link": (frozenset(), "last"),
    "install": (frozenset({"-m", "-o", "-g", "-t", "-S", "--mode", "--owner", "--group"}), "last"),
    "rsync": (frozenset({"-e", "--rsh", "--exclude", "--include", "--filter", "-f"}), "last"),
    "tar": (frozenset({"-f", "--file", "-C", "--directory", "-T", "-X", "-b", "-H", "-N"}), "none"),
    # compressors replace each file they are given (or, -r, each under a directory)
    "gzip": (frozenset({"-S", "--suffix"}), "all"),
    "gunzip": (frozenset({"-S", "--suffix"}), "all"),
    "bzip2": (frozenset(), "all"),
    "bunzip2": (frozenset(), "all"),
    "xz": (frozenset({"-T", "--threads", "-S", "--suffix", "-F", "--format", "-C"}), "all"),
    "unxz": (frozenset({"-T", "--threads", "-S", "--suffix"}), "all"),
    "chmod": (frozenset({"--reference"}), "after-first"),
    "chown": (frozenset({"--reference"}), "after-first"),
    "chgrp": (frozenset({"--reference"}), "after-first"),
}
# options whose value is a file the program writes, wherever they appear
_OUTPUT_OPTIONS: dict[str, frozenset[str]] = {
    "git": frozenset({"--output", "--output-directory"}),  # format-patch -o: see git()
    "sort": frozenset({"-o", "--output"}),
    "curl": frozenset(
        {"-o", "--output", "-c", "--cookie-jar", "-D", "--dump-header", "--output-dir"}
    ),
    "wget": frozenset({"-O", "--output-document", "-o", "--output-file", "-P"}),
    "tar": frozenset({"-f", "--file"}),
    "time": frozenset({"-o", "--output"}),
}


@dataclass
class _Follower:
    invocations: list[Invocation] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    cwd: str = ""  # where relative paths land, relative to the workspace; "" is its root
    found: tuple[str, ...] = ()  # inside ``find -exec``: what ``{}`` stands for
    placeholders: tuple[str, ...] = ()  # inside xargs and find: words replaced by input
    appending: bool = False  # inside xargs: words it reads are appended to the command
    homes: list[str] = field(default_factory=list)  # HOME=… set for the commands after
    stdin: str | None = None  # the file the command being followed reads its input from

    def script(self, script: Script, depth: int) -> None:
        self.unknown.extend(script.unknown)
        for command in (*script.commands, *script.nested):
            self.command(command, depth)

    def command(self, command: SimpleCommand, depth: int) -> None:
        head = command.words[0].value if command.words else None
        program = posixpath.basename(head) if head else None
        for assignment in command.assignments:
            words = parse(": " + assignment).commands
            text = words[0].words[-1].value if words and words[0].words else ""
            self.assignment(text, program)
        for redirect in command.redirects:
            if redirect.writes:
                self.write(redirect.target)
        saved = self.stdin
        read = [r.target.value for r in command.redirects if r.op in ("<", "<>")]
        self.stdin = read[-1] if read else None
        self.words(list(command.words), (), depth, fed=command.heredoc)
        self.stdin = saved

    def write(self, target: Word | str) -> None:
        value = target if isinstance(target, str) else target.value
        if not isinstance(target, str) and not target.literal:
            value = target.raw if not target.tilde else target.value
        if value in ("/dev/null", "/dev/stdout", "/dev/stderr", "-", ""):
            return
        if "{}" in value and self.found:
            for root in self.found:  # find's matches lie under its roots
                self.write(root)
            return
        relative = self.cwd not in ("", ".") and not value.startswith(("/", "~"))
        self.writes.append(posixpath.join(self.cwd, value) if relative else value)

    def words(self, words: list[Word], via: tuple[str, ...], depth: int, fed: bool) -> None:
        if not words:
            return
        head = words[0]
        if not head.literal:
            self.unknown.append(f"the program is named by an expansion ({head.raw})")
            return
        if any(p in head.value for p in self.placeholders):
            self.unknown.append(f"the program is named by what it reads ({head.raw})")
            return
        if len(via) >= MAX_WRAPPERS:
            self.unknown.append(f"more than {MAX_WRAPPERS} wrappers one inside another")
            return
        name = posixpath.basename(head.value.rstrip("/")) or head.value
        rest = words[1:]
        sub = gitcommand.dashed(name)
        if sub is not None:
            name, rest = "git", [Word(raw=sub, value=sub), *rest]
        if name in ("eval", "coproc"):
            self.unknown.append(f"{name} runs text built at run time")
            return
        renamed = _renames(name, [w.value for w in rest])
        if renamed is not None:  # what a later name runs is then not what it says
            self.unknown.append(renamed)
        if name in _DECLARERS:  # a variable set so reaches the commands after it
            for word in rest:
                self.assignment(word.value)
        if name in ("cd", "pushd", "popd"):
            self.chdir(rest)
        if name == "trap":
            self.trap(rest, depth)
        found = [parallel_launches(rest)] if name == "parallel" else None
        keyed = launcher_key(name, rest)
        saved_cwd, moved = self.cwd, False
        if found is None and keyed is not None:
            found = [launches(*keyed)]
            if keyed[0] == "env":  # its NAME=value words are for the program it runs
                launched_words = [r.words for r in found[0] if r.kind == "words" and r.words]
                program = posixpath.basename(launched_words[0][0].value) if launched_words else None
                for word in rest:
                    self.assignment(word.value, program)
            shorts, longs = _WORKING_DIRECTORY.get(keyed[0], ((), ()))
            for _, where in option_values(rest, shorts, longs):
                self.chdir([where])  # what it runs runs there
                moved = True
        for readings in found or []:
            launched = [r for r in readings if r.kind != "nothing"]
            key = keyed[0] if keyed is not None else name
            if not launched and self.appending and key in LAUNCHERS:
                self.unknown.append(f"{key} runs the words it reads from its input")
            for reading in launched:
                self.launch(reading, key, (*via, name), depth, fed, name == "xargs")
            if launched and (keyed is None or " " not in keyed[0]):
                if moved:
                    self.cwd = saved_cwd
                return  # the launcher itself is only a way to run what it launches
        if moved:
            self.cwd = saved_cwd
        if name in SHELLS:
            self.shell(name, rest, via, depth, fed)
        if (name in SHELLS or runs_code(name)) and any(from_input(w) for w in rest):
            fed_code = next(w for w in rest if from_input(w))
            self.unknown.append(f"{name} may run code from its input ({fed_code.raw})")
        unseen = inline_code(name, rest) or runs_unseen(name, rest)
        if unseen is not None:
            self.unknown.append(unseen)
        if name in COMMAND_OPTIONS:
            self.command_options(name, rest, depth)
        if name == "find":
            self.find(rest, via, depth, fed)
        if name in _GLOBAL_OPTIONS:
            self.subcommand(name, rest, depth)
        self.invocations.append(
            Invocation(name, _texts(name, rest), via, words=tuple(words), stdin=self.stdin)
        )
        self.writers(name, rest)

    def launch(
        self, reading: Launch, key: str, via: tuple[str, ...], depth: int, fed: bool, xargs: bool
    ) -> None:
        """Follow one reading of what launcher ``key`` runs."""
        saved = self.placeholders, self.appending
        if xargs:
            self.placeholders = (*self.placeholders, "{}")
            self.appending = True
        if reading.kind == "words":
            self.words(list(reading.words), via, depth, fed)
        elif reading.kind == "line" and reading.line is not None:
            self.line(key, reading.line, depth)
        elif reading.kind == "unknown":
            self.unknown.append(f"{key} {reading.reason}")
        self.placeholders, self.appending = saved

    def trap(self, rest: list[Word], depth: int) -> None:
        """``trap ACTION SIGNAL...``: the shell runs ACTION as a command line when the
        signal comes, or as it exits (``trap 'git push' EXIT``)."""
        if rest and rest[0].value == "--":
            rest = rest[1:]
        if len(rest) >= 2 and rest[0].value not in ("", "-"):
            self.line("trap", rest[0], depth)
        elif rest and not rest[0].literal:  # one word: a signal to reset, if literal
            self.unknown.append(f"trap runs text built at run time ({rest[0].raw})")

    def line(self, who: str, line: Word, depth: int) -> None:
        """A command line that ``who`` runs through a shell."""
        self.lines.append(who)
        if not line.literal:
            self.unknown.append(f"{who} runs text built at run time ({line.raw})")
        elif any(p in line.value for p in self.placeholders):
            self.unknown.append(f"{who} runs text it reads ({line.raw})")
        elif depth >= MAX_DEPTH:
            self.unknown.append(f"{who} runs commands nested too deep")
        else:
            saved = self.cwd, self.appending
            self.appending = False
            self.script(parse(line.value, depth + 1), depth + 1)
            self.cwd, self.appending = saved

    def command_options(self, name: str, rest: list[Word], depth: int) -> None:
        """Follow the command lines ``rsync -e``, ``tar -I``, ``ssh -o ProxyCommand=``… run."""
        options = COMMAND_OPTIONS[name]
        for i, word in enumerate(rest):
            value = word.value
            key, eq, attached = value.partition("=")
            given: Word | None = None
            option = key
            if value in options and i + 1 < len(rest):
                given = rest[i + 1]
            elif key in options and eq:
                given = Word(raw=attached, value=attached, dynamic=word.dynamic)
            elif value[:2] in options and not value.startswith("--") and len(value) > 2:
                option = value[:2]
                given = Word(raw=value[2:], value=value[2:], dynamic=word.dynamic)
            elif value.startswith("--checkpoint-action=exec="):
                text = value.removeprefix("--checkpoint-action=exec=")
                given = Word(raw=text, value=text, dynamic=word.dynamic)
            if given is None:
                continue
            if option == "-o":  # ssh's -o Key=value: only some keys name a command
                setting, _, text = re.sub(r"\s*=\s*|\s+", "=", given.value, count=1).partition("=")
                if setting.lower() not in SSH_COMMANDS:
                    continue
                given = Word(raw=text, value=text, dynamic=given.dynamic)
            self.line(f"{name} {option}", given, depth)

    def assignment(self, text: str, program: str | None = None) -> None:
        """``NAME=value`` before a command (``program``; None: for the commands after
        it): a variable that names a command git or a pager runs is followed, one that
        configures git unseen is unknown."""
        name, eq, value = text.partition("=")
        if not eq:
            return
        if name in _HOMES:
            if program is None:
                self.homes.append(name)  # judged by the git command after it, if one runs
                return
            if not _may_run_git(program):
                return  # 'HOME=/tmp pytest': where git would look, but no git runs
        why = gitcommand.environment_command(name)
        if why is not None:
            self.unknown.append(why)
        elif name in gitcommand.ENV_COMMANDS and value:
            self.line(name, Word(raw=value, value=value), 0)

    def shell(
        self, name: str, rest: list[Word], via: tuple[str, ...], depth: int, fed: bool
    ) -> None:
        i, command_string = 0, False
        while i < len(rest) and rest[i].value[:1] in ("-", "+") and rest[i].value != "-":
            option = rest[i].value
            i += 1
            if option == "--":
                break
            if option in SHELL_VALUES:
                i += 1
            elif not option.startswith("--") and "c" in option[1:]:
                command_string = True
            elif option == "-s":
                fed = True
        if command_string:
            if i >= len(rest):
                self.unknown.append(f"{name} -c without a command")
            elif not rest[i].literal:
                self.unknown.append(f"{name} -c runs text built at run time ({rest[i].raw})")
            elif depth >= MAX_DEPTH:
                self.unknown.append(f"{name} -c nested too deep")
            else:
                saved = self.cwd
                self.script(parse(rest[i].value, depth + 1), depth + 1)
                self.cwd = saved
        elif i >= len(rest) or fed:
            self.unknown.append(f"{name} reads the commands it runs from its input")

    def find(self, rest: list[Word], via: tuple[str, ...], depth: int, fed: bool) -> None:
        roots = []
        for word in rest:
            if word.value.startswith(("-", "(", "!")):
                break
            roots.append(word)
        i = 0
        while i < len(rest):
            action = rest[i].value
            if action in ("-exec", "-execdir", "-ok", "-okdir"):
                end = next(
                    (j for j in range(i + 1, len(rest)) if rest[j].value in (";", "+")),
                    len(rest),
                )
                saved, self.found = self.found, tuple(r.raw for r in roots) or (".",)
                marks, self.placeholders = self.placeholders, (*self.placeholders, "{}")
                # -execdir runs in each found file's directory, somewhere under a root
                places = self.found if action in ("-execdir", "-okdir") else (None,)
                for place in places:
                    before = self.cwd
                    if place is not None:
                        self.chdir([Word(raw=place, value=place)])
                    self.words(rest[i + 1 : end], (*via, "find"), depth, fed)
                    self.cwd = before
                self.found, self.placeholders = saved, marks
                i = end
            elif action == "-delete":
                for root in roots or [Word(raw=".", value=".")]:
                    self.write(root)
            elif action in ("-fprint", "-fprint0", "-fprintf", "-fls") and i + 1 < len(rest):
                self.write(rest[i + 1])
            i += 1

    def subcommand(self, name: str, rest: list[Word], depth: int) -> None:
        """A subcommand named by an expansion is unknown; git's is read further (:meth:`git`)."""
        saved = self.cwd
        try:
            self._subcommand(name, rest, depth)
        finally:
            self.cwd = saved  # git -C moves only git

    def _subcommand(self, name: str, rest: list[Word], depth: int) -> None:
        for i, word in enumerate(rest):
            if name == "git" and i > 0 and rest[i - 1].value in ("-C", "--work-tree"):
                self.chdir([word])  # what git writes, it writes there
            if name == "git" and word.value.startswith("--work-tree="):
                where = word.value.partition("=")[2]
                self.chdir([replace(word, raw=where, value=where)])
            value = word.value
            if name == "git" and value.startswith("--config-env"):
                self.unknown.append(f"git takes its configuration from a variable ({value})")
            if name == "git" and i > 0 and rest[i - 1].value == "-c":
                self.git_setting(value, depth)
            elif name == "git" and value.startswith("-c") and len(value) > 2:
                self.git_setting(value[2:], depth)
            if not value.startswith("-") and (i == 0 or rest[i - 1].value not in ("-c", "-C")):
                if not word.literal:
                    self.unknown.append(f"{name}'s subcommand is an expansion ({word.raw})")
                elif name == "git":
                    self.git(value, rest[i + 1 :], depth)
                return
        if self.appending and name == "git":
            self.unknown.append("git runs a subcommand it reads from its input")

    def git(self, sub: str, rest: list[Word], depth: int) -> None:
        """An alias or unknown ``git-NAME`` program is unknown; options whose value is a
        command (``rebase -x``, ``fetch --upload-pack``) are followed."""
        for name in self.homes:  # 'export HOME=.; git log'
            why = gitcommand.environment_command(name)
            if why is not None:
                self.unknown.append(why)
        if sub not in gitcommand.GIT_COMMANDS:
            why = f"git {sub!r} is no git command: an alias or a program named git-{sub}"
            self.unknown.append(why)
            return
        if sub == "config":
            for word in rest:
                obeyed = gitcommand.config_key_command(word.value.lower())
                if obeyed is not None:
                    self.unknown.append(obeyed)
            if any(w.value.startswith(("--rename-section", "--remove-section")) for w in rest):
                self.unknown.append("git config renames or removes a section of settings")
        options = gitcommand.SUBCOMMAND_COMMANDS.get(sub, frozenset())
        for option, value in option_values(rest, _shorts(options), _longs(options)):
            self.line(f"git {sub} {option}", value, depth)
        for path in gitcommand.tree_writes(sub, [w.value for w in rest]):
            self.write(path)
        if sub == "format-patch":
            for _, where in option_values(rest, ["-o"], ["--output-directory"]):
                self.write(where)

    def git_setting(self, setting: str, depth: int) -> None:
        kind, detail = gitcommand.config_command(setting)
        if kind == "unknown" and detail is not None:
            self.unknown.append(detail)
        elif kind == "run" and detail:
            self.line("git -c", Word(raw=detail, value=detail), depth)

    def chdir(self, rest: list[Word]) -> None:
        target = next((w for w in rest if not w.value.startswith("-")), None)
        if target is None or target.value == "-":
            self.cwd = "~"  # home, or wherever the shell was before: not the workspace
        elif not target.literal:
            self.cwd = target.raw
        else:
            self.cwd = posixpath.join(self.cwd, target.value) if self.cwd else target.value

    def writers(self, name: str, rest: list[Word]) -> None:
        outputs = _OUTPUT_OPTIONS.get(name, frozenset())
        for _, value in option_values(rest, _shorts(outputs), _longs(outputs)):
            self.write(value)
        for extracts in _EXTRACTS.get(name, ()):
            if extracts(rest):  # 'tar -x', 'unzip': into -C/-d, or where it runs
                self.write(_extracted_into(name, rest))
        if name == "sed" and any(_in_place(w.value) for w in rest):
            scripted = any(w.value in ("-e", "-f") or w.value.startswith("--exp") for w in rest)
            files = _positionals(rest, frozenset({"-e", "-f", "--expression", "--file"}))
            for word in files if scripted else files[1:]:
                self.write(word)
        if name == "dd":
            for word in rest:
                if word.value.startswith("of="):
                    self.write(word.value[3:])
        if name not in _WRITERS:
            return
        takes_value, which = _WRITERS[name]
        files = _positionals(rest, takes_value)
        if which == "last":
            files = files[-1:]
        elif which == "after-first":
            files = files[1:]
        elif which == "none":
            files = []
        if name in ("mv", "cp", "ln", "install"):  # the directory they write into
            files += [v for _, v in option_values(rest, ["-t"], ["--target-directory"])]
        if name == "tar" and any(w.value.startswith("--remove-f") for w in rest):
            files = _positionals(rest, takes_value)  # each file it archives, then deletes
            into = _tar_directory(rest)
            files = [replace(w, value=posixpath.join(into, w.value)) for w in files]
            if option_values(rest, ["-T"], ["--files-from"]):
                files.append(Word(raw=".", value="."))  # names it reads from a file
        if any(w.value.startswith("--files") for w in rest) and which == "all":
            files.append(Word(raw=".", value="."))  # xz --files=list: names it reads
        for word in files:
            self.write(word)
        if _links(name, rest):  # each file linked to can be written through the link
            for target in _linked(name, rest, takes_value):
                self.write(target)


def option_values(
    words: list[Word], short: Iterable[str], long: Iterable[str]
) -> list[tuple[str, Word]]:
    """The values ``words`` give the options ``short`` (``-x``) and ``long``
    (``--name``), however getopt reads them: ``-x V``, ``-xV``, at the end of a cluster
    of flags (``-qx V``, ``-nOV``), ``--name V``, ``--name=V``, and any start of a long
    name (``--na=V``: getopt_long takes a unique one; an ambiguous one is read as each,
    which asks more, never less). Options after ``--`` are operands."""
    letters = {o[1:] for o in short}
    names = tuple(long)
    found: list[tuple[str, Word]] = []
    i = 0
    while i < len(words):
        word = words[i]
        value = word.value
        if value == "--":
            break
        if value.startswith("--") and len(value) > 2:
            key, eq, given = value.partition("=")
            for name in (n for n in names if n.startswith(key)):
                if eq:
                    found.append((name, replace(word, raw=given, value=given)))
                elif i + 1 < len(words):
                    found.append((name, words[i + 1]))
            if not eq and any(n.startswith(key) for n in names):
                i += 1
        elif value.startswith("-") and len(value) > 1:
            for at, letter in enumerate(value[1:], 2):
                if letter in letters:
                    if value[at:]:
                        attached = value[at:]
                        found.append((f"-{letter}", replace(word, raw=attached, value=attached)))
                    elif i + 1 < len(words):
                        found.append((f"-{letter}", words[i + 1]))
                        i += 1
                    break
        i += 1
    return found


def _shorts(options: Iterable[str]) -> list[str]:
    return [o for o in options if len(o) == 2 and o[0] == "-" and o[1] != "-"]


def _longs(options: Iterable[str]) -> list[str]:
    return [o for o in options if o.startswith("--")]


def _in_place(option: str) -> bool:
    """Whether sed's ``option`` edits its files in place: ``-i``, ``--in-place`` or a
    start of it (``--in-pl``), or a cluster of short options holding ``i`` (``-Ei``,
    ``-ni.bak``)."""
    if option.startswith("--"):
        key = option.partition("=")[0]
        return len(key) > 3 and "--in-place".startswith(key)
    return option.startswith("-") and "i" in option[1:].split(".")[0]


# launchers that run their command in a directory an option names
_WORKING_DIRECTORY: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "env": (("-C",), ("--chdir",)),
    "unshare": ((), ("--wd",)),
    "nsenter": (("-w",), ("--wd",)),
    "sudo": (("-D",), ("--chdir",)),
    "systemd-run": ((), ("--working-directory",)),
}


def _tar_directory(rest: list[Word]) -> str:
    """Where tar works: its ``-C`` directories one after another (each is taken from
    the one before)."""
    into = ""
    for _, where in option_values(rest, ["-C"], ["--directory"]):
        into = posixpath.join(into, where.value) if into else where.value
    return into or "."


def _extracted_into(name: str, rest: list[Word]) -> str:
    """Where ``name`` extracts its archive's members; ``/`` (outside the workspace)
    where a member may be named anywhere (``tar -P``, ``unzip -:``)."""
    values = [w.value for w in rest]
    if name == "tar":
        if any(v.startswith("--absolute") or _cluster_has(v, "P") for v in values):
            return "/"
        top = option_values(rest, [], ["--one-top-level"])
        into = _tar_directory(rest)
        return posixpath.join(into, top[-1][1].value) if top else into
    if name == "unzip":
        if "-:" in values or any(_cluster_has(v, ":") for v in values):
            return "/"
        named = option_values(rest, ["-d"], [])
        return named[-1][1].value if named else "."
    if name in ("7z", "7za", "7zr"):
        outs = [v[2:] for v in values if v.startswith("-o") and len(v) > 2]
        return outs[-1] if outs else "."
    return "."


def _cluster_has(option: str, letter: str) -> bool:
    return option.startswith("-") and not option.startswith("--") and letter in option[1:]


def _linked(name: str, rest: list[Word], takes_value: frozenset[str]) -> list[str]:
    """The workspace files ``ln``/``cp -l``/``cp -s``/``link`` link to: for a symbolic
    link, named from the link's own directory. Files outside the workspace are left
    out: writing through such a link meets what the sandbox holds."""
    files = [_here(w) for w in _positionals(rest, takes_value)]
    targets = [_here(w) for _, w in option_values(rest, ["-t"], ["--target-directory"])]
    if len(files) < 2 and not targets:
        return []
    sources, place = (files, targets[-1]) if targets else (files[:-1], files[-1])
    symbolic = name != "link" and any(
        _cluster_has(w.value, "s") or w.value.startswith("--symbolic") for w in rest
    )
    if place is None:
        return []  # where the link lies is the shell's to say: the sandbox's
    into_place = bool(targets) or len(sources) > 1 or place[0].endswith("/")
    base = place[0] if into_place else posixpath.dirname(place[0])
    linked = []
    for named in sources:
        if named is None:
            continue  # where it lies is the shell's ($(which python3), ~/x): the sandbox's
        source, from_here = named
        relative = symbolic and not from_here and not source.startswith("/")
        path = posixpath.join(base, source) if relative else source
        normal = posixpath.normpath(path)
        if not normal.startswith(("/", "../")) and normal != "..":
            linked.append(normal)
    return linked


def _here(word: Word) -> tuple[str, bool] | None:
    """``word`` as a path, and whether it is named from the working directory whatever
    names it (``$PWD/x``, ``$(pwd)/x`` are ``x``, from there); None for another
    expansion, which only the shell resolves."""
    if word.literal:
        return word.value, False
    for prefix in ("$PWD/", "${PWD}/", "$(pwd)/", "`pwd`/"):
        if word.value.startswith(prefix):
            rest = word.value[len(prefix) :]
            return (rest, True) if not any(c in rest for c in "$`*?[~") else None
    return None


def _links(name: str, rest: list[Word]) -> bool:
    """Whether ``name`` makes links to the files it is given (``ln``, ``cp -l``/``-s``):
    each of them can then be written through the link's name, which no rule on their
    own names sees, so making one writes them."""
    if name in ("ln", "link"):
        return True
    if name != "cp":
        return False
    for word in rest:
        value = word.value
        if value == "--":
            break
        if value.startswith("--") and any(
            n.startswith(value) for n in ("--link", "--symbolic-link")
        ):
            return True
        if value.startswith("-") and not value.startswith("--") and {"l", "s"} & set(value[1:]):
            return True
    return False


def _extracting_tar(rest: list[Word]) -> bool:
    """Whether tar extracts into files (not to its output: ``-O``, ``--to-stdout``)."""
    values = [w.value for w in rest]
    if any(_cluster_has(v, "O") or v.startswith(("--to-stdout", "--to-command")) for v in values):
        return False
    first = values[0] if values else ""
    if first and not first.startswith("-") and "x" in first:  # 'tar xf a.tar'
        return True
    return any(_cluster_has(v, "x") or v in ("--extract", "--get") for v in values)


# programs that write what an archive holds: into -C/-d, or where they run
_EXTRACTS: dict[str, tuple[Callable[[list[Word]], bool], ...]] = {
    "tar": (_extracting_tar,),
    "unzip": (lambda rest: not any(_cluster_has(w.value, c) for w in rest for c in "ltvZpc"),),
    "7z": (lambda rest: bool(rest) and rest[0].value in ("x", "e", "X"),),
    "7za": (lambda rest: bool(rest) and rest[0].value in ("x", "e", "X"),),
    "7zr": (lambda rest: bool(rest) and rest[0].value in ("x", "e", "X"),),
    "cpio": (
        lambda rest: any(
            _cluster_has(w.value, "i")
            or _cluster_has(w.value, "p")
            or w.value.startswith("--ext")
            or w.value.startswith("--pass")
            for w in rest
        ),
    ),
}


def _positionals(words: list[Word], takes_value: frozenset[str]) -> list[Word]:
    out: list[Word] = []
    i, options = 0, True
    while i < len(words):
        value = words[i].value
        if options and value == "--":
            options = False
        elif options and value.startswith("-") and value != "-":
            if value in takes_value:
                i += 1
        else:
            out.append(words[i])
        i += 1
    return out


def _texts(name: str, rest: list[Word]) -> tuple[str, ...]:
    """``name`` and its words, with global options before a subcommand set aside."""
    values = [w.value for w in rest]
    if name not in _GLOBAL_OPTIONS:
        return (" ".join((name, *values)),)
    takes_value = _GLOBAL_OPTIONS[name]
    texts: list[str] = []
    i, ambiguous = 0, -1
    while i < len(values) and values[i].startswith(("-", "+")) and values[i] != "-":
        option = values[i]
        if option == "--":
            i += 1
            break
        if option in takes_value:
            i += 2
            continue
        if "=" not in option and not (len(option) > 2 and option[:2] in takes_value):
            ambiguous = i  # an option we do not know: may or may not take a value
        i += 1
    texts.append(" ".join((name, *values[i:])))
    if ambiguous >= 0 and i < len(values):
        texts.append(" ".join((name, *values[i + 1 :])))
    if name == "git":
        texts += [_git_written_out(text) for text in texts]
    return tuple(dict.fromkeys(texts))


def _git_written_out(text: str) -> str:
    """A git command line as git reads it: the starts of long options written out, and
    ``branch``'s delete and force flags given apart also as ``-D``."""
    _, sub, *words = [*text.split(" "), ""]
    words = [gitcommand.spelled_out(sub, w) for w in words if w]
    if gitcommand.deletes_by_force(sub, words):
        words.append("-D")
    return " ".join(("git", sub, *words)).rstrip()


def follow(script: Script) -> Meaning:
    """Every program ``script`` runs, every file it writes, and what could not be followed."""
    follower = _Follower()
    follower.script(script, 0)
    return Meaning(
        invocations=tuple(follower.invocations),
        writes=tuple(dict.fromkeys(follower.writes)),
        unknown=tuple(dict.fromkeys(follower.unknown)),
        lines=tuple(dict.fromkeys(follower.lines)),
    )


def _renames(name: str, values: list[str]) -> str | None:
    """Why ``name values`` makes a later command name run something else, or None:
    ``alias g=git`` (sh expands aliases in a script: ``g push`` on the next line runs
    git push), bash's ``hash -p /usr/bin/git ls`` and ``enable -f lib.so name``."""
    options = "".join(v[1:] for v in values if v.startswith("-") and v != "-")
    if name == "alias" and any("=" in v for v in values):
        return "alias makes a name run other words"
    if name == "hash" and "p" in options:
        return "hash -p makes a name run another program"
    if name == "enable" and "f" in options:
        return "enable -f loads a builtin from a library"
    return None
