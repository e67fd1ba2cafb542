"""LangGraph on PostgreSQL: the step and agent-turn workloads of ``sys_langgraph.py``
with its PostgreSQL checkpointer (``PostgresSaver``, ``langgraph-checkpoint-postgres``).

The graphs are the same ones, built the same way (``sys_langgraph`` builds the agent's
ReAct tool loop); only the checkpointer differs: ``PostgresSaver.from_conn_string`` on
a database of its own, ``setup()`` before the timed part (it creates the tables), and
``durability="sync"`` as on SQLite. Each function takes the database's URL and
``work``, a fresh directory (the agent's repository goes there).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, TypedDict

from langchain_core.messages import ToolMessage
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.graph import END, START, StateGraph

import agentloop
import sys_langgraph

NAME = "langgraph-postgres"


class Counter(TypedDict):
    i: int


def steps(url: str, work: Path, n: int) -> float:
    """Seconds for ``n`` sequential durable no-op steps (a node looping ``n`` times)."""

    def noop(state: Counter) -> Counter:
        return {"i": state["i"] + 1}

    builder = StateGraph(Counter)
    builder.add_node("noop", noop)
    builder.add_edge(START, "noop")
    builder.add_conditional_edges("noop", lambda s: "noop" if s["i"] < n else END)
    with PostgresSaver.from_conn_string(url) as saver:
        saver.setup()
        graph = builder.compile(checkpointer=saver)
        started = time.perf_counter()
        config = sys_langgraph._config("steps", n)
        out = graph.invoke({"i": 0}, config, durability=sys_langgraph.DURABILITY)
        seconds = time.perf_counter() - started
    if out["i"] != n:
        raise RuntimeError(f"ran {out['i']} of {n} steps")
    return seconds


def turns(url: str, work: Path, n: int) -> float:
    """Microseconds per turn (model node, tool node, their checkpoints) over ``n`` turns."""
    agentloop.make_repo(work, n)
    start: dict[str, Any] = sys_langgraph._start()
    with PostgresSaver.from_conn_string(url) as saver:
        saver.setup()
        graph = sys_langgraph._loop_graph(work, n).compile(checkpointer=saver)
        config = sys_langgraph._config("agent", 2 * n + 2)
        out = graph.invoke(start, config, durability=sys_langgraph.DURABILITY)
    done = sum(isinstance(m, ToolMessage) for m in out["messages"])
    if done != n:
        raise RuntimeError(f"ran {done} of {n} turns")
    return agentloop.us_per_turn(n)
