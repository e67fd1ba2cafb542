"""An age a person writes: ``30d``, ``12h``, ``90m``, ``45s``, ``2w``."""

from __future__ import annotations

import re

from trestle.core.errors import ConfigError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# past this no date can be printed (years past 9999), and no age means more
MOST_SECONDS = 1000 * 365 * 86400
_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` in seconds; anything else a ConfigError."""
    match = _AGE.fullmatch(text.strip().lower())
    if match is None:
        raise ConfigError(
            f"age {text!r}: expected a number and a unit (s, m, h, d or w), like 30d, 12h or 90m"
        )
    seconds = float(match.group(1)) * UNITS[match.group(2)]
    if seconds > MOST_SECONDS:
        raise ConfigError(f"age {text!r}: at most 1000 years (365000d)")
    return seconds
