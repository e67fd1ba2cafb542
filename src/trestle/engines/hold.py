"""Holding the runs above a delegated child while its approved command runs alone.

A command a human approved runs with nothing else of its run beside it
(:mod:`trestle.core.decider`). A delegated child shares its parent's workspace, so a
step of the parent running beside the delegating step could change a file the child's
command reads between the check of what was approved and the read. So the child, once
its own run lets the command go, asks each run above it in turn: the delegating step
there records ``CallAloneAsked`` and waits, as an agent's approved call waits, until
nothing else of that run runs (``AloneGranted``); it records ``AloneReleased`` once the
command ended. Nothing of the tree but the command runs meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable

from trestle.core.events import AloneReleased, CallAloneAsked
from trestle.core.state import RunState
from trestle.engines.outbox import Outbox


class TreeHold:
    """The hold of the run above a child (``state``, through its delegating step
    ``step`` and that attempt's ``outbox``), and of the runs above it (``above``)."""

    def __init__(
        self,
        state: RunState,
        step: str,
        outbox: Outbox,
        clock: Callable[[], float],
        above: TreeHold | None,
    ) -> None:
        self.state, self.step, self.outbox, self.clock = state, step, outbox, clock
        self.above = above

    async def acquire(self, call: str) -> None:
        """Wait until nothing else of each run above runs, nearest first; ``call``
        names the child's command (its run and place)."""
        await run_alone(self.state, self.step, self.outbox, self.clock, call)
        if self.above is not None:
            await self.above.acquire(call)

    async def release(self, call: str) -> None:
        """The command ended: each run above goes on, farthest first."""
        if self.above is not None:
            await self.above.release(call)
        await self.outbox.record([AloneReleased(at=self.clock(), step=self.step, call=call)])


async def run_alone(
    state: RunState, step: str, outbox: Outbox, clock: Callable[[], float], call: str
) -> None:
    """Ask that ``call`` of running step ``step`` run with nothing else of its run beside
    it (``CallAloneAsked``), and wait for the decider's grant (``AloneGranted``)."""
    await outbox.record([CallAloneAsked(at=clock(), step=step, call=call)])

    def granted() -> bool:  # looked up each time: a reading of the record may replace it
        st = state.steps[step]
        return st.alone == "running" and st.alone_call == call

    await outbox.until(granted)
