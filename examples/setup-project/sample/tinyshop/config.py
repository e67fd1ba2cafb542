"""Settings, read from config.toml at the project root."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "config.toml"


@dataclass(frozen=True)
class Settings:
    name: str
    currency: str
    tax_rate: float


def load_settings(path: Path = DEFAULT_PATH) -> Settings:
    """Read the ``[shop]`` table; a missing file is an error, not a silent default."""
    with path.open("rb") as f:
        shop = tomllib.load(f)["shop"]
    return Settings(name=shop["name"], currency=shop["currency"], tax_rate=float(shop["tax_rate"]))
