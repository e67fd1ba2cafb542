"""Prices per model, and the cost of a call.

A :class:`PriceTable` maps model names (exact, or glob patterns such as
``claude-sonnet-4*``) to dollars per million input and output tokens. A model with no
matching entry has no known price, and its calls cost ``None``, never a guessed 0.

:data:`DEFAULT_PRICES` is a small table of list prices for common hosted models. They are
editable defaults, not a source of truth: providers change prices and accounts get
discounts, so pass your own table (or :meth:`PriceTable.with_prices` on top of the
defaults) when the numbers matter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import BaseModel, ConfigDict, Field

from trestle.core.errors import ConfigError
from trestle.core.globs import GLOB_CHARS, glob_matches

_MAX_REMEMBERED = 1024  # model names whose entry a table keeps at hand


class Price(BaseModel):
    """Dollars per million tokens for the models whose name matches ``pattern``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    pattern: str = Field(min_length=1)
    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)

    @property
    def is_glob(self) -> bool:
        """True when ``pattern`` holds a glob character."""
        return any(c in GLOB_CHARS for c in self.pattern)


class PriceTable:
    """Looks up the price of a model by name.

    An exact name beats every pattern. Among matching patterns the longest wins (so
    ``gpt-4o-mini*`` beats ``gpt-4o*``); between equally long ones, the later entry wins,
    which lets :meth:`with_prices` override defaults.

    Args:
        prices: the entries, in order.
    """

    def __init__(self, prices: Iterable[Price] = ()) -> None:
        self._prices = tuple(prices)
        # the table never changes, and an agent run prices the same model every call
        self._found: dict[str, Price | None] = {}

    @classmethod
    def from_mapping(cls, table: Mapping[str, tuple[float, float]]) -> PriceTable:
        """Build a table from ``{pattern: (input_per_million, output_per_million)}``.

        Raises:
            ConfigError: an entry is not a pair of non-negative numbers.
        """
        prices = []
        for pattern, pair in table.items():
            try:
                inp, out = pair
                prices.append(Price(pattern=pattern, input_per_million=inp, output_per_million=out))
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    f"price table: entry {pattern!r} must be (input, output) dollars per "
                    f"million tokens, both >= 0; got {pair!r}"
                ) from exc
        return cls(prices)

    @property
    def prices(self) -> tuple[Price, ...]:
        """The entries, in order."""
        return self._prices

    def with_prices(self, table: Mapping[str, tuple[float, float]]) -> PriceTable:
        """A new table: this one's entries, then ``table``'s, which win any tie."""
        return PriceTable(self._prices + PriceTable.from_mapping(table).prices)

    def price_for(self, model: str) -> Price | None:
        """The entry that applies to ``model``, or None when no entry matches."""
        if model not in self._found:
            if len(self._found) >= _MAX_REMEMBERED:
                self._found.clear()
            self._found[model] = self._look_up(model)
        return self._found[model]

    def _look_up(self, model: str) -> Price | None:
        exact = [p for p in self._prices if not p.is_glob and p.pattern == model]
        if exact:
            return exact[-1]
        matching = [p for p in self._prices if p.is_glob and glob_matches(model, p.pattern)]
        if not matching:
            return None
        # max() keeps the first of equal keys; reversing makes that the latest entry.
        return max(reversed(matching), key=lambda p: len(p.pattern))

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        """Dollars for a call to ``model``, or None when its price is unknown."""
        price = self.price_for(model)
        if price is None:
            return None
        return (
            input_tokens * price.input_per_million + output_tokens * price.output_per_million
        ) / 1_000_000


# Editable defaults: list prices in US dollars per million tokens (input, output) for
# common hosted models. Check them against your provider before trusting a budget.
DEFAULT_PRICES = PriceTable.from_mapping(
    {
        "gpt-4o*": (2.50, 10.00),
        "gpt-4o-mini*": (0.15, 0.60),
        "gpt-4.1*": (2.00, 8.00),
        "gpt-4.1-mini*": (0.40, 1.60),
        "gpt-4.1-nano*": (0.10, 0.40),
        "gpt-5*": (1.25, 10.00),
        "gpt-5-mini*": (0.25, 2.00),
        "gpt-5-nano*": (0.05, 0.40),
        "o3*": (2.00, 8.00),
        "o4-mini*": (1.10, 4.40),
        "claude-opus-4*": (15.00, 75.00),
        "claude-opus-4-[5-9]*": (5.00, 25.00),
        "claude-sonnet-4*": (3.00, 15.00),
        "claude-3-7-sonnet*": (3.00, 15.00),
        "claude-3-5-sonnet*": (3.00, 15.00),
        "claude-haiku-4*": (1.00, 5.00),
        "claude-3-5-haiku*": (0.80, 4.00),
    }
)
