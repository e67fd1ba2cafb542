"""A peer that floods a run's mailbox: receive_messages reads from the store only what
the model could be shown, however many messages wait, so the flood costs the receiving
driver's memory nothing more (it read every waiting message, bodies and all, at each
look). A real SQLite store and the real tool."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from pathlib import Path

from trestle.store import SqliteStore
from trestle.store.base import Message
from trestle.tools.base import GroupSeat, ToolContext
from trestle.tools.group import ReceiveMessages, ReceiveMessagesArgs

BODY = '"' + "x" * 32_000 + '"'  # JSON text: a string of 32,000 characters
FLOOD = 2_000  # 64 MB of bodies


def test_a_receive_reads_what_it_can_show_of_a_flood(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    for n in range(FLOOD):
        store.send_message(
            Message(
                id=f"m-{n:05}",
                group="g",
                sender="peer",
                recipient="me",
                body=BODY,
                sent_at=float(n),
            )
        )
    seat = GroupSeat(store=store, group="g", delivered=lambda: (), clock=time.time)
    ctx = ToolContext(workspace=tmp_path, run_id="me", step_id="s", group=seat)
    tracemalloc.start()
    try:
        seen = asyncio.run(ReceiveMessages().run(ctx, ReceiveMessagesArgs()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        store.close()
    assert seen.ok
    assert seen.data["message_ids"] == ["m-00000"]  # one is shown whole, oldest first
    assert seen.content.endswith("(at least 501 more waiting: receive again)"), seen.content[-80:]
    # 502 rows of 32 KB read; all 2,000 (64 MB of bodies) before
    assert peak < 40_000_000, f"{peak:,} bytes at the peak"
