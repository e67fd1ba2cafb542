"""What a plan puts in a workflow's search attributes, against Temporal's limits on the
real dev server: Temporal refuses a value past 2 KiB, and a refused upsert fails the
workflow task again and again, so a long non-ASCII goal or many steps waiting on a human
wedged the run before anything ran."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from temporal_helpers import Workers, dev_server, queried_status
from test_cli import Cli, run_id_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    with dev_server() as where:
        yield where


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path, tmp_path / ".trestle" / "trestle.db")


@pytest.fixture
def workers(cli: Cli, address: str) -> Iterator[Workers]:
    pool = Workers(cli, address, TRESTLE_TEMPORAL_HEARTBEAT="2")
    try:
        yield pool
    finally:
        pool.stop()


def test_a_long_goal_in_three_byte_characters_runs(cli: Cli, workers: Workers) -> None:
    workers.start()
    plan = cli.write(
        "plan.yaml",
        f"""\
        goal: "{"日" * 2000}"
        steps:
          - id: one
            run: echo hi > hi.txt
    """,
    )
    result = workers.run("run", plan, "--no-live", "--no-prompt", *workers.flags(), timeout=40)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (cli.dir / "hi.txt").read_text() == "hi\n"


def test_a_hundred_steps_waiting_on_a_human_are_reported(cli: Cli, workers: Workers) -> None:
    workers.start()
    steps = "".join(
        f"""
          - id: ship-to-the-customer-region-{n:03}
            run: echo {n} >> shipped.txt
            irreversible: true"""
        for n in range(100)
    )
    plan = cli.write("plan.yaml", f"goal: ship everywhere\nsteps:{steps}\n")
    waiting = workers.run("run", plan, "--no-live", "--no-prompt", *workers.flags(), timeout=40)
    assert waiting.returncode == 3, waiting.stdout + waiting.stderr
    assert not (cli.dir / "shipped.txt").exists()
    asked = queried_status(workers.address, run_id_of(waiting), cli.store.parent / "blobs")
    assert (asked["status"], asked["counts"]) == ("needs_human", {"awaiting_approval": 100})
