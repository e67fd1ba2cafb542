"""Rows written into a store by hand, as an attacker with access to its file would."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any


def append_raw_event(store: Path, run_id: str, kind: str, fields: dict[str, Any]) -> int:
    """Append an event of ``kind`` with ``fields`` to the run's events as a bare row
    (no signature, no engine) and move the run's listing on; return its seq."""
    event = {"kind": kind, "at": time.time(), **fields}
    with sqlite3.connect(store) as db:
        seq, v = db.execute(
            "SELECT seq, v FROM events WHERE run_id = ? ORDER BY seq DESC LIMIT 1", (run_id,)
        ).fetchone()
        db.execute(
            "INSERT INTO events (run_id, seq, kind, v, at, data) VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, seq + 1, kind, v, event["at"], json.dumps(event)),
        )
        db.execute("UPDATE runs SET last_seq = ? WHERE run_id = ?", (seq + 1, run_id))
    return int(seq + 1)
