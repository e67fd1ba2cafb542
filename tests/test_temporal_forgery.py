"""Forged Temporal traffic, sent by a real ``temporalio`` client acting as an attacker
that reaches the frontend, against the real dev server and a real ``trestle worker``:
records a running attempt never made (a step added with ``approval: auto``, an
irreversible step's end, an unsigned approval, malformed events), a genuine record
changed or sent twice, an attempt's activity completed from outside, and a workflow
started with forged carried work. Each is refused, and the run's record and report
claim none of it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from temporal_helpers import Workers, history, wait_for
from test_cli import Cli
from trestle.core.events import (
    ActionResult,
    ApprovalDecided,
    PlanExtended,
    StepAttemptEnded,
    StepAttemptLost,
    StepStarted,
    event_json,
    idempotency_key,
)
from trestle.core.plan import Step
from trestle.engines.temporal.connect import converter
from trestle.engines.temporal.shapes import RECORD, WORKFLOW
from trestle.store import SqliteStore

pytestmark = pytest.mark.slow

# ``hold`` runs until the test lets it go; meanwhile ``deploy`` waits for a human
HOLD = """\
    goal: hold the line
    steps:
      - id: hold
        run: while [ ! -f go ]; do sleep 0.05; done
      - id: deploy
        run: echo deployed > deployed.txt
        irreversible: true
"""
PWN = Step(id="pwn", run="echo pwned > pwned.txt", approval="auto")


@pytest.fixture
def workers(cli: Cli, address: str) -> Iterator[Workers]:
    pool = Workers(cli, address, TRESTLE_TEMPORAL_HEARTBEAT="2")
    try:
        yield pool
    finally:
        (cli.dir / "go").touch()  # a test that failed early leaves nothing waiting
        pool.stop()


class Held:
    """A run whose ``hold`` attempt is running and whose ``deploy`` awaits approval 1."""

    def __init__(self, cli: Cli, workers: Workers) -> None:
        self.cli, self.workers = cli, workers
        workers.start()
        plan = cli.write("plan.yaml", HOLD)
        self.following = workers.start_run(
            "run", plan, "--no-live", "--no-prompt", *workers.flags()
        )
        self.store = SqliteStore(cli.store)
        wait_for(lambda: self.store.runs(), what="the run to be created")
        self.run_id = self.store.runs()[0].run_id
        wait_for(lambda: {"step_started", "approval_requested"} <= self.kinds(), what="hold")
        self.blobs = cli.store.parent / "blobs"

    def kinds(self) -> set[str]:
        return {s.event.kind for s in self.store.events(self.run_id)}

    def release(self) -> tuple[int, str]:
        """Let ``hold`` end; the run's exit code and what it printed."""
        (self.cli.dir / "go").touch()
        try:
            out, err = self.following.communicate(timeout=90)
        finally:
            if self.following.poll() is None:
                self.following.kill()
                self.following.wait()
        return self.following.returncode, out + err

    def assert_nothing_forged_holds(self, hold: str = "succeeded") -> None:
        """The run waits for its human on ``deploy``, which never ran, and its record
        and report hold no forged step, end or decision; ``hold`` ended as given."""
        code, printed = self.release()
        assert code == 3, printed  # waiting on a human
        assert not (self.cli.dir / "deployed.txt").exists()
        assert not (self.cli.dir / "pwned.txt").exists()
        events = [s.event for s in self.store.events(self.run_id)]
        assert not any(isinstance(e, ApprovalDecided | PlanExtended) for e in events)
        ended = [e.step for e in events if isinstance(e, StepAttemptEnded)]
        assert ended == (["hold"] if hold == "succeeded" else [])
        shown = self.workers.run("show", self.run_id, "--json")
        report = json.loads(shown.stdout)
        steps = {s["id"]: s["status"] for s in report["steps"]}
        assert (report["status"], steps) == (
            "needs_human",
            {"hold": hold, "deploy": "awaiting_approval"},
        )

    def attack(self, how: Any) -> str:
        return asyncio.run(as_attacker(self.workers.address, self.blobs, how))


async def as_attacker(address: str, blobs: Path, how: Any) -> str:
    """What became of ``how(client)``: "accepted", or why it was refused. An answer
    that does not come counts as accepted: the workflow took it and choked."""
    client = await Client.connect(address, data_converter=converter(blobs))
    try:
        await asyncio.wait_for(how(client), timeout=15)
    except WorkflowUpdateFailedError as exc:
        return f"refused: {exc.cause}"
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        return "accepted (no answer: the workflow choked on it)"
    return "accepted"


def record(run_id: str, *events: str, **extra: Any) -> Any:
    """An attacker's ``record`` update naming the running attempt of ``hold``."""
    ask = {"step": "hold", "attempt": 1, "events": list(events), **extra}

    async def send(client: Client) -> None:
        await client.get_workflow_handle(run_id).execute_update(RECORD, ask)

    return send


FORGED: dict[str, Callable[[], str]] = {
    "a step added with approval auto": lambda: event_json(
        PlanExtended(at=time.time(), by="hold", steps=(PWN.model_copy(update={"needs": ()}),))
    ),
    "an irreversible step ended that never ran": lambda: event_json(
        StepAttemptEnded(
            at=time.time(),
            step="deploy",
            attempt=1,
            ok=True,
            action=ActionResult(status="ok", output="deployed"),
        )
    ),
    "an unsigned approval": lambda: event_json(
        ApprovalDecided(at=time.time(), approval=1, verdict="approve", by="mallory")
    ),
    "an event that does not parse": lambda: "{not json",
}


@pytest.mark.parametrize("what", list(FORGED))
def test_a_forged_record_is_refused(cli: Cli, workers: Workers, what: str) -> None:
    run = Held(cli, workers)
    # the attacker reads the attempt's ticket from the history, and guesses a seal
    ticket = asyncio.run(perform_input(workers.address, run.blobs, run.run_id))["ticket"]
    outcome = run.attack(record(run.run_id, FORGED[what](), ticket=ticket, seal="0" * 64))
    assert outcome.startswith("refused"), outcome
    assert "refused: it carries no seal" in outcome
    run.assert_nothing_forged_holds()


def test_a_sealed_record_changed_or_not_the_attempts_own_is_refused(
    cli: Cli, workers: Workers
) -> None:
    """A record sealed as its worker seals it, but of an event the attempt never makes,
    is refused all the same; a sealed record whose body is changed loses its seal."""
    from trestle.engines.temporal import seals
    from trestle.trust.signing import decision_key

    run = Held(cli, workers)
    ticket = asyncio.run(perform_input(workers.address, run.blobs, run.run_id))["ticket"]
    seal = seals.sealer(decision_key())

    def sealed(nonce: int, *events: str) -> dict[str, Any]:
        parts = [run.run_id, ticket, "hold", "1", str(nonce), *events]
        return {"ticket": ticket, "nonce": nonce, "seal": seal(seals.RECORD, parts)}

    ended = FORGED["an irreversible step ended that never ran"]()
    outcomes = {
        # a sealed record of an event hold's attempt never makes: refused all the same
        "sealed, not its own": run.attack(record(run.run_id, ended, **sealed(1, ended))),
    }
    approval = FORGED["an unsigned approval"]()
    changed = {**sealed(2, approval), "events": [ended]}
    outcomes["changed body"] = run.attack(record(run.run_id, approval, **changed))
    assert all(o.startswith("refused") for o in outcomes.values()), outcomes
    assert "is not one step 'hold'" in outcomes["sealed, not its own"]
    assert "no seal" in outcomes["changed body"]
    run.assert_nothing_forged_holds()


def ended_well() -> list[str]:
    """The irreversible step and the running attempt both ended well, in words."""
    hold = StepAttemptEnded(
        at=time.time(), step="hold", attempt=1, ok=True, action=ActionResult(status="ok")
    )
    return [FORGED["an irreversible step ended that never ran"](), event_json(hold)]


COMPLETIONS: dict[str, tuple[Callable[[], object], str]] = {
    "a forged outcome": (
        lambda: {"events": ended_well(), "seal": "0" * 64},
        "without its worker's seal",
    ),
    "the bare events": (ended_well, "it is not one"),
    "no outcome at all": (lambda: "nonsense", "it is not one"),
}


@pytest.mark.parametrize("what", list(COMPLETIONS))
def test_an_attempt_completed_from_outside_is_refused(
    cli: Cli, workers: Workers, what: str
) -> None:
    """Anyone may complete an activity by its id: what that brings (the running attempt
    ended well, and the irreversible step too; or something that is no outcome) is
    refused, and the attempt counts as lost, its effects unknown, as when its worker
    dies."""
    run = Held(cli, workers)
    result, why = COMPLETIONS[what]

    async def complete(client: Client) -> None:
        activity_id = (await perform_input(run.workers.address, run.blobs, run.run_id))["id"]
        handle = client.get_async_activity_handle(
            workflow_id=run.run_id, run_id=None, activity_id=activity_id
        )
        await handle.complete(result())

    assert run.attack(complete) == "accepted"  # Temporal takes it: the workflow judges it
    wait_for(lambda: "step_attempt_lost" in run.kinds(), what="the attempt to count as lost")
    lost = [s.event for s in run.store.events(run.run_id) if s.event.kind == "step_attempt_lost"]
    assert isinstance(lost[0], StepAttemptLost)
    assert why in lost[0].why
    # its effects unknown, and a command with no checks is not safe to re-run: a human
    # decides, as after a worker's death
    run.assert_nothing_forged_holds(hold="escalated")


def test_a_workflow_started_with_forged_carried_work_runs_nothing(
    cli: Cli, workers: Workers
) -> None:
    """Whoever starts a workflow chooses its input: an execution handed a start of the
    irreversible step, ungated, as if a continued one had announced it, dispatches
    nothing, and the worker would not perform it anyway."""
    run = Held(cli, workers)
    key = idempotency_key(run.run_id, "deploy", 1)
    announced = event_json(StepStarted(at=time.time(), step="deploy", attempt=1, key=key))
    drive = {"run_id": run.run_id, "carried": {"token": 1, "announced": [announced]}}

    async def start(client: Client) -> None:
        await client.start_workflow(
            WORKFLOW, drive, id=f"evil-{run.run_id}", task_queue=workers.queue
        )

    async def terminate(client: Client) -> None:
        with contextlib.suppress(RPCError):  # it failed at once: not its own run's id
            await client.get_workflow_handle(f"evil-{run.run_id}").terminate()

    assert run.attack(start) == "accepted"
    time.sleep(3)  # what the forged execution would dispatch, it dispatches by now
    scheduled = asyncio.run(perform_count(workers.address, run.blobs, f"evil-{run.run_id}"))
    run.attack(terminate)  # before it could take the lease the run lets go of
    assert scheduled == 0
    run.assert_nothing_forged_holds()


async def perform_input(address: str, blobs: Path, run_id: str) -> dict[str, Any]:
    """The activity id of the run's first ``trestle.perform`` and the input it was
    scheduled with (its ticket is there for any client to read); the workflow schedules
    it just after it commits the start the test waited for."""
    client = await Client.connect(address, data_converter=converter(blobs))
    for _ in range(100):
        for event in await history(address, run_id, blobs):
            if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:  # type: ignore[attr-defined]
                continue
            attrs = event.activity_task_scheduled_event_attributes  # type: ignore[attr-defined]
            if attrs.activity_type.name == "trestle.perform":
                [job] = await client.data_converter.decode(attrs.input.payloads, [dict])
                return {"id": attrs.activity_id, **job}
        await asyncio.sleep(0.1)
    raise ApplicationError(f"run {run_id!r} scheduled no attempt")


async def perform_count(address: str, blobs: Path, workflow_id: str) -> int:
    """How many attempts the workflow ``workflow_id`` scheduled."""
    return len(
        [
            event
            for event in await history(address, workflow_id, blobs)
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED  # type: ignore[attr-defined]
            and event.activity_task_scheduled_event_attributes.activity_type.name  # type: ignore[attr-defined]
            == "trestle.perform"
        ]
    )


def test_a_workflow_started_for_another_run_or_with_odd_tuning_drives_nothing(
    cli: Cli, workers: Workers
) -> None:
    """A start naming the run under another id, on a 0.05 s heartbeat and an hour's
    lease, took the run's approvals and killed its steps, and held its lease an hour:
    it fails at once, having driven nothing."""
    run = Held(cli, workers)
    before = len(run.store.events(run.run_id))
    drive = {"run_id": run.run_id, "heartbeat": 0.05, "lease_ttl": 3600}
    outcome: list[str] = []

    async def start(client: Client) -> None:
        handle = await client.start_workflow(
            WORKFLOW, drive, id=f"evil-{run.run_id}", task_queue=workers.queue
        )
        try:
            await handle.result()
        except Exception as exc:  # WorkflowFailureError, its cause the refusal
            outcome.append(str(getattr(exc, "cause", exc)))

    run.attack(start)
    assert outcome and "nothing was driven: its input names run" in outcome[0], outcome
    assert len(run.store.events(run.run_id)) == before  # not a resume, not a record
    lease = run.store.lease(run.run_id)
    assert lease is not None and lease.owner.name == f"temporal workflow {run.run_id}"
    run.assert_nothing_forged_holds()


def test_a_workflows_tuning_is_held_to_what_an_operator_may_set() -> None:
    from trestle.engines.temporal.shapes import Drive
    from trestle.engines.temporal.workflow import unfit_drive

    assert unfit_drive(Drive(run_id="r"), "r") is None
    assert "not its own id" in (unfit_drive(Drive(run_id="r"), "s") or "")
    for odd in ({"heartbeat": 0.05}, {"lease_ttl": 3600.0}, {"history_limit": 1}):
        assert "lies outside" in (unfit_drive(Drive(run_id="r", **odd), "r") or ""), odd


def test_nudges_to_a_run_that_waits_for_a_human_record_nothing(cli: Cli, workers: Workers) -> None:
    """Any client may signal a workflow: each nudge to a run waiting for its human
    recorded a resume, and nothing else, without end."""
    from trestle.engines.temporal.shapes import NUDGE

    run = Held(cli, workers)
    run.assert_nothing_forged_holds()  # hold ended; deploy waits for its approval
    settled = len(run.store.events(run.run_id))

    async def nudge(client: Client) -> None:
        handle = client.get_workflow_handle(run.run_id)
        for _ in range(5):
            await handle.signal(NUDGE)

    run.attack(nudge)
    time.sleep(2)  # what the nudges would record, they record by now
    assert len(run.store.events(run.run_id)) == settled
    assert [s["step"] for s in json.loads(run.workers.run("inbox", "--json").stdout)] == ["deploy"]
