import unittest

from tinyshop.pricing import apply_discount, with_tax


class PricingTest(unittest.TestCase):
    def test_discount_rounds_to_the_cent(self) -> None:
        self.assertEqual(apply_discount(999, 10), 899)

    def test_discount_out_of_range_is_refused(self) -> None:
        with self.assertRaises(ValueError):
            apply_discount(100, 120)

    def test_tax_is_added(self) -> None:
        self.assertEqual(with_tax(1000, 0.2), 1200)


if __name__ == "__main__":
    unittest.main()
