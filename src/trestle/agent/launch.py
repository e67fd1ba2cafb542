"""The agent from Python: start a run, drive it with your model and tools.

```python
store = SqliteStore(".trestle/trestle.db")
run_id = start_agent(store, "fix the failing test", workspace=Path("."),
                     settings=AgentSettings(model="openai:gpt-4o-mini",
                                            test_command="pytest -q"))
state = asyncio.run(run_agent(store, run_id, model_from_spec("openai:gpt-4o-mini")))
```

Driving again after a crash, an approval or a ``tell`` is the same ``run_agent`` call:
what was recorded is replayed, not repeated.
"""

from __future__ import annotations

from pathlib import Path

from trestle.agent.context import Summariser
from trestle.agent.runtime import AgentPerformer
from trestle.core.budget import Budget
from trestle.core.conversation import Model
from trestle.core.policy import Policy
from trestle.core.records.agent import AgentSettings, bootstrap_plan
from trestle.core.state import RunState
from trestle.engines.local import LocalEngine
from trestle.lifecycle.runs import create_run
from trestle.store.base import Store
from trestle.tools.registry import ToolRegistry


def start_agent(
    store: Store,
    goal: str,
    *,
    workspace: Path,
    settings: AgentSettings,
    policy: Policy | None = None,
    budget: Budget | None = None,
    parallelism: int = 4,
) -> str:
    """Record a new agent run for ``goal`` in ``workspace``; return its id. Nothing runs yet.

    ``policy`` is the operator's approval policy (as ``trestle.toml`` gives it);
    ``budget`` pauses (soft) or stops (hard) the run at its limits.
    """
    plan = bootstrap_plan(goal, budget=budget, parallelism=parallelism)
    return create_run(store, plan, workspace=workspace, operator_policy=policy, agent=settings)


async def run_agent(
    store: Store,
    run_id: str,
    model: Model,
    *,
    tools: ToolRegistry | None = None,
    summariser: Summariser | None = None,
) -> RunState:
    """Drive the run until it finishes or waits for a human; return its state.

    Args:
        store: where the run is recorded.
        run_id: from :func:`start_agent`.
        model: the model (any :class:`~trestle.models.Model`, a replay included).
        tools: the tools on offer; default: the coding tools. Register extra tools
            on ``trestle.tools.coding_registry()`` and pass that.
        summariser: condenses old turns when the context fills up; default: extractive.
    """
    performer = AgentPerformer(model, tools=tools, summariser=summariser)
    engine = LocalEngine(store, performer=performer)
    try:
        return await engine.run(run_id)
    finally:
        engine.close()
