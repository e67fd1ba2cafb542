"""Write src/trestle/schema/models.json: the JSON Schemas of the package's own tools'
arguments and structured answers, as a model is shown them (see
trestle.support.shipped_schemas). Run after changing one of those models:

    .venv/bin/python scripts/ship-schemas.py          # write the file
    .venv/bin/python scripts/ship-schemas.py --check  # exit 1 if it is out of date
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import trestle.tools
from trestle.core.record import untitled_schema
from trestle.core.records.agent import AgentPlan, Findings
from trestle.support.shipped_schemas import model_path
from trestle.tools.base import Tool

TARGET = Path(__file__).resolve().parents[1] / "src" / "trestle" / "schema" / "models.json"


def shipped_models() -> list[type[BaseModel]]:
    """The structured answers, then every argument model of a tool the package defines."""
    models: list[type[BaseModel]] = [Findings, AgentPlan]
    for info in pkgutil.iter_modules(trestle.tools.__path__):
        module = importlib.import_module(f"trestle.tools.{info.name}")
        for tool in vars(module).values():
            if (
                inspect.isclass(tool)
                and issubclass(tool, Tool)
                and tool.__module__ == module.__name__
                and not inspect.isabstract(tool)
                and isinstance(getattr(tool, "arguments", None), type)
                and tool.arguments not in models
            ):
                models.append(tool.arguments)
    return models


def made() -> dict[str, Any]:
    """What the file should hold, by each model's import path."""
    return {
        model_path(m): untitled_schema(m.model_json_schema())
        for m in sorted(shipped_models(), key=model_path)
    }


def text() -> str:
    return json.dumps(made(), indent=1, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        if not TARGET.exists() or TARGET.read_text("utf-8") != text():
            print(f"{TARGET} is out of date: run python scripts/ship-schemas.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text(), "utf-8")
    print(f"wrote {TARGET} ({len(made())} schemas)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
