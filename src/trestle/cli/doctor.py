"""``trestle doctor``: check a store, and salvage what is intact."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

# Typer keeps its own copy of click (pinned: pyproject.toml); the exceptions a usage
# error raises are only importable from it
from trestle.cli.console import (
    _out,
    _print_json,
)
from trestle.cli.options import (
    JsonOption,
    StoreOption,
)
from trestle.cli.stores import reading_store
from trestle.core.errors import StoreError


def doctor(
    store: StoreOption = None,
    as_json: JsonOption = False,
    salvage_to: Annotated[
        Path | None,
        typer.Option(
            "--salvage", metavar="OUT", help="Copy every intact run into a new store here."
        ),
    ] = None,
) -> None:
    """Check a store: file, pages, schema, and every run's events, snapshot and listing
    row; say what is wrong and what can be recovered. Exits 0 healthy, 4 damaged."""
    from trestle.operations.doctor import diagnose, diagnosis_lines, salvage

    path = reading_store(store)
    found = diagnose(path, now=time.time())
    copied = None if salvage_to is None else salvage(path, salvage_to, now=time.time())
    if as_json:
        _print_json({**found.model_dump(mode="json"), "salvaged": copied})
    else:
        out = _out()
        for line in diagnosis_lines(found):
            out.print(line, markup=False, soft_wrap=True)
        if salvage_to is not None and copied is not None:
            out.print(f"salvaged {len(copied)} run(s) into {salvage_to}", markup=False)
    raise typer.Exit(0 if found.healthy else StoreError.exit_code)
