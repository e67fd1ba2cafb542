"""One agent step's conversation in one round, replayed where it was recorded.

Every model call and tool call of an agent step goes through a :class:`StepSession`.
It first loads what the round already recorded (a crash, or a pause for approval,
ended an earlier attempt part-way). Then, turn by turn:

- a model call whose request hashes the same as the recorded one gets the recorded
  response: no call, no cost. The first request that differs ends the replay, and
  everything from there on is called and recorded afresh;
- a tool call with a recorded result gets that result; the tool does not run again.
  One that started and never ended (the process died in it) is run again only if it
  only reads. A side-effecting one is never run again here: its leftover processes
  (found by the call's idempotency key) are waited for or killed first, then the
  tool's own probe, if it has one, looks whether the effect is in place. What was
  found is recorded with the call's end and told to the model: done, or unknown
  with what is known;
- every message is sent with secrets redacted (:mod:`trestle.core.redaction`): a tool's or
  a check's output may have printed one;
- reminders, monitors' corrections and compressions reuse their recorded text, so the
  replayed conversation is the very one the model saw.

Every :data:`SAVE_EVERY` turns of live work the conversation is saved
(:class:`~trestle.core.events.ConversationSaved`); a later attempt of the round loads
its opening and what followed its latest save, and starts there instead of replaying
every turn from the first.

What must be durable before the session goes on is: the next model call's
reservation before the call, a side-effecting tool call's start before the tool runs,
and the model's answer before any such tool. The rest is held and joins the next
commit, so a turn that only reads takes one commit: its answer, its calls' starts and
ends, the save and the reminder ride with the next call's reservation
(:meth:`StepSession.open_turn`), and the monitors see all of it before the next call is
decided on. A crash before that commit loses the held events, and a read is simply run
again, as after a crash during it; an attempt that ends any other way records them
first (:meth:`StepSession.flush`).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace

from pydantic import ValidationError

from trestle.agent.context import (
    SUMMARY_HEADER,
    Summariser,
    SummaryRequest,
    compress_if_needed,
    is_summary,
)
from trestle.agent.prompts import correction, told_requirement
from trestle.agent.reminders import StepProgress, goal_reminder, reminder_due
from trestle.agent.unknown import decided, unknown_ask, unknown_hash
from trestle.core.budget import Dimension, breach
from trestle.core.conversation import (
    MAX_ANSWER,
    Message,
    Model,
    ModelResponse,
    RequestHasher,
    ToolCall,
    ToolSchema,
)
from trestle.core.errors import ProviderResponseError
from trestle.core.estimate import TokenTally
from trestle.core.events import (
    AnyEvent,
    ContextCompressed,
    ConversationSaved,
    Leftovers,
    ModelCalled,
    ModelCallHeld,
    ModelCallReserved,
    ReminderInjected,
    RoundOpened,
    ToolAsk,
    ToolCallEnded,
    ToolCallStarted,
    ToolProbe,
    tool_call_key,
)
from trestle.core.memo import same_start
from trestle.core.records.agent import (
    AgentSettings,
    ContextBudget,
    Phase,
    Pins,
    ReminderPolicy,
    ReminderRecord,
)
from trestle.core.redaction import redact, secret_values
from trestle.core.step_state import transcript_key
from trestle.engines.work import Release, StepWork
from trestle.execution.processes import reap
from trestle.models.pricing import PriceTable
from trestle.tools.base import GatedCall, GateVerdict, Observation, Tool, ToolContext, ToolGate
from trestle.tools.registry import ToolRegistry

# Loop iterations between saves of the conversation: a resume replays at most this many
# turns (each costs a hash of what it added, about half a millisecond) whatever the
# round's length; a save is an event of references to texts the store already holds.
SAVE_EVERY = 20

CallKey = tuple[int, str]  # (turn, call id): call ids repeat across turns in some models

STOPPED = "the run stopped while this call was running"
LEFTOVERS = {
    "none": "none of its processes was still running when it was checked after the restart",
    "finished": "its processes were still running when the run resumed; they were "
    "waited for and have finished",
    "killed": "its processes were still running when the run resumed and were killed, "
    "so it may have done part of its work",
}


REQUIREMENT = "requirement:"  # the told key of the run's Nth requirement: requirement:N


def is_requirement(key: str) -> bool:
    return key.startswith(REQUIREMENT) and key.removeprefix(REQUIREMENT).isdigit()


def requirement_number(record: ReminderRecord) -> int:
    key = record.alert or ""
    return int(key.removeprefix(REQUIREMENT)) if is_requirement(key) else 0


class Abandon(Exception):
    """The attempt ends here as failed: a monitor's alert called for a fresh start."""


class Pause(Exception):
    """The attempt stops here to wait: for a human's approval of ``ask``, or for the
    budget (``ask`` None). Not a failure: the step goes on from here later."""

    def __init__(self, reason: str, ask: ToolAsk | None = None) -> None:
        super().__init__(reason)
        self.reason, self.ask = reason, ask


@dataclass
class Recorded:
    """What one round recorded before, by turn."""

    opened: RoundOpened | None = None
    saved: ConversationSaved | None = None  # the latest: what came before it is not read
    models: dict[int, ModelCalled] = field(default_factory=dict)
    started: dict[CallKey, ToolCallStarted] = field(default_factory=dict)
    ended: dict[CallKey, ToolCallEnded] = field(default_factory=dict)
    reminders: dict[int, ReminderInjected] = field(default_factory=dict)
    corrections: dict[int, ReminderInjected] = field(default_factory=dict)  # monitors'
    # requirements a human added while the round went on, told before each turn
    requirements: dict[int, list[ReminderInjected]] = field(default_factory=dict)
    compressions: dict[int, ContextCompressed] = field(default_factory=dict)

    @property
    def last_turn(self) -> int:
        return max(self.models, default=self.saved.turn if self.saved is not None else 0)

    @property
    def told(self) -> set[str]:
        """The keys of the monitor alerts (and ``requirement:N``, of the requirements)
        already told to the model this round."""
        told = {e.record.alert for e in self.corrections.values() if e.record.alert}
        told |= {e.record.alert for es in self.requirements.values() for e in es if e.record.alert}
        return told | set(self.saved.told if self.saved is not None else ())

    @classmethod
    def of(cls, events: Sequence[AnyEvent]) -> Recorded:
        found = cls()
        for event in events:
            match event:
                case RoundOpened():
                    found.opened = found.opened or event
                case ConversationSaved():
                    found.saved = event
                case ModelCalled(turn=turn):
                    found.models[turn] = event  # after a divergence the later one wins
                case ToolCallStarted(turn=turn, call_id=cid):
                    found.started[(turn, cid)] = event
                case ToolCallEnded(turn=turn, call_id=cid):
                    found.ended[(turn, cid)] = event
                case ReminderInjected(record=record) if record.reason == "monitor":
                    found.corrections[record.turn] = event
                case ReminderInjected(record=record) if record.reason == "requirement":
                    found.requirements.setdefault(record.turn, []).append(event)
                case ReminderInjected(record=record):
                    found.reminders[record.turn] = event
                case ContextCompressed(turn=turn):
                    found.compressions[turn] = event
        return found

    def forget_from(self, turn: int) -> None:
        """Drop what was recorded from ``turn`` on: the conversation took another way."""
        self.models = {t: e for t, e in self.models.items() if t < turn}
        self.started = {k: e for k, e in self.started.items() if k[0] < turn}
        self.ended = {k: e for k, e in self.ended.items() if k[0] < turn}
        self.reminders = {t: e for t, e in self.reminders.items() if t < turn}
        self.corrections = {t: e for t, e in self.corrections.items() if t < turn}
        self.requirements = {t: e for t, e in self.requirements.items() if t < turn}
        self.compressions = {t: e for t, e in self.compressions.items() if t < turn}


class StepSession:
    """The model and tool calls of one agent step's round; see the module docstring.

    Attributes:
        turn: model turns taken so far (replayed or live).
        replayed: model calls answered from the record.
        live: model calls actually made.
    """

    def __init__(
        self,
        work: StepWork,
        *,
        model: Model,
        settings: AgentSettings,
        round: int,
        recorded: Recorded,
        prices: PriceTable | None = None,
        budget_lock: asyncio.Lock | None = None,
        serial_lock: asyncio.Lock | None = None,
        deadline: asyncio.Timeout | None = None,
    ) -> None:
        self.work, self.model, self.settings, self.round = work, model, settings, round
        self.deadline = deadline  # the attempt's timeout: a wait to run alone is not its time
        self.recorded, self.prices = recorded, prices
        # shared by the run's steps: a check and its reservation are one move
        self.budget_lock = budget_lock or asyncio.Lock()
        # shared by the run's steps too: a serial tool's call and its recorded end are one
        self.serial_lock = serial_lock or asyncio.Lock()
        self.step_id = work.step.id
        self.attempt = work.state.steps[self.step_id].attempt
        self.turn = 0
        self.replayed = self.live = 0
        self._last_reminder: int | None = None
        self._requirements_told: list[int] = []  # this round's, by number (1: the first)
        # what the driver and the step's processes could print that no model may read
        self.secrets = secret_values({**os.environ, **dict(work.step.env or {})})
        # the last conversation and it redacted: it is sent again every turn, grown, and
        # only its new messages need the regular expressions run over them
        self._redaction: tuple[list[Message], list[Message]] = ([], [])
        self._tally = TokenTally()  # and only they need counting
        # the conversation before redaction, measured every turn for compression
        self._context_tally = TokenTally()
        # events that need not be durable yet (see the module docstring): the next
        # commit takes them
        self._held: list[AnyEvent] = []
        self._reserved: tuple[int, dict[Dimension, float]] | None = None  # turn, worst case
        self._hasher = RequestHasher()  # the conversation grows: hash only what is new
        # what lets the runs above a delegated child go on once a call that ran alone ended
        self._release: Release | None = None

    @classmethod
    async def open(
        cls,
        work: StepWork,
        *,
        model: Model,
        settings: AgentSettings,
        prices: PriceTable | None = None,
        budget_lock: asyncio.Lock | None = None,
        serial_lock: asyncio.Lock | None = None,
        deadline: asyncio.Timeout | None = None,
    ) -> StepSession:
        round = work.state.steps[work.step.id].round
        seqs = work.state.transcript(work.step.id, round)
        saved = work.state.conversations.get(transcript_key(work.step.id, round))
        recorded = None
        if saved is not None and seqs:  # the round's opening, then from its latest save
            tail = await work.load([seqs[0], *(seq for seq in seqs if seq >= saved)])
            if (
                len(tail) > 1
                and isinstance(tail[0], RoundOpened)
                and isinstance(tail[1], ConversationSaved)
            ):
                recorded = Recorded.of(tail)
        recorded = recorded or Recorded.of(await work.load(seqs))
        return cls(
            work,
            model=model,
            settings=settings,
            round=round,
            recorded=recorded,
            prices=prices,
            budget_lock=budget_lock,
            serial_lock=serial_lock,
            deadline=deadline,
        )

    async def _record(self, event: AnyEvent, *with_it: AnyEvent) -> None:
        """Make ``event`` (and ``with_it``) durable, with the model's answer still held,
        in one commit."""
        events, self._held = [*self._held, *with_it, event], []
        await self.work.record(events)

    async def _keep(self, event: AnyEvent, *with_it: AnyEvent, hold: bool) -> None:
        """``event`` (and ``with_it``) recorded now (see :meth:`_record`), or, if it may
        ``hold``, left for the next commit."""
        if hold:
            self._held += [*with_it, event]
        else:
            await self._record(event, *with_it)

    async def flush(self) -> None:
        """Make what is held durable now (see the module docstring)."""
        if self._held:
            events, self._held = self._held, []
            await self.work.record(events)

    def leave(self, note: Callable[[AnyEvent], None]) -> None:
        """Hand the held events to ``note`` (the engine's next commit) without waiting."""
        held, self._held = self._held, []
        for event in held:
            note(event)

    def _now(self) -> float:
        return self.work.clock()

    # --- the conversation's frame ------------------------------------------------------

    async def opening(self, pins: Pins, failure: str | None) -> RoundOpened:
        """The round's pins and failure: as recorded, or recorded now."""
        if self.recorded.opened is not None:
            return self.recorded.opened
        opened = RoundOpened(
            at=self._now(), step=self.step_id, round=self.round, pins=pins, failure=failure
        )
        await self._record(opened)
        self.recorded.opened = opened  # the requirements it began with are not news
        return opened

    async def remind(
        self,
        pins: Pins,
        phase: Phase,
        policy: ReminderPolicy,
        current: StepProgress | None = None,
    ) -> Message | None:
        """The goal reminder due before the next model turn, if one is."""
        turn = self.turn + 1
        recorded = self.recorded.reminders.get(turn)
        if recorded is not None:
            self._last_reminder = turn
            return Message.user(recorded.record.text)
        reason = reminder_due(
            policy, turn=turn, last_reminder_turn=self._last_reminder, phase_changed=turn == 1
        )
        if reason is None:
            return None
        reminder = goal_reminder(pins, phase=phase, turn=turn, reason=reason, current_step=current)
        self._held.append(  # recorded with the turn's reservation, before its answer
            ReminderInjected(
                at=self._now(), step=self.step_id, round=self.round, record=reminder.record
            )
        )
        self._last_reminder = turn
        return reminder.message

    async def correct(self, phase: Phase) -> Message | None:
        """A monitor's corrective message due before the next model turn, if one is:
        as recorded while replaying, else for the first inject alert not yet told."""
        turn = self.turn + 1
        recorded = self.recorded.corrections.get(turn)
        if recorded is not None:
            return Message.user(recorded.record.text)
        if turn <= self.recorded.last_turn:
            return None  # still replaying: only what was told then is told now
        told = self.recorded.told
        state = self.work.state
        due = [
            r.alert
            for r in state.alerts_for(self.step_id, self.round, "inject")
            if r.alert.key not in told
        ]
        if not due:
            return None
        record = ReminderRecord(
            turn=turn,
            phase=phase,
            reason="monitor",
            step_id=self.step_id,
            text=correction(due[0]),
            alert=due[0].key,
        )
        event = ReminderInjected(at=self._now(), step=self.step_id, round=self.round, record=record)
        self._held.append(event)  # with the reservation the longer request needs
        self.recorded.corrections[turn] = event
        return Message.user(record.text)

    async def requirements(self, phase: Phase) -> list[Message]:
        """The requirements a human added to the run (``trestle tell``) since the round
        opened and not yet told, due before the next model turn: as recorded while
        replaying (so a resume tells each exactly once), else each one not yet told."""
        turn = self.turn + 1
        recorded = self.recorded.requirements.get(turn)
        if recorded is not None:
            told = [e.record for e in recorded]
        elif turn <= self.recorded.last_turn:
            return []  # still replaying: only what was told then is told now
        else:
            told = self._requirements_due(turn, phase)
            if told:  # durable before the call that reads it: a resume tells it once
                await self.flush()
        self._requirements_told += [requirement_number(r) for r in told]
        return [Message.user(r.text) for r in told]

    def _requirements_due(self, turn: int, phase: Phase) -> list[ReminderRecord]:
        opened = self.recorded.opened
        requirements = self.work.state.requirements
        known = len(opened.pins.requirements) if opened is not None else len(requirements)
        told = self.recorded.told
        due = []
        for number, text in enumerate(requirements[known:], known + 1):
            key = f"{REQUIREMENT}{number}"
            # told this round: as recorded, or by this session (a replay that took
            # another way forgets the record from there, not what the model read)
            if key in told or number in self._requirements_told:
                continue
            record = ReminderRecord(
                turn=turn,
                phase=phase,
                reason="requirement",
                step_id=self.step_id,
                text=told_requirement(text),
                alert=key,
            )
            event = ReminderInjected(
                at=self._now(), step=self.step_id, round=self.round, record=record
            )
            self._held.append(event)  # recorded with the turn's reservation, before its call
            self.recorded.requirements.setdefault(turn, []).append(event)
            due.append(record)
        return due

    def pinned(self, pins: Pins) -> Pins:
        """The round's pins with the requirements told during it: they survive every
        compression after they were told, as those it began with do."""
        if not self._requirements_told:
            return pins
        requirements = self.work.state.requirements
        added = tuple(
            requirements[n - 1] for n in self._requirements_told if 0 < n <= len(requirements)
        )
        return pins.model_copy(update={"requirements": (*pins.requirements, *added)})

    async def compact(
        self,
        messages: list[Message],
        pins: Pins,
        budget: ContextBudget,
        tools: Sequence[ToolSchema],
        summariser: Summariser | None,
    ) -> list[Message]:
        """The conversation, compressed if it outgrew the budget (as it was before)."""
        turn = self.turn + 1
        recorded = self.recorded.compressions.get(turn)
        if recorded is not None:
            summary = recorded.summary

            async def same_summary(request: SummaryRequest) -> str:
                return summary

            again = await compress_if_needed(
                messages,
                pins,
                budget,
                summariser=same_summary,
                tools=tools,
                estimate=self._context_tally,
            )
            return list(again.messages) if again is not None else messages
        if turn <= self.recorded.last_turn:
            # replaying: a compression is recorded before its turn's model call, so a
            # turn whose call was recorded without one had none; measuring the
            # conversation again for every turn was a fifth of a resume's replay
            return messages
        result = await compress_if_needed(
            messages, pins, budget, summariser=summariser, tools=tools, estimate=self._context_tally
        )
        if result is None:
            return messages
        summary = next(
            (
                m.content.removeprefix(SUMMARY_HEADER + "\n")
                for m in result.messages
                if is_summary(m)
            ),
            "",
        )
        await self._record(
            ContextCompressed(
                at=self._now(),
                step=self.step_id,
                round=self.round,
                turn=turn,
                record=result.record,
                summary=summary,
            )
        )
        return list(result.messages)

    # --- where a resume starts -----------------------------------------------------------

    def resume_point(self) -> ConversationSaved | None:
        """The round's latest save, with the session moved to it; None: start at turn 1."""
        saved = self.recorded.saved
        if saved is not None:
            self.turn, self._last_reminder = saved.turn, saved.last_reminder
            self._requirements_told = sorted(
                int(key.removeprefix(REQUIREMENT)) for key in saved.told if is_requirement(key)
            )
        return saved

    def save_due(self, iteration: int, start: int) -> bool:
        """Whether to save the conversation before this iteration: every
        :data:`SAVE_EVERY` iterations of live (not replayed) work."""
        live = self.turn >= self.recorded.last_turn
        return live and iteration > start and iteration % SAVE_EVERY == 0

    def save(self, messages: Sequence[Message], iteration: int) -> None:
        """Save the conversation (see :class:`ConversationSaved`), recorded in the next
        commit: the next model call's reservation at the latest. Its long texts are the
        ones the round already recorded, which the store keeps once."""
        event = ConversationSaved(
            at=self._now(),
            step=self.step_id,
            round=self.round,
            turn=self.turn,
            iteration=iteration,
            messages=tuple(messages),
            last_reminder=self._last_reminder,
            told=tuple(sorted(self.recorded.told)),
        )
        self._held.append(event)

    # --- calls -------------------------------------------------------------------------

    def _may_go_on(self) -> None:
        """Before a live model call: stop for the budget, a monitor's stop or pause, or
        end the attempt if a monitor asked for a fresh start of this round."""
        state = self.work.state
        if state.stopped is not None:
            raise Pause(state.stopped)
        if state.held:
            raise Pause("the run is paused: a human must decide whether it goes on")
        restart = state.alerts_for(self.step_id, self.round, "replan")
        if restart:
            alert = restart[0].alert
            raise Abandon(f"the {alert.monitor} monitor saw {alert.message}; {alert.suggestion}")

    async def complete(
        self, messages: Sequence[Message], tools: Sequence[ToolSchema]
    ) -> ModelResponse:
        """The model's answer for the next turn: replayed if recorded, else called."""
        self.turn += 1
        messages = self._redacted(messages)
        settings = {
            "model": self.model.name,
            "max_tokens": self.settings.max_tokens,
            "temperature": self.settings.temperature,
        }
        digest = self._hasher.hash(messages, tools, settings)  # ModelRequest.hash's
        recorded = self.recorded.models.get(self.turn)
        if recorded is not None and recorded.request_hash == digest:
            self.replayed += 1
            return recorded.response
        if recorded is not None:
            self.recorded.forget_from(self.turn)
        self._may_go_on()
        prompt = self._tally(messages, tools)  # the request as sent, compressed or not
        worst = self.worst_case(prompt)
        if not self._covered(worst):  # a correction made the request longer, or a replay ended
            await self._reserve(self.turn, worst)
        seek = getattr(self.model, "seek", None)  # a trajectory answers by turn
        if seek is not None:
            seek(self.turn)
        if self.work.calling is not None:
            self.work.calling()
        try:
            response = await self.model.complete(
                messages,
                tools,
                max_tokens=self.settings.max_tokens,
                temperature=self.settings.temperature,
            )
        except ValidationError as exc:
            # a model of the user's own built a record that cannot be (a cost of inf,
            # a count below zero): a failed call, like a provider's unreadable reply
            raise ProviderResponseError(
                f"{self.model.name} answered with what cannot be recorded: {_first(exc)}",
                provider=self.model.name,
            ) from exc
        if response.length > MAX_ANSWER:  # a run that holds it could not be read back
            raise ProviderResponseError(
                f"{self.model.name} answered with {response.length:,} characters, more "
                f"than the {MAX_ANSWER:,} an answer may carry; it was not recorded",
                provider=self.model.name,
            )
        response = self._priced(response)
        self.live += 1
        called = ModelCalled(
            at=self._now(),
            step=self.step_id,
            round=self.round,
            turn=self.turn,
            request_hash=digest,
            response=response,
            model=self.model.name,
            prompt_estimate=prompt,
        )
        if response.tool_calls:
            self._held.append(called)  # recorded before any tool that changes something
        else:
            await self._record(called)
        return response

    def _redacted(self, messages: Sequence[Message]) -> list[Message]:
        """``messages`` with secrets redacted; those that begin the conversation as the
        very messages redacted last time are not scanned again, nor is a text the last
        conversation held elsewhere (the secrets are fixed for the session, so the same
        text redacts the same): a compression keeps the latest turns' messages behind a
        new summary, and a resume's first turn measures the saved conversation before
        it compresses it."""
        last, done = self._redaction
        kept = same_start(last, messages)
        out = done[:kept]
        if kept == len(messages):
            self._redaction = (list(messages), out)
            return out
        # the last conversation's other texts, redacted: only those still sent are kept
        earlier = {m.content: r.content for m, r in zip(last[kept:], done[kept:], strict=True)}
        for message in messages[kept:]:
            text = message.content
            redacted = earlier.get(text)
            if redacted is None:
                redacted = redact(text, self.secrets)
            out.append(
                message if redacted == text else message.model_copy(update={"content": redacted})
            )
        self._redaction = (list(messages), out)
        return out

    def worst_case(self, prompt: int) -> dict[Dimension, float]:
        """The most the next call can spend: the prompt as estimated (``prompt``
        tokens) plus the most tokens its answer may have (the context's limit when no
        maximum is set), and their price where the model's price is known."""
        answer = self.settings.max_tokens or self.settings.context.limit
        cost = None
        if self.prices is not None:
            cost = self.prices.cost(self.model.name, prompt, answer)
        return {"tokens": float(prompt + answer), "cost": cost or 0.0}

    async def open_turn(self, messages: Sequence[Message], tools: Sequence[ToolSchema]) -> None:
        """The turn's commit, before anything else of it is decided: what the last turn
        held, with the reservation of a model call for ``messages``. After it the
        monitors have seen everything the last turn did, so a correction, a stop or a
        pause before the call is decided on all of it. Nothing while replaying: a
        recorded call was reserved when it was made."""
        if self.turn + 1 <= self.recorded.last_turn:
            return
        self._may_go_on()
        prompt = self._tally(self._redacted(messages), tools)
        await self._reserve(self.turn + 1, self.worst_case(prompt))

    def _covered(self, worst: dict[Dimension, float]) -> bool:
        """Whether this turn's reservation holds at least ``worst``."""
        if self._reserved is None or self._reserved[0] != self.turn:
            return False
        held = self._reserved[1]
        return all(worst[dim] <= held[dim] for dim in worst)

    def _settled(self, worst: dict[Dimension, float]) -> dict[Dimension, float]:
        """``worst`` as the budget sees it once the held events are applied: the answer
        held since the last turn spent, and the step's reservation for it released (a
        new reservation replaces the step's last one)."""
        ask = dict(worst)
        for dim, amount in self.work.state.steps[self.step_id].model_reserved.items():
            ask[dim] = ask.get(dim, 0.0) - amount
        for event in self._held:
            if isinstance(event, ModelCalled):
                usage = event.response.usage
                ask["tokens"] = ask.get("tokens", 0.0) + usage.total_tokens
                ask["cost"] = ask.get("cost", 0.0) + (usage.cost or 0.0)
        return ask

    async def _reserve(self, turn: int, worst: dict[Dimension, float]) -> None:
        """Hold turn ``turn``'s call's worst case against the run's budget before it is
        sent, or hold the call back (and pause the step) when that would pass a limit."""
        tokens, cost = int(worst["tokens"]), worst["cost"]
        async with self.budget_lock:
            state = self.work.state
            over = breach(state.plan.budget, state.tally, self._settled(worst))
            if over is not None:
                self._reserved = None
                reason = f"budget: the next model call {over.describe()}"
                await self._record(
                    ModelCallHeld(
                        at=self._now(), step=self.step_id, tokens=tokens, cost=cost, reason=reason
                    )
                )
                raise Pause(reason)
            await self._record(
                ModelCallReserved(
                    at=self._now(),
                    step=self.step_id,
                    round=self.round,
                    turn=turn,
                    tokens=tokens,
                    cost=cost,
                )
            )
            self._reserved = (turn, worst)

    def _priced(self, response: ModelResponse) -> ModelResponse:
        usage = response.usage
        if usage.cost is not None or self.prices is None:
            return response
        cost = self.prices.cost(
            response.model or self.model.name, usage.input_tokens, usage.output_tokens
        )
        if cost is None:
            return response
        return response.model_copy(update={"usage": usage.model_copy(update={"cost": cost})})

    async def call_tool(
        self,
        call: ToolCall,
        registry: ToolRegistry,
        ctx: ToolContext,
        gate: ToolGate,
        *,
        phase: Phase,
        natures: frozenset[str],
        offered: Collection[str],
    ) -> Observation:
        """One tool call of the current turn: its recorded result, or run through the
        registry (parse, phase, gate) with its start recorded first.

        Raises:
            Pause: the gate wants a human to decide first.
        """
        key = (self.turn, call.id)
        ended = self.recorded.ended.get(key)
        if ended is not None:
            return Observation(
                ok=ended.ok, content=ended.content, error=ended.error, data=ended.data
            )
        serial = call.name in registry and registry.get(call.name).serial
        try:
            if not serial:
                return await self._call(call, registry, ctx, gate, phase, natures, offered)
            async with self.serial_lock:  # its end recorded before another serial call runs
                return await self._call(call, registry, ctx, gate, phase, natures, offered)
        except asyncio.CancelledError:
            # stopped: the runs above a delegated child go on as its delegating
            # steps' attempts end (no commit may be waited for any more)
            self._release = None
            raise
        finally:
            release, self._release = self._release, None
            if release is not None:  # the call that ran alone ended, or paused
                await release()

    async def _call(
        self,
        call: ToolCall,
        registry: ToolRegistry,
        ctx: ToolContext,
        gate: ToolGate,
        phase: Phase,
        natures: frozenset[str],
        offered: Collection[str],
    ) -> Observation:
        await self.work.workspace_ready()  # nothing runs in it before its checkpoint
        unended = self.recorded.started.get((self.turn, call.id))
        probe: ToolProbe | None = None
        # a read that takes no turn with others may be run again after a crash: its
        # start and end wait for the next commit. Not one a human had to approve (an
        # open world's, or any call of a server an operator's rule holds): that is an
        # effect like a write's, never run again, its start recorded before it runs
        reads = _only_reads(registry, call.name) and not _approved(unended)
        holds = reads and not registry.get(call.name).serial
        # an idempotent call may run again too, its start recorded once; not one a
        # human approved: the approval was of one call, and whether it ran is unknown
        again = (
            unended is not None
            and not reads
            and _idempotent(registry, call.name)
            and not _approved(unended)
        )
        if unended is not None and not reads and not again:
            observation, probe = await self._probe(unended, registry, ctx)
            if not probe.done and _escalates(registry, call.name):
                observation = self._escalated(call, unended.key, registry, ctx, observation)
        else:
            ctx = replace(
                ctx,
                idempotency_key=tool_call_key(
                    ctx.run_id, self.step_id, self.attempt, self.round, self.turn, call.id
                ),
            )
            recording = _RecordingGate(
                gate, self, call, ctx.idempotency_key, holds=holds, again=again
            )
            observation = await registry.call(
                call.name,
                call.arguments,
                ctx,
                recording,
                allowed_natures=natures,  # type: ignore[arg-type]
                phase=str(phase),
                offered=offered,
            )
            if observation.deferred:
                await self.flush()
                raise Pause(observation.error or "waits for a human", getattr(gate, "ask", None))
            if observation.data.get("outcome") == "unknown" and _escalates(registry, call.name):
                # its end is not recorded: the replay after the human's word probes it
                await self.flush()
                key = (unended.key if unended is not None else None) or ctx.idempotency_key
                observation = self._escalated(call, key or "", registry, ctx, observation)
        ended = ToolCallEnded(
            at=self._now(),
            step=self.step_id,
            round=self.round,
            turn=self.turn,
            call_id=call.id,
            tool=call.name,
            ok=observation.ok,
            content=observation.content,
            error=observation.error,
            data=observation.data,
            probe=probe,
        )
        # what the tool did to the run's records (a delivery, a board write) is recorded
        # in the same commit as what the model is shown: both, or neither
        await self._keep(ended, *observation.records, hold=holds and not observation.records)
        return observation

    async def _probe(
        self, unended: ToolCallStarted, registry: ToolRegistry, ctx: ToolContext
    ) -> tuple[Observation, ToolProbe]:
        """A side-effecting call a crash cut short: its leftover processes gone first
        (waited for while its timeout could still let them run, then killed), then the
        tool's own probe. Never runs the call again."""
        found: Leftovers = "none"
        waited = 0.0
        if unended.key:  # recorded before keys were: its processes cannot be found
            timeout = ctx.command_timeout
            wait = max(0.0, min(timeout, unended.at + timeout - self._now()))
            found, waited = await reap(unended.key, None, wait)
        ctx = replace(ctx, idempotency_key=unended.key or None)
        evidence = await registry.probe(unended.tool, unended.arguments, ctx)
        probe = ToolProbe(
            leftovers=found,
            waited=round(waited, 3),
            done=evidence is not None,
            evidence=evidence or "",
        )
        known = LEFTOVERS[found]
        if evidence is not None:
            return Observation.success(
                f"{STOPPED}; {known}, and a check found that it took effect: {evidence}. "
                "Do not do it again.",
                data={"probed": "done"},
            ), probe
        how = (
            ""
            if _has_probe(registry, unended.tool)
            else (f"; {unended.tool} has no way to check its own effect")
        )
        return Observation.failure(
            f"{STOPPED}, so whether it took effect is unknown{how}; {known}. Look at the "
            "workspace to see whether it did before doing it again",
            data={"probed": "unknown"},
        ), probe

    def _escalated(
        self,
        call: ToolCall,
        key: str,
        registry: ToolRegistry,
        ctx: ToolContext,
        observation: Observation,
    ) -> Observation:
        """A destructive call's unknown outcome, as a human decided to go on after it
        (:mod:`trestle.agent.unknown`): what the model is told, or the attempt paused
        for the decision, or failed on a rejection."""
        digest = unknown_hash(self.step_id, call.name, call.arguments, key)
        found = decided(self.work.state, self.step_id, digest)
        approval = found.approval
        if approval is not None and found.approved:
            return Observation.failure(
                f"{observation.content.removeprefix('error: ')}. A human ({approval.by}) "
                "was asked and let the step go on: look at what it would have changed "
                "before doing it again",
                data={**observation.data, "escalated": "approved"},
            )
        if approval is not None and found.rejected:
            why = f": {approval.reason}" if approval.reason else ""
            raise Abandon(
                f"{call.name}'s outcome is unknown, and a human ({approval.by}) did not "
                f"let the step go on{why}"
            )
        why = observation.error or observation.content
        facts = registry.facts(call.name, call.arguments, ctx)
        ask = unknown_ask(call.name, call.arguments, facts, digest, why)
        raise Pause(f"{call.name}: outcome unknown, a human must decide: {why}", ask)

    async def alone(self, call: ToolCall) -> bool:
        """Wait until ``call`` (one a human approved that runs a command) may run with
        nothing else of the run beside it (see :attr:`StepWork.alone`); False where the
        engine cannot say so."""
        if self.work.alone is None:
            return False
        loop = asyncio.get_running_loop()
        began = loop.time()
        self._release = await self.work.alone(f"{self.round}.{self.turn}.{call.id}")
        # the wait is the run's, not the attempt's: its timeout moves on by as much, or
        # a step beside it that ran long would leave the approved command cut short
        when = self.deadline.when() if self.deadline is not None else None
        if self.deadline is not None and when is not None:
            self.deadline.reschedule(when + loop.time() - began)
        return True

    async def started(
        self, call: ToolCall, nature: str, key: str | None, verdict: GateVerdict, *, holds: bool
    ) -> None:
        """Record the call's start, with why the gate let it run: before it runs, unless
        it ``holds`` (see :meth:`_call`)."""
        started = ToolCallStarted(
            at=self._now(),
            step=self.step_id,
            round=self.round,
            turn=self.turn,
            call_id=call.id,
            tool=call.name,
            arguments=call.arguments,
            nature=nature,
            key=key or "",
            gate=verdict.gate,
            facts=verdict.facts,
        )
        await self._keep(started, hold=holds)


def _first(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(map(str, error["loc"]))
    got = repr(error["input"])
    got = got if len(got) <= 60 else got[:57] + "..."
    return f"{exc.title}.{where}={got}: {error['msg']}"


def _has_probe(registry: ToolRegistry, name: str) -> bool:
    return name in registry and type(registry.get(name)).probe is not Tool.probe


def _idempotent(registry: ToolRegistry, name: str) -> bool:
    return name in registry and registry.get(name).idempotent


def _escalates(registry: ToolRegistry, name: str) -> bool:
    return name in registry and registry.get(name).escalates


def _approved(started: ToolCallStarted | None) -> bool:
    """Whether a recorded start ran on a human's approval."""
    return started is not None and started.gate is not None and started.gate.approval is not None


def _only_reads(registry: ToolRegistry, name: str) -> bool:
    return name in registry and registry.get(name).nature in ("read", "test")


class _RecordingGate:
    """Asks the real gate; when it allows, records the call's start before it runs (or
    holds it for the next commit, for a read)."""

    def __init__(
        self,
        inner: ToolGate,
        session: StepSession,
        call: ToolCall,
        key: str | None,
        *,
        holds: bool,
        again: bool = False,
    ) -> None:
        self.inner, self.session, self.call, self.key = inner, session, call, key
        self.holds, self.again = holds, again  # again: its start is recorded already

    async def review(self, call: GatedCall) -> GateVerdict:
        slot = (self.session.round, self.session.turn, self.call.id)
        call = call.model_copy(update={"slot": slot})
        verdict = await self.inner.review(call)
        if verdict.decision == "allow" and verdict.arguments is not None:
            # approved as a human edited it: the edited call comes before the gate
            # next, and its start is what is recorded (a probe after a crash reads it)
            edited = json.dumps(verdict.arguments, ensure_ascii=False)
            self.call = self.call.model_copy(update={"arguments": edited})
            return verdict
        # an approved command runs with nothing else of its run beside it, as an
        # approved command step does: its files are checked again then, when no step
        # of the run can change them between that check and the command's read
        runs = verdict.by_human and call.facts.command is not None
        if runs and await self.session.alone(self.call):
            verdict = await self.inner.review(call)
        if verdict.decision == "allow" and not self.again:
            # a call a human approved is recorded before it runs, whatever its nature:
            # the same call made next in the turn finds its approval spent
            holds = self.holds and not verdict.by_human
            await self.session.started(self.call, call.facts.nature, self.key, verdict, holds=holds)
        return verdict
