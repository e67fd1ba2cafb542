"""A driver SIGKILLed while an MCP tool call is out, then ``trestle resume``: a real
``trestle agent`` process (the model: the loopback OpenAI-compatible server), a real
stdio MCP server in the sandbox (tests/mcp_server.py, declared in an operator's
``trestle.toml`` with ``tier = "log"`` so its calls go out at once), and the server's
own log of effects as the witness.

- a destructive call's outcome is unknown after the crash: it is not sent again; the
  step waits for a human, bound to that call, and goes on once approved;
- an idempotent call is sent again, once, and the run goes on by itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_agent_cli import FINDINGS, OPENAI_MODEL, PLAN, Cli, lines_starting
from test_mcp_config import agent, calc_repo, toml
from test_mcp_tools import SERVER, effects
from trestle.models import ToolCall
from trestle.testing import OpenAIServer

PATIENCE = 60.0  # a guard against a hung child; nothing asserts how long anything takes


@pytest.fixture
def cli(tmp_path: Path, _own_decision_key: Path) -> Cli:
    return Cli(tmp_path, tmp_path / "trestle.db", _own_decision_key)


def tool(call_id: str, tool_name: str, **arguments: str) -> ToolCall:
    return ToolCall(id=call_id, name=tool_name, arguments=json.dumps(arguments))


def killed_mid_call(
    cli: Cli, server: OpenAIServer, call: ToolCall, tier: str = "log"
) -> tuple[Path, str]:
    """Start ``trestle agent`` whose fix step calls ``call`` (a slow one), SIGKILL the
    driver while the call is in the server, and return the workspace and the run. With
    ``tier`` confirm, the call is approved first, and the driver killed is the resume's."""
    repo = calc_repo(cli.dir / "calc")
    (repo / "slow-once").write_text("45")  # the first call waits, after its effect
    ops = toml(
        cli.dir / "operator",  # outside the workspace: the operator's own, trusted
        f"[mcp.servers.notes]\ncommand = {json.dumps(sys.executable)}\n"
        f'args = [{json.dumps(SERVER)}]\ntier = "{tier}"\n'
        # the server's script is outside the workspace: shown to the sandbox read-only,
        # as an operator does for a server of their own (a checkout under /tmp is hidden)
        f"[policy.sandbox]\nread = [{json.dumps(str(Path(SERVER).parent))}]\n",
    )
    server.queue_text(json.dumps(FINDINGS))
    server.queue_text(json.dumps(PLAN))
    server.queue_tool_calls(call)
    server.queue_tool_calls(tool("e", "edit_file", path="calc.py", old="a - b", new="a + b"))
    server.queue_tool_calls(tool("f", "finish", summary="add adds"))
    command = agent(cli, repo, server, "--policy", str(ops))
    if tier == "confirm":  # asked, approved; the resume makes the call
        asked = cli(*command)
        assert asked.returncode == 3, asked.stdout + asked.stderr
        [card] = cli.json("inbox", "--json")
        assert cli("approve", card["ref"]).returncode == 0
        command = ["resume", card["run_id"], "--no-live", "--no-prompt"]
    log = cli.dir / "driver.log"
    with log.open("w") as out:
        driver = subprocess.Popen(
            [sys.executable, "-m", "trestle", *command],
            cwd=cli.dir,
            env=cli.env(OPENAI_API_KEY="x"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + PATIENCE
        while not (repo / "in-call").exists():
            assert driver.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        os.kill(driver.pid, signal.SIGKILL)  # the driver alone, as a crash takes it
        driver.wait(timeout=PATIENCE)
    [row] = cli.json("runs")
    return repo, row["run_id"]


def test_a_destructive_call_cut_short_by_a_crash_goes_to_a_human_not_again(cli: Cli) -> None:
    with OpenAIServer(model=OPENAI_MODEL) as server:
        delete = tool("d", "notes__delete_note", name="old")
        repo, run_id = killed_mid_call(cli, server, delete)
        assert effects(repo) == ['delete_note {"name": "old"}']

        waits = cli("resume", run_id, "--no-live", "--no-prompt")
        assert waits.returncode == 3, waits.stdout + waits.stderr
        assert effects(repo) == ['delete_note {"name": "old"}']  # not sent again
        [card] = cli.json("inbox", "--json")
        text = json.dumps(card)
        assert "unknown_outcome" in text and "notes__delete_note" in text

        approved = cli("approve", card["ref"], "--reason", "checked: the note is gone")
        assert approved.returncode == 0, approved.stdout + approved.stderr
        done = cli("resume", run_id, "--no-live", "--no-prompt")
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines_starting(done.stdout, "finished") == ["finished succeeded"]
    assert effects(repo) == ['delete_note {"name": "old"}']  # never run twice
    ended = [
        e for e in cli.events(run_id) if e["kind"] == "tool_call_ended" and e["call_id"] == "d"
    ]
    assert len(ended) == 1 and "was asked and let the step go on" in ended[0]["content"]


def test_an_idempotent_call_cut_short_by_a_crash_runs_again_once(cli: Cli) -> None:
    with OpenAIServer(model=OPENAI_MODEL) as server:
        flag = tool("s", "notes__set_flag", value="on")
        repo, run_id = killed_mid_call(cli, server, flag)
        assert effects(repo) == ['set_flag {"value": "on"}']
        done = cli("resume", run_id, "--no-live", "--no-prompt")
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines_starting(done.stdout, "finished") == ["finished succeeded"]
    assert effects(repo) == ['set_flag {"value": "on"}'] * 2  # once more, and only once
    events = cli.events(run_id)
    started = [e for e in events if e["kind"] == "tool_call_started" and e["call_id"] == "s"]
    ended = [e for e in events if e["kind"] == "tool_call_ended" and e["call_id"] == "s"]
    assert len(started) == 1 and len(ended) == 1 and ended[0]["ok"]


def test_an_approved_call_cut_short_by_a_crash_is_not_run_again_though_idempotent(
    cli: Cli,
) -> None:
    with OpenAIServer(model=OPENAI_MODEL) as server:
        flag = tool("s", "notes__set_flag", value="on")
        repo, run_id = killed_mid_call(cli, server, flag, tier="confirm")
        assert effects(repo) == ['set_flag {"value": "on"}']
        done = cli("resume", run_id, "--no-live", "--no-prompt")
    assert done.returncode == 0, done.stdout + done.stderr
    # a human approved one call; whether it ran is unknown: it is not run again, and
    # the model is told to look
    assert effects(repo) == ['set_flag {"value": "on"}']
    ended = [
        e for e in cli.events(run_id) if e["kind"] == "tool_call_ended" and e["call_id"] == "s"
    ]
    assert len(ended) == 1 and "whether it took effect is unknown" in ended[0]["content"]
