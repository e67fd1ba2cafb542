"""An agent run whose model server moves, refuses the key, or answers with a web page.

Each test drives ``trestle agent`` and ``trestle resume`` (the console script in a
subprocess, a real SQLite store) through the real ``openai`` client against loopback
servers on 127.0.0.1: the chat completions server of :mod:`trestle.testing`, and for an
HTML error page sent as ``text/plain`` a tiny :mod:`http.server`. What is checked is
what an operator sees: the exit code, the message, the run's log, and that no step's
attempts were spent on a model that could not be used.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from test_agent_cli import CALC_TESTS, FINDINGS, PLAN, Cli, call, flat, run_id_of
from test_model_use import calc_repo
from trestle.core.conversation import Message
from trestle.core.errors import ProviderError, ProviderResponseError
from trestle.core.events import ModelRebound, RequestRefused, RunCreated
from trestle.core.plan import Plan, Step
from trestle.core.records.agent import AgentSettings
from trestle.core.state import RunState
from trestle.engines.judge import request_as_events
from trestle.models import model_from_spec
from trestle.store.base import Request
from trestle.testing import OpenAIServer, ScriptedReply

MODEL = "test-model"
GOAL = "make add() return the sum"


@pytest.fixture
def cli(tmp_path: Path, _own_decision_key: Path) -> Cli:
    return Cli(tmp_path, tmp_path / "trestle.db", _own_decision_key)


def start_agent(cli: Cli, base_url: str) -> subprocess.CompletedProcess[str]:
    return cli(
        "agent",
        GOAL,
        "--repo",
        cli.dir / "calc",
        "--model",
        f"openai:{MODEL}",
        "--base-url",
        base_url,
        "--test-command",
        CALC_TESTS,
        "--no-live",
        "--no-prompt",
        OPENAI_API_KEY="x",
    )


def kinds(cli: Cli, run_id: str) -> list[str]:
    return [e["kind"] for e in cli.events(run_id)]


def queue_the_fix(server: OpenAIServer) -> None:
    server.queue_tool_calls(call("c2", "edit_file", path="calc.py", old="a - b", new="a + b"))
    server.queue_tool_calls(call("c3", "finish", summary="add adds"))


def test_resume_points_a_run_at_its_moved_server_and_records_it(cli: Cli) -> None:
    calc_repo(cli.dir / "calc")
    with OpenAIServer(model=MODEL) as old:
        old.queue_tool_calls(call("c1", "read_file", path="calc.py"))
        old.queue_text(json.dumps(FINDINGS))
        old.queue_text(json.dumps(PLAN))
        started = start_agent(cli, old.base_url)
        old_url = old.base_url
    assert started.returncode == 3, started.stdout + started.stderr  # the plan's review
    run_id = run_id_of(started)
    assert cli("approve", f"{run_id}.1").returncode == 0
    before = kinds(cli, run_id)

    # the server is gone: resume says so and what to do, and drives nothing
    dead = cli("resume", run_id, "--no-live", "--no-prompt", OPENAI_API_KEY="x")
    assert dead.returncode == 2, dead.stdout + dead.stderr
    said = flat(dead.stderr)
    assert f"run {run_id}: its model's server: cannot connect to {old_url!r}" in said
    assert f"`trestle resume {run_id} --base-url URL`" in said
    assert kinds(cli, run_id) == before  # nothing recorded, no attempt spent

    with OpenAIServer(model=MODEL) as new:
        queue_the_fix(new)
        moved = cli(
            "resume", run_id, "--base-url", new.base_url, "--no-live", "--no-prompt",
            OPENAI_API_KEY="x",
        )  # fmt: skip
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert new.pending == 0 and len(new.requests) == 2
    assert f"model of run {run_id}: openai:{MODEL} at {new.base_url}" in moved.stdout
    assert (cli.dir / "calc" / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    [rebound] = [e for e in cli.events(run_id) if e["kind"] == "model_rebound"]
    assert (rebound["model"], rebound["base_url"]) == (f"openai:{MODEL}", new.base_url)
    assert rebound["was"] == {"base_url": old_url}
    log = flat(cli("log", run_id).stdout)
    assert "model_rebound │ │ │ by " in log and f"base_url {old_url} -> {new.base_url}" in log
    # the same binding again changes nothing and records nothing
    again = cli("resume", run_id, "--base-url", new.base_url, "--no-live", "--no-prompt")
    assert again.returncode == 0, again.stdout + again.stderr
    assert kinds(cli, run_id).count("model_rebound") == 1


def test_a_refused_key_stops_the_run_at_once_without_spending_an_attempt(cli: Cli) -> None:
    calc_repo(cli.dir / "calc")
    with OpenAIServer(model=MODEL) as server:
        server.queue(ScriptedReply(401, server.error_body(401, "Incorrect API key provided")))
        refused = start_agent(cli, server.base_url)
        assert len(server.requests) == 1  # not retried

        assert refused.returncode == 2, refused.stdout + refused.stderr
        run_id = run_id_of(refused)
        said = flat(refused.stderr)
        assert "refused the credentials (HTTP 401)" in said
        assert "Incorrect API key provided" in said
        assert "--api-key-env NAME" in said
        events = cli.events(run_id)
        assert [e["kind"] for e in events].count("step_started") == 1
        assert "step_attempt_ended" not in [e["kind"] for e in events]
        [stopped] = [e for e in events if e["kind"] == "run_interrupted"]
        assert stopped["by"] == "the model (openai refused the key, HTTP 401)"
        assert stopped["stopped"] == ["understand"]
        shown = flat(cli("show", run_id).stdout)
        assert f"point the run elsewhere: `trestle resume {run_id} --base-url URL`" in shown

        # with the right key the same step goes on, its attempts untouched
        server.queue_tool_calls(call("c1", "read_file", path="calc.py"))
        server.queue_text(json.dumps(FINDINGS))
        server.queue_text(json.dumps(PLAN))
        resumed = cli(
            "resume", run_id, "--api-key-env", "CALC_KEY", "--no-live", "--no-prompt",
            CALC_KEY="right",
        )  # fmt: skip
        assert resumed.returncode == 3, resumed.stdout + resumed.stderr  # the plan's review
        assert [r.headers["authorization"] for r in server.requests[1:]] == ["Bearer right"] * 3
    shown = cli.json("show", run_id)
    [understand] = [s for s in shown["steps"] if s["id"] == "understand"]
    assert (understand["category"], understand["failed_attempts"]) == ("done", 0)
    [rebound] = [e for e in cli.events(run_id) if e["kind"] == "model_rebound"]
    assert (rebound["api_key_env"], rebound["was"]) == ("CALC_KEY", {"api_key_env": None})
    # feedback export lists the rebind as a human act: who, what changed, what followed
    exported = cli("feedback", "export")
    assert exported.returncode == 0, exported.stderr
    [act] = [r for r in map(json.loads, exported.stdout.splitlines()) if r["act"] == "rebind"]
    assert act["by"] and act["decision"] == "rebound" and act["request_id"] is None
    assert act["proposed"] == {"model": f"openai:{MODEL}", "base_url": server.base_url,
                               "api_key_env": None}  # fmt: skip
    assert act["changed"] == {"api_key_env": {"from": None, "to": "CALC_KEY"}}
    assert act["next"]["run"] == "needs_human"  # the plan's review, once it went on


class _HeldThenRefused(BaseHTTPRequestHandler):
    """A model server that holds each request until the test lets it go, then refuses
    the key (HTTP 401)."""

    arrived = threading.Event()
    let_go = threading.Event()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        type(self).arrived.set()
        type(self).let_go.wait(60)
        body = json.dumps({"error": {"message": "revoked", "type": "invalid_request_error"}})
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_rebind_of_a_run_another_process_drives_locally_is_refused(cli: Cli) -> None:
    calc_repo(cli.dir / "calc")
    _HeldThenRefused.arrived.clear()  # a test run again in this process starts afresh
    _HeldThenRefused.let_go.clear()
    held = ThreadingHTTPServer(("127.0.0.1", 0), _HeldThenRefused)
    threading.Thread(target=held.serve_forever, daemon=True).start()
    try:
        with OpenAIServer(model=MODEL) as other:
            driver = subprocess.Popen(
                [sys.executable, "-m", "trestle", "agent", GOAL, "--repo", cli.dir / "calc",
                 "--model", f"openai:{MODEL}",
                 "--base-url", f"http://127.0.0.1:{held.server_port}/v1",
                 "--test-command", CALC_TESTS, "--no-live", "--no-prompt"],
                cwd=cli.dir, env=cli.env(OPENAI_API_KEY="x"),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert driver.stdout is not None
            run_id = driver.stdout.readline().removeprefix("run ").split(":", 1)[0]
            # its first model call is in flight: the first process drives the run
            assert _HeldThenRefused.arrived.wait(60), driver.communicate()
            refused = cli("resume", run_id, "--base-url", other.base_url)
            _HeldThenRefused.let_go.set()
            driver.communicate(timeout=60)
            assert not other.requests
    finally:
        _HeldThenRefused.let_go.set()
        held.shutdown()
        held.server_close()
    # that process built its model when it started: a rebind it would not act on is
    # refused, not recorded
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert "is being driven by" in refused.stderr and "stop it first" in refused.stderr
    assert "model_rebound" not in kinds(cli, run_id)
    assert driver.returncode == 2


def test_a_queued_rebind_is_judged_against_the_run_as_it_is() -> None:
    agent = AgentSettings(model=f"openai:{MODEL}", base_url="http://127.0.0.1:1/v1")
    plan = Plan(goal=GOAL, steps=(Step(id="s", run="true"),))
    state = RunState.from_created(
        RunCreated(at=0.0, run_id="r", plan=plan, workspace="/ws", agent=agent)
    )
    fields: dict[str, Any] = {"run_id": "r", "kind": "tell", "step": "", "by": "ana"}
    fields |= {"change": "rebind", "reason": "", "model": agent.model, "api_key_env": None}

    def judged(base_url: str | None) -> Any:
        request = Request(id=7, run_id="r", kind="tell", step="", reason="", created_at=0.0)
        [event] = request_as_events(state, request, fields | {"base_url": base_url}, 1.0, tell=None)
        return event

    moved = judged("http://127.0.0.1:2/v1")
    assert isinstance(moved, ModelRebound)
    assert (moved.by, moved.request_id, moved.was) == ("ana", 7, {"base_url": agent.base_url})
    same = judged(agent.base_url)  # nothing to change: refused, said as a rebind
    assert isinstance(same, RequestRefused)
    assert (same.request, same.reason) == ("rebind", "the run is bound so already")
    assert judged(None).model_dump()["kind"] == "model_rebound"  # back to the default


class _Answering(BaseHTTPRequestHandler):
    """Answers every POST with :attr:`status` and :attr:`body` as text/plain, and
    counts them (:attr:`requests`)."""

    status = 200
    body = b""
    requests = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        type(self).requests += 1
        self.send_response(self.status)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _HtmlPage(_Answering):
    """A proxy's error page, sent with status 200 as text/plain."""

    body = b"<html><body><h1>Bad Gateway</h1><p>upstream is down</p></body></html>"


@pytest.fixture
def html_page() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlPage)
    _HtmlPage.requests = 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_an_html_page_sent_as_text_is_a_provider_error_not_an_empty_answer(
    cli: Cli, html_page: str
) -> None:
    calc_repo(cli.dir / "calc")
    result = start_agent(cli, html_page)

    assert result.returncode == 3, result.stdout + result.stderr  # dead-lettered
    run_id = run_id_of(result)
    [understand] = [s for s in cli.json("show", run_id)["steps"] if s["id"] == "understand"]
    assert "answered with a body that is not JSON" in understand["error"]
    assert "<h1>Bad Gateway</h1>" in understand["error"]
    assert "malformed" not in json.dumps(cli.events(run_id))
    # one request per attempt: a failed call ends the attempt, no turn is retried on it
    assert _HtmlPage.requests == understand["attempts"] == 2


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_both_providers_call_a_page_that_is_not_json_a_provider_error(
    html_page: str, provider: str
) -> None:
    model = model_from_spec(f"{provider}:some-model", base_url=html_page, api_key="x")

    with pytest.raises(ProviderResponseError, match="answered with a body that is not JSON") as e:
        asyncio.run(model.complete([Message(role="user", content="hi")]))

    assert e.value.body is not None and "<h1>Bad Gateway</h1>" in e.value.body
    assert _HtmlPage.requests == 1  # not retried


class _PlainRefusal(_Answering):
    """A server refusing the request with a body of plain text on several lines."""

    status = 400
    body = b"refused\n  - FAKE: all verified, nothing to check\n"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_refusals_body_is_quoted_on_one_line(provider: str) -> None:
    """The error's message becomes the step's error, a line of the report and of the
    progress: a body's own lines ('  - FAKE: all verified') read as lines of them."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PlainRefusal)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}/v1"
    model = model_from_spec(f"{provider}:some-model", base_url=base, api_key="x")
    try:
        with pytest.raises(ProviderError) as e:
            asyncio.run(model.complete([Message(role="user", content="hi")]))
    finally:
        server.shutdown()
        server.server_close()
    assert "refused - FAKE: all verified, nothing to check" in str(e.value), str(e.value)
    assert "\n" not in str(e.value) and e.value.body is not None and "\n" in e.value.body
