import unittest

from tinyshop.config import load_settings


class ConfigTest(unittest.TestCase):
    """config.toml is written by the plan's `config` step; this proves it is read."""

    def test_settings_come_from_config_toml(self) -> None:
        settings = load_settings()
        self.assertEqual(settings.name, "tinyshop")
        self.assertEqual(settings.currency, "EUR")
        self.assertAlmostEqual(settings.tax_rate, 0.2)


if __name__ == "__main__":
    unittest.main()
