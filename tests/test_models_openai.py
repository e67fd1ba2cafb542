"""OpenAIModel: the real ``openai`` client against the loopback chat completions server."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import threading
import zlib
from collections.abc import Sequence
from email.utils import formatdate

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
from trestle.models.openai import OpenAIModel
from trestle.models.provider import ANSWER_BYTES_MOST
from trestle.testing import OpenAIServer, RecordingSleep

READ_FILE = ToolSchema(
    name="read_file",
    description="Read a file of the workspace.",
    parameters={
        "type": "object",
        "properties": {"path": {"type": "string"}},
        "required": ["path"],
    },
)
CONVERSATION = (Message.system("You fix bugs."), Message.user("Fix the failing test."))


def _model(server: OpenAIServer, sleep: RecordingSleep, **options: object) -> OpenAIModel:
    return OpenAIModel("gpt-4o-mini", base_url=server.base_url, sleep=sleep, **options)  # type: ignore[arg-type]


def _complete(
    model: OpenAIModel,
    messages: Sequence[Message] = CONVERSATION,
    tools: Sequence[ToolSchema] = (READ_FILE,),
    **settings: int | float,
) -> ModelResponse:
    async def go() -> ModelResponse:
        try:
            return await model.complete(messages, tools, **settings)  # type: ignore[arg-type]
        finally:
            await model.aclose()

    return asyncio.run(go())


def test_text_reply_and_the_request_on_the_wire() -> None:
    sleep = RecordingSleep()
    with OpenAIServer() as server:
        server.queue_text("The test passes now.")
        response = _complete(_model(server, sleep), max_tokens=256, temperature=0.2)
    assert response.text == "The test passes now."
    assert response.tool_calls == ()
    assert response.finish_reason == "stop"
    assert response.model == "gpt-4o-mini"
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer not-needed"
    assert request.body["model"] == "gpt-4o-mini"
    assert request.body["messages"] == [
        {"role": "system", "content": "You fix bugs."},
        {"role": "user", "content": "Fix the failing test."},
    ]
    assert request.body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "read_file",
                "description": "Read a file of the workspace.",
                "parameters": READ_FILE.parameters,
            },
        }
    ]
    # A compatible server gets the widely supported max_tokens.
    assert request.body["max_tokens"] == 256
    assert request.body["temperature"] == 0.2
    assert sleep.calls == []


def test_tool_calls_with_arguments_and_a_tool_round_trip() -> None:
    sleep = RecordingSleep()
    with OpenAIServer() as server:
        server.queue_tool_calls(
            ToolCall(id="call_a", name="read_file", arguments='{"path": "src/app.py"}'),
            text="Reading it first.",
        )
        server.queue_text("Found it.")
        model = _model(server, sleep)

        async def conversation() -> tuple[ModelResponse, ModelResponse]:
            first = await model.complete(CONVERSATION, [READ_FILE])
            history = [
                *CONVERSATION,
                first.to_message(),
                Message.tool("call_a", "print('hi')"),
            ]
            second = await model.complete(history, [READ_FILE])
            await model.aclose()
            return first, second

        first, second = asyncio.run(conversation())
    assert first.finish_reason == "tool_calls"
    assert first.text == "Reading it first."
    assert first.tool_calls == (
        ToolCall(id="call_a", name="read_file", arguments='{"path": "src/app.py"}'),
    )
    assert json.loads(first.tool_calls[0].arguments) == {"path": "src/app.py"}
    assert second.text == "Found it."
    sent = server.requests[1].body["messages"]
    assert sent[2] == {
        "role": "assistant",
        "content": "Reading it first.",
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "read_file", "arguments": '{"path": "src/app.py"}'},
            }
        ],
    }
    assert sent[3] == {"role": "tool", "tool_call_id": "call_a", "content": "print('hi')"}


def test_malformed_tool_json_and_unknown_tool_names_pass_through_unchanged() -> None:
    with OpenAIServer() as server:
        server.queue_tool_calls(("read_file", '{"path": "a.py"'), ("delete_everything", "[]"))
        response = _complete(_model(server, RecordingSleep()))
    assert [(c.name, c.arguments) for c in response.tool_calls] == [
        ("read_file", '{"path": "a.py"'),
        ("delete_everything", "[]"),
    ]
    assert all(c.id for c in response.tool_calls)
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.tool_calls[0].arguments)


def test_malformed_tool_call_in_history_is_sent_back_verbatim() -> None:
    bad = ToolCall(id="call_1", name="read_file", arguments='{"path": ')
    history = [
        *CONVERSATION,
        Message.assistant(tool_calls=[bad]),
        Message.tool("call_1", "error: arguments are not valid JSON"),
    ]
    with OpenAIServer() as server:
        server.queue_text("Retrying.")
        _complete(_model(server, RecordingSleep()), history)
    assistant = server.requests[0].body["messages"][2]
    assert assistant["content"] is None
    assert assistant["tool_calls"][0]["function"]["arguments"] == '{"path": '


def test_empty_response() -> None:
    with OpenAIServer() as server:
        server.queue_empty()
        server.queue_raw({"id": "x", "object": "chat.completion", "model": "m", "choices": []})
        model = _model(server, RecordingSleep())

        async def two() -> list[ModelResponse]:
            replies = [await model.complete(CONVERSATION), await model.complete(CONVERSATION)]
            await model.aclose()
            return replies

        empty, no_choices = asyncio.run(two())
    assert empty.is_empty and empty.text == "" and empty.finish_reason == "stop"
    assert no_choices.is_empty and no_choices.finish_reason == "unknown"


def test_429_with_retry_after_seconds_then_success() -> None:
    sleep = RecordingSleep()
    with OpenAIServer() as server:
        server.queue_error(429, "slow down", headers={"Retry-After": "7"})
        server.queue_text("ok")
        response = _complete(_model(server, sleep))
    assert response.text == "ok"
    assert len(server.requests) == 2
    assert sleep.calls == [7.0]


def test_retry_after_as_an_http_date_and_in_milliseconds() -> None:
    sleep = RecordingSleep()
    now = 1_800_000_000.0
    with OpenAIServer() as server:
        server.queue_error(429, headers={"Retry-After": formatdate(now + 12, usegmt=True)})
        server.queue_error(503, headers={"retry-after-ms": "1500"})
        server.queue_text("ok")
        response = _complete(_model(server, sleep, clock=lambda: now))
    assert response.text == "ok"
    assert sleep.calls == [12.0, 1.5]


def test_repeated_500s_exhaust_the_retries() -> None:
    sleep = RecordingSleep()
    policy = RetryPolicy(max_attempts=3, initial_delay=1.0, max_delay=10.0, jitter=0.0)
    with OpenAIServer() as server:
        for _ in range(3):
            server.queue_error(500, "boom")
        with pytest.raises(ProviderUnavailableError) as caught:
            _complete(_model(server, sleep, retry=policy))
    error = caught.value
    assert error.attempts == 3
    assert error.status == 500
    assert error.body is not None and "boom" in error.body
    assert server.base_url in str(error) and "3 attempts" in str(error)
    assert len(server.requests) == 3
    assert sleep.calls == [1.0, 2.0]  # exponential: 1, then 2; no wait after the last


def test_retry_after_beyond_the_total_wait_budget_gives_up_without_waiting() -> None:
    sleep = RecordingSleep()
    policy = RetryPolicy(max_attempts=5, max_total_wait=30.0)
    with OpenAIServer() as server:
        server.queue_error(429, headers={"Retry-After": "3600"})
        with pytest.raises(ProviderUnavailableError, match="retry budget"):
            _complete(_model(server, sleep, retry=policy))
    assert sleep.calls == []
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_are_not_retried(status: int) -> None:
    sleep = RecordingSleep()
    with OpenAIServer() as server:
        server.queue_error(status, "Incorrect API key provided")
        server.queue_text("never sent")
        with pytest.raises(ProviderAuthError) as caught:
            _complete(_model(server, sleep))
    assert caught.value.status == status
    assert "Incorrect API key provided" in (caught.value.body or "")
    assert f"HTTP {status}" in str(caught.value)
    assert len(server.requests) == 1 and sleep.calls == []


@pytest.mark.parametrize("status", [400, 404, 422])
def test_bad_requests_are_not_retried(status: int) -> None:
    sleep = RecordingSleep()
    with OpenAIServer() as server:
        server.queue_error(status, "model 'nope' does not exist")
        with pytest.raises(ProviderRequestError) as caught:
            _complete(_model(server, sleep))
    assert caught.value.status == status
    assert "does not exist" in str(caught.value)
    assert len(server.requests) == 1 and sleep.calls == []


def test_a_timeout_is_retried() -> None:
    sleep = RecordingSleep()
    policy = RetryPolicy(max_attempts=2, initial_delay=0.5, jitter=0.0)
    with OpenAIServer() as server:
        server.queue_text("too late", delay=60.0)
        server.queue_text("in time")
        response = _complete(_model(server, sleep, retry=policy, timeout=1.5))
    assert response.text == "in time"
    assert sleep.calls == [0.5]


def test_a_dropped_connection_is_retried_then_reported() -> None:
    """A server that accepts and hangs up may be restarting: retried. (A refused
    connection is a wrong address, not retried: tests/test_control.py.)"""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def hang_up() -> None:
            with contextlib.suppress(OSError):
                while True:
                    conn, _ = listener.accept()
                    conn.close()

        threading.Thread(target=hang_up, daemon=True).start()
        sleep = RecordingSleep()
        model = OpenAIModel(
            "gpt-4o-mini",
            base_url=f"http://127.0.0.1:{port}/v1",
            sleep=sleep,
            retry=RetryPolicy(max_attempts=2, jitter=0.0),
        )
        with pytest.raises(ProviderUnavailableError, match="connection failed") as caught:
            _complete(model)
    assert caught.value.status is None and caught.value.attempts == 2
    assert sleep.calls == [1.0]


def test_usage_and_cost() -> None:
    prices = PriceTable.from_mapping({"my-model*": (2.0, 8.0)})
    with OpenAIServer(model="my-model-2025") as server:
        server.queue_text("hi", usage=(1000, 500))
        server.queue_text("hi", usage=None)
        server.queue_text("hi", model="unpriced-model")
        model = OpenAIModel("my-model", base_url=server.base_url, prices=prices)

        async def three() -> list[ModelResponse]:
            replies = [await model.complete(CONVERSATION) for _ in range(3)]
            await model.aclose()
            return replies

        priced, unreported, fallback = asyncio.run(three())
    assert priced.usage.input_tokens == 1000 and priced.usage.output_tokens == 500
    assert priced.usage.cost == pytest.approx((1000 * 2.0 + 500 * 8.0) / 1e6)
    assert not priced.usage.estimated
    assert unreported.usage.estimated and unreported.usage.input_tokens > 0
    # The reply names a model with no price: the configured name's price applies.
    assert fallback.model == "unpriced-model"
    assert fallback.usage.cost == pytest.approx((10 * 2.0 + 5 * 8.0) / 1e6)


def test_a_reply_naming_a_cheaper_model_costs_the_configured_price() -> None:
    # the server names the model: one that named a model 28 times cheaper than the one
    # configured made every call, and every cost limit, 28 times smaller
    prices = PriceTable.from_mapping({"gpt-4o": (2.5, 10.0), "gpt-5-nano": (0.05, 0.4)})
    with OpenAIServer() as server:
        server.queue_text("hi", usage=(1_000_000, 1_000_000), model="gpt-5-nano")
        server.queue_text("hi", usage=(1_000_000, 1_000_000), model="gpt-4o")
        configured_cheap = OpenAIModel("gpt-5-nano", base_url=server.base_url, prices=prices)
        configured_dear = OpenAIModel("gpt-4o", base_url=server.base_url, prices=prices)
        named_cheap = _complete(configured_dear)
        named_dear = _complete(configured_cheap)
    assert named_cheap.model == "gpt-5-nano" and named_cheap.usage.cost == pytest.approx(12.5)
    assert named_dear.usage.cost == pytest.approx(12.5)  # the dearer one named: it counts


def test_unknown_model_has_no_cost() -> None:
    with OpenAIServer(model="llama3.1:8b") as server:
        server.queue_text("hi")
        response = _complete(
            OpenAIModel("llama3.1:8b", base_url=server.base_url, prices=PriceTable())
        )
    assert response.usage.cost is None
    assert response.usage.input_tokens == 10


def test_official_api_needs_a_key_and_gets_max_completion_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIModel("gpt-4o")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    model = OpenAIModel("gpt-4o")
    assert model.base_url == "https://api.openai.com/v1"
    assert model.max_tokens_param == "max_completion_tokens"
    assert model._request(CONVERSATION, (), 100, None)["max_completion_tokens"] == 100


def test_block_guard_refuses_remote_and_allows_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRESTLE_BLOCK_MODEL_REQUESTS", "1")
    remote = OpenAIModel("gpt-4o", api_key="sk-test", base_url="https://api.openai.com/v1")
    with pytest.raises(ModelRequestBlockedError, match=r"api\.openai\.com"):
        _complete(remote)
    with OpenAIServer() as server:
        server.queue_text("local is fine")
        assert _complete(_model(server, RecordingSleep())).text == "local is fine"
    monkeypatch.delenv("TRESTLE_BLOCK_MODEL_REQUESTS")
    with block_model_requests(), pytest.raises(ModelRequestBlockedError):
        _complete(OpenAIModel("gpt-4o", api_key="k", base_url="http://10.0.0.1:8000/v1"))


def test_model_from_spec_builds_a_working_openai_model() -> None:
    with OpenAIServer() as server:
        server.queue_text("from spec")
        model = model_from_spec("openai:gpt-4o-mini", base_url=server.base_url)
        assert isinstance(model, OpenAIModel) and model.name == "openai:gpt-4o-mini"
        assert _complete(model).text == "from spec"


# -- what is read of an answer ------------------------------------------------------------


def _gzip_of_zeros(size: int) -> bytes:
    """A gzip body that decodes to ``size`` zero bytes (a thousandth of it, sent)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(1 << 20)
    return b"".join(packer.compress(block) for _ in range(size >> 20)) + packer.flush()


def test_an_answer_is_read_only_up_to_its_bound_decoded_and_never_again() -> None:
    # a 2 MB gzip that decodes to 2 GB held 4.2 GB of the driver's memory, read again on
    # each retry: it is now decoded a piece at a time and refused past the bound
    sleep = RecordingSleep()
    bomb = _gzip_of_zeros(ANSWER_BYTES_MOST + (8 << 20))
    long_plain = b" " * (ANSWER_BYTES_MOST + 1)
    with OpenAIServer() as server:
        for body in (bomb, long_plain):
            server.queue_raw(
                body,
                headers={"Content-Type": "application/json"}
                | ({"Content-Encoding": "gzip"} if body is bomb else {}),
            )
        for _ in range(2):
            with pytest.raises(ProviderResponseError) as refused:
                _complete(_model(server, sleep))
            assert f"answered with more than {ANSWER_BYTES_MOST:,} bytes, the most" in str(
                refused.value
            )
        assert len(server.requests) == 2 and sleep.calls == []  # neither was asked again
    assert all(r.headers["accept-encoding"] == "gzip, deflate" for r in server.requests)


def test_an_event_stream_the_request_did_not_ask_for_is_bounded_whole() -> None:
    # the client asks for no stream, so the SDK reads whatever comes whole: a server
    # answered with a gzipped "event stream" of 2 GB and it was read whole
    sleep = RecordingSleep()
    with OpenAIServer() as server:
        server.queue_raw(
            _gzip_of_zeros(ANSWER_BYTES_MOST + (8 << 20)),
            headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"},
        )
        with pytest.raises(ProviderResponseError, match=f"more than {ANSWER_BYTES_MOST:,} bytes"):
            _complete(_model(server, sleep))


def test_deflate_with_or_without_its_header_is_read_and_a_broken_body_is_not_retried() -> None:
    sleep = RecordingSleep()
    with OpenAIServer() as server:
        message = {"role": "assistant", "content": "packed"}
        reply = json.dumps(server.completion(message, finish_reason="stop", usage=(9, 1))).encode()
        raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)  # no zlib header, as some send
        for body in (zlib.compress(reply), raw.compress(reply) + raw.flush()):
            server.queue_raw(
                body, headers={"Content-Type": "application/json", "Content-Encoding": "deflate"}
            )
            assert _complete(_model(server, sleep)).text == "packed"
        server.queue_raw(
            b"\x1f\x8b\x08\x00 not gzip at all",
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        with pytest.raises(ProviderResponseError, match="does not decode as gzip, as it said"):
            _complete(_model(server, sleep))
        assert len(server.requests) == 3 and sleep.calls == []


def test_an_answer_in_an_encoding_not_asked_for_is_not_read_and_gzip_is() -> None:
    sleep = RecordingSleep()
    with OpenAIServer() as server:
        server.queue_raw(
            b"\x1b\x00\xf8\xa5",
            headers={"Content-Type": "application/json", "Content-Encoding": "br"},
        )
        with pytest.raises(
            ProviderResponseError, match=r"encoding the driver did not ask for \(br"
        ):
            _complete(_model(server, sleep))
        message = {"role": "assistant", "content": "packed"}
        reply = json.dumps(server.completion(message, finish_reason="stop", usage=(9, 1))).encode()
        server.queue_raw(
            gzip.compress(reply),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert _complete(_model(server, sleep)).text == "packed"


def test_a_usage_far_below_what_was_sent_is_not_believed() -> None:
    # a server reporting 0 tokens let a run make 16 calls under a limit that stopped the
    # same run after 4 with the true counts: a count under a 32nd of the estimate of
    # what was sent (or said) is replaced by the estimate
    long = (Message.system("You fix bugs."), Message.user("Fix it. " * 2_000))
    with OpenAIServer() as server:
        server.queue_text("The test passes now. " * 50, usage=(0, 0))
        server.queue_text("ok", usage=(3_000, 2))  # a true count: kept as it is
        model = _model(server, RecordingSleep())

        async def both() -> list[ModelResponse]:
            try:
                return [await model.complete(long) for _ in range(2)]
            finally:
                await model.aclose()

        zero, honest = asyncio.run(both())
    assert zero.usage.estimated and zero.usage.input_tokens > 3_000
    assert zero.usage.output_tokens > 200
    assert (honest.usage.input_tokens, honest.usage.output_tokens) == (3_000, 2)
    assert not honest.usage.estimated


def test_an_answer_trickled_a_byte_at_a_time_times_out_whole() -> None:
    # the SDK's timeout is a read's: a server sending a byte every 0.1 s never timed out
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        stop = threading.Event()

        def trickle() -> None:
            with contextlib.suppress(OSError):
                while not stop.is_set():
                    conn, _ = listener.accept()
                    with conn:
                        conn.recv(65536)
                        conn.sendall(
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            b"Content-Length: 100000\r\n\r\n"
                        )
                        while not stop.wait(0.1):
                            conn.sendall(b" ")

        server = threading.Thread(target=trickle, daemon=True)
        server.start()
        policy = RetryPolicy(max_attempts=2, initial_delay=0.01, jitter=0.0)
        model = OpenAIModel(
            "gpt-4o-mini",
            base_url=f"http://127.0.0.1:{port}/v1",
            sleep=RecordingSleep(),
            retry=policy,
            timeout=0.5,
        )
        try:
            with pytest.raises(ProviderUnavailableError, match=r"no whole answer within 0.5 s"):
                _complete(model)
        finally:
            stop.set()


def test_a_body_nested_past_what_json_can_read_is_an_unreadable_answer() -> None:
    """JSON nested 100,000 deep, answered with 200: the SDK's decoder raised a
    RecursionError, which crashed the run; it is an answer of an unexpected shape."""
    nested = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    with OpenAIServer() as server:
        server.queue_json(nested.decode())
        with pytest.raises(ProviderResponseError) as refused:
            _complete(_model(server, RecordingSleep()))
    assert "sent a body that could not be read: RecursionError" in str(refused.value)
