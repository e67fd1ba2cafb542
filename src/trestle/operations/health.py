"""Run health: what ``trestle health`` shows for every run that has not finished.

Built from what the store holds, without driving anything: whether a process is
driving the run (its lease, renewed as a heartbeat every third of its time to live),
when the run last recorded anything, which steps are running and for how long, which
look stalled or timed out, how much of the budget is used, the alerts that want
attention (warnings and criticals), and everything that waits for a human: dead
letters, escalations, approvals and pauses, and requests queued for the next driver.
"""

from __future__ import annotations

from pydantic import BaseModel

from trestle.core.budget import DIMENSIONS, go_on
from trestle.core.events import CheckResult
from trestle.core.records.monitors import DEFAULT_MONITORS
from trestle.core.report import child_wait_advice
from trestle.core.state import RunState
from trestle.core.step_state import BudgetStop
from trestle.lifecycle.approvals import vetter
from trestle.lifecycle.driven import driving
from trestle.lifecycle.rewinding import rewinds_cut_short
from trestle.lifecycle.runs import readable_states
from trestle.presentation.wording import counted
from trestle.store.base import Lease, Store
from trestle.trust.signing import decision_key

ACTIVE = ("created", "running", "needs_human")


class StepHealth(BaseModel):
    step: str
    status: str
    running_for: float | None  # seconds since the attempt started, while running
    problem: str | None  # "stalled", "timed out", "driver gone", or None


class BudgetUse(BaseModel):
    dimension: str
    spent: float
    limit: float
    share: float


class AlertLine(BaseModel):
    seq: int
    severity: str
    kind: str
    step: str | None
    message: str
    action: str
    waiting: bool  # a pause that waits for a human's go-on


class Waiting(BaseModel):
    """Something that holds the run until a human acts, and what they run next."""

    # dead_letter | escalated | approval | budget | budget_stop | alert | child | queued |
    # forged | rewind
    kind: str
    step: str | None
    ref: str | None  # the approval, RUN.N
    what: str
    next: str  # the command(s) that move it
    # for a failed step: its last attempt, the checks that failed, the end of its output
    attempt: int | None = None
    failed_checks: list[CheckResult] = []
    output_tail: str = ""


class RunHealth(BaseModel):
    run_id: str
    goal: str
    status: str
    driver: str | None  # who holds the lease, if anyone does
    driver_alive: bool
    heartbeat_age: float | None  # seconds since the driver's last lease renewal, estimated
    last_event_age: float
    steps: list[StepHealth]
    budget: list[BudgetUse]
    alerts: list[AlertLine]
    waiting: list[Waiting] = []
    # the signal that stopped the last driver, while no driver has taken the run up again
    interrupted: str | None = None
    root: str | None = None  # a delegated child's tree's root: what `trestle resume` takes

    @property
    def troubled(self) -> bool:
        """Something is wrong, or waits for a human: ``trestle health`` exits 1."""
        return (
            any(s.problem for s in self.steps)
            or any(a.waiting for a in self.alerts)
            or bool(self.waiting)
        )


def waiting_on_humans(state: RunState, queued: int = 0) -> list[Waiting]:
    """What holds the run until a human acts: dead letters and escalations, undecided
    approvals and pauses; and ``queued`` requests that only a driver will apply."""
    run = state.run_id
    found: list[Waiting] = []
    for sid, st in state.steps.items():
        settle = f"`trestle retry {run} {sid}` or `trestle skip {run} {sid} --reason ...`"
        if st.status == "failed" and st.dead_lettered:
            kind = "dead_letter"
            after = f" after {counted(st.failed_attempts, 'attempt')}" if st.failed_attempts else ""
            what = f"failed{after}: {st.error or st.reason}"
        elif st.status == "escalated":
            kind, what = "escalated", st.reason or ""
        else:
            continue
        found.append(
            Waiting(
                kind=kind,
                step=sid,
                ref=None,
                what=what,
                next=settle,
                attempt=st.output_attempt,
                failed_checks=[c for c in st.checks if not c.passed],
                output_tail=st.output_tail,
            )
        )
    for number, a in state.approvals.items():
        if a.status != "pending" or not a.blocking:
            continue  # a review after the fact holds nothing up
        ref = f"{run}.{number}"
        if a.subject == "budget" and a.breach is not None:
            kind, what = "budget", f"paused at its budget: {a.breach.describe()}"
        elif a.subject == "alert" and a.alert is not None:
            kind, what = "alert", f"a monitor paused the run: {a.alert.message}"
        else:
            kind = "approval"
            what = a.decision.reason if a.decision is not None else f"{a.subject} approval"
        decide = f"`trestle approve {ref}` or `trestle reject {ref} --reason ...`"
        found.append(Waiting(kind=kind, step=a.step, ref=ref, what=what, next=decide))
    stop = state.budget_stop
    # a child's stop waits for no one: its parent's step goes on (retries, escalation)
    if stop is not None and state.cancelled is None and state.parent is None:
        found.append(
            Waiting(
                kind="budget_stop",
                step=None,
                ref=None,
                what=state.stopped or f"stopped by its {stop.dimension} budget",
                next=_raise_and_resume(state, stop),
            )
        )
    for sid, child in state.waiting_children().items():
        found.append(
            Waiting(
                kind="child",
                step=sid,
                ref=None,
                what=f"its child run {child} waits for a human",
                next=child_wait_advice(state, child),
            )
        )
    for refused in state.refused:
        if refused.forged_seq is not None:  # ignored, but someone wrote it: find out who
            found.append(
                Waiting(
                    kind="forged",
                    step=refused.step,
                    ref=f"{run}.{refused.approval}" if refused.approval is not None else None,
                    what=refused.reason,
                    next="find what wrote into the store; decide with `trestle approve`, "
                    "`trestle reject` or `trestle budget --add` only",
                )
            )
    if queued:
        found.append(
            Waiting(
                kind="queued",
                step=None,
                ref=None,
                what=f"{counted(queued, 'request')} queued: no driver has applied or refused "
                f"{'it' if queued == 1 else 'them'} yet",
                next=f"`trestle resume {run}`",
            )
        )
    return found


def _raise_and_resume(state: RunState, stop: BudgetStop) -> str:
    """The commands that move a run its budget stopped: a raise, then a resume."""
    run = state.run_id
    if stop.used is None or stop.limit is None:  # recorded before stops kept amounts
        return f"`trestle budget {run} --add {stop.dimension}=AMOUNT`, then `trestle resume {run}`"
    return go_on(run, stop.dimension, stop.used, stop.limit).removeprefix("to go on: ")


# what stopped a run whose driver died without recording an interrupt (kill -9, a crash)
LOST_DRIVER = "the loss of its driver (it was killed, or its machine stopped)"


def run_health(
    state: RunState,
    lease: Lease | None,
    *,
    now: float,
    lease_ttl: float,
    queued: int = 0,
    rewinding: str | None = None,
) -> RunHealth:
    """One run's health from its state and lease, as of ``now``; ``queued``: requests
    in the store's queue that no driver has read yet; ``rewinding``: what to do about
    a rewind of the run cut short (:func:`trestle.lifecycle.rewinding.rewinds_cut_short`)."""
    settings = state.monitors or DEFAULT_MONITORS
    judged = driving(state.finished or "running", state.interrupted, lease, now=now)
    alive = judged.alive
    # a driver that exited released its lease (expires_at 0): it has no heartbeat to age
    heartbeat = None
    if lease is not None and lease.expires_at > 0:
        heartbeat = max(0.0, now - (lease.expires_at - lease_ttl))
    silent = now - state.updated_at
    steps = []
    for sid, st in state.steps.items():
        problem = None
        running_for = None
        if st.status in ("running", "probing"):
            running_for = now - (st.started_at or state.updated_at)
            limit = settings.stall_limit(state.step_spec(sid).timeout)
            if not alive:
                problem = f"driver gone: `trestle resume {state.run_id}`"
            elif silent > limit:
                problem = f"stalled: nothing recorded for {silent:.0f}s"
        elif st.stalled or (st.error or "").startswith("timed out"):
            problem = (st.error or "").split(";")[0]  # the step's last attempt hung
        if running_for is not None or problem is not None:
            steps.append(
                StepHealth(step=sid, status=st.status, running_for=running_for, problem=problem)
            )
    budget = []
    for dim in DIMENSIONS:
        bound = state.plan.budget.limit(dim) if state.plan.budget else None
        raised = state.tally.raised.get(dim, 0.0)
        level = ((bound.hard or bound.soft or 0.0) + raised) if bound else None
        if level:
            spent = state.tally.spent.get(dim, 0.0)
            if dim == "seconds":
                spent = state.elapsed(now)
            budget.append(BudgetUse(dimension=dim, spent=spent, limit=level, share=spent / level))
    waiting = {a.alert.key for a in state.approvals.values() if a.alert and a.status == "pending"}
    alerts = [
        AlertLine(
            seq=r.seq,
            severity=r.alert.severity,
            kind=r.alert.kind,
            step=r.alert.step,
            message=r.alert.message,
            action=r.action,
            waiting=r.alert.key in waiting,
        )
        for r in state.alerts
        if r.alert.severity != "info"
    ]
    interrupted = None
    if judged.status == "interrupted":
        # no interrupt recorded, but a driver held the lease and is gone: it was killed
        interrupted = LOST_DRIVER if judged.lost else state.interrupted
    # running, recorded so, but never driven: made, not started
    never = judged.status == "running" and not alive
    return RunHealth(
        run_id=state.run_id,
        goal=state.plan.goal,
        status="created" if never else judged.status,
        interrupted=interrupted,
        root=state.parent.root if state.parent is not None else None,
        driver=lease.owner.name if lease else None,
        driver_alive=alive,
        heartbeat_age=heartbeat,
        last_event_age=silent,
        steps=steps,
        budget=budget,
        alerts=alerts,
        waiting=[
            *_rewind_cut_short(rewinding),
            *waiting_on_humans(state, queued if not alive else 0),
        ],
    )


def _rewind_cut_short(said: str | None) -> list[Waiting]:
    """A rewind cut short as a thing that waits for a human: its note says what it
    left and the two commands that settle it."""
    if said is None:
        return []
    what, _, next_ = said.partition(": run ")
    return [Waiting(kind="rewind", step=None, ref=None, what=what, next=f"run {next_}")]


def health(
    store: Store, *, now: float, lease_ttl: float, unreadable: list[str] | None = None
) -> list[RunHealth]:
    """Every run that has not finished (or waits on a human), newest first; runs that
    cannot be read are named in ``unreadable`` (when given) and left out."""
    rows = store.runs()
    # a run whatever its status, the usual one being a finished run rewound
    cut_short = rewinds_cut_short(store, rows)
    # a run its budget stopped waits for a human too: raising the limit moves it on
    active = [
        row.run_id for row in rows if row.status in (*ACTIVE, "stopped") or row.run_id in cut_short
    ]
    return [
        run_health(
            state,
            store.lease(state.run_id),
            now=now,
            lease_ttl=lease_ttl,
            queued=len(store.pending_requests(state.run_id)),
            rewinding=cut_short.get(state.run_id),
        )
        for state in readable_states(store, active, unreadable, vet=vetter(decision_key()))
        if state.finished != "stopped" or state.budget_stop is not None or state.run_id in cut_short
    ]
