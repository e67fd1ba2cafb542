"""Every human request ends in exactly one recorded outcome: applied, or refused with why.

A retry, skip, requirement or decision is a row in the store's queue; the process that
drives the run turns it into the event it becomes (carrying the request's id) or into a
refusal that says why, in the same commit that consumes it. Everything here is real: a
SQLite file per test, the local engine, shell steps, and for agent runs the agent
runtime with a scripted model. Requests are queued as the CLI queues them (signed), or
written into the table the way a step's own process could.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_helpers import (
    FIX_STEP,
    agent_settings,
    call,
    drive,
    findings_json,
    fix_replies,
    of_kind,
    plan_json,
    recorded,
    sample_workspace,
    start_run,
    state_of,
)
from trestle.agent.context import check_pins, is_pinned
from trestle.core.errors import ConfigError
from trestle.core.events import (
    ContextCompressed,
    RequestRefused,
    RequirementAdded,
    StepReopened,
    StepSkipped,
)
from trestle.core.records.agent import ContextBudget, Pins
from trestle.core.report import build_report
from trestle.core.state import RunState
from trestle.engines.local import LocalEngine
from trestle.formats.planfile import parse_plan
from trestle.lifecycle.approvals import submit_decision
from trestle.lifecycle.outcomes import await_outcome, outcome_in
from trestle.lifecycle.runs import create_run, load_state, request_decision, request_requirement
from trestle.models import ScriptedModel
from trestle.store import SqliteStore
from trestle.trust.signing import decision_key, signed_payload

POLL = 0.02


class World:
    """A workspace, a SQLite file, and an engine that drives plan runs in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.workspace = root / "ws"
        self.workspace.mkdir()
        self.db = root / "trestle.db"
        self.store = SqliteStore(self.db)

    def create(self, text: str) -> str:
        plan = parse_plan(textwrap.dedent(text), source="plan.yaml", base_dir=self.root)
        return create_run(self.store, plan, workspace=self.workspace)

    def run(self, run_id: str) -> RunState:
        engine = LocalEngine(self.store, poll_interval=POLL)
        try:
            return asyncio.run(engine.run(run_id))
        finally:
            engine.close()

    def forge(self, run_id: str, kind: str, step: str = "", payload: str = "") -> None:
        """A row written straight into the queue, as any process with the file could."""
        with sqlite3.connect(self.db) as conn:
            conn.execute(
                "INSERT INTO requests (run_id, kind, step, reason, created_at, payload) "
                "VALUES (?, ?, ?, 'forged', 0, ?)",
                (run_id, kind, step, payload),
            )

    def signed(self, run_id: str, kind: str, step: str, text: str) -> None:
        """A request signed as the CLI signs it, without the CLI's checks up front."""
        fields = {"run_id": run_id, "kind": kind, "step": step, "reason": text, "by": "tester"}
        payload = signed_payload(fields, decision_key())
        self.store.add_request(run_id, kind, step, text, now=0.0, payload=payload)  # type: ignore[arg-type]

    def outcomes(self, run_id: str) -> dict[int, list[str]]:
        """Request id -> the kinds of the events recorded as its outcome."""
        found: dict[int, list[str]] = {}
        for stored in self.store.events(run_id):
            request_id = getattr(stored.event, "request_id", None)
            if request_id is not None:
                found.setdefault(request_id, []).append(stored.event.kind)
        return found

    def queued_ids(self, run_id: str) -> list[int]:
        with sqlite3.connect(self.db) as conn:
            rows = conn.execute("SELECT id FROM requests WHERE run_id = ?", (run_id,))
            return sorted(int(r[0]) for r in rows)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path)
    yield made
    made.store.close()


FAILS_UNTIL_FIXED = """
    steps:
      - {id: migrate, run: test -f fixed, retries: 0}
      - {id: serve, needs: [migrate], run: "true"}
"""


def test_a_retry_made_stale_by_an_earlier_skip_is_refused_with_the_reason(world: World) -> None:
    run_id = world.create(FAILS_UNTIL_FIXED)
    assert world.run(run_id).finished == "needs_human"
    # both are fine when queued; the driver reads them in order
    skip = request_decision(world.store, run_id, "skip", "migrate", "migrated by hand")
    retry = request_decision(world.store, run_id, "retry", "migrate", "try once more")

    state = world.run(run_id)

    events = recorded(world.store, run_id)
    [skipped] = of_kind(events, StepSkipped)
    assert skipped.request_id == skip.id
    [refused] = of_kind(events, RequestRefused)
    assert (refused.request_id, refused.request, refused.step, refused.text) == (
        retry.id,
        "retry",
        "migrate",
        "try once more",
    )
    assert refused.reason == (
        "step 'migrate' is skipped by now (only failed, escalated steps can be retried)"
    )
    assert of_kind(events, StepReopened) == []
    assert world.store.pending_requests(run_id) == []
    [listed] = build_report(state).refused
    assert (listed.request_id, listed.request, listed.reason) == (
        retry.id,
        "retry",
        refused.reason,
    )
    assert state.finished == "succeeded"


def test_forged_retries_skips_and_requirements_are_refused_as_unsigned(world: World) -> None:
    run_id = world.create(FAILS_UNTIL_FIXED)
    world.run(run_id)
    for kind in ("retry", "skip", "tell"):
        world.forge(run_id, kind, "migrate")

    state = world.run(run_id)

    refused = of_kind(recorded(world.store, run_id), RequestRefused)
    assert [(r.request, r.reason) for r in refused] == [
        ("retry", "not signed by the decision path (trestle retry)"),
        ("skip", "not signed by the decision path (trestle skip)"),
        ("tell", "not signed by the decision path (trestle tell)"),
    ]
    assert state.steps["migrate"].status == "failed"  # nothing a forger wrote applied
    assert world.store.pending_requests(run_id) == []


def test_a_requirement_for_a_plan_run_is_refused_not_dropped(world: World) -> None:
    run_id = world.create(FAILS_UNTIL_FIXED)
    world.run(run_id)
    world.signed(run_id, "tell", "", "also say goodbye")

    world.run(run_id)

    [refused] = of_kind(recorded(world.store, run_id), RequestRefused)
    assert (refused.request, refused.text, refused.reason) == (
        "tell",
        "also say goodbye",
        "a plan run takes no requirements",
    )


MIXED = """
    steps:
      - {id: flaky, run: test -f fixed, retries: 0}
      - {id: after, needs: [flaky], run: "true"}
      - {id: deploy, run: "true", irreversible: true}
      - {id: other, run: "true"}
"""
REQUEST_KINDS = ("retry", "skip", "tell", "decision", "forged", "approve", "reject")


def test_every_request_ends_in_exactly_one_recorded_outcome(world: World) -> None:
    """Seeded: requests of every kind, valid or stale or forged, queued between drives."""
    rng = random.Random(20261122)
    run_id = world.create(MIXED)
    world.run(run_id)
    steps = ["flaky", "after", "deploy", "other", "nope"]
    for _ in range(8):
        for _ in range(rng.randint(1, 4)):
            kind = rng.choice(REQUEST_KINDS)
            step = rng.choice(steps)
            if kind in ("retry", "skip", "tell"):
                world.signed(run_id, kind, step if kind != "tell" else "", f"{kind} {step}")
            elif kind == "forged":
                world.forge(run_id, rng.choice(("retry", "skip", "tell", "decision")), step)
            elif kind == "decision":  # signed, on an approval that may not exist
                fields = {"run_id": run_id, "approval": rng.randint(1, 3), "verdict": "approve"}
                payload = signed_payload(fields, decision_key())
                world.store.add_request(run_id, "decision", step, "", now=0.0, payload=payload)
            else:
                # already decided, or a decision already queued: then nothing is queued
                with contextlib.suppress(ConfigError):
                    submit_decision(world.store, f"{run_id}.1", kind, reason="fuzz")  # type: ignore[arg-type]
        if rng.random() < 0.5:
            (world.workspace / "fixed").touch()
        world.run(run_id)

    outcomes = world.outcomes(run_id)
    queued = world.queued_ids(run_id)
    assert len(queued) > 10
    assert {i: len(outcomes.get(i, [])) for i in queued} == dict.fromkeys(queued, 1)
    assert world.store.pending_requests(run_id) == []
    state = load_state(world.store, run_id)
    refusals = {r.request_id for r in state.refused}
    assert refusals == {i for i, kinds in outcomes.items() if kinds[0].endswith("_refused")}


def test_the_outcome_of_a_request_is_found_and_described(world: World) -> None:
    run_id = world.create(FAILS_UNTIL_FIXED)
    world.run(run_id)
    after = world.store.run(run_id).last_seq
    skip = request_decision(world.store, run_id, "skip", "migrate", "by hand")
    # nobody drives the run: nothing to wait for
    assert await_outcome(world.store, run_id, skip.id, after=after, patience=5.0) is None

    world.run(run_id)

    found = outcome_in(world.store.events(run_id, after=after), skip.id)
    assert found is not None and found.applied
    assert found.message == (f"run {run_id} skipped 'migrate': steps that need it go on without it")
    assert await_outcome(world.store, run_id, skip.id, after=after) == found


# --- agent runs: requirements ----------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return sample_workspace(tmp_path, "agent-ws")


def test_a_requirement_told_once_acceptance_began_is_refused(world: World, workspace: Path) -> None:
    # the acceptance check fails and no re-plan is allowed: validate fails for good
    settings = agent_settings(test_command="exit 1", max_replans=0)
    run_id = start_run(world.store, workspace, settings=settings)
    drive(world.store, run_id, ScriptedModel(fix_replies()))
    assert state_of(world.store, run_id).steps["validate"].status == "failed"
    told = request_requirement(world.store, run_id, "also handle negative numbers", by="ann")

    drive(world.store, run_id, ScriptedModel([]))

    events = recorded(world.store, run_id)
    assert of_kind(events, RequirementAdded) == []
    [refused] = of_kind(events, RequestRefused)
    assert (refused.request_id, refused.request, refused.text) == (
        told.id,
        "tell",
        "also handle negative numbers",
    )
    assert refused.reason == (
        "the acceptance step 'validate' is failed, no longer waiting: the run takes no "
        "more requirements once acceptance has begun; start a new run for it"
    )
    assert world.store.pending_requests(run_id) == []
    assert state_of(world.store, run_id).requirements == []


def test_a_told_requirement_stays_pinned_after_a_compression(world: World, workspace: Path) -> None:
    lines = "".join(f"note {i}: the parser keeps its state in a dict\n" for i in range(150))
    (workspace / "notes.txt").write_text(lines)  # about 1,800 tokens a read
    budget = ContextBudget(limit=6000, keep_turns=1)
    settings = agent_settings(scope=("calc.py",), context=budget)
    run_id = start_run(world.store, workspace, settings=settings)
    requirement = "also keep add() free of side effects"
    request_requirement(world.store, run_id, requirement, by="ann")  # read on the first pass
    reads = [call("read_file", path="notes.txt", call_id=f"r{i}") for i in range(4)]
    model = ScriptedModel([*reads, findings_json(), plan_json(FIX_STEP), *fix_replies()[3:]])

    drive(world.store, run_id, model)

    events = recorded(world.store, run_id)
    [added] = of_kind(events, RequirementAdded)
    assert added.text == requirement
    compressions = of_kind(events, ContextCompressed)
    assert compressions, "the conversation never outgrew its budget"
    request = model.requests[compressions[0].turn - 1]  # the request sent right after it
    [pinned] = [m for m in request.messages if is_pinned(m)]
    assert f"\nRequirement: {requirement}\n" in pinned.content
    pins = Pins(goal=state_of(world.store, run_id).plan.goal, requirements=(requirement,))
    assert check_pins(request.messages, pins) == []
    # it was told before the first step began: every conversation is pinned to it
    for sent in model.requests:
        [pinned] = [m for m in sent.messages if is_pinned(m)]
        assert f"\nRequirement: {requirement}\n" in pinned.content
    assert state_of(world.store, run_id).finished == "succeeded"


def test_a_signed_decision_with_a_bad_verdict_or_top_up_is_refused(world: World) -> None:
    run_id = world.create(
        "steps:\n  - {id: deploy, run: echo deployed >> deploys.log, irreversible: true}\n"
    )
    state = world.run(run_id)
    digest = state.approvals[1].action_hash
    with pytest.raises(ConfigError, match="the top-up must be a finite amount of at least 0"):
        submit_decision(world.store, f"{run_id}.1", "approve", top_up=float("inf"))
    for verdict, top_up in (("maybe", None), ("approve", float("inf")), ("approve", -1)):
        fields = {
            "run_id": run_id,
            "approval": 1,
            "verdict": verdict,
            "action_hash": digest,
            "top_up": top_up,
        }
        payload = signed_payload(fields, decision_key())
        world.store.add_request(run_id, "decision", "deploy", "", now=0.0, payload=payload)

    state = world.run(run_id)

    assert [r.reason for r in state.refused] == [
        "unknown verdict 'maybe'",
        "the top-up inf is not a finite amount of at least 0",
        "the top-up -1 is not a finite amount of at least 0",
    ]
    assert state.approvals[1].status == "pending"
    assert not (world.workspace / "deploys.log").exists()
