"""The core loads alone: importing every module of trestle.core loads no other part.

`lint-imports` (pyproject.toml's contracts) checks the imports it can read; this checks
what really loads, which also catches a module found by name at run time.
"""

from __future__ import annotations

import subprocess
import sys

# Python runs a package's __init__ before any module in it: trestle's own is the lazy
# export table (trestle.support.lazy, in a package that loads nothing else), which loads
# nothing until a name is asked for.
ROOT = {"trestle", "trestle.support", "trestle.support.lazy"}

LOAD_THE_CORE = """
import importlib, pkgutil, sys
import trestle.core
for found in pkgutil.walk_packages(trestle.core.__path__, "trestle.core."):
    importlib.import_module(found.name)
print("\\n".join(sorted(sys.modules)))
"""


def test_the_core_loads_without_the_rest_of_trestle() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LOAD_THE_CORE], capture_output=True, text=True, check=True
    )
    loaded = set(done.stdout.split())
    ours = {m for m in loaded if m == "trestle" or m.startswith("trestle.")}
    assert "trestle.core.events" in ours and "trestle.core.records.agent" in ours
    assert {m for m in ours - ROOT if not m.startswith("trestle.core")} == set()
    # nor the edges' libraries
    assert not {"rich", "typer", "openai", "anthropic", "sqlite3", "yaml"} & loaded
