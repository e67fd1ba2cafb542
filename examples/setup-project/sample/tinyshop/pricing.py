"""Price arithmetic, always in integer cents."""

from __future__ import annotations


def apply_discount(cents: int, percent: float) -> int:
    """The price after a percentage discount, rounded to the nearest cent."""
    if not 0 <= percent <= 100:
        raise ValueError(f"discount must be between 0 and 100, not {percent}")
    return round(cents * (100 - percent) / 100)


def with_tax(cents: int, rate: float) -> int:
    """The price with tax added at ``rate`` (0.2 means 20%)."""
    return round(cents * (1 + rate))
