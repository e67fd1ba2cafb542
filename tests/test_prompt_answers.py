"""Every question the CLI asks on a terminal, left unanswered: Ctrl-C exits 130, and
no answer (Ctrl-D) is a no with the command's own exit code; nothing changes."""

from __future__ import annotations

import contextlib
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


def answered(
    cli: Cli, question: str, key: str, *args: str | Path, held_after: str | None = None
) -> tuple[int, str]:
    """``trestle ARGS`` on a terminal; ``key`` typed once ``question`` shows.

    With ``held_after``, standard error is a pipe already full (a reader slow to take
    it), so a write there waits; ``key`` is typed too if the command waits in such a
    write once ``held_after`` has shown, and what it then writes there is read."""
    main, child = os.openpty()
    held, err = os.pipe() if held_after is not None else (-1, child)
    filled = _fill(err) if held_after is not None else 0
    proc = subprocess.Popen(
        cli.argv(*args),
        cwd=cli.dir,
        env={**cli.env(), "XDG_CONFIG_HOME": str(cli.dir / "config")},
        stdin=child,
        stdout=child,
        stderr=err,
        close_fds=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(child)
    if held_after is not None:
        os.close(err)
    shown, errors, asked, deadline = b"", b"", False, time.monotonic() + 60
    while time.monotonic() < deadline:
        # a command that waits at its question for good (a signal it never took) must
        # fail this test at the deadline, not hang the suite in a read
        look = [main, held] if asked and held >= 0 else [main]
        wait = max(0.0, deadline - time.monotonic())
        if held_after is not None and not asked and held_after.encode() in shown:
            wait = min(wait, 0.05)  # and look whether it waits in that write
        ready = select.select(look, [], [], wait)[0]
        if held in ready:
            more = os.read(held, 65536)
            errors += more
            if not more:  # the command closed it: it is done, or nearly
                os.close(held)
                held = -1
            continue
        if not ready:
            if not asked and held_after is not None and held_after.encode() in shown:
                if _in_pipe_write(proc.pid):
                    asked = _type(proc, main, key)
                continue
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
            asked = _type(proc, main, key)
    os.close(main)
    if held >= 0:
        os.set_blocking(held, False)
        with contextlib.suppress(BlockingIOError):
            while more := os.read(held, 65536):
                errors += more
        os.close(held)
    code = proc.wait(timeout=60)
    return code, (shown + errors[filled:]).decode(errors="replace")


def _type(proc: subprocess.Popen[bytes], main: int, key: str) -> bool:
    if key == CTRL_C:  # the terminal is not the child's: signal it as one would
        proc.send_signal(signal.SIGINT)
    else:
        os.write(main, key.encode())
    return True


def _fill(pipe: int) -> int:
    """Fill the pipe ``pipe`` writes to; how many bytes it took."""
    os.set_blocking(pipe, False)
    filled = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            filled += os.write(pipe, b"." * 4096)
    os.set_blocking(pipe, True)
    return filled


def _in_pipe_write(pid: int) -> bool:
    """Whether the process ``pid`` waits in a write to a pipe (the kernel function it
    sleeps in: ``pipe_write``, ``anon_pipe_write``)."""
    return "pipe_write" in Path(f"/proc/{pid}/wchan").read_text()


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


def test_ctrl_c_while_the_rewind_question_is_written_is_not_lost(cli: Cli) -> None:
    """Standard error full (a reader slow to take it) holds a write there: Ctrl-C then
    ends the command as at the question. The question was input()'s, written to
    standard error in C just before the read: the signal, come between, waited for a
    line typed, and the command sat at its question for good."""
    run_id = run_id_of(cli("run", cli.write("plan.yaml", PLAN), "--no-prompt"))
    (cli.dir / "made.txt").write_text("mine\n")
    listed = "kept first as a checkpoint of the run"
    got, shown = answered(
        cli, "Go ahead?", CTRL_C, "rewind", run_id, "--to", "make", held_after=listed
    )
    assert got == 130, shown
    assert "error: interrupted by SIGINT (Ctrl-C)" in shown
    assert (cli.dir / "made.txt").read_text() == "mine\n"
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
