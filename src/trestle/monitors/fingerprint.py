"""Fingerprints: what is left of a command or an observation once the noise is gone.

The behavioural monitors compare actions and observations across a run. Compared
verbatim, two runs of the same test differ in their timings and two views of a file
differ in their line numbers, so each comparison goes through one of these:

- :func:`command_shape`: a command with its whitespace, quoting, number literals and
  flag order normalised (``grep -n -r "foo" src | head -20`` and
  ``grep -rn foo src | head -50`` have the same shape);
- :func:`observation_digest`: an observation with only its volatile parts (timestamps,
  durations, memory addresses, temporary paths) removed, for "the same observation";
- :func:`observation_lines`: an observation's lines with line-number prefixes and all
  numbers normalised as well, for "nothing new was shown";
- :func:`failure_fingerprint`: what a failing test run says failed (test ids and error
  lines), without timings, addresses or line numbers that shift when code is edited;
- :func:`program_output`: an observation without the lines the agent's scaffold adds
  (OpenHands' ``[Command finished with exit code N]`` and the like), so that what is
  compared is what the program printed; :func:`telling_lines`: that, without lines
  that only say a test passed.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache, lru_cache
from typing import NamedTuple

from trestle.core.safetext import loads_bounded

# A number literal that is not part of a name (python3, test_2 and file2.py keep theirs).
# Written to begin with the digit, the look behind after it: a pattern that begins with a
# character class is scanned for it quickly, one that begins with an assertion is tried
# at every position (the same holds for the ``\b`` _ADDRESS and _DURATION begin with)
_NUMBER = re.compile(r"\d(?<![A-Za-z_]\d)\d*(?:\.\d+)*")
_SEPARATORS = re.compile(r"(\|\||&&|[|;])")
_SHORT_FLAGS = re.compile(r"-[A-Za-z]{2,3}")  # -rn, -xvs; not -name or -type
_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
    r"|\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b"
)
# every timestamp has a time of day: a digit, ":" and two digits
_TIME_OF_DAY = re.compile(r"\d:\d\d")
_ADDRESS = re.compile(r"0(?<!\w0)x[0-9a-fA-F]+\b")
_DURATION = re.compile(r"\d(?<!\w\d)\d*(?:\.\d+)?\s?(?:s|ms|us|µs|sec|secs|seconds)\b")
_TEMP_PATH = re.compile(r"/(?:private/)?(?:tmp|var/folders)/[^\s:'\"]+")
# "  12\tcode" (cat -n, editor views), "12:code" (SWE-agent's open), "path:12:code" (grep -n)
_LINE_PREFIX = re.compile(r"^\s*(?:[^\s:]+:)?\d+(?:[:\t|]|\s{2,}|\s(?=\S))")
_PY_LOCATION = re.compile(r"(\.py)[:\s,]+(?:line\s+)?\d+")


# The same patterns for ASCII text (``str.isascii`` is a flag CPython keeps, free to
# read), where they match as the patterns above do: ``\d``, ``\w`` and ``\s`` spelled out
# as classes of ASCII characters (``\s`` as ``str.isspace`` takes it: \t to \r, \x1c to
# \x1f and space), which sre tests at each position faster than a Unicode category
# (4 KB of a file read: the number pattern 63 µs against 102).
_ASCII_CLASSES = {"d": "0-9", "w": "0-9A-Za-z_", "s": "\\t-\\r\\x1c-\\x1f "}


def _ascii_twin(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """``pattern`` for ASCII text, with its classes spelled out (see above)."""
    out: list[str] = []
    text, at, in_class = pattern.pattern, 0, False
    while at < len(text):
        char = text[at]
        if char == "\\":
            escaped = text[at + 1]
            at += 2
            if escaped in _ASCII_CLASSES:
                members = _ASCII_CLASSES[escaped]
                out.append(members if in_class else f"[{members}]")
            elif escaped == "S":
                assert not in_class, "\\S in a class has no ASCII twin here"
                out.append(f"[^{_ASCII_CLASSES['s']}]")
            else:
                assert escaped not in "DW", f"\\{escaped} has no ASCII twin here"
                out.append(char + escaped)
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        out.append(char)
        at += 1
    return re.compile("".join(out), (pattern.flags & ~re.UNICODE) | re.ASCII)


class _Patterns(NamedTuple):
    number: re.Pattern[str]
    timestamp: re.Pattern[str]
    time_of_day: re.Pattern[str]
    address: re.Pattern[str]
    duration: re.Pattern[str]
    temp_path: re.Pattern[str]
    line_prefix: re.Pattern[str]


_ANY_TEXT = _Patterns(
    _NUMBER, _TIMESTAMP, _TIME_OF_DAY, _ADDRESS, _DURATION, _TEMP_PATH, _LINE_PREFIX
)


@cache  # compiled at the first ASCII text, not at import: 1.7 ms every command would pay
def _ascii_text() -> _Patterns:
    return _Patterns(*map(_ascii_twin, _ANY_TEXT))


def _patterns_for(text: str) -> _Patterns:
    return _ascii_text() if text.isascii() else _ANY_TEXT


# Lines of a test run that say what failed.
_FAILURE_LINE = re.compile(
    r"^(?:FAILED|ERROR|FAIL:|ERROR:)\s+\S"  # pytest short summary, unittest headers
    r"|^E\s+\S"  # pytest's explanation lines
    r"|^\S+\.py:\d+:\s+\w*(?:Error|Exception|Failure)\b"  # pytest's location line
    r"|^[A-Za-z_][\w.]*(?:Error|Exception|Failure)\b(?::|$)"  # a traceback's last line
)
_TRACEBACK = "Traceback (most recent call last)"

# Lines a scaffold adds to a command's output: OpenHands' trailer (exit code, working
# directory, interpreter, timeout and truncation notes), SWE-agent's status lines and
# prompt. Any two runs share them, so a comparison that kept them would find two
# different failures alike (every non-zero exit ends in the same three lines).
_SCAFFOLD_LINE = re.compile(
    r"\[(?:The command completed with exit code -?\d+\.(?: CTRL\+C was sent\.)?"
    r"|Command finished with exit code -?\d+"
    r"|(?:Current working directory|Python interpreter): [^\]]*"
    r"|The command has no new output after [^\]]*"
    r"|Command timed out[^\]]*"
    r"|Below is the output of the previous command\.?"
    r"|\.\.\. Observation truncated due to length \.\.\.)\]"
    r"|\((?:Open file|Current directory): [^)]*\)"
    r"|bash-\$"
    r"|Your command ran successfully and did not produce any output\."
)
# Lines with no failure in them: one that only says a test passed (pytest -v), and the
# importers' own note of how a command ended (``exit code 2``, ``timeout``), which says
# that it failed, not how.
_NO_FAILURE_CONTENT = re.compile(r"(?:\S+\s+)?PASSED(?:\s+\[\s*\d+%\])?|exit code -?\d+|timeout")
_MAX_LINE = 300


def _squash(text: str) -> str:
    """Whitespace runs as one space, none at the ends (``str.split`` splits where the
    regular expression ``\\s+`` matches: on ``str.isspace``; a few times faster)."""
    return " ".join(text.split())


def _shape_segment(tokens: list[str]) -> list[str]:
    """One simple command: its program, its flags in sorted order, then its operands.

    A number right after a flag is taken as the flag's value (``-n 20``) so it moves
    with the flag; short-flag clusters are split (``-rn`` is ``-n -r``).
    """
    if not tokens:
        return []
    flags: list[str] = []
    operands: list[str] = []
    after_flag = False
    for token in tokens[1:]:
        if token == "#" and after_flag:
            flags[-1] += " #"
            after_flag = False
        elif _SHORT_FLAGS.fullmatch(token):
            flags.extend(f"-{letter}" for letter in token[1:])
            after_flag = True
        elif token.startswith("-") and token != "-":
            flags.append(token)
            after_flag = True
        else:
            operands.append(token)
            after_flag = False
    return [tokens[0], *sorted(flags), *operands]


def command_shape(command: str) -> str:
    """``command`` with whitespace, quoting, number literals and flag order normalised.

    Quotes are dropped (``"foo"`` is ``foo``), every number literal becomes ``#``, and
    within each simple command (split at ``|``, ``;``, ``&&``, ``||``) the flags are
    sorted. Two commands with the same shape differ only trivially.
    """
    text = command.replace('"', " ").replace("'", " ").replace("`", " ")
    text = _NUMBER.sub("#", text)
    text = _SEPARATORS.sub(r" \1 ", text)
    shaped: list[str] = []
    segment: list[str] = []
    for token in text.split():
        if _SEPARATORS.fullmatch(token):
            shaped += [*_shape_segment(segment), token]
            segment = []
        else:
            segment.append(token)
    shaped += _shape_segment(segment)
    return " ".join(shaped)


def arguments_text(arguments: str) -> str:
    """Tool arguments as comparable text: a JSON object's values in key order, else as is.

    A call whose only argument is a string (``{"command": "ls -la"}``) becomes that
    string, so a shell tool's JSON call and a bare command line compare alike.
    """
    try:
        parsed = loads_bounded(arguments)
    except ValueError:
        return arguments
    if isinstance(parsed, dict):
        if len(parsed) == 1 and isinstance(next(iter(parsed.values())), str):
            return str(next(iter(parsed.values())))
        return " ".join(f"{key}={json.dumps(parsed[key])}" for key in sorted(parsed))
    return arguments


def content_hash(text: str) -> str:
    """A short, stable digest of ``text`` exactly as given."""
    # surrogatepass: a model's text may hold an unpaired surrogate; it still hashes
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _without_volatile(text: str) -> str:
    # a pattern runs only where the literal part every match has is present: the same
    # text comes out, with fewer scans of an observation that holds none
    patterns = _patterns_for(text)  # what each inserts is ASCII: an ASCII text stays so
    if ":" in text and patterns.time_of_day.search(text):
        text = patterns.timestamp.sub("<time>", text)
    if "0x" in text:
        text = patterns.address.sub("<addr>", text)
    text = patterns.duration.sub("<dur>", text)  # begins with its digit: as quick as any hint
    if "/tmp/" in text or "/var/folders/" in text:
        text = patterns.temp_path.sub("<tmp>", text)
    return text


# the repeat, cycle and progress monitors read each observation: one pass for the three
_observation_without_volatile = lru_cache(maxsize=16)(_without_volatile)


def observation_digest(text: str) -> str:
    """A digest of an observation that ignores timestamps, durations, addresses, temp
    paths and whitespace: equal digests mean the model was shown the same thing."""
    return content_hash(_squash(_observation_without_volatile(text)))


@lru_cache(maxsize=64)  # the cycle and progress monitors both read each observation
def observation_lines(text: str) -> frozenset[int]:
    """The distinct non-blank lines of an observation, compared loosely, each as a
    64-bit digest (a monitor remembers every line an attempt was shown: digests keep
    that, and a snapshot of it, small).

    Besides the volatile parts :func:`observation_digest` drops, line-number prefixes
    go and every number becomes ``#``: the same source line shown in two overlapping
    views of a file is one line here.
    """
    patterns = _patterns_for(text)
    prefix = patterns.line_prefix.match  # none without a digit
    unprefixed = []
    for raw in _observation_without_volatile(text).splitlines():
        found = prefix(raw)
        unprefixed.append(raw[found.end() :] if found else raw)
    # the numbers of every line in one pass, not one per line: the lines hold no line
    # break once split, so joined at "\n" they split back the same, and no number spans
    # one; a number's look-behind sees "\n" at a line's start, as it saw nothing there
    numbered = patterns.number.sub("#", "\n".join(unprefixed)).split("\n")
    lines = set(map(_squash, numbered))
    lines.discard("")
    blake2b, from_bytes = hashlib.blake2b, int.from_bytes
    return frozenset(
        from_bytes(blake2b(line.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")
        for line in lines
    )


def _failure_line(line: str) -> str:
    line = _PY_LOCATION.sub(r"\1", _without_volatile(line))
    return _squash(line)[:_MAX_LINE]


def program_output(output: str) -> str:
    """``output`` without the lines the scaffold added (see :data:`_SCAFFOLD_LINE`):
    what the program itself printed."""
    if "[" not in output and "(" not in output and "Your command" not in output:
        return output  # no scaffold line can be in it
    lines = output.splitlines()
    kept = [line for line in lines if not _SCAFFOLD_LINE.fullmatch(line.strip())]
    return output if len(kept) == len(lines) else "\n".join(kept)


def telling_lines(output: str) -> list[str]:
    """The non-blank lines of what the program printed (:func:`program_output`) that
    could show a problem: not those that only say a test passed, nor a bare
    ``exit code N`` or ``timeout`` note, each stripped."""
    said = (line.strip() for line in program_output(output).splitlines())
    return [line for line in said if line and not _NO_FAILURE_CONTENT.fullmatch(line)]


def failure_fingerprint(output: str, *, failed: bool | None = None) -> tuple[str, ...]:
    """What a test (or script) run says failed; empty if it shows no failure.

    The fingerprint is the sorted set of failing test ids and error lines (pytest's
    summary and ``E`` lines, unittest's ``FAIL:``/``ERROR:`` headers, a traceback's last
    line), with timings, addresses, temporary paths and ``file.py:NN`` line numbers
    removed, since an edit elsewhere in the file shifts them without changing the
    failure. When the run ``failed`` (a non-zero exit) but no such line is found, the
    last three lines the program printed, loosely compared, stand in: not the
    scaffold's trailer (:func:`program_output`), not lines that only say a test passed,
    not a bare ``exit code N``. A failure with nothing printed (``sleep 2`` cut off,
    ``grep`` finding nothing) has no fingerprint: an exit code alone does not say two
    failures are the same.
    """
    text = program_output(output)
    found = {_failure_line(line) for line in text.splitlines() if _FAILURE_LINE.match(line)}
    found.discard("")
    if found:
        return tuple(sorted(found))
    if failed:
        tail = telling_lines(text)[-3:]
        return tuple(_squash(_NUMBER.sub("#", _without_volatile(line))) for line in tail)
    return ()


def shows_traceback(output: str) -> bool:
    """Whether ``output`` contains a Python traceback."""
    return _TRACEBACK in output
