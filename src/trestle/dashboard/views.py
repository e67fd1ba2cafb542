"""What each dashboard page shows, as plain data the templates lay out.

The facts come from the functions the CLI prints: :func:`trestle.operations.health.run_health`
(budget use, alerts, what waits for a human), :func:`trestle.core.report.build_report`,
:func:`trestle.lifecycle.approvals.inbox`, :func:`trestle.lifecycle.runs.dead_letters` and the
CLI's own wording (:func:`trestle.cli.render.log_detail`, :func:`trestle.cli.listing.shown`).
Nothing here imports the web framework; the store is passed in.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from trestle.core.blame import Blame
from trestle.core.card import HandoffCard
from trestle.core.card_groups import due
from trestle.core.durations import describe_duration
from trestle.core.errors import ConfigError, TrestleError
from trestle.core.events import (
    AlertRaised,
    CheckResult,
    StepAttemptEnded,
    StoredEvent,
)
from trestle.core.plan import critical_path
from trestle.core.state import RunState
from trestle.core.step_state import output_tail
from trestle.dashboard.conversation import agent_detail
from trestle.dashboard.finding import RunFilter, RunPage
from trestle.dashboard.layout import NODE_H, NODE_W, cached_layout
from trestle.lifecycle.approvals import editable_fields, inbox, trusted_state, write_diff
from trestle.lifecycle.driven import DRIVER_LOST, LEFT_RUNNING, driving, drivings
from trestle.lifecycle.runs import dead_letters
from trestle.operations.health import RunHealth, Waiting, run_health
from trestle.presentation.descriptions import check_text, log_detail
from trestle.presentation.diffs import unified
from trestle.presentation.wording import shown
from trestle.store.base import RunRow, Store, by_tree

LEASE_TTL = 15.0  # trestle.lifecycle.lease.DEFAULT_LEASE_TTL
TIMELINE_MOST = 300  # events shown in the timeline; the rest: `trestle log RUN`
EVENTS_MOST = 5000  # events a run's page reads, the newest; `trestle log RUN` has them all

# the timeline's filters: a name, and the event kinds it keeps (empty: all)
TIMELINE_FILTERS: dict[str, tuple[str, ...]] = {
    "all": (),
    "steps": (
        "step_started",
        "step_process_started",
        "step_attempt_ended",
        "step_probe_started",
        "step_probed",
        "step_retry_scheduled",
        "step_failed",
        "step_blocked",
        "step_escalated",
        "step_skipped",
        "step_reopened",
    ),
    "approvals": (
        "approval_requested",
        "approval_endorsed",
        "approval_decided",
        "approval_refused",
        "request_refused",
    ),
    "alerts": ("alert_raised",),
    "agent": (
        "round_opened",
        "model_called",
        "tool_call_started",
        "tool_call_ended",
        "phase_entered",
        "findings_recorded",
        "plan_proposed",
        "plan_extended",
        "reminder_injected",
        "context_compressed",
        "conversation_saved",
        "requirement_added",
        "plan_step_changed",
    ),
    "run": (
        "run_created",
        "run_resumed",
        "run_finished",
        "run_cancelled",
        "run_interrupted",
        "run_rewound",
        "sandbox_chosen",
        "budget_exhausted",
        "budget_raised",
        "model_rebound",
    ),
}


@dataclass(frozen=True)
class RunLine:
    """One row of the runs page."""

    row: RunRow
    status: str
    done: int
    total: int
    health: RunHealth | None  # None: the run could not be read
    approvals: int  # waiting, blocking approvals
    problem: str | None = None
    depth: int = 0  # below its root, when listed under it

    @property
    def alerts(self) -> int:
        return len(self.health.alerts) if self.health else 0

    @property
    def held(self) -> list[Waiting]:
        """What else holds the run for a human: a dead letter, an escalation, a child."""
        return [w for w in self.health.waiting if w.ref is None] if self.health else []


def run_lines(
    store: Store, *, visible: frozenset[str] | None, find: RunFilter | None = None
) -> RunPage[RunLine]:
    """The runs the session may see that ``find`` keeps, newest first, one page of them;
    a delegated child under its parent when both are listed."""
    find = find or RunFilter()
    now = time.time()
    seen = [row for row in store.runs() if visible is None or row.run_id in visible]
    rows = [row for row in seen if find.keeps(row)]
    if find.statuses:  # by the status as shown: only a running row's lease is read
        shown_as = drivings(store, rows)
        rows = [row for row in rows if find.keeps_status(shown_as[row.run_id].status)]
    lines: list[RunLine] = []
    for row, depth in by_tree(rows):
        counts: dict[str, int] = row.summarised().counts
        done = sum(n for k, n in counts.items() if k in ("succeeded", "skipped"))
        total = sum(counts.values())
        if not find.needs_state and not find.on_page(len(lines)):
            lines.append(RunLine(row, row.status, done, total, None, 0, depth=depth))
            continue  # off this page: not read
        lease = store.lease(row.run_id)
        # as `trestle runs` says it: one nothing drives any more is interrupted
        status = driving(row.status, row.summarised().interrupted, lease, now=now).status
        try:
            state = trusted_state(store, row.run_id)
        except TrestleError as exc:
            if not find.needs_state:
                lines.append(RunLine(row, status, done, total, None, 0, str(exc), depth))
            continue
        health = run_health(state, lease, now=now, lease_ttl=LEASE_TTL)
        if not find.keeps_run(state, health):
            continue
        waiting = sum(1 for w in health.waiting if w.ref is not None)
        lines.append(RunLine(row, status, done, total, health, waiting, depth=depth))
    return find.page_of(lines)


@dataclass(frozen=True)
class Node:
    id: str
    status: str
    x: float
    y: float
    critical: bool
    child: str | None = None  # a delegating step: its newest child run


@dataclass(frozen=True)
class Edge:
    path: str  # SVG path data, routed around the boxes between
    critical: bool
    label: str


@dataclass(frozen=True)
class Graph:
    """The plan as a layered dependency graph (:mod:`trestle.dashboard.layout`): a
    step below every step it needs, an arrow from each need, the critical path marked,
    a delegating step linked to its child run."""

    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int
    path: list[str]
    node_w: int = NODE_W
    node_h: int = NODE_H


def plan_graph(state: RunState, *, lost: bool = False) -> Graph:
    plan = state.plan
    path = critical_path(plan)
    on_path = set(path)
    links = set(itertools.pairwise(path))
    children: dict[str, str] = {}
    for child, sid in state.children.items():  # oldest first: the newest stays
        children[sid] = child
    laid = cached_layout(tuple((step.id, tuple(step.needs)) for step in plan.steps))
    nodes = [
        Node(sid, _step_status(state, sid, lost), p.x, p.y, sid in on_path, children.get(sid))
        for sid, p in laid.boxes.items()
    ]
    edges = [Edge(d, (need, sid) in links, f"{sid} needs {need}") for need, sid, d in laid.arrows]
    edges.sort(key=lambda e: e.critical)  # drawn last, over the arrows sharing its way
    return Graph(nodes, edges, laid.width, laid.height, path)


@dataclass(frozen=True)
class TimelineEntry:
    seq: int
    at: float
    kind: str
    step: str
    attempt: str
    detail: str
    evidence: tuple[int, ...] = ()


def timeline(
    events: list[StoredEvent], *, only: str = "all", step: str = ""
) -> list[TimelineEntry]:
    """The log's rows (the same detail ``trestle log`` prints), newest last, filtered
    by kind and step, at most :data:`TIMELINE_MOST` of them."""
    kinds = TIMELINE_FILTERS.get(only, ())
    kept = []
    for item in events:
        e = item.event
        if kinds and e.kind not in kinds:
            continue
        sid = str(getattr(e, "step", "") or "")
        if step and sid != step:
            continue
        kept.append((item, sid))
    rows = []
    for item, sid in kept[-TIMELINE_MOST:]:  # only the rows shown are worded
        e = item.event
        evidence = e.alert.evidence if isinstance(e, AlertRaised) else ()
        rows.append(
            TimelineEntry(
                item.seq,
                e.at,
                e.kind,
                sid,
                str(getattr(e, "attempt", "") or ""),
                log_detail(e) or agent_detail(e),
                evidence,
            )
        )
    return rows


@dataclass(frozen=True)
class AttemptView:
    attempt: int
    ok: bool
    status: str
    error: str | None
    checks: tuple[CheckResult, ...]
    output: str
    duration: float
    checkpoint_before: str | None
    checkpoint_after: str | None


@dataclass
class StepView:
    id: str
    status: str
    shown: str
    attempt: int
    note: str
    action: str
    needs: list[str]
    critical: bool
    attempts: list[AttemptView] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    output_tail: str = ""
    retryable: bool = False
    skippable: bool = False


def _step_status(state: RunState, sid: str, lost: bool) -> str:
    """The step's status as shown: one a driver that died left running runs no more."""
    status = state.steps[sid].status
    return "interrupted" if lost and status in LEFT_RUNNING else status


def step_views(state: RunState, events: list[StoredEvent], *, lost: bool = False) -> list[StepView]:
    """Each step with its state, its attempts (result, checks expected vs actual, the
    end of the output) and what a human may do with it. ``lost``: the run's driver died
    without a word (``kill -9``), so a step it left running is said so, as ``trestle
    show`` says it."""
    path = set(critical_path(state.plan))
    views = {}
    for spec in state.plan.steps:
        st = state.steps[spec.id]
        note = st.reason or st.error or ""
        if st.status == "retry_wait" and st.error:
            note = f"retrying after: {st.error}"
        status = _step_status(state, spec.id, lost)
        views[spec.id] = StepView(
            id=spec.id,
            status=status,
            shown=DRIVER_LOST if status != st.status else shown(st.status),
            attempt=st.attempt,
            note=note,
            action=state.step_spec(spec.id).describe_action(),
            needs=list(spec.needs),
            critical=spec.id in path,
            failed_checks=[check_text(c) for c in st.checks if not c.passed],
            output_tail=st.output_tail if st.error else "",
            retryable=st.status in ("failed", "escalated"),
            skippable=st.status in ("failed", "escalated", "blocked", "retry_wait"),
        )
    for item in events:
        e = item.event
        if isinstance(e, StepAttemptEnded) and e.step in views:
            views[e.step].attempts.append(
                AttemptView(
                    e.attempt,
                    e.ok,
                    e.action.status,
                    e.action.error,
                    e.checks,
                    output_tail(e.action.output, lines=40, chars=4000),
                    e.action.duration,
                    e.checkpoint_before,
                    e.checkpoint_after,
                )
            )
    return list(views.values())


@dataclass(frozen=True)
class Decision:
    """A human decision as the run recorded it, or one it refused and why."""

    at: float
    approval: int | None
    verdict: str  # approved | rejected | modified | withdrawn | refused
    by: str
    reason: str


def decisions(state: RunState) -> list[Decision]:
    """Every decided approval and every refused decision, oldest first (from the run's
    state, so a long run's first decisions are there too)."""
    found = [
        Decision(a.decided_at or a.requested_at, number, a.status, a.by or "", a.reason)
        for number, a in state.approvals.items()
        if a.status != "pending"
    ]
    found += [
        Decision(r.at, r.approval, "refused", "", r.reason)
        for r in state.refused
        if r.request == "decision"
    ]
    return sorted(found, key=lambda d: d.at)


@dataclass(frozen=True)
class Preview:
    """An edit of a card's action before it is approved: the YAML and how it differs."""

    edited: str
    diff: str


@dataclass(frozen=True)
class CardView:
    card: HandoffCard
    diff: str | None
    editable: str | None  # the editable fields as YAML, or None when it cannot be edited
    preview: Preview | None = None
    # a decision already queued on it, in words: the run records it when it next runs
    queued: str | None = None
    root: str | None = None  # a delegated child's tree root, to link to
    similar_more: bool = False  # whether approving similar would cover more than this
    waiting: str = ""  # how long it has waited: "3h 12m"
    due: str = ""  # its deadline in words, "overdue" once past (empty: none)


def preview_edit(store: Store, view: CardView, edited: str) -> CardView:
    """The card with the diff between its action and ``edited`` (YAML); ConfigError when
    the edit could not be approved (the check :func:`queue_decision` makes)."""
    from trestle.lifecycle.approvals import edit_from_yaml, edited_step

    fields = edit_from_yaml(edited)
    if view.card.step is None:
        raise ConfigError(f"approval {view.card.ref}: only a plan step's action can be edited")
    state = trusted_state(store, view.card.run_id)
    edited_step(state.step_spec(view.card.step), fields)
    diff = unified(view.editable or "", edited, fromfile="as asked", tofile="as edited")
    return replace(view, preview=Preview(edited, diff or "(no change)"))


def card_views(store: Store, *, visible: frozenset[str] | None) -> list[CardView]:
    """The inbox: every open approval the session may see, as the CLI's handoff card
    with the diff a write would make, and any decision on it already waiting for the
    run to record it."""
    import yaml

    from trestle.dashboard.decided import covers_more, queued_decisions

    found = []
    states: dict[str, RunState] = {}
    queued: dict[str, dict[int, str]] = {}
    now = time.time()
    for card in inbox(store):
        if visible is not None and card.run_id not in visible:
            continue
        if card.run_id not in states:
            states[card.run_id] = trusted_state(store, card.run_id)
            policy = states[card.run_id].operator_policy
            queued[card.run_id] = queued_decisions(store, card.run_id, policy=policy)
        state = states[card.run_id]
        try:
            fields = editable_fields(card) if card.subject == "action" else None
        except ConfigError:
            fields = None
        text = yaml.safe_dump(fields, sort_keys=False, allow_unicode=True) if fields else None
        found.append(
            CardView(
                card,
                write_diff(card, Path(state.workspace)),
                text,
                queued=queued[card.run_id].get(card.approval),
                root=state.parent.root if state.parent is not None else None,
                similar_more=covers_more(card),
                waiting=describe_duration(now - card.requested_at),
                due=due(card, now),
            )
        )
    return found


def health_lines(store: Store, *, visible: frozenset[str] | None) -> list[RunHealth]:
    """``trestle health``: runs not finished, with driver, heartbeat, stalled steps."""
    from trestle.operations.health import health

    return [
        r
        for r in health(store, now=time.time(), lease_ttl=LEASE_TTL)
        if visible is None or r.run_id in visible
    ]


def dead_letter_views(store: Store, *, visible: frozenset[str] | None) -> list[dict[str, object]]:
    """The dead-letter queue: each entry with the end of its output and failed checks."""
    found: list[dict[str, object]] = []
    for entry in dead_letters(store):
        if visible is not None and entry.run_id not in visible:
            continue
        last = next(
            (e.event for e in reversed(entry.history) if isinstance(e.event, StepAttemptEnded)),
            None,
        )
        found.append(
            {
                "entry": entry,
                "status": shown(entry.status),
                "checks": [check_text(c) for c in last.checks if not c.passed] if last else [],
                "tail": output_tail(last.action.output) if last else "",
            }
        )
    return found


@dataclass(frozen=True)
class CheckpointView:
    step: str
    attempt: int
    when: str
    commit: str
    taken_at: float


def checkpoint_views(store: Store, state: RunState) -> list[CheckpointView]:
    """The run's workspace checkpoints (``trestle checkpoints``), oldest first; none when
    the store keeps none."""
    from trestle.lifecycle.checkpoints import checkpoints, shadow_repo
    from trestle.workspace.shadow import shadow_dir_for

    shadow = shadow_dir_for(store, Path(state.workspace))
    if shadow is None or not shadow.exists():
        return []
    try:
        found = checkpoints(shadow_repo(state, shadow, store), state, store)
    except (TrestleError, OSError):
        return []
    return [CheckpointView(c.step, c.attempt, c.when, c.commit, c.taken_at) for c in found]


BLAME_SHOWN = 3  # candidates the run page shows; `trestle blame RUN` has them all
BLAME_EVENTS_MOST = 50_000  # past this a run's page leaves the tracing to the CLI


def blame_view(store: Store, state: RunState) -> Blame | None:
    """For a run with a failed step, the steps that may first have produced the wrong
    output behind it (``trestle blame``), the first :data:`BLAME_SHOWN` of them; None
    when nothing failed or the run is too long to read whole here."""
    from trestle.core.blame import blame

    if state.seq > BLAME_EVENTS_MOST or not any(
        st.status == "failed" for st in state.steps.values()
    ):
        return None
    try:
        found = blame(store.events(state.run_id))
    except TrestleError:
        return None
    return found.model_copy(update={"candidates": found.candidates[:BLAME_SHOWN]})


def step_change(store: Store, state: RunState, step: str) -> tuple[str, str]:
    """What the step changed in the workspace (``trestle diff RUN STEP``): a sentence
    saying what the diff is of, and the diff; ConfigError when there is none."""
    from trestle.lifecycle.checkpoints import shadow_repo
    from trestle.lifecycle.step_changes import step_diff
    from trestle.workspace.shadow import shadow_dir_for

    shadow = shadow_dir_for(store, Path(state.workspace))
    if shadow is None or not shadow.exists():
        raise ConfigError("this store has no workspace checkpoints yet")
    done = step_diff(shadow_repo(state, shadow, store), state, store, step)
    said = f"attempt {done.attempt} of {step!r}, between the checkpoints before and after it"
    if done.shared:
        said += "; changed while other steps ran too, so left out: " + ", ".join(
            f"{path} ({', '.join(steps)})" for path, steps in done.shared.items()
        )
    if done.too_large:
        said += "; " + done.too_large_note()
    return said, done.text or "no changes"


@dataclass
class ToolUse:
    tool: str
    arguments: str
    ok: bool | None = None  # None: no result recorded yet
    content: str = ""
    error: str | None = None


@dataclass
class Turn:
    """One model call of an agent step and the tool calls it asked for."""

    seq: int
    step: str
    round: int
    turn: int
    text: str
    tools: list[ToolUse] = field(default_factory=list)


@dataclass(frozen=True)
class Phase:
    seq: int
    phase: str
    step: str | None
    reason: str


TURNS_MOST = 40  # the newest turns shown; all of them: `trestle log RUN --json`


def agent_view(events: list[StoredEvent]) -> tuple[list[Phase], list[Turn]]:
    """An agent run's phases and its conversation turns with their tool calls (the
    newest :data:`TURNS_MOST`); both empty for a plan without agent steps."""
    from trestle.core.events import ModelCalled, PhaseEntered, ToolCallEnded, ToolCallStarted

    phases: list[Phase] = []
    turns: dict[tuple[str, int, int], Turn] = {}
    calls: dict[tuple[str, str], ToolUse] = {}
    for item in events:
        e = item.event
        if isinstance(e, PhaseEntered):
            phases.append(Phase(item.seq, e.phase, e.step, e.reason))
        elif isinstance(e, ModelCalled):
            text = e.response.text
            turns[(e.step, e.round, e.turn)] = Turn(
                item.seq, e.step, e.round, e.turn, text if len(text) < 4000 else text[:4000] + "…"
            )
        elif isinstance(e, ToolCallStarted):
            use = ToolUse(
                e.tool, e.arguments if len(e.arguments) < 2000 else e.arguments[:2000] + "…"
            )
            calls[(e.step, e.call_id)] = use
            turn = turns.get((e.step, e.round, e.turn))
            if turn is not None:
                turn.tools.append(use)
        elif isinstance(e, ToolCallEnded):
            use = calls.get((e.step, e.call_id)) or ToolUse(e.tool, "")
            use.ok, use.error = e.ok, e.error
            use.content = output_tail(e.content, lines=20, chars=2000)
    return phases, list(turns.values())[-TURNS_MOST:]
