"""Delegation's shell: a delegating step's attempt creates (or finds) its child run and
drives it to an end in this process, through an engine like its parent's.

The parent waits durably: ``ChildRunStarted`` is recorded before the child is driven
and ``ChildRunEnded`` (how it ended, what it spent) before the attempt ends. A crash
anywhere in the tree leaves every run's own record intact; resuming the root re-runs
the delegating step, which finds the same child (its id is fixed by the step's round,
see :mod:`trestle.core.tree`) and resumes it, and so on down: nothing a child finished,
and no model or tool call it recorded, is done again.

A child that waits for a human (an approval in its own inbox) ends the attempt as
``deferred``: the parent finishes ``needs_human`` until a human decides there and
resumes the root (or the child); a decision in a tree whose root another engine drives
wakes the root's driver instead (:func:`trestle.lifecycle.doorbell.ring`). A stop of
the parent (a signal, ``trestle cancel``) stops the child the same way, recorded in
the child's own log.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import ParamSpec, Protocol, TypeVar

from trestle.core.errors import RunCancelledError, TrestleError, UnknownRunError
from trestle.core.events import ActionResult, AnyEvent, ChildRunEnded, ChildRunStarted
from trestle.core.plan import CARVED, Step
from trestle.core.records.agent import AgentSettings
from trestle.core.state import RunState
from trestle.core.tree import (
    ChildSpec,
    DelegationError,
    child_result,
    child_spec,
    handed,
    waiting_for,
)
from trestle.engines.hold import TreeHold
from trestle.engines.stop import Stop
from trestle.engines.work import StepPerformer
from trestle.lifecycle.runs import create_run, load_state
from trestle.store.base import Store

P = ParamSpec("P")
T = TypeVar("T")


class ParentEngine(Protocol):
    """What delegation asks of the engine that drives the parent run: its store, clock
    and performer, an engine like it for the child, and its store thread."""

    store: Store
    performer: StepPerformer | None

    def clock(self) -> float: ...

    def for_child(
        self, agent: AgentSettings | None, hold: TreeHold | None = None
    ) -> ParentEngine: ...

    async def run(self, run_id: str, *, stop: Stop | None = None) -> RunState: ...

    async def in_store_thread(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T: ...

    def close(self) -> None: ...


STOP_WAIT = 60.0  # how long a stopped parent waits for its child to record its stop


async def perform_delegation(
    engine: ParentEngine,
    state: RunState,
    step: Step,
    attempt: int,
    record: Callable[[Sequence[AnyEvent]], Awaitable[list[int]]],
    hold: TreeHold | None = None,
) -> ActionResult:
    """One attempt of a delegating step (see the module); ``hold`` holds this run for
    the child's approved commands (see :mod:`trestle.engines.hold`)."""
    try:
        spec = child_spec(state, step.id, tool_names(engine.performer))
    except DelegationError as exc:
        return ActionResult(status="error", error=str(exc))
    try:
        existed = await engine.in_store_thread(_create_or_find, engine, state, spec)
    except TrestleError as exc:
        return ActionResult(status="error", error=f"cannot create the child run: {exc}")
    started = ChildRunStarted(
        at=engine.clock(), step=step.id, attempt=attempt, child=spec.run_id, resumed=existed
    )
    await record([started])
    child = await _drive(engine, spec, hold)
    spent = {dim: child.tally.spent.get(dim, 0.0) for dim in CARVED}
    status = child.finished or "needs_human"
    waiting = waiting_for(child) if status == "needs_human" else ""
    ended = ChildRunEnded(
        at=engine.clock(),
        step=step.id,
        attempt=attempt,
        child=spec.run_id,
        status=status,
        spent={dim: amount for dim, amount in spent.items() if amount},
        waiting=waiting,
    )
    await record([ended])
    return child_result(child)


def tool_names(performer: StepPerformer | None) -> Collection[str]:
    """The tools an agent child could be given: its performer's."""
    registry = getattr(performer, "tools", None)
    if registry is not None:
        names: Collection[str] = registry.names()
        return names
    from trestle.tools.coding import coding_registry

    return coding_registry().names()


def _create_or_find(engine: ParentEngine, parent: RunState, spec: ChildSpec) -> bool:
    """Create the child run, unless this round already did: True if it existed."""
    try:
        found = engine.store.run(spec.run_id)
    except UnknownRunError:
        pass
    else:
        if found.summarised().parent != parent.run_id:  # never made so: said, not adopted
            raise DelegationError(
                f"run {spec.run_id} exists and is no child of {parent.run_id}: "
                f"step {spec.link.step!r} cannot delegate to it"
            )
        return True
    delegation = parent.step_spec(spec.link.step).delegate
    assert delegation is not None  # child_spec made the spec from it
    spec = handed(spec, delegation, engine.store.events(parent.run_id))
    create_run(
        engine.store,
        spec.plan,
        workspace=Path(parent.workspace),
        run_id=spec.run_id,
        now=time.time(),
        operator_policy=spec.operator_policy,
        policy_source=parent.policy_source,  # the parent's policy, from the same file
        agent=spec.agent,
        monitors=parent.monitors,
        parent=spec.link,
        started_by=parent.started_by,  # the root's starter, passed down the tree
    )
    return False


async def _drive(engine: ParentEngine, spec: ChildSpec, hold: TreeHold | None) -> RunState:
    """Drive the child until it finishes, waits on a human or is stopped; a stop of
    this attempt (its task cancelled) is passed on, and waited for, before it ends."""
    child_engine = engine.for_child(spec.agent, hold)
    stop = Stop()
    task = asyncio.ensure_future(child_engine.run(spec.run_id, stop=stop))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        stop.request("its parent was stopped")
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, STOP_WAIT)
        raise
    except RunCancelledError:  # a human cancelled the child: its parent's step failed
        return await engine.in_store_thread(load_state, engine.store, spec.run_id)
    finally:
        child_engine.close()
