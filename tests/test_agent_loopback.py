"""The agent over HTTP: whole agent runs through the real ``openai`` client.

Each test drives an agent run (understand, plan, review, execute, validate) with
``model_from_spec("openai:test-model")`` against the loopback chat completions
server, on a real SQLite store and a workspace whose pytest test fails until the
agent fixes ``add``. It then checks three records against each other: the events the
run recorded, the files in the workspace, and the requests the server received.
The last test kills a driving process mid-run and resumes the run in a fresh one.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from trestle.agent.prompts import EMPTY_REPLY
from trestle.agent.runtime import AgentPerformer
from trestle.core.budget import Budget, Limit
from trestle.core.events import (
    AnyEvent,
    BudgetExhausted,
    FindingsRecorded,
    ModelCalled,
    ModelCallHeld,
    ModelCallReserved,
    PlanProposed,
    RunResumed,
    StepAttemptEnded,
    StepProbed,
    StepStarted,
    ToolCallEnded,
    ToolCallStarted,
)
from trestle.core.records.agent import AgentSettings, bootstrap_plan
from trestle.core.report import build_report
from trestle.core.state import RunState
from trestle.engines.local import LocalEngine
from trestle.lifecycle.runs import create_run, load_state
from trestle.models import RetryPolicy, ToolCall, model_from_spec
from trestle.models.openai import OpenAIModel
from trestle.store import SqliteStore
from trestle.testing import OpenAIServer, RecordedRequest, RecordingSleep

E = TypeVar("E", bound=AnyEvent)

MODEL = "test-model"
GOAL = "make add() return the sum"
# Plugins of the surrounding environment are not the project's, and loading them
# costs seconds per run.
TEST_COMMAND = f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q -p no:cacheprovider"
DRIVER = Path(__file__).with_name("agent_driver.py")
# Only a guard against a hung driver; no test asserts how long anything takes.
DRIVER_DEADLINE = 120.0

BUGGY = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
FINDINGS = {
    "summary": "add() subtracts instead of adding",
    "how_to_test": "run pytest",
    "relevant_files": [{"path": "calc.py"}],
}
PLAN = {
    "summary": "fix add",
    "steps": [
        {
            "id": "fix",
            "objective": "add returns the sum",
            "files": ["calc.py"],
            "verify": [{"command": TEST_COMMAND}],
        }
    ],
}
# (prompt, completion) tokens the server reports, distinct per turn so each
# ModelCalled can be matched to the reply it recorded.
USAGE = {
    "read": (101, 11),
    "findings": (202, 22),
    "plan": (303, 33),
    "edit": (404, 44),
    "finish": (505, 55),
}


def call(call_id: str, name: str, **arguments: Any) -> ToolCall:
    return ToolCall(id=call_id, name=name, arguments=json.dumps(arguments))


# --- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(model=MODEL) as running:
        yield running


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "calc.py").write_text(BUGGY)
    (root / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    )
    return root


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "runs.db"


@pytest.fixture
def store(store_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(store_path)
    yield opened
    opened.close()


def new_run(store: SqliteStore, workspace: Path, *, test_command: str = TEST_COMMAND) -> str:
    settings = AgentSettings(
        model=f"openai:{MODEL}", test_command=test_command, plan_approval="auto"
    )
    return create_run(store, bootstrap_plan(GOAL), workspace=workspace, agent=settings)


def drive(store: SqliteStore, run_id: str, server: OpenAIServer, **options: Any) -> RunState:
    """Drive the run in this process; ``options`` go to the OpenAI model's constructor."""
    model = model_from_spec(f"openai:{MODEL}", base_url=server.base_url, api_key="x", **options)
    assert isinstance(model, OpenAIModel)

    async def go() -> RunState:
        engine = LocalEngine(store, performer=AgentPerformer(model))
        try:
            return await engine.run(run_id)
        finally:
            engine.close()
            await model.aclose()

    return asyncio.run(go())


def recorded(store: SqliteStore, run_id: str, kind: type[E]) -> list[E]:
    return [item.event for item in store.events(run_id) if isinstance(item.event, kind)]


def turns(store: SqliteStore, run_id: str) -> list[tuple[str, int, int]]:
    """(step, round, turn) of every recorded model call, in order."""
    return [(c.step, c.round, c.turn) for c in recorded(store, run_id, ModelCalled)]


def tool_message(request: RecordedRequest, call_id: str) -> str:
    """The content of the tool result for ``call_id`` that ``request`` carried."""
    for message in request.body["messages"]:
        if message["role"] == "tool" and message["tool_call_id"] == call_id:
            return str(message["content"])
    raise AssertionError(f"no tool message for {call_id!r} in the request")


def offered(request: RecordedRequest) -> list[str]:
    return [tool["function"]["name"] for tool in request.body.get("tools", [])]


def queue_understand(server: OpenAIServer) -> None:
    server.queue_tool_calls(call("call_read", "read_file", path="calc.py"), usage=USAGE["read"])
    server.queue_text(json.dumps(FINDINGS), usage=USAGE["findings"])


def queue_plan(server: OpenAIServer) -> None:
    server.queue_text(json.dumps(PLAN), usage=USAGE["plan"])


def queue_fix(server: OpenAIServer) -> None:
    server.queue_tool_calls(
        call("call_edit", "edit_file", path="calc.py", old="a - b", new="a + b"),
        usage=USAGE["edit"],
    )
    server.queue_tool_calls(
        call("call_finish", "finish", summary="add adds", claims=["test_add passes"]),
        usage=USAGE["finish"],
    )


def assert_fixed(state: RunState, workspace: Path) -> None:
    assert state.finished == "succeeded", build_report(state).model_dump_json(indent=1)
    assert (workspace / "calc.py").read_text() == FIXED


HAPPY_TURNS = [
    ("understand", 1, 1),
    ("understand", 1, 2),
    ("plan", 1, 1),
    ("fix", 1, 1),
    ("fix", 1, 2),
]


# --- a whole run -------------------------------------------------------------------------


def test_a_full_run_over_http(server: OpenAIServer, workspace: Path, store: SqliteStore) -> None:
    run_id = new_run(store, workspace)
    queue_understand(server)
    queue_plan(server)
    queue_fix(server)

    state = drive(store, run_id, server)

    assert_fixed(state, workspace)
    assert server.pending == 0 and len(server.requests) == len(HAPPY_TURNS)
    assert turns(store, run_id) == HAPPY_TURNS

    called = recorded(store, run_id, ModelCalled)
    assert {c.model for c in called} == {f"openai:{MODEL}"}
    assert {c.response.model for c in called} == {MODEL}
    assert [(c.response.usage.input_tokens, c.response.usage.output_tokens) for c in called] == [
        USAGE["read"],
        USAGE["findings"],
        USAGE["plan"],
        USAGE["edit"],
        USAGE["finish"],
    ]
    assert not any(c.response.usage.estimated for c in called)
    assert state.tally.spent["tokens"] == sum(a + b for a, b in USAGE.values())
    assert len({c.request_hash for c in called}) == len(called)
    # findings and plan came back as text, not as tool calls
    assert json.loads(called[1].response.text) == FINDINGS and called[1].response.tool_calls == ()
    assert json.loads(called[2].response.text) == PLAN and called[2].response.tool_calls == ()

    ended = recorded(store, run_id, ToolCallEnded)
    assert [(e.step, e.tool, e.ok) for e in ended] == [
        ("understand", "read_file", True),
        ("fix", "edit_file", True),
        ("fix", "finish", True),
    ]
    [findings] = recorded(store, run_id, FindingsRecorded)
    assert findings.findings.summary == FINDINGS["summary"]
    assert state.findings is not None and state.findings.summary == FINDINGS["summary"]
    assert [(p.step, p.accepted) for p in recorded(store, run_id, PlanProposed)] == [("plan", True)]

    # the wire: the key, the model, each phase's tools, and tool results going back
    for request in server.requests:
        assert request.headers["authorization"] == "Bearer x"
        assert request.body["model"] == MODEL
    understand, findings_turn, planning, edit, finish = server.requests
    assert "read_file" in offered(understand) and "run_tests" in offered(understand)
    for reading_only in (understand, planning):
        assert not {"edit_file", "write_file", "run_command", "finish"} & set(offered(reading_only))
    assert {"edit_file", "run_command", "finish"} <= set(offered(edit))
    assert "return a - b" in tool_message(findings_turn, "call_read")
    assert FINDINGS["summary"] in json.dumps(planning.body["messages"])
    assert tool_message(finish, "call_edit")  # the edit's result reached the model


# --- the budget: each call reserves its worst case before it is sent ---------------------


def test_a_call_whose_worst_case_would_pass_a_hard_token_limit_never_reaches_the_server(
    server: OpenAIServer, workspace: Path, store: SqliteStore
) -> None:
    cap, hard = 40_000, 60_000
    settings = AgentSettings(
        model=f"openai:{MODEL}", test_command=TEST_COMMAND, plan_approval="auto", max_tokens=cap
    )
    plan = bootstrap_plan(GOAL, budget=Budget(tokens=Limit(hard=hard)))
    run_id = create_run(store, plan, workspace=workspace, agent=settings)
    # the first answer spends nearly its cap; spent alone (39,101) is still below the
    # limit, but the next call's worst case (its prompt and another 40,000) is not
    server.queue_tool_calls(call("call_read", "read_file", path="calc.py"), usage=(101, 39_000))
    server.queue_text(json.dumps(FINDINGS), usage=USAGE["findings"])

    state = drive(store, run_id, server)

    assert len(server.requests) == 1
    assert server.requests[0].body["max_tokens"] == cap  # the worst case is real
    assert state.finished == "stopped"
    assert state.tally.spent["tokens"] == 39_101 <= hard
    [reserved] = recorded(store, run_id, ModelCallReserved)
    assert reserved.tokens > cap
    [held] = recorded(store, run_id, ModelCallHeld)
    assert held.step == "understand" and 39_101 + held.tokens > hard
    [exhausted] = recorded(store, run_id, BudgetExhausted)
    assert exhausted.dimension == "tokens"


# --- bad model output: the run goes on ---------------------------------------------------


def test_malformed_tool_json_is_reported_back_and_the_run_continues(
    server: OpenAIServer, workspace: Path, store: SqliteStore
) -> None:
    run_id = new_run(store, workspace)
    broken = '{"path": "calc.py"'
    server.queue_tool_calls(ToolCall(id="call_bad", name="read_file", arguments=broken))
    queue_understand(server)
    queue_plan(server)
    queue_fix(server)

    state = drive(store, run_id, server)

    assert_fixed(state, workspace)
    retry = server.requests[1]
    # the malformed call goes back verbatim, followed by the error naming the problem
    assistant = [m for m in retry.body["messages"] if m["role"] == "assistant"][-1]
    assert assistant["tool_calls"][0]["function"]["arguments"] == broken
    error = tool_message(retry, "call_bad")
    assert "arguments for read_file are not valid JSON" in error
    assert f"(character {len(broken)})" in error  # where: just past the end
    first = recorded(store, run_id, ToolCallEnded)[0]
    assert (first.call_id, first.ok) == ("call_bad", False)
    assert first.error is not None and "not valid JSON" in first.error
    # it never passed the gate, so it never started
    assert "call_bad" not in {s.call_id for s in recorded(store, run_id, ToolCallStarted)}
    assert turns(store, run_id)[:3] == [
        ("understand", 1, 1),
        ("understand", 1, 2),
        ("understand", 1, 3),
    ]


def run_with_an_unknown_tool(
    server: OpenAIServer, workspace: Path, store: SqliteStore
) -> tuple[str, list[str]]:
    """A whole run whose first reply calls a tool that does not exist; returns the
    error the model was sent and the tools it had been offered."""
    run_id = new_run(store, workspace)
    server.queue_tool_calls(call("call_rm", "delete_everything", path="."))
    queue_understand(server)
    queue_plan(server)
    queue_fix(server)

    state = drive(store, run_id, server)

    assert_fixed(state, workspace)
    first, retry = server.requests[:2]
    [refused] = [e for e in recorded(store, run_id, ToolCallEnded) if e.call_id == "call_rm"]
    assert not refused.ok and refused.tool == "delete_everything"
    return tool_message(retry, "call_rm"), offered(first)


def test_an_unknown_tool_is_refused_with_the_list_of_tools(
    server: OpenAIServer, workspace: Path, store: SqliteStore
) -> None:
    error, tools = run_with_an_unknown_tool(server, workspace, store)

    assert error.startswith("error: unknown tool 'delete_everything'")
    listed = error.split("the tools you can call are: ")[1].split(", ")
    assert set(tools) <= set(listed)
    assert {"calc.py", "test_calc.py"} <= {p.name for p in workspace.iterdir()}
    assert len(server.requests) == len(HAPPY_TURNS) + 1


def test_the_unknown_tool_error_lists_exactly_the_tools_offered(
    server: OpenAIServer, workspace: Path, store: SqliteStore
) -> None:
    error, tools = run_with_an_unknown_tool(server, workspace, store)

    assert error.split("the tools you can call are: ")[1].split(", ") == tools


def test_an_empty_response_gets_a_nudge_and_the_run_continues(
    server: OpenAIServer, workspace: Path, store: SqliteStore
) -> None:
    run_id = new_run(store, workspace)
    server.queue_empty(usage=(90, 0))
    queue_understand(server)
    queue_plan(server)
    queue_fix(server)

    state = drive(store, run_id, server)

    assert_fixed(state, workspace)
    empty = recorded(store, run_id, ModelCalled)[0]
    assert empty.response.is_empty and empty.response.usage.input_tokens == 90
    first, retry = server.requests[:2]
    sent = retry.body["messages"]
    assert sent[: len(first.body["messages"])] == first.body["messages"]
    # the empty turn leaves no assistant message; the nudge follows directly
    assert sent[len(first.body["messages"])] == {"role": "user", "content": EMPTY_REPLY}
    assert len(server.requests) == len(HAPPY_TURNS) + 1


# --- provider failures ---------------------------------------------------------------------


def test_a_429_with_retry_after_is_waited_out_within_the_call(
    server: OpenAIServer, workspace: Path, store: SqliteStore
) -> None:
    run_id = new_run(store, workspace)
    server.queue_error(429, "rate limited", headers={"Retry-After": "3"})
    queue_understand(server)
    queue_plan(server)
    queue_fix(server)
    sleep = RecordingSleep()

    state = drive(store, run_id, server, sleep=sleep)

    assert_fixed(state, workspace)
    assert sleep.calls == [3.0]  # the server's Retry-After, not a computed backoff
    assert len(server.requests) == len(HAPPY_TURNS) + 1
    assert server.requests[0].body == server.requests[1].body  # the same request again
    assert turns(store, run_id) == HAPPY_TURNS  # one recorded call for the retried turn
    attempts = recorded(store, run_id, StepAttemptEnded)
    assert all(a.ok for a in attempts)
    assert [a.attempt for a in attempts if a.step == "understand"] == [1]


def test_500s_beyond_the_retry_budget_fail_the_attempt_and_the_step_retries(
    server: OpenAIServer, workspace: Path, store: SqliteStore
) -> None:
    run_id = new_run(store, workspace)
    queue_understand(server)
    queue_plan(server)
    server.queue_error(500, "upstream overloaded")
    server.queue_error(500, "upstream overloaded")
    queue_fix(server)
    sleep = RecordingSleep()
    policy = RetryPolicy(max_attempts=2, initial_delay=0.25, jitter=0.0)

    state = drive(store, run_id, server, sleep=sleep, retry=policy)

    assert_fixed(state, workspace)
    assert sleep.calls == [0.25]  # one backoff between the two sends of the first attempt
    fix = [a for a in recorded(store, run_id, StepAttemptEnded) if a.step == "fix"]
    assert [(a.attempt, a.ok) for a in fix] == [(1, False), (2, True)]
    error = fix[0].action.error or ""
    assert fix[0].action.status == "error"
    assert error.startswith("model call failed: openai at ")
    for part in (server.base_url, "HTTP 500", "upstream overloaded", "2 attempts"):
        assert part in error
    # the retry is a new round, told why the last attempt failed
    assert turns(store, run_id)[3:] == [("fix", 2, 1), ("fix", 2, 2)]
    retried = server.requests[5]
    assert retried.body["messages"] != server.requests[3].body["messages"]
    task = json.dumps(retried.body["messages"])
    assert "Attempt 1 failed: model call failed" in task and "upstream overloaded" in task
    assert len(server.requests) == len(HAPPY_TURNS) + 2
    report = build_report(state)
    [fix_report] = [s for s in report.steps if s.id == "fix"]
    assert report.status == "succeeded"
    assert (fix_report.category, fix_report.attempts, fix_report.failed_attempts) == (
        "done",
        2,
        1,
    )


# --- kill and resume ----------------------------------------------------------------------


def start_driver(
    server: OpenAIServer, store_path: Path, run_id: str, log: Path
) -> subprocess.Popen[bytes]:
    """Start ``agent_driver.py`` in its own process group; stdout to ``log``, stderr
    beside it."""
    with log.open("wb") as out, log.with_suffix(".err").open("wb") as err:
        return subprocess.Popen(
            [sys.executable, str(DRIVER), server.base_url, str(store_path), run_id],
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group: the kill takes its children too
        )


def drive_to_end(
    server: OpenAIServer, store_path: Path, run_id: str, log: Path
) -> subprocess.Popen[bytes]:
    """Run ``agent_driver.py`` until it exits (killed if it outlives the deadline)."""
    driver = start_driver(server, store_path, run_id, log)
    try:
        driver.wait(timeout=DRIVER_DEADLINE)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    return driver


def logged(log: Path) -> str:
    return f"{log.read_text()}\n--- stderr ---\n{log.with_suffix('.err').read_text()}"


def wait_until(done: Callable[[], bool], driver: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + DRIVER_DEADLINE
    while not done():
        if driver.poll() is not None:
            raise AssertionError(f"the driver exited early:\n{logged(log)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the driver never got there:\n{logged(log)}")
        time.sleep(0.02)


def test_a_killed_run_resumes_without_repeating_recorded_calls(
    server: OpenAIServer, workspace: Path, store: SqliteStore, store_path: Path, tmp_path: Path
) -> None:
    run_id = new_run(store, workspace)
    queue_understand(server)
    queue_plan(server)
    note = call("call_note", "run_command", command="echo noted >> ledger.txt")
    server.queue_tool_calls(note)
    # held open until the server stops: the driver is killed while it waits for this
    server.queue_text("never read", delay=DRIVER_DEADLINE)
    queue_fix(server)
    sent_before_kill = 5  # understand 2, plan 1, fix 1 answered + the one left hanging

    first_log = tmp_path / "first.log"
    first = start_driver(server, store_path, run_id, first_log)
    try:
        wait_until(lambda: len(server.requests) >= sent_before_kill, first, first_log)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()

    # every answered turn was durable before the next request went out
    before = turns(store, run_id)
    assert before == HAPPY_TURNS[:4]
    assert (workspace / "ledger.txt").read_text() == "noted\n"
    hanging = server.requests[sent_before_kill - 1]
    assert "exit code 0" in tool_message(hanging, "call_note")

    second_log = tmp_path / "second.log"
    second = drive_to_end(server, store_path, run_id, second_log)
    assert second.returncode == 0, logged(second_log)
    assert second_log.read_text().splitlines() == ["succeeded"], logged(second_log)

    # no request for a recorded turn: the resumed run's first request is the one the
    # killed driver was waiting on, sent again exactly, and then the turn after it
    assert len(server.requests) == sent_before_kill + 2
    resumed = server.requests[sent_before_kill:]
    assert resumed[0].body == hanging.body
    assert tool_message(resumed[1], "call_edit")
    assert turns(store, run_id) == [*before, ("fix", 1, 2), ("fix", 1, 3)]

    # the recorded command was not run again
    assert (workspace / "ledger.txt").read_text() == "noted\n"
    started = [s for s in recorded(store, run_id, ToolCallStarted) if s.tool == "run_command"]
    assert [s.call_id for s in started] == ["call_note"]
    notes = [e for e in recorded(store, run_id, ToolCallEnded) if e.call_id == "call_note"]
    assert len(notes) == 1 and notes[0].ok

    # the engine saw the crash: the interrupted step was probed, then picked up again
    assert len(recorded(store, run_id, RunResumed)) == 1
    probes = [p for p in recorded(store, run_id, StepProbed) if p.step == "fix"]
    assert [(p.reason, p.passed) for p in probes] == [("unknown_outcome", False)]
    fix_starts = [s.attempt for s in recorded(store, run_id, StepStarted) if s.step == "fix"]
    assert fix_starts == [1, 2]
    assert_fixed(load_state(store, run_id), workspace)


def test_a_driver_killed_during_a_read_asks_again_and_records_the_turn_once(
    server: OpenAIServer, workspace: Path, store: SqliteStore, store_path: Path, tmp_path: Path
) -> None:
    # a read's answer, start and end wait for the next commit: killed while the read
    # runs, they are lost, and the resumed run asks for that turn again and reads again
    ran = workspace / "ran.txt"
    tests = f"echo ran >> {ran.name}; [ $(wc -l < {ran.name}) -gt 1 ] || exec sleep 120"
    run_id = new_run(store, workspace, test_command=tests)
    server.queue_tool_calls(call("call_tests", "run_tests"))
    server.queue_tool_calls(call("call_tests", "run_tests"))  # asked again after the kill
    queue_understand(server)
    queue_plan(server)
    queue_fix(server)

    first_log = tmp_path / "first.log"
    first = start_driver(server, store_path, run_id, first_log)
    try:
        wait_until(lambda: ran.exists() and ran.read_text() == "ran\n", first, first_log)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert len(server.requests) == 1
    assert turns(store, run_id) == []  # the answer was held with the read
    [reserved] = recorded(store, run_id, ModelCallReserved)  # but its call's budget was not
    assert (reserved.step, reserved.turn) == ("understand", 1)

    second_log = tmp_path / "second.log"
    second = drive_to_end(server, store_path, run_id, second_log)
    assert second.returncode == 0, logged(second_log)
    assert second_log.read_text().splitlines() == ["succeeded"], logged(second_log)

    # the same request again, the read run again (and once more by the acceptance step)
    assert server.requests[1].body == server.requests[0].body
    assert ran.read_text() == "ran\n" * 3
    assert turns(store, run_id) == [("understand", 1, n) for n in (1, 2, 3)] + HAPPY_TURNS[2:]
    started = [s.call_id for s in recorded(store, run_id, ToolCallStarted)]
    assert started == ["call_tests", "call_read", "call_edit", "call_finish"]
    assert_fixed(load_state(store, run_id), workspace)
