"""A model's regular expression, matched where the driver can stop it.

Python's ``re`` holds the interpreter's lock for a whole match, and a pattern that
backtracks without end (``(a+)+$`` against a line of forty a's and a b) runs for hours:
the driver's event loop, its lease renewals and its signal handlers wait with it. So a
pattern with any special character is matched in a child process (the driver's own
Python, isolated, standard library only) that is killed past a time limit; plain text
cannot backtrack and is matched here.
"""

from __future__ import annotations

import json
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Protocol

from trestle.support.regex_child import SPECIAL  # a pattern without these is plain text
from trestle.tools.base import ToolFailure

SECONDS = 20.0  # of matching, for one search's files together

# reads the pattern ({"pattern", "flags"}), then one JSON request a line ({"text",
# "most"}), and answers each with the matching line numbers
_CHILD = """\
import json, re, sys
given = json.loads(sys.stdin.readline())
regex = re.compile(given["pattern"], given["flags"])
for request in sys.stdin:
    job = json.loads(request)
    found = []
    for number, line in enumerate(job["text"].splitlines(), 1):
        if regex.search(line):
            found.append(number)
            if len(found) >= job["most"]:
                break
    sys.stdout.write(json.dumps(found) + "\\n")
    sys.stdout.flush()
"""


class Match(Protocol):
    def __call__(self, text: str, most: int) -> list[int]:
        """The numbers of the lines of ``text`` the pattern matches, at most ``most``."""
        ...


@contextmanager
def matching(regex: re.Pattern[str], *, seconds: float | None = None) -> Iterator[Match]:
    """A matcher for ``regex``: here for plain text, else in a child stopped after
    ``seconds`` (:data:`SECONDS`) of work (:class:`ToolFailure` then names the pattern)."""
    seconds = SECONDS if seconds is None else seconds
    if not SPECIAL.intersection(regex.pattern):
        yield lambda text, most: _lines(regex, text, most)
        return
    child = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd="/",
        encoding="utf-8",
    )
    deadline = time.monotonic() + seconds
    # given on its input, not its command line: a pattern may hold a NUL
    pattern = json.dumps({"pattern": regex.pattern, "flags": int(regex.flags)}) + "\n"

    def match(text: str, most: int) -> list[int]:
        nonlocal pattern
        stdin, stdout = _pipes(child)
        try:
            stdin.write(pattern + json.dumps({"text": text, "most": most}) + "\n")
            pattern = ""
            stdin.flush()
        except OSError:  # it ended: the answer below is then empty
            pass
        ready, _, _ = select.select([stdout], [], [], max(deadline - time.monotonic(), 0))
        answer = stdout.readline() if ready else ""
        if ready and not answer:
            raise ToolFailure(f"matching the pattern {regex.pattern!r} ended without an answer")
        if not answer:
            raise ToolFailure(
                f"the pattern {regex.pattern!r} was still matching after {seconds:g} s "
                "(nested repeats such as (a+)+ can backtrack without end): simplify it, "
                "or pass literal=true"
            )
        found: list[int] = json.loads(answer)
        return found

    try:
        yield match
    finally:
        child.kill()
        child.wait()
        for pipe in (child.stdin, child.stdout):
            if pipe is not None:
                pipe.close()


def _pipes(child: subprocess.Popen[str]) -> tuple[IO[str], IO[str]]:
    assert child.stdin is not None and child.stdout is not None  # both are pipes
    return child.stdin, child.stdout


def _lines(regex: re.Pattern[str], text: str, most: int) -> list[int]:
    found: list[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        if regex.search(line):
            found.append(number)
            if len(found) >= most:
                break
    return found
