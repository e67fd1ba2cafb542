"""The operator's controls, through the real ``trestle`` executable: the version, a
reader that closes the output early, cancelling a run, and a model server that is not
there."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

import trestle
from test_cli import Cli


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path, tmp_path / "t.db")


def test_version_prints_the_version(cli: Cli) -> None:
    result = cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"trestle {trestle.__version__}\n"


# --- a reader that closes the output early -----------------------------------------------

SLOW_PLAN = """\
    goal: outlive the reader
    steps:
      - id: first
        run: sleep 0.3; echo one > one.txt
      - id: second
        needs: [first]
        run: echo two > two.txt
        verify:
          - file_exists: two.txt
"""


def test_a_closed_stdout_does_not_stop_the_run(cli: Cli) -> None:
    """``trestle run plan.yaml | head -1``: the reader takes the first line and goes;
    the run still ends, recorded, and exits with its own code."""
    plan = cli.write("plan.yaml", SLOW_PLAN)
    read_end, write_end = os.pipe()
    driver = subprocess.Popen(
        cli.argv("run", plan, "--no-live"),
        cwd=cli.dir,
        env=cli.env(),
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(write_end)
    with os.fdopen(read_end, "r") as reader:
        first = reader.readline()  # like `head -1`: one line, then the pipe is closed
    assert first.startswith("run ")
    run_id = first.split()[1]
    _, stderr = driver.communicate(timeout=60)
    assert driver.returncode == 0, stderr
    assert "Task was destroyed" not in stderr
    assert "BrokenPipeError" not in stderr
    assert (cli.dir / "two.txt").read_text() == "two\n"
    shown = cli("show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert f"run {run_id}: succeeded" in shown.stdout


def _wait_for_file(path: Path, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not path.exists():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.05)
