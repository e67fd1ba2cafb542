"""The handoff card: everything a human needs to decide one approval, on one screen.

Pure: built from run state on demand, so it always shows the run as it is now (what
has been done since the request was made included). The CLI adds what needs IO, such
as the diff a write would make to the file as it is on disk.
"""

from __future__ import annotations

from pydantic import BaseModel

from trestle.core.approval_groups import group_id, members
from trestle.core.approvers import covering, may_decide
from trestle.core.escalation import deadline
from trestle.core.events import ApprovalSubject, ToolAsk
from trestle.core.gate import moved_files, similar_scope, step_facts
from trestle.core.outside_writes import step_outside_writes
from trestle.core.plan import Step, describe_check
from trestle.core.plan_review import is_plan_review, plan_confidence
from trestle.core.policy import TierDecision
from trestle.core.state import RunState
from trestle.core.step_state import ApprovalState, StepState

# the source of a tool call's approval asked after the call started and its outcome is
# unknown (see trestle.agent.unknown)
UNKNOWN_OUTCOME = "unknown_outcome"


class Action(BaseModel):
    """The action exactly as it would run."""

    kind: str  # run | write | python | agent | tool
    command: str | None = None
    path: str | None = None
    content: str | None = None
    call: str | None = None
    env: dict[str, str] = {}
    timeout: float | None = None
    agent: str | None = None  # an agent step: its role and objective
    tool: str | None = None  # an agent's tool call: the tool and its arguments (JSON)
    arguments: str | None = None

    @classmethod
    def of(cls, step: Step) -> Action:
        return cls(
            kind=step.action_kind,
            command=step.run,
            path=step.write.path if step.write else None,
            content=step.write.content if step.write else None,
            call=step.python,
            env=step.env,
            timeout=step.timeout,
            agent=step.describe_action() if step.agent is not None else None,
        )

    @classmethod
    def of_tool_call(cls, ask: ToolAsk) -> Action:
        return cls(kind="tool", command=ask.facts.command, tool=ask.tool, arguments=ask.arguments)


class HandoffCard(BaseModel):
    ref: str  # what `trestle approve` takes: RUN.N
    run_id: str
    # a delegated child's place: its tree's root, then each delegating step and round
    tree: str | None = None
    approval: int
    subject: ApprovalSubject
    blocking: bool
    status: str
    goal: str
    step: str | None = None
    objective: str = ""
    action: Action | None = None  # as it runs: as planned, or as a human edited it
    action_hash: str | None = None
    edited_by: str | None = None  # who approved the action as they edited it
    planned: Action | None = None  # the action as planned, when it was edited
    tier: str | None = None
    why: str  # the rule or threshold that asked
    rule: str | None = None
    reasoning: str = ""
    confidence: float | None = None
    done: list[str] = []
    remaining: int = 0
    attempts: int = 0
    last_error: str | None = None
    relevant_files: list[str] = []
    verify: list[str] = []
    uncertainties: list[str] = []
    refused: list[str] = []  # why earlier decisions on it were refused, oldest first
    similar: str = ""  # what `approve --similar` would also approve
    bound_to: list[str] = []  # the workspace files the approval holds to, as they read
    # who may decide, where the operator's approver rules cover it, and whose approve
    # counted so far towards a two-person rule
    may_decide: str = ""
    on_approve: str
    on_reject: str
    requested_at: float = 0.0  # when the run's driver asked (its clock): the card's age
    # the first deadline of the approver rules covering it, and the groups that may
    # decide too once it passes (trestle.core.escalation)
    deadline_at: float | None = None
    escalate_to: list[str] = []
    # the pending approvals of the same run one `approve --similar` decides together
    # (trestle.core.approval_groups): the group's id and its members' refs, this one
    # first; None when it stands alone
    group: str | None = None
    group_refs: list[str] = []


def _as_read(digest: str) -> str:
    """A file's recorded digest for the card: short, or what it was instead."""
    if digest == "absent":
        return "not there"
    return digest[:12] if len(digest) == 64 else digest


def _may_decide(state: RunState, a: ApprovalState) -> str:
    rules = covering(state, a)
    if not rules or state.operator_policy is None:
        return ""
    who = may_decide(state.operator_policy, rules).removeprefix("who may decide: ")
    if a.endorsers:
        who += f"; approved so far by {', '.join(a.endorsers)}"
    return who


def _deadline(state: RunState, a: ApprovalState) -> dict[str, object]:
    due = deadline(covering(state, a), a)
    if due is None:
        return {}
    return {"deadline_at": due.at, "escalate_to": list(due.escalate_to)}


def _group(state: RunState, number: int) -> dict[str, object]:
    together = members(state, number)
    if len(together) < 2:
        return {}
    refs = [approval_ref(state.run_id, n) for n in together]
    return {"group": group_id(state, together), "group_refs": refs}


def approval_ref(run_id: str, number: int) -> str:
    return f"{run_id}.{number}"


def build_card(state: RunState, number: int) -> HandoffCard:
    a = state.approvals[number]
    done = [sid for sid, st in state.steps.items() if st.status in ("succeeded", "skipped")]
    common = {
        "ref": approval_ref(state.run_id, number),
        "run_id": state.run_id,
        "approval": number,
        "subject": a.subject,
        "blocking": a.blocking,
        "status": a.status,
        "goal": state.plan.goal,
        "done": done,
        "remaining": len(state.steps) - len(done),
        "refused": [r.reason for r in state.refused if r.approval == number],
        "tree": state.parent.describe() if state.parent is not None else None,
        "may_decide": _may_decide(state, a),
        "requested_at": a.requested_at,
        **_deadline(state, a),
        **_group(state, number),
    }
    if a.subject == "budget" and a.breach is not None:
        return HandoffCard(
            **common,
            why=a.breach.describe(),
            rule=f"budget.{a.breach.dimension}.{a.breach.level}",
            on_approve=f"the {a.breach.dimension} limit rises by the top-up and the run goes on",
            on_reject="the run stops; steps not yet started are reported as not started",
        )
    if a.subject == "alert" and a.alert is not None:
        alert = a.alert
        # the step the monitor saw, as it stands: how many attempts it made so far
        seen = state.steps.get(alert.step) if alert.step is not None else None
        return HandoffCard(
            **common,
            step=alert.step,
            attempts=seen.attempt if seen is not None else 0,
            last_error=seen.error if seen is not None else None,
            why=f"{alert.severity} {alert.kind}: {alert.message}",
            rule=f"monitors.{alert.monitor}",
            uncertainties=[
                f"the evidence is events {', '.join(map(str, alert.evidence))} "
                f"(`trestle log {state.run_id}`)",
                f"the monitor suggests: {alert.suggestion}",
            ],
            on_approve="the run goes on from where it paused",
            on_reject="the run stops with its report; nothing new starts",
        )
    assert a.step is not None, "only budget and alert approvals have no step"
    card = _action_card(state, a, a.step, common)
    if card.group_refs:  # --similar decides the ones waiting now as well
        others = ", ".join(card.group_refs[1:])
        waiting = f"also approves the {len(card.group_refs) - 1} like it waiting now ({others})"
        card = card.model_copy(update={"similar": f"{waiting}; {card.similar}"})
    return card


def _action_card(
    state: RunState, a: ApprovalState, sid: str, common: dict[str, object]
) -> HandoffCard:
    step, st = state.step_spec(sid), state.steps[sid]
    files = [step.write.path] if step.write else []
    files += [p for c in step.verify for p in _check_path(c) if p not in files]
    uncertainties = list(step.uncertainties)
    ask = a.ask if a.subject == "tool" else None
    if ask is not None:
        # a call waiting for its approval has not run; one asked about after it started
        # (its outcome unknown) may have done anything
        if ask.decision.source == UNKNOWN_OUTCOME:
            uncertainties.append(
                f"the {ask.tool} call started and may or may not have taken effect"
            )
        uncertainties += _asked_before(state, a)
    elif st.status == "unknown" or (st.attempt and st.failed_attempts < st.attempt):
        uncertainties.append(f"attempt {st.attempt} may or may not have taken effect")
    review = is_plan_review(state, sid)
    if review and state.findings is not None:
        uncertainties += [f"open question: {q}" for q in state.findings.open_questions]
    by_agent = step.agent is not None and step.agent.role != "execute"
    if not step.verify and not by_agent:
        uncertainties.append("the step has no verify checks: nothing will confirm it worked")
    if state.sandbox is not None and state.sandbox.confined:  # what approving cannot make happen
        uncertainties += [w.describe() for w in step_outside_writes(step, state.workspace)]
    decision = a.decision
    # a tool call asked before it runs, or drawn for review after it ran
    facts = a.ask.facts if a.ask is not None else step_facts(step, st)
    similar = similar_scope(facts, step.python) if a.blocking else ""
    action = Action.of(step)
    editor = state.edited_by(sid) if a.status == "modified" else None
    planned = Action.of(state.plan.step(sid)) if editor is not None else None
    if a.subject == "tool" and a.ask is not None:
        action = Action.of_tool_call(a.ask)
        on_approve = f"step {sid!r} makes this exact call once and goes on{_held(a)}"
        on_reject = f"the call does not run; step {sid!r} goes on and the agent reads your reason"
    elif a.ask is not None:
        action = Action.of_tool_call(a.ask)
        on_approve = "the review is recorded (the call already ran)"
        on_reject = "your reason is recorded as feedback (the call already ran)"
    elif a.blocking:
        on_approve = f"step {sid!r} runs this exact action{_held(a)}{_rerun(step, st)}"
        on_reject = f"step {sid!r} does not run and fails with your reason"
        if not step.optional:
            on_reject += "; steps that need it are blocked"
    else:
        on_approve = "the review is recorded (the action already ran)"
        on_reject = "your reason is recorded as feedback (the action already ran)"
    return HandoffCard(
        **common,
        step=sid,
        objective=step.description,
        action=action,
        action_hash=a.action_hash,
        edited_by=editor,
        planned=planned,
        tier=decision.tier if decision else None,
        why=decision.reason if decision else "",
        rule=decision.source if decision else None,
        reasoning=ask.reasoning if ask is not None else step.reasoning,
        confidence=_confidence(state, sid, decision, step, review=review),
        attempts=st.attempt,
        last_error=st.error,
        relevant_files=files,
        verify=[describe_check(c) for c in step.verify],
        uncertainties=uncertainties,
        similar=similar,
        bound_to=[f"{path} ({_as_read(digest)})" for path, digest in (a.files or {}).items()],
        on_approve=on_approve,
        on_reject=on_reject,
    )


def _asked_before(state: RunState, a: ApprovalState) -> list[str]:
    """Why a call a human approved before is asked about again: an approval lets one
    call run, and holds only while the files its command names read as they did."""
    step = state.steps.get(a.step or "")
    ran = {row[5] for row in step.tool_calls} if step is not None else set()
    said = []
    for number, earlier in state.approvals.items():
        if (
            earlier is a
            or earlier.subject != "tool"
            or earlier.step != a.step
            or earlier.action_hash != a.action_hash
            or earlier.status not in ("approved", "modified")
        ):
            continue
        why = [f"approval {number} of this same call was given"]
        if number in ran:
            why.append("a call ran on it (an approval lets one call run)")
        if earlier.files is not None and a.files is not None and earlier.files != a.files:
            moved = moved_files(earlier.files, a.files)
            why.append(f"{', '.join(moved)} changed since it was asked")
        said.append("; ".join(why) + ": this one is asked on its own")
    return said


def _rerun(step: Step, st: StepState) -> str:
    """What else an approval of a step's action lets happen without asking again: the
    attempts its ``retries`` still allow, each run again if the one before failed (a
    failed command may have done part of its work)."""
    more = step.retries - st.failed_attempts
    if more <= 0:
        return ""
    times = "once more" if more == 1 else f"up to {more} more times"
    after = ", each only after its verify checks find it not done" if step.verify else ""
    return f"; if it fails, it runs again {times} without asking (its retries){after}"


def _held(a: ApprovalState) -> str:
    """What an approval of a command holds it to, for the card: the files it names."""
    if not a.files:
        return ""
    return f", with {', '.join(a.files)} as they read now (if any changes, it asks again)"


def _confidence(
    state: RunState, sid: str, decision: TierDecision | None, step: Step, *, review: bool
) -> float | None:
    """The confidence the card shows: the policy's adjusted one; else, for a plan under
    review, the plan's (its least confident step); else the step's own."""
    if decision is not None and decision.confidence is not None:
        return decision.confidence
    return plan_confidence(state, sid) if review else step.confidence


def _check_path(check: object) -> list[str]:
    for field in ("file_exists", "file_contains"):
        value = getattr(check, field, None)
        if isinstance(value, str):
            return [value]
    return []
