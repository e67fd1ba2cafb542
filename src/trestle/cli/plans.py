"""Commands on plan files, without running them: ``plan``, ``schema``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# Typer keeps its own copy of click (pinned: pyproject.toml); the exceptions a usage
# error raises are only importable from it
from trestle.cli.console import (
    _out,
    _print_json,
)


def plan(
    plan_file: Annotated[Path, typer.Argument(metavar="PLAN", help="The plan file (YAML).")],
) -> None:
    """Validate a plan and show its order, parallel waves and critical path."""
    from trestle.cli.render import plan_overview
    from trestle.formats.planfile import load_plan

    _out().print(plan_overview(load_plan(plan_file), str(plan_file)))


def schema() -> None:
    """Print the plan file's JSON Schema."""
    from trestle.formats.planfile import plan_json_schema

    _print_json(plan_json_schema())
