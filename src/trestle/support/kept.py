"""Tables a process keeps of what it learnt, bounded: the latest put goes last, and past
the limit the oldest is let go (a dict keeps its insertion order). What is let go is
only learnt again: the shadow store's answers and combiners use it."""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def keep(table: dict[K, V], key: K, value: V, limit: int) -> V:
    """Put ``value`` under ``key`` as the latest, drop the oldest past ``limit``; ``value``."""
    table.pop(key, None)
    table[key] = value
    while len(table) > limit:
        del table[next(iter(table))]
    return value
