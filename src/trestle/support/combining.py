"""Calls made at once, served together (a combining lock).

Some work costs the same for one request as for many: a workspace snapshot stages the
workspace and writes its tree whatever number of names it is taken under, and it holds
the store's lock while it does. Steps that run side by side each ask for one before
they begin, so 32 of them used to wait in a line for one another's git processes.

A :class:`Combiner` lets one caller serve everyone who asked meanwhile: a call joins the
queue, then takes the serving lock; if its request was served while it waited, it
returns that answer, else it takes every request queued so far and serves them all in
one ``serve`` call. Each request is served after it was made, and no request waits for
more than the batch being served when it arrived and its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

from trestle.support.kept import keep

Asked = TypeVar("Asked")
Answer = TypeVar("Answer")
Serve = Callable[[Sequence[Asked]], Sequence[Answer]]


class _Request(Generic[Asked, Answer]):
    __slots__ = ("answer", "asked", "done", "error")

    def __init__(self, asked: Asked) -> None:
        self.asked = asked
        self.answer: Answer | None = None
        self.error: BaseException | None = None
        self.done = False


class Combiner(Generic[Asked, Answer]):
    """Requests queued while another batch is served, served in the next one."""

    def __init__(self) -> None:
        self._queue_lock = threading.Lock()
        self._serving = threading.Lock()
        self._queued: list[_Request[Asked, Answer]] = []
        self._batch = 0  # requests in the batch being served

    @property
    def waiting(self) -> int:
        """Requests queued for the next batch."""
        return len(self._queued)

    @property
    def serving(self) -> int:
        """Requests in the batch being served (0: none is)."""
        return self._batch

    def call(self, asked: Asked, serve: Serve[Asked, Answer]) -> Answer:
        """``asked``'s answer, from ``serve`` called on it and on every request queued
        beside it (in the order they came; ``serve`` answers each in that order). An
        error ``serve`` raises is raised to every caller of its batch."""
        request: _Request[Asked, Answer] = _Request(asked)
        with self._queue_lock:
            self._queued.append(request)
        with self._serving:
            if not request.done:
                with self._queue_lock:
                    batch, self._queued = self._queued, []
                    self._batch = len(batch)
                try:
                    _serve(batch, serve)
                finally:
                    self._batch = 0
        if request.error is not None:
            raise request.error
        return request.answer  # type: ignore[return-value]  # served: set, maybe None


def _serve(batch: list[_Request[Asked, Answer]], serve: Serve[Asked, Answer]) -> None:
    try:
        answers = serve([r.asked for r in batch])
        if len(answers) != len(batch):
            raise RuntimeError(f"{len(answers)} answers to {len(batch)} requests")
    except BaseException as exc:  # every caller of the batch learns it failed
        for request in batch:
            request.error, request.done = exc, True
        return
    for request, answer in zip(batch, answers, strict=True):
        request.answer, request.done = answer, True


class Combiners(Generic[Asked, Answer]):
    """One :class:`Combiner` per key (a store and what it is asked about), the latest
    ``kept`` of them: a dropped one only means a batch more, never a wrong answer."""

    def __init__(self, kept: int = 64) -> None:
        self._kept = kept
        self._lock = threading.Lock()
        self._by_key: dict[Hashable, Combiner[Asked, Answer]] = {}

    def __getitem__(self, key: Hashable) -> Combiner[Asked, Answer]:
        with self._lock:
            return keep(self._by_key, key, self._by_key.get(key) or Combiner(), self._kept)
