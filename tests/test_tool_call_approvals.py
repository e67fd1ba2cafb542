"""What a human's approval of an agent's tool call lets run: that one call, and the
script it names as it read when they were asked, in the real sandbox.

Each test drives an agent run with a scripted model whose operator policy asks before
``sh deploy.sh``; ``deploy.sh`` appends a line to ``out.log``, so the log says which
bytes ran, and how often.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_helpers import (
    GOAL,
    agent_settings,
    call,
    drive,
    findings_json,
    of_kind,
    plan_json,
    plan_step,
    recorded,
    sample_workspace,
)
from trestle.core.events import ToolCallStarted
from trestle.core.policy import DEFAULT_CONFIRM_COMMANDS, Policy
from trestle.core.records.agent import bootstrap_plan
from trestle.lifecycle.approvals import inbox, submit_decision
from trestle.lifecycle.runs import create_run
from trestle.models import ScriptedModel
from trestle.store.sqlite import SqliteStore

DEPLOY = "sh deploy.sh"
GOOD, EVIL = "echo GOOD >> out.log\n", "echo EVIL >> out.log\n"
PLAN = plan_json(
    plan_step(
        "publish",
        "deploy",
        files=["deploy.sh", "out.log"],
        verify=[{"command": "grep -q GOOD out.log"}],
    )
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "runs.db")
    yield opened
    opened.close()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = sample_workspace(tmp_path)
    (ws / "deploy.sh").write_text(GOOD)
    (ws / "out.log").write_text("")
    return ws


def deploy_run(store: SqliteStore, workspace: Path) -> str:
    """An agent run whose operator asks a human before every ``sh deploy.sh``."""
    policy = Policy(confirm_commands=(*DEFAULT_CONFIRM_COMMANDS, DEPLOY))
    return create_run(
        store,
        bootstrap_plan(GOAL),
        workspace=workspace,
        agent=agent_settings(),
        operator_policy=policy,
    )


def started_deploys(store: SqliteStore, run_id: str) -> list[ToolCallStarted]:
    started = of_kind(recorded(store, run_id), ToolCallStarted)
    return [e for e in started if e.tool == "run_command"]


def test_an_approved_call_runs_once_and_the_same_call_again_is_asked_again(
    store: SqliteStore, workspace: Path
) -> None:
    run_id = deploy_run(store, workspace)
    model = ScriptedModel(
        [
            findings_json("deploy.sh deploys", files=["deploy.sh"]),
            PLAN,
            call("run_command", command=DEPLOY),
            # the script, rewritten by the agent after its one approved run, then the
            # same call: the approval of the first is not one of the second
            call("write_file", path="deploy.sh", content=EVIL),
            call("run_command", command=DEPLOY),
            call("finish", summary="deployed", claims=[]),
        ]
    )
    drive(store, run_id, model)
    (first,) = inbox(store, run_id=run_id)
    submit_decision(store, first.ref, "approve")

    drive(store, run_id, model)

    assert (workspace / "out.log").read_text() == "GOOD\n"
    (ran,) = started_deploys(store, run_id)
    assert ran.gate is not None and ran.gate.approval == first.approval
    (second,) = inbox(store, run_id=run_id)
    assert (second.subject, second.step, second.approval) == ("tool", "publish", 2)
    assert second.action_hash == first.action_hash  # the very same call, asked again

    submit_decision(store, second.ref, "approve")
    drive(store, run_id, model)

    assert (workspace / "out.log").read_text() == "GOOD\nEVIL\n"  # a human let it run
    assert [e.gate.approval for e in started_deploys(store, run_id) if e.gate] == [1, 2]
