"""The run report: what is done, failed, blocked, skipped or never started, and what a
human should check. Pure: built from run state alone, whatever way the run ended.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from trestle.core.budget import go_on
from trestle.core.counting import counted
from trestle.core.errors import model_stopped
from trestle.core.events import CheckResult
from trestle.core.outside_writes import step_outside_writes
from trestle.core.plan import ActionKind, Step, critical_path, waves
from trestle.core.records.policy_source import policy_line
from trestle.core.state import RunState
from trestle.core.step_state import TERMINAL, CallGate, RefusedRequest, StepState
from trestle.core.usage import UsageTally

Category = Literal[
    "done",
    "failed",
    "blocked",
    "skipped",
    "escalated",
    "awaiting_approval",
    "in_progress",
    "never_started",
    "cancelled",
]
CATEGORIES: tuple[Category, ...] = (
    "done",
    "failed",
    "blocked",
    "skipped",
    "escalated",
    "awaiting_approval",
    "in_progress",
    "never_started",
    "cancelled",
)
EXIT_CODES = {
    "succeeded": 0,
    "partial": 1,
    "needs_human": 3,
    "stopped": 6,
    "cancelled": 7,
    "running": 0,
}


class StepReport(BaseModel):
    id: str
    category: Category
    action: str = ""  # the action as it runs: as planned, or as a human edited it
    edited_by: str | None = None  # who approved it edited, if it runs edited
    status: str
    reason: str | None
    attempts: int
    failed_attempts: int
    optional: bool
    irreversible: bool
    dead_lettered: bool
    blocked_by: str | None
    error: str | None
    checks: list[CheckResult]
    # when its last attempt failed: that attempt's number and the end of what it printed
    # (`trestle output RUN STEP` prints all of it)
    failed_attempt: int | None = None
    output_tail: str = ""
    # an agent step's tool calls that ran, each with why it was let run
    tool_calls: list[CallGate] = []


class AlertReport(BaseModel):
    """A monitor's alert as the report lists it: what, how bad, what was done."""

    seq: int
    monitor: str
    kind: str
    severity: str
    step: str | None
    message: str
    action: str
    evidence: tuple[int, ...]


class PlanShape(BaseModel):
    """An agent run's plan as it grew, shaped as ``trestle plan`` shapes a plan file's:
    its waves (the steps of a wave may run side by side, each after the waves before
    it) and its critical path (the longest chain of needs). Steps dropped before they
    ran (``trestle tell --drop``, or skipped) are left out: they never run."""

    waves: list[list[str]]
    critical_path: list[str]


def plan_shape(state: RunState) -> PlanShape | None:
    """The shape of an agent run's plan (None for a plan run: ``trestle plan`` shows
    its file's)."""
    if state.agent is None:
        return None
    gone = {sid for sid, st in state.steps.items() if st.status == "skipped" and not st.attempt}
    kept = tuple(
        s.model_copy(update={"needs": tuple(n for n in s.needs if n not in gone)})
        for s in state.plan.steps
        if s.id not in gone
    )
    if not kept:
        return None
    plan = state.plan.model_copy(update={"steps": kept})
    return PlanShape(waves=waves(plan), critical_path=critical_path(plan))


class Report(BaseModel):
    run_id: str
    goal: str
    status: str  # succeeded | partial | needs_human | stopped | cancelled | running
    exit_code: int
    counts: dict[str, int]
    steps: list[StepReport]
    to_check: list[str]
    alerts: list[AlertReport] = []
    refused: list[RefusedRequest] = []  # human requests the run did not take, and why
    policy: str = ""  # which operator policy the run runs under, and why it is trusted
    shape: PlanShape | None = None  # an agent run's plan: its waves and critical path
    usage: UsageTally = UsageTally()  # what its model calls used, per step and model


def category(st: StepState) -> Category:
    match st.status:
        case "succeeded":
            return "done"
        case "failed" | "blocked" | "skipped" | "escalated" | "awaiting_approval":
            return st.status
        case "pending":
            return "never_started"
        case "deferred" if st.waiting_child is not None:
            return "awaiting_approval"  # in its child's inbox
    return "in_progress"


def build_report(state: RunState, *, driven_elsewhere: bool = False) -> Report:
    """The run's report. ``driven_elsewhere``: another live process drives the run (a
    resume was just refused for it), so what to check says to wait for that process
    rather than to resume."""
    steps = []
    for spec in state.plan.steps:
        st = state.steps[spec.id]
        found = category(st)
        if state.cancelled is not None and found in ("in_progress", "awaiting_approval"):
            found = "cancelled"  # started, or asked for, and now never to finish
        steps.append(
            StepReport(
                id=spec.id,
                category=found,
                action=state.step_spec(spec.id).describe_action(),
                edited_by=state.edited_by(spec.id),
                status=st.status,
                reason=_reason(state, spec.id),
                attempts=st.attempt,
                failed_attempts=st.failed_attempts,
                optional=spec.optional,
                irreversible=spec.irreversible,
                dead_lettered=st.dead_lettered,
                blocked_by=st.blocked_by,
                error=st.error,
                checks=st.checks,
                failed_attempt=st.output_attempt if _failed_last(st) else None,
                output_tail=st.output_tail if _failed_last(st) else "",
                tool_calls=st.calls(),
            )
        )
    counts = {c: sum(1 for s in steps if s.category == c) for c in CATEGORIES}
    status = state.finished or "running"
    return Report(
        run_id=state.run_id,
        goal=state.plan.goal,
        status=status,
        exit_code=EXIT_CODES[status],
        counts=counts,
        steps=steps,
        to_check=_to_check(state, driven_elsewhere),
        alerts=[
            AlertReport(
                seq=r.seq,
                monitor=r.alert.monitor,
                kind=r.alert.kind,
                severity=r.alert.severity,
                step=r.alert.step,
                message=r.alert.message,
                action=r.action,
                evidence=r.alert.evidence,
            )
            for r in state.alerts
        ],
        refused=list(state.refused),
        policy=policy_line(state.policy_source, has_policy=state.operator_policy is not None),
        shape=plan_shape(state),
        usage=state.usage.model_copy(deep=True),
    )


def _failed_last(st: StepState) -> bool:
    """Its last attempt failed, and that still stands (a retry request clears it)."""
    return st.error is not None and st.status not in ("succeeded", "skipped")


def _reason(state: RunState, sid: str) -> str | None:
    st = state.steps[sid]
    if st.status == "pending":
        waiting = [n for n in state.step_spec(sid).needs if not state.need_is_met(n)]
        return "waiting for " + ", ".join(map(repr, waiting)) if waiting else "not started"
    if st.status == "awaiting_approval" and st.approval is not None and state.cancelled:
        return f"the run was cancelled while it waited for approval {st.approval}"
    if st.status == "awaiting_approval" and st.approval is not None:
        decision = state.approvals[st.approval].decision
        return f"waits for approval {st.approval}" + (f": {decision.reason}" if decision else "")
    if st.status == "deferred" and st.waiting_child is not None:
        return f"waits on its child run {st.waiting_child}, which waits for a human"
    return st.reason or st.error


def carved_budget(state: RunState) -> str | None:
    """For a delegated child: why its budget cannot be raised on its own, or None."""
    link = state.parent
    return None if link is None else carved_share(link.parent, link.step)


def carved_share(parent: str, step: str | None = None) -> str:
    """Why a child's budget stop is not raised: its budget is ``parent``'s to decide."""
    of, whose = (
        ("", "the delegating step's") if step is None else (f" (for step {step!r})", "that step's")
    )
    return (
        f"its budget is a share carved from its parent run {parent}'s{of}, so it cannot be "
        f"raised on its own: the stop ended this child, and {whose} retries and "
        f"escalation in run {parent} apply"
    )


def child_wait_advice(state: RunState, child: str) -> str:
    """What to do for a child of ``state``'s run that waits for a human. Its wait may be
    an approval, an escalation or a dead letter (or a grandchild's): the child's own
    report names the exact commands for whichever it is; the root's resume then finds
    the child again and goes on."""
    root = state.parent.root if state.parent is not None else state.run_id
    if state.engine is not None:  # a decision wakes the root's workflow, which takes it up
        return (
            f"see what it waits for and the commands that decide it with `trestle show "
            f"{child}`; {WAKES}"
        )
    return (
        f"see what it waits for and the commands that decide it with `trestle show "
        f"{child}`, then `trestle resume {root}`"
    )


# said instead of `trestle resume` of a run another engine drives: a request wakes it
WAKES = "the run's workflow goes on by itself once the decision is queued"


# what a command sees when it writes, renames or removes what its sandbox holds
_HELD_SIGNS = ("Read-only file system", "Device or resource busy")
_HELD = (
    "the output of {step!r} says a file could not be changed: the sandbox keeps .git, "
    "trestle.toml, the system and every plan file a run has used (with its python: code) "
    "read-only to commands; the run's `commands sandboxed` line names the plan files held "
    "(`trestle log {run}`; docs/security.md). Have the step write another file; edit a "
    "plan yourself, between runs."
)


def _held_back(st: StepState) -> bool:
    """Whether the last attempt's output shows a write its sandbox held back: the OS's
    words alone do not name the sandbox, nor the plan file a user may not know is held."""
    return any(sign in st.output_tail for sign in _HELD_SIGNS)


def _rejected(state: RunState, sid: str) -> bool:
    """Whether the last approval step ``sid`` asked for was rejected (a retry since
    asked again, and that answer is the one that counts)."""
    asked = [n for n, a in state.approvals.items() if a.step == sid and a.blocking]
    return bool(asked) and state.approvals[max(asked)].status == "rejected"


def _then_resume(state: RunState, joint: str = ", then") -> str:
    """The resume that follows a human's request: none for a run whose driver a request
    wakes (its engine's workflow), so the report asks for nothing it need not."""
    if state.engine is not None:
        return f" ({WAKES})"
    return f"{joint} `trestle resume {state.run_id}`"


def _go_on(state: RunState) -> str:
    """After a hard budget stop: the commands that raise the limit and go on."""
    stop = state.budget_stop
    if stop is None:
        return ""
    carved = carved_budget(state)
    if carved is not None:
        return f" {carved[0].upper()}{carved[1:]}."
    if stop.used is None or stop.limit is None:  # recorded before stops kept amounts
        return (
            f" To go on: `trestle budget {state.run_id} --add {stop.dimension}=AMOUNT`, "
            f"then `trestle resume {state.run_id}`."
        )
    text = go_on(state.run_id, stop.dimension, stop.used, stop.limit)
    return f" {text[0].upper()}{text[1:]}."


def _to_check(state: RunState, driven_elsewhere: bool = False) -> list[str]:
    """Plain sentences, most urgent first, each naming the step and the next command."""
    run = state.run_id
    urgent: list[str] = []
    review: list[str] = []
    if state.cancelled is not None:
        killed = [sid for sid, st in state.steps.items() if st.interrupted == "trestle cancel"]
        mid = (
            f" The cancel stopped {', '.join(map(repr, killed))} mid-step: check what "
            f"{'it' if len(killed) == 1 else 'they'} left in the workspace."
            if killed
            else ""
        )
        urgent.append(
            f"the run was {state.cancelled}. It cannot be resumed: what it did not do "
            f"needs a new run.{mid}"
        )
    if state.stopped is not None:
        urgent.append(f"the run was {state.stopped}." + _go_on(state))
    if state.sandbox is not None and not state.sandbox.confined:
        urgent.append(
            f"its commands ran {state.sandbox.detail}: they could read and change "
            "anything you can, the approval key and the store included."
        )
    if state.sandbox is not None and state.sandbox.confined:
        urgent += [f"the sandbox cannot hold here: {e}." for e in state.sandbox.exposed]
    if driven_elsewhere and state.cancelled is None and state.finished is None:
        urgent.append(
            "the run has not finished, and another process drives it: wait for it to "
            "end, or stop that process (Ctrl-C, or SIGTERM to its pid) and then resume "
            "it; `trestle health` shows who drives it."
        )
    elif state.cancelled is None and state.interrupted is not None:
        stopped = [
            sid for sid, st in state.steps.items() if st.interrupted and st.status not in TERMINAL
        ]
        then = f"continue with `trestle resume {run}`"
        if model_stopped(state.interrupted) is not None:  # no resume as it is mends it
            then = (
                f"fix the key or the server and {then}, or point the run elsewhere: "
                f"`trestle resume {run} --base-url URL` (or --api-key-env NAME, "
                "--model PROVIDER:MODEL)"
            )
        urgent.append(
            f"the run was interrupted ({state.interrupted}){_what_resume_does(state, stopped)}: "
            f"{then}."
        )
    elif state.finished is None:
        # whether a process still drives it is for `trestle health` to say
        urgent.append(
            f"the run has not finished: continue it with `trestle resume {run}` "
            "if nothing drives it."
        )
    for sid, child in state.waiting_children().items():
        urgent.append(
            f"step {sid!r} waits on its child run {child}, which waits for a human: "
            f"{child_wait_advice(state, child)}."
        )
    for number, a in state.approvals.items():
        if a.status != "pending":
            continue
        ref = f"{run}.{number}"
        if a.subject == "budget" and a.breach is not None:
            urgent.append(
                f"the run is paused at its budget: {a.breach.describe()} "
                f"`trestle approve {ref}` (or `trestle reject {ref} --reason ...`)"
                f"{_then_resume(state)}."
            )
        elif a.subject == "alert" and a.alert is not None:
            urgent.append(
                f"a monitor paused the run ({a.alert.kind}): {_sentence(a.alert.message)} "
                f"Look at `trestle log {run}` (seqs {', '.join(map(str, a.alert.evidence[:8]))}), "
                f"then `trestle approve {ref}` to go on or `trestle reject {ref} --reason ...` "
                f"to stop{_then_resume(state, ', and')}."
            )
        elif a.blocking:
            urgent.append(
                f"{a.step!r} waits for approval {ref}"
                + (f" ({a.decision.reason})" if a.decision else "")
                + f": see `trestle inbox`, then `trestle approve {ref}` or "
                f"`trestle reject {ref} --reason ...`{_then_resume(state, ', and')}."
            )
        else:
            what = f"the {a.ask.tool} call of {a.step!r}" if a.ask is not None else repr(a.step)
            review.append(f"{what} ran and was drawn for review: see approval {ref}.")
    unchecked: dict[ActionKind, list[str]] = {}
    confined = state.sandbox is not None and state.sandbox.confined
    for planned in state.plan.steps:
        # the step as it runs: a human may have approved an edited action
        sid, spec = planned.id, state.step_spec(planned.id)
        st, editor = state.steps[sid], state.edited_by(sid)
        if editor is not None:
            review.append(
                f"{sid!r} runs the action as {editor} edited it ({spec.describe_action()}), "
                f"not as planned ({planned.describe_action()})."
            )
        if st.status == "escalated":
            urgent.append(
                f"{sid!r}: {st.reason}. If it took effect: `trestle skip {run} {sid} "
                f"--reason ...`; if not: `trestle retry {run} {sid}`"
                f"{_then_resume(state, '; then')}."
            )
        elif st.status == "failed" and st.dead_lettered:
            # a step can fail before any attempt (a delegation over max_children)
            after = f" after {counted(st.failed_attempts, 'attempt')}" if st.failed_attempts else ""
            urgent.append(
                f"{sid!r} failed{after}: {st.error or st.reason}. Fix the "
                f"cause, then `trestle retry {run} {sid}` and `trestle resume {run}` "
                f"(or `trestle skip {run} {sid} --reason ...`)."
            )
            if confined and _held_back(st):
                urgent.append(_HELD.format(step=sid, run=run))
        elif st.status == "failed" and spec.optional:
            review.append(f"optional {sid!r} failed: {st.error}.")
        elif st.status == "failed" and _rejected(state, sid):
            # a rejection is not final: the step can be asked about again
            urgent.append(
                f"{sid!r} failed: {st.error or st.reason}. To ask again (its action "
                f"waits for a new approval): `trestle retry {run} {sid}`"
                f"{_then_resume(state)}."
            )
        elif st.status == "failed":
            urgent.append(f"{sid!r} failed: {st.error or st.reason}.")
        elif st.status == "skipped":
            review.append(
                f"{sid!r} was skipped by a human ({st.reason}); steps after it "
                "ran without its work."
            )
        elif st.status == "succeeded" and st.succeeded_via == "probe":
            review.append(
                f"{sid!r} was marked done because its checks passed ({st.reason}); "
                "confirm the result."
            )
        elif st.status == "succeeded" and spec.irreversible:
            review.append(
                f"{sid!r} made an irreversible change ({spec.describe_action()}); review it."
            )
        if st.status == "succeeded" and confined:
            review += [
                f"{sid!r} succeeded, but what its command wrote to {w.path!r} is gone: the "
                f"sandbox gives each command its own {w.private_dir}, discarded when it ends. "
                "Write it inside the workspace, or run with --sandbox off."
                for w in step_outside_writes(spec, state.workspace)
                if w.discarded
            ]
        # an agent's understand/plan/review/validate steps are judged otherwise
        by_agent = spec.agent is not None and spec.agent.role != "execute"
        if st.status == "succeeded" and not spec.verify and not by_agent:
            unchecked.setdefault(spec.action_kind, []).append(sid)
    if unchecked:
        review.append(_unchecked_note(unchecked))
    flagged = [r for r in state.alerts if r.alert.severity != "info"]
    if flagged:
        kinds = ", ".join(sorted({r.alert.kind for r in flagged}))
        review.append(
            f"monitors raised {counted(len(flagged), 'alert')} ({kinds}): see `trestle log {run}`."
        )
    if state.cancelled is not None:  # nothing more of it runs: no advice to resume it
        urgent = [line for line in urgent if "trestle resume" not in line]
    return urgent + review


def _sentence(text: str) -> str:
    """``text`` on one line, ending as a sentence does, so the next one does not run
    into it. A monitor's message names what the model did (a path it chose among
    them): a newline in it started a line that read as an item of its own."""
    text = " ".join(text.split())
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _what_resume_does(state: RunState, stopped: list[str]) -> str:
    """What resume does with the steps an interrupt stopped mid-step: a step with checks
    is probed, one safe to re-run runs again, and one with neither goes to a human."""
    if not stopped:
        return ""
    blind = [s for s in stopped if _blind(state.step_spec(s))]
    rerun = [s for s in stopped if s not in blind]
    said = []
    if rerun:
        # a stopped step whose checks pass is done, not run again
        checked = [s for s in rerun if state.step_spec(s).verify]
        their = "its" if len(rerun) == 1 else "their"
        how = (
            f"marks done if {their} checks pass and otherwise runs again"
            if checked
            else "runs again"
        )
        said.append(f"{_names(rerun)}, which resume {how}")
    if blind:
        one = len(blind) == 1
        said.append(
            f"{_names(blind)}, which resume does not run again: "
            f"{'it has' if one else 'they have'} no verify checks and "
            f"{'is' if one else 'are'} not idempotent, so whether "
            f"{'it' if one else 'each'} took effect goes to a human"
        )
    return f"; it stopped mid-step {'; and '.join(said)}"


def _blind(step: Step) -> bool:
    return not step.verify and not step.rerunnable


def _unchecked_note(steps: dict[ActionKind, list[str]]) -> str:
    """One line for every step that succeeded with nothing to confirm it, saying what
    its success rests on (a write has no exit status: it rests on the file written)."""
    rests_on = {
        "run": "only the exit status says {} worked",
        "python": "only returning without an error says {} worked",
        "agent": "only the agent finishing says {} worked",
        "write": "{} wrote {}, which no check looked at",
        "delegate": "only the child run finishing says {} worked",
    }
    parts = []
    for kind in ("run", "python", "agent", "write", "delegate"):
        if sids := steps.get(kind):
            files = "its file" if len(sids) == 1 else "their files"
            parts.append(rests_on[kind].format(_names(sids), files))
    return "no verify checks: " + "; ".join(parts) + "."


def _names(sids: list[str], most: int = 10) -> str:
    """'a', 'a' and 'b', 'a', 'b' and 'c'; past ``most``, the rest counted."""
    shown = [repr(s) for s in sids[:most]]
    if len(sids) > most:
        shown.append(f"{len(sids) - most} more")
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
