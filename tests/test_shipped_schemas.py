"""The JSON Schemas shipped with the package are what pydantic makes of the code, and
are what a model is shown; a model the file does not hold has its schema made."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel, Field

from trestle.agent.phases import findings_json_schema
from trestle.core.record import untitled_schema
from trestle.core.records.agent import Findings
from trestle.support.shipped_schemas import shipped_schema
from trestle.tools.files import ReadFile, ReadFileArgs

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_file_is_what_the_code_makes() -> None:
    """Changed a tool's arguments or the findings? Run ``python scripts/ship-schemas.py``."""
    checked = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "ship-schemas.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def test_a_model_is_shown_the_shipped_schema_and_may_change_its_copy() -> None:
    made = untitled_schema(Findings.model_json_schema())
    assert shipped_schema(Findings) == made == findings_json_schema()
    assert ReadFile().schema().parameters == untitled_schema(ReadFileArgs.model_json_schema())
    shown = shipped_schema(ReadFileArgs)
    assert shown is not None
    shown["properties"].clear()
    assert shipped_schema(ReadFileArgs) == untitled_schema(ReadFileArgs.model_json_schema())


class _UsersArgs(BaseModel):
    ticket: str = Field(description="the ticket to close")


def test_a_model_not_shipped_has_its_schema_made() -> None:
    assert shipped_schema(_UsersArgs) is None
