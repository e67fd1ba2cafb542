"""A ``python:`` step's callable, as the driver calls it in its own process.

Past its timeout a sync callable runs on in its thread (Python cannot stop a thread):
the step's next attempt in that process waits for it to return, and is never called
beside it (``trestle.execution.outliving``). Whatever it returns or raises is the
attempt's outcome, never the driver's crash: a ``TimeoutError`` it raises itself is its
failure, not the step's timeout; a value whose ``==`` raises or answers an array
(numpy's), or that cannot be printed, is its output; an error's text is capped as a
command's output is."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import yaml

from agent_helpers import of_kind, recorded
from trestle.core.events import StepAttemptEnded
from trestle.core.state import RunState
from trestle.engines.local import LocalEngine
from trestle.execution.outliving import Call
from trestle.formats.planfile import load_plan
from trestle.lifecycle.runs import create_run
from trestle.store import SqliteStore

# each call logs its attempt as it begins and ends; attempt 1 (only) takes `first` s
STEPS = """\
import time

def work(ctx):
    with open(ctx.workspace / 'calls.log', 'a') as log:
        log.write(f'begin {ctx.attempt}\\n')
    time.sleep(FIRST if ctx.attempt == 1 else LATER)
    with open(ctx.workspace / 'calls.log', 'a') as log:
        log.write(f'end {ctx.attempt}\\n')

def net(ctx):
    raise TimeoutError('the socket timed out')

class Array:  # as numpy's: == answers elementwise, whose truth is ambiguous
    def __eq__(self, other):
        raise ValueError('the truth value of an array is ambiguous')
    def __str__(self):
        return '[1 2 3]'

class Mute(Exception):
    def __str__(self):
        raise RuntimeError('no text')

def array(ctx):
    return Array()

def mute(ctx):
    return Mute()

def silent(ctx):
    raise Mute()

def huge(ctx):
    raise ValueError('x' * 5_000_000)

def nothing(ctx):
    return None

def zero(ctx):
    return 0

def false(ctx):
    return False
"""


def run_step(tmp_path: Path, step: dict[str, Any], *, first: float = 0, later: float = 0) -> Any:
    """Run a one-step plan in this process; its state and its attempts' ends."""
    code = STEPS.replace("FIRST", str(first)).replace("LATER", str(later))
    module = f"steps_{secrets.token_hex(4)}"  # this process may have imported another
    (tmp_path / f"{module}.py").write_text(code)
    step = {
        **step,
        "python": step["python"].replace("steps", module),
        "verify": [
            {"python": c["python"].replace("steps", module)} for c in step.get("verify", [])
        ],
    }
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"goal": "outlive the timeout", "steps": [step]}))
    store = SqliteStore(tmp_path / "runs.db")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    run_id = create_run(store, load_plan(plan), workspace=workspace, plan_path=plan)
    engine = LocalEngine(store)
    try:
        state: RunState = asyncio.run(engine.run(run_id))
    finally:
        engine.close()
    ends = of_kind(recorded(store, run_id), StepAttemptEnded)
    calls = workspace / "calls.log"
    return state, ends, calls.read_text().split("\n")[:-1] if calls.exists() else []


def timed_work(*, timeout: float, retries: int) -> dict[str, Any]:
    """The logging step, with a timeout, retried soon after it."""
    return {
        "id": "work",
        "python": "steps:work",
        "timeout": timeout,
        "retries": retries,
        "backoff": {"initial": 0.05},
    }


def test_the_next_attempt_waits_for_the_call_its_timeout_left_running(tmp_path: Path) -> None:
    """Attempt 1 sleeps 1.5 s past its 1 s timeout; attempt 2 begins after it ended
    (before, ``begin 2`` came before ``end 1``)."""
    state, ends, calls = run_step(tmp_path, timed_work(timeout=1, retries=1), first=1.5)
    assert calls == ["begin 1", "end 1", "begin 2", "end 2"]
    assert state.steps["work"].status == "succeeded"
    first, second = ends
    assert first.action.status == "timeout"
    said = first.action.error or ""
    assert "the step's next attempt in that process waits for it to return" in said
    assert second.action.status == "ok"


def test_an_attempt_whose_earlier_call_outlasts_its_timeout_fails_without_calling(
    tmp_path: Path,
) -> None:
    step = timed_work(timeout=0.3, retries=2)
    # attempt 1 sleeps far past the run's end (about 1 s): it never returns within it
    state, ends, calls = run_step(tmp_path, step, first=5, later=5)
    assert calls == ["begin 1"]  # called once: attempts 2 and 3 waited for it
    assert state.steps["work"].status == "failed"
    assert [end.action.status for end in ends] == ["timeout"] * 3
    for end in ends[1:]:
        assert end.action.error == (
            "timed out after 0.3s; an earlier attempt's call of it still runs, and it is "
            "not called again beside it"
        )


def test_a_timeout_error_the_callable_raises_is_its_failure(tmp_path: Path) -> None:
    """Without a timeout the driver crashed formatting one; with one, the step was said
    to have timed out at once."""
    for timeout in (None, 5):
        step = {"id": "net", "python": "steps:net", "retries": 0, "timeout": timeout}
        if timeout is None:
            del step["timeout"]
        where = tmp_path / f"timeout-{timeout}"
        where.mkdir()
        state, (end,), _ = run_step(where, step)
        assert state.steps["net"].status == "failed"
        assert end.action.status == "error"
        assert end.action.error == "TimeoutError: the socket timed out"


def test_a_call_withdrawn_before_it_began_never_begins_and_holds_nothing_up() -> None:
    called: list[str] = []
    key = ("run", "step", "steps:work")
    call = Call(called.append, key)
    call.ended()  # its attempt gave up before a thread took it
    assert call("late") is None
    assert called == []
    following = Call(called.append, key)
    assert not following.follows_one_running()  # nothing to wait for
    asyncio.run(asyncio.wait_for(following.after_earlier(), 1))


def test_what_a_callable_returns_or_raises_is_its_outcome_not_the_drivers_crash(
    tmp_path: Path,
) -> None:
    """The first three crashed the driver with a traceback before; the huge error was
    recorded whole, and a report then wrapped it for seconds."""
    outcomes = {}
    for name in ("array", "mute", "silent", "huge"):
        where = tmp_path / name
        where.mkdir()
        step = {"id": name, "python": f"steps:{name}", "retries": 0}
        state, (end,), _ = run_step(where, step)
        outcomes[name] = (state.steps[name].status, end.action)
    assert outcomes["array"][0] == "succeeded" and outcomes["array"][1].output == "[1 2 3]"
    assert outcomes["mute"][0] == "succeeded"
    assert outcomes["mute"][1].output == "<a Mute that cannot be printed: RuntimeError>"
    assert outcomes["silent"][0] == "failed"
    assert outcomes["silent"][1].error == "Mute: <a Mute that cannot be printed: RuntimeError>"
    status, huge = outcomes["huge"]
    assert status == "failed" and huge.error is not None
    assert huge.error.startswith("ValueError: xxx") and len(huge.error) < 10_000


def test_a_python_check_fails_only_by_raising_or_returning_false(tmp_path: Path) -> None:
    """As a ``python:`` step: ``None`` (an assert-style check that did not raise) and
    ``0`` pass."""
    passing = [{"python": "steps:nothing"}, {"python": "steps:zero"}]
    for name, checks, passed in (
        ("kept", passing, True),
        ("refused", [*passing, {"python": "steps:false"}], False),
    ):
        where = tmp_path / name
        where.mkdir()
        step = {"id": "c", "python": "steps:nothing", "retries": 0, "verify": checks}
        state, (end,), _ = run_step(where, step)
        assert [check.passed for check in end.checks] == [True, True, *([] if passed else [False])]
        assert state.steps["c"].status == ("succeeded" if passed else "failed")
