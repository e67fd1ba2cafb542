"""Invariant 6 for agents: a model call reserves its worst case before it is sent.

Three agent steps run at once through the real runtime and engine; each call's
reported usage is its worst case (the prompt as estimated plus ``max_tokens``), so a
run that only counted what was spent would let every in-flight call land past the
limit. With reservations the hard limit is passed by at most one call's worth.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from agent_helpers import (
    GOAL,
    agent_settings,
    call,
    drive,
    findings_json,
    of_kind,
    plan_json,
    plan_step,
    recorded,
    sample_workspace,
    start_run,
    state_of,
)
from trestle.core.budget import Budget, Dimension, Limit
from trestle.core.conversation import Message, ModelResponse, ToolSchema, Usage
from trestle.core.estimate import estimate_tokens
from trestle.core.events import (
    ApprovalRequested,
    BudgetExhausted,
    ModelCalled,
    ModelCallHeld,
    ModelCallReserved,
)
from trestle.core.records.agent import bootstrap_plan
from trestle.core.records.monitors import MonitorSettings
from trestle.core.report import build_report
from trestle.lifecycle.runs import create_run
from trestle.models.pricing import PriceTable
from trestle.models.scripted import FunctionModel, ScriptedModel
from trestle.store.sqlite import SqliteStore

MAX_TOKENS = 300
PRICES = PriceTable.from_mapping({"scripted": (1_000.0, 3_000.0)})  # dollars per million
READERS = ("a", "b", "c")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "runs.db")
    yield opened
    opened.close()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return sample_workspace(tmp_path)


class ParallelReaders:
    """Understand, plan three independent steps, then each step reads for ever.

    Every answer reports its worst case as its usage and takes a moment, so the
    three steps' calls overlap; ``most_at_once`` says how far they did.
    """

    def __init__(self) -> None:
        self.in_flight = self.most_at_once = 0
        self.sent: list[int] = []  # each call's tokens, in order

    async def reply(
        self, messages: Sequence[Message], tools: Sequence[ToolSchema]
    ) -> ModelResponse:
        task = next(m.content for m in messages if m.role == "user")
        self.in_flight += 1
        self.most_at_once = max(self.most_at_once, self.in_flight)
        try:
            await asyncio.sleep(0.02)
        finally:
            self.in_flight -= 1
        usage = Usage(input_tokens=estimate_tokens(messages, tools), output_tokens=MAX_TOKENS)
        self.sent.append(usage.total_tokens)
        if task.startswith("Current step '"):
            n = len(self.sent)
            # a different range each time: a loop monitor would pause the run otherwise
            return call(
                "read_file", path="calc.py", start_line=n, end_line=n, call_id=f"r{n}", usage=usage
            )
        if "Phase PLAN" in task:
            steps = [
                plan_step(s, f"read calc.py ({s})", verify=[{"file_exists": "calc.py"}])
                for s in READERS
            ]
            text = plan_json(*steps, summary="read in parallel")
        else:
            text = findings_json()
        return ModelResponse(text=text, finish_reason="stop", usage=usage)


def run_parallel(
    store: SqliteStore, workspace: Path, budget: Budget
) -> tuple[str, ParallelReaders]:
    settings = agent_settings(max_tokens=MAX_TOKENS)
    plan = bootstrap_plan(GOAL, budget=budget)
    # the cost monitor would pause the run as it nears the limit: the budget alone acts
    quiet = MonitorSettings(enabled=False)
    run_id = create_run(store, plan, workspace=workspace, agent=settings, monitors=quiet)
    readers = ParallelReaders()
    drive(store, run_id, FunctionModel(readers.reply, name="scripted"), prices=PRICES)
    return run_id, readers


def worst_call(store: SqliteStore, run_id: str, dim: Dimension) -> float:
    """The most any one recorded call spent in ``dim``."""
    calls = of_kind(recorded(store, run_id), ModelCalled)
    usages = [c.response.usage for c in calls]
    if dim == "tokens":
        return max(u.total_tokens for u in usages)
    return max(u.cost or 0.0 for u in usages)


@pytest.mark.parametrize(
    ("dim", "limit"),
    [("tokens", 25_000.0), ("cost", 40.0)],
)
def test_parallel_agent_steps_pass_a_hard_limit_by_at_most_one_call(
    store: SqliteStore, workspace: Path, dim: Dimension, limit: float
) -> None:
    budget = Budget.model_validate({dim: {"hard": limit}})

    run_id, readers = run_parallel(store, workspace, budget)

    state = state_of(store, run_id)
    events = recorded(store, run_id)
    assert readers.most_at_once >= 2  # the steps' calls really overlapped
    assert {e.step for e in of_kind(events, ModelCallReserved)} >= set(READERS)
    assert state.finished == "stopped"
    (exhausted,) = of_kind(events, BudgetExhausted)
    assert exhausted.dimension == dim
    spent = state.tally.spent[dim]
    print(f"{dim}: spent {spent:g} of hard {limit:g}")
    assert spent <= limit + worst_call(store, run_id, dim), (spent, limit)
    assert state.tally.reserved.get(dim, 0.0) == 0.0  # every reservation released
    assert build_report(state).status == "stopped"


def test_a_call_whose_worst_case_passes_the_remaining_budget_is_not_sent(
    store: SqliteStore, workspace: Path
) -> None:
    settings = agent_settings(max_tokens=2_000)
    run_id = start_run(store, workspace, settings=settings, budget=Budget(tokens=Limit(hard=1_500)))
    sent: list[str] = []

    def reply(messages: Sequence[Message], tools: Sequence[ToolSchema]) -> str:
        sent.append("call")
        return findings_json()

    drive(store, run_id, FunctionModel(reply, name="scripted"))

    events = recorded(store, run_id)
    assert sent == []
    assert of_kind(events, ModelCalled) == []
    (held,) = of_kind(events, ModelCallHeld)
    assert held.step == "understand" and held.tokens > 2_000
    (exhausted,) = of_kind(events, BudgetExhausted)
    assert exhausted.dimension == "tokens"
    state = state_of(store, run_id)
    assert state.finished == "stopped"
    assert state.tally.spent.get("tokens", 0.0) == 0.0


def test_a_call_whose_worst_case_passes_a_soft_limit_asks_before_it_is_sent(
    store: SqliteStore, workspace: Path
) -> None:
    settings = agent_settings(max_tokens=2_000)
    run_id = start_run(store, workspace, settings=settings, budget=Budget(tokens=Limit(soft=1_500)))
    sent: list[str] = []

    def reply(messages: Sequence[Message], tools: Sequence[ToolSchema]) -> str:
        sent.append("call")
        return findings_json()

    drive(store, run_id, FunctionModel(reply, name="scripted"))

    events = recorded(store, run_id)
    assert sent == []
    (asked,) = of_kind(events, ApprovalRequested)
    assert asked.subject == "budget"
    assert asked.breach is not None and asked.breach.dimension == "tokens"
    assert of_kind(events, BudgetExhausted) == []


@pytest.mark.parametrize("room", [0, -1])
def test_a_call_is_held_exactly_where_its_worst_case_would_pass_the_limit(
    store: SqliteStore, workspace: Path, room: int
) -> None:
    # A read's answer is committed with the next call's reservation, so that call's
    # check runs before the answer is applied: it must count the answer as spent and
    # its reservation as released, no more and no less. At a hard limit of the first
    # answer's usage plus the second call's worst case, the second call goes; a token
    # less, and it is held.
    used = Usage(input_tokens=120, output_tokens=30)
    replies: list[ModelResponse | str] = [
        call("read_file", path="calc.py", usage=used),
        findings_json(),
    ]
    settings = agent_settings(max_tokens=MAX_TOKENS)

    free = start_run(store, workspace, settings=settings)
    drive(store, free, ScriptedModel(replies))
    first, second = of_kind(recorded(store, free), ModelCallReserved)[:2]
    assert (first.turn, second.turn) == (1, 2)
    limit = used.total_tokens + second.tokens + room

    run_id = start_run(store, workspace, settings=settings, budget=Budget(tokens=Limit(hard=limit)))
    drive(store, run_id, ScriptedModel(replies))

    events = recorded(store, run_id)
    understood = [c.turn for c in of_kind(events, ModelCalled) if c.step == "understand"]
    held = [h for h in of_kind(events, ModelCallHeld) if h.step == "understand"]
    if room == 0:
        assert (understood, held) == ([1, 2], [])
    else:
        assert understood == [1]
        assert [h.tokens for h in held] == [second.tokens]
        (exhausted,) = of_kind(events, BudgetExhausted)
        assert exhausted.used == limit + 1
