"""The decider: given a run's state and the time, what happens next.

``decide(state, now)`` is pure. It returns new events; the engine applies them,
makes them durable, and only then performs the effects they announce:
``StepStarted`` dispatches an attempt, ``StepProbeStarted`` runs a step's checks.
Everything else it returns (retries scheduled, failures, blocks, escalations, the
run's end) is a decision with no effect beyond the record.

The rules, each one an invariant the property tests check:

- a step starts only when each of its needs succeeded (or is optional and finished,
  or a human skipped it);
- a failed attempt is retried after its backoff while failed attempts <= retries;
  before a retry the step's checks run, and if they pass the step is done;
- when attempts run out a required step fails and goes to the dead-letter queue;
  its dependents are blocked, naming it; an optional step's failure blocks nothing;
- a step whose outcome is unknown (a crash between start and outcome) is probed: the
  engine makes sure the attempt's processes are gone, then runs its checks (a step
  with none is probed too, for the first part); if they fail it re-runs only when
  re-runnable, else a human decides; a human's retry of it probes again first. An
  attempt that ran where the prober cannot see processes (a lost worker, or a dead
  driver, on another host) is escalated, re-runnable or not: its processes may still
  run there;
- an attempt the driver itself stopped (a signal) is not unknown: it is probed and
  run again, uncounted, unless it has no checks to tell and is unsafe to re-run;
- every attempt passes the approval gate first (:mod:`trestle.core.gate`): a tier that
  needs a human asks, and the step waits without holding a slot while others go on;
- every attempt reserves its budget first: a soft limit pauses new starts and asks
  for a top-up, a hard limit stops them; what already runs finishes. An agent step
  whose model call the budget held back asks for that call's worst case too. A
  delegating step reserves its child's whole budget (less what the child already
  spent, for a resumed one), so children can never jointly pass their parent's; a
  child whose share would pass a limit only while its siblings' children hold theirs
  waits for them (``ShareAwaited``, once), and the limit stops or pauses the run only
  when the share could not fit even with every share released;
- ready steps take the free slots in order of their remaining path, longest first
  (the number of steps on the longest chain of dependents from each), then in plan
  order: a cap on parallelism starts the critical path first, deterministically;
- a command a human approved runs alone in its run (:func:`~trestle.core.state.runs_alone`):
  it starts only when no attempt or probe runs; otherwise it waits for them
  (``AloneAwaited``, once), nothing else starts meanwhile, and it has the first slot
  once they end; nothing starts beside it while it runs. So does an agent's approved
  call that runs a command: its step asks (``CallAloneAsked``) and waits at the call
  until it is granted (``AloneGranted``), once nothing else runs (other steps parked
  at such a call run nothing), until the call's end;
- at most ``child_parallelism`` children run at once (a delegating step waits for a
  slot), and a run creates at most ``max_children`` (the step that would pass that
  fails, naming the cap).
"""

from __future__ import annotations

from trestle.core.budget import Breach, Dimension, Tally, breach
from trestle.core.events import (
    AloneAwaited,
    AloneGranted,
    AnyEvent,
    ApprovalRequested,
    BudgetExhausted,
    RunFinished,
    RunStatus,
    ShareAwaited,
    StepBlocked,
    StepEscalated,
    StepFailed,
    StepProbeStarted,
    StepRetryScheduled,
    StepStarted,
    ToolAsk,
    ToolCallStarted,
    child_run_id,
    idempotency_key,
)
from trestle.core.gate import judge, similar_key
from trestle.core.state import RunState, runs_alone
from trestle.core.step_state import IN_FLIGHT, TERMINAL, Alone, StepState


class _Pass:
    """One call of decide: the slots, budget and approval numbers its decisions take,
    which ``state`` does not show until the engine applies them."""

    def __init__(self, state: RunState, now: float, alone: dict[str, Alone]) -> None:
        self.state, self.now = state, now
        self.capacity = state.plan.parallelism - state.in_flight
        self.started: list[str] = []  # the steps whose attempts or probes it starts
        # an approved command runs alone, or waits for what runs: nothing (more) starts;
        # while one runs, not even a probe
        self.alone = bool(alone) and state.in_flight > 0
        self.alone_runs = "running" in alone.values() if alone else False
        # a step parked at an approved call runs nothing: a probe may take its slot (what
        # it waits for may be a lost attempt's probe, with no other slot to take)
        self.lent = len(state.parked())
        self.reserved: dict[Dimension, float] = {}
        self.approvals = 0
        self.may_start = state.stopped is None and not state.held
        self.new_children = 0
        self._children_running: int | None = None
        # the shares carved for the children this pass starts, and their steps
        self.shares: dict[Dimension, float] = {}
        self.sharing: tuple[str, ...] = ()

    @property
    def full(self) -> bool:
        """Whether this pass may start nothing more (:func:`_open` starts nothing)."""
        return not self.may_start or self.capacity <= 0 or self.alone

    @property
    def probe_free(self) -> bool:
        """Whether a probe may start: a slot is free (or lent by a parked step) and no
        approved command runs alone.
        One may while the run is held, or while an approved command waits to run alone:
        it settles what a lost attempt left (its processes may still run: the command
        waits for that), and starts nothing new."""
        return self.capacity + self.lent > 0 and not self.alone_runs

    def take(self, sid: str) -> None:
        """A slot for the step's attempt or probe."""
        self.capacity -= 1
        self.started.append(sid)

    @property
    def children_running(self) -> int:
        """Delegating steps running, this pass's starts included (counted on demand:
        most plans delegate nothing)."""
        if self._children_running is None:
            self._children_running = sum(
                1
                for sid, st in self.state.steps.items()
                if st.status == "running" and self.state.step_spec(sid).delegate is not None
            )
        return self._children_running

    def child_starts(self, *, new: bool) -> None:
        self._children_running = self.children_running + 1
        self.new_children += new

    def ask_human(self, **fields: object) -> ApprovalRequested:
        self.approvals += 1
        number = self.state.next_approval() + self.approvals - 1
        return ApprovalRequested(at=self.now, approval=number, **fields)


def decide(state: RunState, now: float) -> list[AnyEvent]:
    """The decisions that can be made now, without changing ``state``.

    The engine applies the returned events and calls again until nothing is left:
    a failure's block reaches the dependents' dependents on the next pass.
    """
    if state.finished is not None:
        return []
    out: list[AnyEvent] = []
    marks = state.alone_marks
    p = _Pass(state, now, marks)
    for raised in state.alerts:
        if raised.holds_run:  # a monitor paused the run: ask whether to go on
            out.append(p.ask_human(subject="alert", alert=raised.alert))
    for started in state.tool_audits:  # a tool call drawn for review after it ran
        out.append(_tool_audit(p, started))
    if marks:
        out += _alone_calls(p, marks)
    # a pending step with no slot left could only be blocked, which it cannot be with
    # nothing failed or blocked in the run: passed over, or a wide plan under its cap
    # would have every waiting step looked at again at each pass (n^2 over the run)
    blockable = state.may_block()  # deciding does not change the state
    # under a parallelism cap the slots go to the longest remaining paths first, but
    # to an approved command that waited to run alone before all: it has waited for them
    order = state.by_priority()
    if marks:
        order.sort(key=lambda sid: marks.get(sid) != "awaited")
    for sid in order:
        st = state.steps[sid]
        if st.status == "pending" and not blockable and p.full:
            continue
        step = state.step_spec(sid)
        match st.status:
            case "attempt_failed":
                out.append(_after_failed_attempt(state, sid, now))
            case "deferred" if st.ask is not None:
                ask = st.ask
                out.append(
                    p.ask_human(
                        subject="tool",
                        step=sid,
                        action_hash=ask.action_hash,
                        decision=ask.decision,
                        similar_key=ask.similar_key,
                        ask=ask,
                        files=ask.files,
                    )
                )
            case "unknown":
                # probed even without checks: the probe is also where the engine waits
                # for (or ends) the attempt's leftover processes, before anything re-runs
                if not st.probed:
                    if p.probe_free:
                        p.take(sid)
                        out.append(StepProbeStarted(at=now, step=sid, reason="unknown_outcome"))
                elif st.leftovers == "unseen":
                    out.append(_out_of_sight(state, sid, now))
                elif step.rerunnable:
                    out += _when_needs_met(p, sid)
                else:
                    out.append(_escalate(state, sid, now))
            case "retry_wait" if (st.not_before or 0.0) <= now:
                # a step whose needs a human reopened waits for them before its probe
                # too: the probe judges the world its next attempt would run in
                if step.verify and not st.probed and _needs_met(state, sid):
                    if p.probe_free:
                        p.take(sid)
                        out.append(StepProbeStarted(at=now, step=sid, reason="before_retry"))
                else:
                    out += _when_needs_met(p, sid)
            case "pending":
                out += _when_needs_met(p, sid)
    if not out and _settled(state):
        out.append(RunFinished(at=now, status=run_status(state)))
    return out


def _when_needs_met(p: _Pass, sid: str) -> list[AnyEvent]:
    """Start the step once every need is met, or block it on a need that failed. A
    step re-run after a retry ran before, but a human may have reopened its needs
    since: its new attempt waits for them like a first one."""
    state = p.state
    needs = state.step_spec(sid).needs
    root = next(filter(None, map(state.blocking_root, needs)), None)
    if root is not None:
        why = f"needs {root!r}, which failed"
        return [StepBlocked(at=p.now, step=sid, by=root, reason=why)]
    return _open(p, sid) if _needs_met(state, sid) else []


def _open(p: _Pass, sid: str) -> list[AnyEvent]:
    """Start the step's next attempt if a slot, the budget and the gate allow it."""
    if p.full:
        return []
    state, now = p.state, p.now
    step, st = state.step_spec(sid), state.steps[sid]
    new_child = False
    if step.delegate is not None:
        if p.children_running >= state.plan.child_parallelism:
            return []  # waits for a running child to end
        new_child = st.child != child_run_id(state.run_id, sid, st.round)
        created = len(state.children) + p.new_children
        if new_child and created >= state.plan.max_children:
            why = (
                f"it would create child run #{created + 1}, and the plan allows "
                f"{state.plan.max_children} (max_children)"
            )
            dead_letter = not step.optional and state.plan.escalate
            return [StepFailed(at=now, step=sid, reason=why, dead_lettered=dead_letter)]
    ask: dict[Dimension, float] = {}
    if state.plan.budget is not None:  # with no limit, nothing is reserved against one
        ask = {"steps": 1, "cost": step.cost or 0.0}
        ask = _plus(ask, st.wants)  # a model call the budget held back waits for room
        ask = _plus(ask, state.carve_needed(sid))  # a child's share of the budget
        held = _over_budget(p, sid, ask)
        if held is not None:
            p.may_start = False  # nothing else starts either: the run pauses as one
            return held
    attempt = st.attempt + 1
    verdict = judge(state, sid, attempt)
    if verdict.gate is None:
        subject = "action" if verdict.decision.tier == "confirm" else "audit"
        return [
            p.ask_human(
                subject=subject,
                step=sid,
                action_hash=verdict.action_hash,
                decision=verdict.decision,
                similar_key=verdict.similar_key,
            )
        ]
    if runs_alone(step, verdict.gate):
        p.alone = True  # nothing after it starts: it runs alone, or waits to
        running = _beside(p)
        if running:
            return _await_alone(p, sid, running)
        p.alone_runs = True
    p.take(sid)
    if ask:
        p.reserved = _plus(p.reserved, ask)
    if step.delegate is not None:
        p.child_starts(new=new_child)
        carved = state.carve_needed(sid)
        if any(carved.values()):
            p.shares, p.sharing = _plus(p.shares, carved), (*p.sharing, sid)
    key = idempotency_key(state.run_id, sid, attempt)
    started: list[AnyEvent] = [
        StepStarted(at=now, step=sid, attempt=attempt, key=key, gate=verdict.gate)
    ]
    if verdict.decision.audit == "after":
        started.append(
            p.ask_human(
                subject="audit",
                blocking=False,
                step=sid,
                action_hash=verdict.action_hash,
                decision=verdict.decision,
            )
        )
    return started


def _beside(p: _Pass) -> list[str]:
    """What an approved command would run beside, in plan order: the attempts and
    probes running or started by this pass, and the attempts a crash lost whose
    processes no probe has yet waited for or ended (after a driver's ``kill -9`` they
    may run on, unconfined, until the probe)."""
    state = p.state
    if not state.in_flight and not p.started and not state.status_counts().get("unknown"):
        return []  # one look at the counts: the usual case
    found = {
        sid
        for sid, st in state.steps.items()
        if st.status in IN_FLIGHT or (st.status == "unknown" and not st.probed)
    }
    return sorted(found | set(p.started), key=state.position)


def alone_grants(state: RunState, now: float) -> list[AnyEvent]:
    """What a drive that starts nothing new still decides: whether an agent's approved
    call waiting to run alone may run now (a Temporal workflow at its history limit lets
    what runs end before it continues as new, and a step waiting at such a call only
    ends once it ran)."""
    marks = state.alone_marks
    return _alone_calls(_Pass(state, now, marks), marks) if marks else []


def _alone_calls(p: _Pass, marks: dict[str, Alone]) -> list[AnyEvent]:
    """The agents' approved calls that asked to run alone (each parked at its call, its
    step running and running nothing else): the first to ask is granted once nothing
    else of the run runs but such steps, parked as it is; while any other runs, each
    says once that it waits. One runs alone at a time: none while a call or an approved
    command runs so."""
    state = p.state
    parked = state.parked()
    if not parked or "running" in marks.values():
        return []
    others = [sid for sid in _beside(p) if sid not in parked]
    if not others:
        p.alone_runs = True
        first = parked[0]
        return [AloneGranted(at=p.now, step=first, call=state.steps[first].alone_call or "")]
    names = ", ".join(map(repr, others))
    ends = "ends" if len(others) == 1 else "end"
    return [
        AloneAwaited(
            at=p.now,
            step=sid,
            running=tuple(others),
            reason=(
                f"a command a human approved (call {state.steps[sid].alone_call}) runs with "
                f"nothing else of the run beside it: it runs once {names} {ends}, and "
                "nothing else starts meanwhile"
            ),
        )
        for sid in parked
        if marks[sid] == "asked"
    ]


def _await_alone(p: _Pass, sid: str, running: list[str]) -> list[AnyEvent]:
    """An approved command waits for ``running`` to end (said once a wait)."""
    state = p.state
    if state.steps[sid].alone == "awaited":
        return []
    names = ", ".join(map(repr, running))
    why = (
        f"a command a human approved runs with nothing else of the run beside it: it "
        f"starts once {names} end{'s' if len(running) == 1 else ''}, and nothing else "
        "starts meanwhile"
    )
    return [AloneAwaited(at=p.now, step=sid, running=tuple(running), reason=why)]


def _over_budget(p: _Pass, sid: str, ask: dict[Dimension, float]) -> list[AnyEvent] | None:
    """What starting the step asking ``ask`` would pass, said (a child waiting for its
    siblings' shares, a human asked for a top-up, the run stopped at a hard limit);
    None if it fits."""
    state, now = p.state, p.now
    tally = Tally(
        spent={**state.tally.spent, "seconds": state.elapsed(now)},
        reserved=_plus(state.tally.reserved, p.reserved),
        granted=state.tally.granted,
        raised=state.tally.raised,
    )
    over = breach(state.plan.budget, tally, ask)
    if over is not None and state.step_spec(sid).delegate is not None:
        waiting, over = _await_shares(p, sid, ask, tally, over)
        if waiting is not None:
            return waiting  # it would take the room its siblings' children hold
    if over is None:
        return None
    if over.level == "hard":
        return [
            BudgetExhausted(
                at=now,
                dimension=over.dimension,
                reason=over.describe(),
                used=over.used,
                limit=over.limit,
                carved_from=None if state.parent is None else state.parent.parent,
            )
        ]
    return [p.ask_human(subject="budget", breach=over)]


def _tool_audit(p: _Pass, started: ToolCallStarted) -> ApprovalRequested:
    """The review of a tool call drawn for one after the fact, as a step's is: the
    card shows the call (tool and arguments) and nothing waits on it."""
    assert started.gate is not None and started.facts is not None, "audits carry both"
    decision, facts = started.gate.decision, started.facts
    ask = ToolAsk(
        tool=started.tool,
        arguments=started.arguments,
        facts=facts,
        decision=decision,
        action_hash=started.gate.action_hash,
        similar_key=similar_key(decision, facts, None),
    )
    return p.ask_human(
        subject="audit",
        blocking=False,
        step=started.step,
        action_hash=started.gate.action_hash,
        decision=decision,
        ask=ask,
    )


def _await_shares(
    p: _Pass, sid: str, ask: dict[Dimension, float], tally: Tally, over: Breach
) -> tuple[list[AnyEvent] | None, Breach]:
    """A child whose share passes a limit now only because its siblings' children hold
    theirs waits for them (said once, with ``ShareAwaited``). Otherwise (None) it can
    never fit, and the limit acts as for any step, with the breach it would make once
    every share is released (the siblings' spending is counted as they report it, so
    their shares would count twice)."""
    state = p.state
    held = _plus(state.shares_held(), p.shares)
    if not any(amount > 0 for amount in held.values()):
        return None, over
    freed = tally.model_copy(
        update={"reserved": {d: r - held.get(d, 0.0) for d, r in tally.reserved.items()}}
    )
    never = breach(state.plan.budget, freed, ask)
    if never is not None:
        return None, never
    if state.steps[sid].share_awaited:
        return [], over
    holders = tuple(s for s, st in state.steps.items() if any(st.reserved_carve.values()))
    holders = tuple(sorted((*holders, *p.sharing), key=state.position))
    why = (
        f"its child's share {over.describe()} while {', '.join(map(repr, holders))} hold "
        "theirs; it starts once they release them, and the run stops only if it can "
        "never fit"
    )
    awaited = ShareAwaited(
        at=p.now, step=sid, dimension=over.dimension, holders=holders, reason=why
    )
    return [awaited], over


def _plus(a: dict[Dimension, float], b: dict[Dimension, float]) -> dict[Dimension, float]:
    return {k: a.get(k, 0.0) + b.get(k, 0.0) for k in a.keys() | b.keys()}


def _after_failed_attempt(state: RunState, sid: str, now: float) -> AnyEvent:
    st, step = state.steps[sid], state.step_spec(sid)
    if st.stalled:  # a hung step is for a human to look at, not to retry blindly
        why = f"attempt {st.attempt} {st.error}"
        return StepFailed(at=now, step=sid, reason=why, dead_lettered=True)
    if st.failed_attempts <= step.retries:
        delay = step.backoff.delay(st.failed_attempts)
        why = f"attempt {st.attempt} failed: {st.error}"
        return StepRetryScheduled(at=now, step=sid, not_before=now + delay, reason=why)
    why = f"failed {st.failed_attempts} of {step.retries + 1} attempts; last: {st.error}"
    dead_letter = not step.optional and state.plan.escalate
    return StepFailed(at=now, step=sid, reason=why, dead_lettered=dead_letter)


def _escalate(state: RunState, sid: str, now: float) -> StepEscalated:
    """The outcome is unknown, the probe did not settle it, and re-running is unsafe."""
    st, step = state.steps[sid], state.step_spec(sid)
    nature = "irreversible" if step.irreversible else "not marked idempotent"
    checked = "its verify checks did not pass" if step.verify else "it has no verify checks"
    return StepEscalated(
        at=now,
        step=sid,
        reason=f"attempt {st.attempt} may or may not have taken effect ({_known(st)}), "
        f"{checked}, and the step is {nature}: check by hand, then retry or skip it",
    )


def _out_of_sight(state: RunState, sid: str, now: float) -> StepEscalated:
    """The lost attempt ran where the prober could not look for its processes (another
    host): they may still be running, so neither its checks nor a re-run can be
    trusted yet. The human is told where to look, and for what: a Temporal run's
    attempt ran on a worker, a local run's on the driver that started it."""
    st = state.steps[sid]
    key = idempotency_key(state.run_id, sid, st.attempt)
    first = "its checks run first" if state.step_spec(sid).verify else "it runs again at once"
    who = "worker" if state.engine is not None else "driver"
    if st.ran_on is not None:
        where = f"on host {st.ran_on.host!r} ({who} pid {st.ran_on.pid})"
        there = f"On {st.ran_on.host!r}"
    else:  # its worker never said (or its outcome came from outside)
        where = "on a worker that did not say where (the workflow's history names it)"
        there = "On that worker's host"
    return StepEscalated(
        at=now,
        step=sid,
        reason=f"attempt {st.attempt} ran {where} and was lost mid-step; no {who} that "
        "can see that host's processes probed it, so some may still be running, and "
        f"its checks were not run. {there}, end every process whose environment "
        f"holds TRESTLE_IDEMPOTENCY_KEY={key} (or make sure the host is down), then "
        f"retry it ({first}) or skip it if its work is done",
    )


def _known(st: StepState) -> str:
    """What Trestle knows of an attempt whose outcome it did not record."""
    if st.interrupted is not None:
        return f"Trestle stopped it mid-step on {st.interrupted}"
    gone = {
        "none": "none of its processes was left when the driver resumed",
        "finished": f"its leftover processes finished {st.waited:.1f}s after the driver "
        "resumed, before the check",
        "killed": f"its leftover processes still ran {st.waited:.0f}s after the driver "
        "resumed and were killed before the check",
        "unseen": "its processes ran where the driver could not look for them",
    }
    left = f"; {gone[st.leftovers]}" if st.leftovers is not None else ""
    return f"the driver stopped while it ran{left}"


def _settled(state: RunState) -> bool:
    """Nothing is running, due, or startable: only a human could move the run now."""
    if state.in_flight:
        return False
    if state.stopped is not None or state.held:
        return True  # nothing may start: what is left waits for a human or never runs
    for sid in state.frontier():
        st = state.steps[sid]
        if st.status == "deferred" and st.waiting_child is not None:
            continue  # its child waits for a human
        if not _next_waits_on_needs(state, sid):
            return False
        if _needs_met(state, sid):
            return False
    return True


def _next_waits_on_needs(state: RunState, sid: str) -> bool:
    """What the decider does next with the step waits for its needs: a first attempt,
    a re-run, or the probe before a re-run (a human may have reopened its needs). An
    unknown outcome is probed at once, and a non-re-runnable one escalated."""
    st = state.steps[sid]
    if st.status in ("pending", "retry_wait"):
        return True
    if st.status != "unknown" or not st.probed or st.leftovers == "unseen":
        return False
    return state.step_spec(sid).rerunnable


def _needs_met(state: RunState, sid: str) -> bool:
    return all(map(state.need_is_met, state.step_spec(sid).needs))


def _waits_on_needs(state: RunState, sid: str) -> bool:
    """Its next move waits for a need a human reopened (nothing to wake up for)."""
    return _next_waits_on_needs(state, sid) and not _needs_met(state, sid)


def run_status(state: RunState) -> RunStatus:
    """stopped: a budget, a monitor, or a human after a monitor's pause ended it;
    needs_human: a dead letter or an approval is open; succeeded: every required step
    done; partial: anything else (failures, blocks, steps that never started)."""
    if state.stopped is not None:
        return "stopped"
    if state.waiting_on_human() or any(st.dead_lettered for st in state.steps.values()):
        return "needs_human"
    for step in state.plan.steps:
        st = state.steps[step.id]
        if step.optional and st.status in TERMINAL:
            continue
        if st.status not in ("succeeded", "skipped"):
            return "partial"
    return "succeeded"


def next_wakeup(state: RunState) -> float | None:
    """When the earliest scheduled retry falls due, if any is waiting.

    Waiting retries are always on the frontier, so only the frontier is looked at.
    None while every slot is taken: a due retry then waits for the attempt that frees
    a slot, and a time already past would only make the engine poll in a busy loop.
    """
    in_flight = state.in_flight
    if in_flight >= state.plan.parallelism:
        return None
    if in_flight and state.alone_marks:
        return None  # an approved command runs alone, or waits for what runs to end
    times = [
        st.not_before
        for sid, st in ((sid, state.steps[sid]) for sid in state.frontier())
        if st.status == "retry_wait"
        and st.not_before is not None
        and not _waits_on_needs(state, sid)
    ]
    return min(times) if times else None
