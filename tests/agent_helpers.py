"""Building blocks for tests of agent runs: a real workspace, scripted replies, a driver.

Everything here is real apart from the model: the workspace is files in ``tmp_path``
with a genuinely failing pytest test, the store is the caller's (a SQLite file), and
:func:`drive` runs the run with :class:`~trestle.engines.local.LocalEngine` and
:class:`~trestle.agent.runtime.AgentPerformer` until it finishes or waits on a human.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from trestle.agent.runtime import AgentPerformer
from trestle.core.budget import Budget
from trestle.core.errors import LeaseHeldError
from trestle.core.events import AnyEvent, StoredEvent
from trestle.core.records.agent import AgentSettings, bootstrap_plan
from trestle.core.state import RunState
from trestle.engines.local import LocalEngine
from trestle.lifecycle.runs import create_run, load_state
from trestle.models import Model, ModelResponse, ToolCall, Usage
from trestle.monitors.hub import MonitorFactory
from trestle.store import SqliteStore
from trestle.store.base import Store

# Third-party pytest plugins installed beside trestle take seconds to import; the
# sample workspace's tests need none of them, and every agent run runs pytest twice.
TEST_COMMAND = (
    f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {shlex.quote(sys.executable)} -m pytest -q "
    "-p no:cacheprovider"
)
GOAL = "make add() return the sum"
BUGGY_CALC = "def add(a, b):\n    return a - b\n"
FIXED_CALC = "def add(a, b):\n    return a + b\n"
CALC_TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
POLL = 0.02  # seconds between the engine's looks for human requests

E = TypeVar("E")


def sample_workspace(root: Path, name: str = "ws") -> Path:
    """A workspace whose one test fails: ``calc.add`` subtracts.

    Returns:
        ``root / name``, holding ``calc.py`` (the bug) and ``test_calc.py``.
    """
    workspace = root / name
    workspace.mkdir(parents=True)
    (workspace / "calc.py").write_text(BUGGY_CALC, encoding="utf-8")
    (workspace / "test_calc.py").write_text(CALC_TEST, encoding="utf-8")
    return workspace


def call(
    name: str, *, call_id: str = "c1", usage: Usage | None = None, **arguments: Any
) -> ModelResponse:
    """A model answer that calls one tool ``name`` with ``arguments``."""
    return ModelResponse(
        tool_calls=(ToolCall(id=call_id, name=name, arguments=json.dumps(arguments)),),
        finish_reason="tool_calls",
        usage=usage or Usage(),
    )


def findings_json(
    summary: str = "add() subtracts instead of adding",
    *,
    files: Sequence[str] = ("calc.py",),
    how_to_test: str = "run pytest: test_add fails",
    **extra: Any,
) -> str:
    """UNDERSTAND's answer: findings as the JSON text a model would write."""
    relevant = [{"path": f, "why": "the goal concerns it"} for f in files]
    return json.dumps(
        {"summary": summary, "relevant_files": relevant, "how_to_test": how_to_test, **extra}
    )


def plan_step(
    step_id: str,
    objective: str,
    *,
    files: Sequence[str] = (),
    new_files: Sequence[str] = (),
    needs: Sequence[str] = (),
    verify: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """One step of a model's plan; verified by :data:`TEST_COMMAND` unless told otherwise."""
    return {
        "id": step_id,
        "objective": objective,
        "files": list(files),
        "new_files": list(new_files),
        "needs": list(needs),
        "verify": list(verify) if verify is not None else [{"command": TEST_COMMAND}],
    }


def plan_json(*steps: Mapping[str, Any], summary: str = "") -> str:
    """PLAN's answer: the plan as the JSON text a model would write."""
    return json.dumps({"summary": summary, "steps": list(steps)})


FIX_STEP = plan_step("fix", "add() returns the sum", files=["calc.py"])


def fix_replies() -> list[ModelResponse | str]:
    """A whole agent run that fixes the sample workspace, one reply per model turn:
    read, findings, plan (one step ``fix``), edit, finish."""
    return [
        call("read_file", path="calc.py"),
        findings_json(),
        plan_json(FIX_STEP, summary="fix add"),
        call("edit_file", path="calc.py", old="a - b", new="a + b"),
        call("finish", summary="add() adds", claims=["test_add passes"]),
    ]


def agent_settings(**overrides: Any) -> AgentSettings:
    """Settings for a scripted agent run: the sample's test command, plans auto-approved."""
    fields: dict[str, Any] = {
        "model": "scripted",
        "test_command": TEST_COMMAND,
        "plan_approval": "auto",
        **overrides,
    }
    return AgentSettings(**fields)


def start_run(
    store: Store,
    workspace: Path,
    *,
    goal: str = GOAL,
    settings: AgentSettings | None = None,
    budget: Budget | None = None,
    parallelism: int = 4,
) -> str:
    """Record a new agent run on ``workspace``; nothing runs yet. Returns its id."""
    plan = bootstrap_plan(goal, budget=budget, parallelism=parallelism)
    return create_run(store, plan, workspace=workspace, agent=settings or agent_settings())


async def drive_async(
    store: Store,
    run_id: str,
    model: Model,
    *,
    poll_interval: float = POLL,
    monitors: MonitorFactory | None = None,
    **performer: Any,
) -> list[StoredEvent]:
    """Drive the run until it finishes or waits on a human; return the events it recorded.

    ``monitors``: the engine's (default: every built-in one); ``performer``: keyword
    arguments for :class:`AgentPerformer` (tools, prices, ...).
    """
    engine = LocalEngine(
        store,
        poll_interval=poll_interval,
        performer=AgentPerformer(model, **performer),
        monitors=monitors,
    )
    try:
        return [stored async for stored in engine.drive(run_id)]
    finally:
        engine.close()


def drive(
    store: Store,
    run_id: str,
    model: Model,
    *,
    poll_interval: float = POLL,
    monitors: MonitorFactory | None = None,
    **performer: Any,
) -> list[StoredEvent]:
    """:func:`drive_async` from synchronous code."""
    return asyncio.run(
        drive_async(
            store, run_id, model, poll_interval=poll_interval, monitors=monitors, **performer
        )
    )


def recorded(store: Store, run_id: str) -> list[AnyEvent]:
    """Every event of the run, in order."""
    return [stored.event for stored in store.events(run_id)]


def of_kind(events: Sequence[Any], kind: type[E]) -> list[E]:
    """The events of one class, in order (``events`` may also be StoredEvents)."""
    found = [getattr(e, "event", e) for e in events]
    return [e for e in found if isinstance(e, kind)]


def state_of(store: Store, run_id: str) -> RunState:
    """The run's current state, folded from its store."""
    return load_state(store, run_id)


async def drive_taking_over(
    store_path: str, run_id: str, performer: AgentPerformer, *, poll_interval: float = 0.5
) -> RunState:
    """The run driven from its store file by a driver started after another was killed
    (see :func:`run_taking_over`), until it finishes or waits on a human."""
    store = SqliteStore(store_path)
    engine = LocalEngine(store, poll_interval=poll_interval, performer=performer)
    try:
        return await run_taking_over(engine, run_id)
    finally:
        engine.close()
        store.close()


async def run_taking_over(engine: LocalEngine, run_id: str, *, tries: int = 100) -> RunState:
    """``engine.run(run_id)`` from a driver started after another was killed: a killed
    driver's lease is taken over at once, unless its pid was reused meanwhile, which
    this waits out."""
    for _ in range(tries):
        try:
            return await engine.run(run_id)
        except LeaseHeldError:
            await asyncio.sleep(0.1)
    raise SystemExit(f"run {run_id!r}: its lease was never freed")
