"""The model layer without HTTP: records, request hashes, pricing, token estimates,
retry timing, the scripted and function models, the request guard and lazy imports."""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from email.utils import formatdate
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from trestle.core.conversation import RequestHasher
from trestle.core.errors import (
    ConfigError,
    MissingExtraError,
    ModelRequestBlockedError,
    ProviderUnavailableError,
    RunError,
    ScriptExhaustedError,
)
from trestle.core.estimate import TokenTally
from trestle.models import (
    DEFAULT_PRICES,
    FunctionModel,
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    PriceTable,
    RetryPolicy,
    ScriptedModel,
    ToolCall,
    ToolSchema,
    Usage,
    block_model_requests,
    estimate_tokens,
    is_loopback_url,
    model_from_spec,
    model_requests_blocked,
    request_hash,
)
from trestle.models.guard import ensure_request_allowed
from trestle.models.provider import error_words
from trestle.models.retry import Retrier, RetryableFailure, parse_retry_after
from trestle.testing import RecordingSleep

TOOL = ToolSchema(
    name="edit_file",
    description="Replace text in a file.",
    parameters={
        "type": "object",
        "properties": {"path": {"type": "string"}, "old": {"type": "string"}},
        "required": ["path", "old"],
    },
)
CALL = ToolCall(id="c1", name="edit_file", arguments='{"path": "a.py", "old": "x"')
MESSAGES = (
    Message.system("Be careful."),
    Message.user("Fix it."),
    Message.assistant("Editing.", [CALL]),
    Message.tool("c1", "error: arguments are not valid JSON"),
)


# -- records ----------------------------------------------------------------------------


def test_records_round_trip_through_json() -> None:
    response = ModelResponse(
        text="done",
        tool_calls=(CALL,),
        usage=Usage(input_tokens=12, output_tokens=3, cost=0.25),
        finish_reason="tool_calls",
        model="gpt-4o-mini",
    )
    assert ModelResponse.model_validate_json(response.model_dump_json()) == response
    request = ModelRequest(model="m", messages=MESSAGES, tools=(TOOL,), max_tokens=9)
    again = ModelRequest.model_validate_json(request.model_dump_json())
    assert again == request and again.hash() == request.hash()
    # Malformed arguments survive a round trip byte for byte.
    assert again.messages[2].tool_calls[0].arguments == '{"path": "a.py", "old": "x"'
    listed = TypeAdapter(list[Message]).dump_json(list(MESSAGES))
    assert tuple(TypeAdapter(list[Message]).validate_json(listed)) == MESSAGES


def test_records_are_frozen_and_reject_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        CALL.name = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Message.model_validate({"role": "user", "content": "x", "extra": 1})


@pytest.mark.parametrize(
    "fields",
    [
        {"role": "user", "content": "x", "tool_calls": [CALL.model_dump()]},
        {"role": "tool", "content": "x"},
        {"role": "user", "content": "x", "tool_call_id": "c1"},
        {"role": "robot", "content": "x"},
    ],
)
def test_message_shape_is_checked(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Message.model_validate(fields)


def test_response_helpers() -> None:
    assert ModelResponse(text="  \n").is_empty
    assert not ModelResponse(tool_calls=(CALL,)).is_empty
    assert ModelResponse(text="hi", tool_calls=(CALL,)).to_message() == Message.assistant(
        "hi", [CALL]
    )
    assert Usage(input_tokens=2, output_tokens=3).total_tokens == 5


# -- request hash -----------------------------------------------------------------------


def test_request_hash_is_stable_and_sensitive() -> None:
    settings = {"model": "gpt-4o", "max_tokens": 100, "temperature": None}
    base = request_hash(MESSAGES, [TOOL], settings)
    assert len(base) == 64 and int(base, 16) >= 0
    # Same content, freshly built objects and reordered keys: same hash.
    rebuilt = [Message.model_validate_json(m.model_dump_json()) for m in MESSAGES]
    reordered_tool = ToolSchema(
        name="edit_file",
        description="Replace text in a file.",
        parameters=dict(reversed(list(TOOL.parameters.items()))),
    )
    reordered_settings = {"temperature": None, "max_tokens": 100, "model": "gpt-4o"}
    assert request_hash(rebuilt, [reordered_tool], reordered_settings) == base
    # Any change of content changes it.
    changed = [
        request_hash(MESSAGES[:-1], [TOOL], settings),
        request_hash(MESSAGES, [], settings),
        request_hash(MESSAGES, [TOOL], {**settings, "max_tokens": 101}),
        request_hash(MESSAGES, [TOOL], {**settings, "model": "gpt-4o-mini"}),
        request_hash([*MESSAGES[:-1], Message.tool("c1", "error: arguments")], [TOOL], settings),
    ]
    assert base not in changed and len(set(changed)) == len(changed)


def test_request_hash_is_pinned() -> None:
    # Recorded runs are replayed by this hash: a change here orphans every recording,
    # so it must be deliberate (bump the version inside request_hash when it is).
    digest = request_hash([Message.user("hello")], [], {"model": "m"})
    assert digest == request_hash([Message.user("hello")], [], {"model": "m"})
    canonical = (
        '{"messages":[{"content":"hello","role":"user","tool_call_id":null,"tool_calls":[]}],'
        '"settings":{"model":"m"},"tools":[],"v":"trestle-model-request/1"}'
    )
    assert digest == hashlib.sha256(canonical.encode()).hexdigest()


# -- pricing ----------------------------------------------------------------------------


def test_price_lookup_rules() -> None:
    table = PriceTable.from_mapping(
        {
            "gpt-4o*": (2.5, 10.0),
            "gpt-4o-mini*": (0.15, 0.6),
            "gpt-4o-mini-special": (1.0, 1.0),
        }
    )
    assert table.cost("gpt-4o-2024-08-06", 1_000_000, 0) == pytest.approx(2.5)
    assert table.cost("gpt-4o-mini-2024-07-18", 0, 1_000_000) == pytest.approx(0.6)
    assert table.cost("gpt-4o-mini-special", 1_000_000, 1_000_000) == pytest.approx(2.0)
    assert table.cost("llama3", 10, 10) is None
    assert table.price_for("GPT-4O") is None  # names are case-sensitive
    overridden = table.with_prices({"gpt-4o*": (1.0, 2.0)})
    assert overridden.cost("gpt-4o", 1_000_000, 1_000_000) == pytest.approx(3.0)
    assert table.cost("gpt-4o", 1_000_000, 1_000_000) == pytest.approx(12.5)


def test_patterns_that_start_or_hide_a_glob_still_match() -> None:
    # the literal text before a pattern's first glob character is checked first
    table = PriceTable.from_mapping(
        {"*-mini": (1.0, 0.0), "o?-pro*": (2.0, 0.0), "gpt-[45]o": (3.0, 0.0)}
    )
    assert table.cost("o1-mini", 1_000_000, 0) == pytest.approx(1.0)
    assert table.cost("o3-pro-2025", 1_000_000, 0) == pytest.approx(2.0)
    assert table.cost("gpt-5o", 1_000_000, 0) == pytest.approx(3.0)
    assert table.price_for("gpt-6o") is None
    assert table.price_for("xo3-pro") is None


def test_default_prices_cover_common_models() -> None:
    for model in ("gpt-4o-mini", "gpt-4.1", "claude-sonnet-4-6", "claude-3-5-haiku-latest"):
        assert DEFAULT_PRICES.price_for(model) is not None, model
    assert DEFAULT_PRICES.price_for("qwen2.5-coder:7b") is None


@pytest.mark.parametrize("pair", [(1.0,), (-1.0, 2.0), ("cheap", 1.0)])
def test_bad_price_entries_are_config_errors(pair: tuple[object, ...]) -> None:
    with pytest.raises(ConfigError, match="'m\\*'"):
        PriceTable.from_mapping({"m*": pair})  # type: ignore[dict-item]


# -- token estimate ---------------------------------------------------------------------


def test_estimate_tokens_heuristic() -> None:
    # 3 (reply) + 4 (framing) + ceil(10 / 4) = 10
    assert estimate_tokens([Message.user("0123456789")]) == 10
    assert estimate_tokens([]) == 3
    short = estimate_tokens([Message.user("hi")])
    long = estimate_tokens([Message.user("hi " * 400)])
    assert long - short == pytest.approx(300, abs=2)
    with_tool = estimate_tokens([Message.user("hi")], [TOOL])
    assert with_tool > short
    assert estimate_tokens(MESSAGES, [TOOL]) == estimate_tokens(MESSAGES, [TOOL])
    with_call = estimate_tokens([Message.assistant("", [CALL])])
    assert with_call > estimate_tokens([Message.assistant("")])


# -- retry ------------------------------------------------------------------------------


def test_parse_retry_after() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after({"Retry-After": "3"}, now) == 3.0
    assert parse_retry_after({"retry-after": "0.5"}, now) == 0.5
    assert parse_retry_after({"Retry-After": formatdate(now + 30, usegmt=True)}, now) == 30.0
    assert parse_retry_after({"Retry-After": formatdate(now - 30, usegmt=True)}, now) == 0.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}, now) == 0.25
    assert parse_retry_after({"Retry-After": "soon"}, now) is None
    assert parse_retry_after({}, now) is None


def _flaky(
    failures: Sequence[RetryableFailure], result: str = "ok"
) -> tuple[list[int], Callable[[], Awaitable[str]]]:
    calls: list[int] = []

    async def send() -> str:
        calls.append(1)
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        return result

    return calls, send


def test_backoff_doubles_with_bounded_jitter() -> None:
    policy = RetryPolicy(max_attempts=6, initial_delay=1.0, max_delay=8.0, max_total_wait=1e6)
    sleep = RecordingSleep()
    retrier = Retrier(policy, sleep=sleep, rng=random.Random(7))
    calls, send = _flaky([RetryableFailure("HTTP 503", status=503)] * 5)
    assert asyncio.run(retrier.run(send, provider="p", target="t")) == "ok"
    assert len(calls) == 6
    for delay, ceiling in zip(sleep.calls, [1.0, 2.0, 4.0, 8.0, 8.0], strict=True):
        assert ceiling * (1 - policy.jitter) <= delay <= ceiling


def test_total_wait_budget_bounds_retries() -> None:
    policy = RetryPolicy(max_attempts=10, initial_delay=4.0, jitter=0.0, max_total_wait=10.0)
    sleep = RecordingSleep()
    retrier = Retrier(policy, sleep=sleep)
    calls, send = _flaky([RetryableFailure("timed out")] * 10)
    with pytest.raises(ProviderUnavailableError, match="retry budget") as caught:
        asyncio.run(retrier.run(send, provider="p", target="http://x"))
    assert sleep.calls == [4.0]  # 4 + 8 would pass 10
    assert caught.value.attempts == len(calls) == 2
    assert isinstance(caught.value.__cause__, RetryableFailure)


def test_retry_policy_is_validated() -> None:
    with pytest.raises(ConfigError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigError, match="jitter"):
        RetryPolicy(jitter=1.5)


# -- scripted and function models ------------------------------------------------------


def test_scripted_model_replies_in_order_and_records_requests() -> None:
    reply = ModelResponse(tool_calls=(CALL,), finish_reason="tool_calls")
    model = ScriptedModel([reply, "all done"])
    assert isinstance(model, Model)

    async def go() -> list[ModelResponse]:
        first = await model.complete(MESSAGES[:2], [TOOL], max_tokens=50)
        second = await model.complete(MESSAGES, [TOOL], temperature=0.5)
        return [first, second]

    first, second = asyncio.run(go())
    assert first.tool_calls == (CALL,) and first.model == "scripted"
    assert second.text == "all done" and second.usage.estimated
    assert second.usage.input_tokens == estimate_tokens(MESSAGES, [TOOL])
    assert [r.max_tokens for r in model.requests] == [50, None]
    assert model.requests[1].messages == MESSAGES and model.requests[1].temperature == 0.5
    assert model.remaining == 0


def test_scripted_model_fails_loudly_when_it_runs_out() -> None:
    model = ScriptedModel(["only one"], name="tiny")
    asyncio.run(model.complete([Message.user("first")]))
    with pytest.raises(ScriptExhaustedError, match=r"'tiny'.*#2.*held 1.*'second'") as caught:
        asyncio.run(model.complete([Message.user("second")]))
    assert isinstance(caught.value, RunError)


def test_function_model_sync_and_async() -> None:
    def echo(messages: Sequence[Message], tools: Sequence[ToolSchema]) -> str:
        return f"{len(messages)} messages, {len(tools)} tools: {messages[-1].content}"

    async def tool_caller(
        messages: Sequence[Message], tools: Sequence[ToolSchema]
    ) -> ModelResponse:
        await asyncio.sleep(0)
        return ModelResponse(tool_calls=(ToolCall(id="x", name=tools[0].name),), model="fn-model")

    async def go() -> tuple[ModelResponse, ModelResponse]:
        return (
            await FunctionModel(echo).complete([Message.user("hey")]),
            await FunctionModel(tool_caller).complete([Message.user("hey")], [TOOL]),
        )

    text, call = asyncio.run(go())
    assert text.text == "1 messages, 0 tools: hey" and text.model == "function"
    assert call.tool_calls[0].name == "edit_file" and call.model == "fn-model"


# -- guard, spec, extras, lazy imports --------------------------------------------------


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8000/v1", True),
        ("http://127.5.6.7/v1", True),
        ("http://localhost:11434/v1", True),
        ("http://[::1]:8080", True),
        ("https://api.openai.com/v1", False),
        ("http://10.0.0.5:8000/v1", False),
        ("http://127.0.0.1.example.com/v1", False),
        ("not a url", False),
    ],
)
def test_is_loopback_url(url: str, local: bool) -> None:
    assert is_loopback_url(url) is local


def test_block_switch_env_and_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRESTLE_BLOCK_MODEL_REQUESTS", raising=False)
    assert not model_requests_blocked()
    ensure_request_allowed("openai", "https://api.openai.com/v1")
    with block_model_requests():
        assert model_requests_blocked()
        ensure_request_allowed("openai", "http://localhost:8000/v1")
        with pytest.raises(ModelRequestBlockedError, match="TRESTLE_BLOCK_MODEL_REQUESTS"):
            ensure_request_allowed("openai", "https://api.openai.com/v1")
    assert not model_requests_blocked()
    for value, blocked in [("1", True), ("true", True), ("0", False), ("off", False)]:
        monkeypatch.setenv("TRESTLE_BLOCK_MODEL_REQUESTS", value)
        assert model_requests_blocked() is blocked
    monkeypatch.setenv("TRESTLE_BLOCK_MODEL_REQUESTS", "1")
    with block_model_requests(False):
        assert not model_requests_blocked()


@pytest.mark.parametrize("spec", ["gpt-4o", "openai:", ":gpt-4o", "gemini:pro"])
def test_bad_model_specs(spec: str) -> None:
    with pytest.raises(ConfigError, match=repr(spec)):
        model_from_spec(spec)


@pytest.mark.parametrize(
    ("module", "cls"), [("openai", "OpenAIModel"), ("anthropic", "AnthropicModel")]
)
def test_missing_sdk_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, module: str, cls: str
) -> None:
    import trestle.models

    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    provider = getattr(trestle.models, cls)
    with pytest.raises(MissingExtraError) as caught:
        provider("some-model", api_key="k", base_url="http://127.0.0.1:1")
    assert f'pip install "trestle-runtime[{module}]"' in str(caught.value)


def test_importing_trestle_does_not_import_the_sdks() -> None:
    code = (
        "import sys, trestle, trestle.models, trestle.testing, trestle.cli.app\n"
        "from trestle.models import OpenAIModel, AnthropicModel\n"
        "print(sorted(m for m in ('openai', 'anthropic') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


# -- docs -------------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs" / "models.md"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def test_docs_code_blocks_run(monkeypatch: pytest.MonkeyPatch) -> None:
    # Keys let the examples build providers; the block keeps any request off the network.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-docs")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-docs")
    monkeypatch.setenv("TRESTLE_BLOCK_MODEL_REQUESTS", "1")
    blocks = _python_blocks(DOCS.read_text(encoding="utf-8"))
    assert len(blocks) >= 6
    for number, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"{DOCS.name} block {number}", "exec"), {})
        except Exception as exc:  # name the block that broke
            raise AssertionError(f"docs/models.md code block {number} failed: {exc!r}") from exc


def conversations(seed: int, turns: int) -> Iterator[tuple[list[Message], list[ToolSchema]]]:
    """A conversation as an agent sends it, turn after turn: it grows, is compressed
    (the same start, new messages after it), is cut short, or begins with an equal
    message that is another object; and the tools offered with it."""
    rng = random.Random(seed)
    tools = [ToolSchema(name="read_file", description="read", parameters={"type": "object"})]
    conversation: list[Message] = [Message.system("frame ü"), Message.user('task "q"')]
    for turn in range(turns):
        choice = rng.random()
        if choice < 0.5:
            conversation = [*conversation, Message.user(f"turn {turn} " * rng.randint(0, 40))]
        elif choice < 0.6:  # an answer asking for a tool
            asked = ToolCall(id=f"c{turn}", name="read_file", arguments='{"path": "a.py"}' * turn)
            conversation = [*conversation, Message.assistant("", tool_calls=[asked])]
        elif choice < 0.75:
            conversation = [*conversation[:2], Message.user(f"summary {turn} " * turn)]
        elif choice < 0.85:
            conversation = conversation[: rng.randint(0, len(conversation))]
        else:
            conversation = [Message.system("frame ü"), *conversation[1:]]
        yield conversation, tools if turn % 3 else []


def test_the_token_tally_gives_estimate_tokens_for_every_conversation() -> None:
    tally = TokenTally()
    for conversation, offered in conversations(16, 80):
        assert tally(conversation, offered) == estimate_tokens(conversation, offered)


def test_the_incremental_hasher_gives_request_hash_for_every_conversation() -> None:
    hasher = RequestHasher()
    for turn, (conversation, offered) in enumerate(conversations(15, 80)):
        settings = {"model": "m", "max_tokens": turn, "temperature": None}
        assert hasher.hash(conversation, offered, settings) == request_hash(
            conversation, offered, settings
        )


@pytest.mark.parametrize(
    ("body", "words"),
    [
        # OpenAI's shape, as LiteLLM's proxy sends it: a message over lines, a type
        (
            '{"error": {"message": "litellm.RateLimitError: mock\\n\\nLiteLLM: model group'
            ' \'m\' failed", "type": "throttling_error", "code": "429"}}',
            "litellm.RateLimitError: mock LiteLLM: model group 'm' failed (throttling_error)",
        ),
        # Anthropic's
        (
            '{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
            "Overloaded (overloaded_error)",
        ),
        (
            '{"error": "model \\"x\\" not found, try pulling it first"}',
            'model "x" not found, try pulling it first',
        ),
        ('{"error": {"message": "no type"}}', "no type"),
        # anything else is shown as it came
        ("<html>Bad Gateway</html>", None),
        ('{"detail": "Not Found"}', None),
        ('{"error": {"message": "   "}}', None),
        ('{"error": 3}', None),
        ("[1, 2]", None),
    ],
)
def test_an_api_error_body_is_told_by_its_own_words(body: str, words: str | None) -> None:
    assert error_words(body) == words
