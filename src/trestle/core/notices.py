"""Notices: what a committed event tells the people who must act on it.

Four things hold a run until a human acts, and each is worth a message to someone
who is not watching the terminal: an action or tool call waiting for approval, a step
on the dead-letter queue (or escalated: its outcome unknown), a budget pause or stop,
and a monitor's pause. :func:`notices_for` turns one committed event into the notices
it raises; nothing else does, so a replay of the same events raises the same notices
with the same :attr:`Notice.dedup_key`.

A notice carries no output: the step's name, the reason the event recorded (clipped),
the reference a human decides with and the command that moves the run. Where it is
sent, with what link, and with secrets redacted is the shell's part
(:mod:`trestle.notifications`). Pure: no IO.
"""

from __future__ import annotations

from typing import Literal

from trestle.core.approvers import covering
from trestle.core.durations import clock_time
from trestle.core.escalation import deadline
from trestle.core.events import (
    AnyEvent,
    ApprovalRequested,
    BudgetExhausted,
    StepEscalated,
    StepFailed,
)
from trestle.core.record import Record
from trestle.core.state import RunState

NoticeKind = Literal["approval", "dead_letter", "budget", "monitor"]
NOTICE_KINDS: tuple[NoticeKind, ...] = ("approval", "dead_letter", "budget", "monitor")
MAX_DETAIL = 400  # characters of a recorded reason a notice carries, at most


class Notice(Record):
    """One thing a human should act on, as sent to every target that wants its kind.

    Attributes:
        kind: approval, dead_letter (also an escalated step), budget or monitor.
        run_id, seq: the run and the event that raised it.
        step: the step it concerns, when one does.
        ref: the approval's ``RUN.N``, for what a human approves or rejects.
        title: one line naming what waits.
        detail: the recorded reason, clipped to :data:`MAX_DETAIL` characters.
        command: the command that moves the run.
        dedup_key: the same for the same notice however often it is derived.
        approval: the approval's number within the run, for an approval.
        groups: the approver groups whose members may decide it (the operator's
            approver rules that cover it, :mod:`trestle.core.approvers`); empty when
            none covers it, or when that is not known.
    """

    kind: NoticeKind
    run_id: str
    seq: int
    step: str | None = None
    ref: str | None = None
    title: str
    detail: str
    command: str
    dedup_key: str
    approval: int | None = None
    groups: tuple[str, ...] = ()

    def link(self, dashboard_url: str | None) -> str:
        """Where the card is: the dashboard's inbox card or run page, else the command."""
        if not dashboard_url:
            return self.command
        base = dashboard_url.rstrip("/")
        if self.ref is not None:
            return f"{base}/inbox#card-{self.ref}"
        return f"{base}/runs/{self.run_id}"


def clip(text: str, limit: int = MAX_DETAIL) -> str:
    """``text`` on one line, at most ``limit`` characters (an ellipsis says it was cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def notices_for(run_id: str, seq: int, event: AnyEvent) -> list[Notice]:
    """The notices ``event`` (``run_id``'s ``seq``) raises: none for most events."""
    if isinstance(event, ApprovalRequested):
        return [] if not event.blocking else [_approval(run_id, seq, event)]
    if isinstance(event, StepFailed) and event.dead_lettered:
        return [_settle(run_id, seq, event.step, f"step {event.step!r} failed", event.reason)]
    if isinstance(event, StepEscalated):
        title = f"step {event.step!r} escalated: its outcome is unknown"
        return [_settle(run_id, seq, event.step, title, event.reason)]
    if isinstance(event, BudgetExhausted) and event.carved_from is None:
        # a child's stop is not a human's to raise: its parent's step, failing or
        # escalating, raises the notice that is
        return [
            Notice(
                kind="budget",
                run_id=run_id,
                seq=seq,
                title=f"run {run_id} stopped by its {event.dimension} budget",
                detail=clip(event.reason),
                command=f"trestle budget {run_id} --add {event.dimension}=AMOUNT, "
                f"then trestle resume {run_id}",
                dedup_key=f"{run_id}/budget_stop/{seq}",
            )
        ]
    return []


def _approval(run_id: str, seq: int, event: ApprovalRequested) -> Notice:
    ref = f"{run_id}.{event.approval}"
    kind: NoticeKind = "approval"
    if event.subject == "budget" and event.breach is not None:
        kind, title = "budget", f"run {run_id} paused at its budget"
        detail = event.breach.describe()
    elif event.subject == "alert" and event.alert is not None:
        kind, title = "monitor", f"a monitor paused run {run_id}"
        detail = event.alert.message
    elif event.ask is not None:
        title = f"tool call {event.ask.tool!r} waits for approval"
        detail = event.ask.decision.reason
    else:
        what = f"step {event.step!r}" if event.step else f"run {run_id}"
        title = f"{what} waits for approval ({event.subject})"
        detail = event.decision.reason if event.decision is not None else ""
    if event.step and kind != "approval":
        title += f" at step {event.step!r}"
    return Notice(
        kind=kind,
        run_id=run_id,
        seq=seq,
        step=event.step,
        ref=ref,
        title=title,
        detail=clip(detail),
        command=f"trestle approve {ref}  |  trestle reject {ref} --reason ...",
        dedup_key=f"{run_id}/approval/{event.approval}",
        approval=event.approval,
    )


def with_approvers(notice: Notice, state: RunState) -> Notice:
    """``notice`` with the groups the operator's approver rules let decide its approval
    (``state``: its run's, with the approval in it); unchanged for any other notice."""
    a = state.approvals.get(notice.approval) if notice.approval is not None else None
    if a is None:
        return notice
    groups = tuple(dict.fromkeys(g for rule in covering(state, a) for g in rule.groups))
    return notice.model_copy(update={"groups": groups})


def escalations(state: RunState, now: float) -> list[Notice]:
    """An ``approval`` notice for each pending approval of ``state`` whose deadline has
    passed at ``now`` and whose rule escalates: addressed to the escalation groups (a
    target that routes by groups gets it when it names one of them). Its dedup key is
    the approval's, so a sweep run every minute sends it once. Unlike the notices of
    :func:`notices_for`, these come from the clock, not from an event: the sweep that
    reads the clock (``trestle notify sweep``) asks for them."""
    found = []
    for number, a in state.approvals.items():
        if a.status != "pending":
            continue
        due = deadline(covering(state, a), a)
        if due is None or not due.escalate_to or now < due.at:
            continue
        ref = f"{state.run_id}.{number}"
        what = f"step {a.step!r}" if a.step else f"run {state.run_id}"
        groups = " or ".join(due.escalate_to)
        found.append(
            Notice(
                kind="approval",
                run_id=state.run_id,
                seq=state.seq,
                step=a.step,
                ref=ref,
                title=f"{what} is overdue for approval: {groups} may decide it now",
                detail=clip(f"its deadline was {clock_time(due.at, near=now)}"),
                command=f"trestle approve {ref}  |  trestle reject {ref} --reason ...",
                dedup_key=f"{state.run_id}/escalation/{number}",
                approval=number,
                groups=due.escalate_to,
            )
        )
    return found


def _settle(run_id: str, seq: int, step: str, title: str, reason: str) -> Notice:
    return Notice(
        kind="dead_letter",
        run_id=run_id,
        seq=seq,
        step=step,
        title=title,
        detail=clip(reason),
        command=f"trestle retry {run_id} {step}  |  trestle skip {run_id} {step} --reason ...",
        dedup_key=f"{run_id}/dead_letter/{step}/{seq}",
    )
