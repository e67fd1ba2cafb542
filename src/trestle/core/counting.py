"""A count and its noun as a person writes them: "1 run", "3 runs", "1,200 tokens".

Here in the core so the report and blame can say it too; the CLI and the dashboard have
it as :func:`trestle.presentation.wording.counted`. The plural adds an "s": every noun
Trestle counts takes one (run, event, checkpoint, attempt, re-plan, message, key)."""

from __future__ import annotations


def counted(n: int, noun: str) -> str:
    """``n`` and its noun, singular for one: "1 step", "3 steps", "0 steps", "1,200
    tokens"."""
    return f"{n:,} {noun if n == 1 else noun + 's'}"
