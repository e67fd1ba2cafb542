"""Rich renderables for the CLI: the plan overview, live step table, report, log, lists.

Everything here turns data into text; nothing reads the store or the clock, so tests
render into a fixed-width console and compare text.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.table import Table

from trestle.cli.listing import STATUS_STYLE, styled
from trestle.cli.shown_text import Text
from trestle.core.budget import go_on
from trestle.core.card import HandoffCard
from trestle.core.card_groups import due, waiting
from trestle.core.events import (
    AlertRaised,
    AloneAwaited,
    AnyEvent,
    ApprovalDecided,
    ApprovalEndorsed,
    ApprovalRefused,
    ApprovalRequested,
    BoardWritten,
    BudgetExhausted,
    BudgetRaised,
    FindingsRecorded,
    MessagesDelivered,
    PhaseEntered,
    PlanExtended,
    PlanProposed,
    PlanStepChanged,
    RequestRefused,
    RequirementAdded,
    RunCancelled,
    RunFinished,
    RunInterrupted,
    SandboxChosen,
    ShareAwaited,
    StepAttemptEnded,
    StepAttemptLost,
    StepBlocked,
    StepEscalated,
    StepFailed,
    StepProbed,
    StepProbeStarted,
    StepReopened,
    StepRetryScheduled,
    StepSkipped,
    StepStarted,
    StoredEvent,
    ToolCallEnded,
)
from trestle.core.plan import (
    Plan,
    Step,
    critical_path,
    describe_check,
    topological_order,
    waves,
)
from trestle.core.report import PlanShape, Report, StepReport, carved_share
from trestle.core.state import RunState
from trestle.core.step_state import RefusedRequest, output_tail
from trestle.core.usage import usage_lines
from trestle.lifecycle.driven import DRIVER_LOST, LEFT_RUNNING
from trestle.operations.health import RunHealth
from trestle.presentation.descriptions import (
    action_text,
    check_text,
    leftovers,
    log_detail,
    raised_text,
    seqs_text,
)
from trestle.presentation.wording import clip, clock, counted, folded, shown


def plan_overview(plan: Plan, source: str) -> RenderableType:
    """Steps in dependency order, what runs in parallel, the critical path, the flags."""
    path = critical_path(plan)
    table = Table(title=f"plan {source}", title_justify="left", expand=False)
    for col in ("wave", "step", "needs", "action", "flags"):
        table.add_column(col)
    wave_of = {sid: i + 1 for i, wave in enumerate(waves(plan)) for sid in wave}
    for step in topological_order(plan):
        flags = [
            f
            for f, on in (
                ("irreversible", step.irreversible),
                ("optional", step.optional),
                ("critical", step.id in path),
            )
            if on
        ]
        if step.retries:
            flags.append(f"retries={step.retries}")
        table.add_row(
            str(wave_of[step.id]),
            step.id,
            ", ".join(step.needs) or "-",
            clip(step.describe_action(), 48),
            " ".join(flags),
        )
    lines: list[RenderableType] = [table]
    if plan.goal:
        lines.insert(0, Text(f"goal: {plan.goal}", style="bold"))
    parallel = [w for w in waves(plan) if len(w) > 1]
    par = "; ".join(" | ".join(w) for w in parallel) if parallel else "nothing (a chain)"
    lines.append(Text(f"in parallel: {par}"))
    lines.append(Text(f"critical path: {' -> '.join(path)} ({counted(len(path), 'step')})"))
    lines.append(Text(f"parallelism limit: {plan.parallelism}"))
    return Group(*lines)


def steps_table(state: RunState, *, lost: bool = False) -> Table:
    """The live view: each step's state and attempt. ``lost``: the run's driver died
    without a word (``kill -9``), so a step it left running runs no more."""
    table = Table(expand=False)
    for col in ("step", "state", "attempt", "note"):
        table.add_column(col)
    for spec in state.plan.steps:
        st = state.steps[spec.id]
        note = Text(clip(st.reason or st.error or "", 60))
        if st.status == "retry_wait" and st.error:
            note = Text(clip(f"retrying after: {st.error}", 60))
        if st.error and st.status not in ("succeeded", "skipped") and st.output_tail:
            for line in st.output_tail.splitlines():
                note.append("\n" + clip(f"| {line}", 60), style="dim")
        label = styled(st.status)
        if lost and st.status in LEFT_RUNNING:
            label = Text(DRIVER_LOST, style=STATUS_STYLE["interrupted"])
        table.add_row(spec.id, label, str(st.attempt or "-"), note)
    return table


def added_shape(steps: Sequence[Step], indent: str) -> list[str]:
    """Steps added together (an agent's plan), as waves and their critical path; needs
    on steps the run already had are left out (those have run or will first)."""
    if len(steps) < 2:
        return []
    ids = {s.id for s in steps}
    kept = tuple(
        s.model_copy(update={"needs": tuple(n for n in s.needs if n in ids)}) for s in steps
    )
    try:
        alone = Plan(goal="added", steps=kept)
    except ValueError:  # not a plan of its own (a cycle through the run's steps): no shape
        return []
    lines = [f"{indent}wave {i}: {' | '.join(w)}" for i, w in enumerate(waves(alone), 1)]
    path = critical_path(alone)
    lines.append(f"{indent}critical path: {' -> '.join(path)} ({counted(len(path), 'step')})")
    return lines


def shape_lines(shape: PlanShape) -> list[str]:
    """An agent run's plan, wave by wave, and its critical path (as ``trestle plan``
    shows a plan file's)."""
    lines = ["plan in waves (steps of a wave may run side by side):"]
    lines += [f"  wave {i}: {' | '.join(w)}" for i, w in enumerate(shape.waves, 1)]
    path = shape.critical_path
    lines.append(f"critical path: {' -> '.join(path)} ({counted(len(path), 'step')})")
    return lines


def event_line(stored: StoredEvent) -> str | None:
    """One line of progress for a non-terminal output, or None for quiet events.

    Text a step, a model or a person wrote is :func:`folded` (or clipped) onto the
    event's line, which stays one whatever it holds; the lines added below it (the end
    of a failed attempt's output, an added plan's waves, the sandbox's warnings) are
    this function's own, each marked by its indent. The whole text stays in the record
    (``trestle show``, ``trestle log``)."""
    e: AnyEvent = stored.event
    match e:
        case StepStarted(step=sid, attempt=n):
            return f"start    {sid} (attempt {n})"
        case StepAttemptEnded(step=sid, attempt=n, ok=True):
            return f"done     {sid} (attempt {n})"
        case StepAttemptEnded(step=sid, attempt=n, action=action) if action.status == "deferred":
            return f"paused   {sid} (attempt {n}): {clip(action.error or '', 100)}"
        case StepAttemptEnded(step=sid, attempt=n, ok=False, action=action, checks=checks):
            failed = next((c for c in checks if not c.passed), None)
            why = (
                f"check {failed.check}: expected {failed.expected}, got {failed.actual}"
                if failed
                else action.error or action.status
            )
            head = f"failed   {sid} (attempt {n}): {clip(why, 100)}"
            more = output_lines(stored.run_id, sid, n, output_tail(action.output), "         ")
            return "\n".join([head, *more])
        case StepRetryScheduled(step=sid, not_before=t, at=at):
            return f"retry    {sid} in {max(0.0, t - at):.1f}s"
        case StepProbeStarted(step=sid, reason=why):
            return f"probe    {sid} ({why.replace('_', ' ')})"
        case StepAttemptLost(step=sid, attempt=n, why=why):
            return f"LOST     {sid} (attempt {n}): {folded(why)}; its outcome is unknown"
        case StepProbed(step=sid, passed=ok, checks=checks, leftovers=left, waited=waited):
            verdict = f"checks {'passed' if ok else 'did not pass'}" if checks else "no checks"
            return f"probed   {sid}: {verdict}{leftovers(left, waited)}"
        case RunInterrupted(by=by, stopped=stopped):
            what = f"; stopped {', '.join(stopped)}" if stopped else ""
            return f"INTERRUPTED by {folded(by)}{what}"
        case RunCancelled(by=by, reason=why, stopped=stopped):
            what = f"; stopped {', '.join(stopped)}" if stopped else ""
            return f"CANCELLED by {folded(by)}: {folded(why)}{what}"
        case SandboxChosen(confined=confined, detail=detail, exposed=exposed):
            said = "".join(f"\nWARNING  {e}" for e in exposed)
            return (f"commands {detail}" if confined else f"WARNING  commands run {detail}") + said
        case StepFailed(step=sid, reason=why, dead_lettered=dlq):
            return f"FAILED   {sid}: {folded(why)}" + (" [dead-letter queue]" if dlq else "")
        case StepBlocked(step=sid, by=by):
            return f"blocked  {sid} (needs {by!r}, which failed)"
        case ShareAwaited(step=sid, reason=why) | AloneAwaited(step=sid, reason=why):
            return f"waits    {sid}: {folded(why)}"
        case StepEscalated(step=sid):
            return f"ESCALATE {sid}: outcome unknown; a human must decide"
        case StepSkipped(step=sid, reason=why):
            return f"skipped  {sid}: {folded(why)}"
        case StepReopened(step=sid, reason=why):
            return f"reopened {sid}: {folded(why)}"
        case PhaseEntered(phase=phase, reason=why):
            return f"phase    {phase}: {folded(why)}"
        case FindingsRecorded(findings=found):
            return f"findings {clip(found.summary, 100)}"
        case PlanProposed(step=sid, attempt=n, accepted=False, problems=problems):
            return f"plan     {sid}: attempt {n} refused ({counted(len(problems), 'problem')})"
        case PlanExtended(by=by, steps=steps):
            head = f"plan     {by} added: {', '.join(s.id for s in steps)}"
            return "\n".join([head, *added_shape(steps, "         ")])
        case ToolCallEnded(step=sid, tool=tool, ok=ok, error=error):
            return f"  tool   {sid}: {folded(tool)}" + (
                "" if ok else f" -> {clip(error or '', 80)}"
            )
        case BoardWritten(step=sid, key=key, accepted=False, expected=x, version=v):
            return f"  board  {sid}: conflict on {clip(key, 60)!r} (expected {x}, at {v})"
        case MessagesDelivered(step=sid, message_ids=ids):
            return f"  mail   {sid}: received {counted(len(ids), 'message')}"
        case RequirementAdded(text=text, by=by):
            return f"told     by {folded(by)}: {clip(text, 100)}"
        case PlanStepChanged(step=sid, change="drop", by=by, text=text):
            return f"dropped  {sid} by {folded(by)}" + (f": {clip(text, 100)}" if text else "")
        case PlanStepChanged(step=sid, by=by, text=text):
            return f"changed  {sid} by {folded(by)}: {clip(text, 100)}"
        case ApprovalRequested(subject="tool", step=sid, approval=n, ask=ask) if ask:
            return (
                f"APPROVE? {sid} wants {folded(ask.tool)} {clip(ask.arguments, 60)} "
                f"({stored.run_id}.{n})"
            )
        case ApprovalRequested(subject="budget", breach=breach, approval=n) if breach:
            return f"PAUSED   budget ({stored.run_id}.{n}): {breach.describe()}"
        case ApprovalRequested(subject="alert", alert=alert, approval=n) if alert:
            return f"PAUSED   {alert.kind} ({stored.run_id}.{n}): go on or stop?"
        case ApprovalRequested(step=sid, approval=n, blocking=True, decision=d):
            why = f": {folded(d.reason)}" if d else ""
            return f"APPROVE? {sid} ({stored.run_id}.{n}){why}"
        case ApprovalRequested(step=sid, approval=n, ask=ask) if ask:
            return (
                f"audit    {sid}: {folded(ask.tool)} {clip(ask.arguments, 60)} drawn for "
                f"review after the fact ({stored.run_id}.{n})"
            )
        case ApprovalRequested(step=sid, approval=n):
            return f"audit    {sid} drawn for review after the fact ({stored.run_id}.{n})"
        case ApprovalDecided(approval=n, by=by, edited=edited) if edited is not None:
            ran = clip(edited.describe_action(), 80)
            return f"decided  {stored.run_id}.{n}: approved as edited by {folded(by)}: {ran}"
        case ApprovalDecided(approval=n, verdict=verdict, by=by, covers=covers) if covers:
            also = ", ".join(f"{stored.run_id}.{c}" for c in covers)
            return (
                f"decided  {stored.run_id}.{n}: {verdict} by {folded(by)}, with its group: {also}"
            )
        case ApprovalDecided(approval=n, verdict=verdict, by=by):
            return f"decided  {stored.run_id}.{n}: {verdict} by {folded(by)}"
        case ApprovalEndorsed(approval=n, by=by):
            return f"approved {stored.run_id}.{n} by {folded(by)}: one of the approvers it needs"
        case ApprovalRefused(approval=None, reason=why):
            return f"refused  decision: {folded(why)}"
        case ApprovalRefused(approval=n, reason=why):
            return f"refused  decision on {stored.run_id}.{n}: {folded(why)}"
        case RequestRefused(request=kind, step=sid, reason=why):
            what = f"{kind} of {sid}" if sid else kind
            return f"refused  {what}: {folded(why)}"
        case BudgetExhausted(reason=why, carved_from=parent) if parent is not None:
            return f"STOPPED  budget: {folded(why)}; {carved_share(parent)}"
        case BudgetExhausted(reason=why, used=used, limit=limit) if used and limit:
            return (
                f"STOPPED  budget: {folded(why)}; {go_on(stored.run_id, e.dimension, used, limit)}"
            )
        case BudgetExhausted(reason=why):
            return f"STOPPED  budget: {folded(why)}"
        case BudgetRaised(by=by):
            return f"RAISED   budget by {folded(by)}: {folded(raised_text(e))}"
        case AlertRaised(alert=alert, action=action):
            where = f"{alert.step}: " if alert.step else ""
            return (
                f"ALERT    {alert.severity} {alert.kind} -> {action}: {where}"
                f"{clip(alert.message, 90)} (seqs {seqs_text(alert.evidence)})"
            )
        case RunFinished(status=status):
            return f"finished {shown(status)}"
    return None


def report_view(report: Report, *, interrupted: bool = False, lost: bool = False) -> RenderableType:
    """The run's report. ``interrupted``: nothing drives the run since its driver was
    stopped (said as ``runs`` lists it); ``lost``: that driver died without a word, so
    the steps it left running say so."""
    status = "interrupted" if interrupted and report.status == "running" else report.status
    table = Table(title=f"run {report.run_id}: {shown(status)}", title_justify="left")
    for col in ("step", "result", "attempts", "why"):
        table.add_column(col)
    left = {s.id for s in report.steps if lost and s.status in LEFT_RUNNING}
    for s in report.steps:
        category, style = shown(s.category), STATUS_STYLE.get(s.category, "")
        if s.id in left:
            category, style = DRIVER_LOST, STATUS_STYLE["interrupted"]
        label = category + (" (optional)" if s.optional else "")
        table.add_row(s.id, Text(label, style=style), str(s.attempts), clip(s.reason or "", 70))
    counted: dict[str, int] = {}
    for c, n in report.counts.items():
        if c == "in_progress" and left:  # every step left running is in progress
            counted[DRIVER_LOST] = len(left)
        counted[c] = n - len(left) if c == "in_progress" else n
    counts = ", ".join(f"{n} {shown(c)}" for c, n in counted.items() if n)
    parts: list[RenderableType] = [table, Text(f"steps: {counts}")]
    if report.policy:
        parts.append(Text(f"policy: {report.policy}"))
    if report.shape is not None:
        parts += [Text(line) for line in shape_lines(report.shape)]
    if report.usage.total.calls:
        parts.append(Text("model use:", style="bold"))
        parts += [Text(f"  {line}") for line in usage_lines(report.usage)]
    # a failure with nothing more to say than the table's reason is left to the table
    failed = [
        s
        for s in report.steps
        if s.failed_attempt is not None and (s.output_tail or any(not c.passed for c in s.checks))
    ]
    if failed:
        parts.append(Text("why steps failed:", style="bold"))
        parts += [Text(line) for s in failed for line in failure_lines(report.run_id, s)]
    if report.alerts:
        parts.append(Text("monitor alerts:", style="bold"))
        parts += [
            Text(
                f"  #{a.seq} {a.severity} {a.kind} -> {a.action}: "
                + (f"{a.step}: " if a.step else "")
                + clip(a.message, 100)
            )
            for a in report.alerts
        ]
    if report.refused:
        parts.append(Text("requests the run refused:", style="bold"))
        parts += [Text(f"  - {folded(refused_text(r))}") for r in report.refused]
    if report.to_check:
        # one item a line: a failure's reason quoting a list (a model's refused
        # findings) made items of its own, at the line's start
        parts.append(Text("what a human should check:", style="bold"))
        parts += [Text(f"  - {folded(item)}") for item in report.to_check]
    return Group(*parts)


def failure_lines(run_id: str, s: StepReport) -> list[str]:
    """Why a step's last attempt failed: the error, or each check that failed with what
    it expected and found; the end of its output; the command that prints all of it."""
    failed_checks = [c for c in s.checks if not c.passed]
    if failed_checks:
        what = f"its action succeeded, but {counted(len(failed_checks), 'check')} failed"
    else:
        what = s.error or "failed"
    lines = [f"  {s.id!r} attempt {s.failed_attempt}: {clip(what, 200)}"]
    lines += [f"    {check_text(c)}" for c in failed_checks]
    return lines + output_lines(run_id, s.id, None, s.output_tail, "    ")


def output_lines(run_id: str, step: str, attempt: int | None, tail: str, indent: str) -> list[str]:
    """The end of an attempt's output, each line marked as printed by the step, then
    the command that prints it whole (``attempt`` None: the step's last attempt)."""
    if not tail:
        return []
    which = "" if attempt is None else f" --attempt {attempt}"
    return [
        f"{indent}output ends:",
        *(f"{indent}  | {line}" for line in tail.splitlines()),
        f"{indent}full output: trestle output {run_id} {step}{which}",
    ]


def attempt_output_lines(stored: StoredEvent, indent: str) -> list[str]:
    """For a failed attempt in the log: the end of its output and how to read it all."""
    e = stored.event
    if not isinstance(e, StepAttemptEnded) or e.ok or e.action.status == "deferred":
        return []
    return output_lines(stored.run_id, e.step, e.attempt, output_tail(e.action.output), indent)


def refused_text(r: RefusedRequest) -> str:
    """One refused request: what was asked, and why the run did not take it."""
    if r.request == "decision":
        what = f"decision on approval {r.approval}" if r.approval else "a decision"
    else:
        kind = "requirement" if r.request == "tell" else r.request
        what = f"{kind} of {r.step!r}" if r.step else kind
    asked = f" ({clip(r.text, 60)!r})" if r.text else ""
    number = f"request {r.request_id}: " if r.request_id is not None else ""
    return f"{number}{what}{asked} refused: {r.reason}"


def log_table(events: list[StoredEvent]) -> Table:
    table = Table(expand=False)
    for col in ("seq", "time", "event", "step", "attempt", "detail"):
        table.add_column(col)
    for item in events:
        e = item.event
        step = getattr(e, "step", "")
        attempt = getattr(e, "attempt", "")
        detail = "\n".join([log_detail(e), *attempt_output_lines(item, "")])
        table.add_row(
            str(item.seq), clock(e.at, "%H:%M:%S"), e.kind, step, str(attempt), Text(detail)
        )
    return table


def health_view(r: RunHealth) -> RenderableType:
    """One run's health: a header line, then its steps, budget and alerts."""
    if r.driver_alive:
        beat = f"{r.heartbeat_age:.0f}s ago" if r.heartbeat_age is not None else "unknown"
        driver = f"driven by {r.driver}, heartbeat {beat}"
    else:
        driver = "no live driver" + (f" (last: {r.driver})" if r.driver else "")
    lines = [
        Text(f"{r.run_id} {shown(r.status)}: {clip(r.goal, 60)}", style="bold"),
        Text(f"  {driver}; last event {r.last_event_age:.0f}s ago"),
    ]
    if r.interrupted is not None:
        resume = (
            f"its tree with `trestle resume {r.root}`"
            if r.root
            else f"with `trestle resume {r.run_id}`"
        )
        lines.append(Text(f"  interrupted by {r.interrupted}: continue {resume}", style="yellow"))
    for s in r.steps:
        ran = f" for {s.running_for:.0f}s" if s.running_for is not None else ""
        problem = f": {s.problem}" if s.problem else ""
        lines.append(
            Text(
                f"  step {s.step} {shown(s.status)}{ran}{problem}",
                style=STATUS_STYLE.get("failed" if s.problem else s.status, ""),
            )
        )
    for w in r.waiting:
        where = f" {w.step}" if w.step else ""
        ref = f" ({w.ref})" if w.ref else ""
        lines.append(
            Text(
                f"  waits for a human: {w.kind.replace('_', ' ')}{where}{ref}: "
                f"{clip(w.what, 100)}; {w.next}",
                style=STATUS_STYLE["needs_human"],
            )
        )
        lines += [Text(f"    {check_text(c)}") for c in w.failed_checks]
        if w.step is not None:
            tail = output_lines(r.run_id, w.step, w.attempt, w.output_tail, "    ")
            lines += [Text(line) for line in tail]
    for b in r.budget:
        lines.append(Text(f"  budget {b.dimension}: {b.spent:g} of {b.limit:g} ({b.share:.0%})"))
    for a in r.alerts:
        wait = " (waits for a human)" if a.waiting else ""
        where = f"{a.step}: " if a.step else ""
        lines.append(
            Text(
                f"  alert #{a.seq} {a.severity} {a.kind} -> {a.action}{wait}: {where}"
                f"{clip(a.message, 80)}"
            )
        )
    return Group(*lines)


def card_view(
    card: HandoffCard, diff: str | None = None, now: float | None = None
) -> RenderableType:
    """The handoff card: the action exactly, why it is asked, and what each answer does;
    with ``now`` (the reader's clock), how long it has waited and its deadline."""
    title = f"approval {card.ref}" + ("" if card.blocking else " (review after the fact)")
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()

    def row(label: str, value: str | None) -> None:
        if value:
            table.add_row(label, Text(value))

    row("goal", card.goal)
    row("in tree", card.tree)
    if card.subject == "budget":
        row("budget", card.why)
    else:
        row("step", f"{card.step}" + (f": {card.objective}" if card.objective else ""))
        row("action", action_text(card.action))
        if card.edited_by is not None:
            row("edited", f"by {card.edited_by}; as planned: {action_text(card.planned)}")
        row("asked because", f"{card.why} [{card.rule}]" if card.rule else card.why)
        row("reasoning", card.reasoning)
        if card.confidence is not None:
            row("confidence", f"{card.confidence:.2f}")
        if card.step is not None:  # a run-wide alert is about no step's attempts
            row(
                "attempts",
                f"{card.attempts}"
                + (f"; last error: {card.last_error}" if card.last_error else ""),
            )
        row("files", ", ".join(card.relevant_files))
        row("bound to", ", ".join(card.bound_to))
        row("verified by", "; ".join(card.verify))
        row("uncertain", "; ".join(card.uncertainties))
    done = ", ".join(card.done) if card.done else "nothing yet"
    row("done so far", f"{done} ({card.remaining} remaining)")
    if now is not None:
        row("waiting", waiting(card, now).removeprefix("waiting "))
        row("deadline", due(card, now))
    row("may decide", card.may_decide)
    row("refused", "; ".join(f"a decision: {why}" for why in card.refused))
    row("if approved", card.on_approve)
    row("if --similar", card.similar)
    row("if rejected", card.on_reject)
    parts: list[RenderableType] = [Text(title, style="bold yellow"), table]
    if diff:
        parts += [Text("the write would change:", style="bold"), Text(diff)]
    return Group(*parts)


def check_lines(plan: Plan) -> list[str]:
    return [f"{s.id}: {describe_check(c)}" for s in plan.steps for c in s.verify]
