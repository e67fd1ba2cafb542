"""Events: the only record of what happened in a run.

Every event is frozen, carries a ``kind`` tag and a schema version ``v``, and is
(de)serialised as its own type (:func:`event_json`, :func:`decode_event`), which is how
:data:`EVENT_ADAPTER`, over the union, reads and writes it too. Run state is a fold over
these (see :mod:`trestle.core.state`); nothing else is persisted about a run.

Decisions are events too: when the decider chooses to start a step it emits
``StepStarted``, which the engine makes durable *before* it dispatches the action.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter, ValidationError

from trestle.core.budget import Breach, Dimension
from trestle.core.conversation import Message, ModelResponse
from trestle.core.plan import Plan, Step
from trestle.core.policy import ActionFacts, Policy, TierDecision
from trestle.core.record import Record
from trestle.core.records.agent import (
    AgentPlan,
    AgentSettings,
    CompressionRecord,
    Findings,
    Pins,
    ReminderRecord,
)
from trestle.core.records.lineage import AttemptFiles
from trestle.core.records.monitors import Alert, MonitorAction, MonitorSettings
from trestle.core.records.policy_source import PolicySource
from trestle.core.safetext import model_json


class Event(BaseModel):
    """Base of every event; ``at`` is wall-clock seconds from the injected clock."""

    # each event type builds its validator when one is first made or read: a command
    # meets a few of the kinds, and building them all added about 8% to importing them
    # (BENCHMARKS.md, section 8)
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    v: int = 1
    at: float


class CheckResult(BaseModel):
    """One verify check: what was expected, what was found, and the verdict."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    check: str
    expected: str
    actual: str
    passed: bool


# "deferred": the step stopped itself before it was done, to wait for a human (a tool
# call needs approval) or the budget; it is not a failure and uses up no retry
# "stalled": the engine cancelled an attempt that showed no sign of life for too long
ActionStatus = Literal["ok", "failed", "timeout", "error", "skipped", "deferred", "stalled"]


class ActionResult(BaseModel):
    """What running a step's action produced."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    status: ActionStatus
    exit_code: int | None = None
    output: str = ""
    error: str | None = None
    duration: float = 0.0


class TreeLink(Record):
    """Where a delegated child run sits: the step (and round) of the parent that
    delegated to it, the tree's root, and the way down from it (``research#1``, one per
    level: its depth)."""

    parent: str
    step: str
    round: int
    root: str
    path: tuple[str, ...] = Field(min_length=1)

    @property
    def depth(self) -> int:
        return len(self.path)

    def describe(self) -> str:
        """``20261123-1554-a22c > research#1 > scan#2``: the root, then each level."""
        return " > ".join((self.root, *self.path))


class EngineBinding(Record):
    """Which engine drives a run other than in the process that made it: a run on
    Temporal is driven by the workflow named after the run, on ``task_queue`` at
    ``address``; commands that ask something of it signal that workflow."""

    kind: Literal["temporal"] = "temporal"
    address: str
    namespace: str = "default"
    task_queue: str = "trestle"


class RunCreated(Event):
    """The run's first event. ``operator_policy`` is the ``trestle.toml`` policy as it
    was when the run was created, so a replay classifies every action the same way.
    v2: ``policy_source`` says which file that policy came from and why it was trusted
    (None in a v1 event, or from a caller that did not say: not recorded).
    v3: ``python_sources``, the SHA-256 of each file the plan's ``python:`` steps and
    checks import from the plan's directory or the workspace, by path: a step may
    rewrite them, so the driver imports only those bytes (None before v3: unpinned).
    v4: ``started_by``, the public key of who started the run (``ed25519:HEX``), kept
    when the operator's policy names approvers, so a two-person rule can exclude them
    (None before v4, or without approvers: nobody is excluded)."""

    v: int = 4
    kind: Literal["run_created"] = "run_created"
    run_id: str
    plan: Plan
    workspace: str
    plan_path: str | None = None
    operator_policy: Policy | None = None
    policy_source: PolicySource | None = None
    python_sources: dict[str, str] | None = None
    agent: AgentSettings | None = None  # set for an agent run (trestle agent)
    monitors: MonitorSettings | None = None  # None: the defaults
    parent: TreeLink | None = None  # set for a delegated child run
    engine: EngineBinding | None = None  # None: whichever process drives it (local)
    started_by: str | None = None


class RunResumed(Event):
    """A process took over the run; steps it found running have an unknown outcome."""

    kind: Literal["run_resumed"] = "run_resumed"
    owner: str


class SandboxChosen(Event):
    """How the commands a drive runs are confined (see :mod:`trestle.execution.sandbox`);
    recorded at a drive's start when it differs from the last drive's.

    v2: ``exposed``, the driver's own files a step's command could still change or
    redirect through the workspace (its Python environment, the store or the key named
    through a link there), one sentence each with the fix
    (:mod:`trestle.execution.driver_files`); empty before v2."""

    v: int = 2
    kind: Literal["sandbox_chosen"] = "sandbox_chosen"
    confined: bool
    detail: str  # "sandboxed (bubblewrap): ..." or "NOT SANDBOXED: why"
    exposed: tuple[str, ...] = ()


class Gate(BaseModel):
    """Why an attempt was allowed to start: its tier, what chose it, and the approval
    that let it run when the tier needed one (bound to the exact action's hash)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    decision: TierDecision
    action_hash: str
    approval: int | None = None


class Place(BaseModel):
    """Where an attempt ran: its host and the pid of the process that ran it (a
    Temporal worker, or a local run's driver), and ``view``, which names the processes
    that process could see (the kernel's boot and the pid namespace, hashed;
    see :func:`trestle.execution.processes.process_view`). Only a prober with the same
    view can look for the attempt's leftover processes."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    host: str
    pid: int
    view: str


class StepStarted(Event):
    """An attempt is about to be dispatched; ``key`` identifies its side effect.

    ``ran_on`` (v2) is where the local engine's driver runs it, stamped by that driver
    as it commits the start: after a crash only a driver of the same view looks for its
    leftover processes (:mod:`trestle.execution.places`). None on a Temporal run (its
    worker says where, on :class:`StepAttemptLost`) and on starts recorded before v2,
    which a local driver probes where it runs, as it always did."""

    v: int = 2
    kind: Literal["step_started"] = "step_started"
    step: str
    attempt: int
    key: str
    gate: Gate | None = None
    ran_on: Place | None = None


class ToolAsk(BaseModel):
    """A tool call an agent step wants to make that needs a human's approval first.

    ``reasoning`` is the text the model wrote beside the call in the same answer (empty
    when it wrote none, and in events recorded before it was kept). ``files``: for a
    call that runs a command, the workspace files the command names as they read when
    the gate asked (path: sha256 or "absent"; see
    :mod:`trestle.execution.named_files`): the approval holds only while they read the
    same (None: no command, or asked before calls were bound to them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    tool: str
    arguments: str  # as the model wrote them
    facts: ActionFacts
    decision: TierDecision
    action_hash: str
    similar_key: str
    reasoning: str = ""
    files: dict[str, str] | None = None


class StepProcessStarted(Event):
    """An attempt's command is running: enough to find its processes after a crash.

    ``pgid`` is its process group; ``start_time`` is the leader's start in clock ticks
    since boot (``/proc/<pid>/stat``), so a reused pid is not taken for it. Recorded with
    the next commit after the spawn; until then (and where nothing was recorded) the
    processes are found by the idempotency key in their environment.
    """

    kind: Literal["step_process_started"] = "step_process_started"
    step: str
    attempt: int
    pid: int
    pgid: int
    start_time: int | None = None


class StepAttemptEnded(Event):
    """The attempt finished: its action's result and its checks' verdicts.

    A ``deferred`` action carries ``ask`` when a tool call waits for approval.
    v2: ``files``, what the attempt read and wrote in the workspace as far as it could
    be seen (None in a v1 event, or where nothing was looked at: unknown).
    v3: ``ask`` carries the model's ``reasoning`` beside the call.
    v4: ``ask`` carries the ``files`` its command names.
    """

    v: int = 4
    kind: Literal["step_attempt_ended"] = "step_attempt_ended"
    step: str
    attempt: int
    ok: bool
    action: ActionResult
    checks: tuple[CheckResult, ...] = ()
    checkpoint_before: str | None = None  # workspace snapshots (commit ids), if taken
    checkpoint_after: str | None = None
    ask: ToolAsk | None = None
    # the approval (its number) no longer holds: a file the command names changed since
    # it was given; the attempt did not run, and the step asks again
    approval_stale: int | None = None
    files: AttemptFiles | None = None


ProbeReason = Literal["before_retry", "unknown_outcome"]


class StepProbeStarted(Event):
    """Run the step's checks to learn whether earlier work already took effect."""

    kind: Literal["step_probe_started"] = "step_probe_started"
    step: str
    reason: ProbeReason


# what became of an unknown attempt's processes before its checks ran: none was left,
# the ones left finished while the driver waited, or they were killed after the wait;
# or (v3) the attempt ran where the prober cannot see processes (another host, another
# pid namespace), so none could be looked for and no check ran
Leftovers = Literal["none", "finished", "killed", "unseen"]


class StepProbed(Event):
    """The step's checks ran. For an unknown outcome (v2) ``leftovers`` says what the
    driver found of the attempt's processes first: it probes only once they are gone.
    ``unseen`` (v3): they could not be looked for, so the checks did not run either,
    and the step is escalated (see :class:`StepAttemptLost`)."""

    v: int = 3
    kind: Literal["step_probed"] = "step_probed"
    step: str
    reason: ProbeReason
    passed: bool
    checks: tuple[CheckResult, ...] = ()
    leftovers: Leftovers | None = None
    waited: float = 0.0  # seconds spent waiting for leftover processes


class StepRetryScheduled(Event):
    kind: Literal["step_retry_scheduled"] = "step_retry_scheduled"
    step: str
    not_before: float
    reason: str


class StepFailed(Event):
    """Terminal failure; ``dead_lettered`` puts it on the dead-letter queue for a human."""

    kind: Literal["step_failed"] = "step_failed"
    step: str
    reason: str
    dead_lettered: bool


class StepBlocked(Event):
    kind: Literal["step_blocked"] = "step_blocked"
    step: str
    by: str
    reason: str


class StepEscalated(Event):
    """The outcome is unknown and re-running is unsafe: a human must decide."""

    kind: Literal["step_escalated"] = "step_escalated"
    step: str
    reason: str


class StepSkipped(Event):
    """A human decided the step is not to run; its dependents may proceed."""

    kind: Literal["step_skipped"] = "step_skipped"
    step: str
    reason: str
    request_id: int | None = None
    by: str | None = None  # who asked (recorded since the dashboard; older runs: None)


class StepReopened(Event):
    """A human asked for a failed or escalated step to be tried again."""

    kind: Literal["step_reopened"] = "step_reopened"
    step: str
    reason: str
    request_id: int | None = None
    by: str | None = None  # who asked, for a human's retry (None: older runs, a rewind)


ApprovalSubject = Literal["action", "audit", "budget", "tool", "alert"]


class ApprovalRequested(Event):
    """A human must decide before something happens (or, for an audit drawn after the
    fact, should review what already happened: then ``blocking`` is false).

    ``approval`` numbers requests within the run. An action approval carries the
    hash of the exact action; a decision for any other action does not apply.
    v2: a tool call's ``ask`` carries the model's ``reasoning`` beside the call.
    v3: a tool call's request carries ``files``, as its ``ask`` does.
    """

    v: int = 3
    kind: Literal["approval_requested"] = "approval_requested"
    approval: int
    subject: ApprovalSubject
    blocking: bool = True
    step: str | None = None
    action_hash: str | None = None
    decision: TierDecision | None = None
    similar_key: str | None = None
    breach: Breach | None = None
    ask: ToolAsk | None = None  # the tool call, for subject "tool"
    alert: Alert | None = None  # what a monitor saw, for subject "alert"
    # a command's workspace files as they read when asked (path: sha256 or "absent"),
    # filled in by the engine: the approval holds only while they read the same
    files: dict[str, str] | None = None


Verdict = Literal["approve", "reject", "modify"]


class PlanEdit(BaseModel):
    """A plan awaiting review, as a human edited it before approving it: ``plan`` is the
    edited plan; ``dropped`` the steps of the plan as proposed (none has started), and
    ``added`` the steps that replace them; ``acceptance`` the step that waited for the
    dropped steps and now waits for the added ones instead (None: none did)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    plan: AgentPlan
    dropped: tuple[str, ...]
    added: tuple[Step, ...]
    acceptance: str | None = None


class ApprovalDecided(Event):
    """A human's decision, recorded from the decision path (CLI or Python API) only.

    ``modify`` approves ``edited``, the step as the human changed it, whose action has
    ``action_hash``; ``similar`` also approves later actions with the same similar-key.
    v2: a modified tool call carries ``arguments``, the call's arguments as the human
    edited them (canonical JSON; ``action_hash`` is then the edited call's); a modified
    plan review carries ``plan_edit``, the plan as the human edited it and the steps it
    drops and adds (``edited`` is then the review step listing the edited plan).
    v3: an approve with ``similar`` carries ``covers``, the other pending approvals of
    its group (:mod:`trestle.core.approval_groups`) it decides too, as the signed
    request listed them.
    """

    v: int = 3
    kind: Literal["approval_decided"] = "approval_decided"
    approval: int
    verdict: Verdict
    by: str
    reason: str = ""
    similar: bool = False
    action_hash: str | None = None
    edited: Step | None = None
    arguments: str | None = None
    plan_edit: PlanEdit | None = None
    top_up: float | None = None
    covers: tuple[int, ...] = ()
    request_id: int | None = None
    # the signed request this decision came from, verbatim: the process that acts on
    # the decision checks its signature (see trestle.lifecycle.approvals.forged), so a row written
    # into the store by anything but the decision path is ignored
    signed: str | None = None


class ApprovalEndorsed(Event):
    """One approver's approve of an approval that needs more than one (the operator's
    ``approvals = N``): counted, and the approval stays pending until enough distinct
    approvers have approved. ``signer`` is the key the signed request verified with,
    ``by`` the name the operator's group gives it."""

    kind: Literal["approval_endorsed"] = "approval_endorsed"
    approval: int
    by: str
    signer: str
    reason: str = ""
    request_id: int | None = None
    signed: str | None = None  # the signed request, checked again wherever it is folded


class ApprovalRefused(Event):
    """A decision that arrived but does not apply (unsigned, stale, or already decided),
    or an ``approval_decided`` event whose signature does not verify (``forged_seq``
    names it; the run ignores that event)."""

    kind: Literal["approval_refused"] = "approval_refused"
    approval: int | None
    reason: str
    request_id: int | None = None
    forged_seq: int | None = None


class RequestRefused(Event):
    """A human's retry, skip, requirement or plan change (``trestle tell``) that the run
    could not take as it was when the request was read, and why. Every request ends in
    exactly one recorded outcome: the event it became (each carries its ``request_id``),
    or this one (a decision on an approval that does not apply is ``approval_refused``)."""

    kind: Literal["request_refused"] = "request_refused"
    request_id: int | None
    # retry | skip | tell | drop | change (``tell --drop/--change``) | rebind (``resume
    # --base-url`` queued for a run's Temporal workflow)
    request: str
    step: str | None = None
    text: str = ""  # what was asked: the requirement, or the retry's or skip's reason
    reason: str


class RunInterrupted(Event):
    """The driver was told to stop (a signal, or its task cancelled). ``stopped`` are the
    steps whose processes it killed and saw gone, so no late effect can follow: a
    resume probes them and re-runs them without counting a failed attempt (one with no
    checks that is unsafe to re-run goes to a human instead: it may have done its work
    before it was stopped). A step it cannot stop (a Python callable in a thread) is
    let finish first, and its outcome is recorded before this event."""

    kind: Literal["run_interrupted"] = "run_interrupted"
    by: str  # "SIGINT", "SIGTERM", "SIGHUP" or "cancelled"
    stopped: tuple[str, ...] = ()


class RunCancelled(Event):
    """A person cancelled the run (``trestle cancel``): nothing more of it runs, and
    it cannot be resumed. ``stopped`` are the steps whose processes were killed and
    seen gone (by the driver, or by ``trestle cancel`` itself when nothing drove the
    run); ``request_id`` is the queued cancel a driver took, if one did."""

    kind: Literal["run_cancelled"] = "run_cancelled"
    by: str
    reason: str
    stopped: tuple[str, ...] = ()
    request_id: int | None = None


class BudgetExhausted(Event):
    """A hard limit (or a refused top-up) stops the run: nothing new starts. ``used``
    is what the start it refused would have made the run use, ``limit`` the hard level
    it passed (both absent from runs recorded before they were kept). ``carved_from``:
    for a delegated child, the parent run whose step carved its budget (it cannot be
    raised on its own: that step's retries and escalation decide what follows)."""

    kind: Literal["budget_exhausted"] = "budget_exhausted"
    dimension: Dimension
    reason: str
    used: float | None = None
    limit: float | None = None
    carved_from: str | None = None


class BudgetRaised(Event):
    """A human raised hard limits of a run their budget stopped (``trestle budget RUN
    --add``): each dimension in ``add`` grows by its amount, both levels, and the run
    goes on from where it stopped. ``stop_seq`` is the ``budget_exhausted`` event it
    answers; ``signed`` is the signed request, verified whenever the run is folded to
    act on it (see :func:`trestle.lifecycle.approvals.forged`)."""

    kind: Literal["budget_raised"] = "budget_raised"
    add: dict[Dimension, float]
    by: str
    reason: str = ""
    stop_seq: int
    signed: str | None = None


class ModelRebound(Event):
    """A human pointed an agent run at another model binding before resuming it
    (``trestle resume RUN --base-url URL``, ``--model``, ``--api-key-env``): the
    server moved, or the key is read from another variable. Each field is the binding
    from here on; ``was`` is what it replaced, field by field. Every engine builds the
    run's model from the state's settings, so the change holds wherever the run goes on.
    v2: ``request_id``, the signed request the run's Temporal workflow took it from while
    it drove the run; None when ``resume`` recorded it under the lease.
    """

    v: int = 2
    kind: Literal["model_rebound"] = "model_rebound"
    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    was: dict[str, str | None] = {}
    by: str
    request_id: int | None = None


class RunRewound(Event):
    """A human put the workspace back to before ``to_step`` and reopened the steps whose
    work that undid. The events before this one stay: they are the abandoned branch.
    v2: ``files``, the paths put back when the work of the steps that did not depend on
    ``to_step`` was kept (None: the whole workspace was restored, and every step
    started after ``to_step`` reopened)."""

    v: int = 2
    kind: Literal["run_rewound"] = "run_rewound"
    to_step: str
    attempt: int
    checkpoint: str  # the snapshot restored
    safety: str  # the workspace as it was before the rewind, kept to undo it
    reopened: tuple[str, ...]
    by: str
    files: tuple[str, ...] | None = None


# --- the agent: what a model was asked and answered, and what its tools did ----------


class RoundOpened(Event):
    """An agent step's conversation began: the pins it works under (goal, rules, scope,
    plan status as it was then) and, after a failed attempt, why that one failed.
    Recorded so that a replay builds the very same conversation."""

    kind: Literal["round_opened"] = "round_opened"
    step: str
    round: int
    pins: Pins
    failure: str | None = None


class ModelCalled(Event):
    """One model call of an agent step, recorded so a resumed run replays it.

    ``round`` numbers the step's conversations: a failed attempt, or a human's retry,
    starts a new one; a crash or a pause for approval continues the same one.

    v2: ``prompt_estimate`` is the offline estimate (:mod:`trestle.core.estimate`) of
    the request as sent, after any compression: the conversation's size when the model
    reported no usage (the context monitor reads it). 0 in a v1 event: not recorded.
    """

    v: int = 2
    kind: Literal["model_called"] = "model_called"
    step: str
    round: int
    turn: int
    request_hash: str
    response: ModelResponse
    model: str = ""
    prompt_estimate: int = Field(default=0, ge=0)


class ModelCallReserved(Event):
    """Before a live model call: its worst case (the prompt as estimated plus the most
    tokens the answer may have, and their price) held against the run's budget until
    ``ModelCalled`` (or the attempt's end) releases it. Parallel steps see it at once."""

    kind: Literal["model_call_reserved"] = "model_call_reserved"
    step: str
    round: int
    turn: int
    tokens: int = Field(ge=0)
    cost: float = Field(default=0.0, ge=0, allow_inf_nan=False)


class ModelCallHeld(Event):
    """A model call was not sent: its worst case would pass a budget limit. The step
    waits; it starts again only when the budget allows ``tokens`` and ``cost`` more."""

    kind: Literal["model_call_held"] = "model_call_held"
    step: str
    tokens: int = Field(ge=0)
    cost: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    reason: str


class ToolCallStarted(Event):
    """A tool call is about to run; durable first, so a crash mid-call is known.
    ``key`` is the call's idempotency key (:func:`tool_call_key`): its processes carry
    it, so a resume finds them again; empty in records made before it existed.

    v2: ``gate`` says why the call was let run: its tier, the level of the policy that
    chose it and why, the confidence it was judged with, the audit drawn for it and
    the human approval it ran on, if it needed one (``action_hash`` is the call's, as
    in :mod:`trestle.agent.toolgate`); ``facts`` is what the policy judged. Both None
    in a v1 event: not recorded."""

    v: int = 2
    kind: Literal["tool_call_started"] = "tool_call_started"
    step: str
    round: int
    turn: int
    call_id: str
    tool: str
    arguments: str
    nature: str
    key: str = ""
    gate: Gate | None = None
    facts: ActionFacts | None = None


class ToolProbe(BaseModel):
    """What a resume learned of a side-effecting tool call that started and never
    ended: what became of its leftover processes (looked for, waited for, killed)
    before anything else, then whether the tool's own probe found the effect done.

    Attributes:
        leftovers: none was left, the ones left finished, or they were killed.
        waited: seconds spent waiting for them.
        done: the tool's probe found the effect in place; False when it has no probe
            or could not tell, so the outcome stays unknown.
        evidence: what the probe found, in words.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    leftovers: Leftovers
    waited: float = 0.0
    done: bool = False
    evidence: str = ""


class ToolCallEnded(Event):
    """What a tool call produced: the observation the model was shown."""

    kind: Literal["tool_call_ended"] = "tool_call_ended"
    step: str
    round: int
    turn: int
    call_id: str
    tool: str
    ok: bool
    content: str
    error: str | None = None
    data: dict[str, JsonValue] = {}
    probe: ToolProbe | None = None  # set when the end was learned by a probe after a crash


# --- groups of runs: the blackboard and the mailboxes (see trestle.coordination.groups) -----------


class BoardWritten(Event):
    """A write this run made on its group's blackboard, from ``step``: accepted, the
    key now at ``version``; or refused as a conflict, the key at ``version`` and not
    at ``expected``. ``entry`` is the attempt's row in the board's log."""

    kind: Literal["board_written"] = "board_written"
    step: str
    group: str
    key: str
    version: int
    expected: int | None = None
    accepted: bool
    entry: int


class MessageSent(Event):
    """A message this run sent to ``recipient``; ``new`` is False when the store held
    it already (the same call sent again after a crash: deduplicated by its id)."""

    kind: Literal["message_sent"] = "message_sent"
    step: str
    group: str
    message_id: str
    recipient: str
    reply_to: str | None = None
    new: bool = True


class MessagesDelivered(Event):
    """Messages put into this run's conversation by one receive call, recorded in the
    same commit as that call's end: so each is shown once, and none is lost, whenever
    the driver dies. The store marks them delivered in that commit too."""

    kind: Literal["messages_delivered"] = "messages_delivered"
    step: str
    group: str
    call_key: str  # the receiving tool call's idempotency key
    message_ids: tuple[str, ...]


class ReminderInjected(Event):
    """A message put into an agent step's conversation before a model turn: a goal
    reminder, a monitor's correction, or (v2) a requirement a human added while the
    conversation went on (``record.reason == "requirement"``)."""

    v: int = 2
    kind: Literal["reminder_injected"] = "reminder_injected"
    step: str
    round: int
    record: ReminderRecord


class ContextCompressed(Event):
    """The conversation was rebuilt; ``summary`` is what replaced the older turns."""

    kind: Literal["context_compressed"] = "context_compressed"
    step: str
    round: int
    turn: int
    record: CompressionRecord
    summary: str


class ConversationSaved(Event):
    """Where one agent step's round stood before model turn ``turn + 1``: the
    conversation as it was about to be sent (before that turn's reminders and
    compression), the loop's ``iteration``, the turn of the latest goal reminder and
    what was already told: the monitor alerts' keys, and ``requirement:N`` for each
    requirement told mid-conversation. A resume starts from the latest one and replays
    only what the round recorded after it, instead of every turn from the first."""

    kind: Literal["conversation_saved"] = "conversation_saved"
    step: str
    round: int
    turn: int
    iteration: int
    messages: tuple[Message, ...]
    last_reminder: int | None = None
    told: tuple[str, ...] = ()


class PhaseEntered(Event):
    """The agent moved into a phase (UNDERSTAND, PLAN, EXECUTE, VALIDATE or DONE)."""

    kind: Literal["phase_entered"] = "phase_entered"
    phase: str
    step: str | None = None
    reason: str


class FindingsRecorded(Event):
    kind: Literal["findings_recorded"] = "findings_recorded"
    step: str
    findings: Findings


class PlanProposed(Event):
    """A plan the model proposed, accepted or refused with the problems it was told."""

    kind: Literal["plan_proposed"] = "plan_proposed"
    step: str
    round: int
    attempt: int
    accepted: bool
    problems: tuple[str, ...] = ()


class PlanExtended(Event):
    """Steps join the run's plan: an accepted plan, a re-plan, or a user's requirement.

    ``needs_added`` makes steps that have not started wait for new ones too (the
    acceptance step waits for steps a revision added).
    """

    kind: Literal["plan_extended"] = "plan_extended"
    by: str
    steps: tuple[Step, ...]
    needs_added: dict[str, tuple[str, ...]] = {}
    agent_plan: AgentPlan | None = None


class RequirementAdded(Event):
    """A user added a requirement mid-run (``trestle tell``)."""

    kind: Literal["requirement_added"] = "requirement_added"
    text: str
    by: str
    request_id: int | None = None


class PlanStepChanged(Event):
    """A human changed a step of an agent run's plan before it started (``trestle tell
    --drop`` / ``--change``). ``change="drop"``: the step will not run; it ends
    skipped, with ``text`` as the reason (the acceptance step, which waits for every
    step of the plan, goes on without it). ``change="objective"``: ``text`` is the
    step's new objective, which its conversation (or its child's goal) starts from."""

    kind: Literal["plan_step_changed"] = "plan_step_changed"
    step: str
    change: Literal["drop", "objective"]
    text: str = ""
    by: str
    request_id: int | None = None


class AlertRaised(Event):
    """A monitor saw a failure mode; ``action`` is what the run's policy does about it.
    v2: the alert lists the alerts merged into it (``alert.merged``)."""

    v: int = 2
    kind: Literal["alert_raised"] = "alert_raised"
    alert: Alert
    action: MonitorAction


RunStatus = Literal["succeeded", "partial", "needs_human", "stopped", "cancelled"]


class ChildRunStarted(Event):
    """A delegating step's attempt created its child run (or, after a crash, found the
    one its round had already created)."""

    kind: Literal["child_run_started"] = "child_run_started"
    step: str
    attempt: int
    child: str
    resumed: bool = False


class ChildRunEnded(Event):
    """A delegating step's child stopped being driven: how it ended (``needs_human``:
    it waits for a decision in its own inbox) and what it has spent in all, which the
    parent counts instead of the share it held in reserve."""

    kind: Literal["child_run_ended"] = "child_run_ended"
    step: str
    attempt: int
    child: str
    status: RunStatus
    spent: dict[Dimension, float] = {}
    waiting: str = ""  # for needs_human: what the child waits for, in words


class AloneAwaited(Event):
    """A command a human approved waits to run with nothing else of its run beside it
    (:func:`trestle.core.state.runs_alone`): ``running`` end first, and nothing after it
    starts meanwhile. Recorded once per wait."""

    kind: Literal["alone_awaited"] = "alone_awaited"
    step: str
    running: tuple[str, ...]  # the attempts and probes it waits for
    reason: str


class CallAloneAsked(Event):
    """A tool call of a running agent step that runs a command a human approved asks to
    run with nothing else of its run beside it, as an approved command step does:
    nothing more of the run starts from now, and the decider grants it
    (:class:`AloneGranted`) once nothing else runs. Recorded by the step before the
    call's files are checked again and its start is recorded."""

    kind: Literal["call_alone_asked"] = "call_alone_asked"
    step: str
    call: str  # round.turn.call_id: the call whose end ends the wait or the run alone


class AloneGranted(Event):
    """Nothing else of the run runs now: the agent step's approved call (``call``) runs,
    and nothing starts beside it until its end is recorded."""

    kind: Literal["alone_granted"] = "alone_granted"
    step: str
    call: str


class AloneReleased(Event):
    """The delegating step's child ended the command it held the run for
    (:class:`CallAloneAsked` with the child's command as ``call``): the run goes on."""

    kind: Literal["alone_released"] = "alone_released"
    step: str
    call: str


class ShareAwaited(Event):
    """A delegating step's child would pass a budget limit now, but fits once its
    siblings' running children release the shares they hold: the step waits for them
    (and nothing else starts meanwhile) instead of stopping the run. Recorded once per
    wait; the step starts when its share fits, and the run stops only when it can never
    fit."""

    kind: Literal["share_awaited"] = "share_awaited"
    step: str
    dimension: Dimension
    holders: tuple[str, ...]  # the steps whose children hold shares now
    reason: str


class StepAttemptLost(Event):
    """The driver lost sight of a running attempt (the worker performing it died or
    stopped answering): its outcome is unknown, as a crashed driver's is on a resume,
    so the step is probed before anything re-runs it. A lost probe is simply run
    again: a probe only reads.

    ``ran_on`` (v2) is where the attempt ran, as its worker said under its seal; None
    when that is not known (it never said, or the outcome came from outside). A probe
    only looks for leftover processes it can see: one where the attempt did not run
    (or that cannot tell) escalates the step instead (``leftovers="unseen"``)."""

    v: int = 2
    kind: Literal["step_attempt_lost"] = "step_attempt_lost"
    step: str
    attempt: int
    why: str
    ran_on: Place | None = None


class RunFinished(Event):
    kind: Literal["run_finished"] = "run_finished"
    status: RunStatus


AnyEvent = Annotated[
    RunCreated
    | RunResumed
    | SandboxChosen
    | StepStarted
    | StepProcessStarted
    | StepAttemptEnded
    | StepAttemptLost
    | StepProbeStarted
    | StepProbed
    | StepRetryScheduled
    | StepFailed
    | StepBlocked
    | StepEscalated
    | StepSkipped
    | StepReopened
    | ApprovalRequested
    | ApprovalDecided
    | ApprovalEndorsed
    | ApprovalRefused
    | RequestRefused
    | RunInterrupted
    | RunCancelled
    | BudgetExhausted
    | BudgetRaised
    | RunRewound
    | ModelRebound
    | RoundOpened
    | ModelCalled
    | ModelCallReserved
    | ModelCallHeld
    | ToolCallStarted
    | ToolCallEnded
    | BoardWritten
    | MessageSent
    | MessagesDelivered
    | ReminderInjected
    | ContextCompressed
    | ConversationSaved
    | PhaseEntered
    | FindingsRecorded
    | PlanProposed
    | PlanExtended
    | RequirementAdded
    | PlanStepChanged
    | AlertRaised
    | ChildRunStarted
    | ChildRunEnded
    | ShareAwaited
    | AloneAwaited
    | CallAloneAsked
    | AloneGranted
    | AloneReleased
    | RunFinished,
    Field(discriminator="kind"),
]

EVENT_TYPES: dict[str, type[Event]] = {
    member.model_fields["kind"].default: member for member in get_args(get_args(AnyEvent)[0])
}
"""Each event type by its ``kind``."""

if TYPE_CHECKING:
    EVENT_ADAPTER: TypeAdapter[AnyEvent]


@cache
def _union() -> TypeAdapter[AnyEvent]:
    return TypeAdapter(AnyEvent)


def __getattr__(name: str) -> object:
    # EVENT_ADAPTER is built on first use: building it builds every event type
    if name == "EVENT_ADAPTER":
        return _union()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def decode_event(data: str | bytes, kind: str) -> AnyEvent:
    """The event JSON ``data`` holds, read as the type ``kind`` names, as a store lists
    it. Whatever does not read as that type is read over the union, as before: a body
    of another kind comes back as that kind (for the caller to name the mismatch), and
    a damaged one raises the union's own error."""
    try:
        return EVENT_TYPES[kind].model_validate_json(data)  # type: ignore[return-value]
    except (KeyError, ValidationError):
        return _union().validate_json(data)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as recorded: its run and its position in the run's stream."""

    run_id: str
    seq: int
    event: AnyEvent


def idempotency_key(run_id: str, step: str, attempt: int) -> str:
    """Stable across processes, so a step's command can deduplicate external effects."""
    return f"{run_id}/{step}/{attempt}"


def child_run_id(run_id: str, step: str, round: int) -> str:
    """The child run a delegating step's round works through: the same after a crash
    (its re-run resumes the child), a new one after a failed attempt or a retry.

    A step id's dots are written as ``+``, which no step id holds (and git's refs,
    which checkpoints are named by, allow), so no child's id is another's: step
    ``a.1.b``'s child is ``RUN.a+1+b.1``, not ``RUN.a.1.b.1``, the child of step ``b``
    of step ``a``'s child (both named by a model, the two ran as one run, and the
    second drive of it stopped the tree)."""
    return f"{run_id}.{step.replace('.', '+')}.{round}"


def tool_call_key(run_id: str, step: str, attempt: int, round: int, turn: int, call: str) -> str:
    """One agent tool call's idempotency key: distinct from every step's key and every
    other call's (a model may reuse a call id in another turn or attempt)."""
    return f"{idempotency_key(run_id, step, attempt)}/r{round}/t{turn}/{call}"


def event_json(event: AnyEvent) -> str:
    """An event as the store keeps it (see :func:`trestle.core.safetext.model_json`):
    its own type's JSON, the same text the union writes."""
    return model_json(event)
