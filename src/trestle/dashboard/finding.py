"""Finding runs on the runs page: the filters an operator narrows the list with, read
from the page's query string, and the page of runs they keep.

Run id or goal text, one or more statuses (as shown: a run nothing drives any more is
``interrupted``, not ``running``), when the run was created (from, to), a
step tag, the engine that drives it, only runs with open monitor alerts, only runs
that wait for a human; then one page of them (:data:`PER_PAGE` lines unless ``per``
says). The filters that need a run's state (tag, engine, alerts, waiting) read it
only when they are set.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar
from urllib.parse import urlencode

from trestle.core.errors import ConfigError
from trestle.core.state import RunState
from trestle.operations.health import RunHealth
from trestle.store.base import RunRow

PER_PAGE = 50  # runs a page lists unless the query string says (``per``)
PER_PAGE_MOST = 500
ENGINES = ("local", "temporal")
Line = TypeVar("Line")


@dataclass(frozen=True)
class RunPage(Generic[Line]):
    """One page of the runs kept: the lines, and where the page is among all."""

    lines: list[Line]
    matched: int  # lines kept on every page
    page: int  # 1-based
    pages: int


@dataclass(frozen=True)
class RunFilter:
    query: str = ""
    statuses: tuple[str, ...] = ()
    since: float | None = None  # created at or after (seconds since the epoch)
    until: float | None = None  # created before
    tag: str = ""
    engine: str = ""  # "", local or temporal
    alerts: bool = False  # only runs with open monitor alerts
    waiting: bool = False  # only runs that wait for a human
    page: int = 1
    per_page: int = PER_PAGE
    given: tuple[tuple[str, str], ...] = ()  # the query string's fields, as typed

    @property
    def needs_state(self) -> bool:
        return bool(self.tag or self.engine or self.alerts or self.waiting)

    def keeps(self, row: RunRow) -> bool:
        """What the run's row alone decides: text and creation time."""
        needle = self.query.strip().lower()
        return (
            (not needle or needle in row.run_id.lower() or needle in row.goal.lower())
            and (self.since is None or row.created_at >= self.since)
            and (self.until is None or row.created_at < self.until)
        )

    def keeps_status(self, status: str) -> bool:
        """``status`` as the page shows it (:func:`trestle.lifecycle.driven.driving`'s),
        not as the row records it: a run nothing drives any more is ``interrupted``,
        so ``running`` finds only runs something drives."""
        return not self.statuses or status in self.statuses

    def keeps_run(self, state: RunState, health: RunHealth) -> bool:
        """What needs the run's state: a step tag, the engine, alerts, waiting."""
        if self.tag and not any(self.tag in step.tags for step in state.plan.steps):
            return False
        engine = "temporal" if state.engine is not None else "local"
        if self.engine and engine != self.engine:
            return False
        if self.alerts and not health.alerts:
            return False
        return not (self.waiting and not health.waiting)

    def on_page(self, index: int) -> bool:
        first = (self.page - 1) * self.per_page
        return first <= index < first + self.per_page

    def page_of(self, lines: Sequence[Line]) -> RunPage[Line]:
        pages = max(1, math.ceil(len(lines) / self.per_page))
        first = (self.page - 1) * self.per_page
        return RunPage(list(lines[first : first + self.per_page]), len(lines), self.page, pages)

    def value(self, name: str) -> str:
        """A field of the query string as typed (for the form that shows it again)."""
        return next((v for k, v in self.given if k == name), "")

    def query_string(self, **changed: str) -> str:
        """The filters as a query string, ``changed`` fields replaced (a page link)."""
        kept = [(k, v) for k, v in self.given if k not in changed]
        return urlencode([(k, v) for k, v in [*kept, *changed.items()] if v])


def run_filter(params: Mapping[str, str | list[str]]) -> RunFilter:
    """The filters in a runs page's query string; ConfigError names a value that cannot
    be read (a date, a page number, an engine)."""

    def one(name: str) -> str:
        value = params.get(name, "")
        return (value[-1] if value else "") if isinstance(value, list) else value

    raw = params.get("status", [])
    statuses = tuple(s for s in ([raw] if isinstance(raw, str) else raw) if s)
    engine = one("engine")
    if engine and engine not in ENGINES:
        raise ConfigError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
    page_text = one("page") or "1"
    if not page_text.isdigit() or int(page_text) < 1:
        raise ConfigError(f"page {page_text!r}: expected a page number from 1")
    per_text = one("per") or str(PER_PAGE)
    if not per_text.isdigit() or not 1 <= int(per_text) <= PER_PAGE_MOST:
        raise ConfigError(f"per {per_text!r}: expected a number of runs from 1 to {PER_PAGE_MOST}")
    names = ("q", "since", "until", "tag", "engine", "alerts", "waiting", "per", "page")
    given = [(name, one(name)) for name in names] + [("status", s) for s in statuses]
    return RunFilter(
        query=one("q"),
        statuses=statuses,
        since=_moment("since", one("since")),
        until=_moment("until", one("until"), end=True),
        tag=one("tag").strip(),
        engine=engine,
        alerts=one("alerts") == "on",
        waiting=one("waiting") == "on",
        page=int(page_text),
        per_page=int(per_text),
        given=tuple((k, v) for k, v in given if v),
    )


def _moment(name: str, text: str, *, end: bool = False) -> float | None:
    """A date (``2026-11-24``) or a local date and time (``2026-11-24T13:05``) as seconds
    since the epoch; a date alone given as ``until`` includes the whole day."""
    text = text.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{name} {text!r}: expected a date (2026-11-24) or a date and time (2026-11-24T13:05)"
        ) from None
    at = moment.timestamp() if moment.tzinfo else time.mktime(moment.timetuple())
    if end and len(text) == 10:  # the whole of the day named
        at += 86400
    return at
