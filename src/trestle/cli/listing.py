"""The run listing (``trestle runs``) and the small text cells every view shares.

Apart from :mod:`trestle.cli.render`: listing runs needs no event types, and the
command that lists them should start as quickly as ``--help``.
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.table import Table

from trestle.cli.shown_text import Text
from trestle.lifecycle.driven import Driving, interrupted_note
from trestle.presentation.wording import clip, clock, shown
from trestle.store.base import RunRow, by_tree

STATUS_STYLE = {
    "succeeded": "green",
    "done": "green",
    "failed": "red",
    "blocked": "yellow",
    "escalated": "bold red",
    "skipped": "magenta",
    "running": "cyan",
    "probing": "cyan",
    "retry_wait": "yellow",
    "pending": "dim",
    "never_started": "dim",
    "unknown": "red",
    "partial": "yellow",
    "needs_human": "bold red",
    "in_progress": "cyan",
    "awaiting_approval": "bold yellow",
    "stopped": "bold red",
    "cancelled": "bold red",
    "interrupted": "bold yellow",
}


def styled(status: str) -> Text:
    return Text(shown(status), style=STATUS_STYLE.get(status, ""))


def listed_status(row: RunRow, driven: Mapping[str, Driving] | None = None) -> str:
    """The row's status as :func:`trestle.lifecycle.driven.driving` judged it in
    ``driven`` (``interrupted`` for a run nothing drives any more); as recorded when
    it was not judged."""
    judged = (driven or {}).get(row.run_id)
    return judged.status if judged is not None else row.status


def interrupted_notes(rows: list[RunRow], driven: Mapping[str, Driving]) -> list[str]:
    """For each interrupted run, what stopped it and the command that moves it."""
    notes = []
    for r in rows:
        if listed_status(r, driven) == "interrupted":
            summary = r.summarised()
            note = interrupted_note(r.run_id, summary.interrupted, driven[r.run_id], summary.root)
            notes.append(note)
    return notes


def brief_usage(usage: dict[str, float] | None) -> str:
    """``1,234 tokens, $0.0042`` for a run whose model calls the listing row counts."""
    if not usage:
        return ""
    # loaded only for a row with model use: listing plan runs stays free of pydantic
    from trestle.core.usage import Spent, brief_text

    return brief_text(Spent.model_validate(usage))


def runs_table(rows: list[RunRow], driven: Mapping[str, Driving] | None = None) -> Table:
    """Runs as listed (newest first), each delegated child under its parent; what their
    model calls used, when any of them called a model."""
    listed = [(r, depth, r.summarised()) for r, depth in by_tree(rows)]
    used = any(summary.usage for _, _, summary in listed)
    table = Table(expand=False)
    for col in ("run", "status", "steps", *(["model use"] if used else []), "updated", "goal"):
        table.add_column(col)
    for r, depth, summary in listed:
        steps = ", ".join(f"{n} {shown(k)}" for k, n in sorted(summary.counts.items()))
        table.add_row(
            "  " * (depth - 1) + "└ " + r.run_id if depth else r.run_id,
            styled(listed_status(r, driven)),
            steps,
            *([brief_usage(summary.usage)] if used else []),
            clock(r.updated_at, "%m-%d %H:%M"),
            clip(r.goal, 40),
        )
    return table
