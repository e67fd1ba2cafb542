"""What Temporal refuses or closes, on the real dev server: a search attribute value past
2 KiB (a long non-ASCII goal, many steps waiting on a human) made Temporal terminate the
run's workflow before its step ran; and a command following a run whose workflow
Temporal closed waited for ever without a word."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.client import Client

from temporal_helpers import Workers, queried_status, wait_for
from test_cli import Cli, run_id_of
from trestle.core.events import StepStarted
from trestle.engines.temporal.connect import converter
from trestle.store import SqliteStore

pytestmark = pytest.mark.slow


def blobs(cli: Cli) -> Path:
    return cli.store.parent / "blobs"


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
    asked = queried_status(workers.address, run_id_of(waiting), blobs(cli))
    assert (asked["status"], asked["counts"]) == ("needs_human", {"awaiting_approval": 100})


def test_a_workflow_temporal_terminates_ends_the_following_with_a_word(
    cli: Cli, workers: Workers
) -> None:
    workers.start()
    plan = cli.write(
        "plan.yaml",
        """\
        goal: be cut short
        steps:
          - id: slow
            run: sleep 4; echo done >> done.txt
    """,
    )
    following = workers.start_run("run", plan, "--no-live", "--no-prompt", *workers.flags())
    assert following.stdout is not None
    first = following.stdout.readline()
    run_id = first.split()[1]
    store = SqliteStore(cli.store)
    wait_for(
        lambda: any(isinstance(s.event, StepStarted) for s in store.events(run_id)),
        what="the step to start",
    )

    async def terminate() -> None:
        client = await Client.connect(workers.address, data_converter=converter(blobs(cli)))
        await client.get_workflow_handle(run_id).terminate(reason="by an operator")

    asyncio.run(terminate())
    out, err = following.communicate(timeout=40)
    assert following.returncode == 12, out + err
    assert f"run {run_id} is not driven: Temporal closed its workflow (terminated: by an " in err
    assert f"`trestle resume {run_id}`" in err
