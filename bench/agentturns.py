"""The scripted agent turn every system runs: a ~1 KB message and a ~4 KB tool result.

No model is called. Each turn's text is drawn from ``random.Random(turn)``, so every
system records the same 5,000 characters for turn ``i``, and the text does not
compress to nothing (nor does any of the systems compress it).

Two hooks serve the resume workload, the same way in every system:

- a turn whose index equals the number in ``<work>/crash-at`` kills its own process
  with SIGKILL before doing anything (a crash at a known point of a long history);
- :func:`mark_turn` notes when the first turn run by this process began, which is
  when a resumed run got back to work.
"""

from __future__ import annotations

import os
import random
import signal
import string
import time
from pathlib import Path

MESSAGE_CHARS = 1_000
TOOL_RESULT_CHARS = 4_000
TURN_CHARS = MESSAGE_CHARS + TOOL_RESULT_CHARS
CRASH_FILE = "crash-at"

_ALPHABET = string.ascii_letters + string.digits + "     "
first_turn_started: float | None = None  # perf_counter() when this process ran a turn
_given: list[tuple[str, str]] = []  # real turns' texts in place of random ones


def use_texts(texts: list[tuple[str, str]]) -> None:
    """Make turn ``i`` ``texts[i % len(texts)]`` from now on (``realtext.py``)."""
    global _given
    _given = list(texts)


def turn_text(turn: int) -> tuple[str, str]:
    """Turn ``turn``'s assistant message and tool result (1,000 and 4,000 characters),
    or the texts :func:`use_texts` gave."""
    if _given:
        return _given[turn % len(_given)]
    rng = random.Random(turn)
    message = "".join(rng.choices(_ALPHABET, k=MESSAGE_CHARS))
    tool_result = "".join(rng.choices(_ALPHABET, k=TOOL_RESULT_CHARS))
    return message, tool_result


def arm_crash(work: Path, turn: int) -> None:
    """Make turn ``turn`` kill its process (the resume workload's crash)."""
    (work / CRASH_FILE).write_text(str(turn))


def disarm_crash(work: Path) -> None:
    (work / CRASH_FILE).unlink(missing_ok=True)


def mark_turn(work: Path, turn: int) -> None:
    """Call first thing in a turn: crash if armed for it, else note the first start."""
    global first_turn_started
    armed = work / CRASH_FILE
    if armed.exists() and armed.read_text() == str(turn):
        os.kill(os.getpid(), signal.SIGKILL)
    if first_turn_started is None:
        first_turn_started = time.perf_counter()


def files_bytes(work: Path, prefix: str) -> int:
    """Bytes on disk of the files named ``<prefix>*`` in ``work`` (database, WAL, journal)."""
    return sum(p.stat().st_size for p in work.iterdir() if p.name.startswith(prefix))
