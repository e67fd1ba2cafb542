"""The record of human judgement: every act a person took on a run, what they were
shown, what they decided, and what happened next, as the rows of ``trestle feedback
export``.

Pure: a run's stored events in, rows out. The rows are plain JSON values so that the
export's format is this module's, versioned by :data:`FEEDBACK_VERSION` (documented in
docs/approvals.md). The acts, each from the event that records it:

- ``approve``, ``reject``, ``modify``: ``approval_decided`` (an action, a sampled audit,
  a tool call, a budget pause or a monitor's alert); where the operator's approver
  rules cover it, ``approvers`` names everyone whose approve counted, and one
  approver's approve of an approval that needs several (``approval_endorsed``) is an
  ``approve`` row of its own with the decision ``endorsed``
- ``retry``: ``step_reopened`` · ``skip``: ``step_skipped`` · ``tell``:
  ``requirement_added`` · ``drop``, ``change``: ``plan_step_changed`` (``trestle tell
  --drop/--change``) · ``cancel``: ``run_cancelled`` · ``budget``: ``budget_raised``
  (``trestle budget --add``) · ``rewind``: ``run_rewound`` · ``rebind``:
  ``model_rebound`` (``trestle resume --base-url/--model/--api-key-env``: the binding
  it had, what changed, and how the run went on)
- a request the run did not take (``request_refused``, ``approval_refused``): its act,
  with the decision ``refused`` and why

A decision the shell finds forged (``vet``) is folded as the engine folds it (left out)
and listed with the decision ``ignored``: it is in the store, and it changed nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from trestle.core.card import HandoffCard, build_card
from trestle.core.events import (
    AnyEvent,
    ApprovalDecided,
    ApprovalEndorsed,
    ApprovalRefused,
    BudgetRaised,
    ModelRebound,
    PlanStepChanged,
    RequestRefused,
    RequirementAdded,
    RunCancelled,
    RunCreated,
    RunFinished,
    RunInterrupted,
    RunRewound,
    StepReopened,
    StepSkipped,
    StoredEvent,
)
from trestle.core.state import RunState

FEEDBACK_VERSION = 2  # 1: decided approvals only, without act, at, proposed and next

Vet = Callable[[RunState, AnyEvent], str | None]
Row = dict[str, Any]

# a step's status that says how the act turned out; any other is "still pending"
SETTLED = frozenset({"succeeded", "failed", "blocked", "skipped", "escalated"})
# whether the step then passed: None while it is not settled, or when it was skipped
PASSED = {"succeeded": True, "failed": False, "blocked": False, "escalated": False}
VERDICT_DECISION = {"approve": "approved", "reject": "rejected", "modify": "modified"}


@dataclass
class _Watched:
    """An act whose aftermath is still being read from the events after it."""

    row: Row
    before: str | None = None  # the step's status before the act
    at_act: str | None = None  # and right after it
    moved: bool = False  # the step's status changed after the act
    step_settled: bool = False
    run_settled: bool = False


def feedback_rows(events: Iterable[StoredEvent], vet: Vet | None = None) -> list[Row]:
    """Every human act in one run's ``events`` (from its ``run_created`` on), in order.

    Raises:
        ValueError: the events do not begin with ``run_created``.
    """
    it = iter(events)
    first = next(it, None)
    if first is None or not isinstance(first.event, RunCreated):
        raise ValueError("a run's events must begin with run_created")
    state = RunState.from_created(first.event)
    watched: list[_Watched] = []  # every act, in order
    following: list[_Watched] = []  # those whose aftermath is not all known yet
    for item in it:
        event = item.event
        why = vet(state, event) if vet is not None else None
        if why is not None:
            row = _act_row(state, event, item.seq)
            state.ignore(item.seq)
            if row is not None:
                row.update(decision="ignored", ignored_because=why)
                watched.append(_Watched(row, step_settled=True, run_settled=True))
            continue
        row = _act_row(state, event, item.seq)  # what was proposed: read before the fold
        before = _status(state, row)
        state.apply(event, item.seq)
        if row is not None:
            _finish_act(row, state, event)
            act = _Watched(row, before=before, at_act=_status(state, row))
            act.step_settled = row["step"] is None  # a run-wide act: only the run follows
            watched.append(act)
            following.append(act)
        for w in following:
            _follow(w, state, event)
        following = [w for w in following if not (w.step_settled and w.run_settled)]
    return [w.row for w in watched]


def _follow(w: _Watched, state: RunState, event: AnyEvent) -> None:
    """What became of ``w``'s step and run, as far as the events up to ``event`` say."""
    after = w.row["next"]
    step = w.row.get("step")
    if not w.step_settled and step in state.steps:
        st = state.steps[step]
        after["step"], after["step_reason"] = st.status, st.reason
        after["passed"] = PASSED.get(st.status)
        w.moved = w.moved or st.status != w.at_act
        # settled by the act (a skip, a rejection) or by what followed it; a step the
        # act left as it was (an alert on a failed step) waits for its next outcome
        w.step_settled = st.status in SETTLED and (w.moved or st.status != w.before)
    if not w.run_settled:
        if isinstance(event, RunFinished):
            after["run"], w.run_settled = event.status, True
        elif isinstance(event, RunCancelled):  # a run cancelled undriven records no end
            after["run"], w.run_settled = "cancelled", True
        elif isinstance(event, RunInterrupted):
            after["run"], w.run_settled = f"interrupted ({event.by})", True


def _status(state: RunState, row: Row | None) -> str | None:
    st = state.steps.get(row["step"]) if row is not None and row["step"] else None
    return st.status if st is not None else None


def _base(state: RunState, event: AnyEvent, seq: int, act: str, step: str | None) -> Row:
    return {
        "v": FEEDBACK_VERSION,
        "act": act,
        "run_id": state.run_id,
        "goal": state.plan.goal,
        "seq": seq,
        "at": event.at,
        "by": getattr(event, "by", None),
        "step": step,
        "reason": getattr(event, "reason", ""),
        "proposed": None,
        "decision": None,
        # filled in from the events after the act: the step's next settled status (or
        # where it stands now), whether it then passed, and how the run next ended
        "next": {"step": None, "passed": None, "step_reason": None, "run": None},
    }


def _act_row(state: RunState, event: AnyEvent, seq: int) -> Row | None:
    """The row of ``event`` if it is a human act, from ``state`` as it was before it."""
    match event:
        case ApprovalDecided():
            return _decided(state, event, seq)
        case ApprovalEndorsed(approval=number, signer=signer):
            a = state.approvals.get(number)
            row = _base(state, event, seq, "approve", a.step if a is not None else None)
            if a is not None:
                row["proposed"] = _proposal(build_card(state, number))
            row.update(ref=f"{state.run_id}.{number}", decision="endorsed", signer=signer)
            return row
        case StepReopened(step=sid) | StepSkipped(step=sid):
            act = "retry" if isinstance(event, StepReopened) else "skip"
            row = _base(state, event, seq, act, sid)
            row["proposed"] = _step_as_it_stood(state, sid)
            row["decision"] = "reopened" if act == "retry" else "skipped"
            return row
        case RequirementAdded(text=text):
            row = _base(state, event, seq, "tell", None)
            row.update(proposed={"requirement": text}, decision="added")
            return row
        case PlanStepChanged(step=sid, change=change, text=text):
            dropped = change == "drop"
            row = _base(state, event, seq, "drop" if dropped else "change", sid)
            stood = _step_as_it_stood(state, sid)
            if stood is not None:
                stood["objective"] = state.step_spec(sid).description
            row.update(proposed=stood, decision="dropped" if dropped else "changed")
            row["reason" if dropped else "objective"] = text
            return row
        case RunCancelled(stopped=stopped):
            row = _base(state, event, seq, "cancel", None)
            row["proposed"] = {"steps": dict(Counter(s.status for s in state.steps.values()))}
            row.update(decision="cancelled", stopped=list(stopped))
            return row
        case BudgetRaised(add=add):
            row = _base(state, event, seq, "budget", None)
            stop = state.budget_stop
            row["proposed"] = {
                "dimension": stop.dimension if stop else None,
                "used": stop.used if stop else None,
                "limit": stop.limit if stop else None,
                "stopped": state.stopped,
            }
            row.update(decision="raised", add=dict(add))
            return row
        case ModelRebound(was=was):
            row = _base(state, event, seq, "rebind", None)
            bound = state.agent
            names = ("model", "base_url", "api_key_env")
            row["proposed"] = {n: getattr(bound, n) for n in names} if bound else None
            changed = {n: {"from": was[n], "to": getattr(event, n)} for n in names if n in was}
            row.update(decision="rebound", changed=changed, request_id=event.request_id)
            return row
        case RunRewound(to_step=sid):
            row = _base(state, event, seq, "rewind", sid)
            row["proposed"] = {"to_step": sid, "attempt": event.attempt}
            row.update(decision="rewound", reopened=list(event.reopened))
            return row
        case RequestRefused(request=request, step=sid):
            row = _base(state, event, seq, request, sid)
            row.update(reason=event.text, decision="refused", refused_because=event.reason)
            return row
        case ApprovalRefused(forged_seq=None, approval=number):
            row = _base(state, event, seq, "approval", None)
            if number is not None and number in state.approvals:
                row.update(ref=f"{state.run_id}.{number}", step=state.approvals[number].step)
            row.update(reason="", decision="refused", refused_because=event.reason)
            return row
        case _:
            return None


def _step_as_it_stood(state: RunState, sid: str) -> Row | None:
    st = state.steps.get(sid)
    if st is None:
        return None
    return {"status": st.status, "reason": st.reason, "attempts": st.attempt}


def _decided(state: RunState, event: ApprovalDecided, seq: int) -> Row:
    a = state.approvals.get(event.approval)
    step = a.step if a is not None else None
    if a is not None and a.alert is not None:
        step = a.alert.step  # the step the monitor saw (None for the whole run)
    row = _base(state, event, seq, event.verdict, step)
    row["decision"] = VERDICT_DECISION[event.verdict]
    if a is not None:
        card = build_card(state, event.approval)
        row["proposed"] = _proposal(card)
    row.update(similar=event.similar, top_up=event.top_up)
    if event.covers:  # one act decided its group: the members it approved with it
        row["covers"] = [f"{state.run_id}.{n}" for n in event.covers]
    if a is not None and a.endorsers:  # a two-person rule's: everyone whose approve counted
        row["approvers"] = [*a.endorsers, event.by]
    return row


def _proposal(card: HandoffCard) -> Row:
    """What the person was shown: the handoff card's action and why it asked."""
    return {
        "subject": card.subject,
        "action": card.action.model_dump() if card.action else None,
        "tier": card.tier,
        "rule": card.rule,
        "why": card.why,
        "confidence": card.confidence,
    }


def _finish_act(row: Row, state: RunState, event: AnyEvent) -> None:
    """An approval's row, completed from the state its decision made: the fields the
    export has always had (version 1), and for an edit, what the edit changed."""
    if not isinstance(event, ApprovalDecided) or event.approval not in state.approvals:
        return
    a = state.approvals[event.approval]
    card = build_card(state, event.approval)
    row.update(
        ref=card.ref,
        subject=a.subject,
        action=card.action.model_dump() if card.action else None,
        edited_by=card.edited_by,
        planned_action=card.planned.model_dump() if card.planned else None,
        tier=card.tier,
        rule=card.rule,
        why=card.why,
        confidence=card.confidence,
        decision=a.status,
        requested_at=a.requested_at,
        decided_at=a.decided_at,
    )
    if event.verdict == "modify" and row["proposed"] and row["action"]:
        before, after = row["proposed"]["action"] or {}, row["action"]
        row["edit"] = {
            field: [before.get(field), value]
            for field, value in after.items()
            if before.get(field) != value
        }
