"""What a command loads before it does anything: ``trestle --help`` and ``trestle runs``
must not import the engine, the event types, the agent or the monitors (together about
half a second). Asserted on the modules a real ``trestle`` process loaded, never on
times; ``bench/startup.py`` measures the times (BENCHMARKS.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_cli import cli_env
from trestle.formats.planfile import parse_plan
from trestle.lifecycle.runs import create_run
from trestle.store import SqliteStore

# runs the CLI as the console script does, then lists the modules it loaded
PROBE = """
import json, sys
from trestle.cli.app import main
sys.argv = ["trestle", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""

HEAVY = (
    "trestle.engines.local",
    "trestle.core.events",
    "trestle.core.state",
    "trestle.agent.runtime",
    "trestle.agent.context",
    "trestle.monitors.catalog",
    "trestle.core.conversation",
    "pydantic",
    "yaml",
    "asyncio",
    "fastapi",
    "starlette",
    "uvicorn",
    "jinja2",
)


def loaded(*args: str) -> tuple[object, set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    last = json.loads(done.stderr.strip().splitlines()[-1])
    return last["code"], set(last["modules"])


@pytest.fixture
def store_with_a_run(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "trestle.db"
    store = SqliteStore(path)
    plan = parse_plan("goal: listed\nsteps:\n  - {id: one, run: 'true'}\n")
    run_id = create_run(store, plan, workspace=tmp_path)
    store.close()
    return path, run_id


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("run", "--help"), ("ui", "--help")])
def test_help_loads_none_of_the_runtime(args: tuple[str, ...]) -> None:
    code, modules = loaded(*args)
    assert code == 0
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_listing_runs_loads_none_of_the_runtime(store_with_a_run: tuple[Path, str]) -> None:
    code, modules = loaded("runs", "--store", str(store_with_a_run[0]))
    assert code == 0
    assert "trestle.store.sqlite" in modules  # it did read the store
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_a_command_that_reads_events_loads_them_when_it_needs_them(
    store_with_a_run: tuple[Path, str],
) -> None:
    store, run_id = store_with_a_run
    code, modules = loaded("log", run_id, "--store", str(store), "--json")
    assert code == 0
    assert "trestle.core.events" in modules


@pytest.mark.parametrize("args", [("show", "RUN"), ("show", "RUN", "--json"), ("log", "RUN")])
def test_a_command_that_reads_a_run_loads_no_yaml_parser(
    store_with_a_run: tuple[Path, str], args: tuple[str, ...]
) -> None:
    # the run's plan is in the store as JSON; PyYAML is for plan files and edits
    store, run_id = store_with_a_run
    code, modules = loaded(*(run_id if a == "RUN" else a for a in args), "--store", str(store))
    assert code == 0
    assert "trestle.formats.planfile" not in modules  # nor the plan files' reader
    assert "yaml" not in modules
