"""Trestle's own events as monitor observations, one event at a time.

:class:`EventTrace` is fed a run's stored events in order, live or from the store,
and answers each with the observations it completes:

- a :class:`~trestle.monitors.trace.Turn` per model call (``ModelCalled``), with an
  :class:`~trestle.monitors.trace.Action` per tool call it asked for. The turn is
  complete once every call it made has ended (``ToolCallEnded``), or at once when it
  made none; a turn whose calls never end (the attempt paused for a human, or
  crashed) is completed by the conversation's next turn or by the attempt's end.
  Actions come from the model's response, not from ``ToolCallStarted``: a call the
  registry refused (unknown tool, bad JSON) never starts, yet it is what the model did.
- a :class:`~trestle.monitors.trace.StepEnd` per ended attempt of an agent step, with
  its duration (from ``StepStarted``), the cost and calls of its model turns, whether
  it called ``finish`` and which checks failed.

It also keeps the :class:`~trestle.monitors.trace.RunFacts` current: the goal, scope,
turn limit and cost limit from ``RunCreated``, and each agent step's objective,
including the steps ``PlanExtended`` adds.

Pure: no IO, no clock. :func:`observations_from_events` is a loop over it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from trestle.core.events import (
    AnyEvent,
    ModelCalled,
    PlanExtended,
    RoundOpened,
    RunCreated,
    StepAttemptEnded,
    StepStarted,
    StoredEvent,
    ToolCallEnded,
    ToolCallStarted,
)
from trestle.core.plan import Step
from trestle.core.records.lineage import DELETED
from trestle.monitors.shell import classify_tool_call
from trestle.monitors.trace import Action, Malformed, Observation, RunFacts, StepEnd, Turn

# How the tool registry words its refusals of malformed calls (tools/registry.py);
# matched on the start of ``ToolCallEnded.error``.
_REFUSALS: tuple[tuple[str, Malformed], ...] = (
    ("unknown tool ", "unknown_tool"),
    ("arguments for ", "unparseable"),  # "... are not valid JSON" / "not usable JSON"
    ("invalid arguments for ", "invalid_arguments"),
)
# The order a turn's problems are reported in when it has several: the first found wins.
_PRECEDENCE: tuple[Malformed, ...] = (
    "empty",
    "truncated",
    "unknown_tool",
    "unparseable",
    "invalid_arguments",
    "several_actions",
)
FINISH_TOOL = "finish"


def refusal_problem(error: str | None) -> Malformed | None:
    """The token-level problem a tool registry refusal shows, if it shows one."""
    if not error:
        return None
    for prefix, problem in _REFUSALS:
        if error.startswith(prefix):
            if problem == "unparseable" and "must be a JSON object" in error:
                return "invalid_arguments"
            return problem
    if " is not allowed in " in error:  # a tool the phase does not offer
        return "unknown_tool"
    return None


@dataclass
class _OpenTurn:
    """A model call whose tool calls have not all ended yet."""

    seq: int
    step: str
    round: int
    text: str
    actions: dict[str, Action]  # by call id, in the model's order
    problems: list[Malformed]
    tokens: int
    prompt_tokens: int
    prompt_estimated: bool
    cost: float
    started: float  # when the conversation last did something before this call
    last: float  # the latest event of this turn
    pending: set[str] = field(default_factory=set)


@dataclass
class _Attempt:
    """What one running attempt of an agent step has done so far."""

    started: float
    cost: float = 0.0
    calls: int = 0
    finished: bool = False


class EventTrace:
    """Turns a run's events into monitor observations, incrementally.

    Feed every stored event of one run, in order, to :meth:`feed`; call
    :meth:`flush` at the end of a recording to complete turns left open.
    """

    def __init__(self) -> None:
        self.facts = RunFacts()
        self._turns = 0
        self._open: dict[tuple[str, int, int], _OpenTurn] = {}
        self._attempts: dict[str, _Attempt] = {}
        self._last_at: dict[str, float] = {}  # per step: its latest event's time
        self._agent_steps: set[str] = set()

    @property
    def turns(self) -> int:
        """Turns completed so far."""
        return self._turns

    def feed(self, seq: int, event: AnyEvent) -> list[Observation]:
        """Take one event; return the observations it completes (often none)."""
        match event:
            case RunCreated():
                self._created(event)
            case PlanExtended(steps=steps):
                self._add_steps(steps)
            case StepStarted(step=step):
                self._attempts[step] = _Attempt(started=event.at)
                self._last_at[step] = event.at
            case RoundOpened(step=step):
                self._last_at[step] = event.at
            case ModelCalled():
                return self._model_called(seq, event)
            case ToolCallStarted():
                self._tool_started(seq, event)
            case ToolCallEnded():
                return self._tool_ended(seq, event)
            case StepAttemptEnded():
                return self._attempt_ended(seq, event)
        return []

    def answered(self, event: ModelCalled) -> Turn | None:
        """The turn ``event`` (just fed) opened, as the model answered it: its actions
        not yet run, its index and timing not final. None once it is complete."""
        turn = self._open.get((event.step, event.round, event.turn))
        if turn is None:
            return None
        return Turn(
            index=self._turns,
            seq=turn.seq,
            step=turn.step,
            round=turn.round,
            text=turn.text,
            actions=tuple(turn.actions.values()),
        )

    def flush(self) -> list[Observation]:
        """Complete every turn still open (the recording ended part-way)."""
        return [self._complete(key) for key in sorted(self._open, key=lambda k: self._open[k].seq)]

    # --- facts ----------------------------------------------------------------------

    def _created(self, event: RunCreated) -> None:
        plan, agent = event.plan, event.agent
        cost = plan.budget.cost if plan.budget is not None else None
        self.facts = RunFacts(
            goal=plan.goal,
            scope=agent.scope if agent is not None else (),
            turn_limit=agent.max_turns if agent is not None else None,
            cost_limit=(cost.hard or cost.soft) if cost is not None else None,
            model=agent.model if agent is not None else "",
        )
        self._add_steps(plan.steps)

    def _add_steps(self, steps: Iterable[Step]) -> None:
        objectives = dict(self.facts.objectives)
        read_only = set(self.facts.read_only)
        for step in steps:
            if step.agent is not None:
                self._agent_steps.add(step.id)
                objectives[step.id] = step.agent.objective or step.description
                if step.agent.role != "execute":  # understand and plan only look
                    read_only.add(step.id)
        self.facts = self.facts.model_copy(
            update={"objectives": objectives, "read_only": frozenset(read_only)}
        )

    # --- turns ----------------------------------------------------------------------

    def _model_called(self, seq: int, event: ModelCalled) -> list[Observation]:
        done: list[Observation] = [  # the conversation moved on: no more results
            self._complete(key) for key in list(self._open) if key[:2] == (event.step, event.round)
        ]
        response = event.response
        usage = response.usage
        attempt = self._attempts.get(event.step)
        if attempt is not None:
            attempt.cost += usage.cost or 0.0
            attempt.calls += 1
        problems: list[Malformed] = []
        if response.is_empty:
            problems.append("empty")
        if response.finish_reason == "length":
            problems.append("truncated")
        names = [call.name for call in response.tool_calls]
        if FINISH_TOOL in names and len(names) > 1:
            problems.append("several_actions")
        actions: dict[str, Action] = {}
        for call in response.tool_calls:
            kind, target, writes = classify_tool_call(call.name, call.arguments)
            actions[call.id] = Action(
                seq=seq,
                tool=call.name,
                kind=kind,
                arguments=call.arguments,
                target=target,
                writes=writes,
            )
        key = (event.step, event.round, event.turn)
        started = self._last_at.get(event.step, event.at)
        self._last_at[event.step] = event.at
        self._open[key] = _OpenTurn(
            seq=seq,
            step=event.step,
            round=event.round,
            text=response.text,
            actions=actions,
            problems=problems,
            tokens=usage.total_tokens,
            # the provider's count, or the offline estimate of the very request sent
            # (after any compression): the context's size either way. A model that
            # reported no usage at all leaves the runtime's estimate, recorded with the
            # call (0 in a call recorded before it was)
            prompt_tokens=usage.input_tokens or event.prompt_estimate,
            prompt_estimated=usage.estimated or not usage.input_tokens,
            cost=usage.cost or 0.0,
            started=started,
            last=event.at,
            pending=set(actions),
        )
        if not actions:
            done.append(self._complete(key))
        return done

    def _tool_started(self, seq: int, event: ToolCallStarted) -> None:
        turn = self._open.get((event.step, event.round, event.turn))
        if turn is not None and event.call_id in turn.actions:
            turn.actions[event.call_id] = turn.actions[event.call_id].model_copy(
                update={"seq": seq}
            )

    def _tool_ended(self, seq: int, event: ToolCallEnded) -> list[Observation]:
        key = (event.step, event.round, event.turn)
        turn = self._open.get(key)
        self._last_at[event.step] = event.at
        if event.tool == FINISH_TOOL and event.ok:
            attempt = self._attempts.get(event.step)
            if attempt is not None:
                attempt.finished = True
        if turn is None or event.call_id not in turn.actions:
            return []
        turn.actions[event.call_id] = turn.actions[event.call_id].model_copy(
            update={"seq": seq, "ok": event.ok, "output": event.content, "error": event.error}
        )
        problem = None if event.ok else refusal_problem(event.error)
        if problem is not None:  # refused before it ran: it changed nothing
            turn.problems.append(problem)
            action = turn.actions[event.call_id]
            turn.actions[event.call_id] = action.model_copy(update={"writes": ()})
        turn.last = event.at
        turn.pending.discard(event.call_id)
        return [self._complete(key)] if not turn.pending else []

    def _complete(self, key: tuple[str, int, int]) -> Turn:
        turn = self._open.pop(key)
        problem = next((p for p in _PRECEDENCE if p in turn.problems), None)
        observed = Turn(
            index=self._turns,
            seq=turn.seq,
            step=turn.step,
            round=turn.round,
            text=turn.text,
            actions=tuple(turn.actions.values()),
            problem=problem,
            tokens=turn.tokens,
            prompt_tokens=turn.prompt_tokens,
            prompt_estimated=turn.prompt_estimated,
            cost=turn.cost,
            seconds=max(turn.last - turn.started, 0.0),
        )
        self._turns += 1
        return observed

    # --- step ends ------------------------------------------------------------------

    def _attempt_ended(self, seq: int, event: StepAttemptEnded) -> list[Observation]:
        out: list[Observation] = [
            self._complete(key) for key in list(self._open) if key[0] == event.step
        ]
        attempt = self._attempts.pop(event.step, None)
        if event.step not in self._agent_steps:
            return out
        started = attempt.started if attempt is not None else event.at
        wrote = (event.files.wrote if event.files is not None else None) or {}
        out.append(
            StepEnd(
                seq=seq,
                step=event.step,
                attempt=event.attempt,
                ok=event.ok,
                seconds=max(event.at - started, 0.0),
                cost=attempt.cost if attempt is not None else 0.0,
                calls=attempt.calls if attempt is not None else 0,
                claimed_done=attempt.finished if attempt is not None else False,
                failed_checks=tuple(c.check for c in event.checks if not c.passed),
                wrote=tuple(sorted(p for p, digest in wrote.items() if digest != DELETED)),
                deleted=tuple(sorted(p for p, digest in wrote.items() if digest == DELETED)),
            )
        )
        return out


def observations_from_events(
    stored_events: Iterable[StoredEvent | tuple[int, AnyEvent]],
) -> tuple[list[Observation], RunFacts]:
    """A recorded run's observations, in order, and what is known about the run.

    Args:
        stored_events: the run's events as the store gives them, or ``(seq, event)``
            pairs, in order.
    """
    trace = EventTrace()
    observations: list[Observation] = []
    for item in stored_events:
        seq, event = (item.seq, item.event) if isinstance(item, StoredEvent) else item
        observations += trace.feed(seq, event)
    observations += trace.flush()
    return observations, trace.facts
