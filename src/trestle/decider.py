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
- a step whose outcome is unknown (a crash between start and outcome) is probed with
  its checks; if they fail it re-runs only when re-runnable, else a human decides.
"""

from __future__ import annotations

from trestle.events import (
    AnyEvent,
    RunFinished,
    RunStatus,
    StepBlocked,
    StepEscalated,
    StepFailed,
    StepProbeStarted,
    StepRetryScheduled,
    StepStarted,
    idempotency_key,
)
from trestle.state import TERMINAL, RunState


def decide(state: RunState, now: float) -> list[AnyEvent]:
    """The decisions that can be made now, without changing ``state``.

    The engine applies the returned events and calls again until nothing is left:
    a failure's block reaches the dependents' dependents on the next pass.
    """
    if state.finished is not None:
        return []
    out: list[AnyEvent] = []
    capacity = state.plan.parallelism - state.in_flight
    for sid in state.frontier():
        step, st = state.step_spec(sid), state.steps[sid]
        match st.status:
            case "attempt_failed":
                out.append(_after_failed_attempt(state, sid, now))
            case "unknown":
                event = _after_unknown_outcome(state, sid, now)
                takes_slot = isinstance(event, (StepStarted, StepProbeStarted))
                if takes_slot and capacity <= 0:
                    continue  # an escalation needs no slot; a probe or re-run waits for one
                capacity -= takes_slot
                out.append(event)
            case "retry_wait" if capacity > 0 and (st.not_before or 0.0) <= now:
                if step.verify and not st.probed:
                    out.append(StepProbeStarted(at=now, step=sid, reason="before_retry"))
                else:
                    out.append(_start(state, sid, now))
                capacity -= 1
            case "pending":
                root = next(filter(None, map(state.blocking_root, step.needs)), None)
                if root is not None:
                    why = f"needs {root!r}, which failed"
                    out.append(StepBlocked(at=now, step=sid, by=root, reason=why))
                elif capacity > 0 and all(map(state.need_is_met, step.needs)):
                    out.append(_start(state, sid, now))
                    capacity -= 1
    if not out and _settled(state):
        out.append(RunFinished(at=now, status=run_status(state)))
    return out


def _after_failed_attempt(state: RunState, sid: str, now: float) -> AnyEvent:
    st, step = state.steps[sid], state.step_spec(sid)
    if st.failed_attempts <= step.retries:
        delay = step.backoff.delay(st.failed_attempts)
        why = f"attempt {st.attempt} failed: {st.error}"
        return StepRetryScheduled(at=now, step=sid, not_before=now + delay, reason=why)
    why = f"failed {st.failed_attempts} of {step.retries + 1} attempts; last: {st.error}"
    dead_letter = not step.optional and state.plan.escalate
    return StepFailed(at=now, step=sid, reason=why, dead_lettered=dead_letter)


def _after_unknown_outcome(state: RunState, sid: str, now: float) -> AnyEvent:
    """Probe first; re-run only what is safe to re-run; otherwise ask a human."""
    st, step = state.steps[sid], state.step_spec(sid)
    if step.verify and not st.probed:
        return StepProbeStarted(at=now, step=sid, reason="unknown_outcome")
    if step.rerunnable:
        return _start(state, sid, now)
    nature = "irreversible" if step.irreversible else "not marked idempotent"
    checked = "its verify checks did not pass" if step.verify else "it has no verify checks"
    return StepEscalated(
        at=now,
        step=sid,
        reason=f"attempt {st.attempt} may or may not have taken effect (the process "
        f"stopped mid-step), {checked}, and the step is {nature}: check by hand, "
        "then retry or skip it",
    )


def _start(state: RunState, sid: str, now: float) -> StepStarted:
    attempt = state.steps[sid].attempt + 1
    key = idempotency_key(state.run_id, sid, attempt)
    return StepStarted(at=now, step=sid, attempt=attempt, key=key)


def _settled(state: RunState) -> bool:
    """Nothing is running, due, or startable: only a human could move the run now."""
    if state.in_flight:
        return False
    for sid in state.frontier():
        st = state.steps[sid]
        if st.status != "pending":
            return False
        if all(map(state.need_is_met, state.step_spec(sid).needs)):
            return False
    return True


def run_status(state: RunState) -> RunStatus:
    """succeeded: every required step done; needs_human: a dead letter is open;
    partial: anything else (failures, blocks, steps that never started)."""
    if any(st.dead_lettered for st in state.steps.values()):
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
    if state.in_flight >= state.plan.parallelism:
        return None
    times = [
        st.not_before
        for st in map(state.steps.__getitem__, state.frontier())
        if st.status == "retry_wait" and st.not_before is not None
    ]
    return min(times) if times else None
