"""The interactive approval prompt of ``trestle run`` on a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

PLAN = """\
goal: ship it
steps:
  - id: build
    run: echo built >> ledger
  - id: ship
    needs: [build]
    irreversible: true
    run: echo shipped >> ledger
"""


def run_on_a_terminal(cwd: Path, answers: list[tuple[str, str]]) -> tuple[int, str]:
    """Run ``trestle run plan.yaml`` on a pty; when ``expect`` shows up, type ``reply``."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "TRESTLE_STORE": str(cwd / "t.db")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "trestle", "run", "plan.yaml", "--no-live"],
        cwd=cwd,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        close_fds=True,
    )
    os.close(slave)
    seen = b""
    pending = list(answers)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            unanswered = seen.rpartition(b"<answered>")[2]
            if pending and pending[0][0].encode() in unanswered:
                os.write(master, pending.pop(0)[1].encode() + b"\n")
                seen += b"<answered>"
            if proc.poll() is not None and not ready:
                break
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, seen.decode(errors="replace")


def test_run_on_a_terminal_asks_and_an_approval_lets_the_step_run(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(PLAN)
    code, out = run_on_a_terminal(tmp_path, [("[l]ater?", "a")])
    assert code == 0, out
    assert "'ship' is irreversible" in out  # the card was shown before the question
    assert (tmp_path / "ledger").read_text() == "built\nshipped\n"


def test_answering_later_leaves_the_run_waiting(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(PLAN)
    code, out = run_on_a_terminal(tmp_path, [("[l]ater?", "l")])
    assert code == 3, out
    assert (tmp_path / "ledger").read_text() == "built\n"


def test_a_rejection_on_the_terminal_records_the_reason(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(PLAN)
    code, out = run_on_a_terminal(
        tmp_path, [("[l]ater?", "r"), ("reason (recorded", "not on a Friday")]
    )
    assert code == 1, out  # the required step failed by a human's decision
    assert "rejected by" in out and "not on a Friday" in out
    assert (tmp_path / "ledger").read_text() == "built\n"
