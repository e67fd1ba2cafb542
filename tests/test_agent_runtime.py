"""The agent runtime end to end, with a scripted model and everything else real.

Each test records an agent run in a fresh SQLite file, on a workspace in ``tmp_path``
whose pytest test really fails, and drives it with :class:`LocalEngine` and
:class:`AgentPerformer`. The model is a :class:`ScriptedModel` (or a
:class:`FunctionModel` where the answer depends on the conversation), so the tests can
say exactly what the model sees and check what the runtime records, changes and asks.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Awaitable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from agent_helpers import (
    BUGGY_CALC,
    CALC_TEST,
    FIX_STEP,
    FIXED_CALC,
    GOAL,
    TEST_COMMAND,
    agent_settings,
    call,
    drive,
    drive_async,
    findings_json,
    fix_replies,
    of_kind,
    plan_json,
    plan_step,
    recorded,
    sample_workspace,
    start_run,
    state_of,
)
from trestle.agent.context import check_pins, is_pinned, is_summary
from trestle.agent.session import SAVE_EVERY, Recorded
from trestle.core.budget import Budget, Limit
from trestle.core.events import (
    AnyEvent,
    BudgetExhausted,
    ContextCompressed,
    ConversationSaved,
    FindingsRecorded,
    ModelCalled,
    ModelCallHeld,
    PhaseEntered,
    PlanExtended,
    PlanProposed,
    ReminderInjected,
    RequirementAdded,
    RunFinished,
    StepAttemptEnded,
    StepFailed,
    StepStarted,
    StoredEvent,
    ToolCallEnded,
    ToolCallStarted,
)
from trestle.core.records.agent import ContextBudget, Pins, ReminderPolicy, bootstrap_plan
from trestle.core.records.monitors import MonitorSettings
from trestle.core.report import build_report
from trestle.lifecycle.approvals import inbox, submit_decision
from trestle.lifecycle.runs import create_run, request_requirement
from trestle.models import FunctionModel, Message, ModelRequest, ScriptedModel, ToolSchema, Usage
from trestle.models.scripted import Reply
from trestle.presentation.descriptions import log_detail
from trestle.store.base import Appended
from trestle.store.sqlite import SqliteStore


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def store(db: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(db)
    yield opened
    opened.close()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return sample_workspace(tmp_path)


def task_of(request: ModelRequest) -> str:
    """The task message of a request: the first user message after the frame."""
    return next(m.content for m in request.messages if m.role == "user")


def tool_messages(request: ModelRequest) -> list[str]:
    return [m.content for m in request.messages if m.role == "tool"]


def bad_plan() -> str:
    """A plan with two faults: a need that names no step, and a step without checks."""
    return plan_json(
        plan_step("fix", "add() returns the sum", files=["calc.py"], needs=["biuld"]),
        plan_step("tidy", "tidy calc.py", files=["calc.py"], verify=[]),
    )


# --- 1. the happy path ---------------------------------------------------------------


def test_happy_path_goes_through_every_phase_and_fixes_the_file(
    store: SqliteStore, workspace: Path
) -> None:
    run_id = start_run(store, workspace)
    model = ScriptedModel(fix_replies())

    drive(store, run_id, model)

    events = recorded(store, run_id)
    phases = [e.phase for e in of_kind(events, PhaseEntered)]
    assert phases == ["UNDERSTAND", "PLAN", "EXECUTE", "VALIDATE", "DONE"]
    (found,) = of_kind(events, FindingsRecorded)
    assert found.step == "understand"
    assert found.findings.summary == "add() subtracts instead of adding"
    (extended,) = of_kind(events, PlanExtended)
    assert extended.by == "plan"
    assert [s.id for s in extended.steps] == ["review", "fix", "validate"]
    assert (workspace / "calc.py").read_text() == FIXED_CALC
    state = state_of(store, run_id)
    assert state.finished == "succeeded"
    assert state.findings == found.findings
    assert model.remaining == 0
    assert len(of_kind(events, ModelCalled)) == 5  # one record per model turn
    read = of_kind(events, ToolCallEnded)[0]
    assert (read.tool, read.ok) == ("read_file", True)
    assert "a - b" in read.content
    report = build_report(state)
    assert (report.status, report.exit_code) == ("succeeded", 0)
    assert [s.id for s in report.steps] == ["understand", "plan", "review", "fix", "validate"]
    assert {s.category for s in report.steps} == {"done"}


# --- 2. phases hold back tools -------------------------------------------------------


def test_a_write_in_understand_is_refused_and_changes_nothing(
    store: SqliteStore, workspace: Path
) -> None:
    # plans need a human's approval here, so the run stops before anything may write
    run_id = start_run(store, workspace, settings=agent_settings(plan_approval="confirm"))
    model = ScriptedModel(
        [
            call("write_file", path="calc.py", content=FIXED_CALC),
            findings_json(),
            plan_json(FIX_STEP),
        ]
    )

    drive(store, run_id, model)

    assert (workspace / "calc.py").read_text() == BUGGY_CALC
    events = recorded(store, run_id)
    (ended,) = of_kind(events, ToolCallEnded)
    assert (ended.step, ended.tool, ended.ok) == ("understand", "write_file", False)
    assert "not allowed in UNDERSTAND" in ended.content
    assert not of_kind(events, ToolCallStarted)  # refused before it could start
    offered = {t.name for t in model.requests[0].tools}
    assert "read_file" in offered
    assert offered.isdisjoint({"write_file", "edit_file", "run_command", "finish"})
    assert "not allowed in UNDERSTAND" in tool_messages(model.requests[1])[0]
    assert state_of(store, run_id).steps["understand"].status == "succeeded"


# --- 3. plan feedback ----------------------------------------------------------------


def test_a_refused_plan_gets_feedback_and_the_next_one_is_accepted(
    store: SqliteStore, workspace: Path
) -> None:
    run_id = start_run(store, workspace)
    replies = fix_replies()
    replies.insert(2, bad_plan())
    model = ScriptedModel(replies)

    drive(store, run_id, model)

    proposed = of_kind(recorded(store, run_id), PlanProposed)
    assert [(p.step, p.attempt, p.accepted) for p in proposed] == [
        ("plan", 1, False),
        ("plan", 2, True),
    ]
    problems = "\n".join(proposed[0].problems)
    assert "'biuld'" in problems
    assert "tidy" in problems and "check" in problems
    feedback = model.requests[3].messages[-1].content
    assert feedback.startswith("Plan attempt 1 of 3 was refused")
    assert "'biuld'" in feedback
    assert state_of(store, run_id).finished == "succeeded"
    assert (workspace / "calc.py").read_text() == FIXED_CALC


def test_plans_refused_max_plan_attempts_times_fail_the_step_for_a_human(
    store: SqliteStore, workspace: Path
) -> None:
    run_id = start_run(store, workspace, settings=agent_settings(max_plan_attempts=2))
    # the planning step has one retry: two attempts of two plans each
    model = ScriptedModel([findings_json(), *[bad_plan()] * 4])

    drive(store, run_id, model)

    events = recorded(store, run_id)
    proposed = of_kind(events, PlanProposed)
    assert [(p.attempt, p.accepted) for p in proposed] == [(1, False), (2, False)] * 2
    attempts = [e for e in of_kind(events, StepAttemptEnded) if e.step == "plan"]
    assert [a.ok for a in attempts] == [False, False]
    error = attempts[-1].action.error or ""
    assert error.startswith("the model's plan was refused 2 times (limit 2)")
    assert "'biuld'" in error
    (failed,) = of_kind(events, StepFailed)
    assert failed.step == "plan" and failed.dead_lettered
    assert "refused 2 times" in failed.reason
    state = state_of(store, run_id)
    assert state.finished == "needs_human"
    assert "review" not in state.steps  # no plan joined the run
    assert model.remaining == 0


# --- 4. plan approval ----------------------------------------------------------------


def test_a_plan_waits_for_approval_and_then_runs_without_asking_the_model_again(
    store: SqliteStore, workspace: Path
) -> None:
    run_id = start_run(store, workspace, settings=agent_settings(plan_approval="confirm"))
    model = ScriptedModel(fix_replies())

    drive(store, run_id, model)

    state = state_of(store, run_id)
    assert state.finished == "needs_human"
    assert state.steps["review"].status == "awaiting_approval"
    assert state.steps["fix"].status == "pending"
    (card,) = inbox(store, run_id=run_id)
    assert (card.subject, card.step) == ("action", "review")
    assert len(model.requests) == 3  # understand's two turns and the plan

    submit_decision(store, card.ref, "approve")
    second = drive(store, run_id, model)

    assert state_of(store, run_id).finished == "succeeded"
    assert (workspace / "calc.py").read_text() == FIXED_CALC
    assert len(model.requests) == 5
    assert all(task_of(r).startswith("Current step 'fix'") for r in model.requests[3:])
    assert {e.step for e in of_kind(second, ModelCalled)} == {"fix"}


# --- 5. a failed verification, then a retry that knows why --------------------------


def test_a_failed_check_starts_a_new_round_told_why_the_last_one_failed(
    store: SqliteStore, workspace: Path
) -> None:
    run_id = start_run(store, workspace)
    model = ScriptedModel(
        [
            *fix_replies()[:3],
            call("edit_file", path="calc.py", old="a - b", new="a * b"),
            call("finish", summary="add() fixed", claims=["test_add passes"]),
            call("edit_file", path="calc.py", old="a * b", new="a + b"),
            call("finish", summary="add() adds", claims=["test_add passes"]),
        ]
    )

    drive(store, run_id, model)

    events = recorded(store, run_id)
    attempts = [e for e in of_kind(events, StepAttemptEnded) if e.step == "fix"]
    assert [a.ok for a in attempts] == [False, True]
    assert not attempts[0].checks[0].passed
    retry = task_of(model.requests[5])
    assert retry.startswith("Current step 'fix'")
    assert "Attempt 1 failed: check failed" in retry
    assert "Attempt" not in task_of(model.requests[3])
    rounds = {(e.round, e.turn) for e in of_kind(events, ModelCalled) if e.step == "fix"}
    assert rounds == {(1, 1), (1, 2), (2, 1), (2, 2)}
    state = state_of(store, run_id)
    assert state.steps["fix"].round == 2
    assert state.finished == "succeeded"
    assert (workspace / "calc.py").read_text() == FIXED_CALC


# --- 6. a tool call that needs a human -----------------------------------------------


def git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Tester",
        "GIT_AUTHOR_EMAIL": "tester@example.com",
        "GIT_COMMITTER_NAME": "Tester",
        "GIT_COMMITTER_EMAIL": "tester@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def published_workspace(tmp_path: Path) -> tuple[Path, Path]:
    """A git repository with passing tests and an empty bare remote ``origin``."""
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", "-b", "main", str(remote), cwd=tmp_path)
    repo = sample_workspace(tmp_path, "repo")
    (repo / "calc.py").write_text(FIXED_CALC)
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", "calc.py", "test_calc.py", cwd=repo)
    git("commit", "-q", "-m", "calc", cwd=repo)
    git("remote", "add", "origin", str(remote), cwd=repo)
    return repo, remote


PUSHED = 'test "$(git rev-parse HEAD)" = "$(git ls-remote origin refs/heads/main | cut -f1)"'
PUSH_PLAN = plan_json(plan_step("publish", "push main to origin", verify=[{"command": PUSHED}]))


@pytest.mark.usefixtures("unconfined")
def test_an_approved_push_runs_once_after_the_run_replays_up_to_it(
    tmp_path: Path, store: SqliteStore
) -> None:
    repo, remote = published_workspace(tmp_path)
    run_id = start_run(store, repo, goal="publish main")
    model = ScriptedModel(
        [
            findings_json("main is not on origin yet", files=["calc.py"]),
            PUSH_PLAN,
            call("run_command", command="git push origin main"),
            call("finish", summary="pushed main", claims=["origin has main"]),
        ]
    )

    drive(store, run_id, model)

    state = state_of(store, run_id)
    assert state.finished == "needs_human"
    assert state.steps["publish"].status == "awaiting_approval"
    (card,) = inbox(store, run_id=run_id)
    assert (card.subject, card.step) == ("tool", "publish")
    assert git("ls-remote", str(remote), cwd=tmp_path) == ""  # nothing pushed yet
    assert len(model.requests) == 3

    submit_decision(store, card.ref, "approve")
    second = drive(store, run_id, model)

    assert state_of(store, run_id).finished == "succeeded"
    head = git("rev-parse", "HEAD", cwd=repo)
    assert git("rev-parse", "main", cwd=remote) == head
    assert len(model.requests) == 4  # the push's turn was replayed, not asked again
    assert [(e.step, e.turn) for e in of_kind(second, ModelCalled)] == [("publish", 2)]
    events = recorded(store, run_id)
    pushes = [e for e in of_kind(events, ToolCallStarted) if e.tool == "run_command"]
    assert len(pushes) == 1
    (ended,) = [e for e in of_kind(events, ToolCallEnded) if e.tool == "run_command"]
    assert ended.ok


def test_a_rejected_push_is_not_run_and_the_model_reads_why(
    tmp_path: Path, store: SqliteStore
) -> None:
    repo, remote = published_workspace(tmp_path)
    run_id = start_run(store, repo, goal="publish main", settings=agent_settings(step_retries=0))
    model = ScriptedModel(
        [
            findings_json("main is not on origin yet", files=["calc.py"]),
            PUSH_PLAN,
            call("run_command", command="git push origin main"),
            call("finish", summary="the push was refused", claims=[]),
        ]
    )
    drive(store, run_id, model)
    (card,) = inbox(store, run_id=run_id)

    submit_decision(store, card.ref, "reject", reason="no pushing on Fridays")
    drive(store, run_id, model)

    told = tool_messages(model.requests[3])
    assert len(told) == 1
    assert "rejected this call: no pushing on Fridays" in told[0]
    assert git("ls-remote", str(remote), cwd=tmp_path) == ""
    events = recorded(store, run_id)
    assert not [e for e in of_kind(events, ToolCallStarted) if e.tool == "run_command"]
    state = state_of(store, run_id)
    assert state.steps["publish"].status == "failed"  # its check saw no push
    assert state.finished == "needs_human"


# --- 7. a crash mid-step, and the resume ---------------------------------------------


def crash_in_model_call(store: SqliteStore, run_id: str, script: list[Reply]) -> list[Message]:
    """Drive the run with ``script``'s answers; when they run out, the next model call
    hangs and the drive is cancelled there, as a process dying in it would leave the
    run. Returns the conversation that call was sent."""
    stuck = asyncio.Event()
    about_to_send: list[Message] = []

    async def hang() -> Reply:
        stuck.set()
        await asyncio.Event().wait()  # never set: the process "dies" here
        raise AssertionError("unreachable")

    def first_life(
        messages: Sequence[Message], tools: Sequence[ToolSchema]
    ) -> Reply | Awaitable[Reply]:
        if script:
            return script.pop(0)
        about_to_send.extend(messages)
        return hang()

    async def crash() -> None:
        # named as the model that resumes: a request to another model is not replayed
        model = FunctionModel(first_life, name="scripted")
        driving = asyncio.create_task(drive_async(store, run_id, model))
        await stuck.wait()
        driving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await driving

    asyncio.run(crash())
    return about_to_send


def test_a_resumed_step_replays_its_turns_and_never_reruns_a_finished_tool_call(
    db: Path, store: SqliteStore, workspace: Path
) -> None:
    run_id = start_run(store, workspace)
    script: list[Reply] = [
        *fix_replies()[:3],
        call("run_command", command="echo ran >> log.txt"),
    ]
    crash_in_model_call(store, run_id, script)
    assert state_of(store, run_id).steps["fix"].status == "running"  # as a crash leaves it

    resumed = ScriptedModel(fix_replies()[3:])
    another_process = SqliteStore(db)
    drive(another_process, run_id, resumed)
    another_process.close()

    assert (workspace / "log.txt").read_text() == "ran\n"
    assert (workspace / "calc.py").read_text() == FIXED_CALC
    assert state_of(store, run_id).finished == "succeeded"
    # the new model is asked from turn 2 on: turn 1 (and its tool call) were replayed
    assert len(resumed.requests) == 2
    (observation,) = tool_messages(resumed.requests[0])
    assert "echo ran >> log.txt" in observation
    events = recorded(store, run_id)
    runs = [e for e in of_kind(events, ToolCallStarted) if e.tool == "run_command"]
    assert len(runs) == 1
    fix_turns = [e.turn for e in of_kind(events, ModelCalled) if e.step == "fix"]
    assert fix_turns == [1, 2, 3]
    assert [e.attempt for e in of_kind(events, StepStarted) if e.step == "fix"] == [1, 2]


def test_a_long_round_resumes_from_its_latest_save_and_sends_what_it_would_have(
    db: Path, store: SqliteStore, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round of many turns is saved every SAVE_EVERY turns: a resume reads the
    round's opening and what came after its latest save, and the model is sent the
    very conversation the crashed process was about to send."""
    reads = 2 * SAVE_EVERY + 2  # the crash comes two turns after the second save
    # a reminder every 11 turns: one was due 9 turns before the crash, so a resume
    # that forgot when would remind at once
    reminders = ReminderPolicy(every_turns=11)
    run_id = create_run(
        store,
        bootstrap_plan(GOAL),
        workspace=workspace,
        agent=agent_settings(max_turns=reads + 10, reminders=reminders),
        # the same file again and again: the monitors' corrections are told once each
        monitors=MonitorSettings(actions={"warning": "inject", "critical": "inject"}),
    )
    script: list[Reply] = [
        *fix_replies()[:3],
        *[call("read_file", path="calc.py", call_id=f"r{i}") for i in range(reads)],
    ]
    about_to_send = crash_in_model_call(store, run_id, script)
    events = recorded(store, run_id)
    saves = [e for e in of_kind(events, ConversationSaved) if e.step == "fix"]
    assert [e.iteration for e in saves] == [SAVE_EVERY, 2 * SAVE_EVERY]
    assert log_detail(saves[0]).startswith(f"after turn {SAVE_EVERY}, ")  # trestle log
    assert of_kind(events, ReminderInjected)  # corrections and reminders were told

    read: list[int] = []
    of = Recorded.of

    def reading(events: Sequence[AnyEvent]) -> Recorded:
        read.append(len(events))
        return of(events)

    monkeypatch.setattr(Recorded, "of", staticmethod(reading))
    resumed = ScriptedModel(fix_replies()[3:])
    another_process = SqliteStore(db)
    from_store: list[int] = []  # the seqs of every event the resume read
    events_of = another_process.events

    def events_read(*args: Any, **kwargs: Any) -> list[StoredEvent]:
        found = events_of(*args, **kwargs)
        from_store.extend(item.seq for item in found)
        return found

    monkeypatch.setattr(another_process, "events", events_read)
    drive(another_process, run_id, resumed)
    another_process.close()
    # the state's load read the tail; the monitors and the session took it from there
    assert from_store and len(from_store) == len(set(from_store))

    assert state_of(store, run_id).finished == "succeeded"
    transcript = state_of(store, run_id).transcript("fix", 1)
    assert len(transcript) > 3 * reads and max(read) < 2 * SAVE_EVERY * 3  # the tail only
    assert list(resumed.requests[0].messages) == about_to_send  # the same conversation
    fix_turns = [e.turn for e in of_kind(recorded(store, run_id), ModelCalled) if e.step == "fix"]
    assert fix_turns == list(range(1, reads + 3))  # no recorded turn asked again


# --- 8. failed acceptance, and a re-plan ---------------------------------------------

TWO_BUGS = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a + b\n"
TWO_TESTS = (
    "from calc import add, mul\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
    "def test_mul():\n    assert mul(2, 3) == 6\n"
)
FIX_ADD = plan_step(
    "fix",
    "add() returns the sum",
    files=["calc.py"],
    verify=[{"command": TEST_COMMAND + " -k add"}],
)
MUL_BODY = "def mul(a, b):\n    return a + b"
MUL_FIXED = "def mul(a, b):\n    return a * b"


def two_bug_workspace(tmp_path: Path) -> Path:
    workspace = sample_workspace(tmp_path)
    (workspace / "calc.py").write_text(TWO_BUGS)
    (workspace / "test_calc.py").write_text(TWO_TESTS)
    return workspace


def round_one() -> list[Reply]:
    """Understand and plan the add() fix only, then make it: acceptance still fails."""
    return [
        findings_json(),
        plan_json(FIX_ADD, summary="fix add"),
        call("edit_file", path="calc.py", old="a - b", new="a + b"),
        call("finish", summary="add() adds", claims=["test_add passes"]),
    ]


def test_failed_acceptance_plans_a_second_round_that_finishes_the_goal(
    tmp_path: Path, store: SqliteStore
) -> None:
    workspace = two_bug_workspace(tmp_path)
    run_id = start_run(store, workspace, goal="make the calc tests pass")
    fix_mul = plan_step("fix", "mul() returns the product", files=["calc.py"])
    model = ScriptedModel(
        [
            *round_one(),
            plan_json(fix_mul, summary="fix mul"),
            # ambiguous (add() has that line too): an observation, not a crash
            call("edit_file", path="calc.py", old="b):\n    return a + b\n", new="b):\n"),
            call("edit_file", path="calc.py", old=MUL_BODY, new=MUL_FIXED),
            call("finish", summary="mul() multiplies", claims=["test_mul passes"]),
        ]
    )

    drive(store, run_id, model)

    events = recorded(store, run_id)
    extensions = [(e.by, [s.id for s in e.steps]) for e in of_kind(events, PlanExtended)]
    assert extensions == [
        ("plan", ["review", "fix", "validate"]),
        ("validate", ["plan-2"]),
        ("plan-2", ["review-2", "r2.fix", "validate-2"]),
    ]
    assert "The acceptance checks failed after round 1" in task_of(model.requests[4])
    assert "test_mul" in task_of(model.requests[4])
    phases = [e.phase for e in of_kind(events, PhaseEntered)]
    assert phases == [
        "UNDERSTAND",
        "PLAN",
        "EXECUTE",
        "VALIDATE",
        "PLAN",
        "EXECUTE",
        "VALIDATE",
        "DONE",
    ]
    state = state_of(store, run_id)
    assert state.finished == "succeeded"
    assert state.step_spec("validate-2").needs == ("review-2", "r2.fix")
    assert (workspace / "calc.py").read_text() == FIXED_CALC + "\n\n" + MUL_FIXED + "\n"


def test_failed_acceptance_with_no_replans_left_goes_to_a_human(
    tmp_path: Path, store: SqliteStore
) -> None:
    workspace = two_bug_workspace(tmp_path)
    settings = agent_settings(max_replans=0)
    run_id = start_run(store, workspace, goal="make the calc tests pass", settings=settings)
    model = ScriptedModel(round_one())

    drive(store, run_id, model)

    events = recorded(store, run_id)
    (failed,) = of_kind(events, StepFailed)
    assert failed.step == "validate" and failed.dead_lettered
    assert "acceptance failed after 0 re-plans" in failed.reason
    state = state_of(store, run_id)
    assert state.finished == "needs_human"
    assert "plan-2" not in state.steps
    assert state.steps["fix"].status == "succeeded"


# --- 9. goal reminders and context compression ---------------------------------------


def test_reminders_come_at_turn_one_and_every_n_turns(store: SqliteStore, workspace: Path) -> None:
    settings = agent_settings(reminders=ReminderPolicy(every_turns=2))
    run_id = start_run(store, workspace, settings=settings)
    # four different looks around (the same call four times would be a loop, which a
    # monitor would point out with a reminder of its own)
    reads = [
        call("list_files", call_id="l0"),
        call("read_file", call_id="l1", path="calc.py"),
        call("read_file", call_id="l2", path="test_calc.py"),
        call("search_text", call_id="l3", pattern="add"),
    ]
    model = ScriptedModel([*reads, *fix_replies()])

    drive(store, run_id, model)

    reminders = of_kind(recorded(store, run_id), ReminderInjected)
    seen = [(r.step, r.record.turn, r.record.reason) for r in reminders]
    assert seen == [
        ("understand", 1, "phase_boundary"),  # understand takes six turns
        ("understand", 3, "interval"),
        ("understand", 5, "interval"),
        ("plan", 1, "phase_boundary"),
        ("fix", 1, "phase_boundary"),  # two turns: no interval reminder
    ]
    # the model read each one just before the turn it was recorded for
    assert model.requests[2].messages[-1].content == reminders[1].record.text
    assert "Goal: make add() return the sum" in reminders[1].record.text
    assert state_of(store, run_id).finished == "succeeded"


def test_compression_keeps_the_goal_and_scope_pinned(store: SqliteStore, workspace: Path) -> None:
    lines = "".join(f"note {i}: the parser keeps its state in a dict\n" for i in range(150))
    (workspace / "notes.txt").write_text(lines)  # about 1,800 tokens a read
    budget = ContextBudget(limit=6000, keep_turns=1)
    settings = agent_settings(scope=("calc.py",), context=budget)
    run_id = start_run(store, workspace, settings=settings)
    reads = [call("read_file", path="notes.txt", call_id=f"r{i}") for i in range(4)]
    model = ScriptedModel([*reads, *fix_replies()])

    drive(store, run_id, model)

    events = recorded(store, run_id)
    compressions = of_kind(events, ContextCompressed)
    assert compressions and {c.step for c in compressions} == {"understand"}
    first = compressions[0]
    assert first.record.tokens_after < first.record.tokens_before
    assert first.record.summarised > 0
    request = model.requests[first.turn - 1]  # the request sent right after it
    pins = Pins(goal="make add() return the sum", scope=("calc.py",))
    assert check_pins(request.messages, pins) == []
    assert sum(1 for m in request.messages if is_pinned(m)) == 1
    assert any(is_summary(m) for m in request.messages)
    assert len(tool_messages(request)) < first.turn - 1  # older results were summarised
    assert state_of(store, run_id).finished == "succeeded"
    assert (workspace / "calc.py").read_text() == FIXED_CALC


# --- 10. the budget --------------------------------------------------------------------


def test_a_token_budget_stops_the_run_within_one_call_of_its_limit(
    store: SqliteStore, workspace: Path
) -> None:
    per_call = Usage(input_tokens=900, output_tokens=100)
    settings = agent_settings(max_tokens=100)  # a prompt here is estimated well below 900
    run_id = start_run(store, workspace, settings=settings, budget=Budget(tokens=Limit(hard=2500)))
    reads = [call("read_file", path="calc.py", call_id=f"r{i}", usage=per_call) for i in range(5)]
    model = ScriptedModel(reads)

    drive(store, run_id, model)

    state = state_of(store, run_id)
    assert state.finished == "stopped"
    spent = state.tally.spent["tokens"]
    # each call reserved its worst case first and spent less: the limit holds
    assert spent <= 2500
    assert len(model.requests) == spent / per_call.total_tokens
    events = recorded(store, run_id)
    (held,) = of_kind(events, ModelCallHeld)
    assert spent + held.tokens > 2500  # the call not sent would have passed the limit
    (exhausted,) = of_kind(events, BudgetExhausted)
    assert exhausted.dimension == "tokens"
    (attempt,) = of_kind(events, StepAttemptEnded)
    assert attempt.action.status == "deferred"
    assert "budget" in (attempt.action.error or "")
    assert state.steps["understand"].status != "succeeded"
    assert build_report(state).status == "stopped"
    assert of_kind(events, RunFinished)[-1].status == "stopped"


# --- 11. a requirement added mid-run ---------------------------------------------------


def step_of(messages: Sequence[Message]) -> str:
    """Which step a conversation belongs to, from its task message."""
    task = next(m.content for m in messages if m.role == "user")
    if task.startswith("Current step '"):
        return task.removeprefix("Current step '").split("'", 1)[0]
    if "The user added a requirement" in task:
        return "revise"
    return "plan" if "Phase PLAN" in task else "understand"


def test_a_requirement_told_mid_run_adds_a_revision_that_validate_waits_for(
    db: Path, store: SqliteStore, workspace: Path
) -> None:
    run_id = start_run(store, workspace, parallelism=1)
    notes = plan_step(
        "notes", "write NOTES.md", new_files=["NOTES.md"], verify=[{"file_exists": "NOTES.md"}]
    )
    scripts: dict[str, list[Reply]] = {
        "understand": [findings_json()],
        "plan": [plan_json(FIX_STEP)],
        "fix": fix_replies()[3:],
        "revise": [plan_json(notes, summary="add the notes")],
        "t1.notes": [
            call("write_file", path="NOTES.md", content="add() adds\n"),
            call("finish", summary="wrote NOTES.md"),
        ],
    }

    def reply(messages: Sequence[Message], tools: Sequence[ToolSchema]) -> Reply:
        step = step_of(messages)
        if step == "fix" and len(scripts["fix"]) == 2:
            # the user speaks up while the plan is being carried out (`trestle tell`)
            cli = SqliteStore(db)
            request_requirement(cli, run_id, "also write NOTES.md", by="tester")
            cli.close()
        return scripts[step].pop(0)

    drive(store, run_id, FunctionModel(reply, name="scripted"))

    events = recorded(store, run_id)
    (added,) = of_kind(events, RequirementAdded)
    assert (added.text, added.by) == ("also write NOTES.md", "tester")
    extensions = of_kind(events, PlanExtended)
    assert [(e.by, [s.id for s in e.steps], e.needs_added) for e in extensions] == [
        ("plan", ["review", "fix", "validate"], {}),
        ("tell", ["revise-1"], {"validate": ("revise-1",)}),
        ("revise-1", ["review-t1", "t1.notes"], {"validate": ("t1.notes",)}),
    ]
    state = state_of(store, run_id)
    assert state.step_spec("validate").needs == ("review", "fix", "revise-1", "t1.notes")
    started = [e.step for e in of_kind(events, StepStarted)]
    assert started.index("validate") > started.index("t1.notes")
    assert state.requirements == ["also write NOTES.md"]
    assert (workspace / "NOTES.md").read_text() == "add() adds\n"
    assert state.finished == "succeeded"
    assert all(not script for script in scripts.values())


# --- found along the way -------------------------------------------------------------


def test_an_execute_step_may_not_write_files_its_plan_step_did_not_name(
    store: SqliteStore, workspace: Path
) -> None:
    run_id = start_run(store, workspace)
    weakened = "def test_add():\n    assert True\n"
    replies = fix_replies()
    replies.insert(3, call("write_file", path="test_calc.py", content=weakened, call_id="w"))
    model = ScriptedModel(replies)

    drive(store, run_id, model)

    assert (workspace / "test_calc.py").read_text() == CALC_TEST
    writes = [e for e in of_kind(recorded(store, run_id), ToolCallEnded) if e.tool == "write_file"]
    assert [w.ok for w in writes] == [False]


class BatchingStore(SqliteStore):
    """Keeps the kinds of each batch it commits."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[list[str]] = []

    def append(self, run_id: str, batch: Appended, *, token: int) -> None:
        super().append(run_id, batch, token=token)
        self.batches.append([e.kind for e in batch.events])


def test_a_reading_turn_is_one_commit_and_a_write_starts_only_once_durable(
    db: Path, workspace: Path
) -> None:
    store = BatchingStore(db)
    try:
        run_id = start_run(store, workspace)
        drive(store, run_id, ScriptedModel(fix_replies()))
        assert state_of(store, run_id).finished == "succeeded"
        asked = [b for b in store.batches if "model_called" in b]
        read, findings, plan, edit, finish = asked
        # the read's answer, start and end ride with the next call's reservation
        reading = ["model_called", "tool_call_started", "tool_call_ended"]
        assert read == [*reading, "model_call_reserved"]
        # a write's start is durable, with the answer that asked for it, before it runs;
        # its end is committed once it has
        assert edit == ["model_called", "tool_call_started"]
        assert store.batches[store.batches.index(edit) + 1] == ["tool_call_ended"]
        # an answer without tools is durable on its own; the last turn's held events
        # are recorded before the attempt's end
        assert findings == plan == ["model_called"]
        assert finish == reading
        # every call's reservation was committed before it was made
        assert sum(b.count("model_call_reserved") for b in store.batches) == len(asked)
    finally:
        store.close()
