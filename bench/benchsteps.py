"""Step callables for the benchmarks, referenced from plans as ``benchsteps:<name>``.

The engine imports them by module name, so ``bench/`` must be on ``sys.path`` (the
benchmark scripts see to it). A sleeping step reads its duration from its own id
(``w07-0.2s`` sleeps 0.2 s): the plan, which is recorded, then says what each step
does, and nothing hides in process-wide state.
"""

from __future__ import annotations

import asyncio
import time

import agentturns
import crashflow
from trestle.execution.actions import StepContext


def noop(ctx: StepContext) -> None:
    """A durable no-op: all the cost of the step is Trestle's."""


def seconds_in(step_id: str) -> float:
    """The duration a sleeping step's id names: ``w07-0.2s`` -> 0.2."""
    tail = step_id.rsplit("-", 1)[-1]
    if not tail.endswith("s"):
        raise ValueError(f"step {step_id!r}: id must end in '-<seconds>s', e.g. 'w07-0.2s'")
    return float(tail.removesuffix("s"))


def sleep(ctx: StepContext) -> None:
    """Sleep in the worker thread Trestle runs a sync callable in."""
    time.sleep(seconds_in(ctx.step_id))


async def async_sleep(ctx: StepContext) -> None:
    """Sleep on the event loop: an async callable needs no worker thread."""
    await asyncio.sleep(seconds_in(ctx.step_id))


# --- the agent loop and crash workloads (see agentturns.py and crashflow.py) --------------


def turn_index(step_id: str) -> int:
    """The turn a step stands for: ``t00042`` -> 42."""
    return int(step_id.removeprefix("t"))


def agent_turn(ctx: StepContext) -> str:
    """One scripted agent turn; its recorded output is the turn's message + tool result."""
    turn = turn_index(ctx.step_id)
    agentturns.mark_turn(ctx.workspace, turn)
    message, tool_result = agentturns.turn_text(turn)
    return f"{message}\n{tool_result}"


async def agent_turn_async(ctx: StepContext) -> str:
    """The same turn as an async callable, for many runs on one event loop."""
    return agent_turn(ctx)


def crash_step(ctx: StepContext) -> None:
    """A crash-workflow step: its effect is a line in the workspace's ledger."""
    crashflow.act(ctx.workspace, ctx.step_id)


def crash_step_done(ctx: StepContext) -> bool:
    """The step's verify check: is its line in the ledger?"""
    return crashflow.has_effect(ctx.workspace, ctx.step_id)
