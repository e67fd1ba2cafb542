"""The sample repository and the recorded trajectory ``trestle demo`` replays.

The sample repository ships as one JSON file (path to text), not as a tree of Python
files, so installing Trestle neither packages it as code nor warns about it.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from trestle.core.errors import ConfigError


def write_sample(repo: Path) -> Path:
    """A fresh copy of the sample repository at ``repo`` (which must not exist); a
    ConfigError naming the place when it cannot be written (``--dir`` a file, say)."""
    files: dict[str, str] = json.loads(
        resources.files(__name__).joinpath("sample.json").read_text(encoding="utf-8")
    )
    try:
        repo.mkdir(parents=True)
        for name, text in files.items():
            path = repo / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{str(repo.parent)!r}: cannot write the sample repository there: {exc.strerror or exc}"
        ) from None
    return repo
