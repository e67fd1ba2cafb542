"""The sample repository and the recorded trajectory ``trestle demo`` replays.

The sample repository ships as one JSON file (path to text), not as a tree of Python
files, so installing Trestle neither packages it as code nor warns about it.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path


def write_sample(repo: Path) -> Path:
    """A fresh copy of the sample repository at ``repo`` (which must not exist)."""
    files: dict[str, str] = json.loads(
        resources.files(__name__).joinpath("sample.json").read_text(encoding="utf-8")
    )
    repo.mkdir(parents=True)
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return repo
