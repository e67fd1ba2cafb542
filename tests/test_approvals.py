"""Approval tiers, handoff cards and decisions through the engine and the Python API.

Every test records a run in a fresh SQLite file, drives it with :class:`LocalEngine`,
and looks at what is observable: the durable events, the files the steps' real shell
commands leave in the workspace, and the cards and decisions the API hands a human.
Decisions are made the way a person makes them (:func:`submit_decision`, signed with
the test's own key from ``TRESTLE_KEY_FILE``); forgeries are made the way a step could.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from trestle.core.card import build_card
from trestle.core.errors import ConfigError
from trestle.core.events import (
    AloneAwaited,
    AnyEvent,
    ApprovalDecided,
    ApprovalRefused,
    ApprovalRequested,
    StepAttemptEnded,
    StepBlocked,
    StepStarted,
)
from trestle.core.feedback import feedback_rows
from trestle.core.plan import Plan, Step
from trestle.core.policy import Policy, action_hash, audit_draw
from trestle.core.report import build_report
from trestle.core.state import RunState
from trestle.engines.local import LocalEngine
from trestle.formats.planfile import parse_plan
from trestle.formats.policyfile import parse_policy
from trestle.lifecycle import approvals as approvals_module
from trestle.lifecycle.approvals import inbox, submit_decision
from trestle.lifecycle.cancel import cancel_run
from trestle.lifecycle.feedback import feedback
from trestle.lifecycle.runs import create_run, load_state, request_decision
from trestle.store import SqliteStore
from trestle.trust.signing import decision_key, sign, signed_payload

POLL = 0.02  # engine poll interval: small, so a waiting run notices decisions quickly
PATIENCE = 30.0  # how long a test waits for something before giving up (never asserted)

E = TypeVar("E")


class Harness:
    """One test's world: a workspace, a plan directory and a SQLite file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.workspace = root / "ws"
        self.workspace.mkdir()
        self.db = root / "trestle.db"
        self.store = SqliteStore(self.db)
        self._engines: list[LocalEngine] = []
        self._stores = [self.store]

    def plan(self, text: str) -> Plan:
        source = self.root / "plan.yaml"
        source.write_text(textwrap.dedent(text), encoding="utf-8")
        return parse_plan(source.read_text("utf-8"), source=str(source), base_dir=self.root)

    def create(self, text: str, *, operator: Policy | None = None) -> str:
        return create_run(
            self.store,
            self.plan(text),
            workspace=self.workspace,
            plan_path=self.root / "plan.yaml",
            operator_policy=operator,
        )

    def engine(self, store: SqliteStore | None = None) -> LocalEngine:
        engine = LocalEngine(store or self.store, poll_interval=POLL)
        self._engines.append(engine)
        return engine

    def second_store(self) -> SqliteStore:
        """Another connection to the same file, as another process would open."""
        store = SqliteStore(self.db)
        self._stores.append(store)
        return store

    def run(self, run_id: str) -> RunState:
        return asyncio.run(self.engine().run(run_id))

    def events(self, run_id: str) -> list[AnyEvent]:
        return [e.event for e in self.store.events(run_id)]

    def lines(self, name: str) -> list[str]:
        """The lines of a workspace file the steps append to ([] if never written)."""
        path = self.workspace / name
        return path.read_text("utf-8").splitlines() if path.exists() else []

    def module(self, source: str) -> str:
        """A uniquely named module next to the plan (unique: sys.modules is shared)."""
        name = f"calls_{uuid.uuid4().hex[:12]}"
        (self.root / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        return name

    def approve(self, ref: str, *, similar: bool = False, reason: str = "") -> str:
        return submit_decision(self.store, ref, "approve", similar=similar, reason=reason)

    def approved_while_driven(self, run_id: str) -> tuple[threading.Thread, list[RunState]]:
        """The run driven in a thread (its final state put in the list), and its first
        approval request, once asked, approved from another connection meanwhile."""
        result: list[RunState] = []
        driver = threading.Thread(target=lambda: result.append(self.run(run_id)))
        driver.start()
        other = self.second_store()
        eventually(lambda: bool(inbox(other, run_id=run_id)), "the approval request")
        submit_decision(other, f"{run_id}.1", "approve")
        return driver, result

    def close(self) -> None:
        for engine in self._engines:
            engine.close()
        for store in self._stores:
            store.close()


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.close()


def of_kind(events: list[AnyEvent], kind: type[E], step: str | None = None) -> list[E]:
    return [
        e
        for e in events
        if isinstance(e, kind) and (step is None or getattr(e, "step", None) == step)
    ]


def started(events: list[AnyEvent], step: str) -> list[StepStarted]:
    return of_kind(events, StepStarted, step)


def requested(events: list[AnyEvent], step: str | None = None) -> list[ApprovalRequested]:
    return of_kind(events, ApprovalRequested, step)


def eventually(condition: Callable[[], bool], what: str) -> None:
    """Poll until ``condition`` holds; fail (naming ``what``) if it never does."""
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


# --- tiers through the engine ------------------------------------------------------------


def test_auto_and_log_steps_run_without_asking_and_record_their_gate(h: Harness) -> None:
    mod = h.module(
        """
        def touch(ctx):
            (ctx.workspace / "called.txt").write_text("called")
        """
    )
    (h.workspace / "in.txt").write_text("input\n")
    run_id = h.create(
        f"""
        policy:
          scope:
            output_paths: ["reports/"]
        steps:
          - id: read
            run: cat in.txt
          - id: report
            write: {{path: reports/summary.md, content: "all good\\n"}}
          - id: edit
            write: {{path: src/app.txt, content: "v2\\n"}}
          - id: shell
            run: echo ran >> shell.log
          - id: call
            python: {mod}:touch
        """
    )
    state = h.run(run_id)

    assert state.finished == "succeeded"
    events = h.events(run_id)
    assert requested(events) == []
    gates = {}
    for e in of_kind(events, StepStarted):
        assert e.gate is not None and e.gate.approval is None
        assert e.gate.action_hash == action_hash(state.step_spec(e.step).action_payload())
        gates[e.step] = (e.gate.decision.tier, e.gate.decision.source)
    assert gates == {
        "read": ("auto", "default"),
        "report": ("auto", "default"),
        "edit": ("log", "default"),
        "shell": ("log", "default"),
        "call": ("log", "default"),
    }
    assert (h.workspace / "reports/summary.md").read_text() == "all good\n"
    assert (h.workspace / "src/app.txt").read_text() == "v2\n"
    assert h.lines("shell.log") == ["ran"]
    assert (h.workspace / "called.txt").exists()


CONFIRMING_PLAN = """
    goal: release the thing
    parallelism: 1
    policy:
      scope:
        write_paths: ["src/**"]
    steps:
      - id: deploy
        run: echo deployed >> deploys.log
        irreversible: true
      - id: commit
        run: echo committed >> commits.log; git commit -m release
      - id: stray
        write: {path: docs/notes.md, content: "hello\\n"}
      - id: redirect
        run: echo hi > ../outside.txt
      - id: one
        write: {path: src/one.txt, content: "one\\n"}
      - id: two
        needs: [one]
        run: cat src/one.txt
"""


def test_confirm_tiers_wait_while_independent_steps_keep_running(h: Harness) -> None:
    run_id = h.create(CONFIRMING_PLAN)
    state = h.run(run_id)

    assert state.finished == "needs_human"
    expected = {
        "deploy": ("irreversible", "'deploy' is irreversible"),
        "commit": (
            "confirm_commands",
            "command 'git commit -m release' matches confirm_commands pattern 'git commit*'",
        ),
        "stray": ("scope.write_paths", "writes 'docs/notes.md', outside write_paths ['src/**']"),
        "redirect": (
            "scope.write_paths",
            "writes '../outside.txt', which may lie outside the workspace",
        ),
    }
    events = h.events(run_id)
    for sid, (source, reason) in expected.items():
        assert state.steps[sid].status == "awaiting_approval"
        [asked] = requested(events, sid)
        assert asked.blocking and asked.subject == "action"
        assert asked.decision is not None
        assert (asked.decision.tier, asked.decision.source, asked.decision.reason) == (
            "confirm",
            source,
            reason,
        )
        assert started(events, sid) == []
    # with one slot, the independent chain could only finish if waiting holds no slot
    assert state.steps["one"].status == state.steps["two"].status == "succeeded"
    assert of_kind(events, StepAttemptEnded, "two")[0].action.output == "one\n"
    assert not (h.workspace / "deploys.log").exists()
    assert not (h.workspace / "commits.log").exists()
    assert not (h.workspace / "docs").exists()
    assert not (h.root / "outside.txt").exists()
    # and it went on after the run had started to wait
    assert events.index(started(events, "two")[0]) > events.index(requested(events, "deploy")[0])


def test_an_operator_rule_beats_the_plan_rule(h: Harness) -> None:
    plan = """
        policy:
          rules:
            - {name: releases are routine, tier: auto, tags: [release]}
        steps:
          - id: publish
            run: echo published >> published.log
            tags: [release]
    """
    operator = parse_policy(
        {"rules": [{"name": "releases need a human", "tier": "confirm", "tags": ["release"]}]},
        source="trestle.toml",
    )
    by_plan = h.create(plan)
    by_operator = h.create(plan, operator=operator)

    assert h.run(by_plan).finished == "succeeded"
    [gate] = [e.gate for e in started(h.events(by_plan), "publish")]
    assert gate is not None and (gate.decision.tier, gate.decision.source) == (
        "auto",
        "plan.rules[0]",
    )
    assert h.lines("published.log") == ["published"]

    state = h.run(by_operator)
    assert state.steps["publish"].status == "awaiting_approval"
    [asked] = requested(h.events(by_operator), "publish")
    assert asked.decision is not None
    assert asked.decision.source == "operator.rules[0]"
    assert asked.decision.reason == (
        "operator rule 'releases need a human' forces confirm: tag 'release'"
    )
    assert h.lines("published.log") == ["published"]  # the operator's run did not publish


def test_low_confidence_after_a_failed_attempt_asks_before_the_retry(h: Harness) -> None:
    run_id = h.create(
        """
        steps:
          - id: flaky
            run: echo try >> tries.log; test "$(wc -l < tries.log)" -ge 2
            confidence: 0.6
            retries: 1
            backoff: {initial: 0}
        """
    )
    state = h.run(run_id)

    assert state.steps["flaky"].status == "awaiting_approval"
    assert h.lines("tries.log") == ["try"]
    events = h.events(run_id)
    [first] = started(events, "flaky")
    assert first.gate is not None and first.gate.decision.tier == "log"
    assert first.gate.decision.confidence == 0.6
    [asked] = requested(events, "flaky")
    assert asked.decision is not None
    assert asked.decision.source == "confidence"
    assert asked.decision.confidence == pytest.approx(0.45)
    assert asked.decision.reason == (
        "confidence 0.45 (0.6 \N{MINUS SIGN} 1 failed attempt \N{MULTIPLICATION SIGN} 0.15)"
        " is below 0.5"
    )
    card = build_card(state, 1)
    assert (card.attempts, card.last_error, card.confidence) == (1, "exit code 1", 0.45)

    h.approve(card.ref)
    state = h.run(run_id)
    assert state.finished == "succeeded"
    assert h.lines("tries.log") == ["try", "try"]
    second = started(h.events(run_id), "flaky")[1]
    assert second.attempt == 2 and second.gate is not None and second.gate.approval == 1


def test_audit_sampling_at_rate_one_reviews_after_or_before(h: Harness) -> None:
    run_id = h.create(
        """
        policy:
          audit_rate: 1
          audit_seed: 7
        steps:
          - id: notes
            run: echo noted >> notes.log
          - id: charge
            run: echo charged >> charges.log
            irreversible: true
            approval: auto
        """
    )
    state = h.run(run_id)

    events = h.events(run_id)
    # reversible: it ran, and a review after the fact waits in the inbox
    [notes] = started(events, "notes")
    assert notes.gate is not None
    decision = notes.gate.decision
    assert (decision.tier, decision.audit) == ("log", "after")
    assert decision.draw == audit_draw("7", run_id, "notes/1")
    assert h.lines("notes.log") == ["noted"]
    [review] = requested(events, "notes")
    assert (review.subject, review.blocking) == ("audit", False)
    # irreversible though forced to auto: the sample is reviewed before it runs
    [before] = requested(events, "charge")
    assert (before.subject, before.blocking) == ("audit", True)
    assert before.decision is not None and before.decision.audit == "before"
    assert before.decision.draw == audit_draw("7", run_id, "charge/1")
    assert state.steps["charge"].status == "awaiting_approval"
    assert not (h.workspace / "charges.log").exists()
    cards = {c.step: c for c in inbox(h.store, run_id=run_id)}
    assert cards["notes"].on_approve == "the review is recorded (the action already ran)"
    assert cards["charge"].on_approve == "step 'charge' runs this exact action"

    h.approve(cards["charge"].ref)
    h.approve(cards["notes"].ref, reason="looked fine")
    state = h.run(run_id)
    assert state.finished == "succeeded"
    assert h.lines("charges.log") == ["charged"]
    assert h.lines("notes.log") == ["noted"]  # approving a review does not run it again
    assert {a.status for a in state.approvals.values()} == {"approved"}
    assert inbox(h.store, run_id=run_id) == []


def test_audit_sampling_at_rate_zero_draws_nothing(h: Harness) -> None:
    run_id = h.create(
        """
        policy:
          audit_rate: 0
        steps:
          - id: charge
            run: echo charged >> charges.log
            irreversible: true
            approval: auto
        """
    )
    assert h.run(run_id).finished == "succeeded"
    [charge] = started(h.events(run_id), "charge")
    assert charge.gate is not None
    assert (charge.gate.decision.audit, charge.gate.decision.draw) == (None, None)
    assert requested(h.events(run_id)) == []
    assert h.lines("charges.log") == ["charged"]


# --- the handoff card --------------------------------------------------------------------


def test_the_card_of_a_command(h: Harness) -> None:
    run_id = h.create(
        """
        goal: ship release 1.2
        steps:
          - id: build
            run: echo built > build.txt
          - id: lint
            run: echo linted
          - id: push
            description: publish the release branch
            needs: [build]
            run: git push origin release
            env: {GIT_TERMINAL_PROMPT: "0"}
            timeout: 30
            reasoning: the build is green and the tag is in place
            confidence: 0.8
            uncertainties: ['is origin the right remote?']
            verify:
              - file_exists: build.txt
          - id: announce
            needs: [push]
            run: echo announced
        """
    )
    state = h.run(run_id)
    [card] = inbox(h.store)

    assert card.ref == f"{run_id}.1" and card.blocking and card.status == "pending"
    assert (card.step, card.objective, card.goal) == (
        "push",
        "publish the release branch",
        "ship release 1.2",
    )
    assert card.action is not None
    assert card.action.model_dump() == {
        "kind": "run",
        "command": "git push origin release",
        "path": None,
        "content": None,
        "call": None,
        "env": {"GIT_TERMINAL_PROMPT": "0"},
        "timeout": 30.0,
        "agent": None,
        "tool": None,
        "arguments": None,
    }
    assert card.action_hash == action_hash(state.step_spec("push").action_payload())
    assert (card.tier, card.rule) == ("confirm", "confirm_commands")
    assert card.why == (
        "command 'git push origin release' matches confirm_commands pattern 'git push*'"
    )
    assert card.reasoning == "the build is green and the tag is in place"
    assert card.confidence == 0.8
    assert sorted(card.done) == ["build", "lint"] and card.remaining == 2
    assert card.relevant_files == ["build.txt"]
    assert card.verify == ["build.txt exists"]
    assert card.uncertainties == ["is origin the right remote?"]
    assert card.on_approve == "step 'push' runs this exact action"
    assert card.on_reject == (
        "step 'push' does not run and fails with your reason; steps that need it are blocked"
    )


def test_the_cards_of_a_write_and_a_call(h: Harness) -> None:
    mod = h.module(
        """
        def migrate(ctx):
            (ctx.workspace / "migrated.txt").write_text("yes")
        """
    )
    run_id = h.create(
        f"""
        steps:
          - id: config
            write: {{path: conf/app.toml, content: "port = 8080\\n"}}
            approval: confirm
            optional: true
          - id: migrate
            python: {mod}:migrate
            approval: confirm
        """
    )
    h.run(run_id)
    cards = {c.step: c for c in inbox(h.store)}

    write = cards["config"].action
    assert write is not None
    assert (write.kind, write.path, write.content, write.command) == (
        "write",
        "conf/app.toml",
        "port = 8080\n",
        None,
    )
    assert cards["config"].relevant_files == ["conf/app.toml"]
    assert cards["config"].why == "'config' declares approval confirm"
    assert cards["config"].rule == "step.approval"
    # an optional step blocks nothing when rejected, and the card says so
    assert cards["config"].on_reject == "step 'config' does not run and fails with your reason"
    call = cards["migrate"].action
    assert call is not None and (call.kind, call.call) == ("python", f"{mod}:migrate")
    assert cards["migrate"].uncertainties == [
        "the step has no verify checks: nothing will confirm it worked"
    ]
    assert not (h.workspace / "conf").exists()
    assert not (h.workspace / "migrated.txt").exists()


# --- decisions ---------------------------------------------------------------------------


def test_an_approved_action_runs_exactly_once(h: Harness) -> None:
    run_id = h.create(
        """
        steps:
          - id: deploy
            run: echo deployed >> deploys.log
            irreversible: true
        """
    )
    assert h.run(run_id).finished == "needs_human"
    h.approve(f"{run_id}.1", reason="release window is open")
    state = h.run(run_id)
    assert state.finished == "succeeded"
    assert h.run(run_id).finished == "succeeded"  # driving it again changes nothing

    assert h.lines("deploys.log") == ["deployed"]
    events = h.events(run_id)
    [decided] = of_kind(events, ApprovalDecided)
    assert (decided.verdict, decided.reason) == ("approve", "release window is open")
    [deploy] = started(events, "deploy")
    assert deploy.gate is not None and deploy.gate.approval == 1
    assert state.approvals[1].status == "approved"


def test_a_rejection_fails_the_step_blocks_dependents_and_is_exported(h: Harness) -> None:
    run_id = h.create(
        """
        goal: migrate the database
        steps:
          - id: drop
            run: echo dropped >> drops.log
            irreversible: true
          - id: reseed
            needs: [drop]
            run: echo reseeded >> reseeds.log
          - id: docs
            run: echo documented >> docs.log
        """
    )
    h.run(run_id)
    submit_decision(h.store, f"{run_id}.1", "reject", reason="that table holds live data")
    state = h.run(run_id)

    assert state.finished == "partial"
    drop = state.steps["drop"]
    assert drop.status == "failed"
    assert drop.reason is not None and drop.reason.endswith(": that table holds live data")
    assert drop.reason.startswith("rejected by ")
    assert (state.steps["reseed"].status, state.steps["reseed"].blocked_by) == ("blocked", "drop")
    assert state.steps["docs"].status == "succeeded"
    assert not (h.workspace / "drops.log").exists()  # a rejected irreversible step never ran
    assert not (h.workspace / "reseeds.log").exists()
    assert started(h.events(run_id), "drop") == []
    [blocked] = of_kind(h.events(run_id), StepBlocked)
    assert blocked.step == "reseed"

    [row] = list(feedback(h.store))
    assert row["ref"] == f"{run_id}.1"
    assert (row["decision"], row["reason"], row["step"]) == (
        "rejected",
        "that table holds live data",
        "drop",
    )
    assert (row["rule"], row["goal"]) == ("irreversible", "migrate the database")
    assert row["action"]["command"] == "echo dropped >> drops.log"
    json.dumps(row)  # an export row is plain JSON


def test_the_report_of_a_rejected_step_says_how_to_ask_again(h: Harness) -> None:
    """It named the rejection and no next step; following the one it names now asks
    again, and a second answer is the one the report speaks of."""
    run_id = h.create("steps:\n  - {id: deploy, run: echo deployed >> d.log, irreversible: true}\n")
    h.run(run_id)
    submit_decision(h.store, f"{run_id}.1", "reject", reason="not today")
    state = h.run(run_id)

    [item] = [i for i in build_report(state).to_check if i.startswith("'deploy'")]
    assert item.endswith(
        f"To ask again (its action waits for a new approval): `trestle retry {run_id} "
        f"deploy`, then `trestle resume {run_id}`."
    )
    request_decision(h.store, run_id, "retry", "deploy", "")
    state = h.run(run_id)
    assert (state.steps["deploy"].status, state.approvals[2].status) == (
        "awaiting_approval",
        "pending",
    )
    submit_decision(h.store, f"{run_id}.2", "approve")
    state = h.run(run_id)
    assert state.steps["deploy"].status == "succeeded"
    assert not any("To ask again" in i for i in build_report(state).to_check)


def test_a_cancelled_runs_step_does_not_still_wait_for_its_approval(h: Harness) -> None:
    """Its report's row said 'cancelled' and, as why, 'waits for approval 1'."""
    run_id = h.create("steps:\n  - {id: deploy, run: echo deployed >> d.log, irreversible: true}\n")
    h.run(run_id)
    cancel_run(h.store, run_id, "not needed", by="ana@laptop")
    [row] = build_report(load_state(h.store, run_id)).steps
    assert (row.category, row.reason) == (
        "cancelled",
        "the run was cancelled while it waited for approval 1",
    )


def test_feedback_lists_a_decision_that_does_not_verify_as_ignored(h: Harness) -> None:
    """The record of human judgement folds a run as its engine does: a decision whose
    signature this machine's key does not verify changed nothing, and says so."""
    run_id = h.create("steps:\n  - {id: deploy, run: echo deployed >> d.log, irreversible: true}\n")
    h.run(run_id)
    submit_decision(h.store, f"{run_id}.1", "approve", reason="go")
    h.run(run_id)

    def distrusted(state: RunState, event: AnyEvent) -> str | None:
        return "signed with another key" if isinstance(event, ApprovalDecided) else None

    [ignored] = feedback_rows(h.store.events(run_id), distrusted)
    assert (ignored["act"], ignored["decision"], ignored["ignored_because"]) == (
        "approve",
        "ignored",
        "signed with another key",
    )
    assert ignored["proposed"]["action"]["command"] == "echo deployed >> d.log"
    assert ignored["next"]["passed"] is None
    [trusted] = feedback_rows(h.store.events(run_id))
    assert (trusted["decision"], trusted["reason"], trusted["next"]["passed"]) == (
        "approved",
        "go",
        True,
    )


def test_a_rejection_needs_a_reason_and_a_decision_is_made_once(h: Harness) -> None:
    run_id = h.create(
        """
        steps:
          - {id: deploy, run: echo deployed >> deploys.log, irreversible: true}
        """
    )
    h.run(run_id)
    with pytest.raises(ConfigError, match="a rejection needs a reason"):
        submit_decision(h.store, f"{run_id}.1", "reject")
    h.approve(f"{run_id}.1")
    h.run(run_id)
    with pytest.raises(ConfigError, match=r"was already decided \(approved by "):
        submit_decision(h.store, f"{run_id}.1", "reject", reason="too late")
    assert h.lines("deploys.log") == ["deployed"]


def test_of_two_decisions_made_at_once_one_is_queued_and_the_other_refused(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the other decider queues theirs between this one's look at the queue and its own
    # queueing (signing comes between them): both were told "queued" before
    run_id = h.create(
        """
        steps:
          - {id: deploy, run: echo deployed >> deploys.log, irreversible: true}
        """
    )
    h.run(run_id)
    meanwhile = [lambda: submit_decision(h.store, f"{run_id}.1", "approve", reason="ship it")]
    real_payload = signed_payload  # as the module has it

    def signed_while_another_decides(*args: object, **kwargs: object) -> str:
        if meanwhile:
            meanwhile.pop()()
        return real_payload(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(approvals_module, "signed_payload", signed_while_another_decides)
    with pytest.raises(ConfigError, match="was already decided; the run records it"):
        submit_decision(h.store, f"{run_id}.1", "reject", reason="not today")
    assert len(h.store.pending_requests(run_id)) == 1
    h.run(run_id)
    assert h.lines("deploys.log") == ["deployed"]
    assert not [e for e in h.events(run_id) if isinstance(e, ApprovalRefused)]


def test_a_queued_decision_that_does_not_verify_holds_no_place(h: Harness) -> None:
    # written into the store's queue by anyone who may write it, signed with another
    # key: it made a person's own decision "already decided" until the run refused it
    run_id = h.create(
        """
        steps:
          - {id: deploy, run: echo deployed >> deploys.log, irreversible: true}
        """
    )
    state = h.run(run_id)
    a = state.approvals[1]
    fields = {"run_id": run_id, "approval": 1, "verdict": "approve", "by": "mallory@host"}
    fields["action_hash"] = a.action_hash
    forged = json.dumps({"fields": fields, "signature": sign(fields, b"k" * 32)})
    h.store.add_request(run_id, "decision", "deploy", "", now=time.time(), payload=forged)
    submit_decision(h.store, f"{run_id}.1", "reject", reason="not today")
    h.run(run_id)
    assert h.lines("deploys.log") == []
    assert load_state(h.store, run_id).approvals[1].status == "rejected"


def test_a_modified_action_runs_instead_of_the_original(h: Harness) -> None:
    run_id = h.create(
        """
        steps:
          - id: deploy
            run: echo production >> targets.log
            irreversible: true
          - id: after
            needs: [deploy]
            run: echo after >> after.log
        """
    )
    h.run(run_id)
    submit_decision(h.store, f"{run_id}.1", "modify", edited={"run": "echo staging >> targets.log"})
    state = h.run(run_id)

    assert state.finished == "succeeded"
    assert h.lines("targets.log") == ["staging"]
    assert h.lines("after.log") == ["after"]
    [decided] = of_kind(h.events(run_id), ApprovalDecided)
    assert decided.verdict == "modify" and decided.edited is not None
    assert decided.action_hash == action_hash(decided.edited.action_payload())
    [deploy] = started(h.events(run_id), "deploy")
    assert deploy.gate is not None and deploy.gate.action_hash == decided.action_hash
    assert state.approvals[1].status == "modified"


def test_an_invalid_edit_is_refused_before_anything_is_queued(h: Harness) -> None:
    run_id = h.create(
        """
        steps:
          - {id: deploy, run: echo deployed >> deploys.log, irreversible: true}
        """
    )
    h.run(run_id)
    with pytest.raises(ConfigError, match="cannot edit needs: only run, write"):
        submit_decision(h.store, f"{run_id}.1", "modify", edited={"needs": ["x"]})
    with pytest.raises(ConfigError, match="the edited action is invalid"):
        submit_decision(h.store, f"{run_id}.1", "modify", edited={"timeout": -1})
    assert h.store.pending_requests(run_id) == []


def test_approve_similar_covers_similar_actions_only(h: Harness) -> None:
    for args in (["init", "-q"], ["config", "user.name", "t"], ["config", "user.email", "t@x"]):
        subprocess.run(["git", *args], cwd=h.workspace, check=True)
    run_id = h.create(
        """
        steps:
          - id: commit-a
            run: git commit --allow-empty -qm a
          - id: commit-b
            needs: [commit-a]
            run: git commit --allow-empty -qm 'b, said differently'
          - id: publish
            needs: [commit-b]
            run: npm publish 2>/dev/null || echo published >> published.log
        """
    )
    h.run(run_id)
    [first] = inbox(h.store)
    assert first.step == "commit-a"
    h.approve(first.ref, similar=True)
    state = h.run(run_id)

    log = subprocess.run(
        ["git", "log", "--format=%s"], cwd=h.workspace, capture_output=True, text=True
    )
    assert log.stdout.splitlines() == ["b, said differently", "a"]
    events = h.events(run_id)
    assert [e.step for e in requested(events)] == ["commit-a", "publish"]
    [b] = started(events, "commit-b")
    assert b.gate is not None and b.gate.approval == 1  # covered by the first approval
    assert state.steps["publish"].status == "awaiting_approval"
    assert not (h.workspace / "published.log").exists()


def test_approve_similar_never_covers_chains_wrappers_or_other_flags(h: Harness) -> None:
    # each of these would have been covered by a similar approval of `git commit -m a`
    run_id = h.create(
        """
        steps:
          - id: first
            run: git commit -qm a 2>/dev/null || echo a >> commits.log
          - id: again
            needs: [first]
            run: git commit -qm a 2>/dev/null || echo again >> commits.log
        """
    )
    h.run(run_id)
    h.approve(f"{run_id}.1", similar=True)
    state = h.run(run_id)
    assert h.lines("commits.log") == ["a"]  # the identical chain is asked again
    assert state.steps["again"].status == "awaiting_approval"


def test_approve_similar_on_a_commit_does_not_cover_a_push(h: Harness) -> None:
    run_id = h.create(
        """
        steps:
          - id: commit
            run: git commit -qm a 2>/dev/null || echo committed >> git.log
          - id: push
            needs: [commit]
            run: git push -q --force 2>/dev/null || echo pushed >> git.log
        """
    )
    h.run(run_id)
    h.approve(f"{run_id}.1", similar=True)
    state = h.run(run_id)
    assert h.lines("git.log") == ["committed"]
    assert state.steps["push"].status == "awaiting_approval"


def test_approve_similar_on_a_call_does_not_cover_another_module(h: Harness) -> None:
    first = h.module("def go(ctx):\n    (ctx.workspace / 'first.txt').write_text('1')\n")
    other = h.module("def go(ctx):\n    (ctx.workspace / 'other.txt').write_text('2')\n")
    run_id = h.create(
        f"""
        steps:
          - {{id: first, python: "{first}:go", approval: confirm}}
          - {{id: other, needs: [first], python: "{other}:go", approval: confirm}}
        """
    )
    h.run(run_id)
    h.approve(f"{run_id}.1", similar=True)
    state = h.run(run_id)
    assert (h.workspace / "first.txt").exists()
    assert state.steps["other"].status == "awaiting_approval"
    assert not (h.workspace / "other.txt").exists()


def test_a_decision_reaches_a_run_that_is_being_driven(h: Harness) -> None:
    """No resume needed: the driving process polls for decisions while others run. The
    approved command then runs alone: it waits for what runs beside it to end, and
    nothing else starts meanwhile (``late``, ready as soon as ``soak`` ends)."""
    run_id = h.create(
        """
        steps:
          - id: deploy
            run: echo deployed >> deploys.log
            irreversible: true
          - id: soak
            run: while [ ! -f go ]; do sleep 0.02; done; echo soaked >> soak.log
            timeout: 60
          - {id: late, needs: [soak], run: echo late >> late.log}
        """
    )
    driver, result = h.approved_while_driven(run_id)
    try:

        def waits() -> list[AloneAwaited]:
            return of_kind(h.events(run_id), AloneAwaited, "deploy")

        eventually(lambda: bool(waits()), "the approved step to wait for soak")
        assert waits()[0].running == ("soak",)
        assert not h.lines("deploys.log")  # it waits for soak, which still runs
    finally:
        (h.workspace / "go").touch()
        driver.join(PATIENCE)
    assert result and result[0].finished == "succeeded"
    assert h.lines("deploys.log") == ["deployed"]
    events = h.events(run_id)
    assert len(of_kind(events, ApprovalDecided)) == 1
    order = [
        (type(e).__name__, e.step) for e in events if isinstance(e, StepStarted | StepAttemptEnded)
    ]
    assert order == [
        ("StepStarted", "soak"),
        ("StepAttemptEnded", "soak"),
        ("StepStarted", "deploy"),
        ("StepAttemptEnded", "deploy"),
        ("StepStarted", "late"),
        ("StepAttemptEnded", "late"),
    ], order


def test_a_fresh_process_continues_a_run_that_waited(h: Harness) -> None:
    run_id = h.create(
        """
        steps:
          - id: deploy
            run: echo deployed >> deploys.log
            irreversible: true
        """
    )
    assert h.run(run_id).finished == "needs_human"
    h.store.close()  # the first "process" is gone

    later = h.second_store()
    submit_decision(later, f"{run_id}.1", "approve")
    state = asyncio.run(h.engine(later).run(run_id))
    assert state.finished == "succeeded"
    assert h.lines("deploys.log") == ["deployed"]


# --- safety ------------------------------------------------------------------------------


def _queue_signed(store: SqliteStore, state: RunState, number: int, **changes: object) -> None:
    """Queue a decision the way the decision path does, with some fields changed."""
    a = state.approvals[number]
    fields: dict[str, object] = {
        "run_id": state.run_id,
        "approval": number,
        "verdict": "approve",
        "action_hash": a.action_hash,
        "reason": "",
        "similar": False,
        "edited": None,
        "top_up": None,
        "by": "mallory@host",
    }
    fields.update(changes)
    payload = json.dumps({"fields": fields, "signature": sign(fields, decision_key())})
    store.add_request(state.run_id, "decision", a.step or "", "", now=time.time(), payload=payload)


def test_an_approval_for_a_different_action_hash_is_refused(h: Harness) -> None:
    run_id = h.create(
        """
        steps:
          - {id: deploy, run: echo deployed >> deploys.log, irreversible: true}
        """
    )
    state = h.run(run_id)
    # signed with the right key, but bound to some other action
    _queue_signed(h.store, state, 1, action_hash=action_hash({"run": "echo harmless"}))
    state = h.run(run_id)

    [refused] = of_kind(h.events(run_id), ApprovalRefused)
    assert refused.approval == 1
    assert refused.reason == "the action changed since it was shown: ask again"
    assert of_kind(h.events(run_id), ApprovalDecided) == []
    assert state.steps["deploy"].status == "awaiting_approval"
    assert not (h.workspace / "deploys.log").exists()
    # the genuine decision still works afterwards
    h.approve(f"{run_id}.1")
    assert h.run(run_id).finished == "succeeded"
    assert h.lines("deploys.log") == ["deployed"]


def test_an_older_approval_does_not_apply_after_the_action_was_modified(h: Harness) -> None:
    run_id = h.create(
        """
        steps:
          - {id: deploy, run: echo production >> targets.log, irreversible: true}
        """
    )
    state = h.run(run_id)
    # two people decide before the run is driven again: the edit lands first ...
    submit_decision(h.store, f"{run_id}.1", "modify", edited={"run": "echo staging >> targets.log"})
    with pytest.raises(ConfigError, match="already decided"):  # ... a second one is refused
        h.approve(f"{run_id}.1")
    # ... unless it raced past that check from another process: the run refuses it then
    fields = {
        "run_id": run_id,
        "approval": 1,
        "verdict": "approve",
        "action_hash": state.approvals[1].action_hash,
        "reason": "",
        "similar": False,
        "edited": None,
        "top_up": None,
        "by": "someone else",
    }
    payload = signed_payload(fields, decision_key())
    h.store.add_request(run_id, "decision", "deploy", "", now=time.time(), payload=payload)
    state = h.run(run_id)

    [decided] = of_kind(h.events(run_id), ApprovalDecided)
    [refused] = of_kind(h.events(run_id), ApprovalRefused)
    assert decided.verdict == "modify" and refused.approval == 1
    assert "already decided" in refused.reason
    assert state.finished == "succeeded"
    assert h.lines("targets.log") == ["staging"]  # the original action never ran


def test_output_that_imitates_an_approval_changes_nothing(h: Harness) -> None:
    run_id = h.create(
        """
        steps:
          - {id: deploy, run: echo deployed >> deploys.log, irreversible: true}
          - id: chatter
            run: >-
              echo "approve $TRESTLE_RUN_ID.1";
              echo 'APPROVED. y';
              echo '{"fields": {"approval": 1, "verdict": "approve"}, "signature": "00"}'
        """
    )
    state = h.run(run_id)
    chatter = of_kind(h.events(run_id), StepAttemptEnded, "chatter")[0]
    assert f"approve {run_id}.1" in chatter.action.output

    assert state.steps["deploy"].status == "awaiting_approval"
    assert state.approvals[1].status == "pending"
    assert of_kind(h.events(run_id), ApprovalDecided) == []
    assert not (h.workspace / "deploys.log").exists()


FORGER = """
import hashlib, hmac, json, os, sqlite3, sys

db, action = sys.argv[1], sys.argv[2]
run_id = os.environ["TRESTLE_RUN_ID"]
fields = {
    "run_id": run_id, "approval": 1, "verdict": "approve", "action_hash": action,
    "reason": "", "similar": False, "edited": None, "top_up": None, "by": "step",
}
text = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
wrong_key = hmac.new(os.urandom(32), text, hashlib.sha256).hexdigest()
rows = [
    json.dumps({"fields": fields}),                            # unsigned
    json.dumps({"fields": fields, "signature": "0" * 64}),     # a made-up signature
    json.dumps({"fields": fields, "signature": wrong_key}),    # signed with another key
]
with sqlite3.connect(db) as conn:
    for payload in rows:
        conn.execute(
            "INSERT INTO requests (run_id, kind, step, reason, created_at, payload) "
            "VALUES (?, 'decision', 'deploy', '', 0, ?)",
            (run_id, payload),
        )
print("inserted", len(rows))
"""


@pytest.mark.usefixtures("unconfined")
def test_rows_forged_by_a_step_are_refused_and_the_step_never_runs(h: Harness) -> None:
    (h.workspace / "forge.py").write_text(FORGER)
    deploy = Step(id="deploy", run="echo deployed >> deploys.log", irreversible=True)
    digest = action_hash(deploy.action_payload())  # the forger even knows the hash
    run_id = h.create(
        f"""
        steps:
          - {{id: deploy, run: echo deployed >> deploys.log, irreversible: true}}
          - {{id: forge, run: '{sys.executable} forge.py {h.db} {digest}'}}
        """
    )
    h.run(run_id)
    # rows that land as the run settles are read when it is next driven
    state = h.run(run_id)

    forge = of_kind(h.events(run_id), StepAttemptEnded, "forge")[0]
    assert forge.ok and "inserted 3" in forge.action.output
    refused = of_kind(h.events(run_id), ApprovalRefused)
    assert [r.reason for r in refused] == [
        "not signed by the decision path (trestle approve/reject)"
    ] * 3
    assert of_kind(h.events(run_id), ApprovalDecided) == []
    assert state.steps["deploy"].status == "awaiting_approval"
    assert state.approvals[1].status == "pending"
    assert not (h.workspace / "deploys.log").exists()
    assert h.store.pending_requests(run_id) == []  # consumed, as refusals


def test_a_skip_forged_by_a_step_does_not_undo_a_rejection(h: Harness) -> None:
    run_id = h.create(
        """
        steps:
          - {id: drop, run: echo dropped >> drops.log, irreversible: true}
          - {id: reseed, needs: [drop], run: echo reseeded >> reseeds.log}
        """
    )
    h.run(run_id)
    submit_decision(h.store, f"{run_id}.1", "reject", reason="not today")
    h.run(run_id)
    with sqlite3.connect(h.db) as conn:  # what a step's own process can do
        conn.execute(
            "INSERT INTO requests (run_id, kind, step, reason, created_at) "
            "VALUES (?, 'skip', 'drop', 'forged', 0)",
            (run_id,),
        )
    state = h.run(run_id)
    assert state.steps["drop"].status == "failed"
    assert not (h.workspace / "reseeds.log").exists()


def test_the_card_says_an_approved_action_runs_again_on_its_retries_as_it_then_does(
    h: Harness,
) -> None:
    run_id = h.create(
        """
        goal: ship
        steps:
          - id: ship
            run: "echo ran >> effects.log; exit 1"
            irreversible: true
            retries: 2
            backoff: {initial: 0.05}
          - id: tag
            run: "echo tagged >> tags.log; exit 1"
            irreversible: true
            retries: 1
            backoff: {initial: 0.05}
            verify:
              - command: "test -f tagged"
          - id: mail
            run: "echo mailed >> mail.log"
            irreversible: true
        """
    )
    h.run(run_id)
    cards = {c.step: c for c in inbox(h.store, run_id=run_id)}

    assert cards["ship"].on_approve == (
        "step 'ship' runs this exact action; if it fails, it runs again up to 2 more "
        "times without asking (its retries)"
    )
    assert cards["tag"].on_approve == (
        "step 'tag' runs this exact action; if it fails, it runs again once more without "
        "asking (its retries), each only after its verify checks find it not done"
    )
    assert cards["mail"].on_approve == "step 'mail' runs this exact action"
    for card in cards.values():
        h.approve(card.ref)
    h.run(run_id)
    assert h.lines("effects.log") == ["ran"] * 3  # as the card said: no one asked again
    assert h.lines("tags.log") == ["tagged"] * 2
    assert h.lines("mail.log") == ["mailed"]


def test_an_approved_write_goes_through_no_link_a_step_could_point_elsewhere(h: Harness) -> None:
    for env in ("staging", "prod"):
        (h.workspace / "deploy" / env).mkdir(parents=True)
        (h.workspace / "deploy" / env / "app.yaml").write_text("replicas: 3\n")
    (h.workspace / "d").symlink_to("deploy/staging")
    run_id = h.create(
        """
        goal: scale staging down
        steps:
          - id: scale
            write: {path: d/app.yaml, content: "replicas: 0\\n"}
            approval: confirm
        """
    )
    h.run(run_id)
    (card,) = inbox(h.store, run_id=run_id)
    # pointed at prod while the card waits (a step beside it could, as anything can)
    (h.workspace / "d").unlink()
    (h.workspace / "d").symlink_to("deploy/prod")
    h.approve(card.ref)

    state = h.run(run_id)

    assert (h.workspace / "deploy" / "prod" / "app.yaml").read_text() == "replicas: 3\n"
    assert state.steps["scale"].status == "failed"
    assert "cannot write 'd/app.yaml': 'd' is a symlink" in (state.steps["scale"].error or "")
