"""What an event, a check or an action says in words: the detail column of
``trestle log``, the dashboard's timeline, a handoff card's action line. Plain text, no
markup, so every interface prints the same facts in the same words."""

from __future__ import annotations

from trestle.core.budget import fmt
from trestle.core.card import Action
from trestle.core.conversation import Usage
from trestle.core.events import (
    AlertRaised,
    AloneAwaited,
    AloneGranted,
    AloneReleased,
    AnyEvent,
    ApprovalDecided,
    ApprovalEndorsed,
    ApprovalRequested,
    BoardWritten,
    BudgetRaised,
    CallAloneAsked,
    CheckResult,
    ChildRunEnded,
    ChildRunStarted,
    ConversationSaved,
    Gate,
    MessagesDelivered,
    MessageSent,
    ModelCalled,
    ModelRebound,
    PlanStepChanged,
    RunCancelled,
    RunInterrupted,
    RunRewound,
    SandboxChosen,
    ShareAwaited,
    StepAttemptEnded,
    StepAttemptLost,
    StepProbed,
    StepProcessStarted,
    StepReopened,
    StepSkipped,
    StepStarted,
    ToolCallStarted,
)
from trestle.core.usage import Spent, cost_text
from trestle.presentation.wording import clip, counted, shown


def log_detail(e: AnyEvent) -> str:
    """The outcome and every check's expected vs actual, on as few words as possible."""
    match e:
        case StepAttemptEnded(ok=ok, action=action, checks=checks):
            parts = [f"{'ok' if ok else 'failed'}; action {action.status}"]
            if action.error:
                parts.append(action.error)
            parts += [
                f"{'✓' if c.passed else '✗'} {c.check}: expected {c.expected}, got {c.actual}"
                for c in checks
            ]
            return "; ".join(parts)
        case StepProbed(leftovers="unseen"):
            return "nothing looked at: the attempt ran where its processes cannot be seen"
        case StepProbed(passed=ok, checks=checks, leftovers=left, waited=waited):
            # with none to run, nothing failed: the live view says "no checks" too
            verdict = f"checks {'passed' if ok else 'failed'}" if checks else "no checks"
            return "; ".join(
                [f"{verdict}{leftovers(left, waited)}"]
                + [f"{'✓' if c.passed else '✗'} {c.check}: got {c.actual}" for c in checks]
            )
        case ConversationSaved(turn=turn, messages=messages):
            return f"after turn {turn}, {counted(len(messages), 'message')}: a resume starts here"
        case StepAttemptLost(why=why):
            return f"{why}; its outcome is unknown"
        case SandboxChosen(detail=detail, exposed=exposed):
            # what the run's start said, kept where a user looks back: which files
            # commands could not change explains a step's 'Read-only file system'
            return "; ".join((f"commands {detail}", *exposed))
        case StepProcessStarted(pid=pid, pgid=pgid):
            return f"pid {pid}, process group {pgid}"
        case RunInterrupted(by=by, stopped=stopped):
            return f"by {by}; stopped: {', '.join(stopped) or 'nothing'}"
        case RunCancelled(by=by, reason=why, stopped=stopped):
            return f"by {by}: {why}; stopped: {', '.join(stopped) or 'nothing'}"
        case StepReopened(reason=why, by=by) | StepSkipped(reason=why, by=by):
            return f"{why} (asked by {by})" if by else why
        case ShareAwaited(reason=why) | AloneAwaited(reason=why):
            return why
        case CallAloneAsked(call=place):
            return f"call {place} (a command a human approved) asks to run with nothing beside it"
        case AloneGranted(call=place):
            return f"call {place} runs with nothing else of the run beside it"
        case AloneReleased(call=place):
            return f"the child's command {place} ended: the run goes on"
        case StepStarted(key=key, gate=gate):
            tier = f"; {gate.decision.tier} ({gate.decision.source})" if gate else ""
            approved = f"; approval {gate.approval}" if gate and gate.approval else ""
            return f"key {key}{tier}{approved}"
        case ToolCallStarted(tool=tool, arguments=arguments, gate=gate):
            return f"{tool} {clip(arguments, 80)}: {gate_text(gate)}"
        case ApprovalRequested(approval=n, subject=subject, decision=d, breach=b, ask=ask):
            why = d.reason if d else b.describe() if b else ""
            call = f"{ask.tool} {clip(ask.arguments, 80)}: " if ask is not None else ""
            return f"approval {n} ({subject}): {call}{why}"
        case ApprovalEndorsed(approval=n, by=by, signer=signer):
            return f"approval {n}: approved by {by} ({signer[:24]}…), one of the approvers it needs"
        case ApprovalDecided(approval=n, verdict=verdict, by=by, reason=why, edited=edited):
            runs = f"; runs as edited: {edited.describe_action()}" if edited else ""
            if e.arguments is not None:  # a tool call's arguments, as edited
                runs = f"; the call runs as edited: {clip(e.arguments, 80)}"
            if e.plan_edit is not None:
                added = ", ".join(s.id for s in e.plan_edit.added)
                dropped = ", ".join(e.plan_edit.dropped) or "nothing"
                runs = f"; the plan as edited: drops {dropped}, adds {added}"
            if e.covers:  # its group, decided with it (trestle.core.approval_groups)
                runs += f"; with its group: approvals {', '.join(map(str, e.covers))}"
            return f"approval {n}: {verdict} by {by}{runs}" + (f": {why}" if why else "")
        case AlertRaised(alert=a, action=action):
            return (
                f"{a.severity} {a.monitor}/{a.kind} -> {action}: {a.message}; "
                f"evidence seqs {seqs_text(a.evidence)}; suggests: {a.suggestion}"
            )
        case BudgetRaised(by=by):
            return f"by {by}: {raised_text(e)}"
        case ModelCalled(model=model, response=response):
            usage = response.usage
            said = f"{model or response.model or 'model'}: " + call_text(usage)
            return said + f"; finished: {response.finish_reason}"
        case ModelRebound(by=by, was=was):
            now = {"model": e.model, "base_url": e.base_url, "api_key_env": e.api_key_env}
            changed = [f"{name} {was[name]} -> {now[name]}" for name in was]
            return f"by {by}: " + ("; ".join(changed) or "the same binding")
        case ChildRunStarted(child=child, resumed=resumed):
            return f"{'resumed' if resumed else 'created'} child run {child}"
        case ChildRunEnded(child=child, status=status, spent=spent, waiting=waiting):
            used = ", ".join(fmt(dim, amount) for dim, amount in spent.items())
            text = f"child run {child} {shown(status)}" + (f": {waiting}" if waiting else "")
            return text + (f"; it spent {used}" if used else "")
        case BoardWritten(group=g, key=key, version=v, expected=x, accepted=True):
            return f"board {g!r}: {clip(key, 80)!r} written, now at version {v}"
        case BoardWritten(group=g, key=key, version=v, expected=x):
            return (
                f"board {g!r}: {clip(key, 80)!r} conflict: expected version {x}, "
                f"the key is at {v}; nothing written"
            )
        case MessageSent(group=g, message_id=mid, recipient=to, reply_to=re, new=new):
            answer = f" in reply to {re}" if re else ""
            again = "" if new else " (sent before: deduplicated)"
            return f"group {g!r}: {mid} to {clip(to, 80)!r}{answer}{again}"
        case MessagesDelivered(group=g, message_ids=ids):
            return f"group {g!r}: {counted(len(ids), 'message')} received: {', '.join(ids)}"
        case PlanStepChanged(change="drop", by=by, text=why):
            return f"dropped by {by}" + (f": {clip(why, 120)}" if why else "")
        case PlanStepChanged(by=by, text=objective):
            return f"new objective by {by}: {clip(objective, 120)}"
        case RunRewound(to_step=sid, reopened=steps, safety=safety, by=by):
            return (
                f"rewound to before {sid!r} by {by}; reopened {', '.join(steps)}; "
                f"the workspace before is snapshot {safety[:12]}"
            )
    for field in ("reason", "status", "owner"):
        value = getattr(e, field, None)
        if value:
            return shown(value) if field == "status" else str(value)
    return ""


def gate_text(gate: Gate | None) -> str:
    """Why a tool call ran: its tier, the level that chose it and why, the confidence
    judged, the audit drawn and the approval it ran on."""
    if gate is None:
        return "tier not recorded (recorded before tool calls' tiers were)"
    d = gate.decision
    parts = [f"{d.tier} ({d.source}): {d.reason}"]
    if d.confidence is not None:
        parts.append(f"confidence {d.confidence:g}")
    if d.audit == "after":
        parts.append("drawn for review after the fact")
    elif d.audit == "before":
        parts.append("drawn for review before it ran")
    if gate.approval is not None:
        parts.append(f"approval {gate.approval}")
    return "; ".join(parts)


def check_text(c: CheckResult) -> str:
    """A check's verdict with what it expected and what it found."""
    mark = "✓" if c.passed else "✗"
    return f"{mark} {c.check}: expected {c.expected}, got {clip(c.actual, 200)}"


def action_text(action: Action | None) -> str:
    if action is None:
        return ""
    if action.tool is not None:
        text = f"tool {action.tool} {action.arguments or '{}'}"
    elif action.command is not None:
        text = f"run: {action.command}"
    elif action.agent is not None:
        text = action.agent
    elif action.path is not None:
        size = len(action.content or "")
        text = f"write {action.path} ({counted(size, 'character')})"
    else:
        text = f"call {action.call}"
    if action.env:
        text += " with " + " ".join(f"{k}={v}" for k, v in sorted(action.env.items()))
    if action.timeout:
        text += f" (timeout {action.timeout:g} s)"
    return text


def call_text(usage: Usage) -> str:
    """One call's use: ``1,200 tokens in, 80 out, $0.0042``."""
    one = Spent()
    one.add(usage)
    estimated = " (estimated)" if usage.estimated else ""
    return (
        f"{counted(usage.input_tokens, 'token')} in, {usage.output_tokens:,} out{estimated}, "
        + cost_text(one)
    )


def raised_text(e: BudgetRaised) -> str:
    """``tokens +2,000 tokens; why``"""
    text = ", ".join(f"{dim} +{fmt(dim, amount)}" for dim, amount in e.add.items())
    return text + (f"; {e.reason}" if e.reason else "")


def leftovers(left: str | None, waited: float) -> str:
    if left == "finished":
        return f" (its leftover processes finished first, after {waited:.1f}s)"
    if left == "killed":
        return f" (its leftover processes were killed first, after {waited:.0f}s)"
    if left == "unseen":
        return " (none run: the attempt ran where its processes cannot be seen from here)"
    return ""


def seqs_text(seqs: tuple[int, ...], most: int = 8) -> str:
    shown = ", ".join(map(str, seqs[:most]))
    return shown + (f" and {len(seqs) - most} more" if len(seqs) > most else "")
