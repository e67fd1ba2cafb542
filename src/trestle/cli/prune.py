"""``trestle prune --older-than 30d``: delete old finished runs and reclaim the space."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from trestle.cli.console import _opened, _out, _print_json
from trestle.cli.options import JsonOption, StoreOption
from trestle.core.errors import ConfigError
from trestle.presentation.wording import counted, shown

if TYPE_CHECKING:
    from trestle.store.base import RunRow


def prune_command(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            metavar="AGE",
            help="Remove runs whose last event is older than this: 30d, 12h, 90m, 45s, 2w.",
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")
    ] = False,
    include_unfinished: Annotated[
        bool,
        typer.Option(
            "--include-unfinished",
            help="Also remove runs that could still go on: waiting for a human, stopped by "
            "a budget or monitor, crashed or interrupted (never one a live process drives).",
        ),
    ] = False,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete finished runs (succeeded, partial, cancelled) whose last event is older
    than AGE: their events, leases, requests, snapshots and workspace checkpoints; then
    compact an SQLite store (a PostgreSQL database's space is its autovacuum's to reuse)
    and say how many bytes it took before and after."""
    from trestle.formats.age import parse_age
    from trestle.operations.prune import choose, prune, store_bytes

    try:
        age = parse_age(older_than)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--older-than") from None
    out = _out()
    with _opened(store) as st:
        chosen = choose(st, older_than=age, now=time.time(), include_unfinished=include_unfinished)
        if dry_run:
            size = store_bytes(st)
            if as_json:
                _print_json(
                    {
                        "dry_run": True,
                        "runs": [_json(r) for r in chosen.remove],
                        "events": sum(r.last_seq for r in chosen.remove),
                        "bytes_before": size,
                    }
                )
                return
            for row in chosen.remove:
                out.print(f"would remove {_line(row)}", markup=False, soft_wrap=True)
            _say_kept(chosen.kept_unfinished, chosen.kept_driven, older_than)
            events = sum(r.last_seq for r in chosen.remove)
            out.print(
                f"would remove {counted(len(chosen.remove), 'run')}, {counted(events, 'event')}; "
                f"{_size_now(size)} (dry run: nothing removed)",
                markup=False,
                soft_wrap=True,
            )
            return
        done = prune(st, chosen.remove)
    if as_json:
        _print_json(
            {
                "dry_run": False,
                "runs": [_json(r) for r in done.runs],
                "kept_driven": [_json(r) for r in done.driven],
                "events": done.events,
                "checkpoints": done.checkpoints,
                "bytes_before": done.bytes_before,
                "bytes_after": done.bytes_after,
            }
        )
        return
    for row in done.runs:
        out.print(f"removed {_line(row)}", markup=False, soft_wrap=True)
    _say_kept(chosen.kept_unfinished, [*chosen.kept_driven, *done.driven], older_than)
    out.print(
        f"removed {counted(len(done.runs), 'run')}, {counted(done.events, 'event')}, "
        f"{counted(done.checkpoints, 'checkpoint')}; "
        f"{_size_change(done.bytes_before, done.bytes_after)}",
        markup=False,
        soft_wrap=True,
    )


def _size_now(size: int | None) -> str:
    return "the store's size is not known" if size is None else f"the store is {size:,} bytes"


def _size_change(before: int | None, after: int | None) -> str:
    if before is None or after is None:
        return "the store's size is not known"
    return f"the store went from {before:,} to {after:,} bytes"


def _line(row: RunRow) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(row.updated_at))
    events = counted(row.last_seq, "event")
    return f"run {row.run_id} ({shown(row.status)}, last event {when}, {events})"


def _json(row: RunRow) -> dict[str, object]:
    return {
        "run_id": row.run_id,
        "status": row.status,
        "updated_at": row.updated_at,
        "events": row.last_seq,
    }


def _say_kept(unfinished: list[RunRow], driven: list[RunRow], age: str) -> None:
    out = _out()
    if unfinished:
        ids = ", ".join(f"{r.run_id} ({shown(r.status)})" for r in unfinished)
        out.print(
            f"kept {counted(len(unfinished), 'run')} older than {age} that could still go on: "
            f"{ids} (--include-unfinished removes {'it' if len(unfinished) == 1 else 'them'})",
            markup=False,
            soft_wrap=True,
        )
    if driven:
        ids = ", ".join(r.run_id for r in driven)
        drives = "a live process drives" if len(driven) == 1 else "live processes drive"
        out.print(
            f"kept {counted(len(driven), 'run')} {drives}: {ids}", markup=False, soft_wrap=True
        )
