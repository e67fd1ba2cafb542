"""tinyshop: prices, discounts and carts for a very small shop."""

from tinyshop.cart import Cart
from tinyshop.config import Settings, load_settings
from tinyshop.pricing import apply_discount, with_tax

__all__ = ["Cart", "Settings", "apply_discount", "load_settings", "with_tax"]
