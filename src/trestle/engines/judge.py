"""What a human's request becomes, judged against the run as it is now.

Every engine judges requests the same way: the signature is checked where the key can
be read (the engine's own process, or a Temporal activity), and the judging itself is
pure, given the signed fields, so a workflow that may do no IO reaches the same
verdict as the local engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from trestle.agentplan.edits import Change, step_changed
from trestle.core.approvers import member_name, shown_decider
from trestle.core.events import AnyEvent, RequestRefused, StepReopened, StepSkipped
from trestle.core.state import RunState
from trestle.lifecycle.approvals import decided
from trestle.lifecycle.rebind import judged_rebind
from trestle.lifecycle.runs import RETRYABLE, SKIPPABLE
from trestle.store.base import Request

Fields = dict[str, Any] | None  # a request's signed fields; None when not signed
# an agent run's requirement, as the performer takes it (None: it did not)
Tell = Callable[[RunState, str, str, int, float], list[AnyEvent] | None]


def request_as_events(
    state: RunState, r: Request, fields: Fields, now: float, *, tell: Tell | None
) -> list[AnyEvent]:
    """The events that apply request ``r`` (each carrying ``request_id``), or one
    refusal saying why not. Never nothing: the request is consumed in the same commit.

    ``tell`` takes an agent run's new requirement; None when the driver has no agent
    runtime."""
    if r.kind == "decision":
        return [decided(state, r, fields, now)]

    def refuse(why: str, *, step: str | None = None, text: str = "") -> list[AnyEvent]:
        refusal = RequestRefused(
            at=now, request_id=r.id, request=r.kind, step=step, text=text, reason=why
        )
        return [refusal]

    if fields is None or (fields.get("run_id"), fields.get("kind")) != (state.run_id, r.kind):
        return refuse(f"not signed by the decision path (trestle {r.kind})")
    text = str(fields.get("reason"))
    asker = _asker(state, fields)
    if r.kind == "tell" and fields.get("change") == "rebind":
        judged = judged_rebind(state, fields, r.id, now)
        if isinstance(judged, str):  # signed, so known to be a rebind: said as one
            why = RequestRefused(
                at=now, request_id=r.id, request="rebind", text=text, reason=judged
            )
            return [why]
        return [judged]
    if r.kind == "tell" and fields.get("change") in ("drop", "objective"):
        # a change to a step of the plan: judged here, the same on every engine
        change: Change = "drop" if fields["change"] == "drop" else "objective"
        step = str(fields.get("step", ""))
        return [step_changed(state, step, change, text, by=asker, request_id=r.id, now=now)]
    if r.kind == "tell":
        if state.agent is None:
            return refuse("a plan run takes no requirements", text=text)
        if tell is None:
            return refuse("the process driving the run has no agent runtime to plan it", text=text)
        told = tell(state, text, asker, r.id, now)
        return told or refuse("the agent runtime did not take it", text=text)
    if r.kind == "cancel":
        return refuse("the cancel was not for this run", text=text)
    if r.kind not in ("retry", "skip"):
        return refuse(f"unknown request kind {r.kind!r}", text=text)
    signed = Request(
        id=r.id,
        run_id=state.run_id,
        kind=r.kind,
        step=str(fields.get("step")),
        reason=text,
        created_at=r.created_at,
    )
    return [retry_or_skip(state, signed, now, by=asker if "by" in fields else None)]


def _asker(state: RunState, fields: dict[str, Any]) -> str:
    """Who asked, as the record names them: ``by``, or where an identity key signed the
    request too (``trestle mcp serve``'s), that key as the operator's groups name it."""
    signer = fields.get("signer")
    name = member_name(state.operator_policy, signer)
    return shown_decider(name, signer, str(fields.get("by", "user")))


def retry_or_skip(state: RunState, r: Request, now: float, *, by: str | None) -> AnyEvent:
    """A human's retry or skip as an event if it still makes sense for the state, else
    its refusal naming what changed since it was asked."""
    st = state.steps.get(r.step)
    if st is None:
        why = f"the run has no step {r.step!r}"
    elif r.kind == "retry" and st.status in RETRYABLE:
        return StepReopened(at=now, step=r.step, reason=r.reason, request_id=r.id, by=by)
    elif r.kind == "skip" and st.status in SKIPPABLE:
        return StepSkipped(at=now, step=r.step, reason=r.reason, request_id=r.id, by=by)
    else:
        allowed = RETRYABLE if r.kind == "retry" else SKIPPABLE
        done = "retried" if r.kind == "retry" else "skipped"
        why = (
            f"step {r.step!r} is {st.status} by now (only {', '.join(allowed)} steps can be {done})"
        )
    return RequestRefused(
        at=now, request_id=r.id, request=r.kind, step=r.step, text=r.reason, reason=why
    )


def cancel_in(
    state: RunState, requests: Sequence[Request], fields_of: Callable[[Request], Fields]
) -> Request | None:
    """The first cancel among ``requests`` that the decision path signed for this run
    (one that is not signed is refused like any other request)."""
    for r in requests:
        if r.kind != "cancel":
            continue
        fields = fields_of(r)
        if fields is not None and (fields.get("run_id"), fields.get("kind")) == (
            state.run_id,
            "cancel",
        ):
            return r
    return None
