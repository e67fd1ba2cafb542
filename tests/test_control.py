"""The operator's controls, through the real ``trestle`` executable: the version, a
reader that closes the output early, cancelling a run, and a model server that is not
there."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

import trestle
from test_cli import Cli, flat, table_rows
from trestle.core.errors import ProviderConnectError
from trestle.models import Message
from trestle.models.openai import OpenAIModel


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


# --- trestle cancel ------------------------------------------------------------------------

CANCEL_PLAN = """\
    goal: cancel me
    steps:
      - id: slow
        run: echo started > started.txt; sleep 30; echo late > late.txt
      - id: after
        needs: [slow]
        run: echo after > after.txt
"""


def test_cancel_stops_a_driven_run_and_its_steps(cli: Cli) -> None:
    plan = cli.write("plan.yaml", CANCEL_PLAN)
    driver = subprocess.Popen(
        cli.argv("run", plan, "--no-live"),
        cwd=cli.dir,
        env=cli.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert driver.stdout is not None
    run_id = driver.stdout.readline().split()[1]
    _wait_for_file(cli.dir / "started.txt")

    cancelled = cli("cancel", run_id, "--reason", "wrong branch")
    assert cancelled.returncode == 0, cancelled.stderr
    out = flat(cancelled.stdout)
    assert out.startswith(f"run {run_id} cancelled (its driver trestle[{driver.pid}] stopped it)")
    assert f"run {run_id}: cancelled" in out
    assert table_rows(cancelled.stdout) == [
        ["slow", "cancelled", "1", "attempt 1 was stopped by trestle cancel mid-step"],
        ["after", "not started", "0", "waiting for 'slow'"],
    ]
    assert "cancelled by" in out and ": wrong branch. It cannot be resumed" in out

    rest, _ = driver.communicate(timeout=60)
    assert driver.returncode == 7  # the driver's run was cancelled
    assert "CANCELLED by" in rest and "wrong branch; stopped slow" in rest
    time.sleep(0.5)
    assert not (cli.dir / "late.txt").exists()  # the step's process is gone
    assert not (cli.dir / "after.txt").exists()

    shown = cli("show", run_id)
    assert f"run {run_id}: cancelled" in shown.stdout
    assert "wrong branch" in flat(shown.stdout)
    listing = cli("runs")
    assert any(run_id in line and "cancelled" in line for line in listing.stdout.splitlines())

    resumed = cli("resume", run_id)
    assert resumed.returncode == 7
    assert f"error: run '{run_id}' was cancelled by" in flat(
        resumed.stderr
    ) and "a cancelled run cannot be resumed, retried or changed" in flat(resumed.stderr)
    retried = cli("retry", run_id, "slow")
    assert retried.returncode == 7
    again = cli("cancel", run_id, "--reason", "twice")
    assert again.returncode == 0
    assert flat(again.stdout).startswith(f"run {run_id} was already cancelled by")


def test_cancel_records_a_run_nobody_drives_and_ends_its_leftovers(
    cli: Cli, unconfined: None
) -> None:
    """The driver was killed (SIGKILL) while a step ran: nobody drives the run, but
    the step's process lives on. Cancel kills it and records the cancel itself."""
    plan = cli.write(
        "plan.yaml",
        """\
        goal: orphaned
        steps:
          - id: slow
            run: (sleep 30; echo late > late.txt) & echo $! > orphan.pid; wait
        """,
    )
    driver = subprocess.Popen(
        cli.argv("run", plan, "--no-live"),
        cwd=cli.dir,
        env={**cli.env(), "TRESTLE_SANDBOX": "off"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert driver.stdout is not None
    run_id = driver.stdout.readline().split()[1]
    _wait_for_file(cli.dir / "orphan.pid")
    time.sleep(0.3)
    driver.kill()
    driver.communicate(timeout=30)
    orphan = int((cli.dir / "orphan.pid").read_text())
    assert _alive(orphan)

    cancelled = cli("cancel", run_id, "--reason", "not needed")
    assert cancelled.returncode == 0, cancelled.stderr
    out = flat(cancelled.stdout)
    assert out.startswith(f"run {run_id} cancelled: not needed")
    assert "The cancel stopped 'slow' mid-step" in out
    assert not _alive(orphan)
    shown = cli("show", run_id, "--json")
    assert '"status": "cancelled"' in shown.stdout
    assert cli("resume", run_id).returncode == 7


def test_cancel_refuses_a_run_that_succeeded(cli: Cli) -> None:
    plan = cli.write("plan.yaml", SLOW_PLAN)
    done = cli("run", plan, "--no-live")
    run_id = done.stdout.split()[1]
    refused = cli("cancel", run_id, "--reason", "late")
    assert refused.returncode == 2
    assert flat(refused.stderr) == (
        f"error: run {run_id!r} already succeeded: there is nothing to cancel"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie no longer runs
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_cancel_a_run_waiting_for_approval(cli: Cli) -> None:
    plan = cli.write(
        "plan.yaml",
        """\
        goal: release
        steps:
          - id: deploy
            run: echo deployed >> deploys.log
            irreversible: true
        """,
    )
    waiting = cli("run", plan, "--no-live")
    assert waiting.returncode == 3, waiting.stderr
    run_id = waiting.stdout.split()[1]

    cancelled = cli("cancel", run_id, "--reason", "release postponed")
    assert cancelled.returncode == 0, cancelled.stderr
    assert flat(cancelled.stdout).startswith(f"run {run_id} cancelled: release postponed")
    assert "trestle resume" not in cancelled.stdout  # no advice to go on
    assert table_rows(cancelled.stdout)[0][:2] == ["deploy", "cancelled"]
    assert cli("inbox").stdout.strip() == "inbox is empty"
    approved = cli("approve", f"{run_id}.1")
    assert approved.returncode == 7
    assert "a cancelled run cannot be resumed, retried or changed" in flat(approved.stderr)
    logged = cli("log", run_id)
    assert "run_cancelled" in logged.stdout
    assert not (cli.dir / "deploys.log").exists()


# --- a model server that is not there ------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_agent_with_a_refused_base_url_fails_at_once(cli: Cli) -> None:
    (cli.dir / "repo").mkdir()
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    started = time.monotonic()
    result = cli("agent", "fix it", "--repo", "repo", "--base-url", url, "--no-live")
    assert time.monotonic() - started < 15
    assert result.returncode == 2
    assert flat(result.stderr) == (
        f"error: --base-url: cannot connect to {url!r}: connection refused "
        "(is the server running there?)"
    )
    assert result.stdout == ""  # nothing was recorded
    assert not cli.store.exists() or cli("runs").stdout.strip() == "no runs yet"


def test_agent_with_an_unknown_host_fails_at_once(cli: Cli) -> None:
    (cli.dir / "repo").mkdir()
    url = "http://no-such-host.invalid/v1"  # .invalid never resolves (RFC 6761)
    result = subprocess.run(
        cli.argv("agent", "fix it", "--repo", "repo", "--base-url", url, "--no-live"),
        cwd=cli.dir,
        # the lookup fails before anything could be sent: no model request leaves
        env={**cli.env(), "TRESTLE_BLOCK_MODEL_REQUESTS": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert flat(result.stderr).startswith(
        f"error: --base-url: cannot connect to {url!r}: host 'no-such-host.invalid' not found"
    )


def test_agent_without_a_key_names_the_cli_option(cli: Cli) -> None:
    (cli.dir / "repo").mkdir()
    env = {k: v for k, v in cli.env().items() if k != "OPENAI_API_KEY"}
    result = subprocess.run(
        cli.argv("agent", "fix it", "--repo", "repo", "--no-live"),
        cwd=cli.dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert flat(result.stderr) == (
        "error: openai: no API key for model 'gpt-4o-mini': set OPENAI_API_KEY, or name "
        "the variable that holds it with --api-key-env NAME (a local server at --base-url "
        "needs none)"
    )
    assert "api_key=" not in result.stderr
    named = subprocess.run(
        cli.argv("agent", "fix it", "--repo", "repo", "--no-live", "--api-key-env", "MY_KEY"),
        cwd=cli.dir,
        env={k: v for k, v in env.items() if k != "MY_KEY"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert named.returncode == 2
    assert flat(named.stderr) == (
        "error: model 'openai:gpt-4o-mini': its key is read from $MY_KEY (api_key_env, "
        "the CLI's --api-key-env), which is not set"
    )


def test_a_refused_connection_is_not_retried() -> None:
    """Mid-run too (the server went away, or was never there): the provider says so at
    once, naming the URL, instead of backing off through its retries."""
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    model = OpenAIModel("m", base_url=url, sleep=sleep)

    async def call() -> None:
        try:
            await model.complete([Message(role="user", content="hi")])
        finally:
            await model.aclose()

    with pytest.raises(ProviderConnectError) as caught:
        asyncio.run(call())
    assert str(caught.value) == (
        f"openai: cannot connect to {url!r}: connection refused (is the server running there?)"
    )
    assert slept == []
