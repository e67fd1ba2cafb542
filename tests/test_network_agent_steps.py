"""The steps of an agent's plan are named by its model: the policy's sandbox.network and
sandbox.git globs, written for the operator's own plan steps (fetch-deps) and for tool
names (run_command), must not match them, or the model names its step to fit a glob
and its verify commands keep the network (or write .git's history). A real agent run,
scripted model, real sandbox and a listener on 127.0.0.1."""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

from agent_helpers import (
    agent_settings,
    call,
    drive,
    findings_json,
    plan_json,
    plan_step,
    sample_workspace,
)
from trestle.core.policy import Policy, SandboxPolicy
from trestle.core.records.agent import bootstrap_plan
from trestle.execution.sandbox import find_bwrap
from trestle.lifecycle.runs import create_run
from trestle.models.scripted import ScriptedModel
from trestle.store import SqliteStore

# the check's command: whether it reached the listener
PROBE = """\
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), 2).close()
    said = "network"
except OSError:
    said = "no network"
open("probe.txt", "w").write(said)
"""


def test_a_step_the_model_names_to_fit_a_network_glob_does_not_get_the_network(
    tmp_path: Path,
) -> None:
    found, why = find_bwrap()
    assert found is not None, f"{why}: scripts/setup-sandbox.sh installs bubblewrap"
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    threading.Thread(target=lambda: [listener.accept() for _ in range(4)], daemon=True).start()
    workspace = sample_workspace(tmp_path)
    (workspace / "probe.py").write_text(PROBE)
    check = {"command": f"{sys.executable} probe.py {port}"}
    step = plan_step("fetch-x", "add() returns the sum", files=["calc.py"], verify=[check])
    model = ScriptedModel(
        [
            findings_json(),
            plan_json(step, summary="fix add"),
            call("edit_file", path="calc.py", old="a - b", new="a + b"),
            call("finish", summary="add() adds"),
        ]
    )
    store = SqliteStore(tmp_path / "runs.db")
    operator = Policy(sandbox=SandboxPolicy(network=("fetch*",)))  # for a plan's fetch-deps
    run_id = create_run(
        store,
        bootstrap_plan("make add() return the sum"),
        workspace=workspace,
        agent=agent_settings(),
        operator_policy=operator,
    )
    drive(store, run_id, model)
    store.close()
    listener.close()
    assert (workspace / "probe.txt").read_text() == "no network"
