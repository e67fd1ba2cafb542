"""Run health: what ``trestle health`` shows for every run that has not finished.

Built from what the store holds, without driving anything: whether a process is
driving the run (its lease, renewed as a heartbeat every third of its time to live),
when the run last recorded anything, which steps are running and for how long, which
look stalled or timed out, how much of the budget is used, and the alerts that want
attention (warnings and criticals, and pauses waiting for a human).
"""

from __future__ import annotations

from pydantic import BaseModel

from trestle.budget import DIMENSIONS
from trestle.monitors.policy import DEFAULT_MONITORS
from trestle.runs import readable_states
from trestle.state import RunState
from trestle.store.base import Lease, Store, owner_is_alive

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

    @property
    def troubled(self) -> bool:
        return any(s.problem for s in self.steps) or any(a.waiting for a in self.alerts)


def run_health(state: RunState, lease: Lease | None, *, now: float, lease_ttl: float) -> RunHealth:
    """One run's health from its state and lease, as of ``now``."""
    settings = state.monitors or DEFAULT_MONITORS
    alive = lease is not None and lease.expires_at > now and owner_is_alive(lease.owner)
    heartbeat = None if lease is None else max(0.0, now - (lease.expires_at - lease_ttl))
    silent = now - state.updated_at
    steps = []
    for sid, st in state.steps.items():
        problem = None
        running_for = None
        if st.status in ("running", "probing"):
            running_for = now - (st.started_at or state.updated_at)
            limit = settings.stall_limit(state.step_spec(sid).timeout)
            if not alive:
                problem = "driver gone: `trestle resume` it"
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
        level = (bound.hard or bound.soft) if bound else None
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
    return RunHealth(
        run_id=state.run_id,
        goal=state.plan.goal,
        status=state.finished or ("running" if alive else "created"),
        driver=lease.owner.name if lease else None,
        driver_alive=alive,
        heartbeat_age=heartbeat,
        last_event_age=silent,
        steps=steps,
        budget=budget,
        alerts=alerts,
    )


def health(
    store: Store, *, now: float, lease_ttl: float, unreadable: list[str] | None = None
) -> list[RunHealth]:
    """Every run that has not finished (or waits on a human), newest first; runs that
    cannot be read are named in ``unreadable`` (when given) and left out."""
    active = [row.run_id for row in store.runs() if row.status in ACTIVE]
    return [
        run_health(state, store.lease(state.run_id), now=now, lease_ttl=lease_ttl)
        for state in readable_states(store, active, unreadable)
    ]
