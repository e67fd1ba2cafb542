"""Durations as people write and read them: ``"4h"``, ``"1h30m"``, ``"waiting 3h 12m"``.

Pure. An approver rule's ``deadline`` is written this way in ``trestle.toml``, and the
inbox says how long a card has waited in the same units.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+)([dhms])")
_WHOLE = re.compile(r"(?:\d+[dhms])+")
EXAMPLES = "'90s', '30m', '4h', '1d' or '1h30m'"


def parse_duration(text: str) -> float:
    """Seconds in ``text``: whole numbers of days, hours, minutes and seconds, largest
    first (``"1h30m"``). ValueError naming what is wrong otherwise; zero is refused,
    since a deadline that has always passed says nothing."""
    written = text.strip()
    if not _WHOLE.fullmatch(written):
        raise ValueError(f"{text!r} is not a duration (write it like {EXAMPLES})")
    units = [unit for _, unit in _PART.findall(written)]
    if units != sorted(set(units), key=list(UNITS).index):
        raise ValueError(f"{text!r}: give each unit once, largest first (like '1h30m')")
    seconds = sum(int(n) * UNITS[unit] for n, unit in _PART.findall(written))
    if seconds <= 0:
        raise ValueError(f"{text!r} is no time at all: a deadline must be later than the ask")
    return float(seconds)


def describe_duration(seconds: float) -> str:
    """``seconds`` as a person reads a wait: ``2d 3h``, ``3h 12m``, ``4m``, ``0m``
    (two units at most; under a minute is ``0m``, as nobody waits on seconds)."""
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m"


def clock_time(at: float, *, near: float) -> str:
    """The UTC time ``at`` as a card shows it: ``14:05 UTC`` on the same UTC day as
    ``near`` (the reader's now, or the time a refusal was recorded), with the date
    otherwise."""
    when = datetime.fromtimestamp(at, UTC)
    if when.date() == datetime.fromtimestamp(near, UTC).date():
        return when.strftime("%H:%M UTC")
    return when.strftime("%Y-%m-%d %H:%M UTC")
