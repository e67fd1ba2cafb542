"""An agent step's attempt has a wall-clock limit, like a command's.

``AgentSettings.step_timeout`` (``trestle agent --step-timeout``; half an hour by
default), or the step's own ``timeout``, bounds one attempt: past it the attempt is
cancelled (the processes its tools started are killed with it) and ends as
``timeout``, which the step's retry rules treat like a command that timed out. The
model here blocks for good, or a tool's command does; the store, engine, runtime and
processes are real.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from agent_helpers import GOAL, agent_settings, call, drive, of_kind, recorded, sample_workspace
from trestle.agent.runtime import AgentPerformer
from trestle.core.events import (
    ModelCalled,
    RunInterrupted,
    StepAttemptEnded,
    StepFailed,
    StepRetryScheduled,
    ToolCallEnded,
    ToolCallStarted,
)
from trestle.core.plan import Backoff
from trestle.core.records.agent import AgentSettings, bootstrap_plan
from trestle.core.records.agent_defaults import DEFAULT_STEP_TIMEOUT
from trestle.core.report import build_report
from trestle.engines.local import LocalEngine
from trestle.engines.stop import Stop
from trestle.lifecycle.runs import create_run, load_state
from trestle.models import (
    FunctionModel,
    Message,
    ModelResponse,
    ScriptedModel,
    ToolSchema,
    Usage,
)
from trestle.store import SqliteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "runs.db")
    yield opened
    opened.close()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return sample_workspace(tmp_path)


async def never_answers(messages: Sequence[Message], tools: Sequence[ToolSchema]) -> ModelResponse:
    await asyncio.Event().wait()  # a provider that accepted the request and went quiet
    raise AssertionError("unreachable")


def test_a_step_whose_model_never_answers_times_out_and_is_retried_then_dead_lettered(
    store: SqliteStore, workspace: Path
) -> None:
    # the step's own timeout wins over the settings' (which would be an hour here)
    plan = bootstrap_plan(GOAL)
    understand = plan.steps[0].model_copy(update={"timeout": 0.3, "backoff": Backoff(initial=0)})
    plan = plan.model_copy(update={"steps": (understand, *plan.steps[1:])})
    settings = agent_settings(step_timeout=3600.0)
    run_id = create_run(store, plan, workspace=workspace, agent=settings)

    drive(store, run_id, FunctionModel(never_answers, name="scripted"))

    events = recorded(store, run_id)
    ended = [e for e in of_kind(events, StepAttemptEnded) if e.step == "understand"]
    why = "timed out after 0.3s; the agent step's attempt was cancelled"
    assert [(e.action.status, e.action.error) for e in ended] == [("timeout", why)] * 2
    [retry] = of_kind(events, StepRetryScheduled)
    assert retry.reason == f"attempt 1 failed: {why}"
    [failed] = of_kind(events, StepFailed)
    assert (failed.step, failed.dead_lettered) == ("understand", True)
    assert failed.reason == f"failed 2 of 2 attempts; last: {why}"
    state = load_state(store, run_id)
    assert state.finished == "needs_human"
    assert f"'understand' failed after 2 attempts: {why}." in " ".join(build_report(state).to_check)


def timed_out_twice_in_run_tests(
    store: SqliteStore, workspace: Path, test_command: str, *, usage: Usage | None = None
) -> str:
    """An agent run whose ``understand`` step calls ``run_tests`` in each of its two
    attempts, ``test_command`` outliving the attempts' 1 s limit; driven to its end."""
    settings = agent_settings(test_command=test_command, step_timeout=1.0)
    run_id = create_run(store, bootstrap_plan(GOAL), workspace=workspace, agent=settings)
    model = ScriptedModel(
        [call("run_tests", call_id=f"t{n}", usage=usage or Usage()) for n in (1, 2)]
    )
    drive(store, run_id, model)
    return run_id


@pytest.mark.usefixtures("unconfined")
def test_a_timed_out_attempt_kills_the_commands_its_tools_started(
    store: SqliteStore, workspace: Path
) -> None:
    run_id = timed_out_twice_in_run_tests(store, workspace, "echo $$ >> pids; exec sleep 60")

    ended = of_kind(recorded(store, run_id), StepAttemptEnded)
    assert [e.action.status for e in ended] == ["timeout", "timeout"]
    assert ended[0].action.error == "timed out after 1s; the agent step's attempt was cancelled"
    pids = [int(line) for line in (workspace / "pids").read_text().split()]
    assert len(pids) == 2
    for pid in pids:  # each `sleep 60` went with the attempt that started it
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.usefixtures("unconfined")
def test_an_attempt_timed_out_in_a_read_records_the_answer_that_asked_for_it(
    store: SqliteStore, workspace: Path
) -> None:
    # a read's answer and start wait for the next commit; a timeout must not lose them,
    # or the answer's tokens would never count against the budget
    used = Usage(input_tokens=300, output_tokens=20)
    run_id = timed_out_twice_in_run_tests(store, workspace, "exec sleep 60", usage=used)

    events = recorded(store, run_id)
    called = of_kind(events, ModelCalled)
    assert [(c.step, c.round, c.turn) for c in called] == [
        ("understand", 1, 1),
        ("understand", 2, 1),
    ]
    assert [s.call_id for s in of_kind(events, ToolCallStarted)] == ["t1", "t2"]
    assert not of_kind(events, ToolCallEnded)  # neither read ended
    for answer in called:  # each before the end of the attempt it belongs to
        ended = next(e for e in events[events.index(answer) :] if isinstance(e, StepAttemptEnded))
        assert ended.action.status == "timeout"
    assert load_state(store, run_id).tally.spent["tokens"] == 2 * used.total_tokens


@pytest.mark.usefixtures("unconfined")
def test_an_attempt_stopped_during_a_read_still_records_the_answer_that_asked_for_it(
    store: SqliteStore, workspace: Path
) -> None:
    # a stop cancels the attempt from outside: it may not wait for a commit, so what it
    # held joins the engine's last one, before the interruption it records
    settings = agent_settings(test_command="touch started; exec sleep 60")
    plan = bootstrap_plan(GOAL)
    run_id = create_run(store, plan, workspace=workspace, agent=settings)
    used = Usage(input_tokens=300, output_tokens=20)
    model = ScriptedModel([call("run_tests", call_id="t1", usage=used)])

    async def stopped_during_the_read() -> None:
        stop = Stop()
        engine = LocalEngine(store, performer=AgentPerformer(model))

        async def stop_once_it_runs() -> None:
            while not (workspace / "started").exists():
                await asyncio.sleep(0.01)
            stop.request("a stop during the read")

        stopper = asyncio.create_task(stop_once_it_runs())
        try:
            async for _ in engine.drive(run_id, stop=stop):
                pass
        finally:
            stopper.cancel()
            engine.close()

    asyncio.run(stopped_during_the_read())

    events = recorded(store, run_id)
    [answer] = of_kind(events, ModelCalled)
    [interrupted] = of_kind(events, RunInterrupted)
    assert (answer.step, answer.turn) == ("understand", 1)
    assert events.index(answer) < events.index(interrupted)
    assert interrupted.stopped == ("understand",)
    assert load_state(store, run_id).tally.spent["tokens"] == used.total_tokens


def test_agent_settings_bound_every_step_by_default() -> None:
    assert AgentSettings(model="scripted").step_timeout == DEFAULT_STEP_TIMEOUT == 1800.0
    with pytest.raises(ValueError, match="step_timeout"):
        AgentSettings(model="scripted", step_timeout=float("inf"))
