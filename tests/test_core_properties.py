"""Property-based tests of the pure core: random plans, random outcomes, random crashes.

A small deterministic simulator stands in for the engine: it asks ``decide`` for
decisions, applies them, "runs" attempts and probes against a modelled world (each
step's effect is either done or not), feeds the results back in an order hypothesis
chooses, kills and resumes the run at random points (dropping in-flight results, whose
effect may or may not have happened), and plays a human retrying or skipping steps
after the run settles, approving or rejecting the actions that wait for approval.
Every event is checked against the invariants as it happens,
and the end state against the rules in :mod:`trestle.core.decider`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trestle.core.decider import decide, next_wakeup, run_status
from trestle.core.events import (
    EVENT_ADAPTER,
    ActionResult,
    AloneAwaited,
    AloneGranted,
    AnyEvent,
    ApprovalDecided,
    ApprovalRefused,
    ApprovalRequested,
    BudgetExhausted,
    CallAloneAsked,
    CheckResult,
    ProbeReason,
    RunCreated,
    RunFinished,
    RunResumed,
    RunRewound,
    RunStatus,
    StepAttemptEnded,
    StepBlocked,
    StepEscalated,
    StepFailed,
    StepProbed,
    StepProbeStarted,
    StepReopened,
    StepRetryScheduled,
    StepSkipped,
    StepStarted,
    ToolCallEnded,
    decode_event,
    event_json,
    idempotency_key,
)
from trestle.core.plan import (
    Backoff,
    FileExistsCheck,
    Plan,
    Step,
    graph_problems,
    topological_order,
)
from trestle.core.policy import action_hash
from trestle.core.state import RunState, fold, runs_alone
from trestle.core.step_state import IN_FLIGHT, TERMINAL
from trestle.lifecycle.runs import summary_json

ALL_STATUSES = frozenset(
    {
        "pending",
        "running",
        "attempt_failed",
        "retry_wait",
        "probing",
        "unknown",
        "escalated",
        "awaiting_approval",
        "succeeded",
        "failed",
        "blocked",
        "skipped",
    }
)
UNSETTLED = frozenset({"running", "probing", "retry_wait", "attempt_failed", "unknown"})
START = 1000.0
MAX_ITERATIONS = 20_000


# --- plans and outcome tables ------------------------------------------------------------


@dataclass(frozen=True)
class Behaviour:
    """How a step's attempts turn out in the simulated world."""

    fail_first: int  # attempts 1..fail_first fail (flaky), later ones succeed
    effect_on_fail: bool  # a failing attempt still did its work (e.g. crashed after it)


@st.composite
def steps_strategy(draw: st.DrawFn, index: int, earlier: list[str]) -> Step:
    sid = f"s{index}"
    needs: list[str] = []
    if earlier:
        needs = draw(st.lists(st.sampled_from(earlier), max_size=3, unique=True))
    irreversible = draw(st.booleans())
    idempotent = draw(st.sampled_from([None, False] if irreversible else [None, False, True]))
    verify = (FileExistsCheck(file_exists=f"out/{sid}"),) if draw(st.booleans()) else ()
    backoff = Backoff(
        initial=draw(st.sampled_from([0.0, 0.5, 2.0])),
        factor=draw(st.sampled_from([1.0, 2.0])),
        max=draw(st.sampled_from([0.0, 1.0, 5.0])),
    )
    return Step(
        id=sid,
        run="true",
        needs=tuple(needs),
        retries=draw(st.integers(0, 3)),
        backoff=backoff,
        optional=draw(st.booleans()),
        irreversible=irreversible,
        idempotent=idempotent,
        verify=verify,
        # irreversible steps need approval by default; some plans force tiers
        approval=draw(st.sampled_from([None, None, "auto", "log", "confirm"])),
    )


@st.composite
def plans(draw: st.DrawFn, max_steps: int = 50) -> Plan:
    n = draw(st.integers(1, max_steps))
    steps: list[Step] = []
    for i in range(n):
        steps.append(draw(steps_strategy(i, [s.id for s in steps])))
    plan = Plan(
        goal="property",
        parallelism=draw(st.integers(1, 3) | st.integers(1, 16)),
        escalate=draw(st.booleans()),
        steps=tuple(steps),
    )
    assert graph_problems(plan.steps) == []
    return plan


def behaviours(plan: Plan) -> st.SearchStrategy[dict[str, Behaviour]]:
    one = st.builds(Behaviour, fail_first=st.integers(0, 5), effect_on_fail=st.booleans())
    return st.fixed_dictionaries({s.id: one for s in plan.steps})


# --- independent statements of the rules -------------------------------------------------


def need_met(state: RunState, need: str) -> bool:
    status = state.steps[need].status
    if status in ("succeeded", "skipped"):
        return True
    return state.step_spec(need).optional and status in ("failed", "blocked")


def ancestors(plan: Plan, sid: str) -> set[str]:
    seen: set[str] = set()
    todo = list(plan.step(sid).needs)
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += plan.step(n).needs
    return seen


def expected_status(state: RunState, rejected: set[str]) -> RunStatus:
    """run_status as decider.py documents it, derived from statuses alone (and which
    steps a human rejected: a rejection is a decision, not a dead letter)."""
    plan = state.plan
    for s in plan.steps:
        status = state.steps[s.id].status
        if status in ("escalated", "awaiting_approval"):
            return "needs_human"
        if status == "failed" and not s.optional and plan.escalate and s.id not in rejected:
            return "needs_human"
    for s in plan.steps:
        status = state.steps[s.id].status
        if s.optional and status in TERMINAL:
            continue
        if status not in ("succeeded", "skipped"):
            return "partial"
    return "succeeded"


def dump(state: RunState) -> dict[str, object]:
    return state.model_dump()


def assert_same_state(live: RunState, other: RunState, now: float) -> None:
    assert dump(other) == dump(live)
    assert other.frontier() == live.frontier()
    assert other.in_flight == live.in_flight
    assert decide(other, now) == decide(live, now)


# --- the simulator -----------------------------------------------------------------------


@dataclass
class Op:
    """An attempt or a probe that the engine would have dispatched."""

    step: str
    attempt: int | None  # None for a probe
    reason: ProbeReason | None = None


@dataclass
class Track:
    """Per-step bookkeeping the invariants need, reset when a human intervenes."""

    failed_attempts: int = 0
    terminal_events: int = 0
    effects: int = 0  # times the step's work actually happened in the world
    probed_after_unknown: bool = False  # checks failed since an outcome was lost to a crash
    reopened: bool = False  # a human asked for it to run again


@dataclass
class Sim:
    plan: Plan
    table: dict[str, Behaviour]
    data: st.DataObject
    crash_at: frozenset[int]
    human_rounds: int
    now: float = START
    state: RunState = field(init=False)
    events: list[AnyEvent] = field(init=False)
    ops: list[Op] = field(default_factory=list)
    world: dict[str, bool] = field(default_factory=dict)  # step id -> effect done
    dispatched: Counter[str] = field(default_factory=Counter)  # attempts run per step
    track: dict[str, Track] = field(default_factory=dict)
    snapshot: tuple[str, int] | None = None
    rejected: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        created = RunCreated(at=self.now, run_id="r1", plan=self.plan, workspace="/ws")
        self.state = RunState.from_created(created)
        self.events = [created]
        self.world = {s.id: False for s in self.plan.steps}
        self.track = {s.id: Track() for s in self.plan.steps}

    # -- recording -----------------------------------------------------------------

    def record(self, event: AnyEvent) -> None:
        self.check_before(event)
        self.state.apply(event)
        self.events.append(event)
        self.check_after(event)

    def settle(self) -> bool:
        """Apply decisions until there are none; True if the run finished."""
        while True:
            before = (self.state.model_dump_json(), self.state.frontier(), self.state.in_flight)
            decided = decide(self.state, self.now)
            after = (self.state.model_dump_json(), self.state.frontier(), self.state.in_flight)
            assert after == before, "decide mutated the state"
            if not decided:
                return False
            sids = [getattr(e, "step", None) for e in decided if hasattr(e, "step")]
            assert len(sids) == len(set(sids)), f"two decisions for one step: {decided}"
            for event in decided:
                self.record(event)
                match event:
                    case StepStarted(step=sid, attempt=attempt):
                        self.ops.append(Op(sid, attempt))
                    case StepProbeStarted(step=sid, reason=why):
                        self.ops.append(Op(sid, None, why))
                    case RunFinished():
                        assert event is decided[-1]
                        return True
                assert len(self.ops) <= self.plan.parallelism, (
                    f"{len(self.ops)} in flight, parallelism {self.plan.parallelism}"
                )

    # -- the world -----------------------------------------------------------------

    def complete(self, op: Op) -> AnyEvent:
        spec = self.plan.step(op.step)
        if op.attempt is None:
            assert op.reason is not None
            if not spec.verify:  # a probe of an unknown outcome with nothing to check
                return StepProbed(at=self.now, step=op.step, reason=op.reason, passed=False)
            done = self.world[op.step]
            checks = (_check_result(op.step, done),)
            return StepProbed(
                at=self.now, step=op.step, reason=op.reason, passed=done, checks=checks
            )
        self.dispatched[op.step] += 1
        behaviour = self.table[op.step]
        if self.dispatched[op.step] > behaviour.fail_first:
            self.do_effect(op.step)
            verdicts = (_check_result(op.step, True),) if spec.verify else ()
            action = ActionResult(status="ok", exit_code=0)
            return StepAttemptEnded(
                at=self.now,
                step=op.step,
                attempt=op.attempt,
                ok=True,
                action=action,
                checks=verdicts,
            )
        if behaviour.effect_on_fail:
            self.do_effect(op.step)
        action = ActionResult(status="failed", exit_code=1, error="exit 1")
        return StepAttemptEnded(
            at=self.now, step=op.step, attempt=op.attempt, ok=False, action=action
        )

    def do_effect(self, sid: str) -> None:
        self.world[sid] = True
        self.track[sid].effects += 1

    def crash(self) -> None:
        """Kill the process: in-flight results are lost, their effects may have happened."""
        for op in self.ops:
            if op.attempt is not None:
                self.dispatched[op.step] += 1
                if self.data.draw(st.booleans(), label=f"crashed {op.step} took effect"):
                    self.do_effect(op.step)
        self.ops = []
        self.record(RunResumed(at=self.now, owner="sim[2]"))

    def human(self) -> bool:
        """A human retries, skips, approves or rejects some steps of a settled run;
        False if none did."""
        pending_events: list[StepReopened | StepSkipped | ApprovalDecided] = []
        for sid in self.plan.ids:
            status = self.state.steps[sid].status
            if status in ("failed", "escalated"):
                choices = ["leave", "retry", "skip"]
            elif status in ("blocked", "pending"):
                choices = ["leave", "skip"]
            elif status == "awaiting_approval":
                choices = ["leave", "approve", "reject"]
            else:
                continue
            choice = self.data.draw(st.sampled_from(choices), label=f"human on {sid}")
            if choice in ("approve", "reject"):
                number = self.state.steps[sid].approval
                assert number is not None
                pending_events.append(
                    ApprovalDecided(
                        at=self.now,
                        approval=number,
                        verdict="approve" if choice == "approve" else "reject",
                        by="sim",
                        reason="looked at it",
                        action_hash=self.state.approvals[number].action_hash,
                    )
                )
                if choice == "reject":
                    self.rejected.add(sid)
            elif choice == "retry":
                pending_events.append(StepReopened(at=self.now, step=sid, reason="try again"))
            elif choice == "skip":
                pending_events.append(StepSkipped(at=self.now, step=sid, reason="not needed"))
        if not pending_events:
            return False
        # as the engine does: the driver that picks up the requests resumes the run
        self.record(RunResumed(at=self.now, owner="human[3]"))
        for event in pending_events:
            before = self.statuses()
            sid = event.step if not isinstance(event, ApprovalDecided) else self.approved(event)
            self.track[sid] = Track()
            if isinstance(event, StepReopened):
                self.rejected.discard(sid)
            self.record(event)
            # a human decision starts afresh the bookkeeping of every step it moved
            for sid, after in self.statuses().items():
                if after != before[sid]:
                    self.track[sid] = Track(reopened=isinstance(event, StepReopened))
        return True

    def approved(self, event: ApprovalDecided) -> str:
        sid = self.state.approvals[event.approval].step
        assert sid is not None
        return sid

    def statuses(self) -> dict[str, str]:
        return {sid: now.status for sid, now in self.state.steps.items()}

    # -- the loop --------------------------------------------------------------------

    def run(self) -> None:
        human_rounds = self.human_rounds
        snapshot_iteration = self.data.draw(st.integers(0, 200), label="snapshot at")
        for iteration in range(MAX_ITERATIONS):
            if self.settle():
                self.check_finished()
                if human_rounds > 0 and self.human():
                    human_rounds -= 1
                    continue
                return
            # a wakeup the decider cannot act on would make the engine spin until it comes
            wake = next_wakeup(self.state)
            assert wake is None or wake > self.now, f"wakeup {wake} is not after {self.now}"
            if iteration == snapshot_iteration:
                self.take_snapshot()
            if iteration in self.crash_at:
                # the engine commits results together with the decisions they lead to,
                # so a crash falls after a settled pass, with its work dispatched
                self.crash()
                continue
            if self.ops:
                index = self.data.draw(st.integers(0, len(self.ops) - 1), label="completes")
                op = self.ops.pop(index)
                self.now += self.data.draw(st.sampled_from([0.0, 0.0, 0.5, 1.0, 3.0]), label="dt")
                self.record(self.complete(op))
            else:
                assert wake is not None, f"stuck without finishing: {self.statuses()}"
                self.now = wake
        raise AssertionError(f"the run did not finish within {MAX_ITERATIONS} iterations")

    def take_snapshot(self) -> None:
        data = self.state.model_dump_json()
        self.snapshot = (data, len(self.events))
        restored = RunState.from_snapshot(data)
        assert_same_state(self.state, restored, self.now)

    # -- invariants ------------------------------------------------------------------

    def check_before(self, event: AnyEvent) -> None:
        state = self.state
        if isinstance(event, ApprovalDecided):
            a = state.approvals[event.approval]
            assert a.status == "pending" and a.step is not None
            assert state.steps[a.step].status == "awaiting_approval"
            return
        human_or_run = (RunCreated, RunResumed, RunFinished, StepReopened, StepSkipped)
        if isinstance(event, (*human_or_run, ApprovalRefused, BudgetExhausted, RunRewound)):
            return
        sid = getattr(event, "step", None)
        assert sid is not None
        status = state.steps[sid].status
        spec = state.step_spec(sid)
        track = self.track[sid]
        # (b) a terminal step is final: nothing but a human touches it again
        assert status not in TERMINAL, f"{event.kind} for {sid}, already {status}"
        match event:
            case StepStarted(attempt=attempt, key=key):
                assert status in ("pending", "retry_wait", "unknown"), (sid, status)
                # (a) every need met before the step starts
                unmet = [n for n in spec.needs if not need_met(state, n)]
                assert not unmet, f"{sid} started before {unmet} were met"
                assert attempt == state.steps[sid].attempt + 1
                assert key == idempotency_key(state.run_id, sid, attempt)
                if status == "unknown":
                    # (f) an outcome lost to a crash is re-run only when safe, after probing
                    assert spec.rerunnable, f"{sid} is not re-runnable but was re-run"
                    assert not spec.verify or track.probed_after_unknown
                if spec.verify and self.world[sid] and not track.reopened:
                    raise AssertionError(f"{sid} started although its work is verifiably done")
                track.probed_after_unknown = track.reopened = False
                # invariant 5: a tier that needs a human runs only with a matching approval
                gate = event.gate
                assert gate is not None
                assert gate.action_hash == action_hash(spec.action_payload())
                if gate.decision.tier == "confirm":
                    assert gate.approval is not None, f"{sid} ran unapproved"
                    granted = state.approvals[gate.approval]
                    assert granted.status == "approved" and granted.step == sid
                    assert state.steps[sid].approved_hash == gate.action_hash
                if spec.irreversible and spec.approval is None:
                    assert gate.decision.tier == "confirm"
                # (h) an approved command runs with no attempt or probe of the run beside it
                if runs_alone(spec, gate):
                    assert not state.in_flight, f"{sid} ran beside {self.statuses()}"
                    # nor beside what a crash lost, before its probe ended its processes
                    lost = [s for s, x in state.steps.items() if x.status == "unknown"]
                    assert all(state.steps[s].probed for s in lost), (sid, lost)
                assert "running" not in state.alone_marks.values(), f"{sid} started beside one"
            case ApprovalRequested(step=asked):
                assert asked == sid and status in ("pending", "retry_wait", "unknown")
                assert event.blocking and event.subject == "action"
            case StepProbeStarted(reason=why):
                assert "running" not in state.alone_marks.values(), f"{sid} probed beside one"
                # an unknown outcome is probed even without checks: the engine settles
                # the attempt's leftover processes there, before anything is decided
                assert spec.verify or why == "unknown_outcome", f"{sid} probed without checks"
                assert status in ("retry_wait", "unknown"), (sid, status)
                if why == "before_retry":  # (a) it judges the world the attempt would see
                    unmet = [n for n in spec.needs if not need_met(state, n)]
                    assert not unmet, f"{sid} probed before {unmet} were met"
            case StepProbed(reason=why, passed=passed):
                assert status == "probing"
                if why == "unknown_outcome" and not passed:
                    track.probed_after_unknown = True
            case StepAttemptEnded(ok=ok):
                assert status == "running"
                if not ok:
                    track.failed_attempts += 1
                    # (d) never more failed attempts than retries + 1
                    assert track.failed_attempts <= spec.retries + 1
            case StepRetryScheduled():
                assert status == "attempt_failed"
                assert track.failed_attempts <= spec.retries
            case StepFailed(dead_lettered=dlq):
                assert status == "attempt_failed"
                assert track.failed_attempts == spec.retries + 1
                assert dlq == (not spec.optional and self.plan.escalate)
            case StepBlocked(by=root):
                # (c) only a waiting step is blocked (or one to re-run, parked behind a
                # need a human reopened), and by a failed required ancestor
                assert status in ("pending", "retry_wait", "unknown"), (sid, status)
                assert state.steps[root].status == "failed"
                assert not state.step_spec(root).optional
                assert root in ancestors(self.plan, sid)
            case StepEscalated():
                assert status == "unknown"
                assert not spec.rerunnable
                assert not spec.verify or track.probed_after_unknown

    def check_after(self, event: AnyEvent) -> None:
        state = self.state
        if isinstance(event, RunResumed):
            for sid, now in state.steps.items():
                if now.status == "unknown":
                    self.track[sid].probed_after_unknown = now.probed
        touched: str | None = getattr(event, "step", None)
        if touched is not None and state.steps[touched].status in TERMINAL:
            self.track[touched].terminal_events += 1
            assert self.track[touched].terminal_events <= 1, f"{touched} ended twice"
        in_flight = sum(1 for now in state.steps.values() if now.status in IN_FLIGHT)
        assert state.in_flight == in_flight
        # (e) parallelism bounds attempts and probes together
        assert in_flight <= self.plan.parallelism
        for sid, track in self.track.items():
            if self.plan.step(sid).verify:
                # invariant 4: checks that see the work stop it being done twice
                assert track.effects <= 1, f"{sid}: work done {track.effects} times"

    def check_finished(self) -> None:
        state = self.state
        assert not self.ops
        finished = self.events[-1]
        assert isinstance(finished, RunFinished)
        statuses = self.statuses()
        # (b) the run only ends when every step is settled, each terminal with a reason;
        # a step to re-run whose needs a human reopened waits for them like a pending one
        parked = {
            spec.id
            for spec in self.plan.steps
            if statuses[spec.id] in ("retry_wait", "unknown")
            and not all(need_met(state, n) for n in spec.needs)
        }
        unsettled = {v for k, v in statuses.items() if k not in parked} & UNSETTLED
        assert not unsettled, statuses
        for sid, now in state.steps.items():
            if now.status in TERMINAL or now.status == "escalated":
                assert now.reason, f"{sid} is {now.status} without a reason"
        # (c) dependents of a failed required step are blocked (or a human skipped them)
        for spec in self.plan.steps:
            now = state.steps[spec.id]
            if now.status == "failed" and not spec.optional:
                for other in self.plan.steps:
                    if spec.id in other.needs:
                        assert statuses[other.id] in ("blocked", "skipped"), (spec.id, other.id)
            if now.status == "blocked":
                assert now.blocked_by is not None
                assert statuses[now.blocked_by] == "failed"
                assert now.blocked_by in ancestors(self.plan, spec.id)
                needs = {n: statuses[n] for n in spec.needs}
                assert any(v in ("failed", "blocked") for v in needs.values()), (spec.id, needs)
        # independent branches go on: only an open escalation or approval leaves work
        # waiting, through a chain of needs that are waiting too
        held = {
            sid for sid, status in statuses.items() if status in ("escalated", "awaiting_approval")
        }
        waiting = {sid for sid, status in statuses.items() if status == "pending"} | parked
        for spec in topological_order(self.plan):
            if spec.id in waiting:
                assert held & set(spec.needs), (spec.id, statuses)
                held.add(spec.id)
        assert finished.status == expected_status(state, self.rejected) == run_status(state)
        # (h) report counts add up: every step is exactly one status
        counts = json.loads(summary_json(state))["counts"]
        assert sum(counts.values()) == len(self.plan.steps)
        assert set(counts) <= ALL_STATUSES
        assert counts == dict(Counter(statuses.values()))

    def check_replay(self) -> None:
        """(g) the record alone rebuilds the live state, from scratch or a snapshot."""
        assert_same_state(self.state, fold(self.events), self.now)
        if self.snapshot is not None:
            data, upto = self.snapshot
            restored = RunState.from_snapshot(data)
            for event in self.events[upto:]:
                restored.apply(event)
            assert_same_state(self.state, restored, self.now)
        # and through JSON, as the store keeps it: each event's own type writes the
        # union's text and reads it back under its kind
        texts = [event_json(e) for e in self.events]
        assert texts == [EVENT_ADAPTER.dump_json(e).decode() for e in self.events]
        assert [
            decode_event(t, e.kind) for t, e in zip(texts, self.events, strict=True)
        ] == self.events
        assert [EVENT_ADAPTER.validate_json(t) for t in texts] == self.events


def _check_result(sid: str, passed: bool) -> CheckResult:
    return CheckResult(
        check=f"out/{sid} exists",
        expected="exists",
        actual="exists" if passed else "missing",
        passed=passed,
    )


# --- the properties ----------------------------------------------------------------------

# random runs per session (each about 0.1 s of CPU); ``make soak`` runs more
EXAMPLES = int(os.environ.get("TRESTLE_PROPERTY_EXAMPLES", "150"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans(), data=st.data())
def test_random_runs_keep_every_invariant(plan: Plan, data: st.DataObject) -> None:
    table = data.draw(behaviours(plan), label="behaviours")
    horizon = 4 * len(plan.steps) + 10
    crash_at = data.draw(st.frozensets(st.integers(0, horizon), max_size=3), label="crashes")
    rounds = data.draw(st.integers(0, 2), label="human rounds")
    sim = Sim(plan=plan, table=table, data=data, crash_at=crash_at, human_rounds=rounds)
    sim.run()
    sim.check_replay()


# --- exact semantics, by example ---------------------------------------------------------


def new_state(*steps: Step, parallelism: int = 32, escalate: bool = True) -> RunState:
    plan = Plan(goal="example", parallelism=parallelism, escalate=escalate, steps=steps)
    return RunState.from_created(RunCreated(at=START, run_id="r1", plan=plan, workspace="/ws"))


def settle(state: RunState, now: float = START) -> list[AnyEvent]:
    """What an engine pass records: decisions applied until the decider has none."""
    out: list[AnyEvent] = []
    while decided := decide(state, now):
        for event in decided:
            state.apply(event)
        out += decided
    return out


def feed(state: RunState, event: AnyEvent, now: float = START) -> list[AnyEvent]:
    state.apply(event)
    return settle(state, now)


def attempt_ended(step: str, attempt: int, ok: bool, *, checked: bool = False) -> AnyEvent:
    action = ActionResult(status="ok" if ok else "failed", exit_code=0 if ok else 1)
    checks = (_check_result(step, ok),) if checked else ()
    return StepAttemptEnded(
        at=START, step=step, attempt=attempt, ok=ok, action=action, checks=checks
    )


def probed(step: str, reason: ProbeReason, passed: bool) -> AnyEvent:
    return StepProbed(
        at=START, step=step, reason=reason, passed=passed, checks=(_check_result(step, passed),)
    )


def starts(events: list[AnyEvent]) -> list[tuple[str, int]]:
    """The attempts started, as (step, attempt); each key must be the idempotency key."""
    out = []
    for e in events:
        if isinstance(e, StepStarted):
            assert e.key == f"r1/{e.step}/{e.attempt}"
            out.append((e.step, e.attempt))
    return out


def kinds(events: list[AnyEvent]) -> list[tuple[str, str]]:
    return [(e.kind, getattr(e, "step", "")) for e in events]


def step(sid: str, *needs: str, **fields: object) -> Step:
    return Step.model_validate({"id": sid, "run": "true", "needs": needs, **fields})


VERIFY = {"verify": [{"file_exists": "out/x"}]}
NO_BACKOFF = {"backoff": {"initial": 0}}


def test_a_passing_probe_before_retry_succeeds_the_step_without_another_attempt() -> None:
    state = new_state(step("a", retries=2, **VERIFY, **NO_BACKOFF), step("b", "a"))
    assert kinds(settle(state)) == [("step_started", "a")]
    out = feed(state, attempt_ended("a", 1, ok=False))
    assert kinds(out) == [("step_retry_scheduled", "a"), ("step_probe_started", "a")]
    assert out[1] == StepProbeStarted(at=START, step="a", reason="before_retry")
    out = feed(state, probed("a", "before_retry", passed=True))
    assert kinds(out) == [("step_started", "b")]  # b, and no second attempt of a
    a = state.steps["a"]
    assert (a.status, a.succeeded_via, a.attempt, a.failed_attempts) == ("succeeded", "probe", 1, 1)
    assert a.reason == "verified after a failed attempt: the work was already done"


def test_a_failing_probe_before_retry_starts_the_next_attempt() -> None:
    state = new_state(step("a", retries=1, **VERIFY, **NO_BACKOFF))
    settle(state)
    feed(state, attempt_ended("a", 1, ok=False))
    out = feed(state, probed("a", "before_retry", passed=False))
    assert starts(out) == [("a", 2)]
    out = feed(state, attempt_ended("a", 2, ok=False))
    assert kinds(out) == [("step_failed", "a"), ("run_finished", "")]
    failed = out[0]
    assert isinstance(failed, StepFailed) and failed.dead_lettered
    assert failed.reason == "failed 2 of 2 attempts; last: action failed"


def test_a_retry_waits_for_its_backoff() -> None:
    state = new_state(step("a", retries=1, backoff={"initial": 5}))
    settle(state)
    out = feed(state, attempt_ended("a", 1, ok=False))
    assert out == [
        StepRetryScheduled(
            at=START, step="a", not_before=START + 5, reason="attempt 1 failed: action failed"
        )
    ]
    assert next_wakeup(state) == START + 5
    assert decide(state, START + 4.9) == []
    assert kinds(settle(state, START + 5)) == [("step_started", "a")]


def test_a_failed_required_step_blocks_its_dependents_and_not_other_branches() -> None:
    state = new_state(step("a"), step("b", "a"), step("c", "b"), step("d"), step("e", "d"))
    settle(state)
    out = feed(state, attempt_ended("a", 1, ok=False))
    assert kinds(out) == [("step_failed", "a"), ("step_blocked", "b"), ("step_blocked", "c")]
    assert state.steps["b"].blocked_by == state.steps["c"].blocked_by == "a"
    assert state.steps["c"].reason == "needs 'a', which failed"
    out = feed(state, attempt_ended("d", 1, ok=True))
    assert kinds(out) == [("step_started", "e")]
    out = feed(state, attempt_ended("e", 1, ok=True))
    assert out == [RunFinished(at=START, status="needs_human")]


def test_a_failed_optional_step_blocks_nothing() -> None:
    state = new_state(step("a", optional=True), step("b", "a"))
    settle(state)
    out = feed(state, attempt_ended("a", 1, ok=False))
    assert kinds(out) == [("step_failed", "a"), ("step_started", "b")]
    assert isinstance(out[0], StepFailed) and not out[0].dead_lettered
    out = feed(state, attempt_ended("b", 1, ok=True))
    assert out == [RunFinished(at=START, status="succeeded")]


def test_reopening_a_failed_step_unblocks_the_steps_it_blocked() -> None:
    state = new_state(step("a"), step("b", "a"), step("c", "b"), step("x"), step("y", "x", "b"))
    settle(state)
    feed(state, attempt_ended("x", 1, ok=False))
    out = feed(state, attempt_ended("a", 1, ok=False))
    assert out[-1] == RunFinished(at=START, status="needs_human")
    blocked = {sid: s.blocked_by for sid, s in state.steps.items() if s.status == "blocked"}
    assert blocked == {"b": "a", "c": "a", "y": "x"}

    state.apply(StepReopened(at=START, step="a", reason="fixed the config"))
    assert state.finished is None
    assert {sid: s.status for sid, s in state.steps.items()} == {
        "a": "pending",
        "b": "pending",
        "c": "pending",
        "x": "failed",
        "y": "blocked",
    }
    assert state.steps["b"].blocked_by is None and state.steps["b"].reason is None
    a = state.steps["a"]
    assert (a.failed_attempts, a.dead_lettered, a.reason) == (0, False, None)
    out = settle(state)
    # the attempt number keeps rising, so the new attempt's idempotency key is fresh
    assert starts(out) == [("a", 2)]
    assert kinds(feed(state, attempt_ended("a", 2, ok=True))) == [("step_started", "b")]
    assert kinds(feed(state, attempt_ended("b", 1, ok=True))) == [("step_started", "c")]
    out = feed(state, attempt_ended("c", 1, ok=True))
    assert out == [RunFinished(at=START, status="needs_human")]  # x is still a dead letter
    assert state.steps["y"].blocked_by == "x"


def test_skipping_an_escalated_step_lets_its_dependents_proceed() -> None:
    state = new_state(step("a", irreversible=True, approval="log"), step("b", "a"))
    settle(state)
    out = feed(state, RunResumed(at=START, owner="p2"))
    assert kinds(out) == [("step_probe_started", "a")]  # no checks; leftovers settled
    out = feed(state, probed("a", "unknown_outcome", passed=False))
    assert kinds(out) == [("step_escalated", "a"), ("run_finished", "")]
    assert out[-1] == RunFinished(at=START, status="needs_human")
    assert state.steps["b"].status == "pending"

    out = feed(state, StepSkipped(at=START, step="a", reason="done by hand", request_id=7))
    assert kinds(out) == [("step_started", "b")]
    assert not state.steps["a"].dead_lettered
    out = feed(state, attempt_ended("b", 1, ok=True))
    assert out == [RunFinished(at=START, status="succeeded")]


def test_a_reopened_escalated_step_waits_for_its_reopened_need_before_its_probe() -> None:
    # a human retries b, whose outcome was lost to a crash, and also a, which b needs:
    # b's probe would judge a world a has yet to remake, so it waits for a, and the run
    # finishes while a waits for its approval with b parked behind it
    state = new_state(step("a"), step("b", "a", idempotent=False, **VERIFY))
    settle(state)
    feed(state, attempt_ended("a", 1, ok=True))
    feed(state, RunResumed(at=START, owner="p2"))
    out = feed(state, probed("b", "unknown_outcome", passed=False))
    assert kinds(out) == [("step_escalated", "b"), ("run_finished", "")]

    state.apply(RunResumed(at=START, owner="human[3]"))
    state.apply(StepReopened(at=START, step="a", reason="rebuild"))
    out = feed(state, StepReopened(at=START, step="b", reason="checked by hand"))
    assert starts(out) == [("a", 2)]  # and no probe of b yet
    assert state.steps["b"].status == "retry_wait" and next_wakeup(state) is None
    out = feed(state, attempt_ended("a", 2, ok=False))
    assert kinds(out) == [("step_failed", "a"), ("step_blocked", "b"), ("run_finished", "")]

    state.apply(StepReopened(at=START, step="a", reason="fixed it"))
    out = settle(state)
    assert starts(out) == [("a", 3)]
    out = feed(state, attempt_ended("a", 3, ok=True))
    assert out == [StepProbeStarted(at=START, step="b", reason="before_retry")]
    out = feed(state, probed("b", "before_retry", passed=False))
    assert starts(out) == [("b", 2)]


def test_skipping_a_failed_step_unblocks_its_dependents() -> None:
    state = new_state(step("a"), step("b", "a"), step("c", "b"))
    settle(state)
    feed(state, attempt_ended("a", 1, ok=False))
    out = feed(state, StepSkipped(at=START, step="a", reason="not needed"))
    assert kinds(out) == [("step_started", "b")]
    feed(state, attempt_ended("b", 1, ok=True))
    out = feed(state, attempt_ended("c", 1, ok=True))
    assert out == [RunFinished(at=START, status="succeeded")]


def test_skipping_a_blocked_step_lets_its_own_dependents_proceed() -> None:
    # a fails; b and everything after it is blocked by a. Skipping b meets c's need,
    # but d also needs a itself, and e hangs off a through another path.
    plan = [step("a"), step("b", "a"), step("c", "b"), step("d", "b", "a"), step("e", "a")]
    state = new_state(*plan)
    settle(state)
    feed(state, attempt_ended("a", 1, ok=False))
    assert {s.blocked_by for s in state.steps.values() if s.status == "blocked"} == {"a"}

    out = feed(state, StepSkipped(at=START, step="b", reason="not needed"))
    assert kinds(out) == [("step_started", "c"), ("step_blocked", "d")]
    assert out[1] == StepBlocked(at=START, step="d", by="a", reason="needs 'a', which failed")
    assert (state.steps["e"].status, state.steps["e"].blocked_by) == ("blocked", "a")
    out = feed(state, attempt_ended("c", 1, ok=True))
    assert out == [RunFinished(at=START, status="needs_human")]


def test_an_unknown_outcome_is_probed_and_passing_checks_mean_done() -> None:
    state = new_state(step("a", irreversible=True, approval="log", **VERIFY), step("b", "a"))
    settle(state)
    out = feed(state, RunResumed(at=START, owner="p2"))
    assert out == [StepProbeStarted(at=START, step="a", reason="unknown_outcome")]
    out = feed(state, probed("a", "unknown_outcome", passed=True))
    assert kinds(out) == [("step_started", "b")]
    a = state.steps["a"]
    assert (a.status, a.succeeded_via, a.attempt) == ("succeeded", "probe", 1)


def test_an_unknown_outcome_that_is_unsafe_to_rerun_is_escalated_not_rerun() -> None:
    for fields in ({"irreversible": True, "approval": "log"}, {"idempotent": False}, {}):
        state = new_state(step("a", **VERIFY, **fields))
        settle(state)
        feed(state, RunResumed(at=START, owner="p2"))
        out = feed(state, probed("a", "unknown_outcome", passed=False))
        assert kinds(out) == [("step_escalated", "a"), ("run_finished", "")], fields
        assert state.steps["a"].dead_lettered
        assert state.steps["a"].reason is not None
        assert "check by hand" in state.steps["a"].reason


def test_an_unknown_outcome_of_a_rerunnable_step_runs_it_again_with_a_new_key() -> None:
    state = new_state(step("a", idempotent=True), step("b", idempotent=True, **VERIFY))
    settle(state)
    out = feed(state, RunResumed(at=START, owner="p2"))
    assert out == [
        StepProbeStarted(at=START, step="a", reason="unknown_outcome"),
        StepProbeStarted(at=START, step="b", reason="unknown_outcome"),
    ]
    out = feed(state, probed("a", "unknown_outcome", passed=False))
    assert starts(out) == [("a", 2)]
    out = feed(state, probed("b", "unknown_outcome", passed=False))
    assert starts(out) == [("b", 2)]
    assert state.steps["a"].failed_attempts == state.steps["b"].failed_attempts == 0


def test_a_rerun_after_a_crash_waits_for_a_free_slot() -> None:
    # a's retry is due but waits for b's slot; the crash frees the slot for one of them
    state = new_state(step("a", retries=1, **NO_BACKOFF), step("b", idempotent=True), parallelism=1)
    settle(state)
    out = feed(state, attempt_ended("a", 1, ok=False))
    assert kinds(out) == [("step_retry_scheduled", "a"), ("step_started", "b")]
    out = feed(state, RunResumed(at=START, owner="p2"))
    assert kinds(out) == [("step_started", "a")]
    assert state.in_flight == 1
    out = feed(state, attempt_ended("a", 2, ok=True))
    assert kinds(out) == [("step_probe_started", "b")]  # leftovers settled first
    out = feed(state, probed("b", "unknown_outcome", passed=False))
    assert kinds(out) == [("step_started", "b")]


def test_a_due_retry_waiting_for_a_slot_sets_no_wakeup() -> None:
    # a wakeup already past would have the engine poll in a busy loop until b ends
    state = new_state(step("a", retries=1, **NO_BACKOFF), step("b"), parallelism=1)
    settle(state)
    out = feed(state, attempt_ended("a", 1, ok=False))
    assert kinds(out) == [("step_retry_scheduled", "a"), ("step_started", "b")]
    assert state.steps["a"].not_before == START
    assert next_wakeup(state) is None
    assert kinds(feed(state, attempt_ended("b", 1, ok=True))) == [("step_started", "a")]


def test_a_run_finishes_once_and_then_decides_nothing() -> None:
    state = new_state(step("a"))
    settle(state)
    out = feed(state, attempt_ended("a", 1, ok=True))
    assert out == [RunFinished(at=START, status="succeeded")]
    assert state.finished == "succeeded"
    assert decide(state, START + 100) == []


def _finish(state: RunState, outcomes: dict[str, bool]) -> RunStatus:
    """Run to the end, each attempt of a step turning out as ``outcomes`` says."""
    pending = settle(state)
    for _ in range(100):
        finished = [e for e in pending if isinstance(e, RunFinished)]
        if finished:
            return finished[0].status
        started = [e for e in pending if isinstance(e, StepStarted)]
        assert started, pending
        pending = []
        for e in started:
            pending += feed(state, attempt_ended(e.step, e.attempt, outcomes.get(e.step, True)))
    raise AssertionError("did not finish")


def test_run_status_is_succeeded_when_every_required_step_is_done() -> None:
    state = new_state(step("a"), step("opt", optional=True), step("b", "opt"))
    assert _finish(state, {"opt": False}) == "succeeded"


def test_run_status_is_partial_when_a_required_step_failed_without_escalation() -> None:
    state = new_state(step("a"), step("b", "a"), step("c"), escalate=False)
    assert _finish(state, {"a": False}) == "partial"
    assert not any(s.dead_lettered for s in state.steps.values())
    assert state.steps["b"].status == "blocked"


def test_run_status_is_needs_human_while_a_dead_letter_is_open() -> None:
    state = new_state(step("a"), step("b"))
    assert _finish(state, {"a": False}) == "needs_human"
    assert state.steps["a"].dead_lettered
    # a human skip closes the dead letter; the run then counts the step as done
    state.apply(StepSkipped(at=START, step="a", reason="not needed"))
    assert run_status(state) == "succeeded"


def _approve(state: RunState, number: int) -> list[AnyEvent]:
    asked = state.approvals[number]
    decided = ApprovalDecided(
        at=START, approval=number, verdict="approve", by="h", reason="ok",
        action_hash=asked.action_hash,
    )  # fmt: skip
    return feed(state, decided)


def test_an_approved_command_waits_for_what_a_crash_lost_and_is_probed_first() -> None:
    """After a driver's ``kill -9``, a lost attempt's processes may run on until its
    probe waits for or ends them: the approved command waits for the probe, which
    still starts while it waits, then runs alone before anything else."""
    state = new_state(step("slow", idempotent=True), step("deploy", irreversible=True))
    assert kinds(settle(state)) == [("step_started", "slow"), ("approval_requested", "deploy")]
    out = _approve(state, 1)
    assert kinds(out) == [("alone_awaited", "deploy")]
    assert isinstance(out[0], AloneAwaited) and out[0].running == ("slow",)
    out = feed(state, RunResumed(at=START, owner="p2"))  # the driver died; slow is lost
    assert kinds(out) == [("step_probe_started", "slow")]  # not deploy
    out = feed(state, probed("slow", "unknown_outcome", passed=False))
    assert starts(out) == [("deploy", 1)]  # alone: slow runs again after it
    assert starts(feed(state, attempt_ended("deploy", 1, ok=True))) == [("slow", 2)]


def test_a_retry_elsewhere_does_not_start_beside_a_command_waiting_to_run_alone() -> None:
    state = new_state(step("slow"), step("x"), step("deploy", irreversible=True))
    settle(state)
    feed(state, attempt_ended("x", 1, ok=False))
    assert kinds(_approve(state, 1)) == [("alone_awaited", "deploy")]
    assert kinds(feed(state, StepReopened(at=START, step="x", reason="again"))) == []
    assert starts(feed(state, attempt_ended("slow", 1, ok=True))) == [("deploy", 1)]
    assert starts(feed(state, attempt_ended("deploy", 1, ok=True))) == [("x", 2)]


# an agent step's approved call that runs a command asks to run alone, at its place
def asks_alone(sid: str, call: str = "c") -> AnyEvent:
    return CallAloneAsked(at=START, step=sid, call=f"1.1.{call}")


def call_ended(sid: str, call: str = "c") -> AnyEvent:
    return ToolCallEnded(
        at=START, step=sid, round=1, turn=1, call_id=call, tool="run_command", ok=True, content=""
    )


def test_an_agents_approved_call_runs_once_nothing_else_runs_and_nothing_starts_beside_it() -> None:
    state = new_state(step("agent"), step("slow"), step("later", "slow"))
    settle(state)
    out = feed(state, asks_alone("agent"))
    assert kinds(out) == [("alone_awaited", "agent")]
    assert isinstance(out[0], AloneAwaited) and out[0].running == ("slow",)
    assert "call 1.1.c" in out[0].reason and "runs once 'slow' ends" in out[0].reason
    # slow ends: the call is granted, and what slow held back does not start beside it
    out = feed(state, attempt_ended("slow", 1, ok=True))
    assert out == [AloneGranted(at=START, step="agent", call="1.1.c")]
    assert state.alone_marks == {"agent": "running"}
    assert kinds(feed(state, call_ended("agent", "other"))) == []  # another call's end
    assert starts(feed(state, call_ended("agent"))) == [("later", 1)]
    assert state.alone_marks == {}


def test_agents_parked_at_approved_calls_run_them_one_after_another_first_asked_first() -> None:
    """Two agent steps waiting at approved calls wait for each other only while one
    runs: each parked runs nothing, so the first to ask is granted."""
    state = new_state(step("a"), step("b"))
    settle(state)
    assert kinds(feed(state, asks_alone("a"))) == [("alone_awaited", "a")]
    assert feed(state, asks_alone("b")) == [AloneGranted(at=START, step="a", call="1.1.c")]
    out = feed(state, call_ended("a"))  # a goes on with its turns: b waits for it
    assert kinds(out) == [("alone_awaited", "b")]
    assert isinstance(out[0], AloneAwaited) and out[0].running == ("a",)
    assert kinds(feed(state, asks_alone("a", "d"))) == [("alone_granted", "b")]
    assert kinds(feed(state, call_ended("b"))) == [("alone_awaited", "a")]
    assert kinds(feed(state, attempt_ended("b", 1, ok=True))) == [("alone_granted", "a")]


def test_a_parked_call_lets_a_waiting_approved_command_wait_and_a_crash_ends_its_mark() -> None:
    state = new_state(step("agent"), step("deploy", irreversible=True))
    settle(state)
    assert kinds(_approve(state, 1)) == [("alone_awaited", "deploy")]
    # the command waits for the agent's attempt; the agent's call runs meanwhile
    assert kinds(feed(state, asks_alone("agent"))) == [("alone_granted", "agent")]
    assert kinds(feed(state, call_ended("agent"))) == []
    feed(state, asks_alone("agent", "d"))
    assert state.alone_marks == {"deploy": "awaited", "agent": "running"}
    feed(state, RunResumed(at=START, owner="p2"))  # the driver died: the attempt is lost
    assert "agent" not in state.alone_marks and state.steps["agent"].alone_call is None


def test_a_call_parked_in_the_only_slot_lends_it_to_the_probe_it_waits_for() -> None:
    """Parallelism 1: after a crash the agent's attempt took the slot before the lost
    step's probe, then parked at its approved call waiting for that probe."""
    state = new_state(step("slow"), step("agent"), parallelism=1)
    assert starts(settle(state)) == [("slow", 1)]
    state.apply(RunResumed(at=START, owner="p2"))  # slow lost, its probe not yet started
    state.apply(StepStarted(at=START, step="agent", attempt=1, key="r1/agent/1"))
    out = feed(state, asks_alone("agent"))
    assert kinds(out) == [("alone_awaited", "agent"), ("step_probe_started", "slow")]
    out = feed(state, probed("slow", "unknown_outcome", passed=True))
    assert kinds(out) == [("alone_granted", "agent")]


def test_calls_parked_in_a_state_restored_from_its_snapshot_keep_the_order_they_asked_in() -> None:
    """A Temporal workflow that continues as new reloads the run while its attempts go
    on: the step that asked first is still granted first."""
    state = new_state(step("a"), step("b"), step("slow"))
    settle(state)
    feed(state, asks_alone("b"))
    feed(state, asks_alone("a"))
    restored = RunState.from_snapshot(state.snapshot_json(), plan=state.plan)
    assert list(restored.alone_marks) == ["b", "a"]
    for either in (state, restored):
        assert kinds(feed(either, attempt_ended("slow", 1, ok=True))) == [("alone_granted", "b")]
