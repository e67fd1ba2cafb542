"""An agent run on the Temporal engine whose model refuses its key, then moves: on the
real dev server, a real ``trestle worker`` and the real ``openai`` client against
:mod:`trestle.testing`'s loopback server on 127.0.0.1.

A refused key stops the workflow's drive without spending the step's attempt, and the
command following the run exits 2 naming ``trestle resume RUN --base-url``; resuming
with the server's new address records the rebind and the run goes on there. Pointed
elsewhere while the workflow drives, the rebind is queued, signed, for the workflow to
record (a forged one is refused), and the attempt the old server then refuses is run
again on the new one at once, uncounted."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from temporal_helpers import Workers, wait_for
from test_agent_cli import FINDINGS, PLAN, call, flat, run_id_of
from test_cli import Cli
from test_model_use import calc_repo
from trestle.store import SqliteStore
from trestle.testing import OpenAIServer, ScriptedReply
from trestle.trust.signing import signed_payload

pytestmark = pytest.mark.slow
MODEL = "test-model"


def events(cli: Cli, run_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = cli.json("log", run_id)
    return found


def test_a_refused_key_pauses_the_workflow_and_a_moved_server_takes_the_run_on(
    tmp_path: Path, _own_decision_key: Path, address: str
) -> None:
    cli = Cli(tmp_path, tmp_path / "trestle.db")
    calc_repo(cli.dir / "calc")
    workers = Workers(cli, address, OPENAI_API_KEY="x")
    try:
        workers.start()
        with OpenAIServer(model=MODEL) as old:
            old.queue(ScriptedReply(401, old.error_body(401, "Incorrect API key provided")))
            refused = workers.run(
                "agent", "make add() return the sum", "--repo", cli.dir / "calc",
                "--model", f"openai:{MODEL}", "--base-url", old.base_url,
                "--no-live", "--no-prompt", *workers.flags(),
            )  # fmt: skip
            assert len(old.requests) == 1  # not retried
        assert refused.returncode == 2, refused.stdout + refused.stderr
        run_id = run_id_of(refused)
        said = flat(refused.stderr)
        assert "openai refused the key, HTTP 401" in said
        assert f"`trestle resume {run_id} --base-url URL`" in said
        kinds = [e["kind"] for e in events(cli, run_id)]
        assert "step_attempt_ended" not in kinds
        [stopped] = [e for e in events(cli, run_id) if e["kind"] == "run_interrupted"]
        assert stopped["by"] == "the model (openai refused the key, HTTP 401)"
        assert stopped["stopped"] == ["understand"]

        with OpenAIServer(model=MODEL) as new:  # the server came back on another port
            new.queue_tool_calls(call("c1", "read_file", path="calc.py"))
            new.queue_text(json.dumps(FINDINGS))
            new.queue_text(json.dumps(PLAN))
            moved = workers.run("resume", run_id, "--base-url", new.base_url, "--no-live")
            assert moved.returncode == 3, moved.stdout + moved.stderr  # the plan's review
            assert new.pending == 0
        assert f"model of run {run_id}: openai:{MODEL} at {new.base_url}" in moved.stdout
        [rebound] = [e for e in events(cli, run_id) if e["kind"] == "model_rebound"]
        assert rebound["was"] == {"base_url": old.base_url}
        [understand] = [s for s in cli.json("show", run_id)["steps"] if s["id"] == "understand"]
        assert (understand["category"], understand["failed_attempts"]) == ("done", 0)
    finally:
        workers.stop()


class _RefusesWhenLetGo(BaseHTTPRequestHandler):
    """A model server that holds each request until the test lets it go, then refuses
    the key (HTTP 401)."""

    arrived = threading.Event()
    let_go = threading.Event()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        type(self).arrived.set()
        type(self).let_go.wait(60)
        body = json.dumps({"error": {"message": "key revoked", "type": "invalid_request_error"}})
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_rebind_while_the_workflow_drives_is_queued_and_the_run_goes_on(
    tmp_path: Path, _own_decision_key: Path, address: str
) -> None:
    cli = Cli(tmp_path, tmp_path / "trestle.db")
    calc_repo(cli.dir / "calc")
    workers = Workers(cli, address, OPENAI_API_KEY="x")
    _RefusesWhenLetGo.arrived.clear()  # a test run again in this process starts afresh
    _RefusesWhenLetGo.let_go.clear()
    old = ThreadingHTTPServer(("127.0.0.1", 0), _RefusesWhenLetGo)
    threading.Thread(target=old.serve_forever, daemon=True).start()
    old_url = f"http://127.0.0.1:{old.server_port}/v1"
    try:
        workers.start()
        agent = workers.start_run(
            "agent", "make add() return the sum", "--repo", cli.dir / "calc",
            "--model", f"openai:{MODEL}", "--base-url", old_url, "--no-live", "--no-prompt",
            *workers.flags(),
        )  # fmt: skip
        assert agent.stdout is not None
        run_id = agent.stdout.readline().removeprefix("run ").split(":", 1)[0]
        assert _RefusesWhenLetGo.arrived.wait(60)  # the attempt is in flight

        store = SqliteStore(cli.store)
        forged: dict[str, str | None] = {"run_id": run_id, "kind": "tell", "by": "mallory"}
        forged |= {"step": "", "change": "rebind", "reason": "", "model": f"openai:{MODEL}"}
        forged |= {"base_url": "http://127.0.0.1:9/v1", "api_key_env": None}
        payload = signed_payload(forged, b"not the key" * 3)
        store.add_request(run_id, "tell", "", "", now=0.0, payload=payload)
        with OpenAIServer(model=MODEL) as new:
            new.queue_tool_calls(call("c1", "read_file", path="calc.py"))
            new.queue_text(json.dumps(FINDINGS))
            new.queue_text(json.dumps(PLAN))
            resume = workers.start_run("resume", run_id, "--base-url", new.base_url, "--no-live")

            def rebound() -> bool:
                return any(e.event.kind == "model_rebound" for e in store.events(run_id))

            wait_for(rebound, what="the workflow records the queued rebind")
            _RefusesWhenLetGo.let_go.set()  # the old server now refuses the attempt
            resumed_out, resumed_err = resume.communicate(timeout=120)
            agent_out, agent_err = agent.communicate(timeout=60)
            assert resume.returncode == 3, resumed_out + resumed_err  # the plan's review
            assert agent.returncode == 3, agent_out + agent_err
            assert new.pending == 0
        assert "(queued for its driver)" in resumed_out
        recorded = events(cli, run_id)
        [rebound_event] = [e for e in recorded if e["kind"] == "model_rebound"]
        assert (rebound_event["base_url"], rebound_event["was"]) == (
            new.base_url,
            {"base_url": old_url},
        )
        assert rebound_event["request_id"] is not None
        [refused] = [e for e in recorded if e["kind"] == "request_refused"]
        assert "not signed by the decision path" in refused["reason"]
        kinds = [e["kind"] for e in recorded]
        assert kinds.index("run_interrupted") + 1 == kinds.index("run_resumed")
        [understand] = [s for s in cli.json("show", run_id)["steps"] if s["id"] == "understand"]
        assert (understand["category"], understand["failed_attempts"]) == ("done", 0)
    finally:
        _RefusesWhenLetGo.let_go.set()
        workers.stop()
        old.shutdown()
        old.server_close()
