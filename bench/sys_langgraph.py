"""LangGraph's side of every comparison workload, written the way its docs recommend.

Graphs are compiled with the SQLite checkpointer (``SqliteSaver``; ``AsyncSqliteSaver``
for many runs on one event loop) and invoked with ``durability="sync"``: each step's
checkpoint is written before the next step starts. Recovery after a crash is
``invoke(None, config)`` on the same ``thread_id``.

The agent workloads (2, 3 and the per-turn overhead) run the ReAct tool loop the docs
build: a model node calling a fake chat model (:mod:`agentloop`'s script), LangGraph's
prebuilt ``ToolNode`` running a real ``read_file`` tool, ``tools_condition`` between
them, the transcript in ``MessagesState``. Workload 5 keeps a one-node loop whose node
stands in for a turn (an ``AIMessage`` and its ``ToolMessage``).

Every function takes ``work``, a fresh directory, and keeps its checkpoints in
``work/store.db``.
"""

from __future__ import annotations

import asyncio
import operator
import time
from pathlib import Path
from typing import Annotated, Any, Final, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

import agentloop
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


# --- the stand-in agent loop (workload 5) --------------------------------------------------------


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


# --- the real agent loop (workloads 2, 3 and the per-turn overhead) ----------------------------


class _LoopChatModel(BaseChatModel):
    """A fake chat model: ~1 KB of text and a ``read_file`` call per turn, then an answer.

    The turn is the number of AI messages so far, so a resumed graph asks for the
    turn it crashed in."""

    work: str
    reads: int

    @property
    def _llm_type(self) -> str:
        return "bench-loop"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        turn = sum(isinstance(m, AIMessage) for m in messages)
        agentloop.note_call(Path(self.work), turn)
        if turn < self.reads:
            path = agentloop.note_path(turn)
            call = {"name": "read_file", "args": {"path": path}, "id": f"c{turn}"}
            reply = AIMessage(content=agentloop.message(turn), tool_calls=[call])
        else:
            reply = AIMessage(content=f"read {self.reads} files")
        return ChatResult(generations=[ChatGeneration(message=reply)])


def _loop_graph(work: Path, reads: int) -> StateGraph[Any]:
    """The ReAct tool loop: a model node, LangGraph's ``ToolNode``, ``tools_condition``."""
    repo = work / agentloop.REPO

    @tool
    def read_file(path: str) -> str:
        """Read a text file in the repository."""
        return agentloop.read(repo, path)

    model = _LoopChatModel(work=str(work), reads=reads)

    def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", call_model)
    builder.add_node("tools", ToolNode([read_file]))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    return builder


def _run_loop(work: Path, reads: int, start: dict[str, Any] | None) -> int:
    with SqliteSaver.from_conn_string(str(work / STORE)) as saver:
        graph = _loop_graph(work, reads).compile(checkpointer=saver)
        out = graph.invoke(start, _config("agent", 2 * reads + 2), durability=DURABILITY)
    return sum(isinstance(m, ToolMessage) for m in out["messages"])


def _start() -> dict[str, Any]:
    return {"messages": [HumanMessage(content="read the notes")]}


def agent(work: Path, turns: int) -> int:
    """Run an agent loop of ``turns`` turns to its end; the checkpointer's bytes on disk."""
    agentloop.make_repo(work, turns)
    done = _run_loop(work, turns, _start())
    if done != turns:
        raise RuntimeError(f"ran {done} of {turns} turns")
    return agentturns.files_bytes(work, STORE)


def turns(work: Path, n: int) -> float:
    """Microseconds per turn (model node, tool node, their checkpoints) over ``n`` turns."""
    agentloop.make_repo(work, n)
    _run_loop(work, n, _start())
    return agentloop.us_per_turn(n)


def resume_prepare(work: Path, turns: int) -> None:
    """Run ``turns`` turns, then crash (SIGKILL) in the model call of turn ``turns``."""
    agentloop.make_repo(work, turns + 1)
    agentturns.arm_crash(work, turns)
    _run_loop(work, turns + 1, _start())
    raise RuntimeError(f"{work}: the run was meant to crash at turn {turns}")


def resume(work: Path, turns: int) -> float:
    """Seconds from opening the checkpointer to the interrupted model call running again."""
    agentturns.disarm_crash(work)
    started = time.perf_counter()
    done = _run_loop(work, turns + 1, None)
    if done != turns + 1 or agentturns.first_turn_started is None:
        raise RuntimeError(f"{work}: the resumed run ended after {done} tool calls")
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
