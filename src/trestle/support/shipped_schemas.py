"""JSON Schemas of the package's own pydantic models, made when the package is built.

A model is shown the JSON Schema of each tool's arguments and of its structured
answers (findings, a plan). pydantic builds one in 1-2 ms of CPU, and every process
that runs an agent built them all before its first model call: about 15 ms of the 50
ms a resumed 50-turn run took to reach it. ``schema/models.json`` holds them as shown
(without pydantic's titles), by the model's import path; ``scripts/ship-schemas.py``
writes it, and ``tests/test_shipped_schemas.py`` fails when it differs from what
pydantic makes of the code. A model it does not hold (a user's tool) has its schema
made as before.
"""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from typing import Any

SHIPPED = "schema/models.json"


def model_path(model: type) -> str:
    """Where ``model`` is defined, as the shipped file names it: ``module:Qualname``."""
    return f"{model.__module__}:{model.__qualname__}"


def shipped_schema(model: type) -> dict[str, Any] | None:
    """The schema shipped for ``model`` (a copy the caller may change), or None."""
    found = _shipped().get(model_path(model))
    return copy.deepcopy(found) if isinstance(found, dict) else None


@functools.cache
def _shipped() -> dict[str, Any]:
    try:
        text = resources.files("trestle").joinpath(SHIPPED).read_text("utf-8")
        loaded = json.loads(text)
    except (OSError, ValueError):  # not built with it: every schema is made here
        return {}
    return loaded if isinstance(loaded, dict) else {}
