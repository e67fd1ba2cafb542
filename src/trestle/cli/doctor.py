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
from trestle.presentation.wording import counted


def doctor(
    store: StoreOption = None,
    as_json: JsonOption = False,
    salvage_to: Annotated[
        Path | None,
        typer.Option(
            "--salvage", metavar="OUT", help="Copy every intact run into a new store here."
        ),
    ] = None,
    upgrade: Annotated[
        bool,
        typer.Option(
            "--upgrade",
            help="Apply the schema migrations a PostgreSQL store from an older Trestle "
            "lacks, in one transaction; stop every process using it and back it up "
            "first (an SQLite store upgrades itself when opened).",
        ),
    ] = False,
) -> None:
    """Check a store: file, pages, schema, and every run's events, snapshot and listing
    row (a PostgreSQL store: the connection, the schema, and every run's events,
    listing row and lease); say what is wrong and what can be recovered. Exits 0
    healthy, 4 damaged."""
    from trestle.operations.doctor import diagnose, diagnosis_lines, salvage
    from trestle.operations.doctor import upgrade as upgrade_store
    from trestle.store.location import is_store_url

    where = reading_store(store)
    upgraded = None
    if upgrade:
        if not is_store_url(where):
            raise typer.BadParameter(
                "an SQLite store upgrades itself when Trestle opens it; --upgrade is for a "
                "PostgreSQL store (--store postgresql://...)",
                param_hint="--upgrade",
            )
        upgraded = upgrade_store(str(where))
    found = diagnose(where, now=time.time())
    copied = None if salvage_to is None else salvage(where, salvage_to, now=time.time())
    if as_json:
        _print_json({**found.model_dump(mode="json"), "salvaged": copied, "upgraded": upgraded})
    else:
        out = _out()
        if upgraded is not None:
            out.print(f"upgraded the store's schema from version {upgraded[0]} to {upgraded[1]}")
        elif upgrade:
            out.print("the store's schema is current: nothing to upgrade")
        for line in diagnosis_lines(found):
            out.print(line, markup=False, soft_wrap=True)
        if salvage_to is not None and copied is not None:
            out.print(f"salvaged {counted(len(copied), 'run')} into {salvage_to}", markup=False)
    raise typer.Exit(0 if found.healthy else StoreError.exit_code)
