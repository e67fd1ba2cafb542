"""The real agent loop every system runs: a scripted model reading real files.

Each turn the model answers with ~1 KB of text and one ``read_file`` call; the tool
reads a real ~4 KB file from a real repository on disk and its content goes back to
the model. Turn ``i`` reads ``notes/n<i>.txt``, whose text (and the model's message)
comes from :func:`agentturns.turn_text`, so every system records the same bytes for
turn ``i`` and no file is read twice (nothing is deduplicated for free).

The hooks of :mod:`agentturns` serve the resume workload: the model calls
:func:`agentturns.mark_turn` first thing, so a crash lands in a known model call and
the first live call of a resumed process is timed. :func:`note_call` keeps when each
model call began, which gives the loop's per-turn overhead (the time between
consecutive model calls: the runtime, the tool call and the durable records).
"""

from __future__ import annotations

import time
from pathlib import Path

import agentturns

REPO = "repo"
LINE = 80  # the files are lines of text, as source files are
calls: list[float] = []  # perf_counter() as each model call of this process began
cpu_calls: list[float] = []  # process_time() then: the CPU of every thread of the process
_messages: dict[int, str] = {}  # made with the repository, so the model only looks up


def note_path(turn: int) -> str:
    """The repository-relative file turn ``turn`` reads."""
    return f"notes/n{turn:05d}.txt"


def file_text(turn: int) -> str:
    _, text = agentturns.turn_text(turn)
    if "\n" in text:  # a real observation (``realtext.py``), in lines already
        return text
    return "".join(text[i : i + LINE] + "\n" for i in range(0, len(text), LINE))


def message(turn: int) -> str:
    """The model's ~1 KB of text in turn ``turn``."""
    text = _messages.get(turn)
    return text if text is not None else agentturns.turn_text(turn)[0]


def make_repo(work: Path, turns: int) -> Path:
    """A repository of ``turns`` files (~4 KB each) under ``work``; its path."""
    root = work / REPO
    (root / "notes").mkdir(parents=True, exist_ok=True)
    for turn in range(turns):
        _messages[turn] = agentturns.turn_text(turn)[0]
        path = root / note_path(turn)
        if not path.exists():
            path.write_text(file_text(turn), encoding="utf-8")
    return root


def read(repo: Path, path: str) -> str:
    """The peers' ``read_file`` tool: the file's text."""
    return (repo / path).read_text(encoding="utf-8")


def note_call(work: Path, turn: int) -> None:
    """First thing in every model call: crash if armed for it, else note when it began."""
    agentturns.mark_turn(work, turn)
    calls.append(time.perf_counter())
    cpu_calls.append(time.process_time())


def cpu_us_per_turn(turns: int) -> float:
    """As :func:`us_per_turn`, in CPU time of the whole process (every thread's): on a
    busy machine it varies less than the wall clock, which also counts waiting for a
    core."""
    if turns < 2 or len(cpu_calls) < turns + 1:
        raise RuntimeError(f"{len(cpu_calls)} model calls noted for {turns} turns (2 or more)")
    return (cpu_calls[turns] - cpu_calls[1]) / (turns - 1) * 1e6


def us_per_turn(turns: int) -> float:
    """Microseconds between consecutive model calls over the loop's turns after the
    first. The first turn's tool call also waits out what starts the step (Trestle's
    first checkpoint of the workspace, taken beside the first model call): a cost
    once a step, not a turn's."""
    if turns < 2 or len(calls) < turns + 1:
        raise RuntimeError(f"{len(calls)} model calls noted for {turns} turns (2 or more)")
    return (calls[turns] - calls[1]) / (turns - 1) * 1e6
