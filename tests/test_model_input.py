"""What a model or a tool may send: each oddity ends as a message or a recorded failure.

The model's side goes through the real ``openai`` (and ``anthropic``) client against
the loopback servers, most of it in whole agent runs on a real SQLite store, and each
run is then checked the same way: it ended (never left ``running``), its state loads,
and every event it recorded reads back as it was written. The tool's side goes
through the real registry and coding tools.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from agent_helpers import agent_settings, findings_json, plan_json, plan_step, sample_workspace
from agent_helpers import call as scripted_call
from trestle.agent.runtime import AgentPerformer
from trestle.core.errors import ProviderResponseError
from trestle.core.events import (
    EVENT_ADAPTER,
    ModelCalled,
    PlanProposed,
    RunStatus,
    StepAttemptEnded,
    ToolCallEnded,
    event_json,
)
from trestle.core.state import RunState
from trestle.engines.local import LocalEngine
from trestle.lifecycle.runs import load_state
from trestle.models import FunctionModel, Message, Model, ModelResponse, ToolCall, Usage
from trestle.models.anthropic import AnthropicModel
from trestle.models.openai import OpenAIModel
from trestle.store import SqliteStore
from trestle.testing import AnthropicServer, OpenAIServer
from trestle.tools import GatedCall, GateVerdict, Observation, ToolContext, coding_registry

MODEL = "test-model"
MIB = 1 << 20
ENDED = set(get_args(RunStatus))


class AllowAll:
    async def review(self, call: GatedCall) -> GateVerdict:
        return GateVerdict.allow()


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(model=MODEL) as running:
        yield running


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "state" / "runs.db")
    yield opened
    opened.close()


def openai_model(server: OpenAIServer) -> OpenAIModel:
    return OpenAIModel(MODEL, base_url=server.base_url, api_key="x")


def run_with(store: SqliteStore, workspace: Path, model: Model, **settings: Any) -> str:
    """A new agent run on ``workspace``, driven until it ends or waits; its id."""
    from trestle.core.records.agent import bootstrap_plan
    from trestle.lifecycle.runs import create_run

    plan = bootstrap_plan("make add() return the sum")
    run_id = create_run(
        store, plan, workspace=workspace, agent=agent_settings(model=MODEL, **settings)
    )

    async def go() -> None:
        engine = LocalEngine(store, poll_interval=0.02, performer=AgentPerformer(model))
        try:
            await engine.run(run_id)
        finally:
            engine.close()
            close = getattr(model, "aclose", None)
            if close is not None:
                await close()

    asyncio.run(go())
    return run_id


def sound(store: SqliteStore, run_id: str) -> RunState:
    """The run's state, after checking the run ended, its state loads and every event
    reads back exactly as it was written."""
    state = load_state(store, run_id)
    assert state.finished in ENDED or state.waiting_on_human(), state.finished
    assert not [s for s, st in state.steps.items() if st.status in ("running", "probing")]
    for stored in store.events(run_id):
        text = event_json(stored.event)
        assert event_json(EVENT_ADAPTER.validate_json(text)) == text
    return state


def recorded(store: SqliteStore, run_id: str, kind: type[Any]) -> list[Any]:
    return [s.event for s in store.events(run_id) if isinstance(s.event, kind)]


def wire_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# --- a lone surrogate: what a JSON body may hold, and UTF-8 cannot --------------------------


def test_a_lone_surrogate_in_model_text_is_replaced_and_the_run_ends(
    server: OpenAIServer, store: SqliteStore, tmp_path: Path
) -> None:
    message = {"role": "assistant", "content": "the bug is in add \ud83d here"}
    body = json.dumps(server.completion(message, finish_reason="stop", usage=(10, 5)))
    assert '"the bug is in add \\ud83d here"' in body  # escaped, as a real server sends it
    server.queue_json(body)

    run_id = run_with(store, sample_workspace(tmp_path), openai_model(server))

    sound(store, run_id)
    first = recorded(store, run_id, ModelCalled)[0]
    assert first.response.text == "the bug is in add \ufffd here"


def test_lone_surrogates_in_tool_names_arguments_and_ids_are_replaced(
    server: OpenAIServer, store: SqliteStore, tmp_path: Path
) -> None:
    calls = [
        # in the outer JSON: the arguments string itself holds the surrogate
        wire_call("call_a", "read_file", '{"path": "calc\ud83d.py"}'),
        # in the arguments' own JSON: it appears only once they are parsed
        wire_call("call_b", "read_file", '{"path": "calc\\udc00.py"}'),
        wire_call("call_\udfff", "read\ud800file", "{}"),
    ]
    message = {"role": "assistant", "content": None, "tool_calls": calls}
    server.queue_raw(server.completion(message, finish_reason="tool_calls", usage=(10, 5)))

    run_id = run_with(store, sample_workspace(tmp_path), openai_model(server))

    sound(store, run_id)
    first = recorded(store, run_id, ModelCalled)[0].response
    assert [(c.id, c.name, c.arguments) for c in first.tool_calls] == [
        ("call_a", "read_file", '{"path": "calc\ufffd.py"}'),
        ("call_b", "read_file", '{"path": "calc\\udc00.py"}'),
        ("call_\ufffd", "read\ufffdfile", "{}"),
    ]
    ended = {e.call_id: e for e in recorded(store, run_id, ToolCallEnded)}
    assert not ended["call_a"].ok and not ended["call_b"].ok
    assert "calc\ufffd.py" in ended["call_b"].content  # parsed, then made storable
    assert "unknown tool 'read\ufffdfile'" in ended["call_\ufffd"].content
    # the second request carried every result back, as text the wire can hold
    answers = [m for m in server.requests[1].body["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in answers] == ["call_a", "call_b", "call_\ufffd"]


def test_surrogates_from_the_anthropic_client_are_replaced_too() -> None:
    with AnthropicServer() as server:
        content: list[dict[str, Any]] = [
            {"type": "text", "text": "a\ud83db"},
            {
                "type": "tool_use",
                "id": "toolu_\udc00",
                "name": "re\ud800ad",
                "input": {"p": "\udfff"},
            },
        ]
        server.queue_raw(server.message(content, stop_reason="tool_use", usage=(10, 5)))
        model = AnthropicModel(server.model, base_url=server.base_url, api_key="x")

        async def go() -> ModelResponse:
            try:
                return await model.complete([Message.user("hi")])
            finally:
                await model.aclose()

        response = asyncio.run(go())
    assert response.text == "a\ufffdb"
    [called] = response.tool_calls
    assert (called.id, called.name) == ("toolu_\ufffd", "re\ufffdad")
    assert json.loads(called.arguments) == {"p": "\ufffd"}


def test_an_event_holding_a_lone_surrogate_is_stored_with_it_replaced() -> None:
    """The last line of defence: whatever slipped past the edges is made storable."""
    response = ModelResponse.model_construct(  # built without the record's own checks
        text="x\ud83dy",
        tool_calls=(),
        usage=Usage(),
        finish_reason="stop",
        model="m",
    )
    event = ModelCalled(at=1.0, step="s", round=1, turn=1, request_hash="h", response=response)
    stored = EVENT_ADAPTER.validate_json(event_json(event))
    assert isinstance(stored, ModelCalled) and stored.response.text == "x\ufffdy"


def test_a_tool_observation_with_a_lone_surrogate_is_recorded_storable(
    store: SqliteStore, tmp_path: Path
) -> None:
    workspace = sample_workspace(tmp_path)
    # a file name that is not UTF-8 reaches Python as a lone surrogate (PEP 383)
    (workspace / "caf\udce9.py").write_bytes(b"x = 1\n")
    model = FunctionModel(
        lambda messages, tools: (
            scripted_call("list_files", directory=".")
            if len(messages) < 5
            else ModelResponse(text="no findings")
        )
    )
    run_id = run_with(store, workspace, model)

    sound(store, run_id)
    [listed] = recorded(store, run_id, ToolCallEnded)[:1]
    assert listed.ok and "caf\ufffd.py" in listed.content


# --- usage no one could have spent ----------------------------------------------------------


@pytest.mark.parametrize(
    ("usage", "said"),
    [
        ('{"prompt_tokens": -5, "completion_tokens": 3}', "input_tokens"),
        ('{"prompt_tokens": 1, "completion_tokens": 1e999}', "output_tokens"),
        ('{"prompt_tokens": 1e300, "completion_tokens": 1}', "input_tokens"),
        ('{"prompt_tokens": "ten", "completion_tokens": 1}', "input_tokens"),
    ],
)
def test_usage_that_cannot_be_right_fails_the_model_call(
    server: OpenAIServer, store: SqliteStore, tmp_path: Path, usage: str, said: str
) -> None:
    message = {"role": "assistant", "content": findings_json()}
    body = json.dumps(server.completion(message, finish_reason="stop", usage=None))
    server.queue_json(body[:-1] + f', "usage": {usage}}}')

    run_id = run_with(store, sample_workspace(tmp_path), openai_model(server))

    state = sound(store, run_id)
    assert state.finished == "needs_human"
    assert not recorded(store, run_id, ModelCalled)  # nothing of it counted or stored
    first = recorded(store, run_id, StepAttemptEnded)[0]
    assert first.action.status == "error"
    assert "model call failed" in (first.action.error or "")
    assert "sent a reply of an unexpected shape" in (first.action.error or "")
    assert said in (first.action.error or "")
    assert state.tally.spent.get("cost", 0.0) == 0.0


@pytest.mark.parametrize(
    "fields",
    [
        {"cost": float("inf")},
        {"cost": float("nan")},
        {"cost": -0.5},
        {"input_tokens": -1},
        {"output_tokens": 10**12},
        {"cost": 1e308},  # finite, but two of them add up to inf in the run's tally
    ],
)
def test_usage_refuses_what_no_call_could_spend(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Usage(**fields)


def test_a_model_that_reports_an_infinite_cost_fails_its_call_and_the_run_stays_loadable(
    store: SqliteStore, tmp_path: Path
) -> None:
    model = FunctionModel(lambda messages, tools: ModelResponse(usage=Usage(cost=float("inf"))))
    run_id = run_with(store, sample_workspace(tmp_path), model)

    state = sound(store, run_id)
    assert state.finished == "needs_human"
    error = recorded(store, run_id, StepAttemptEnded)[0].action.error or ""
    assert "model call failed" in error and "cost" in error


# --- arguments too big or too deep ----------------------------------------------------------


def call_registry(tmp_path: Path, name: str, arguments: str) -> tuple[Observation, float]:
    workspace = sample_workspace(tmp_path)
    ctx = ToolContext(workspace=workspace, run_id="r", step_id="s")
    began = time.monotonic()
    observation = asyncio.run(coding_registry().call(name, arguments, ctx, AllowAll()))
    return observation, time.monotonic() - began


def test_two_mib_of_arguments_are_refused_and_the_model_is_told(tmp_path: Path) -> None:
    arguments = json.dumps({"path": "calc.py", "note": "x" * (2 * MIB)})
    observation, _ = call_registry(tmp_path, "read_file", arguments)
    assert not observation.ok
    assert f"arguments for read_file are {len(arguments):,} characters" in observation.content
    assert "more than the 1,048,576 a call may carry" in observation.content


def test_arguments_nested_a_hundred_deep_are_refused(tmp_path: Path) -> None:
    arguments = '{"path": ' + "[" * 100 + "]" * 100 + "}"
    observation, _ = call_registry(tmp_path, "read_file", arguments)
    assert not observation.ok
    assert "arguments for read_file nest deeper than 64 levels" in observation.content


def test_arguments_nested_sixty_four_deep_are_read(tmp_path: Path) -> None:
    arguments = '{"path": ' + "[" * 63 + "]" * 63 + "}"
    observation, _ = call_registry(tmp_path, "read_file", arguments)
    assert "nested deeper" not in observation.content
    assert "'path': Input should be a valid string" in observation.content


def test_a_hundred_thousand_character_path_is_answered_at_once(tmp_path: Path) -> None:
    path = "d/" * 50_000
    for tool, arguments in [
        ("read_file", {"path": path}),
        ("write_file", {"path": path, "content": "x"}),
        ("edit_file", {"path": path, "old": "a", "new": "b"}),
        ("search_text", {"pattern": "x", "directory": path}),
        ("list_files", {"directory": path}),
    ]:
        observation, took = call_registry(tmp_path / tool, tool, json.dumps(arguments))
        assert not observation.ok, tool
        assert len(observation.content) < 2_000, tool  # the path is not echoed whole
        assert took < 5.0, tool


def test_huge_deep_and_long_path_calls_in_a_whole_run_end_as_messages(
    server: OpenAIServer, store: SqliteStore, tmp_path: Path
) -> None:
    """Over HTTP, in EXECUTE, with the drift monitor watching a write out of scope."""
    long_path = "d/" * 50_000 + "x.py"
    server.queue_text(findings_json(), usage=(10, 5))
    sums = {"file_contains": "calc.py", "text": "a + b"}
    step = plan_step("fix", "add returns the sum", files=["calc.py"], verify=[sums])
    server.queue_text(plan_json(step, summary="fix add"), usage=(10, 5))
    server.queue_tool_calls(
        ToolCall(id="big", name="edit_file", arguments=json.dumps({"path": "x" * (2 * MIB)})),
        ToolCall(id="deep", name="edit_file", arguments='{"path": ' + "[" * 100 + "]" * 100 + "}"),
        ToolCall(id="long", name="write_file", arguments=json.dumps({"path": long_path})),
        ToolCall(
            id="long2",
            name="write_file",
            arguments=json.dumps({"path": long_path, "content": "x"}),
        ),
    )
    server.queue_tool_calls(
        ToolCall(
            id="edit",
            name="edit_file",
            arguments=json.dumps({"path": "calc.py", "old": "a - b", "new": "a + b"}),
        ),
        ToolCall(id="done", name="finish", arguments=json.dumps({"summary": "fixed"})),
    )

    began = time.monotonic()
    run_id = run_with(store, sample_workspace(tmp_path), openai_model(server), scope=("calc.py",))
    took = time.monotonic() - began

    state = sound(store, run_id)
    assert state.finished == "succeeded", [
        (e.step, e.action.error) for e in recorded(store, run_id, StepAttemptEnded)
    ] + [p.problems for p in recorded(store, run_id, PlanProposed)]
    assert took < 60.0
    ended = {e.call_id: e for e in recorded(store, run_id, ToolCallEnded)}
    assert "more than the 1,048,576 a call may carry" in ended["big"].content
    assert "nest deeper than 64" in ended["deep"].content
    assert not ended["long"].ok and not ended["long2"].ok
    assert len(ended["long2"].content) < 2_000
    # the refused arguments did not go back to the model a second time, whole
    assert len(server.requests[-1].raw) < MIB


# --- replies of an odd shape, at the provider ------------------------------------------------


def complete_once(server: OpenAIServer) -> ModelResponse:
    model = openai_model(server)

    async def go() -> ModelResponse:
        try:
            return await model.complete([Message.user("hi")])
        finally:
            await model.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize(
    "body",
    [
        "not json at all",
        '{"choices": [{"message": {"role": "assistant", "content": 5}}]}',
        '{"choices": [{"message": {"role": "assistant", "content": ["a", "b"]}}]}',
        '{"choices": 5}',
        '{"choices": [{"message": {"content": "x", "tool_calls": [{"id": "a"}]}}]}',
        '{"choices": [{"message": {"content": "x", "tool_calls": [5]}}]}',
        '{"choices": [{"message": {"content": "x", "tool_calls": 5}}]}',
    ],
)
def test_a_reply_of_an_odd_shape_is_a_provider_response_error(
    server: OpenAIServer, body: str
) -> None:
    server.queue_json(body)
    with pytest.raises(ProviderResponseError, match="openai at"):
        complete_once(server)


@pytest.mark.parametrize(
    "body", ['{"choices": []}', "{}", '{"choices": null}', '{"choices": [{"message": null}]}']
)
def test_a_reply_with_no_choices_is_an_empty_answer(server: OpenAIServer, body: str) -> None:
    server.queue_json(body)
    response = complete_once(server)
    assert response.is_empty and response.finish_reason == "unknown"


def test_duplicated_and_missing_call_ids_are_made_distinct(server: OpenAIServer) -> None:
    calls = [
        wire_call("same", "read_file", "{}"),
        wire_call("same", "read_file", "{}"),
        wire_call("", "read_file", "{}"),
        {"type": "function", "function": {"name": "read_file", "arguments": "{}"}},
        wire_call("x" * 10_000, "read_file", "{}"),
        wire_call("a b\x00", "read_file", "{}"),
    ]
    message = {"role": "assistant", "content": None, "tool_calls": calls}
    server.queue_raw(server.completion(message, finish_reason="tool_calls", usage=(1, 1)))
    ids = [c.id for c in complete_once(server).tool_calls]
    assert ids == ["same", "same_2", "call_2", "call_3", "call_4", "call_5"]
    assert all(0 < len(i) <= 64 for i in ids)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [(None, "unknown"), (7, "7"), ("x" * 1_000, "x" * 64), ("\ud83d", "\ufffd")],
)
def test_odd_finish_reasons_are_kept_short_and_storable(
    server: OpenAIServer, reason: Any, expected: str
) -> None:
    message = {"role": "assistant", "content": "hello"}
    server.queue_raw(server.completion(message, finish_reason=reason, usage=(1, 1)))
    assert complete_once(server).finish_reason == expected
