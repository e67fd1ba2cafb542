"""What a run's state holds of each step (its status, attempts, processes and output's
tail), of each approval, budget stop, alert and refused request: the records
:class:`~trestle.core.state.RunState` folds events into."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, model_validator

from trestle.core.budget import Breach, Dimension
from trestle.core.events import (
    ApprovalSubject,
    CheckResult,
    Gate,
    Leftovers,
    Place,
    ToolAsk,
)
from trestle.core.policy import TierDecision
from trestle.core.records.monitors import Alert, MonitorAction

StepStatus = Literal[
    "pending",  # waiting for its needs
    "running",  # an attempt was dispatched
    "attempt_failed",  # the last attempt failed; the decider has not yet chosen what next
    "retry_wait",  # waiting for its backoff before the next attempt
    "probing",  # checks running to see whether earlier work took effect
    "unknown",  # an attempt started but its outcome was never recorded (crash)
    "escalated",  # outcome unknown and unsafe to re-run: a human must decide
    "awaiting_approval",  # its next attempt needs a human's approval first
    # an agent step paused itself: a tool call needs approval (see ``ask``); or a
    # delegating step's child waits for a human (see ``waiting_child``)
    "deferred",
    "succeeded",
    "failed",
    "blocked",
    "skipped",
]


TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "blocked", "skipped"})


IN_FLIGHT: frozenset[str] = frozenset({"running", "probing"})


class StepProcess(BaseModel):
    """Where the running attempt's command lives (see ``StepProcessStarted``)."""

    pid: int
    pgid: int
    start_time: int | None = None


class CallGate(BaseModel):
    """Why one of an agent step's tool calls ran: the gate its start recorded (tier,
    the policy level that chose it and why, confidence, audit, the approval it ran on)."""

    round: int
    turn: int
    call_id: str
    tool: str
    gate: Gate


CallRow = tuple[int, int, str, str, str, int | None, int]
"""A tool call's gate as its step keeps it: round, turn, call id, tool, action hash, the
approval it ran on, and where its decision is in ``StepState.call_decisions``."""


# a command a human approved, waiting (said) to run with nothing of its run beside it,
# or running so (see trestle.core.state.runs_alone); ``asked``: an agent's approved
# call that runs a command asked to, not yet granted nor said to wait
Alone = Literal["asked", "awaited", "running"]


class StepState(BaseModel):
    # the empty lists and dicts below are made by factories: a default value is
    # deep-copied for each state instead, two thirds of the time a step's state took to
    # build (a run's first state makes one per step of its plan)
    status: StepStatus = "pending"
    attempt: int = 0  # number of the last attempt started (keys stay unique across crashes)
    failed_attempts: int = 0  # counts towards the retry limit; crashes do not
    not_before: float | None = None
    probe_reason: str | None = None  # why a probe is running
    probed: bool = False  # checks already ran (and failed) since the last attempt
    reason: str | None = None  # why it is in its terminal (or escalated) state
    blocked_by: str | None = None
    dead_lettered: bool = False
    succeeded_via: str | None = None  # "action" or "probe"
    error: str | None = None  # the last attempt's error, if any
    # the end of the last ended attempt's output (see ``output_tail``) and its number:
    # what a human reads first to see why it failed
    output_tail: str = ""
    output_attempt: int | None = None
    checks: list[CheckResult] = Field(default_factory=list)
    started_at: float | None = None
    ended_at: float | None = None
    approval: int | None = None  # the approval asked for (or given) for its action
    approved_hash: str | None = None  # the exact action a human approved
    reserved_cost: float = 0.0  # the running attempt's estimate, held against the budget
    # an agent step's model call in flight: its worst case, held against the budget
    model_reserved: dict[Dimension, float] = Field(default_factory=dict)
    # what a model call the budget held back needs: asked for when the step starts again
    wants: dict[Dimension, float] = Field(default_factory=dict)
    # an agent step's conversation: a failed attempt or a human's retry starts a new
    # round (told why the last one failed); a crash or a pause continues the same one
    round: int = 1
    round_failure: str | None = None
    ask: ToolAsk | None = None  # the tool call a deferred agent step waits to make
    # every tool call an agent step ran and why it was let run (starts recorded with
    # their gate, tool_call_started v2 on): what `trestle show --json` lists per step
    # (see ``calls``). Kept as rows and the distinct decisions they point to: a long
    # run makes thousands of calls, mostly under the same few decisions, and every
    # snapshot carries them and every resume reads them (as gate objects they were
    # 99% of a 1,000-turn run's snapshot, and most of the time it took to read)
    tool_calls: list[CallRow] = Field(default_factory=list)
    call_decisions: list[TierDecision] = Field(default_factory=list)
    stalled: bool = False  # its last attempt was cancelled for showing no sign of life
    # a delegating step: its current child run, the child's spending the run has
    # counted so far, its budget share held while an attempt drives it, and the child
    # it waits on while that child waits for a human (see trestle.engines.delegation)
    child: str | None = None
    child_counted: dict[Dimension, float] = Field(default_factory=dict)
    reserved_carve: dict[Dimension, float] = Field(default_factory=dict)
    waiting_child: str | None = None
    share_awaited: bool = False  # it waits for its siblings' shares, and said so
    # a command a human approved: waiting to run alone, or running so; else None. For
    # an agent step, the call that asked (round.turn.call_id): its end ends the mark
    alone: Alone | None = None
    alone_call: str | None = None
    alone_since: int = 0  # the seq at which it was marked (restored in that order)
    # what is known of the last attempt beyond its events: its process group, who
    # stopped it (the driver itself, on a signal), where it ran (the local driver that
    # started it, or the Temporal worker that lost it, as that worker said), and what a
    # resume found of it
    process: StepProcess | None = None
    interrupted: str | None = None  # "SIGTERM": the driver stopped it mid-attempt
    ran_on: Place | None = None
    leftovers: Leftovers | None = None
    waited: float = 0.0
    _decision_at: dict[TierDecision, int] = PrivateAttr(default={})  # copied (see RunState)

    @model_validator(mode="before")
    @classmethod
    def _calls_as_rows(cls, data: Any) -> Any:
        """A snapshot written before calls were kept as rows lists each as a gate
        object: read as rows, so it still saves its resume the fold."""
        calls = data.get("tool_calls") if isinstance(data, dict) else None
        if not calls or not isinstance(calls[0], dict) or "call_decisions" in data:
            return data
        step = StepState()
        for call in calls:
            old = CallGate.model_validate(call)
            step.record_call(old.round, old.turn, old.call_id, old.tool, old.gate)
        return {**data, "tool_calls": step.tool_calls, "call_decisions": step.call_decisions}

    @model_validator(mode="after")
    def _index_decisions(self) -> StepState:
        self._decision_at = {d: i for i, d in enumerate(self.call_decisions)}
        return self

    def record_call(self, round: int, turn: int, call_id: str, tool: str, gate: Gate) -> None:
        """Keep a tool call's gate (see ``tool_calls``)."""
        index = self._decision_at.get(gate.decision)
        if index is None:
            index = self._decision_at[gate.decision] = len(self.call_decisions)
            self.call_decisions.append(gate.decision)
        self.tool_calls.append((round, turn, call_id, tool, gate.action_hash, gate.approval, index))

    def calls(self) -> list[CallGate]:
        """Each tool call the step ran, with its gate, in order."""
        return [
            CallGate(
                round=round,
                turn=turn,
                call_id=call_id,
                tool=tool,
                gate=Gate(
                    decision=self.call_decisions[index], action_hash=digest, approval=approval
                ),
            )
            for round, turn, call_id, tool, digest, approval, index in self.tool_calls
        ]


class ApprovalState(BaseModel):
    """One approval request and, once decided, its decision."""

    subject: ApprovalSubject
    step: str | None
    blocking: bool
    action_hash: str | None
    decision: TierDecision | None
    similar_key: str | None
    breach: Breach | None
    ask: ToolAsk | None = None  # the tool call, for subject "tool"
    alert: Alert | None = None  # what a monitor saw, for subject "alert"
    files: dict[str, str] | None = None  # what the command's named files read when asked
    # a tool call a human edited before approving: the arguments it runs with (canonical
    # JSON) and the edited call's hash, which the gate's look at the edited call finds
    edited_arguments: str | None = None
    edited_hash: str | None = None
    requested_at: float
    # the approvers' keys (and their names) whose approve counted towards a two-person
    # rule while the approval stays pending (ApprovalEndorsed)
    endorsed_by: tuple[str, ...] = ()
    endorsers: tuple[str, ...] = ()
    status: Literal["pending", "approved", "rejected", "modified", "withdrawn"] = "pending"
    by: str | None = None
    reason: str = ""
    decided_at: float | None = None


class BudgetStop(BaseModel):
    """The hard limit that stopped the run, while it stands (see ``BudgetExhausted``)."""

    dimension: Dimension
    seq: int  # the budget_exhausted event
    used: float | None = None  # what the refused start would have made the run use
    limit: float | None = None  # the hard level it passed


class RaisedAlert(BaseModel):
    """An alert as the run holds it: what was done about it, and where it was recorded."""

    alert: Alert
    action: MonitorAction
    seq: int
    approval: int | None = None  # the human's go-on-or-stop question, for a pause

    @property
    def holds_run(self) -> bool:
        """A pause nobody has yet been asked about (the decider asks at once)."""
        return self.action == "pause" and self.approval is None


class RefusedRequest(BaseModel):
    """A human's request the run did not take, and why (shown by the report)."""

    request_id: int | None
    request: str  # retry | skip | tell | decision
    step: str | None = None
    approval: int | None = None  # for a decision
    text: str = ""  # what was asked
    reason: str
    at: float
    forged_seq: int | None = None  # an approval_decided event the run ignored as forged


def transcript_key(sid: str, round: int) -> str:
    return f"{sid}#{round}"


TAIL_LINES = 5


TAIL_CHARS = 400


def output_tail(text: str, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> str:
    """The end of an attempt's output, where a failure usually says what went wrong:
    its last ``lines`` lines, at most ``chars`` characters ("…" marks a cut)."""
    kept = [line.rstrip() for line in text.rstrip().splitlines()[-lines:]]
    tail = "\n".join(kept).strip("\n")
    return tail if len(tail) <= chars else "…" + tail[1 - chars :]


def attempt_error(error: str | None, status: str, checks: Iterable[CheckResult]) -> str:
    if error:
        return error
    failed = [c for c in checks if not c.passed]
    if status == "ok" and failed:
        c = failed[0]
        # one sentence, on one line: what a check found can quote a command's output,
        # whose lines ("  - all verified") read as lines of the report it is put in
        found = " ".join(c.actual.split())
        return f"check failed: {c.check}: expected {c.expected}, got {found}"
    return f"action {status}"
