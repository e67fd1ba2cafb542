"""The interactive approval prompt of ``trestle run`` on a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
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


CTRL_C = "<Ctrl-C>"
# the run's first approval decided by `trestle approve` from another terminal, then the
# rest of the reply typed at the prompt
ELSEWHERE = "<approved elsewhere>"


def approve_elsewhere(cwd: Path, env: dict[str, str], seen: bytes) -> None:
    run_id = re.search(rb"run (\d{8}-\d{6}-[0-9a-f]{4})", seen)
    assert run_id is not None, seen
    approve = [sys.executable, "-m", "trestle", "approve", f"{run_id.group(1).decode()}.1"]
    done = subprocess.run(approve, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


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
        # as a shell on a terminal starts it: a test runner's worker may ignore SIGINT,
        # and a program started with it ignored keeps it so (Ctrl-C then did nothing)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
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
                reply = pending.pop(0)[1]
                if reply == CTRL_C:  # the terminal is not the child's: signal it as one would
                    proc.send_signal(signal.SIGINT)
                elif reply.startswith(ELSEWHERE):
                    approve_elsewhere(cwd, env, seen)
                    os.write(master, reply.removeprefix(ELSEWHERE).encode() + b"\n")
                else:
                    os.write(master, reply.encode() + b"\n")
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


def test_an_approval_from_another_terminal_while_it_asks_lets_the_run_go_on(
    tmp_path: Path,
) -> None:
    """Answered 'later' (or 'approve') after another terminal approved, the run ended
    waiting, its report still asking for the approval made; or asked again and again."""
    for typed in ("l", "a"):
        (tmp_path / "ledger").unlink(missing_ok=True)
        (tmp_path / "plan.yaml").write_text(PLAN)
        code, out = run_on_a_terminal(tmp_path, [("[l]ater?", ELSEWHERE + typed)])
        assert code == 0, out
        assert re.search(r"\.1 was decided elsewhere meanwhile: the run goes on", out), out
        assert "already decided" not in out
        assert (tmp_path / "ledger").read_text() == "built\nshipped\n"


def test_a_rejection_on_the_terminal_records_the_reason(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(PLAN)
    code, out = run_on_a_terminal(
        tmp_path, [("[l]ater?", "r"), ("reason (recorded", "not on a Friday")]
    )
    assert code == 1, out  # the required step failed by a human's decision
    assert "rejected by" in out and "not on a Friday" in out
    assert (tmp_path / "ledger").read_text() == "built\n"


def test_ctrl_c_at_the_prompt_leaves_the_run_waiting_and_its_report_on_its_own_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "plan.yaml").write_text(PLAN)
    code, out = run_on_a_terminal(tmp_path, [("[l]ater?", CTRL_C)])
    assert code == 130, out
    # NO_COLOR still lets rich write italics; the harness marks where it answered
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out).replace("<answered>", "")
    assert re.search(r"\[l\]ater\? *\r?\nrun \d{8}-\d{6}-[0-9a-f]{4}: needs human", plain), out
    assert (tmp_path / "ledger").read_text() == "built\n"
