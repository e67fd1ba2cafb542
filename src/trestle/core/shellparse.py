"""A POSIX-shell reader for the policy: words, simple commands and what they run.

Not a shell: it never expands anything. It reads quotes (``'…'``, ``"…"``, ``$'…'``),
backslash escapes, the operators ``;`` ``&&`` ``||`` ``|`` ``|&`` ``&`` and newlines,
groups ``( )`` and ``{ }``, command substitutions ``$( )`` and backticks, process
substitutions ``<( )`` ``>( )``, redirections (here-documents included), comments and
leading ``NAME=value`` assignments. Substitutions are read recursively, so the commands
they run are seen too, also inside ``${…}``, ``$((…))`` and an unquoted here-document's
body. What it cannot read (an unterminated quote, ``((…))``, ``case``) is reported in
``unknown`` and the policy then asks a human.

Pure: no IO.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_DEPTH = 6
"""Substitutions and ``sh -c`` strings nested deeper than this are not read: unknown."""


@dataclass(frozen=True)
class Word:
    """One shell word.

    Attributes:
        raw: as written.
        value: with quotes and escapes removed (expansions left as written).
        dynamic: holds an expansion the shell performs (``$X``, ``$(…)``, backticks).
        glob: holds an unquoted ``*``, ``?`` or ``[``, or a brace expansion (``{a,b}``).
        tilde: starts with an unquoted ``~``.
    """

    raw: str
    value: str
    dynamic: bool = False
    glob: bool = False
    tilde: bool = False

    @property
    def literal(self) -> bool:
        """The shell passes ``value`` unchanged."""
        return not (self.dynamic or self.glob or self.tilde)


@dataclass(frozen=True)
class Redirect:
    op: str  # '>', '>>', '>|', '&>', '&>>', '<', '<<', '<<-', '<<<', '>&', '<&', '<>'
    target: Word

    @property
    def writes(self) -> bool:
        return self.op in (">", ">>", ">|", "&>", "&>>", "<>") or (
            self.op == ">&" and not (self.target.value.isdigit() or self.target.value == "-")
        )


@dataclass(frozen=True)
class SimpleCommand:
    """Assignments, words and redirections between two operators.

    ``text`` is the command as written with unquoted runs of blanks collapsed;
    ``heredoc`` is true when a here-document or here-string feeds it.
    """

    text: str
    assignments: tuple[str, ...]
    words: tuple[Word, ...]
    redirects: tuple[Redirect, ...]
    heredoc: bool = False


@dataclass(frozen=True)
class Script:
    """A parsed command line.

    Attributes:
        commands: the top-level simple commands, in order.
        nested: simple commands inside substitutions, at any depth.
        substitutions: the line (at any depth) runs ``$(…)``, backticks or ``<(…)``.
        unknown: why parts of it could not be read; empty when all of it was.
    """

    commands: tuple[SimpleCommand, ...]
    nested: tuple[SimpleCommand, ...] = ()
    substitutions: bool = False
    unknown: tuple[str, ...] = ()


_OPERATORS = ("&&", "||", "|&", ";;", ";", "|", "&", "\n")
_REDIRECTS = ("&>>", "&>", "<<<", "<<-", "<<", ">>", ">|", ">&", "<&", "<>", ">", "<")
_RESERVED = frozenset({"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!"})
_UNREAD = frozenset({"case", "esac", "for", "select", "function", "coproc", "[["})
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+?=")
_BRACES = re.compile(r"\{[^\s{}]*(?:,|\.\.)[^\s{}]*\}")  # a brace expansion: {a,b} {1..3}
_WORD_END = frozenset(" \t\n;&|<>()")
_C_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "e": "\x1b", "f": "\f"}
_C_ESCAPES |= {"v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}


@dataclass
class _Reader:
    text: str
    depth: int
    i: int = 0
    commands: list[SimpleCommand] = field(default_factory=list)
    nested: list[SimpleCommand] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    substitutions: bool = False
    # delimiter, strip tabs, whether the body is expanded (an unquoted delimiter)
    heredocs: list[tuple[str, bool, bool]] = field(default_factory=list)

    # --- the line ---------------------------------------------------------------------

    def read(self) -> None:
        while self.i < len(self.text):
            self._command()

    def _command(self) -> None:
        """Read one simple command and the operator after it."""
        words: list[Word] = []
        assignments: list[str] = []
        redirects: list[Redirect] = []
        heredoc = False
        start = self._skip_blanks()
        spans: list[tuple[int, int]] = []
        while self.i < len(self.text):
            ch = self.text[self.i]
            if ch == "#" and (self.i == 0 or self.text[self.i - 1] in " \t\n;&|()"):
                while self.i < len(self.text) and self.text[self.i] != "\n":
                    self.i += 1
                continue
            op = self._operator()
            if op is not None:
                if op == "\n":
                    self._heredoc_bodies()
                if op == ";;":
                    self.unknown.append("a case statement")
                break
            if ch in "()":
                if ch == "(" and self.text.startswith("((", self.i) and not words:
                    self.unknown.append("an arithmetic command (( ))")
                elif ch == "(" and words:
                    self.unknown.append(f"a function definition {words[-1].raw!r}")
                self.i += 1
                break
            redirect = self._redirect(words)
            if redirect is not None:
                spans.append(redirect[1])
                redirects.append(redirect[0])
                heredoc = heredoc or redirect[0].op.startswith("<<")
                continue
            begin = self.i
            word = self._word()
            if word is None:
                self.i += 1  # a stray character: skip it rather than loop
                continue
            spans.append((begin, self.i))
            if not words and word.raw in ("{", "}"):
                continue  # a group: its commands are read as they come
            if not words and word.raw in _RESERVED:
                continue  # if/while/do...: the command after the keyword is what runs
            if not words and word.raw in _UNREAD:
                self.unknown.append(f"a {word.raw!r} construct")
            if not words and _ASSIGNMENT.match(word.raw):
                assignments.append(word.raw)
                continue
            words.append(word)
            self._skip_blanks()
        if words or assignments or redirects:
            end = spans[-1][1] if spans else self.i
            command = SimpleCommand(
                text=_collapse(self.text[start:end]),
                assignments=tuple(assignments),
                words=tuple(words),
                redirects=tuple(redirects),
                heredoc=heredoc,
            )
            self.commands.append(command)

    def _skip_blanks(self) -> int:
        while self.i < len(self.text) and self.text[self.i] in " \t":
            self.i += 1
        if self.text.startswith("\\\n", self.i):
            self.i += 2
            return self._skip_blanks()
        return self.i

    def _operator(self) -> str | None:
        for op in _OPERATORS:
            if self.text.startswith(op, self.i):
                if op == "&" and self.text.startswith("&>", self.i):
                    return None  # '&>' is a redirection
                self.i += len(op)
                return op
        return None

    def _redirect(self, words: list[Word]) -> tuple[Redirect, tuple[int, int]] | None:
        begin = self.i
        j = self.i
        while j < len(self.text) and self.text[j].isdigit():
            j += 1
        if self.text.startswith(("<(", ">("), j):
            return None  # a process substitution is a word
        op = next((o for o in _REDIRECTS if self.text.startswith(o, j)), None)
        if op is None or (j > self.i and op.startswith("&")):
            return None
        self.i = j + len(op)
        self._skip_blanks()
        target = self._word() or Word(raw="", value="")
        if op in ("<<", "<<-"):
            self.heredocs.append((target.value, op == "<<-", target.raw == target.value))
        return Redirect(op=op, target=target), (begin, self.i)

    def _heredoc_bodies(self) -> None:
        for delimiter, strip, expands in self.heredocs:
            begin = body_end = self.i
            while self.i < len(self.text):
                end = self.text.find("\n", self.i)
                line = self.text[self.i : end if end >= 0 else len(self.text)]
                body_end, self.i = self.i, end + 1 if end >= 0 else len(self.text)
                if (line.lstrip("\t") if strip else line) == delimiter:
                    break
                body_end = self.i
            if expands:  # the shell expands an unquoted delimiter's body: $( ) runs
                self._body(self.text[begin:body_end])
        self.heredocs.clear()

    def _body(self, body: str) -> None:
        """The substitutions in a here-document's body, where quotes are plain text
        and only a backslash stops an expansion."""
        scan = _Reader(text=body, depth=self.depth)
        while scan.i < len(body):
            ch = body[scan.i]
            if ch == "\\":
                scan.i += 2
            elif ch in "$`":
                scan._expansion()
            else:
                scan.i += 1
        self.substitutions = self.substitutions or scan.substitutions
        self.nested.extend(scan.nested)
        self.unknown.extend(scan.unknown)

    # --- words ------------------------------------------------------------------------

    def _word(self) -> Word | None:
        begin = self.i
        value: list[str] = []
        dynamic = glob = False
        tilde = self.text.startswith("~", self.i)
        text = self.text
        while self.i < len(text):
            ch = text[self.i]
            if ch in _WORD_END and not text.startswith(("<(", ">("), self.i):
                break
            if ch == "\\":
                if text.startswith("\\\n", self.i):
                    self.i += 2
                    continue
                value.append(text[self.i + 1 : self.i + 2])
                self.i += 2
            elif ch == "'":
                end = text.find("'", self.i + 1)
                if end < 0:
                    self.unknown.append("an unterminated single quote")
                    end = len(text)
                value.append(text[self.i + 1 : end])
                self.i = end + 1
            elif text.startswith("$'", self.i):
                value.append(self._ansi_c())
            elif ch == '"':
                dynamic = self._double_quoted(value) or dynamic
            elif ch == "$" or ch == "`" or text.startswith(("<(", ">("), self.i):
                value.append(self._expansion())
                dynamic = True
            else:
                # '[' alone is a program ('[ -f x ]'); only '[...]' is a pattern
                closes = ch == "[" and "]" in text[self.i + 1 : self.i + 64].split(" ")[0]
                # bash, /bin/sh on many systems, makes '{git,push}' two words: git push
                braces = ch == "{" and _BRACES.match(text, self.i) is not None
                glob = glob or ch in "*?" or closes or braces
                value.append(ch)
                self.i += 1
        if self.i == begin:
            return None
        return Word(raw=text[begin : self.i], value="".join(value), dynamic=dynamic, glob=glob,
                    tilde=tilde)  # fmt: skip

    def _double_quoted(self, value: list[str]) -> bool:
        dynamic = False
        self.i += 1
        text = self.text
        while self.i < len(text) and text[self.i] != '"':
            ch = text[self.i]
            if ch == "\\" and self.i + 1 < len(text):
                nxt = text[self.i + 1]
                value.append(nxt if nxt in '$`"\\\n' else ch + nxt)
                self.i += 2
            elif ch == "$" or ch == "`":
                value.append(self._expansion())
                dynamic = True
            else:
                value.append(ch)
                self.i += 1
        if self.i >= len(text):
            self.unknown.append("an unterminated double quote")
        self.i += 1
        return dynamic

    def _ansi_c(self) -> str:
        out: list[str] = []
        self.i += 2
        text = self.text
        while self.i < len(text) and text[self.i] != "'":
            if text[self.i] == "\\" and self.i + 1 < len(text):
                nxt = text[self.i + 1]
                hexa = re.match(r"x([0-9a-fA-F]{1,2})", text[self.i + 1 :])
                octal = re.match(r"([0-7]{1,3})", text[self.i + 1 :])
                if hexa:
                    out.append(chr(int(hexa.group(1), 16)))
                    self.i += 1 + len(hexa.group(0))
                elif octal:
                    out.append(chr(int(octal.group(1), 8)))
                    self.i += 1 + len(octal.group(0))
                elif nxt in _C_ESCAPES:
                    out.append(_C_ESCAPES[nxt])
                    self.i += 2
                else:
                    self.unknown.append(f"the escape \\{nxt} in $'…'")
                    out.append(nxt)
                    self.i += 2
            else:
                out.append(text[self.i])
                self.i += 1
        if self.i >= len(text):
            self.unknown.append("an unterminated $'…' quote")
        self.i += 1
        return "".join(out)

    def _expansion(self) -> str:
        """Consume ``$…``, ``${…}``, ``$(…)``, ``$((…))``, a backtick or ``<(…)``."""
        text, begin = self.text, self.i
        if text.startswith("$((", begin):
            end = self._closing(begin + 3, "((", "))")
            self._within(text[begin + 3 : end - 2])
            self.i = end
        elif text.startswith(("$(", "<(", ">("), begin):
            end = self._closing(begin + 2, "(", ")")
            self._substitution(text[begin + 2 : end - 1])
            self.i = end
        elif text[begin] == "`":
            end = begin + 1
            while end < len(text) and text[end] != "`":
                end += 2 if text[end] == "\\" else 1
            if end >= len(text):
                self.unknown.append("an unterminated backtick")
            inner = text[begin + 1 : end].replace("\\`", "`").replace("\\\\", "\\")
            self._substitution(inner)
            self.i = end + 1
        elif text.startswith("${", begin):
            end = self._closing(begin + 2, "{", "}")
            self._within(text[begin + 2 : end - 1])
            self.i = end
        else:
            match = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-])?", text[begin:])
            assert match is not None
            self.i = begin + max(1, len(match.group(0)))
        return text[begin : min(self.i, len(text))]

    def _closing(self, start: int, opening: str, closing: str) -> int:
        """The index just past the ``closing`` that balances an already-read ``opening``."""
        depth, j, text = 1, start, self.text
        while j < len(text):
            if text[j] == "\\":
                j += 2
                continue
            if text[j] in "'\"":
                end = text.find(text[j], j + 1)
                j = end + 1 if end >= 0 else len(text)
                continue
            if text.startswith(closing, j):
                depth -= 1
                if depth == 0:
                    return j + len(closing)
                j += len(closing)
                continue
            if text.startswith(opening, j):
                depth += 1
                j += len(opening)
                continue
            j += 1
        self.unknown.append(f"an unbalanced {opening!r}")
        return len(text)

    def _within(self, inner: str) -> None:
        """The substitutions inside ``${…}`` or ``$((…))``: the shell runs them too
        (``${x:-$(git push)}``, ``$((`git push`))``), so they are read as words are."""
        if not any(mark in inner for mark in ("$(", "`", "<(", ">(")):
            return  # nothing there runs a command
        if self.depth >= MAX_DEPTH:
            self.unknown.append("expansions nested too deep")
            return
        words = _Reader(text=inner, depth=self.depth + 1)
        while words.i < len(inner):
            if words._word() is None:
                words.i += 1
        self.substitutions = self.substitutions or words.substitutions
        self.nested.extend(words.nested)
        self.unknown.extend(words.unknown)

    def _substitution(self, inner: str) -> None:
        self.substitutions = True
        if self.depth >= MAX_DEPTH:
            self.unknown.append("substitutions nested too deep")
            return
        script = parse(inner, self.depth + 1)
        self.nested.extend(script.commands)
        self.nested.extend(script.nested)
        self.unknown.extend(script.unknown)


def _collapse(text: str) -> str:
    """``text`` with unquoted runs of blanks made one space, stripped."""
    out: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote is None and ch == "\\" and i + 1 < len(text):
            out.append(text[i : i + 2])
            i += 2
            continue
        if quote is None and ch in " \t":
            if out and out[-1] != " ":
                out.append(" ")
        else:
            if quote is None and ch in "'\"":
                quote = ch
            elif quote == ch:
                quote = None
            out.append(ch)
        i += 1
    return "".join(out).strip()


def parse(text: str, depth: int = 0) -> Script:
    """Read ``text`` as a shell command line; never raises."""
    reader = _Reader(text=text, depth=depth)
    reader.read()
    return Script(
        commands=tuple(reader.commands),
        nested=tuple(reader.nested),
        substitutions=reader.substitutions,
        unknown=tuple(dict.fromkeys(reader.unknown)),
    )
