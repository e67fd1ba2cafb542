"""The tool abstraction: what a model may call, what it sees back, and the gate in between.

A :class:`Tool` has a name, a description and a pydantic arguments model whose JSON
Schema is what the model is shown. Before a tool runs, the runtime describes the call
to a :class:`ToolGate` as :class:`~trestle.core.policy.ActionFacts` (what it is: a read, a
write with its paths, a command with its text, ...) and runs it only if the gate
allows. Whatever happens, the model gets an :class:`Observation` back, never an
exception: bad model output is something to read and correct, not a crash.
"""

from __future__ import annotations

import abc
import asyncio
import functools
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Generic, Literal, Protocol, TypeVar

from pydantic import AfterValidator, BaseModel, Field, JsonValue, model_validator

from trestle.core.conversation import Text, ToolSchema
from trestle.core.events import Gate
from trestle.core.policy import ActionFacts, Nature
from trestle.core.record import Record, untitled_schema
from trestle.core.safetext import json_without_surrogates
from trestle.execution.actions import OUTPUT_LIMIT
from trestle.execution.sandbox import Sandbox
from trestle.execution.workspace_hold import held_shared
from trestle.support.shipped_schemas import shipped_schema

if TYPE_CHECKING:
    from trestle.store.base import Store

DEFAULT_COMMAND_TIMEOUT = 120.0  # seconds a command or the test command may run

ArgsT = TypeVar("ArgsT", bound=BaseModel)


class ToolFailure(Exception):
    """Raised inside a tool for an expected failure the model should read and fix;
    the registry turns it into a failed :class:`Observation` carrying the message."""


class ToolArgs(Record):
    """Base for tool arguments: frozen, and an argument the tool does not know is an
    error the model is told about rather than silently ignored."""


class Observation(Record):
    """What a tool call produced.

    Attributes:
        ok: whether the call did what was asked.
        content: what the model sees.
        error: a short statement of what went wrong, when something did.
        data: structured facts for the runtime (an exit code, the finish claim, ...).
        deferred: the gate wants a human to decide; the tool has not run.
        records: events of the run's own (``trestle.core.events``) that the agent's session
            records in the same commit as the call's end: a receive's delivery, a
            board write. Never shown to the model.
    """

    ok: bool
    content: Text
    error: Text | None = None
    data: Annotated[dict[str, JsonValue], AfterValidator(json_without_surrogates)] = {}
    deferred: bool = False
    records: tuple[Any, ...] = Field(default=(), exclude=True)

    @classmethod
    def success(cls, content: str, data: dict[str, JsonValue] | None = None) -> Observation:
        """A call that did what was asked."""
        return cls(ok=True, content=content, data=data or {})

    @classmethod
    def failure(
        cls, error: str, content: str | None = None, data: dict[str, JsonValue] | None = None
    ) -> Observation:
        """A call that did not; ``content`` defaults to the error itself."""
        return cls(ok=False, content=content or f"error: {error}", error=error, data=data or {})


@dataclass(frozen=True)
class ToolContext:
    """What every tool call is given: where it works and within which limits.

    Attributes:
        workspace: the directory every path argument is jailed to.
        run_id: the run this call belongs to.
        step_id: the step this call belongs to.
        test_command: the shell command ``run_tests`` runs; ``None`` if not configured.
        command_timeout: the longest a command may run, in seconds.
        output_cap: characters of output a model is shown at most.
        idempotency_key: this call's key (``TRESTLE_IDEMPOTENCY_KEY`` in its commands'
            environment): stable across a crash, so a tool can deduplicate an external
            effect; set per call by the agent's session.
        sandbox: the run's sandbox; its commands run in it (None: unconfined).
        group: the run's place in its group of runs, for the blackboard and mailbox
            tools (None: those tools refuse).
        approved: a human approved this very call: its commands may write ``.git``'s
            history (never its configuration or hooks); set per call by the registry.
        bound: the workspace files the approved call's command names, as they read
            when the human was asked (path: sha256 or "absent"): it runs with them so,
            or not at all; set per call by the registry (None: nothing bound).
    """

    workspace: Path
    run_id: str
    step_id: str
    test_command: str | None = None
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT
    output_cap: int = OUTPUT_LIMIT
    idempotency_key: str | None = None
    sandbox: Sandbox | None = None
    group: GroupSeat | None = None
    approved: bool = False
    bound: dict[str, str] | None = None

    @functools.cached_property
    def root(self) -> Path:
        """The workspace's real path. Resolved once per context: the session makes a
        context for each call, whose path checks ask for it several times."""
        return self.workspace.resolve()


@dataclass(frozen=True)
class GroupSeat:
    """Where a run sits in its group (see :mod:`trestle.coordination.groups`).

    Attributes:
        store: the store the group's board and messages are kept in.
        group: the group's name.
        delivered: the message ids already put into the run's conversations (read
            live from the run's state).
        clock: wall-clock seconds.
    """

    store: Store
    group: str
    delivered: Callable[[], Collection[str]]
    clock: Callable[[], float]


class Tool(abc.ABC, Generic[ArgsT]):
    """One thing a model may do. Subclasses set the class attributes and ``run``.

    Attributes:
        name: what the model calls it; letters, digits, ``_`` and ``-``.
        description: what it does and when to use it, for the model.
        nature: what kind of action it is, for the gate (read, test, write, command, call).
        arguments: the pydantic model its arguments are validated against.
        serial: its calls within a run take turns (see :class:`StepSession`).
        idempotent: a call a crash cut short may run again (as a read does).
        escalates: a call whose outcome is unknown, and which may have destroyed
            something, goes to a human before the step goes on (an MCP tool's).
    """

    name: str
    description: str
    nature: Nature
    arguments: type[ArgsT]
    # calls of a serial tool take turns within a run, each until its end is recorded:
    # parallel steps receiving from one mailbox must not both take the same message
    serial: ClassVar[bool] = False
    idempotent: bool = False
    escalates: bool = False

    def facts(self, args: ArgsT, ctx: ToolContext) -> ActionFacts:
        """Describe this call to the gate. Tools that write or run commands say what.

        ``paths`` are the workspace-relative paths the call writes; the registry
        jails and normalises them before the gate sees them.
        """
        return ActionFacts(nature=self.nature, name=self.name)

    @abc.abstractmethod
    async def run(self, ctx: ToolContext, args: ArgsT) -> Observation:
        """Do the work.

        Expected failures (a missing file, a refused path) are either returned as a
        failed observation or raised as :class:`ToolFailure`; the registry turns the
        latter into one.
        """

    async def probe(self, ctx: ToolContext, args: ArgsT) -> str | None:
        """After a crash cut this call short: whether its effect is in place.

        Returns what shows the effect happened (said to the model and recorded), or
        None when this tool cannot tell; the call's outcome then stays unknown. Runs
        only once the call's leftover processes are gone. No probe by default.
        """
        return None

    def schema(self) -> ToolSchema:
        """The name, description and JSON Schema of the arguments, as a model sees them."""
        return _schema(self.name, self.description, self.arguments)


@functools.lru_cache(maxsize=1024)
def _schema(name: str, description: str, arguments: type[BaseModel]) -> ToolSchema:
    """A tool's schema, made once: building a JSON Schema costs milliseconds, every phase
    of every attempt offers its tools, and the same object lets a request's hash and
    token estimate reuse what they made of it (``trestle.core.memo``)."""
    parameters = shipped_schema(arguments) or untitled_schema(arguments.model_json_schema())
    return ToolSchema(name=name, description=description, parameters=parameters)


class BlockingTool(Tool[ArgsT]):
    """A tool whose work is blocking IO (files): ``work`` runs in a worker thread, so
    a slow disk or a big search never stalls the event loop and other steps. One that
    writes the workspace (``writes``) holds it first, on the event loop, never beside
    another run's approved command (:mod:`trestle.execution.workspace_hold`): a thread
    waiting there held one of the few the loop's threads hand off to, and enough of
    them left the approved command none to go on with."""

    writes: ClassVar[bool] = False

    async def run(self, ctx: ToolContext, args: ArgsT) -> Observation:
        if not self.writes:
            return await asyncio.to_thread(self.work, ctx, args)
        async with held_shared(ctx.workspace):
            return await asyncio.to_thread(self.work, ctx, args)

    @abc.abstractmethod
    def work(self, ctx: ToolContext, args: ArgsT) -> Observation:
        """Do the work, synchronously; same contract as :meth:`Tool.run`."""


# --- the gate ---------------------------------------------------------------------------

Decision = Literal["allow", "deny", "defer"]


class GatedCall(Record):
    """A validated tool call, described for the gate before it runs.

    ``slot`` is where the call sits in its step's conversation (round, turn, call id),
    when a session gives it: a human's approval of a call lets that one call run, not
    the same call again later (see :class:`trestle.agent.toolgate.RunToolGate`)."""

    tool: str
    arguments: dict[str, JsonValue]
    facts: ActionFacts
    run_id: str
    step_id: str
    slot: tuple[int, int, str] | None = None


class GateVerdict(Record):
    """The gate's answer: run it, refuse it (and why), or wait for a human (and why).

    ``gate`` and ``facts`` are what the policy decided and what it judged, when it was
    asked (a call refused for its scope never reaches it): the call's start records
    them, so the log says why each call ran.
    """

    decision: Decision
    reason: str = ""
    by_human: bool = False  # allowed because a human approved this call
    # the files its command names, as the human approved them (see ToolContext.bound)
    bound: dict[str, str] | None = None
    # allowed as a human edited it: these arguments run instead of the model's, once
    # the edited call has passed the gate in its turn
    arguments: dict[str, JsonValue] | None = None
    gate: Gate | None = None
    facts: ActionFacts | None = None

    @model_validator(mode="after")
    def _refusals_say_why(self) -> GateVerdict:
        if self.decision != "allow" and not self.reason.strip():
            raise ValueError(f"a {self.decision!r} verdict needs a reason")
        return self

    @classmethod
    def allow(
        cls,
        reason: str = "",
        *,
        by_human: bool = False,
        gate: Gate | None = None,
        facts: ActionFacts | None = None,
        bound: dict[str, str] | None = None,
    ) -> GateVerdict:
        """Let the call run (``by_human``: on a human's approval; ``bound``: with the
        files its command names as the human approved them)."""
        return cls(
            decision="allow",
            reason=reason,
            by_human=by_human,
            gate=gate,
            facts=facts,
            bound=bound,
        )

    @classmethod
    def deny(
        cls, reason: str, *, gate: Gate | None = None, facts: ActionFacts | None = None
    ) -> GateVerdict:
        """Refuse the call; the model is told ``reason``."""
        return cls(decision="deny", reason=reason, gate=gate, facts=facts)

    @classmethod
    def defer(
        cls, reason: str, *, gate: Gate | None = None, facts: ActionFacts | None = None
    ) -> GateVerdict:
        """A human must decide first; the call does not run now."""
        return cls(decision="defer", reason=reason, gate=gate, facts=facts)


class ToolGate(Protocol):
    """Reviews every tool call before it runs. There is deliberately no default gate
    that allows everything: whoever runs tools must say who decides."""

    async def review(self, call: GatedCall) -> GateVerdict:
        """Judge one call."""
        ...
