"""The run listing (``trestle runs``) and the small text cells every view shares.

Apart from :mod:`trestle.cli.render`: listing runs needs no event types, and the
command that lists them should start as quickly as ``--help``.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from trestle.store.base import RunRow
from trestle.wording import clip, clock, shown

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
}


def styled(status: str) -> Text:
    return Text(shown(status), style=STATUS_STYLE.get(status, ""))


def runs_table(rows: list[RunRow]) -> Table:
    """Runs as listed (newest first), each delegated child under its parent."""
    table = Table(expand=False)
    for col in ("run", "status", "steps", "updated", "goal"):
        table.add_column(col)
    for r, depth in by_tree(rows):
        counts = r.summarised().counts
        steps = ", ".join(f"{n} {shown(k)}" for k, n in sorted(counts.items()))
        table.add_row(
            "  " * (depth - 1) + "└ " + r.run_id if depth else r.run_id,
            styled(r.status),
            steps,
            clock(r.updated_at, "%m-%d %H:%M"),
            clip(r.goal, 40),
        )
    return table


def by_tree(rows: list[RunRow]) -> list[tuple[RunRow, int]]:
    """Rows grouped by tree: each root where it stands in ``rows``, then its children
    (oldest first, depth first), each with its depth. A child whose parent is not
    among ``rows`` (pruned) stands alone."""
    parents = {r.run_id: r.summarised().parent for r in rows}
    children: dict[str, list[RunRow]] = {}
    for r in sorted(rows, key=lambda r: r.created_at):
        parent = parents[r.run_id]
        if parent is not None and parent in parents:
            children.setdefault(parent, []).append(r)
    out: list[tuple[RunRow, int]] = []

    def place(row: RunRow, depth: int) -> None:
        out.append((row, depth))
        for child in children.get(row.run_id, []):
            place(child, depth + 1)

    for r in rows:
        if parents[r.run_id] is None or parents[r.run_id] not in parents:
            place(r, 0)
    return out
