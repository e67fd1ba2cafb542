"""Trestle's side of every comparison workload, through its public API only.

Plans of ``python:`` steps on a :class:`~trestle.store.SqliteStore`, driven by
:class:`~trestle.engine.LocalEngine` with its defaults. Trestle has no agent loop yet,
so an agent run is modelled as a plan with one step per turn, each needing the one
before, whose recorded output is that turn's message and tool result.

Every function takes ``work``, a fresh directory, and keeps its store in
``work/store.db``. The step callables live in ``benchsteps.py``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import agentturns
import crashflow
from trestle.engine import LocalEngine
from trestle.errors import LeaseHeldError
from trestle.plan import CallableCheck, Plan, Step
from trestle.runs import create_run, load_state, request_decision
from trestle.state import RunState
from trestle.store import SqliteStore
from trestle.store.base import RequestKind
from workloads import chain_plan, fanout_plan, importable_steps, timed_run

NAME = "trestle"
STORE = "store.db"
CRASH_RUN = "crash"
RESUME_RUN = "agent"
LEASE_TTL = 3.0  # a killed driver's pid, if reused meanwhile, holds the run this long


def _store(work: Path) -> SqliteStore:
    importable_steps()
    return SqliteStore(work / STORE)


def _turn_id(turn: int) -> str:
    return f"t{turn:05d}"


def agent_plan(turns: int, *, asynchronous: bool = False) -> Plan:
    """``turns`` scripted turns, one step each, in sequence.

    A turn may run again after a crash (a model call can be repeated), so turns are
    marked idempotent: an interrupted turn is re-run on resume, not escalated.
    """
    fn = "agent_turn_async" if asynchronous else "agent_turn"
    ids = [_turn_id(i) for i in range(turns)]
    return Plan(
        goal=f"benchmark: a scripted agent loop of {turns} turns",
        steps=tuple(
            Step(
                id=sid,
                python=f"benchsteps:{fn}",
                idempotent=True,
                needs=(ids[i - 1],) if i else (),
            )
            for i, sid in enumerate(ids)
        ),
    )


def crash_plan() -> Plan:
    """The crash workflow: each step verifies its own ledger line.

    After a crash a step's outcome is unknown; Trestle probes its check first. The
    ordinary steps may then run again when the check finds no effect (they are
    marked idempotent: their effect is absent, and no process of theirs is left to
    add it); the irreversible one never runs again without a human.
    """
    steps = []
    for i, sid in enumerate(crashflow.STEPS):
        irreversible = sid == crashflow.IRREVERSIBLE
        steps.append(
            Step(
                id=sid,
                python="benchsteps:crash_step",
                needs=(crashflow.STEPS[i - 1],) if i else (),
                verify=(CallableCheck(python="benchsteps:crash_step_done"),),
                irreversible=irreversible,
                idempotent=None if irreversible else True,
                # approval before an irreversible action is a separate matter, with no
                # human here: the plan's author lets it run, and it is logged
                approval="log" if irreversible else None,
            )
        )
    return Plan(goal="benchmark: crash injection", steps=tuple(steps))


def _drive(store: SqliteStore, run_id: str) -> RunState:
    engine = LocalEngine(store, lease_ttl=LEASE_TTL)
    try:
        deadline = time.monotonic() + 2 * LEASE_TTL + 5
        while True:
            try:
                return asyncio.run(engine.run(run_id))
            except LeaseHeldError:  # only if the killed driver's pid was reused meanwhile
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        engine.close()


# --- workload 1: step overhead ------------------------------------------------------------


def steps(work: Path, n: int) -> float:
    """Seconds for ``n`` sequential durable no-op steps."""
    store = _store(work)
    try:
        return timed_run(store, chain_plan(n), work)[1]
    finally:
        store.close()


def fanout(work: Path, width: int, sleep: float) -> float:
    """Makespan of root -> ``width`` sync steps sleeping ``sleep`` s -> join."""
    store = _store(work)
    try:
        return timed_run(store, fanout_plan(width, sleep, "python-thread"), work)[1]
    finally:
        store.close()


# --- workload 2: storage growth --------------------------------------------------------------


def agent(work: Path, turns: int) -> int:
    """Run ``turns`` turns to the end; the store's bytes on disk after closing it."""
    store = _store(work)
    try:
        timed_run(store, agent_plan(turns), work)
    finally:
        store.close()
    return agentturns.files_bytes(work, STORE)


# --- workload 3: resume cost ------------------------------------------------------------------


def resume_prepare(work: Path, turns: int) -> None:
    """Run ``turns`` turns, then crash (SIGKILL) as turn ``turns`` begins."""
    store = _store(work)
    create_run(store, agent_plan(turns + 1), workspace=work, run_id=RESUME_RUN)
    agentturns.arm_crash(work, turns)
    _drive(store, RESUME_RUN)  # does not return: the process dies in the last turn
    raise RuntimeError(f"{work}: the run was meant to crash at turn {turns}")


def resume(work: Path, turns: int) -> float:
    """Seconds from opening the store to the interrupted turn running again."""
    agentturns.disarm_crash(work)
    started = time.perf_counter()
    store = _store(work)
    try:
        state = _drive(store, RESUME_RUN)
    finally:
        store.close()
    if state.finished != "succeeded" or agentturns.first_turn_started is None:
        raise RuntimeError(f"{work}: the resumed run ended {state.finished}")
    return agentturns.first_turn_started - started


# --- workload 4: crash injection -------------------------------------------------------------


def crash_drive(work: Path) -> dict[str, int]:
    """Start or resume the crash workflow and drive it to its end.

    A step escalated to a human (the irreversible one, when a crash left its outcome
    unknown and its check found no effect) is settled the way an operator would:
    look at the ledger, then skip the step if its effect is there, else retry it.
    Each decision is logged to ``crashflow.DECISIONS``; returns how many this call made.
    """
    store = _store(work)
    try:
        if not any(row.run_id == CRASH_RUN for row in store.runs()):
            create_run(store, crash_plan(), workspace=work, run_id=CRASH_RUN)
        decisions = 0
        for _ in range(len(crashflow.STEPS) + 1):
            state = _drive(store, CRASH_RUN)
            if state.finished != "needs_human":
                break
            for sid, st in load_state(store, CRASH_RUN).steps.items():
                if st.status == "escalated":
                    kind: RequestKind = "skip" if crashflow.has_effect(work, sid) else "retry"
                    request_decision(store, CRASH_RUN, kind, sid, "checked the ledger")
                    with (work / crashflow.DECISIONS).open("a") as log:
                        log.write(f"{kind} {sid}\n")
                    decisions += 1
        if state.finished != "succeeded":
            raise RuntimeError(f"{work}: the run ended {state.finished}")
        return {"human_decisions": decisions}
    finally:
        store.close()


# --- workload 5: concurrency ------------------------------------------------------------------


def many(work: Path, runs: int, turns: int, tag: str) -> dict[str, float]:
    """Drive ``runs`` runs of ``turns`` async turns at once on one event loop.

    Returns how many succeeded and how many failed (an exception, or a run that did
    not succeed), and when the work began and ended (``time.monotonic``, which all
    processes share). ``tag`` keeps run ids unique across processes sharing the store.
    """
    store = _store(work)
    engine = LocalEngine(store)
    started = time.monotonic()
    try:
        plan = agent_plan(turns, asynchronous=True)
        ids = [
            create_run(store, plan, workspace=work, run_id=f"{tag}-{i:05d}") for i in range(runs)
        ]

        async def all_runs() -> list[RunState | BaseException]:
            return await asyncio.gather(*(engine.run(r) for r in ids), return_exceptions=True)

        outcomes = asyncio.run(all_runs())
        ended = time.monotonic()
    finally:
        engine.close()
        store.close()
    ok = sum(isinstance(o, RunState) and o.finished == "succeeded" for o in outcomes)
    return {"succeeded": ok, "errors": runs - ok, "started": started, "ended": ended}
