"""An agent's tool calls have an effect ledger: a key, a recorded start, a probe.

A real agent run through the real ``openai`` client against the loopback server, on
a real SQLite store, driven by ``agent_driver.py`` in a subprocess. The driver alone
is killed with SIGKILL while a side-effecting tool call is in flight (its command's
processes live on), then a fresh driver resumes the run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from test_agent_loopback import (
    BUGGY,
    DRIVER_DEADLINE,
    FIXED,
    assert_fixed,
    call,
    logged,
    new_run,
    queue_plan,
    queue_understand,
    recorded,
    server,
    store,
    store_path,
    tool_message,
    workspace,
)
from trestle.core.events import (
    StepProbed,
    StepProbeStarted,
    ToolCallEnded,
    ToolCallStarted,
    idempotency_key,
    tool_call_key,
)
from trestle.execution.processes import KEY_VAR, leftovers
from trestle.lifecycle.runs import load_state
from trestle.store import SqliteStore
from trestle.testing import OpenAIServer
from trestle.tools.base import ToolContext
from trestle.tools.edits import EditFile, EditFileArgs

DRIVER = Path(__file__).with_name("agent_driver.py")
NOTED = "# add() must return the sum\n" + BUGGY

__all__ = ["server", "store", "store_path", "workspace"]  # fixtures used here


def start_driver(
    server: OpenAIServer, store_path: Path, run_id: str, log: Path, **env: str
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out, log.with_suffix(".err").open("wb") as err:
        return subprocess.Popen(
            [sys.executable, str(DRIVER), server.base_url, str(store_path), run_id],
            stdout=out,
            stderr=err,
            env={**os.environ, **env},
        )


def wait_until(done: Callable[[], bool], driver: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + DRIVER_DEADLINE
    while not done():
        if driver.poll() is not None:
            raise AssertionError(f"the driver exited early:\n{logged(log)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the driver never got there:\n{logged(log)}")
        time.sleep(0.02)


def finish(server: OpenAIServer, driver: subprocess.Popen[bytes], log: Path) -> None:
    try:
        driver.wait(timeout=DRIVER_DEADLINE)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 0, logged(log)
    assert log.read_text().splitlines() == ["succeeded"], logged(log)


def probed(store: SqliteStore, run_id: str, step: str) -> bool:
    """Whether a driver has begun to probe ``step`` (committed before the probe runs)."""
    return any(p.step == step for p in recorded(store, run_id, StepProbeStarted))


def ended(store: SqliteStore, run_id: str, call_id: str) -> list[ToolCallEnded]:
    return [e for e in recorded(store, run_id, ToolCallEnded) if e.call_id == call_id]


@pytest.mark.usefixtures("unconfined")
def test_a_command_in_flight_when_the_driver_dies_is_reaped_probed_and_not_repeated(
    server: OpenAIServer, workspace: Path, store: SqliteStore, store_path: Path, tmp_path: Path
) -> None:
    run_id = new_run(store, workspace)
    queue_understand(server)
    queue_plan(server)
    # the shell dies with the driver; the subshell doing the work lives on until the
    # test lets it end, once the next driver probes the step (a timed sleep ended
    # before a loaded machine's driver got there; at most 120 s, whatever happens).
    # The subshell writes the key: written by the shell before it, the driver was
    # once killed, and the shell with it, before the subshell was made
    release = tmp_path / "release"
    command = (
        '(echo "$TRESTLE_IDEMPOTENCY_KEY" > key.txt; '
        f"n=0; while [ ! -e {release} ] && [ $n -lt 1200 ]; do sleep 0.1; n=$((n+1)); done; "
        "echo a >> ledger.txt) & wait"
    )
    server.queue_tool_calls(call("call_cmd", "run_command", command=command))
    server.queue_tool_calls(
        call("call_edit", "edit_file", path="calc.py", old="a - b", new="a + b")
    )
    server.queue_tool_calls(call("call_finish", "finish", summary="add adds", claims=["ok"]))

    first_log = tmp_path / "first.log"
    first = start_driver(server, store_path, run_id, first_log)
    key_file = workspace / "key.txt"
    try:
        wait_until(lambda: key_file.exists() and key_file.read_text() != "", first, first_log)
    finally:
        os.kill(first.pid, signal.SIGKILL)  # the driver only, not its children
        first.wait()
    assert not (workspace / "ledger.txt").exists()  # still sleeping: the effect is in flight

    # the command saw its call's key, the one recorded in the call's start
    (start,) = [s for s in recorded(store, run_id, ToolCallStarted) if s.call_id == "call_cmd"]
    assert start.key.startswith(f"{run_id}/fix/") and start.key.endswith("/call_cmd")
    assert key_file.read_text().strip() == start.key
    assert leftovers(start.key, None)  # the work goes on without its driver

    second_log = tmp_path / "second.log"
    second = start_driver(server, store_path, run_id, second_log)
    wait_until(lambda: probed(store, run_id, "fix"), second, second_log)
    assert not (workspace / "ledger.txt").exists()  # the probe finds it in flight
    release.touch()
    finish(server, second, second_log)

    # the leftover work was waited for before the run went on, and not done again
    assert (workspace / "ledger.txt").read_text() == "a\n"
    assert not leftovers(start.key, None)
    # (the resume's probe of the step itself found the call's processes by their key,
    # which is under the step's, and waited for them before the step's checks ran)
    (step_probe,) = [p for p in recorded(store, run_id, StepProbed) if p.step == "fix"]
    assert step_probe.leftovers == "finished"
    (end,) = ended(store, run_id, "call_cmd")
    assert end.probe is not None
    assert (end.probe.leftovers, end.probe.done) == ("none", False)
    assert not end.ok
    told = next(
        tool_message(r, "call_cmd")
        for r in server.requests
        if any(m.get("tool_call_id") == "call_cmd" for m in r.body["messages"])
    )
    assert "unknown" in told and "no way to check" in told and "before doing it again" in told
    starts = [s for s in recorded(store, run_id, ToolCallStarted) if s.tool == "run_command"]
    assert len(starts) == 1
    assert_fixed(load_state(store, run_id), workspace)


def test_a_write_cut_short_by_a_crash_is_probed_and_found_done(
    server: OpenAIServer, workspace: Path, store: SqliteStore, store_path: Path, tmp_path: Path
) -> None:
    run_id = new_run(store, workspace)
    queue_understand(server)
    queue_plan(server)
    # a write the step's verification does not pass on, so the step is not found done
    server.queue_tool_calls(call("call_write", "write_file", path="calc.py", content=NOTED))
    server.queue_tool_calls(
        call("call_edit", "edit_file", path="calc.py", old="a - b", new="a + b")
    )
    server.queue_tool_calls(call("call_finish", "finish", summary="add adds", claims=["ok"]))

    first_log = tmp_path / "first.log"
    first = start_driver(server, store_path, run_id, first_log, DIE_AFTER_WRITE="1")
    first.wait(timeout=DRIVER_DEADLINE)
    assert first.returncode == -signal.SIGKILL, logged(first_log)
    assert (workspace / "calc.py").read_text() == NOTED
    assert ended(store, run_id, "call_write") == []  # the crash came before its end

    second_log = tmp_path / "second.log"
    finish(server, start_driver(server, store_path, run_id, second_log), second_log)

    (end,) = ended(store, run_id, "call_write")
    assert end.ok and end.probe is not None
    assert (end.probe.leftovers, end.probe.done) == ("none", True)
    assert "calc.py holds exactly the content" in end.probe.evidence
    assert "took effect" in end.content
    # the model was told it is done, then edited the written file
    edited = (workspace / "calc.py").read_text()
    assert edited == NOTED.replace(BUGGY, FIXED)
    assert load_state(store, run_id).finished == "succeeded"
    starts = [s for s in recorded(store, run_id, ToolCallStarted) if s.tool == "write_file"]
    assert len(starts) == 1


def test_a_steps_leftovers_include_its_tool_calls_and_no_other_attempts() -> None:
    run = f"leftovers-{uuid.uuid4().hex}"
    mine = tool_call_key(run, "fix", 1, 1, 2, "call_1")
    other = tool_call_key(run, "fix", 10, 1, 2, "call_1")
    procs = [
        subprocess.Popen(["sleep", "30"], env={**os.environ, KEY_VAR: key}) for key in (mine, other)
    ]
    try:
        assert leftovers(idempotency_key(run, "fix", 1), None) == {procs[0].pid}
        assert leftovers(mine, None) == {procs[0].pid}
        assert leftovers(idempotency_key(run, "fix", 10), None) == {procs[1].pid}
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_edit_file_probe_says_done_only_when_the_file_cannot_be_otherwise(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 2\n")
    ctx = ToolContext(workspace=tmp_path, run_id="r", step_id="s")

    def probe(old: str, new: str) -> str | None:
        return asyncio.run(EditFile().probe(ctx, EditFileArgs(path="a.py", old=old, new=new)))

    assert probe("x = 1", "x = 2") is not None
    assert probe("x = 2", "x = 3") is None  # not done
    assert probe("x = ", "x = 2") is None  # new holds old: the file cannot tell
