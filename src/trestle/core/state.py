"""Run state as a fold over events: ``state = fold(events)``.

``RunState.apply`` is the only way state changes. It is deterministic and does no IO;
it updates in place so that folding a long run stays linear (a new copy per event
would make it quadratic). Snapshots are this model serialised, so resume reads the
latest snapshot plus the events after it, never the whole history.

The records it holds of each step, approval, alert and refused request are in
:mod:`trestle.core.step_state`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr

from trestle.core.budget import Dimension, Tally
from trestle.core.events import (
    AlertRaised,
    AloneAwaited,
    AloneGranted,
    AloneReleased,
    AnyEvent,
    ApprovalDecided,
    ApprovalEndorsed,
    ApprovalRefused,
    ApprovalRequested,
    BoardWritten,
    BudgetExhausted,
    BudgetRaised,
    CallAloneAsked,
    ChildRunEnded,
    ChildRunStarted,
    ContextCompressed,
    ConversationSaved,
    EngineBinding,
    FindingsRecorded,
    Gate,
    MessagesDelivered,
    MessageSent,
    ModelCalled,
    ModelCallHeld,
    ModelCallReserved,
    ModelRebound,
    PhaseEntered,
    PlanEdit,
    PlanExtended,
    PlanProposed,
    PlanStepChanged,
    ReminderInjected,
    RequestRefused,
    RequirementAdded,
    RoundOpened,
    RunCancelled,
    RunCreated,
    RunFinished,
    RunInterrupted,
    RunResumed,
    RunRewound,
    RunStatus,
    SandboxChosen,
    ShareAwaited,
    StepAttemptEnded,
    StepAttemptLost,
    StepBlocked,
    StepEscalated,
    StepFailed,
    StepProbed,
    StepProbeStarted,
    StepProcessStarted,
    StepReopened,
    StepRetryScheduled,
    StepSkipped,
    StepStarted,
    ToolCallEnded,
    ToolCallStarted,
    TreeLink,
    child_run_id,
)
from trestle.core.plan import Plan, Step, dependents, remaining_path
from trestle.core.policy import Policy
from trestle.core.records.agent import AgentSettings, Findings
from trestle.core.records.monitors import FLAGGING, MonitorAction, MonitorSettings
from trestle.core.records.policy_source import PolicySource
from trestle.core.safetext import model_json
from trestle.core.step_state import (
    IN_FLIGHT,
    TERMINAL,
    Alone,
    ApprovalState,
    BudgetStop,
    RaisedAlert,
    RefusedRequest,
    StepProcess,
    StepState,
    StepStatus,
    attempt_error,
    output_tail,
    transcript_key,
)
from trestle.core.usage import UsageTally


def runs_alone(step: Step, gate: Gate | None) -> bool:
    """Whether an attempt runs with nothing else of its run beside it (no attempt, no
    probe): a command a human approved. What it runs is bound to the approval by the
    digests of the files it names, checked just before it starts, and the ones it runs
    as code are copied where no step reaches; but a file of code the reader of commands
    does not see as code is only checked, and a step running beside it in the same
    workspace could change it between that check and the command's read."""
    return step.run is not None and gate is not None and gate.approval is not None


class RunState(BaseModel):
    run_id: str
    plan: Plan
    workspace: str
    plan_path: str | None = None
    created_at: float
    updated_at: float
    seq: int = 0  # seq of the last event applied
    steps: dict[str, StepState]
    finished: RunStatus | None = None
    resumes: int = 0
    interrupted: str | None = None  # the last driver was stopped by this (a signal)
    sandbox: SandboxChosen | None = None  # how the last drive confined its commands
    operator_policy: Policy | None = None
    policy_source: PolicySource | None = None  # where operator_policy came from
    python_sources: dict[str, str] | None = None  # the python: code pinned at creation
    started_by: str | None = None  # the starter's public key, when approvers are named
    approvals: dict[int, ApprovalState] = {}
    similar_approved: dict[str, int] = {}  # similar-key -> the approval that covers it
    overrides: dict[str, Step] = {}  # steps as a human modified them before approving
    tally: Tally = Field(default_factory=Tally)
    # what the model calls used, per step and model, budget or none; no default, so a
    # snapshot from before it was kept is not read (the events are folded instead)
    usage: UsageTally
    stopped: str | None = None  # who stopped the run and why: "stopped by ..."
    budget_stop: BudgetStop | None = None  # set while a hard budget limit is the reason
    cancelled: str | None = None  # "cancelled by NAME: REASON" (trestle cancel)
    active_seconds: float = 0.0  # time the run was driven, up to ``active_since``
    active_since: float | None = None
    # the agent's part: steps its plans added, where each conversation's events are
    # (seqs, by "step#round"), the findings, the phase, what the user added mid-run
    agent: AgentSettings | None = None
    extended: bool = False  # its plan grew since the first event (see snapshot_json)
    transcripts: dict[str, list[int]] = {}
    # per transcript, the seq of its latest conversation_saved: where a resume starts
    conversations: dict[str, int] = {}
    findings: Findings | None = None
    phase: str | None = None
    requirements: list[str] = []
    refused: list[RefusedRequest] = []  # human requests the run did not take, and why
    # what the monitors saw (see trestle.monitors) and how they are set to act
    monitors: MonitorSettings | None = None
    alerts: list[RaisedAlert] = []
    # tool calls drawn for review after the fact whose review is not yet asked for:
    # the decider asks (an approval_requested of subject "audit"), as for a step's
    tool_audits: list[ToolCallStarted] = []
    # delegation: where this run sits in its tree, and the children it created (by id,
    # each with the step that delegated to it)
    parent: TreeLink | None = None
    children: dict[str, str] = {}
    engine: EngineBinding | None = None  # a run on Temporal: its workflow's address
    # its part in its group (trestle.coordination.groups): the messages put into its conversations,
    # its board writes and the conflicts among them, the messages it sent
    delivered: list[str] = []
    board_writes: int = 0
    board_conflicts: int = 0
    messages_sent: int = 0

    # Indexes derived from ``steps`` so that deciding looks only at the frontier, not
    # at every step: a run of n steps then costs O(n), not O(n^2). Never persisted;
    # rebuilt by reindex() after loading a snapshot. Defaults, not factories: pydantic
    # copies an empty one for each state, and asks a factory for its signature the first
    # time a process builds a state (inspect's first use, 0.8 ms of a resume's CPU).
    _order: dict[str, int] = PrivateAttr(default={})
    # by_priority()'s sort key of each step: its remaining path, longest first, then plan order
    _priority: dict[str, tuple[float, int]] = PrivateAttr(default={})
    _dependents: dict[str, list[str]] = PrivateAttr(default={})
    _unresolved: dict[str, int] = PrivateAttr(default={})
    _frontier: set[str] = PrivateAttr(default=set())
    _in_flight: int = PrivateAttr(default=0)
    _counts: Counter[str] = PrivateAttr(default=Counter())
    # the steps whose StepState.alone is set: empty but while an approved command waits
    # to run alone or runs so, so a pass looks once (see alone_marks)
    _alone: dict[str, Alone] = PrivateAttr(default={})

    @classmethod
    def from_created(cls, event: RunCreated) -> RunState:
        state = cls(
            run_id=event.run_id,
            plan=event.plan,
            workspace=event.workspace,
            plan_path=event.plan_path,
            created_at=event.at,
            updated_at=event.at,
            seq=1,
            steps={s.id: StepState() for s in event.plan.steps},
            operator_policy=event.operator_policy,
            policy_source=event.policy_source,
            python_sources=event.python_sources,
            started_by=event.started_by,
            agent=event.agent,
            monitors=event.monitors,
            active_since=event.at,
            parent=event.parent,
            engine=event.engine,
            usage=UsageTally(),
        )
        state.reindex()
        return state

    @classmethod
    def from_snapshot(cls, data: str | bytes, plan: Plan | None = None) -> RunState:
        """Restore a snapshot; ``plan`` is required for one made by snapshot_json()."""
        fields = json.loads(data)
        if "plan" not in fields:
            if plan is None:
                raise ValueError("this snapshot has no plan: pass the run's first plan")
            fields["plan"] = plan
        state = cls.model_validate(fields)
        state.reindex()
        return state

    def __repr__(self) -> str:
        # short: asyncio.run formats the repr of the task it ran, result and all, when
        # it restores the SIGINT handler, and a long run's whole state took tens of
        # milliseconds there (as it would in any log line or traceback that shows one)
        return (
            f"RunState(run_id={self.run_id!r}, seq={self.seq}, steps={len(self.steps)}, "
            f"finished={self.finished!r})"
        )

    def snapshot_json(self) -> str:
        """The state without its plan, which the run's first event already holds: a
        snapshot then costs the size of the run's progress, not of its plan."""
        if self.extended:  # the plan grew: the first event no longer has all of it
            return model_json(self)
        return model_json(self, exclude={"plan"})

    def reindex(self) -> None:
        self._order = {s.id: i for i, s in enumerate(self.plan.steps)}
        remaining = remaining_path(self.plan)
        self._priority = {sid: (-remaining[sid], i) for sid, i in self._order.items()}
        self._dependents = dependents(self.plan)
        self._unresolved = {
            s.id: sum(1 for n in s.needs if self.steps[n].status not in TERMINAL)
            for s in self.plan.steps
        }
        self._in_flight = sum(1 for st in self.steps.values() if st.status in IN_FLIGHT)
        self._counts = Counter(st.status for st in self.steps.values())
        marked = sorted((st.alone_since, sid) for sid, st in self.steps.items() if st.alone)
        self._alone = {sid: alone for _, sid in marked if (alone := self.steps[sid].alone)}
        self._frontier = {sid for sid in self.steps if self._wants_decision(sid)}

    # --- the fold -----------------------------------------------------------------

    def ignore(self, seq: int) -> None:
        """Pass over the event at ``seq`` without applying it: the shell found it forged
        (see :func:`trestle.lifecycle.runs.load_state`)."""
        self.seq = seq

    def apply(self, event: AnyEvent, seq: int | None = None) -> None:
        """Advance the state by one event (``seq`` defaults to the next number)."""
        self.seq = seq if seq is not None else self.seq + 1
        last_at, self.updated_at = self.updated_at, event.at
        match event:
            case RunCreated():
                raise ValueError("run_created can only begin a run")
            case RunResumed():
                self.resumes += 1
                self.interrupted = None
                # time between the last event and this resume was not spent driving it
                self._stop_clock(last_at)
                self.active_since = event.at
                for sid, st in self.steps.items():
                    if st.status == "running":
                        self._lose(st)
                        self._set(sid, "unknown")
                    elif st.status == "probing":
                        self._probe_again(sid)
                    elif st.status == "deferred" and st.waiting_child is not None:
                        # a human may have decided in the child since: look again
                        st.waiting_child, st.probed = None, True
                        self._set(sid, "retry_wait")
                        self.finished = None
            case StepAttemptLost(step=sid, attempt=attempt):
                st = self.steps[sid]
                if st.attempt == attempt and st.status == "running":
                    self._lose(st)
                    st.ran_on = event.ran_on
                    self._set(sid, "unknown")
                elif st.status == "probing":
                    self._probe_again(sid)
            case SandboxChosen():
                self.sandbox = event
            case RunInterrupted(by=by, stopped=stopped):
                self.interrupted = by
                self._stop_clock(event.at)
                for sid in stopped:
                    self._stopped(sid, by)
                for sid, st in self.steps.items():
                    if st.status == "probing":
                        self._probe_again(sid)
            case StepProcessStarted(step=sid, attempt=attempt):
                st = self.steps[sid]
                if st.attempt == attempt and st.status == "running":
                    st.process = StepProcess(
                        pid=event.pid, pgid=event.pgid, start_time=event.start_time
                    )
            case StepStarted(step=sid, attempt=attempt):
                st = self.steps[sid]
                st.attempt, st.probed = attempt, False
                st.started_at, st.ended_at, st.not_before = event.at, None, None
                st.process, st.interrupted, st.leftovers, st.waited = None, None, None, 0.0
                st.ran_on = event.ran_on  # a local driver's; a Temporal loss says its own
                self.tally.add(self.tally.spent, "steps", 1)
                st.reserved_cost = self.step_spec(sid).cost or 0.0
                self.tally.add(self.tally.reserved, "cost", st.reserved_cost)
                st.reserved_carve = self.carve_needed(sid)
                for dim, amount in st.reserved_carve.items():
                    self.tally.add(self.tally.reserved, dim, amount)
                st.wants, st.waiting_child = {}, None
                st.share_awaited = False
                self._set(sid, "running")
                if runs_alone(self.step_spec(sid), event.gate):
                    self._mark_alone(sid, "running")
            case StepAttemptEnded(step=sid, ok=ok, action=action, checks=checks):
                st = self.steps[sid]
                st.checks, st.ended_at = list(checks), event.at
                st.output_tail, st.output_attempt = output_tail(action.output), event.attempt
                self._release(st)
                if event.approval_stale is not None:
                    self._approval_stale(sid, event.approval_stale, action.error)
                elif action.status == "deferred":
                    st.ask, st.reason = event.ask, action.error
                    # nothing failed: the step picks up where it paused, without a probe
                    st.probed, st.not_before = True, None
                    waits = event.ask is not None or st.waiting_child is not None
                    self._set(sid, "deferred" if waits else "retry_wait")
                elif ok:
                    st.error = None
                    st.succeeded_via = "probe" if action.status == "skipped" else "action"
                    st.reason = "verified" if checks else "action succeeded"
                    self._set(sid, "succeeded")
                else:
                    st.failed_attempts += 1
                    st.stalled = action.status == "stalled"
                    st.error = attempt_error(action.error, action.status, checks)
                    st.round, st.round_failure = st.round + 1, st.error
                    self._set(sid, "attempt_failed")
            case StepProbeStarted(step=sid, reason=why):
                self.steps[sid].probe_reason = why
                self._set(sid, "probing")
            case StepProbed(step=sid, passed=passed, checks=checks, reason=why):
                st = self.steps[sid]
                st.checks, st.probe_reason, st.probed = list(checks), None, True
                if event.leftovers is not None:
                    st.leftovers, st.waited = event.leftovers, event.waited
                if passed:
                    st.succeeded_via, st.ended_at = "probe", event.at
                    if st.interrupted is not None:
                        st.reason = (
                            f"its attempt was stopped by {st.interrupted}; "
                            "verify checks then passed: the work was done"
                        )
                    elif why == "before_retry":
                        st.reason = "verified after a failed attempt: the work was already done"
                    else:
                        st.reason = "outcome was unknown after a crash; verify checks passed"
                    self._set(sid, "succeeded")
                else:
                    self._set(sid, "unknown" if why == "unknown_outcome" else "retry_wait")
            case StepRetryScheduled(step=sid, not_before=when):
                st = self.steps[sid]
                st.not_before, st.probed = when, False
                self._set(sid, "retry_wait")
            case StepFailed(step=sid, reason=why, dead_lettered=dlq):
                st = self.steps[sid]
                st.reason, st.dead_lettered, st.ended_at = why, dlq, event.at
                self._set(sid, "failed")
            case StepBlocked(step=sid, by=by, reason=why):
                st = self.steps[sid]
                st.blocked_by, st.reason = by, why
                self._set(sid, "blocked")
            case StepEscalated(step=sid, reason=why):
                st = self.steps[sid]
                st.reason, st.dead_lettered = why, True
                self._set(sid, "escalated")
            case StepSkipped(step=sid, reason=why):
                st = self.steps[sid]
                # a skipped blocked step no longer carries its root's failure downstream
                root = st.blocked_by if st.status == "blocked" else sid
                st.reason, st.dead_lettered = why, False
                self._set(sid, "skipped")
                self._unblock(sid, root)  # a skipped need is met: what it blocked may run
                self.finished = None
            case StepReopened(step=sid):
                self._reopen(sid)
                # a step downstream may wait for its needs again: its wait to run alone
                # is judged anew (one elsewhere goes on holding the run)
                awaited = [
                    s
                    for s, mark in self._alone.items()
                    if mark == "awaited" and self.steps[s].status != "running"
                ]
                if awaited:
                    downstream = self._downstream(sid)
                    for waiting in awaited:
                        if waiting in downstream:
                            self._mark_alone(waiting, None)
            case ApprovalRequested():
                self._request_approval(event)
            case ApprovalDecided():
                self._decide_approval(event)
            case ApprovalEndorsed(approval=number, signer=signer, by=by):
                endorsed = self.approvals[number]
                endorsed.endorsed_by = (*endorsed.endorsed_by, signer)
                endorsed.endorsers = (*endorsed.endorsers, by)
            case ApprovalRefused(approval=number, reason=why):
                # it changes nothing but the record of what became of the request
                self.refused.append(
                    RefusedRequest(
                        request_id=event.request_id,
                        request="decision",
                        approval=number,
                        step=self.approvals[number].step if number in self.approvals else None,
                        reason=why,
                        at=event.at,
                        forged_seq=event.forged_seq,
                    )
                )
            case RequestRefused(request=kind, step=sid, text=text, reason=why):
                self.refused.append(
                    RefusedRequest(
                        request_id=event.request_id,
                        request=kind,
                        step=sid,
                        text=text,
                        reason=why,
                        at=event.at,
                    )
                )
            case RunCancelled(by=by, reason=why, stopped=stopped):
                self.cancelled = f"cancelled by {by}: {why}"
                self._stop_clock(event.at)
                for sid in stopped:
                    self._stopped(sid, "trestle cancel")
                for sid, st in self.steps.items():
                    if st.status == "probing":
                        self._probe_again(sid)
                self.finished = "cancelled"
            case BudgetExhausted(reason=why):
                self.stopped = f"stopped by its budget: {why}"
                self.budget_stop = BudgetStop(
                    dimension=event.dimension, seq=self.seq, used=event.used, limit=event.limit
                )
            case BudgetRaised(add=add):
                for dim, amount in add.items():
                    self.tally.add(self.tally.raised, dim, amount)
                stop = self.budget_stop
                if stop is not None and stop.dimension in add:  # the run can move again
                    self.stopped, self.budget_stop, self.finished = None, None, None
            case ModelRebound(model=model, base_url=url, api_key_env=env):
                if self.agent is not None:
                    binding = {"model": model, "base_url": url, "api_key_env": env}
                    self.agent = self.agent.model_copy(update=binding)
            case RunRewound(reopened=sids):
                for sid in sids:
                    self._reopen(sid, rewound=True)
            case ModelCallReserved(step=sid):
                st = self.steps[sid]
                self._release_model_call(st)  # one call in flight per step
                st.model_reserved = {"tokens": float(event.tokens), "cost": event.cost}
                for dim, amount in st.model_reserved.items():
                    self.tally.add(self.tally.reserved, dim, amount)
            case ModelCallHeld(step=sid):
                st = self.steps[sid]
                self._release_model_call(st)  # a call held back is not in flight
                st.wants = {"tokens": float(event.tokens), "cost": event.cost}
            case ModelCalled(response=response):
                self._index(event.step, event.round)
                self._release_model_call(self.steps[event.step])
                usage = response.usage
                self.tally.add(self.tally.spent, "tokens", usage.total_tokens)
                self.tally.add(self.tally.spent, "cost", usage.cost or 0.0)
                self.usage.count(event.step, event.model or response.model, usage)
            case ToolCallStarted(gate=Gate() as gate):
                self._index(event.step, event.round)
                self.steps[event.step].record_call(
                    event.round, event.turn, event.call_id, event.tool, gate
                )
                if gate.decision.audit == "after" and event.facts is not None:
                    self.tool_audits.append(event)
            case ToolCallEnded(step=sid, round=round) if _alone_call(self.steps.get(sid)):
                self._index(sid, round)
                if self.steps[sid].alone_call == f"{round}.{event.turn}.{event.call_id}":
                    self._mark_alone(sid, None)  # the call that ran alone ended
            case (
                RoundOpened()
                | ToolCallStarted()
                | ToolCallEnded()
                | ReminderInjected()
                | ContextCompressed()
            ):
                self._index(event.step, event.round)
            case ConversationSaved(step=sid, round=round):
                self._index(sid, round)
                self.conversations[transcript_key(sid, round)] = self.seq
            case BoardWritten(accepted=accepted):
                self.board_writes += 1
                self.board_conflicts += not accepted
            case MessageSent():
                self.messages_sent += 1
            case MessagesDelivered(message_ids=ids):
                self.delivered += [i for i in ids if i not in self.delivered]
            case PhaseEntered(phase=phase):
                self.phase = phase
            case FindingsRecorded(findings=findings):
                self.findings = findings
            case PlanProposed():
                pass  # recorded for the log and the report
            case PlanExtended():
                self._extend(event)
            case RequirementAdded(text=text):
                self.requirements.append(text)
                self.finished = None
            case PlanStepChanged():
                self._change_step(event)
            case AlertRaised(alert=alert, action=action):
                self.alerts.append(RaisedAlert(alert=alert, action=action, seq=self.seq))
                if action == "stop":
                    self.stopped = f"stopped by the {alert.monitor} monitor: {alert.message}"
                    self.budget_stop = None  # raising the budget no longer reopens it
            case ChildRunStarted(step=sid, child=child):
                st = self.steps[sid]
                if st.child != child:
                    st.child, st.child_counted = child, {}
                self.children[child] = sid
            case ChildRunEnded(step=sid, child=child, spent=spent):
                st = self.steps[sid]
                counted = st.child_counted if st.child == child else {}
                for dim, amount in spent.items():  # the child's total: count what is new
                    self.tally.add(self.tally.spent, dim, amount - counted.get(dim, 0.0))
                st.child, st.child_counted = child, dict(spent)
                st.waiting_child = child if event.status == "needs_human" else None
            case ShareAwaited(step=sid):
                self.steps[sid].share_awaited = True
            case AloneAwaited(step=sid):
                self._mark_alone(sid, "awaited")
            case CallAloneAsked(step=sid, call=call) if sid in self.steps:
                if self.steps[sid].status == "running":  # not an attempt that ended
                    self._mark_alone(sid, "asked")
                    self.steps[sid].alone_call = call
            case AloneGranted(step=sid) if _alone_call(self.steps.get(sid)) == event.call:
                self._mark_alone(sid, "running")
            case AloneReleased(step=sid) if _alone_call(self.steps.get(sid)) == event.call:
                self._mark_alone(sid, None)  # a delegating step's child ended its command
            case RunFinished(status=status):
                self.finished = status
                self._stop_clock(event.at)

    def _probe_again(self, sid: str) -> None:
        """A probe only reads, so an interrupted one is simply run again."""
        st = self.steps[sid]
        unknown = st.probe_reason == "unknown_outcome"
        st.probe_reason, st.probed = None, False
        self._set(sid, "unknown" if unknown else "retry_wait")

    def _stopped(self, sid: str, by: str) -> None:
        """The driver killed this attempt's processes and saw them gone: the attempt
        did not finish, and no failure is counted. It goes back to be probed (if it
        has checks) and run again. A step with no checks that is not safe to re-run
        may have done its work before it was stopped, and nothing can tell: its
        outcome is unknown, and a human decides."""
        st, step = self.steps[sid], self.step_spec(sid)
        if st.status != "running":
            return
        self._release(st)
        st.interrupted, st.probed, st.not_before = by, False, None
        st.reason = f"attempt {st.attempt} was stopped by {by} mid-step"
        blind = not step.verify and not step.rerunnable
        self._set(sid, "unknown" if blind else "retry_wait")

    def _index(self, sid: str, round: int) -> None:
        self.transcripts.setdefault(transcript_key(sid, round), []).append(self.seq)

    def transcript(self, sid: str, round: int) -> list[int]:
        """The seqs of one agent conversation's recorded events, in order."""
        return self.transcripts.get(transcript_key(sid, round), [])

    def _extend(self, event: PlanExtended) -> None:
        """Add the new steps, and the new needs of steps that have not started. A step
        or a need the plan already has is not added again: a plan step a crash cut
        short after it recorded its plan could record the same extension twice."""

        def needing(step: Step) -> Step:
            more = [n for n in event.needs_added.get(step.id, ()) if n not in step.needs]
            return step.model_copy(update={"needs": (*step.needs, *more)}) if more else step

        steps = [needing(s) for s in self.plan.steps]
        new = [step for step in event.steps if step.id not in self.steps]
        self.plan = self.plan.model_copy(update={"steps": (*steps, *new)})
        self.extended = True
        for step in new:
            self.steps[step.id] = StepState()
        self.finished = None
        self.reindex()

    def _edit_plan(self, edit: PlanEdit) -> None:
        """A reviewed plan as a human edited it: its proposed steps (none has started)
        leave the run, the edited plan's join it, and the acceptance step that waited
        for the first waits for the second."""
        dropped = set(edit.dropped)
        added = tuple(s.id for s in edit.added)

        def kept(step: Step) -> Step:
            needs = tuple(n for n in step.needs if n not in dropped)
            if step.id == edit.acceptance:
                needs += tuple(n for n in added if n not in needs)
            return step.model_copy(update={"needs": needs}) if needs != step.needs else step

        steps = [kept(s) for s in self.plan.steps if s.id not in dropped]
        for sid in dropped:
            self.steps.pop(sid, None)
        new = [s for s in edit.added if s.id not in self.steps]
        self.plan = self.plan.model_copy(update={"steps": (*steps, *new)})
        for step in new:
            self.steps[step.id] = StepState()
        self.reindex()

    def _change_step(self, event: PlanStepChanged) -> None:
        """A step that has not started, dropped (it ends skipped, so what waits for it
        goes on) or given a new objective (the plan in the state changes with it)."""
        sid = event.step
        if event.change == "drop":
            st = self.steps[sid]
            why = f": {event.text}" if event.text else ""
            st.reason, st.dead_lettered = f"dropped by {event.by}{why}", False
            self._set(sid, "skipped")
            self.finished = None
            return
        step = self.plan.steps[self._order[sid]]
        update: dict[str, object] = {"description": event.text}
        if step.agent is not None:
            update["agent"] = step.agent.model_copy(update={"objective": event.text})
        if step.delegate is not None:
            update["delegate"] = step.delegate.model_copy(update={"goal": event.text})
        changed = step.model_copy(update=update)
        steps = list(self.plan.steps)
        steps[self._order[sid]] = changed
        self.plan = self.plan.model_copy(update={"steps": tuple(steps)})
        self.extended = True  # the first event no longer holds the plan as it is

    def _stop_clock(self, at: float) -> None:
        if self.active_since is not None:
            self.active_seconds += max(0.0, at - self.active_since)
            self.active_since = None

    def _release(self, st: StepState) -> None:
        """The attempt's estimate stops being a reservation and becomes spending; a
        child's share is only released (its own spending is counted as it reports)."""
        self.tally.add(self.tally.reserved, "cost", -st.reserved_cost)
        self.tally.add(self.tally.spent, "cost", st.reserved_cost)
        for dim, amount in st.reserved_carve.items():
            self.tally.add(self.tally.reserved, dim, -amount)
        st.reserved_carve = {}
        st.reserved_cost = 0.0
        self._release_model_call(st)

    def _lose(self, st: StepState) -> None:
        """An attempt the driver lost while it ran may have spent its estimate, and a
        model call it had in flight (or whose answer it had not yet recorded) may have
        been answered and billed: both count as spent, at their worst case."""
        for dim, amount in st.model_reserved.items():
            self.tally.add(self.tally.spent, dim, amount)
        self._release(st)

    def _release_model_call(self, st: StepState) -> None:
        """A model call's worst case stops being held: it answered (and its usage is
        counted as spent) or its attempt ended without an answer (nothing recorded)."""
        for dim, amount in st.model_reserved.items():
            self.tally.add(self.tally.reserved, dim, -amount)
            if abs(self.tally.reserved.get(dim, 0.0)) < 1e-9:  # float dust, not money
                self.tally.reserved[dim] = 0.0
        st.model_reserved = {}

    def _request_approval(self, event: ApprovalRequested) -> None:
        if event.subject == "audit" and event.ask is not None:
            due = self.tool_audits
            asked = next(
                (
                    i
                    for i, call in enumerate(due)
                    if call.step == event.step
                    and call.gate is not None
                    and call.gate.action_hash == event.action_hash
                ),
                None,
            )
            if asked is not None:
                del due[asked]
        self.approvals[event.approval] = ApprovalState(
            subject=event.subject,
            step=event.step,
            blocking=event.blocking,
            action_hash=event.action_hash,
            decision=event.decision,
            similar_key=event.similar_key,
            breach=event.breach,
            ask=event.ask,
            alert=event.alert,
            files=event.files,
            requested_at=event.at,
        )
        if event.alert is not None:
            for raised in self.alerts:
                if raised.alert.key == event.alert.key and raised.approval is None:
                    raised.approval = event.approval
        if event.step is not None and event.blocking:
            self.steps[event.step].approval = event.approval
            self._set(event.step, "awaiting_approval")

    def _decide_approval(self, event: ApprovalDecided) -> None:
        a = self.approvals[event.approval]
        a.by, a.reason, a.decided_at = event.by, event.reason, event.at
        verdict = {"approve": "approved", "reject": "rejected", "modify": "modified"}
        a.status = verdict[event.verdict]  # type: ignore[assignment]
        self.finished = None  # the run can move again
        if a.subject == "budget" and a.breach is not None:
            if event.verdict == "reject":
                self.stopped = (
                    f"stopped by its budget: {a.breach.describe()}: top-up refused: {event.reason}"
                )
                self.budget_stop = None  # a human said no: a raise does not overrule it
            else:
                top_up = event.top_up if event.top_up is not None else a.breach.top_up
                self.tally.add(self.tally.granted, a.breach.dimension, top_up)
            return
        if a.subject == "alert" and a.alert is not None:
            if event.verdict == "reject":
                why = f": {event.reason}" if event.reason else ""
                self.stopped = f"stopped by {event.by} after the alert {a.alert.message!r}{why}"
                self.budget_stop = None
            return  # approved: the run goes on
        if a.step is None or not a.blocking:
            return  # an after-the-fact audit: the review is recorded, nothing waits on it
        sid, st = a.step, self.steps[a.step]
        if a.subject == "tool":
            # either way the step goes on: its replay reaches the call again, and the
            # gate then finds this decision (a rejection is read by the model; an edit
            # makes the edited call the one that runs)
            if event.verdict == "modify" and event.arguments is not None:
                a.edited_arguments, a.edited_hash = event.arguments, event.action_hash
            if event.similar and a.similar_key is not None and event.verdict != "reject":
                self.similar_approved[a.similar_key] = event.approval
            st.ask, st.probed, st.not_before = None, True, None
            self._set(sid, "retry_wait")
            return
        if event.verdict == "reject":
            st.reason = (
                f"rejected by {event.by}: {event.reason}"
                if event.reason
                else (f"rejected by {event.by}")
            )
            st.ended_at, st.dead_lettered = event.at, False
            self._set(sid, "failed")
            return
        if event.verdict == "modify" and event.edited is not None:
            self.overrides[sid] = event.edited
        if event.verdict == "modify" and event.plan_edit is not None:
            self._edit_plan(event.plan_edit)
        st.approved_hash = event.action_hash or a.action_hash
        if event.similar and a.similar_key is not None:
            self.similar_approved[a.similar_key] = event.approval
        self._set(sid, "pending" if st.attempt == 0 else "retry_wait")
        for number in event.covers:  # its group's other members, decided with it
            self._cover(number, event)

    def _cover(self, number: int, event: ApprovalDecided) -> None:
        """Approval ``number``, a member of the group ``event`` approved with
        ``--similar``: approved as it was asked, by the same decision."""
        a = self.approvals[number]
        if a.status != "pending" or a.step is None:
            return  # the driver checked it was pending; a fold takes what it recorded
        a.by, a.reason, a.decided_at = event.by, event.reason, event.at
        a.status = "approved"
        st = self.steps[a.step]
        st.approved_hash = a.action_hash
        self._set(a.step, "pending" if st.attempt == 0 else "retry_wait")

    def _approval_stale(self, sid: str, number: int, why: str | None) -> None:
        """The step's approval no longer matches what would run: nothing ran, nothing
        failed; the approval (and any ``--similar`` it granted) stops covering it, so
        the step is asked for again."""
        st = self.steps[sid]
        st.reason, st.approved_hash = why, None
        for key in [k for k, n in self.similar_approved.items() if n == number]:
            del self.similar_approved[key]
        st.probed, st.not_before = True, None
        self._set(sid, "retry_wait")

    def _reopen(self, sid: str, *, rewound: bool = False) -> None:
        st = self.steps[sid]
        # an escalated step's last outcome is unknown: look (probe) before re-running
        unknown = st.status == "escalated" and not rewound
        if st.attempt:  # an agent step starts a fresh conversation
            st.round, st.round_failure = st.round + 1, None
        st.failed_attempts, st.dead_lettered, st.probed = 0, False, False
        st.reason, st.error, st.probe_reason = None, None, None
        if rewound:  # its work was undone: it starts over, and asks again if it must
            st.succeeded_via, st.blocked_by, st.checks = None, None, []
            st.approved_hash, st.started_at, st.ended_at = None, None, None
            asked = self.approvals.get(st.approval) if st.approval is not None else None
            if asked is not None and asked.status == "pending":
                asked.status = "withdrawn"
        st.not_before = None
        self._set(sid, "retry_wait" if unknown else "pending")
        self._unblock(sid)  # steps this one blocked may run again once it succeeds
        self.finished = None

    def _downstream(self, sid: str) -> set[str]:
        """The steps that need ``sid``, directly or through others."""
        seen: set[str] = set()
        todo = list(self._dependents[sid])
        while todo:
            other = todo.pop()
            if other not in seen:
                seen.add(other)
                todo += self._dependents[other]
        return seen

    def _unblock(self, sid: str, root: str | None = None) -> None:
        """Steps downstream of ``sid`` blocked by ``root`` (default ``sid``) go back to
        pending; the decider re-judges their needs."""
        root = root or sid
        seen: set[str] = set()
        todo = list(self._dependents[sid])
        while todo:
            other_id = todo.pop()
            if other_id in seen:
                continue
            seen.add(other_id)
            other = self.steps[other_id]
            if other.status == "blocked" and other.blocked_by == root:
                other.blocked_by, other.reason = None, None
                # a step a human retried after a crash lost its last outcome is still
                # looked at (probed) before it re-runs, as it was before the block
                lost = other.started_at is not None and other.ended_at is None
                self._set(other_id, "retry_wait" if lost else "pending")
            todo += self._dependents[other_id]

    def _set(self, sid: str, status: StepStatus) -> None:
        """Change one step's status, keeping the indexes in step."""
        st = self.steps[sid]
        old = st.status
        st.status = status
        self._in_flight += (status in IN_FLIGHT) - (old in IN_FLIGHT)
        if st.alone is not None and status != old:
            self._mark_alone(sid, None)  # it started, ended or left its wait
        self._counts[old] -= 1
        self._counts[status] += 1
        was_resolved, is_resolved = old in TERMINAL, status in TERMINAL
        if was_resolved != is_resolved:
            for dep in self._dependents[sid]:
                self._unresolved[dep] += -1 if is_resolved else 1
        for touched in (sid, *self._dependents[sid]):
            if self._wants_decision(touched):
                self._frontier.add(touched)
            else:
                self._frontier.discard(touched)

    def _mark_alone(self, sid: str, alone: Alone | None) -> None:
        """Set the step's ``alone``, keeping :attr:`alone_marks` in step."""
        st = self.steps[sid]
        if alone is None:
            st.alone_call = None
            self._alone.pop(sid, None)
        elif st.alone is None:  # the order marks were set in: first asked, first granted
            st.alone_since = self.seq
        st.alone = alone
        if alone is not None:
            self._alone[sid] = alone

    def _wants_decision(self, sid: str) -> bool:
        status = self.steps[sid].status
        if status in ("attempt_failed", "unknown", "retry_wait", "deferred"):
            return True
        if status != "pending":
            return False
        if self._unresolved[sid] == 0:
            return True
        # its needs looked at only if one may block it: a join after n parallel steps
        # would be, as each of them starts and ends (n^2 lookups over a fan-out)
        if not self.may_block():
            return False
        needs = self.plan.steps[self._order[sid]].needs
        return any(self.blocking_root(n) for n in needs)

    # --- queries the decider and the report share ---------------------------------

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def parked(self) -> list[str]:
        """The running steps waiting at an approved call to run it alone, first asked
        first: they run nothing meanwhile (see :func:`trestle.core.decider.decide`)."""
        if not self._alone:
            return []
        return [
            sid
            for sid, mark in self._alone.items()
            if mark != "running" and self.steps[sid].status == "running"
        ]

    @property
    def alone_marks(self) -> dict[str, Alone]:
        """The approved commands that wait to run alone (``awaited``: nothing may start
        while anything runs) or run so (``running``: nothing may start), by step; empty
        almost always, so one look tells a pass it need not look further."""
        return self._alone

    def status_counts(self) -> dict[str, int]:
        """How many steps are in each status (statuses with none left out)."""
        return {status: n for status, n in sorted(self._counts.items()) if n}

    def position(self, sid: str) -> int:
        """The step's index in the plan: the order every listing and batch uses."""
        return self._order[sid]

    def frontier(self) -> list[str]:
        """Steps that want a decision now, in plan order."""
        return sorted(self._frontier, key=self._order.__getitem__)

    def by_priority(self) -> list[str]:
        """The frontier, the step with the longest remaining path of needs first
        (:func:`~trestle.core.plan.remaining_path`), then in plan order: under a
        parallelism cap the critical path starts first, and the same state always
        gives the same order."""
        # the keys made once a plan (reindex): a Python function called for each step
        # of the frontier took most of a pass over a wide plan waiting for its slots
        return sorted(self._frontier, key=self._priority.__getitem__)

    def step_spec(self, sid: str) -> Step:
        """The step as it will run: as planned, or as a human modified it."""
        if self.overrides and sid in self.overrides:
            return self.overrides[sid]
        return self.plan.steps[self._order[sid]]

    def edited_by(self, sid: str) -> str | None:
        """Who approved the step's action as they edited it, if it runs as edited
        (``step_spec`` is then the edited step, not the planned one)."""
        if sid not in self.overrides:
            return None
        number = self.steps[sid].approval
        a = self.approvals.get(number) if number is not None else None
        return a.by if a is not None and a.status == "modified" else None

    @property
    def held(self) -> bool:
        """Nothing new may start: a soft budget limit waits on a human's top-up, or a
        monitor's pause on a human's go-on."""
        if any(raised.holds_run for raised in self.alerts):
            return True
        return any(a.subject in ("budget", "alert") for a in self._pending_approvals())

    def open_alerts(self, sid: str) -> int:
        """How many alerts still speak against step ``sid``'s work: warnings and
        critical alerts about the run as a whole or about the step's current round
        (a new round starts afresh, its failed attempts counted on their own) that no
        human has answered by letting the run go on. Each lowers the confidence the
        policy judges the step's actions by (``alert_penalty``)."""
        st = self.steps.get(sid)
        count = 0
        for raised in self.alerts:
            alert = raised.alert
            if alert.severity not in FLAGGING:
                continue
            if alert.step is not None and alert.step != sid:
                continue
            if alert.step is not None and st is not None and alert.round not in (None, st.round):
                continue
            answered = self.approvals.get(raised.approval) if raised.approval is not None else None
            if answered is not None and answered.status == "approved":
                continue
            count += 1
        return count

    def alerts_for(self, sid: str, round: int, action: MonitorAction) -> list[RaisedAlert]:
        """The alerts about one agent conversation that call for ``action``."""
        return [
            r
            for r in self.alerts
            if r.action == action and r.alert.step == sid and r.alert.round == round
        ]

    def _pending_approvals(self) -> list[ApprovalState]:
        return [a for a in self.approvals.values() if a.status == "pending"]

    def waiting_on_human(self) -> bool:
        """Some approval that holds up the run is undecided (here, or in a child)."""
        return any(a.blocking for a in self._pending_approvals()) or bool(self.waiting_children())

    def waiting_children(self) -> dict[str, str]:
        """Delegating steps whose child waits for a human: step -> child run."""
        return {
            sid: st.waiting_child
            for sid, st in self.steps.items()
            if st.status == "deferred" and st.waiting_child is not None
        }

    def carve_needed(self, sid: str) -> dict[Dimension, float]:
        """What a delegating step's next attempt holds in reserve: its child's budget,
        less what the run has already counted of that child's spending (a resumed
        child goes on with what it has left)."""
        delegation = self.step_spec(sid).delegate
        if delegation is None:
            return {}
        st = self.steps[sid]
        same = st.child == child_run_id(self.run_id, sid, st.round)
        counted = st.child_counted if same else {}
        return {
            dim: max(0.0, hard - counted.get(dim, 0.0)) for dim, hard in delegation.carve().items()
        }

    def shares_held(self) -> dict[Dimension, float]:
        """The budget shares the running children hold in reserve, by dimension."""
        held: dict[Dimension, float] = {}
        for st in self.steps.values():
            for dim, amount in st.reserved_carve.items():
                self.tally.add(held, dim, amount)
        return held

    def next_approval(self) -> int:
        return len(self.approvals) + 1

    def elapsed(self, now: float) -> float:
        """Seconds the run has been driven, across every process that drove it."""
        running = now - self.active_since if self.active_since is not None else 0.0
        return self.active_seconds + max(0.0, running)

    def need_is_met(self, need: str) -> bool:
        """A need is met when it succeeded, a human skipped it, or it is optional and done."""
        st = self.steps[need]
        if st.status in ("succeeded", "skipped"):
            return True
        return self.step_spec(need).optional and st.status in ("failed", "blocked")

    def may_block(self) -> bool:
        """Whether a step is failed or blocked: the only ones :meth:`blocking_root`
        names, so with none, no need blocks anything for good."""
        counts = self._counts  # .get: a Counter's lookup of a missing key runs Python
        return bool(counts.get("failed") or counts.get("blocked"))

    def blocking_root(self, need: str) -> str | None:
        """The failed step that makes ``need`` unmeetable for good, or None."""
        st = self.steps[need]
        if st.status == "failed" and not self.step_spec(need).optional:
            return need
        if st.status == "blocked" and not self.step_spec(need).optional:
            return st.blocked_by
        return None


class _Index:
    """Reads one of :class:`RunState`'s indexes (its private attributes) straight from
    where pydantic keeps them. Pydantic's own lookup runs only after the ordinary one
    failed, and asks each private attribute whether it is a descriptor, which raises
    inside it: 1.5-2.6 us a read, against 0.1 us here, and a plan step reads them about
    35 times (``_set``, ``step_spec``, the frontier). Writes stay pydantic's."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, state: RunState | None, owner: type | None = None) -> Any:
        if state is None:
            return self
        try:
            return state.__pydantic_private__[self.name]  # type: ignore[index]
        except (AttributeError, KeyError, TypeError):  # not set up yet: pydantic answers
            raise AttributeError(f"'RunState' object has no attribute {self.name!r}") from None


# set on the class after pydantic made it: in its body they would be taken for defaults
for _name in RunState.__private_attributes__:
    setattr(RunState, _name, _Index(_name))


def fold(events: Iterable[AnyEvent]) -> RunState:
    """Build a run's state from its full event stream (first event: ``run_created``)."""
    it = iter(events)
    first = next(it)
    if not isinstance(first, RunCreated):
        raise ValueError(f"a run must begin with run_created, not {first.kind}")
    state = RunState.from_created(first)
    for event in it:
        state.apply(event)
    return state


def _alone_call(st: StepState | None) -> str | None:
    """The call a step's agent asked to run alone, if it is a step that asked one."""
    return st.alone_call if st is not None else None
