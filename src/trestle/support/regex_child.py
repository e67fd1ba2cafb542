"""A regular expression searched for where the caller can stop it.

Python's ``re`` holds the interpreter's lock for a whole search, and a pattern that
backtracks (``\\d+\\.\\d+\\.\\d+`` against a million digits and no dot: a million
squared steps) runs for hours while every other thread, the event loop and the signal
handlers wait. So a pattern with any special character is searched for in a child
process (this Python, isolated, standard library only), killed past a time limit;
plain text cannot backtrack and is searched for here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

SPECIAL = frozenset(".^$*+?{}[]\\|()")  # a pattern without these is plain text

# reads {"pattern", "flags", "text"} and writes 1 when the pattern is found, else 0
_SEARCH = """\
import json, re, sys
job = json.load(sys.stdin)
sys.stdout.write("1" if re.search(job["pattern"], job["text"], job["flags"]) else "0")
"""


def search_within(pattern: str, text: str, *, flags: int = 0, seconds: float) -> bool | None:
    """Whether ``pattern`` is found in ``text``; None when the search went on past
    ``seconds`` (the child is killed). A pattern that does not compile raises
    ``re.error`` here, before any child starts."""
    compiled = re.compile(pattern, flags)
    if not SPECIAL.intersection(pattern):
        return compiled.search(text) is not None
    job = json.dumps({"pattern": pattern, "flags": flags, "text": text})
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _SEARCH],
            input=job,
            capture_output=True,
            encoding="utf-8",
            timeout=seconds,
            cwd="/",
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    if done.stdout not in ("0", "1"):  # it could not start, or died: no answer
        raise OSError(f"the search for /{pattern}/ ended without an answer: {done.stderr[-300:]}")
    return done.stdout == "1"
