"""moneyfmt: format integer amounts of cents as money strings."""

__version__ = "0.1.0"

SYMBOLS = {"EUR": "€", "GBP": "£", "USD": "$", "JPY": "¥"}
NO_MINOR_UNITS = {"JPY"}


def format_money(cents: int, currency: str = "USD") -> str:
    """Format ``cents`` in ``currency``: ``format_money(123456, "EUR") == "€1,234.56"``."""
    code = currency.upper()
    symbol = SYMBOLS.get(code, code + " ")
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    if code in NO_MINOR_UNITS:
        return f"{sign}{symbol}{cents:,}"
    whole, minor = divmod(cents, 100)
    return f"{sign}{symbol}{whole:,}.{minor:02d}"
