"""A run's state for a worker's attempts: one load for the attempts that ask at once.

A workflow dispatches every step its run's graph frees at once, so a fan-out of 32
steps reaches a worker as 32 activities, and each reads the run's state before it acts
(to check its start was recorded, to know its step). The worker's one store thread
loaded them in turn: a 4,000-step run's state takes about 0.2 s, so the last of 32
waited over 6 s of the store thread's CPU, and on a busy machine some were lost by a
live worker past their heartbeat timeout. Now the attempts of a run that ask while a
load of it is under way share the next one, which begins once each of them has asked:
each still gets the run as the store held it after its own start was recorded.

The state is shared, so an attempt that changes it must take its own copy (see
:func:`own_copy`): an agent's or a delegating step's attempt brings it up to date with
what it records, on the worker's reads' thread, while the others read theirs on the loop.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

from trestle.core.events import StepProbeStarted, StepStarted
from trestle.core.state import RunState


class SharedLoads:
    """Loads of runs' states, at most one under way and one waiting per run."""

    def __init__(self, load: Callable[[str], Awaitable[RunState]]) -> None:
        self._load = load
        self._waiting: dict[str, asyncio.Future[RunState]] = {}  # the next load's askers
        self._loading: dict[str, asyncio.Future[None]] = {}  # done once the load ends
        self._serving: set[asyncio.Task[None]] = set()  # held: the loop holds tasks weakly

    async def state(self, run_id: str) -> RunState:
        """The run's state, loaded after this call began (shared: do not change it)."""
        waiting = self._waiting.get(run_id)
        if waiting is None:
            waiting = self._waiting[run_id] = asyncio.get_running_loop().create_future()
            task = asyncio.ensure_future(self._serve(run_id, waiting))
            self._serving.add(task)
            task.add_done_callback(functools.partial(self._served, run_id, waiting))
        return await asyncio.shield(waiting)  # one asker cancelled: not the others' load

    async def _serve(self, run_id: str, waiting: asyncio.Future[RunState]) -> None:
        earlier = self._loading.get(run_id)
        if earlier is not None:  # it may have read the store before some of these asked
            await earlier
        del self._waiting[run_id]  # those asking from now on wait for the next load
        loading = self._loading[run_id] = asyncio.get_running_loop().create_future()
        try:
            waiting.set_result(await self._load(run_id))
        except Exception as exc:  # each asker's to handle, as its own load's was
            waiting.set_exception(exc)
        finally:
            loading.set_result(None)  # the next load may begin
            if self._loading.get(run_id) is loading:
                del self._loading[run_id]

    def _served(
        self, run_id: str, waiting: asyncio.Future[RunState], task: asyncio.Task[None]
    ) -> None:
        """A load's end, however it ended: cancelled (the worker's loop closing), before
        it began or during it, its askers are told so, not left waiting for ever."""
        self._serving.discard(task)
        if self._waiting.get(run_id) is waiting:
            del self._waiting[run_id]
        if not waiting.done():
            waiting.cancel()


def changes_state(state: RunState, announced: StepStarted | StepProbeStarted) -> bool:
    """Whether the attempt brings its state up to date as it goes (its recorder does,
    after each record): an agent run's attempt, or a delegating step's."""
    if not isinstance(announced, StepStarted):
        return False
    if state.agent is not None:
        return True
    return announced.step in state.steps and state.step_spec(announced.step).delegate is not None


def own_copy(state: RunState) -> RunState:
    """A copy of ``state`` to change apart from the shared one, as a snapshot keeps it."""
    return RunState.from_snapshot(state.snapshot_json(), plan=state.plan)
