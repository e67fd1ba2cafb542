"""A step or tool the policy lets keep the network, in an agent run whose model is
served at a --base-url: steps are given no API key, so a server that asks none (a local
server, a proxy without a key) serves a command that keeps the network as it serves the
driver, at a cost the run's budget never counts. The run says so at its start.

A real HTTP server on 127.0.0.1 standing in for the model's server; the model's
run_command is a real command in the real sandbox.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

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
from trestle.core.events import SandboxChosen
from trestle.core.policy import Policy, SandboxPolicy
from trestle.core.records.agent import bootstrap_plan
from trestle.execution.sandbox import find_bwrap
from trestle.lifecycle.runs import create_run
from trestle.models.scripted import ScriptedModel
from trestle.store import SqliteStore

# what the command runs: a completion asked of the model's server, with no key
CALL = """\
import json, sys, urllib.request
body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
ask = urllib.request.Request(sys.argv[1] + "/chat/completions", body.encode(),
                             {"Content-Type": "application/json"})
urllib.request.urlopen(ask, timeout=5).read()
"""


@pytest.fixture
def served() -> Iterator[tuple[str, list[str]]]:
    """An OpenAI-shaped server on 127.0.0.1 that asks no key: its URL, and the paths
    asked of it."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            asked.append(self.path)
            answer = b'{"choices": [{"message": {"role": "assistant", "content": "ok"}}]}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", asked
    finally:
        server.shutdown()
        server.server_close()


def test_a_command_that_keeps_the_network_calls_the_model_server_and_the_run_says_so(
    tmp_path: Path, served: tuple[str, list[str]]
) -> None:
    found, why = find_bwrap()
    assert found is not None, f"{why}: scripts/setup-sandbox.sh installs bubblewrap"
    url, asked = served
    workspace = sample_workspace(tmp_path)
    (workspace / "call.py").write_text(CALL)
    model = ScriptedModel(
        [
            findings_json(),
            plan_json(FIX_STEP, summary="fix add"),
            call("run_command", command=f"{sys.executable} call.py {url}"),
            call("edit_file", path="calc.py", old="a - b", new="a + b"),
            call("finish", summary="add() adds"),
        ]
    )
    store = SqliteStore(tmp_path / "runs.db")
    run_id = create_run(
        store,
        bootstrap_plan("make add() return the sum"),
        workspace=workspace,
        agent=agent_settings(base_url=url),
        operator_policy=Policy(sandbox=SandboxPolicy(network=("run_command",))),
    )
    events = drive(store, run_id, model)
    store.close()
    assert asked == ["/v1/chat/completions"]  # the command's own call, which no budget saw
    chosen = [e.event for e in events if isinstance(e.event, SandboxChosen)]
    assert chosen and all(c.confined for c in chosen), chosen
    said = " ".join(chosen[-1].exposed)
    assert f"the model's server ({url}) is reached over the network" in said
    assert "lets run_command keep the network" in said
    # and what its commands could do through a script, which the gate does not read
    assert "lets the agent's run_command keep the network" in said
    assert "which confirm_commands does not read" in said
