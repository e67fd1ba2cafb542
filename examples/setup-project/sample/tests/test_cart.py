import unittest

from tinyshop.cart import Cart
from tinyshop.config import Settings

SETTINGS = Settings(name="test", currency="EUR", tax_rate=0.2)


class CartTest(unittest.TestCase):
    def test_adding_the_same_sku_adds_up_quantities(self) -> None:
        cart = Cart(SETTINGS)
        cart.add("mug", 850)
        cart.add("mug", 850, 2)
        self.assertEqual(cart.subtotal(), 2550)

    def test_total_applies_discount_then_tax(self) -> None:
        cart = Cart(SETTINGS)
        cart.add("tea", 1000)
        self.assertEqual(cart.total(discount_percent=50), 600)

    def test_receipt_formats_money_with_moneyfmt(self) -> None:
        cart = Cart(SETTINGS)
        cart.add("kettle", 123400)
        self.assertEqual(cart.receipt(), "1 x kettle: €1,234.00\ntotal: €1,480.80")

    def test_zero_quantity_is_refused(self) -> None:
        with self.assertRaises(ValueError):
            Cart(SETTINGS).add("mug", 850, 0)


if __name__ == "__main__":
    unittest.main()
