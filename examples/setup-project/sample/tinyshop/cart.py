"""A shopping cart: lines of (sku, unit price, quantity)."""

from __future__ import annotations

from dataclasses import dataclass, field

from moneyfmt import format_money

from tinyshop.config import Settings
from tinyshop.pricing import apply_discount, with_tax


@dataclass
class Cart:
    settings: Settings
    lines: dict[str, tuple[int, int]] = field(default_factory=dict)

    def add(self, sku: str, unit_cents: int, quantity: int = 1) -> None:
        if quantity < 1:
            raise ValueError("quantity must be at least 1")
        _, held = self.lines.get(sku, (unit_cents, 0))
        self.lines[sku] = (unit_cents, held + quantity)

    def remove(self, sku: str) -> None:
        self.lines.pop(sku, None)

    def subtotal(self) -> int:
        return sum(unit * qty for unit, qty in self.lines.values())

    def total(self, discount_percent: float = 0) -> int:
        discounted = apply_discount(self.subtotal(), discount_percent)
        return with_tax(discounted, self.settings.tax_rate)

    def receipt(self, discount_percent: float = 0) -> str:
        money = self.settings.currency
        rows = [
            f"{qty} x {sku}: {format_money(unit * qty, money)}"
            for sku, (unit, qty) in sorted(self.lines.items())
        ]
        rows.append(f"total: {format_money(self.total(discount_percent), money)}")
        return "\n".join(rows)
