"""Trestle on PostgreSQL: the step and agent-turn workloads of ``sys_trestle.py`` with a
:class:`~trestle.store.postgres.PostgresStore` in place of the SQLite file.

Everything else is the same code: the chain of ``python:`` no-op steps driven by
:class:`~trestle.engines.local.LocalEngine` with its defaults, and the real agent run
(``start_agent``/``run_agent``, the scripted model of ``sys_trestle``, the real
``read_file`` tool on a real repository, the default monitors). Each function takes
the URL of a fresh database and ``work``, a fresh directory (the run's workspace).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import agentloop
import sys_trestle
from trestle.agent.launch import run_agent, start_agent
from trestle.store.postgres import PostgresStore
from workloads import chain_plan, importable_steps, timed_run

NAME = "trestle-postgres"


def steps(url: str, work: Path, n: int) -> float:
    """Seconds for ``n`` sequential durable no-op steps."""
    importable_steps()
    store = PostgresStore(url)
    try:
        return timed_run(store, chain_plan(n), work)[1]
    finally:
        store.close()


def turns(url: str, work: Path, n: int) -> float:
    """Microseconds of runtime per turn over an agent loop of ``n`` turns."""
    repo = agentloop.make_repo(work, n)
    store = PostgresStore(url)
    try:
        settings = sys_trestle._settings(n)
        run_id = start_agent(store, f"read the {n} notes", workspace=repo, settings=settings)
        state = asyncio.run(run_agent(store, run_id, sys_trestle._LoopModels(work, n)))
        if state.finished != "succeeded":
            raise RuntimeError(f"{work}: the agent run ended {state.finished}")
    finally:
        store.close()
    return agentloop.us_per_turn(n)
