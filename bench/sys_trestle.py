"""Trestle's side of every comparison workload, through its public API only.

Plans of ``python:`` steps on a :class:`~trestle.store.SqliteStore`, driven by
:class:`~trestle.engines.local.LocalEngine` with its defaults (workloads 1, 4 and 5). The
agent workloads (2, 3 and the per-turn overhead) run a real agent run: ``start_agent``
and ``run_agent`` with the real :class:`~trestle.agent.runtime.AgentPerformer`, a
scripted model (:mod:`agentloop`), the real ``read_file`` tool on a real repository and
the default monitors. The model reads one file per turn in the ``understand`` step, then
gives its findings, a one-step plan and ``finish``; the acceptance command is ``true``.
Workload 5 still drives many short plan runs whose steps stand in for turns.

Every function takes ``work``, a fresh directory, and keeps its store in
``work/store.db``. The step callables live in ``benchsteps.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path

import agentloop
import agentturns
import crashflow
from trestle.agent.launch import run_agent, start_agent
from trestle.core.conversation import Usage
from trestle.core.errors import LeaseHeldError
from trestle.core.estimate import estimate_tokens
from trestle.core.plan import CallableCheck, Plan, Step
from trestle.core.records.agent import AgentSettings, bootstrap_plan
from trestle.core.records.monitors import MonitorSettings
from trestle.core.state import RunState
from trestle.engines.local import LocalEngine
from trestle.lifecycle.runs import create_run, load_state, request_decision
from trestle.models import FunctionModel, Message, Model, ModelResponse, ToolCall, ToolSchema
from trestle.models.scripted import Reply
from trestle.store import SqliteStore
from trestle.store.base import RequestKind
from workloads import ORCHESTRATION_ONLY, chain_plan, fanout_plan, importable_steps, timed_run

NAME = "trestle"
STORE = "store.db"
CRASH_RUN = "crash"
LEASE_TTL = 3.0  # a killed driver's pid, if reused meanwhile, holds the run this long
MONITORS: MonitorSettings | None = None  # None: the defaults (agentparts.py sets others)
# the step whose turns read the files: "understand" (its objective is the goal, which
# names the notes), or "execute" (the plan's one step, "wrap-up", whose objective does
# not: the drift monitor then finds every read unrelated and embeds its reasoning too)
READS_IN = "understand"
# how the turn reads its note: the read_file tool, or run_command with "cat <note>" (a
# command: a process, sandboxed, so the turn's tool call takes milliseconds)
READ_WITH = "read_file"


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
        # the peers snapshot no workspace: a snapshot before and after each of these
        # steps (the default) is measured on its own by checkpoint_cost.py; with it,
        # 1,000 such runs sharing one workspace ran 8x slower (10 runs/s, not 79)
        checkpoints=ORCHESTRATION_ONLY,
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


# --- the agent loop (workloads 2, 3 and the per-turn overhead) --------------------------------


class _LoopModel(FunctionModel):
    """One step's scripted answers; ``seek`` tells it the turn it answers (the runtime
    calls it before every live model call, as it does for a recorded trajectory)."""

    def __init__(self, work: Path, step: str, reads: int) -> None:
        super().__init__(self._answer, name="scripted")
        self.work, self.step, self.reads, self.turn = work, step, reads, 1

    def seek(self, turn: int) -> None:
        self.turn = turn

    def _answer(self, messages: Sequence[Message], tools: Sequence[ToolSchema]) -> Reply:
        index = self.turn - 1
        reading = self.step == READS_IN or (READS_IN == "execute" and self.step == "wrap-up")
        if reading:
            agentloop.note_call(self.work, index)
            if index < self.reads:
                path = agentloop.note_path(index)
                command = READ_WITH == "run_command"
                arguments = json.dumps({"command": f"cat {path}"} if command else {"path": path})
                # the usage a provider reports with every answer (here the offline
                # estimate of the request as sent): the context monitor reads the
                # conversation's size from it, as it does from a real provider's
                usage = Usage(input_tokens=estimate_tokens(messages, tools), estimated=True)
                return ModelResponse(
                    text=agentloop.message(index),
                    tool_calls=(ToolCall(id=f"c{index}", name=READ_WITH, arguments=arguments),),
                    finish_reason="tool_calls",
                    usage=usage,
                )
        if self.step == "understand":
            return json.dumps(
                {
                    "summary": f"read {self.reads} files",
                    "relevant_files": [{"path": agentloop.note_path(0), "why": "read first"}],
                    "how_to_test": "true",
                }
            )
        if self.step == "plan":
            step = {
                "id": "wrap-up",
                "objective": "say the reading is done",
                "files": [],
                "new_files": [],
                "needs": [],
                "verify": [{"command": f"test -s {agentloop.note_path(0)}"}],
            }
            return json.dumps({"summary": "one step", "steps": [step]})
        arguments = json.dumps({"summary": "done", "claims": ["every file was read"]})
        return ModelResponse(
            tool_calls=(ToolCall(id="f", name="finish", arguments=arguments),),
            finish_reason="tool_calls",
        )


class _LoopModels:
    """A model per agent step (the runtime's ``for_step`` hook)."""

    name = "scripted"

    def __init__(self, work: Path, reads: int) -> None:
        self.work, self.reads = work, reads

    def for_step(self, step: str, round: int, tree: Sequence[str] = ()) -> Model:
        return _LoopModel(self.work, step, self.reads)

    async def complete(self, *args: object, **kwargs: object) -> ModelResponse:
        raise AssertionError("each step asks for_step() for its model")


def _settings(reads: int) -> AgentSettings:
    return AgentSettings(
        model="scripted",
        test_command="true",
        plan_approval="auto",
        max_turns=reads + 10,
    )


def _start_loop(work: Path, reads: int) -> tuple[SqliteStore, str]:
    repo = agentloop.make_repo(work, reads)
    store = SqliteStore(work / STORE)
    # reading in "execute", the goal does not name the notes either (see READS_IN)
    goal = f"read the {reads} notes" if READS_IN == "understand" else f"summarise {reads} documents"
    if MONITORS is None:
        run_id = start_agent(store, goal, workspace=repo, settings=_settings(reads))
    else:  # agentparts.py's diagnostic: the same run with other monitor settings
        plan = bootstrap_plan(goal)
        run_id = create_run(store, plan, workspace=repo, agent=_settings(reads), monitors=MONITORS)
    return store, run_id


def _run_loop(store: SqliteStore, run_id: str, work: Path, reads: int) -> RunState:
    model = _LoopModels(work, reads)
    state = asyncio.run(run_agent(store, run_id, model))
    if state.finished != "succeeded":
        raise RuntimeError(f"{work}: the agent run ended {state.finished}")
    return state


def agent(work: Path, turns: int) -> int:
    """Run an agent loop of ``turns`` turns to its end; the store's bytes on disk."""
    store, run_id = _start_loop(work, turns)
    try:
        _run_loop(store, run_id, work, turns)
    finally:
        store.close()
    return agentturns.files_bytes(work, STORE)


def turns(work: Path, n: int) -> float:
    """Microseconds of runtime per turn over an agent loop of ``n`` turns."""
    store, run_id = _start_loop(work, n)
    try:
        _run_loop(store, run_id, work, n)
    finally:
        store.close()
    return agentloop.us_per_turn(n)


def resume_prepare(work: Path, turns: int) -> None:
    """Run ``turns`` turns, then crash (SIGKILL) in the model call of turn ``turns``."""
    store, run_id = _start_loop(work, turns + 1)
    (work / "run-id").write_text(run_id)
    agentturns.arm_crash(work, turns)
    _run_loop(store, run_id, work, turns + 1)  # does not return: the process dies
    raise RuntimeError(f"{work}: the run was meant to crash at turn {turns}")


def resume(work: Path, turns: int) -> float:
    """Seconds from opening the store to the interrupted model call being made again."""
    agentturns.disarm_crash(work)
    run_id = (work / "run-id").read_text()
    started = time.perf_counter()
    store = SqliteStore(work / STORE)
    try:
        _run_loop(store, run_id, work, turns + 1)
    finally:
        store.close()
    if agentturns.first_turn_started is None:
        raise RuntimeError(f"{work}: the resumed run made no model call")
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
