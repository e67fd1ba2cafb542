"""A run nothing drives any more is ``interrupted`` wherever it is shown: ``trestle
runs`` and ``show`` as text and as ``--json``, ``trestle health --json``, the dashboard's
runs page and the MCP tools, whether a signal stopped its driver or it was killed."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from test_cli import Cli, table_rows
from test_honest_wording import STOPPED_PLAN, driven, wait_for
from trestle.cli.mcp_answers import runs_answer, show_answer
from trestle.dashboard.views import run_lines
from trestle.store.sqlite import SqliteStore


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path, tmp_path / "t.db")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_every_view_calls_a_run_whose_driver_stopped_interrupted(
    cli: Cli, sig: signal.Signals
) -> None:
    driver, run_id = driven(cli, STOPPED_PLAN)
    wait_for(cli.dir / "blind.txt", cli.dir / "safe.txt")
    driver.send_signal(sig)
    driver.communicate(timeout=60)
    killed = sig == signal.SIGKILL

    [listed] = cli.json("runs")
    assert (listed["status"], listed["driver_lost"]) == ("interrupted", killed)
    assert table_rows(cli("runs").stdout)[0][:2] == [run_id, "interrupted"]
    shown = cli.json("show", run_id)
    assert (shown["status"], shown["driver_lost"]) == ("interrupted", killed)
    health = json.loads(cli("health", "--json").stdout)  # exits 1: a step's driver is gone
    assert [r["status"] for r in health] == ["interrupted"]

    store = SqliteStore(cli.store, create=False)
    try:
        assert [line.status for line in run_lines(store, visible=None).lines] == ["interrupted"]
        assert runs_answer(store, 10).data["runs"][0]["status"] == "interrupted"
        assert show_answer(store, run_id).data["status"] == "interrupted"
    finally:
        store.close()


CHILD_PLAN = """\
    steps:
      - id: blind
        run: touch blind.txt; sleep 30
"""

PARENT_PLAN = """\
    goal: hand the work to a child
    steps:
      - id: research
        delegate:
          goal: do the work
          plan: child.yaml
"""


def test_a_child_nothing_drives_is_interrupted_under_its_parent_too(cli: Cli) -> None:
    cli.write("child.yaml", CHILD_PLAN)
    driver, run_id = driven(cli, PARENT_PLAN)
    wait_for(cli.dir / "blind.txt")
    driver.send_signal(signal.SIGKILL)
    driver.communicate(timeout=60)
    child = f"{run_id}.research.1"

    children = [{"run_id": child, "status": "interrupted", "depth": 1}]
    assert cli.json("show", run_id)["tree"]["children"] == children
    assert f"└ {child}  interrupted" in cli("show", run_id).stdout
    store = SqliteStore(cli.store, create=False)
    try:
        assert store.run(child).status == "running"  # as recorded: nothing said otherwise
        assert show_answer(store, run_id).data["tree"]["children"] == children
    finally:
        store.close()
