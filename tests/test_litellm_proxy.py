"""The coding agent through LiteLLM's proxy: an OpenAI-compatible server Trestle did not write.

Every other model test talks to Trestle's own loopback servers, which agree with
Trestle's client by construction. Here the real ``openai`` client talks to LiteLLM's
proxy (``scripts/setup-litellm.sh`` installs it into ``.venv-litellm``; ``make test``
runs the script), which parses what Trestle sends, forwards it under its own key to a
scripted upstream, and answers in its own words: its own ids, usage and error bodies.
Three of its models:

- ``test-model`` forwards to the scripted :class:`~trestle.testing.OpenAIServer`, so a
  whole agent run (understand, plan, execute, validate) goes through the proxy, with
  ``openai:`` through its OpenAI API and with ``anthropic:`` through its Anthropic API
  (which it translates to chat completions);
- ``limited-model`` is LiteLLM's mock of a rate-limited provider (HTTP 429, its body);
- ``down-model`` is its mock of a provider failing (HTTP 500).

The proxy is started once for the module (it takes seconds to import); each test
queues its own upstream replies and checks the requests that reached the upstream.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from test_agent_cli import CALC_TESTS, FINDINGS, PLAN, Cli, call, lines_starting, run_id_of
from trestle.agent.runtime import AgentPerformer
from trestle.core.events import ModelCalled, StepAttemptEnded
from trestle.core.records.agent import AgentSettings, bootstrap_plan
from trestle.core.state import RunState
from trestle.engines.local import LocalEngine
from trestle.lifecycle.runs import create_run
from trestle.models import RetryPolicy, model_from_spec
from trestle.models.openai import OpenAIModel
from trestle.store import SqliteStore
from trestle.testing import OpenAIServer, RecordingSleep

PROXY = Path(__file__).resolve().parents[1] / ".venv-litellm" / "bin" / "litellm"
MASTER_KEY = "sk-trestle-litellm-test-0123456789"
UPSTREAM_KEY = "sk-upstream-only"
MODEL = "test-model"
# Only guards against a hung process; no test asserts how long anything takes.
START_PATIENCE = 120.0

BUGGY = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
# (prompt, completion) tokens the upstream reports for each turn, distinct per turn
USAGE = [(101, 11), (202, 22), (303, 33), (404, 44), (505, 55)]


@dataclass(frozen=True)
class Proxy:
    base_url: str  # for the ``openai`` client: http://127.0.0.1:PORT/v1
    log: Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def config(upstream: OpenAIServer) -> str:
    mocks = {"limited-model": "litellm.RateLimitError", "down-model": "litellm.InternalServerError"}
    models: list[dict[str, Any]] = [
        {
            "model_name": MODEL,
            "litellm_params": {
                "model": f"openai/{MODEL}",
                "api_base": upstream.base_url,
                "api_key": UPSTREAM_KEY,
            },
        },
        *(
            {
                "model_name": name,
                "litellm_params": {"model": f"openai/{name}", "api_key": "x", "mock_response": m},
            }
            for name, m in mocks.items()
        ),
    ]
    # the proxy retries nothing itself: every retry seen is Trestle's
    settings = {
        "num_retries": 0,
        # Anthropic's API on the proxy is translated to chat completions, which the
        # upstream speaks (else to OpenAI's Responses API)
        "use_chat_completions_url_for_anthropic_messages": True,
    }
    return json.dumps({"model_list": models, "litellm_settings": settings})


def wait_until_up(proxy: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_PATIENCE
    while True:
        if proxy.poll() is not None:
            raise AssertionError(f"LiteLLM's proxy exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health/liveliness", timeout=2):
                return
        except (urllib.error.URLError, OSError) as exc:
            if time.monotonic() > deadline:
                said = log.read_text()[-3000:]
                raise AssertionError(f"LiteLLM's proxy never answered:\n{said}") from exc
            time.sleep(0.2)


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIServer]:
    with OpenAIServer(model=MODEL) as running:
        yield running


@pytest.fixture(scope="module")
def proxy(upstream: OpenAIServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    if not PROXY.exists():
        pytest.fail(f"{PROXY} is missing: run scripts/setup-litellm.sh (make test does)")
    where = tmp_path_factory.mktemp("litellm")
    (where / "config.json").write_text(config(upstream))  # YAML reads JSON
    log = where / "proxy.log"
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LITELLM_"))},
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of its price list
        "NO_PROXY": "127.0.0.1",
    }
    command = [str(PROXY), "--config", str(where / "config.json"), "--host", "127.0.0.1"]
    with log.open("wb") as out:
        running = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=where,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(running, url, log)
        yield Proxy(f"{url}/v1", log)
    finally:
        os.killpg(running.pid, signal.SIGKILL)
        running.wait()


@pytest.fixture
def cli(tmp_path: Path, _own_decision_key: Path) -> Cli:
    return Cli(tmp_path, tmp_path / "trestle.db", _own_decision_key)


def calc_repo(where: Path) -> Path:
    repo = where / "calc"
    repo.mkdir()
    (repo / "calc.py").write_text(BUGGY)
    (repo / "test_calc.py").write_text(
        "import unittest\n\nfrom calc import add\n\n\n"
        "class AddTest(unittest.TestCase):\n"
        "    def test_add(self) -> None:\n"
        "        self.assertEqual(add(2, 3), 5)\n"
    )
    return repo


def tool_result(body: dict[str, Any], call_id: str) -> str:
    for message in body["messages"]:
        if message["role"] == "tool" and message["tool_call_id"] == call_id:
            return str(message["content"])
    raise AssertionError(f"no tool result for {call_id!r} reached the upstream")


# --- a whole run through the proxy, as a user starts it ------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_trestle_agent_fixes_the_repository_through_litellm(
    cli: Cli, proxy: Proxy, upstream: OpenAIServer, provider: str
) -> None:
    """Through the proxy's OpenAI API, and through its Anthropic API, which it
    translates to the upstream's chat completions (tool calls and usage included)."""
    repo = calc_repo(cli.dir)
    seen = len(upstream.requests)
    upstream.queue_tool_calls(call("call_read", "read_file", path="calc.py"), usage=USAGE[0])
    upstream.queue_text(json.dumps(FINDINGS), usage=USAGE[1])
    upstream.queue_text(json.dumps(PLAN), usage=USAGE[2])
    upstream.queue_tool_calls(
        call("call_edit", "edit_file", path="calc.py", old="a - b", new="a + b"), usage=USAGE[3]
    )
    upstream.queue_tool_calls(call("call_finish", "finish", summary="add adds"), usage=USAGE[4])

    result = cli(
        "agent",
        "make add() return the sum",
        "--repo",
        repo,
        "--model",
        f"{provider}:{MODEL}",
        "--base-url",
        proxy.base_url if provider == "openai" else proxy.base_url.removesuffix("/v1"),
        "--test-command",
        CALC_TESTS,
        "--auto-plan",
        "--no-live",
        "--no-prompt",
        OPENAI_API_KEY=MASTER_KEY,
        ANTHROPIC_API_KEY=MASTER_KEY,
    )

    assert result.returncode == 0, result.stdout + result.stderr + proxy.log.read_text()[-3000:]
    assert lines_starting(result.stdout, "finished") == ["finished succeeded"]
    assert (repo / "calc.py").read_text() == FIXED
    # what reached the upstream is what Trestle sent, as the proxy passed it on
    assert upstream.pending == 0
    reached = upstream.requests[seen:]
    assert len(reached) == 5
    for request in reached:
        assert request.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"  # the proxy's own
        assert request.body["model"] == MODEL
    tools = [{t["function"]["name"] for t in r.body.get("tools", [])} for r in reached]
    assert "read_file" in tools[0] and not {"edit_file", "write_file", "finish"} & tools[0]
    assert {"edit_file", "run_command", "finish"} <= tools[3]
    assert "return a - b" in tool_result(reached[1].body, "call_read")
    assert "call_edit" in json.dumps(reached[4].body["messages"])
    # the proxy's answers were read as the upstream gave them: its usage, its tool calls
    events = cli.events(run_id_of(result))
    called = [e for e in events if e["kind"] == "model_called"]
    assert [(e["step"], e["turn"]) for e in called] == [
        ("understand", 1),
        ("understand", 2),
        ("plan", 1),
        ("fix-add", 1),
        ("fix-add", 2),
    ]
    usage = [
        (e["response"]["usage"]["input_tokens"], e["response"]["usage"]["output_tokens"])
        for e in called
    ]
    assert usage == USAGE
    assert not any(e["response"]["usage"]["estimated"] for e in called)
    [edit] = [e for e in events if e["kind"] == "tool_call_ended" and e["tool"] == "edit_file"]
    assert edit["ok"]


# --- its errors, in its own words ----------------------------------------------------------


@dataclass(frozen=True)
class Failed:
    state: RunState
    attempts: list[StepAttemptEnded]
    answered: int  # model calls recorded as answered
    slept: list[float]  # the client's backoffs, recorded, not waited


def drive_failing(tmp_path: Path, proxy: Proxy, model_name: str, api_key: str) -> Failed:
    """An agent run on ``model_name`` through the proxy, in this process, each call
    sent at most twice, 0.25 s apart (a recorded sleep: nothing waits)."""
    repo = calc_repo(tmp_path)
    sleep = RecordingSleep()
    policy = RetryPolicy(max_attempts=2, initial_delay=0.25, jitter=0.0)
    model = model_from_spec(
        f"openai:{model_name}", base_url=proxy.base_url, api_key=api_key, sleep=sleep, retry=policy
    )
    assert isinstance(model, OpenAIModel)
    settings = AgentSettings(
        model=f"openai:{model_name}", test_command=CALC_TESTS, plan_approval="auto"
    )
    store = SqliteStore(tmp_path / "runs.db")
    try:
        run_id = create_run(
            store, bootstrap_plan("make add() return the sum"), workspace=repo, agent=settings
        )

        async def go() -> RunState:
            engine = LocalEngine(store, performer=AgentPerformer(model))
            try:
                return await engine.run(run_id)
            finally:
                engine.close()
                await model.aclose()

        state = asyncio.run(go())
        events = [item.event for item in store.events(run_id)]
    finally:
        store.close()
    return Failed(
        state,
        [e for e in events if isinstance(e, StepAttemptEnded)],
        sum(isinstance(e, ModelCalled) for e in events),
        sleep.calls,
    )


def test_a_rate_limited_model_is_retried_then_its_attempts_fail_naming_the_proxy_and_its_words(
    tmp_path: Path, proxy: Proxy
) -> None:
    failed = drive_failing(tmp_path, proxy, "limited-model", MASTER_KEY)

    assert failed.state.finished != "succeeded"
    assert failed.answered == 0
    assert failed.attempts and not any(a.ok for a in failed.attempts)
    said = (
        "HTTP 429: litellm.RateLimitError: this is a mock rate limit error LiteLLM: model"
        " group 'limited-model' failed with the error above. No fallback was attempted."
        " (throttling_error)"
    )
    for attempt in failed.attempts:
        error = attempt.action.error or ""
        # its own words on one line, not its JSON body with escaped line breaks
        assert said in error and "\n" not in error and '{"error"' not in error, error
        for part in (proxy.base_url, "2 attempts"):
            assert part in error, error
    assert failed.slept == [0.25] * len(failed.attempts)  # one backoff per attempt


def test_a_failing_upstream_is_retried_then_reported_with_its_status(
    tmp_path: Path, proxy: Proxy
) -> None:
    failed = drive_failing(tmp_path, proxy, "down-model", MASTER_KEY)

    assert failed.state.finished != "succeeded" and failed.answered == 0
    for attempt in failed.attempts:
        error = attempt.action.error or ""
        for part in (proxy.base_url, "HTTP 500", "mock internal server error", "2 attempts"):
            assert part in error, error


def test_a_key_the_proxy_refuses_is_not_retried(tmp_path: Path, proxy: Proxy) -> None:
    failed = drive_failing(tmp_path, proxy, MODEL, "sk-not-the-proxy-key")

    assert failed.state.finished != "succeeded" and failed.answered == 0
    assert failed.slept == []  # a refusal is final: sent once per attempt
    for attempt in failed.attempts:
        assert proxy.base_url in (attempt.action.error or "")
