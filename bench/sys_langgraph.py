"""LangGraph's side of every comparison workload, written the way its docs recommend.

Graphs are compiled with the SQLite checkpointer (``SqliteSaver``; ``AsyncSqliteSaver``
for many runs on one event loop) and invoked with ``durability="sync"``: each step's
checkpoint is written before the next step starts. Recovery after a crash is
``invoke(None, config)`` on the same ``thread_id``.

The agent loop keeps its transcript in the graph state with the ``add_messages``
reducer (``MessagesState``): an ``AIMessage`` with a tool call and the
``ToolMessage`` answering it per turn, which is how agent state is normally kept.

Every function takes ``work``, a fresh directory, and keeps its checkpoints in
``work/store.db``.
"""

from __future__ import annotations

import asyncio
import operator
import time
from pathlib import Path
from typing import Annotated, Any, Final, TypedDict

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, MessagesState, StateGraph

import agentturns
import crashflow

NAME = "langgraph"
STORE = "store.db"
DURABILITY: Final = "sync"


def _config(thread: str, steps: int) -> RunnableConfig:
    # the recursion limit counts steps; long loops must raise it
    return {"configurable": {"thread_id": thread}, "recursion_limit": steps + 10}


# --- workload 1: step overhead ------------------------------------------------------------


class Counter(TypedDict):
    i: int


def steps(work: Path, n: int) -> float:
    """Seconds for ``n`` sequential durable no-op steps (a node looping ``n`` times)."""

    def noop(state: Counter) -> Counter:
        return {"i": state["i"] + 1}

    builder = StateGraph(Counter)
    builder.add_node("noop", noop)
    builder.add_edge(START, "noop")
    builder.add_conditional_edges("noop", lambda s: "noop" if s["i"] < n else END)
    with SqliteSaver.from_conn_string(str(work / STORE)) as saver:
        graph = builder.compile(checkpointer=saver)
        started = time.perf_counter()
        out = graph.invoke({"i": 0}, _config("steps", n), durability=DURABILITY)
        seconds = time.perf_counter() - started
    if out["i"] != n:
        raise RuntimeError(f"ran {out['i']} of {n} steps")
    return seconds


class Fan(TypedDict):
    done: Annotated[list[str], operator.add]


def fanout(work: Path, width: int, sleep: float) -> float:
    """Makespan of root -> ``width`` sync nodes sleeping ``sleep`` s -> join (defaults)."""

    def root(state: Fan) -> Fan:
        return {"done": ["root"]}

    def sleeper(name: str) -> Any:
        def node(state: Fan) -> Fan:
            time.sleep(sleep)
            return {"done": [name]}

        return node

    builder = StateGraph(Fan)
    builder.add_node("root", root)
    builder.add_edge(START, "root")
    names = [f"w{i:03d}" for i in range(width)]
    for name in names:
        builder.add_node(name, sleeper(name))
        builder.add_edge("root", name)
    builder.add_node("join", root)
    builder.add_edge(names, "join")
    builder.add_edge("join", END)
    with SqliteSaver.from_conn_string(str(work / STORE)) as saver:
        graph = builder.compile(checkpointer=saver)
        started = time.perf_counter()
        out = graph.invoke({"done": []}, _config("fan", 4), durability=DURABILITY)
        seconds = time.perf_counter() - started
    if len(out["done"]) != width + 2:
        raise RuntimeError(f"fan-out ran {len(out['done'])} of {width + 2} nodes")
    return seconds


# --- the agent loop (workloads 2, 3 and 5) --------------------------------------------------------


class Agent(MessagesState):
    turns: int


def _turn_update(turn: int) -> dict[str, Any]:
    message, tool_result = agentturns.turn_text(turn)
    call = f"call-{turn}"
    return {
        "messages": [
            AIMessage(content=message, tool_calls=[{"name": "shell", "args": {}, "id": call}]),
            ToolMessage(content=tool_result, tool_call_id=call),
        ],
        "turns": turn + 1,
    }


def _agent_graph(work: Path, turns: int, *, asynchronous: bool = False) -> StateGraph[Any]:
    def turn(state: Agent) -> dict[str, Any]:
        agentturns.mark_turn(work, state["turns"])
        return _turn_update(state["turns"])

    async def turn_async(state: Agent) -> dict[str, Any]:
        return turn(state)

    builder = StateGraph(Agent)
    builder.add_node("turn", turn_async if asynchronous else turn)
    builder.add_edge(START, "turn")
    builder.add_conditional_edges("turn", lambda s: "turn" if s["turns"] < turns else END)
    return builder


def _run_agent(work: Path, turns: int, thread: str) -> int:
    with SqliteSaver.from_conn_string(str(work / STORE)) as saver:
        graph = _agent_graph(work, turns).compile(checkpointer=saver)
        out = graph.invoke(
            {"messages": [], "turns": 0}, _config(thread, turns), durability=DURABILITY
        )
    return int(out["turns"])


def agent(work: Path, turns: int) -> int:
    """Run ``turns`` turns to the end; the checkpointer's bytes on disk afterwards."""
    done = _run_agent(work, turns, "agent")
    if done != turns:
        raise RuntimeError(f"ran {done} of {turns} turns")
    return agentturns.files_bytes(work, STORE)


def resume_prepare(work: Path, turns: int) -> None:
    """Run ``turns`` turns, then crash (SIGKILL) as turn ``turns`` begins."""
    agentturns.arm_crash(work, turns)
    _run_agent(work, turns + 1, "agent")
    raise RuntimeError(f"{work}: the run was meant to crash at turn {turns}")


def resume(work: Path, turns: int) -> float:
    """Seconds from opening the checkpointer to the interrupted turn running again."""
    agentturns.disarm_crash(work)
    started = time.perf_counter()
    with SqliteSaver.from_conn_string(str(work / STORE)) as saver:
        graph = _agent_graph(work, turns + 1).compile(checkpointer=saver)
        out = graph.invoke(None, _config("agent", turns + 1), durability=DURABILITY)
    if out["turns"] != turns + 1 or agentturns.first_turn_started is None:
        raise RuntimeError(f"{work}: the resumed run ended at turn {out['turns']}")
    return agentturns.first_turn_started - started


# --- workload 4: crash injection -------------------------------------------------------------


def crash_drive(work: Path) -> dict[str, int]:
    """Start the crash workflow, or resume it from its last checkpoint, to its end."""

    def node(step: str) -> Any:
        def act(state: Fan) -> Fan:
            crashflow.act(work, step)
            return {"done": [step]}

        return act

    builder = StateGraph(Fan)
    previous = START
    for step in crashflow.STEPS:
        builder.add_node(step, node(step))
        builder.add_edge(previous, step)
        previous = step
    builder.add_edge(previous, END)
    config = _config("crash", len(crashflow.STEPS))
    with SqliteSaver.from_conn_string(str(work / STORE)) as saver:
        graph = builder.compile(checkpointer=saver)
        if graph.get_state(config).created_at is None:  # no checkpoint yet: start it
            graph.invoke({"done": []}, config, durability=DURABILITY)
        else:
            # resume from the last checkpoint, with the writes saved since (a finished
            # run has nothing left to do). Not only when the snapshot lists a next
            # task: a node whose writes were saved before the crash is not listed,
            # though its successors have yet to run
            graph.invoke(None, config, durability=DURABILITY)
        final = graph.get_state(config)
    done = final.values.get("done", [])
    if final.next or sorted(done) != sorted(crashflow.STEPS):
        raise RuntimeError(f"{work}: the run stopped with {final.next} next, done: {done}")
    return {"human_decisions": 0}


# --- workload 5: concurrency ------------------------------------------------------------------


def many(work: Path, runs: int, turns: int, tag: str) -> dict[str, float]:
    """Drive ``runs`` threads of ``turns`` async turns at once (``AsyncSqliteSaver``)."""

    started = time.monotonic()

    async def all_runs() -> list[Any]:
        async with AsyncSqliteSaver.from_conn_string(str(work / STORE)) as saver:
            graph = _agent_graph(work, turns, asynchronous=True).compile(checkpointer=saver)
            results: list[Any] = await asyncio.gather(
                *(
                    graph.ainvoke(
                        {"messages": [], "turns": 0},
                        _config(f"{tag}-{i:05d}", turns),
                        durability=DURABILITY,
                    )
                    for i in range(runs)
                ),
                return_exceptions=True,
            )
            return results

    outcomes = asyncio.run(all_runs())
    ended = time.monotonic()
    ok = sum(isinstance(o, dict) and o.get("turns") == turns for o in outcomes)
    return {"succeeded": ok, "errors": runs - ok, "started": started, "ended": ended}
