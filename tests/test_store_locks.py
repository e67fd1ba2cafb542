"""One process opening a store twice must keep the first connection's locks.

Closing any descriptor of a file drops every POSIX lock the process holds on it. A
store that read its header through a descriptor of its own, in a process that already
had the store open, left that first connection without its locks: another process then
closed the store "last", deleted the write-ahead log under it, and the first
connection's later commits went into a deleted file. Real stores, a real second
process, the real CLI.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from trestle.core.plan import Plan, Step
from trestle.lifecycle.runs import create_run
from trestle.store import SqliteStore

PLAN = Plan(goal="count", steps=[Step(id="one", run="true")])


def test_a_second_open_in_one_process_keeps_the_first_ones_commits(tmp_path: Path) -> None:
    path = tmp_path / "trestle.db"
    driver = SqliteStore(path)  # a long-lived store, as a driver or the dashboard holds
    before = create_run(driver, PLAN, workspace=tmp_path)
    SqliteStore(path).close()  # the same process opens the store again, briefly
    env = {**os.environ, "TRESTLE_STORE": str(path)}
    shown = subprocess.run(  # another process reads and closes: the last one, it thinks
        [sys.executable, "-m", "trestle", "show", before, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert Path(f"{path}-wal").exists()  # the driver still has it open: the log stays
    after = create_run(driver, PLAN, workspace=tmp_path)  # committed after all that
    driver.close()
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        found = {row[0] for row in db.execute("SELECT run_id FROM runs")}
    assert found == {before, after}
