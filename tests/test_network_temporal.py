"""A step the policy lets keep the network, on a run driven by Temporal: the frontend is
a host like any other, and Trestle's clients reach it with no certificate or token, so
such a step reaches it too. It can read its workflow's history (and terminate, reset or
flood the workflow); what it sends as a record is still refused (test_temporal_forgery).
The run says so at its start.

Against the real dev server and a real ``trestle worker``; the step is a real command
in the real sandbox.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from temporal_helpers import Workers, dev_server_binary
from test_cli import Cli, flat
from trestle.core.events import SandboxChosen
from trestle.execution.sandbox import find_bwrap
from trestle.store import SqliteStore

pytestmark = pytest.mark.slow

# the step's command: its own workflow's history, read from the frontend with the
# temporal CLI (the Python SDK's core aborted in the sandbox at times)
PEEK = (
    '{temporal} workflow show --address {address} -w "$TRESTLE_RUN_ID" > history.txt '
    "&& echo GOT > got.txt || echo REFUSED > got.txt"
)


def test_a_step_that_keeps_the_network_reaches_the_frontend_and_the_run_says_so(
    tmp_path: Path, address: str
) -> None:
    found, why = find_bwrap()
    assert found is not None, f"{why}: scripts/setup-sandbox.sh installs bubblewrap"
    cli = Cli(tmp_path, tmp_path / ".trestle" / "trestle.db")
    workers = Workers(cli, address)
    try:
        workers.start()
        plan = cli.write(
            "plan.yaml",
            "goal: look around\n"
            "policy: {sandbox: {network: [peek]}}\n"
            "steps:\n"
            "  - id: peek\n"
            "    approval: auto\n"
            f"    run: {json.dumps(PEEK.format(temporal=dev_server_binary(), address=address))}\n",
        )
        done = workers.run("run", plan, "--no-live", "--no-prompt", *workers.flags())
    finally:
        workers.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "got.txt").read_text() == "GOT\n"
    assert "WorkflowExecutionStarted" in (tmp_path / "history.txt").read_text()
    store = SqliteStore(cli.store)
    try:
        [run] = store.runs()
        chosen = [e.event for e in store.events(run.run_id) if isinstance(e.event, SandboxChosen)]
    finally:
        store.close()
    assert chosen and all(c.confined for c in chosen), chosen
    said = " ".join(chosen[-1].exposed)
    assert f"the run's Temporal frontend ({address}) takes clients without a certificate" in said
    assert "lets peek keep the network" in said
    # and the run's report says it where the sandbox cannot hold
    assert f"the run's Temporal frontend ({address})" in flat(done.stdout), done.stdout
