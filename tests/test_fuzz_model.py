"""Malformed model turns through the real ``openai`` client, the real agent runtime and a
real SQLite store.

Seeded episodes: each is an agent run whose EXECUTE step is fed a stream of hostile
replies by the loopback chat completions server: lone surrogates in text, names, ids
and (escaped) arguments; unknown, empty and 100,000-character tool names; arguments
that are not JSON, not an object, 2 MiB long or nested 100,000 deep; a 100,000
character path; duplicated and missing call ids; negative, huge and non-finite usage;
no choices; odd finish reasons (numbers, 1,000 characters, surrogates); messages of an
odd shape (null, a number for text, tool calls that are not a list); a body that is not
JSON, also when it is labelled JSON (HTML from a proxy, a body cut short, nothing); server
errors. Every episode must end without
a traceback, in a state that is not ``running``, with every event readable back from a
fresh connection to the store and the state rebuilt from it.

``TRESTLE_MODEL_FUZZ_TURNS`` sets how many hostile turns are served (default 300);
``make soak`` runs more.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from test_agent_loopback import GOAL, MODEL, TEST_COMMAND, queue_plan, queue_understand
from trestle.agent.runtime import AgentPerformer
from trestle.core.conversation import Message, ModelResponse
from trestle.core.errors import ProviderResponseError
from trestle.core.events import EVENT_ADAPTER, ModelCalled, RunResumed, event_json
from trestle.core.plan import Backoff
from trestle.core.records.agent import AgentSettings, bootstrap_plan
from trestle.engines.local import LocalEngine
from trestle.lifecycle.runs import create_run, load_state
from trestle.models import RetryPolicy, model_from_spec
from trestle.store import SqliteStore
from trestle.testing import OpenAIServer
from trestle.tools import coding_registry
from trestle.tools.base import GatedCall, GateVerdict, ToolContext

TURNS = int(os.environ.get("TRESTLE_MODEL_FUZZ_TURNS", "300"))
SEED = 20261123
PER_EPISODE = 60  # hostile turns queued per run; a run may stop sooner (a failed call)
LONE = ["\ud83d", "\udc80", "\ud800", "\udfff"]
Reply = Callable[[OpenAIServer, random.Random], None]


def _mangle(text: str, rng: random.Random) -> str:
    at = rng.randrange(len(text) + 1)
    return text[:at] + rng.choice(LONE) + text[at:]


def _call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _body(
    server: OpenAIServer,
    message: dict[str, Any],
    *,
    finish: str | None = "tool_calls",
    usage: Any = (10, 5),
) -> dict[str, Any]:
    body = server.completion(message, finish_reason=finish, usage=None)
    if usage is not None:
        prompt, completion = usage
        body["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": 0,
        }
    return body


def _calls(server: OpenAIServer, rng: random.Random, *calls: dict[str, Any], **kw: Any) -> None:
    text = rng.choice([None, "", "let me look", _mangle("thinking", rng)])
    message = {"role": "assistant", "content": text, "tool_calls": list(calls)}
    server.queue_raw(_body(server, message, **kw))


def _args(**values: Any) -> str:
    return json.dumps(values)


def surrogate_text(server: OpenAIServer, rng: random.Random) -> None:
    message = {"role": "assistant", "content": _mangle("I will fix it now", rng)}
    server.queue_raw(_body(server, message, finish=rng.choice(["stop", "length", "weird", None])))


def surrogate_arguments(server: OpenAIServer, rng: random.Random) -> None:
    path = rng.choice(["calc.py", "new.py", "x/y.txt"])
    raw = _args(path=path, content="x").replace(path, _mangle(path, rng))  # escaped by json
    name = rng.choice(["write_file", "read_file", _mangle("read_file", rng)])
    _calls(server, rng, _call(_mangle(f"call_{rng.random()}", rng), name, raw))


def escaped_surrogate_path(server: OpenAIServer, rng: random.Random) -> None:
    raw = '{"path": "calc' + rng.choice(["\\ud83d", "\\udc80", "\\udfff"]) + '.py"}'
    _calls(server, rng, _call("call_esc", rng.choice(["read_file", "write_file"]), raw))


def unknown_tool(server: OpenAIServer, rng: random.Random) -> None:
    name = rng.choice(["", "rm_rf", "read_fil", "x" * 100_000, "\u0000", "run command"])
    _calls(server, rng, _call(f"call_{rng.randrange(99)}", name, "{}"))


def not_json(server: OpenAIServer, rng: random.Random) -> None:
    raw = rng.choice(['{"path": "calc.py"', "[1, 2]", "42", "null", "", "{'a': 1}", "{}}", "\0"])
    _calls(server, rng, _call("call_bad", rng.choice(["read_file", "edit_file"]), raw))


def huge_arguments(server: OpenAIServer, rng: random.Random) -> None:
    raw = _args(path="big.txt", content="y" * (2 * 1024 * 1024 + rng.randrange(100)))
    _calls(server, rng, _call("call_huge", "write_file", raw))


def deep_arguments(server: OpenAIServer, rng: random.Random) -> None:
    depth = rng.choice([65, 1_000, 100_000])
    raw = '{"path": ' + "[" * depth + "]" * depth + "}"
    _calls(server, rng, _call("call_deep", "read_file", raw))


def long_path(server: OpenAIServer, rng: random.Random) -> None:
    path = "/".join(["a" * 200] * 500)
    name = rng.choice(["read_file", "list_files", "write_file"])
    _calls(server, rng, _call("call_long", name, _args(path=path, content="z")))


def duplicate_ids(server: OpenAIServer, rng: random.Random) -> None:
    same = rng.choice(["call_dup", "", None])
    read = _args(path="calc.py")
    _calls(server, rng, _call(same, "read_file", read), _call(same, "list_files", "{}"))


def missing_fields(server: OpenAIServer, rng: random.Random) -> None:
    call = rng.choice(
        [
            {"id": "call_m", "type": "function", "function": {"name": None, "arguments": None}},
            {"id": "call_m", "type": "function", "function": {"name": "read_file"}},
            {"type": "function", "function": {"name": "list_files", "arguments": "{}"}},
        ]
    )
    _calls(server, rng, call)


def odd_usage(server: OpenAIServer, rng: random.Random) -> None:
    usage = rng.choice([(-5, 3), (10**30, 1), (1, -1), (1e400, 2), (None, None), ("ten", 5)])
    _calls(server, rng, _call("call_u", "list_files", "{}"), usage=usage)


def no_choices(server: OpenAIServer, rng: random.Random) -> None:
    body = _body(server, {"role": "assistant", "content": "x"})
    body["choices"] = rng.choice([[], None])
    server.queue_raw(body)


def not_a_body(server: OpenAIServer, rng: random.Random) -> None:
    server.queue_raw(rng.choice(["<html>busy</html>", '{"choices": [{"message": 7}]}', "null"]))


def mislabelled_body(server: OpenAIServer, rng: random.Random) -> None:
    """What a proxy or a broken server sends as ``application/json``."""
    server.queue_json(rng.choice(["<html>bad gateway</html>", '{"choices": [{"mess', "", "\0"]))


def odd_shape(server: OpenAIServer, rng: random.Random) -> None:
    body = _body(server, {"role": "assistant", "content": "x"}, finish=rng.choice(["stop", None]))
    body["choices"][0]["message"] = rng.choice(
        [
            None,
            {"role": "assistant", "content": 7},
            {"role": "assistant", "content": ["a", "b"]},
            {"role": "assistant", "content": None, "tool_calls": 5},
            {"role": "assistant", "content": None, "tool_calls": [5, "x"]},
        ]
    )
    server.queue_raw(body)


def odd_finish(server: OpenAIServer, rng: random.Random) -> None:
    body = _body(server, {"role": "assistant", "content": "\0\x1b[31m said \u202e"}, finish=None)
    body["choices"][0]["finish_reason"] = rng.choice([7, "r" * 1_000, "\ud800", ["stop"]])
    server.queue_raw(body)


def server_error(server: OpenAIServer, rng: random.Random) -> None:
    server.queue_error(rng.choice([429, 500, 503]))


def plain_read(server: OpenAIServer, rng: random.Random) -> None:
    _calls(server, rng, _call(f"call_r{rng.randrange(9)}", "read_file", _args(path="calc.py")))


# weights: most turns are hostile tool calls; a few end the attempt (a reply that
# cannot be understood), as they would in the wild
REPLIES: list[tuple[Reply, int]] = [
    (surrogate_text, 8),
    (surrogate_arguments, 10),
    (escaped_surrogate_path, 8),
    (unknown_tool, 8),
    (not_json, 10),
    (huge_arguments, 1),
    (deep_arguments, 4),
    (long_path, 4),
    (duplicate_ids, 6),
    (missing_fields, 4),
    (odd_usage, 3),
    (no_choices, 1),
    (not_a_body, 1),
    (mislabelled_body, 1),
    (odd_shape, 1),
    (odd_finish, 2),
    (server_error, 1),
    (plain_read, 10),
]


def _new_run(store: SqliteStore, workspace: Path) -> str:
    """An agent run as ``trestle agent`` starts one, less its workspace checkpoints: a
    git snapshot per step costs this suite half its time and tells nothing of input."""
    settings = AgentSettings(
        model=f"openai:{MODEL}", test_command=TEST_COMMAND, plan_approval="auto"
    )
    plan = bootstrap_plan(GOAL).model_copy(update={"checkpoints": "off"})
    return create_run(store, plan, workspace=workspace, agent=settings)


def _episode(tmp: Path, rng: random.Random, quota: int) -> int:
    """One agent run fed up to ``quota`` hostile turns; returns how many it was served."""
    workspace = tmp / "ws"
    workspace.mkdir(parents=True)
    (workspace / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    store_path = tmp / "runs.db"
    store = SqliteStore(store_path)
    with OpenAIServer(model=MODEL) as server:
        run_id = _new_run(store, workspace)
        queue_understand(server)
        queue_plan(server)
        before = len(server.requests) + 3
        functions, weights = zip(*REPLIES, strict=True)
        for reply in rng.choices(functions, weights, k=quota):
            reply(server, rng)
        model = model_from_spec(
            f"openai:{MODEL}",
            base_url=server.base_url,
            api_key="x",
            retry=RetryPolicy(max_attempts=1),
        )

        async def go() -> str | None:
            performer = AgentPerformer(model)
            engine = LocalEngine(store, performer=performer, poll_interval=0.02)
            try:
                return (await engine.run(run_id)).finished
            finally:
                engine.close()
                await model.aclose()  # type: ignore[attr-defined]

        finished = asyncio.run(go())
        served = max(0, min(quota, len(server.requests) - before))
    store.close()
    assert finished is not None and finished != "running", finished
    fresh = SqliteStore(store_path)
    try:
        for stored in fresh.events(run_id):  # every event reads back and writes again
            again = EVENT_ADAPTER.validate_json(event_json(stored.event))
            assert again == stored.event
        assert load_state(fresh, run_id).finished == finished
    finally:
        fresh.close()
    return served


def test_hundreds_of_malformed_turns_end_in_a_recorded_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a retried step goes again at once: its backoff would only make the suite wait
    monkeypatch.setattr(Backoff, "delay", lambda self, retry_number: 0.0)
    rng = random.Random(SEED)
    served = episodes = 0
    while served < TURNS:
        episodes += 1
        served += _episode(tmp_path / f"e{episodes}", rng, min(PER_EPISODE, TURNS - served))
        assert episodes < TURNS, "episodes serve no turns"
    print(f"model fuzz: {served} hostile turns in {episodes} agent runs, 0 tracebacks")


# --- the edges, one by one ---------------------------------------------------------------


def _complete(server: OpenAIServer) -> ModelResponse:
    model = model_from_spec(
        f"openai:{MODEL}", base_url=server.base_url, api_key="x", retry=RetryPolicy(max_attempts=1)
    )

    async def go() -> ModelResponse:
        try:
            return await model.complete([Message.user("hi")])
        finally:
            await model.aclose()  # type: ignore[attr-defined]

    return asyncio.run(go())


def test_a_lone_surrogate_from_the_provider_becomes_a_replacement_character() -> None:
    with OpenAIServer(model=MODEL) as server:
        message = {
            "role": "assistant",
            "content": "fixed \ud83d",
            "tool_calls": [_call("c\udc80", "read\ud800", '{"path": "a\ud83d"}')],
        }
        server.queue_raw(_body(server, message))
        response = _complete(server)
    assert response.text == "fixed \ufffd"
    [call] = response.tool_calls
    assert (call.id, call.name, call.arguments) == ("c\ufffd", "read\ufffd", '{"path": "a\ufffd"}')
    called = ModelCalled(at=0.0, step="s", round=1, turn=1, request_hash="h", response=response)
    assert EVENT_ADAPTER.validate_json(event_json(called)) == called  # stored as it is


def test_non_finite_or_negative_usage_is_a_reply_that_cannot_be_understood() -> None:
    for usage in ((1e400, 1), (-3, 1), (1, 10**30)):
        with OpenAIServer(model=MODEL) as server:
            server.queue_raw(_body(server, {"role": "assistant", "content": "x"}, usage=usage))
            with pytest.raises(ProviderResponseError, match="unexpected shape"):
                _complete(server)


def test_oversized_deep_or_unknown_arguments_are_told_to_the_model_not_raised() -> None:
    registry = coding_registry()
    ctx = ToolContext(workspace=Path("."), run_id="r", step_id="s")
    gate = _AllowAll()
    huge = json.dumps({"path": "a", "content": "y" * (2 << 20)})
    deep = '{"path": ' + "[" * 100_000 + "]" * 100_000 + "}"

    def told(name: str, raw: str) -> str:
        observation = asyncio.run(registry.call(name, raw, ctx, gate))
        assert not observation.ok
        return observation.error or ""

    assert "more than the 1,048,576 a call may carry" in told("write_file", huge)
    assert "nest deeper than 64 levels" in told("read_file", deep)
    assert len(told("x" * 100_000, "{}")) < 500  # quoted short


class _AllowAll:
    async def review(self, call: GatedCall) -> GateVerdict:
        return GateVerdict.allow("test")


def test_an_event_holding_a_surrogate_is_stored_with_a_replacement() -> None:
    event = RunResumed(at=1.0, owner="x\ud83d")
    assert json.loads(event_json(event))["owner"] == "x\ufffd"
