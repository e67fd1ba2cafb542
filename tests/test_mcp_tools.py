"""MCP servers' tools in agent runs: real server processes (tests/mcp_server.py, written
with the ``mcp`` SDK, and the published ``mcp-server-time``), started in the sandbox,
called through the gate, the ledger and the approvals like any tool."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from agent_helpers import (
    FIX_STEP,
    agent_settings,
    call,
    drive,
    findings_json,
    plan_json,
    sample_workspace,
)
from trestle.core.events import StoredEvent, ToolCallEnded
from trestle.core.policy import Policy, Rule
from trestle.core.records.mcp import McpServer, ToolHints, annotation_tier
from trestle.lifecycle.approvals import inbox, submit_decision
from trestle.lifecycle.runs import load_state
from trestle.models import ModelResponse, ScriptedModel, ToolCall
from trestle.store import SqliteStore

SERVER = str(Path(__file__).with_name("mcp_server.py"))
NOTES = McpServer(name="notes", command=(sys.executable, SERVER), timeout=5, start_timeout=20)


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "runs.db")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return sample_workspace(tmp_path)


def replies(*calls: ModelResponse) -> list[ModelResponse | str]:
    """Understand, plan one step ``fix``, then ``calls`` in it, the fix and finish."""
    return [
        findings_json(),
        plan_json(FIX_STEP, summary="fix add"),
        *calls,
        call("edit_file", path="calc.py", old="a - b", new="a + b"),
        call("finish", summary="add() adds"),
    ]


def mcp(tool: str, call_id: str = "c1", **arguments: Any) -> ModelResponse:
    """A model answer that calls MCP tool ``tool`` (its arguments may include ``name``)."""
    return ModelResponse(
        tool_calls=(ToolCall(id=call_id, name=tool, arguments=json.dumps(arguments)),),
        finish_reason="tool_calls",
    )


def effects(workspace: Path) -> list[str]:
    log = workspace / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def ended(events: list[StoredEvent], tool: str) -> list[ToolCallEnded]:
    return [e.event for e in events if isinstance(e.event, ToolCallEnded) and e.event.tool == tool]


def run(
    store: SqliteStore,
    workspace: Path,
    *calls: ModelResponse,
    server: McpServer = NOTES,
    operator: Policy | None = None,
) -> tuple[str, list[StoredEvent], ScriptedModel]:
    from trestle.core.records.agent import bootstrap_plan
    from trestle.lifecycle.runs import create_run

    settings = agent_settings(mcp=(server,))
    plan = bootstrap_plan("make add() return the sum")
    run_id = create_run(store, plan, workspace=workspace, agent=settings, operator_policy=operator)
    model = ScriptedModel(replies(*calls))
    return run_id, drive(store, run_id, model), model


# --- tiers from annotations ---------------------------------------------------------


def test_annotations_give_the_tiers() -> None:
    def tier(**hints: Any) -> tuple[str, bool, bool]:
        t = annotation_tier("s", "t", ToolHints(**hints) if hints else None)
        return t.nature, t.confirm is not None, t.idempotent

    assert tier() == ("call", True, False)  # no annotations
    assert tier(read_only=True) == ("read", False, True)
    assert tier(read_only=True, open_world=True) == ("read", True, True)
    assert tier(read_only=False) == ("call", True, False)  # destructive by default
    assert tier(destructive=False) == ("call", True, False)  # open world by default
    assert tier(destructive=False, open_world=False) == ("call", False, False)
    assert tier(destructive=True, idempotent=True, open_world=False) == ("call", True, True)


def test_read_and_additive_tools_run_without_asking(store: SqliteStore, workspace: Path) -> None:
    run_id, events, _ = run(
        store,
        workspace,
        mcp("notes__read_note", name="a", call_id="r"),
        mcp("notes__add_note", name="b", call_id="w"),
    )
    assert load_state(store, run_id).finished == "succeeded"
    assert effects(workspace) == ['read_note {"name": "a"}', 'add_note {"name": "b"}']
    (read,) = ended(events, "notes__read_note")
    assert read.ok and read.content == "note a: hello"
    (add,) = ended(events, "notes__add_note")
    assert add.ok and add.content == "added b"


def test_a_destructive_call_waits_for_approval_then_runs_once(
    store: SqliteStore, workspace: Path
) -> None:
    run_id, _, model = run(store, workspace, mcp("notes__delete_note", name="old"))
    state = load_state(store, run_id)
    assert state.finished == "needs_human"
    assert effects(workspace) == []  # nothing reached the server
    (card,) = inbox(store, run_id=run_id)
    text = json.dumps(card.model_dump(mode="json"))
    assert "notes__delete_note" in text and "server 'notes'" in text and "destructive" in text

    submit_decision(store, card.ref, "approve")
    drive(store, run_id, model)
    assert load_state(store, run_id).finished == "succeeded"
    assert effects(workspace) == ['delete_note {"name": "old"}']


def test_a_tool_without_annotations_waits_and_a_rule_per_server_or_tool_overrides(
    store: SqliteStore, workspace: Path, tmp_path: Path
) -> None:
    run_id, _, _ = run(store, workspace, mcp("notes__bare", text="hi"))
    assert load_state(store, run_id).finished == "needs_human"
    (card,) = inbox(store, run_id=run_id)
    assert "declares no annotations" in json.dumps(card.model_dump(mode="json"))

    other = sample_workspace(tmp_path, "ws2")
    allow = Policy(rules=(Rule(name="trust notes' bare", tier="log", tags=("mcp:notes/bare",)),))
    run_id, _, _ = run(store, other, mcp("notes__bare", text="hi"), operator=allow)
    assert load_state(store, run_id).finished == "succeeded"
    assert effects(other) == ['bare {"text": "hi"}']

    third = sample_workspace(tmp_path, "ws3")
    hold = Policy(rules=(Rule(name="ask for notes", tier="confirm", tags=("mcp:notes",)),))
    run_id, _, _ = run(store, third, mcp("notes__read_note", name="a"), operator=hold)
    assert load_state(store, run_id).finished == "needs_human"
    assert effects(third) == []


# --- a published server -------------------------------------------------------------


def test_the_published_time_server_is_used_as_a_user_would(
    store: SqliteStore, workspace: Path
) -> None:
    program = shutil.which("mcp-server-time", path=str(Path(sys.executable).parent))
    assert program is not None, "mcp-server-time is installed by the dev extra"
    time = McpServer(name="time", command=(program, "--local-timezone", "UTC"))
    run_id, events, _ = run(
        store,
        workspace,
        mcp(
            "time__convert_time", source_timezone="UTC", time="12:00", target_timezone="Asia/Tokyo"
        ),
        server=time,
    )
    assert load_state(store, run_id).finished == "succeeded"
    (converted,) = ended(events, "time__convert_time")
    assert converted.ok and "21:00" in converted.content
