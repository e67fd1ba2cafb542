"""What any engine hands a step performer, and what a performer must do.

An engine (the local one, or another) drives the pure core and performs the steps it
can itself (commands, writes, Python callables). The steps it cannot do alone, agent
steps, it hands to a :class:`StepPerformer` as a :class:`StepWork`. This module
belongs to no engine, so performers (see :mod:`trestle.agent`) depend on this contract,
not on an engine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from trestle.core.errors import ModelBindingError
from trestle.core.events import ActionResult, AnyEvent, ToolAsk
from trestle.core.plan import Step
from trestle.core.records.agent import AgentSettings
from trestle.core.state import RunState
from trestle.execution.actions import StepContext
from trestle.store.base import Store
from trestle.support.step_threads import StepThreads

Release = Callable[[], Awaitable[None]]
"""Lets the runs above a delegated child go on once its approved call ended."""


@dataclass(frozen=True)
class StepWork:
    """What a :class:`StepPerformer` is given for one attempt.

    ``state`` is the live run state: read it, never change it (only recorded events
    do). ``record`` makes events durable in the run's stream before it returns their
    seqs; ``load`` reads recorded events back by seq. ``store`` is the run's store, for
    what a run shares with its group (see :mod:`trestle.coordination.groups`); never its events.
    ``note``, where the engine has one, adds an event to its next commit without
    waiting: what an attempt cancelled from outside (a stop, a cancel) still holds,
    since it may not wait for a commit any more. ``ready``, where the engine gives one,
    must be awaited before the attempt first runs anything in the workspace (a tool
    call, a test command): the engine takes the workspace's checkpoint meanwhile, so a
    model's first answer need not wait for it. It raises :class:`WorkspaceNotSaved` if
    the checkpoint failed: the attempt must then end without running anything.
    ``halt``, where the engine gives one, ends the whole drive for a cause no retry can
    fix (the model's server refused the key, or nothing listens at its address): the
    engine stops every attempt as a stop does, so none counts as failed, and the drive
    raises the error. The attempt that calls it waits to be stopped.
    ``calling``, where the engine gives one, is called as the attempt sends a model
    call, so the engine can do meanwhile what may wait for the answer (a resumed run's
    monitors catch up).
    ``alone``, where the engine gives one, must be awaited before a tool call that
    runs a command a human approved (its place in the step, ``round.turn.call_id``):
    it returns once nothing else of the run runs, and nothing else starts until the
    call's end is recorded (see :mod:`trestle.core.decider`); in a delegated child,
    nothing of the runs above it either, until the :data:`Release` it returns is
    awaited, once the call ended (see :mod:`trestle.engines.hold`).
    """

    state: RunState
    step: Step
    ctx: StepContext
    pool: StepThreads
    record: Callable[[Sequence[AnyEvent]], Awaitable[list[int]]]
    load: Callable[[Sequence[int]], Awaitable[list[AnyEvent]]]
    clock: Callable[[], float]
    store: Store | None = None
    note: Callable[[AnyEvent], None] | None = None
    ready: Callable[[], Awaitable[None]] | None = None
    halt: Callable[[ModelBindingError], None] | None = None
    calling: Callable[[], None] | None = None
    alone: Callable[[str], Awaitable[Release]] | None = None

    async def workspace_ready(self) -> None:
        """Wait for the engine's checkpoint of the workspace (see ``ready``)."""
        if self.ready is not None:
            await self.ready()


class WorkspaceNotSaved(Exception):
    """The workspace's checkpoint before the attempt failed: nothing may run in it."""


class StepPerformer(Protocol):
    """Performs the steps the engine cannot do alone: agent steps (see trestle.agent),
    and turns a user's mid-run requirement into events."""

    async def perform(self, work: StepWork) -> tuple[ActionResult, ToolAsk | None]:
        """Do one attempt; a ``deferred`` result may carry the tool call to approve."""
        ...

    def requirement(
        self, state: RunState, text: str, *, by: str, request_id: int, now: float
    ) -> list[AnyEvent]:
        """The events that add ``text`` to the run (each carrying ``request_id``), or a
        ``RequestRefused`` saying why the run cannot take it now."""
        ...


# The performer for an agent run's settings (its model and tools). Whoever builds an
# engine chooses it (the CLI, the agent's launcher, a Temporal worker): an engine knows
# the interface, never the agent that implements it.
PerformerFor = Callable[[AgentSettings], StepPerformer]
