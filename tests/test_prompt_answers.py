"""Every question the CLI asks on a terminal, left unanswered: Ctrl-C exits 130, and
no answer (Ctrl-D) is a no with the command's own exit code; nothing changes."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_cli import Cli, run_id_of

CTRL_C, CTRL_D, NO = "ctrl-c", "\x04", "n\n"

PLAN = """\
    goal: ask me
    steps:
      - id: make
        run: echo made > made.txt
      - id: ship
        needs: [make]
        run: echo shipped >> ledger
        irreversible: true
"""


def answered(cli: Cli, question: str, key: str, *args: str | Path) -> tuple[int, str]:
    """``trestle ARGS`` on a terminal; ``key`` typed once ``question`` shows."""
    main, child = os.openpty()
    proc = subprocess.Popen(
        cli.argv(*args),
        cwd=cli.dir,
        env={**cli.env(), "XDG_CONFIG_HOME": str(cli.dir / "config")},
        stdin=child,
        stdout=child,
        stderr=child,
        close_fds=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(child)
    shown, asked, deadline = b"", False, time.monotonic() + 60
    while time.monotonic() < deadline:
        # a command that waits at its question for good (a signal it never took) must
        # fail this test at the deadline, not hang the suite in a read
        if not select.select([main], [], [], max(0.0, deadline - time.monotonic()))[0]:
            proc.kill()
            break
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal closed: the command is done
            break
        if not chunk:
            break
        shown += chunk
        if not asked and question.encode() in shown:
            asked = True
            if key == CTRL_C:  # the terminal is not the child's: signal it as one would
                proc.send_signal(signal.SIGINT)
            else:
                os.write(main, key.encode())
    os.close(main)
    return proc.wait(timeout=60), shown.decode(errors="replace")


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path, tmp_path / "t.db")


def test_no_answer_at_the_approval_prompt_leaves_the_run_waiting(cli: Cli) -> None:
    code, shown = answered(cli, "[l]ater?", CTRL_D, "run", cli.write("plan.yaml", PLAN))
    assert code == 3, shown
    assert "no answer (end of input): it waits in `trestle inbox`" in shown
    assert not (cli.dir / "ledger").exists()


@pytest.mark.parametrize(("key", "code"), [(CTRL_C, 130), (CTRL_D, 11), (NO, 11)])
def test_a_rewind_not_confirmed_changes_nothing(cli: Cli, key: str, code: int) -> None:
    run_id = run_id_of(cli("run", cli.write("plan.yaml", PLAN), "--no-prompt"))
    (cli.dir / "made.txt").write_text("mine\n")
    got, shown = answered(cli, "Go ahead?", key, "rewind", run_id, "--to", "make")
    assert got == code, shown
    assert "Traceback" not in shown
    assert (cli.dir / "made.txt").read_text() == "mine\n"
    assert len(cli("checkpoints", run_id).stdout.splitlines()) == 2  # none kept
    assert "run_rewound" not in cli("log", run_id).stdout


@pytest.mark.parametrize(("key", "code"), [(CTRL_C, 130), (CTRL_D, 9), (NO, 9)])
def test_a_policy_not_accepted_at_the_prompt(cli: Cli, key: str, code: int) -> None:
    cli.write("trestle.toml", "[policy]\n")
    got, shown = answered(cli, "Accept it?", key, "policy", "accept")
    assert got == code, shown
    assert "Traceback" not in shown
    assert not (cli.dir / "config" / "trestle" / "accepted-policies.json").exists()


if sys.platform != "linux":  # a pseudo-terminal as Linux gives one
    pytestmark = pytest.mark.skip
