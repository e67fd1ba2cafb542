"""Budgets that pause and ask instead of dying.

A run may limit four things: step attempts started, active seconds, model tokens and
dollars. Each limit has a *soft* level, where the run pauses and asks a human for a
top-up, and a *hard* level, where it stops and reports what it finished.

Spending is reserved before an action is dispatched: a step's estimate counts against
the budget from the moment it starts until its real cost replaces the estimate. So
parallel steps cannot jointly overshoot a limit; only an action whose real cost
exceeds its estimate can, and by no more than that one action.

A hard stop is not the end: a human may raise the limit (``trestle budget RUN --add
tokens=2000``), which moves that dimension's hard level, and its soft level with it,
up by the amount; the run then goes on where it stopped (:mod:`trestle.lifecycle.topup`).

Pure: the run state keeps the tallies (:class:`Tally`); :func:`breach` judges them.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from trestle.core.record import Record

Dimension = Literal["steps", "seconds", "tokens", "cost"]
DIMENSIONS: tuple[Dimension, ...] = ("steps", "seconds", "tokens", "cost")
UNITS: dict[Dimension, str] = {"steps": "steps", "seconds": "s", "tokens": "tokens", "cost": "$"}
LIMIT_MAX = 1e15  # far above any real budget, far below where float sums lose units


class Limit(Record):
    """A soft level that pauses and asks, a hard level that stops; either or both.

    ``top_up`` is what one approval at the soft level adds (default: half the soft level).
    """

    soft: float | None = Field(default=None, gt=0, le=LIMIT_MAX)
    hard: float | None = Field(default=None, gt=0, le=LIMIT_MAX)
    top_up: float | None = Field(default=None, gt=0, le=LIMIT_MAX)

    @model_validator(mode="after")
    def _levels(self) -> Limit:
        if self.soft is None and self.hard is None:
            raise ValueError("give 'soft', 'hard' or both")
        if self.soft is not None and self.hard is not None and self.soft > self.hard:
            raise ValueError(f"soft level {self.soft:g} is above hard level {self.hard:g}")
        return self

    @property
    def step_up(self) -> float:
        return self.top_up if self.top_up is not None else (self.soft or 0.0) / 2


class Budget(Record):
    """Per-run limits; a dimension left out is unlimited."""

    steps: Limit | None = None
    seconds: Limit | None = None
    tokens: Limit | None = None
    cost: Limit | None = None

    def limit(self, dim: Dimension) -> Limit | None:
        limit: Limit | None = getattr(self, dim)
        return limit


class Tally(BaseModel):
    """What a run has spent, holds in reserve for running actions, and was granted."""

    spent: dict[Dimension, float] = {}
    reserved: dict[Dimension, float] = {}
    granted: dict[Dimension, float] = {}  # top-ups approved at soft levels
    # raised after a hard stop (``trestle budget RUN --add``): both levels move up
    raised: dict[Dimension, float] = {}

    def add(self, bucket: dict[Dimension, float], dim: Dimension, amount: float) -> None:
        if amount:
            bucket[dim] = bucket.get(dim, 0.0) + amount


class Breach(Record):
    """Starting one more action would pass a limit."""

    dimension: Dimension
    level: Literal["soft", "hard"]
    used: float  # spent + reserved + the new action's estimate
    limit: float  # the level passed (with top-ups granted and raises)
    top_up: float  # what approving a soft breach adds

    def describe(self) -> str:
        """``would spend $5.40 of $5.00 (soft cost limit); continue with +$2.50?``"""
        used, limit = fmt(self.dimension, self.used), fmt(self.dimension, self.limit)
        text = f"would spend {used} of {limit} ({self.level} {self.dimension} limit)"
        if self.level == "soft":
            text += f"; continue with +{fmt(self.dimension, self.top_up)}?"
        return text


def fmt(dim: Dimension, amount: float) -> str:
    if dim == "cost":
        return f"${amount:,.2f}"
    if dim == "seconds":
        return f"{amount:,.0f} s"
    shown = f"{amount:,.0f}"
    return f"{shown} {UNITS[dim].removesuffix('s') if shown == '1' else UNITS[dim]}"


def hard_level(budget: Budget | None, tally: Tally, dim: Dimension) -> float | None:
    """The hard level of ``dim`` as it stands, raises included (None: no hard level)."""
    limit = budget.limit(dim) if budget is not None else None
    if limit is None or limit.hard is None:
        return None
    return limit.hard + tally.raised.get(dim, 0.0)


def breach(budget: Budget | None, tally: Tally, ask: dict[Dimension, float]) -> Breach | None:
    """The first limit that starting an action asking ``ask`` would pass, hard first."""
    if budget is None:
        return None
    found: Breach | None = None
    for dim in DIMENSIONS:
        limit = budget.limit(dim)
        if limit is None:
            continue
        used = tally.spent.get(dim, 0.0) + tally.reserved.get(dim, 0.0) + ask.get(dim, 0.0)
        raised = tally.raised.get(dim, 0.0)
        if limit.hard is not None and used > limit.hard + raised:
            hard = limit.hard + raised
            return Breach(dimension=dim, level="hard", used=used, limit=hard, top_up=0)
        if found is None and limit.soft is not None:
            soft = limit.soft + tally.granted.get(dim, 0.0) + raised
            if used > soft:
                top_up = limit.step_up
                found = Breach(dimension=dim, level="soft", used=used, limit=soft, top_up=top_up)
    return found


def least_raise(dim: Dimension, used: float, limit: float) -> float:
    """The smallest raise, as :func:`fmt` shows it (whole units, cents), that takes a
    hard level of ``limit`` to at least ``used``."""
    short = used - limit
    if dim == "cost":
        return max(0.01, math.ceil(round(short * 100, 6)) / 100)
    return max(1.0, float(math.ceil(round(short, 6))))


def raise_command(run_id: str, dim: Dimension, amount: float) -> str:
    """``trestle budget RUN --add tokens=845``: the command that raises the limit."""
    text = f"{amount:.2f}" if dim == "cost" else f"{amount:.0f}"
    return f"trestle budget {run_id} --add {dim}={text}"


def go_on(run_id: str, dim: Dimension, used: float, limit: float) -> str:
    """What a hard stop tells a human to do to continue: the exact commands."""
    command = raise_command(run_id, dim, least_raise(dim, used, limit))
    return f"to go on: `{command}` (or more), then `trestle resume {run_id}`"
