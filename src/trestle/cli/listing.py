"""The run listing (``trestle runs``) and the small text cells every view shares.

Apart from :mod:`trestle.cli.render`: listing runs needs no event types, and the
command that lists them should start as quickly as ``--help``.
"""

from __future__ import annotations

import json

from rich.table import Table
from rich.text import Text

from trestle.store.base import RunRow
from trestle.wording import clip, clock, shown

# Characters a terminal acts on instead of showing: C0 and C1 controls (escape
# sequences recolour, move the cursor, rewrite the title or clear a line) and the
# bidirectional overrides that reorder what is shown. Text from steps, tools and models
# passes through every view; shown as escapes, it cannot hide or fake what an operator
# reads (an approval card above all). Newlines and tabs stay.
_INVISIBLE = {
    cp: f"\\x{cp:02x}" for cp in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if cp not in (9, 10)
} | {cp: f"\\u{cp:04x}" for cp in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def visible(text: str) -> str:
    """``text`` with every character a terminal would act on shown as an escape."""
    return text.translate(_INVISIBLE)


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
    table = Table(expand=False)
    for col in ("run", "status", "steps", "updated", "goal"):
        table.add_column(col)
    for r in rows:
        counts = json.loads(r.summary)
        steps = ", ".join(f"{n} {shown(k)}" for k, n in sorted(counts.items()))
        table.add_row(
            r.run_id,
            styled(r.status),
            steps,
            clock(r.updated_at, "%m-%d %H:%M"),
            clip(r.goal, 40),
        )
    return table
