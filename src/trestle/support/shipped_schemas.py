"""JSON Schemas of the package's own pydantic models, made when the package is built.

A model is shown the JSON Schema of each tool's arguments and of its structured
answers (findings, a plan). pydantic builds one in 1-2 ms of CPU, and every process
that runs an agent built them all before its first model call: about 15 ms of the 50
ms a resumed 50-turn run took to reach it. ``schema/models.json`` holds them as shown
(without pydantic's titles), by the model's import path; ``scripts/ship-schemas.py``
writes it, and ``tests/test_shipped_schemas.py`` fails when it differs from what
pydantic makes of the code. A model it does not hold (a user's tool) has its schema
made as before.

The file is read by its path beside this module, not through ``importlib.resources``:
that imports three modules on first use, 1.8 ms of a resumed run's CPU before its first
model call. Each schema is kept as its JSON text and parsed for every caller, a fresh
object it may change: ``copy.deepcopy`` of the parsed schemas cost 1.3 ms for the seven
a first agent turn is shown.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

SHIPPED = "schema/models.json"
_FILE = Path(__file__).resolve().parents[1] / SHIPPED  # in the trestle package


def model_path(model: type) -> str:
    """Where ``model`` is defined, as the shipped file names it: ``module:Qualname``."""
    return f"{model.__module__}:{model.__qualname__}"


def shipped_schema(model: type) -> dict[str, Any] | None:
    """The schema shipped for ``model`` (a copy the caller may change), or None."""
    text = _shipped().get(model_path(model))
    if text is None:
        return None
    found: dict[str, Any] = json.loads(text)
    return found


@functools.cache
def _shipped() -> dict[str, str]:
    """Each shipped schema as JSON text, by the model's path."""
    try:
        loaded = json.loads(_FILE.read_bytes())
    except (OSError, ValueError):  # not built with it: every schema is made here
        return {}
    if not isinstance(loaded, dict):
        return {}
    return {path: json.dumps(schema) for path, schema in loaded.items() if isinstance(schema, dict)}
