"""A value computed once per live object, for immutable objects used again and again.

An agent offers the same tool schemas on every turn, whose request hash and token
estimate would otherwise serialise them afresh; the decider and the engine both hash
each attempt's action of the same frozen step. Entries are keyed by identity,
and each keeps its object alive, so an id is never reused while its entry stands.

Likewise a conversation is sent again every turn, grown: :func:`same_start` finds how
much of it is the very messages of the last call, whose hash, redaction and token
count are known already.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import is_
from typing import Generic, TypeVar

T = TypeVar("T")
V = TypeVar("V")


class ByIdentity(Generic[T, V]):
    """``compute(obj)``, remembered for the very object ``obj`` (not an equal one).

    Args:
        compute: a pure function of an immutable object.
        size: entries kept; all are dropped when it is reached.
    """

    def __init__(self, compute: Callable[[T], V], size: int = 256) -> None:
        self._compute = compute
        self._size = size
        self._found: dict[int, tuple[T, V]] = {}

    def __call__(self, obj: T) -> V:
        hit = self._found.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        if len(self._found) >= self._size:
            self._found.clear()
        value = self._compute(obj)
        self._found[id(obj)] = (obj, value)
        return value


def same_start(old: Sequence[object], new: Sequence[object]) -> int:
    """How many leading items of ``new`` are the very objects at those places in ``old``:
    what a conversation sent again, grown by a turn, shares with the one before."""
    # usually all of ``old`` starts ``new``: compared in C, about twice as fast as
    # counting one by one, which is left for where they part
    if all(map(is_, old, new)):
        return min(len(old), len(new))
    shared = 0
    for a, b in zip(old, new, strict=False):
        if a is not b:
            break
        shared += 1
    return shared
