"""DBOS's side of every comparison workload, written the way its docs recommend.

``@DBOS.workflow`` functions made of ``@DBOS.step`` calls, on DBOS's SQLite system
database (no Postgres). DBOS records each step's output once the step returns; after
a crash, ``DBOS.launch()`` in a new process recovers the pending workflows and
replays the recorded steps. The agent workloads (2, 3 and the per-turn overhead) run a
tool loop with a step per model call (:mod:`agentloop`'s script) and a step per
``read_file`` call, the transcript a local list built from the steps' recorded
outputs; workload 5 keeps one step per turn standing in for both. DBOS is a
process-wide singleton, so each function here is meant to run in a process of its own
(``worker.py`` forks one per measurement); it launches DBOS and destroys it before
returning.

Every function takes ``work``, a fresh directory, with the system database in
``work/store.sqlite``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSConfig, SetWorkflowID

import agentloop
import agentturns
import crashflow

NAME = "dbos"
STORE = "store.sqlite"


@contextmanager
def _launched(work: Path, executor_id: str | None = None) -> Iterator[None]:
    config: DBOSConfig = {
        "name": "trestle-bench",
        "system_database_url": f"sqlite:///{work / STORE}",
        "log_level": "WARNING",
    }
    if executor_id is not None:
        # processes sharing a database each need their own id, or each one's launch
        # would recover the others' running workflows as its own
        config["executor_id"] = executor_id
    DBOS(config=config)
    DBOS.launch()
    try:
        yield
    finally:
        DBOS.destroy()


# --- workload 1: step overhead ------------------------------------------------------------


@DBOS.step()
def noop() -> None:
    """A durable no-op step."""


@DBOS.workflow()
def chain(n: int) -> int:
    for _ in range(n):
        noop()
    return n


@DBOS.step()
async def nap(seconds: float) -> None:
    await asyncio.sleep(seconds)


@DBOS.workflow()
async def fan(width: int, seconds: float) -> int:
    await nap(0)
    # steps of an async workflow may run concurrently; a sync workflow's run in turn
    await asyncio.gather(*(nap(seconds) for _ in range(width)))
    await nap(0)
    return width


def steps(work: Path, n: int) -> float:
    """Seconds for ``n`` sequential durable no-op steps in one workflow."""
    with _launched(work):
        started = time.perf_counter()
        done = chain(n)
        seconds = time.perf_counter() - started
    if done != n:
        raise RuntimeError(f"ran {done} of {n} steps")
    return seconds


def fanout(work: Path, width: int, sleep: float) -> float:
    """Makespan of a step, ``width`` concurrent steps sleeping ``sleep`` s, a step."""
    with _launched(work):
        started = time.perf_counter()
        asyncio.run(fan(width, sleep))
        return time.perf_counter() - started


# --- the stand-in agent loop (workload 5) --------------------------------------------------------


def _turn(work: str, index: int) -> dict[str, str]:
    agentturns.mark_turn(Path(work), index)
    message, tool_result = agentturns.turn_text(index)
    return {"message": message, "tool_result": tool_result}


@DBOS.step()
async def turn_async(work: str, index: int) -> dict[str, str]:
    return _turn(work, index)


@DBOS.workflow()
async def agent_loop_async(work: str, turns: int) -> int:
    transcript: list[dict[str, str]] = []
    for index in range(turns):
        transcript.append(await turn_async(work, index))
    return len(transcript)


# --- the real agent loop (workloads 2, 3 and the per-turn overhead) ----------------------------


@DBOS.step()
def model_call(work: str, turn: int, reads: int) -> dict[str, str]:
    """The scripted model's answer for ``turn``: text and a file to read, or the end."""
    agentloop.note_call(Path(work), turn)
    if turn < reads:
        return {"text": agentloop.message(turn), "read": agentloop.note_path(turn)}
    return {"text": f"read {reads} files", "read": ""}


@DBOS.step()
def read_file(work: str, path: str) -> str:
    return agentloop.read(Path(work) / agentloop.REPO, path)


@DBOS.workflow()
def tool_loop(work: str, reads: int) -> int:
    """A step per model call and a step per tool call; the transcript a local list."""
    transcript: list[dict[str, str]] = []
    for turn in range(reads + 1):
        answer = model_call(work, turn, reads)
        transcript.append(answer)
        if not answer["read"]:
            break
        transcript.append({"tool": read_file(work, answer["read"])})
    return sum("tool" in t for t in transcript)


def agent(work: Path, turns: int) -> int:
    """Run an agent loop of ``turns`` turns to its end; the system database's bytes."""
    agentloop.make_repo(work, turns)
    with _launched(work):
        done = tool_loop(str(work), turns)
    if done != turns:
        raise RuntimeError(f"ran {done} of {turns} turns")
    return agentturns.files_bytes(work, STORE)


def turns(work: Path, n: int) -> float:
    """Microseconds per turn (a model step and a tool step) over ``n`` turns."""
    agentloop.make_repo(work, n)
    with _launched(work):
        tool_loop(str(work), n)
    return agentloop.us_per_turn(n)


def resume_prepare(work: Path, turns: int) -> None:
    """Run ``turns`` turns, then crash (SIGKILL) in the model call of turn ``turns``."""
    agentloop.make_repo(work, turns + 1)
    agentturns.arm_crash(work, turns)
    with _launched(work), SetWorkflowID("agent"):
        tool_loop(str(work), turns + 1)
    raise RuntimeError(f"{work}: the run was meant to crash at turn {turns}")


def resume(work: Path, turns: int) -> float:
    """Seconds from launching DBOS (which recovers the workflow) to the model call
    of the interrupted turn running again."""
    agentturns.disarm_crash(work)
    started = time.perf_counter()
    with _launched(work):
        done: int = DBOS.retrieve_workflow("agent").get_result()
    if done != turns + 1 or agentturns.first_turn_started is None:
        raise RuntimeError(f"{work}: the resumed run ended with {done} turns")
    return agentturns.first_turn_started - started


# --- workload 4: crash injection -------------------------------------------------------------


@DBOS.step()
def crash_step(work: str, step: str) -> None:
    crashflow.act(Path(work), step)


@DBOS.workflow()
def crash_workflow(work: str) -> int:
    for step in crashflow.STEPS:
        crash_step(work, step)
    return len(crashflow.STEPS)


def crash_drive(work: Path) -> dict[str, int]:
    """Start the crash workflow, or let launch recover it, and wait for its end."""
    with _launched(work):
        if DBOS.get_workflow_status("crash") is None:
            with SetWorkflowID("crash"):
                handle = DBOS.start_workflow(crash_workflow, str(work))
        else:  # launch() has queued it for recovery
            handle = DBOS.retrieve_workflow("crash")
        done: int = handle.get_result()
    if done != len(crashflow.STEPS):
        raise RuntimeError(f"{work}: the workflow returned {done}")
    return {"human_decisions": 0}


# --- workload 5: concurrency ------------------------------------------------------------------


def many(work: Path, runs: int, turns: int, tag: str) -> dict[str, float]:
    """Start ``runs`` async workflows of ``turns`` turns at once; wait for them all.

    Returns the counts and the timed region's ends (``time.monotonic``)."""

    times: list[float] = []

    async def all_runs() -> list[Any]:
        times.append(time.monotonic())
        handles = []
        for i in range(runs):
            with SetWorkflowID(f"{tag}-{i:05d}"):
                handles.append(await DBOS.start_workflow_async(agent_loop_async, str(work), turns))
        results = await asyncio.gather(*(h.get_result() for h in handles), return_exceptions=True)
        times.append(time.monotonic())
        return results

    # launching and destroying DBOS (~1 s: it joins its background threads) are
    # left out of the timed region, as Trestle's store opening and closing are
    with _launched(work, executor_id=tag):
        outcomes = asyncio.run(all_runs())
    ok = sum(o == turns for o in outcomes)
    return {"succeeded": ok, "errors": runs - ok, "started": times[0], "ended": times[-1]}
