"""AnthropicModel: the real ``anthropic`` client against the loopback messages server."""

from __future__ import annotations

import asyncio

import pytest

from trestle.core.errors import (
    ConfigError,
    ModelRequestBlockedError,
    ProviderAuthError,
    ProviderRequestError,
    ProviderResponseError,
    ProviderUnavailableError,
)
from trestle.models import (
    Message,
    ModelResponse,
    PriceTable,
    RetryPolicy,
    ToolCall,
    ToolSchema,
    block_model_requests,
    model_from_spec,
)
from trestle.models.anthropic import AnthropicModel, wire_messages
from trestle.models.provider import ANSWER_BYTES_MOST
from trestle.testing import AnthropicServer, RecordingSleep

SEARCH = ToolSchema(
    name="search_text",
    description="Search the workspace.",
    parameters={"type": "object", "properties": {"pattern": {"type": "string"}}},
)
CONVERSATION = (Message.system("You fix bugs."), Message.user("Where is main()?"))


def _model(server: AnthropicServer, sleep: RecordingSleep, **options: object) -> AnthropicModel:
    return AnthropicModel(
        "claude-sonnet-4-6",
        base_url=server.base_url,
        sleep=sleep,
        **options,  # type: ignore[arg-type]
    )


def _run(model: AnthropicModel, calls: int = 1, **settings: int | float) -> list[ModelResponse]:
    async def go() -> list[ModelResponse]:
        try:
            return [
                await model.complete(CONVERSATION, [SEARCH], **settings)  # type: ignore[arg-type]
                for _ in range(calls)
            ]
        finally:
            await model.aclose()

    return asyncio.run(go())


def test_text_reply_with_system_prompt_and_tools_on_the_wire() -> None:
    sleep = RecordingSleep()
    with AnthropicServer() as server:
        server.queue_text("In src/main.py.")
        [response] = _run(_model(server, sleep, api_key="sk-ant-test"), temperature=0.0)
    assert response.text == "In src/main.py."
    assert response.finish_reason == "stop"
    assert response.model == "claude-sonnet-4-6"
    [request] = server.requests
    assert request.path == "/v1/messages"
    # The SDK chooses the header that carries the key; the key must be in one of them.
    auth = request.headers.get("x-api-key", "") + request.headers.get("authorization", "")
    assert "sk-ant-test" in auth
    assert request.headers["anthropic-version"]
    assert request.body["system"] == "You fix bugs."
    assert request.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Where is main()?"}]}
    ]
    assert request.body["tools"] == [
        {
            "name": "search_text",
            "description": "Search the workspace.",
            "input_schema": SEARCH.parameters,
        }
    ]
    assert request.body["max_tokens"] == 4096
    assert request.body["temperature"] == 0.0


def test_tool_use_and_tool_results_as_blocks() -> None:
    with AnthropicServer() as server:
        server.queue_tool_calls(("search_text", {"pattern": "def main"}), text="Searching.")
        server.queue_text("Found.")
        model = _model(server, RecordingSleep())

        async def conversation() -> tuple[ModelResponse, ModelResponse]:
            first = await model.complete(CONVERSATION, [SEARCH])
            [call] = first.tool_calls
            history = [
                *CONVERSATION,
                first.to_message(),
                Message.tool(call.id, "src/main.py:3: def main():"),
                Message.user("Also check tests."),
            ]
            second = await model.complete(history, [SEARCH], max_tokens=100)
            await model.aclose()
            return first, second

        first, second = asyncio.run(conversation())
    assert first.finish_reason == "tool_calls"
    assert first.text == "Searching."
    [call] = first.tool_calls
    assert call.name == "search_text" and call.arguments == '{"pattern": "def main"}'
    assert second.text == "Found."
    body = server.requests[1].body
    assert body["max_tokens"] == 100
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Searching."},
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": "search_text",
                    "input": {"pattern": "def main"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": call.id,
                    "content": "src/main.py:3: def main():",
                },
                {"type": "text", "text": "Also check tests."},
            ],
        },
    ]


def test_wire_messages_merge_turns_and_keep_malformed_arguments() -> None:
    bad = ToolCall(id="t1", name="search_text", arguments='{"pattern": ')
    other = ToolCall(id="t2", name="read_file", arguments='["a"]')
    turns = wire_messages(
        [
            Message.system("ignored here"),
            Message.user("a"),
            Message.user("b"),
            Message.assistant(""),
            Message.assistant(tool_calls=[bad, other]),
            Message.tool("t1", "error: invalid JSON"),
            Message.tool("t2", "error: arguments must be an object"),
        ]
    )
    assert turns == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "t1",
                    "name": "search_text",
                    "input": {"invalid_json": '{"pattern": '},
                },
                {
                    "type": "tool_use",
                    "id": "t2",
                    "name": "read_file",
                    "input": {"invalid_json": '["a"]'},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "error: invalid JSON"},
                {
                    "type": "tool_result",
                    "tool_use_id": "t2",
                    "content": "error: arguments must be an object",
                },
            ],
        },
    ]


def test_malformed_input_and_unknown_tool_names_pass_through() -> None:
    with AnthropicServer() as server:
        server.queue_tool_calls(("search_text", '{"pattern": "x'), ("launch_rockets", {}))
        [response] = _run(_model(server, RecordingSleep()))
    assert [(c.name, c.arguments) for c in response.tool_calls] == [
        ("search_text", '{"pattern": "x'),
        ("launch_rockets", "{}"),
    ]
    assert len({c.id for c in response.tool_calls}) == 2


def test_empty_response() -> None:
    with AnthropicServer() as server:
        server.queue_empty()
        [response] = _run(_model(server, RecordingSleep()))
    assert response.is_empty and response.tool_calls == ()
    assert response.finish_reason == "stop"


def test_429_and_overloaded_529_are_retried_honouring_retry_after() -> None:
    sleep = RecordingSleep()
    policy = RetryPolicy(initial_delay=2.0, jitter=0.0)
    with AnthropicServer() as server:
        server.queue_error(429, "rate limited", headers={"retry-after": "4"})
        server.queue_error(529, "Overloaded")
        server.queue_text("ok")
        [response] = _run(_model(server, sleep, retry=policy))
    assert response.text == "ok"
    assert len(server.requests) == 3
    # The 429 said 4 s; the 529 said nothing, so the second backoff step (2 * 2) applies.
    assert sleep.calls == [4.0, 4.0]


def test_repeated_500s_exhaust_the_retries() -> None:
    sleep = RecordingSleep()
    policy = RetryPolicy(max_attempts=4, initial_delay=0.5, jitter=0.0)
    with AnthropicServer() as server:
        for _ in range(4):
            server.queue_error(500, "Internal server error")
        with pytest.raises(ProviderUnavailableError) as caught:
            _run(_model(server, sleep, retry=policy))
    assert caught.value.attempts == 4 and caught.value.status == 500
    assert caught.value.provider == "anthropic"
    assert "api_error" in (caught.value.body or "")
    assert sleep.calls == [0.5, 1.0, 2.0]


def test_401_and_400_are_not_retried() -> None:
    sleep = RecordingSleep()
    with AnthropicServer() as server:
        server.queue_error(401, "invalid x-api-key")
        server.queue_error(400, "messages: roles must alternate")
        with pytest.raises(ProviderAuthError) as auth:
            _run(_model(server, sleep))
        with pytest.raises(ProviderRequestError) as bad:
            _run(_model(server, sleep))
    assert auth.value.status == 401 and "invalid x-api-key" in str(auth.value)
    assert bad.value.status == 400 and "roles must alternate" in (bad.value.body or "")
    assert len(server.requests) == 2 and sleep.calls == []


def test_should_retry_header_overrides_the_status() -> None:
    sleep = RecordingSleep()
    with AnthropicServer() as server:
        server.queue_error(503, "down for good", headers={"x-should-retry": "false"})
        with pytest.raises(ProviderRequestError, match="HTTP 503"):
            _run(_model(server, sleep))
        server.queue_error(400, "try again", headers={"x-should-retry": "true"})
        server.queue_text("ok")
        [response] = _run(_model(server, sleep))
    assert response.text == "ok" and len(sleep.calls) == 1


def test_usage_cost_and_cached_input_tokens() -> None:
    prices = PriceTable.from_mapping({"claude-sonnet-4*": (3.0, 15.0)})
    with AnthropicServer() as server:
        server.queue_text("hi", usage=(2000, 100))
        body = server.message(
            [{"type": "text", "text": "cached"}], stop_reason="end_turn", usage=(10, 20)
        )
        body["usage"]["cache_read_input_tokens"] = 500
        server.queue_raw(body)
        server.queue_text("truncated", stop_reason="max_tokens", usage=None)
        fresh, cached, cut = _run(_model(server, RecordingSleep(), prices=prices), calls=3)
    assert (fresh.usage.input_tokens, fresh.usage.output_tokens) == (2000, 100)
    assert fresh.usage.cost == pytest.approx((2000 * 3.0 + 100 * 15.0) / 1e6)
    assert cached.usage.input_tokens == 510
    assert cut.finish_reason == "length" and cut.usage.estimated


def test_a_negative_cached_count_is_not_a_count() -> None:
    # 90M tokens in, less 90M "read from the cache": 0 tokens recorded, and no budget held
    with AnthropicServer() as server:
        body = server.message(
            [{"type": "text", "text": "x"}], stop_reason="end_turn", usage=(90_000_000, 20)
        )
        body["usage"]["cache_read_input_tokens"] = -90_000_000
        server.queue_raw(body)
        with pytest.raises(ProviderResponseError, match="cache_read_input_tokens is -90000000"):
            _run(_model(server, RecordingSleep()))


def test_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicModel("claude-sonnet-4-6")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env")
    assert AnthropicModel("claude-sonnet-4-6").base_url == "https://api.anthropic.com"


def test_block_guard_and_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRESTLE_BLOCK_MODEL_REQUESTS", raising=False)
    remote = AnthropicModel("claude-sonnet-4-6", api_key="k")
    with block_model_requests(), pytest.raises(ModelRequestBlockedError, match="anthropic"):
        _run(remote)
    with AnthropicServer() as server, block_model_requests():
        server.queue_text("local")
        model = model_from_spec("anthropic:claude-sonnet-4-6", base_url=server.base_url)
        assert isinstance(model, AnthropicModel)
        assert _run(model)[0].text == "local"


def test_an_answer_past_the_bound_is_not_read_further_nor_asked_again() -> None:
    sleep = RecordingSleep()
    with AnthropicServer() as server:
        long_plain = b" " * (ANSWER_BYTES_MOST + 1)
        server.queue_raw(long_plain, headers={"Content-Type": "application/json"})
        with pytest.raises(ProviderResponseError, match=f"more than {ANSWER_BYTES_MOST:,} bytes"):
            _run(_model(server, sleep))
        assert len(server.requests) == 1 and sleep.calls == []
