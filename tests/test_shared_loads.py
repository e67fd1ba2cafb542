"""A Temporal worker's attempts of one run that ask for its state at once share a load.

The load here is a real one, :meth:`LocalEngine.state` on a SQLite store, held back by
the test where it needs the askers to gather; the Temporal test of 32 attempts of a
4,000-step run started at once is in ``test_temporal_limits.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from trestle.core.errors import UnknownRunError
from trestle.core.events import StepStarted, idempotency_key
from trestle.core.plan import Plan, Step
from trestle.core.state import RunState
from trestle.engines.local import LocalEngine
from trestle.engines.temporal.loads import SharedLoads, changes_state, own_copy
from trestle.lifecycle.runs import create_run
from trestle.store import SqliteStore


@pytest.fixture
def engine(tmp_path: Path) -> LocalEngine:
    return LocalEngine(SqliteStore(tmp_path / "t.db"), sandbox="off")


def _run(engine: LocalEngine, tmp_path: Path, *steps: Step) -> str:
    return create_run(engine.store, Plan(goal="g", steps=steps), workspace=tmp_path)


class HeldLoads:
    """The engine's load, counted and noted in ``said``; each waits for the test's word
    while ``held``."""

    def __init__(self, engine: LocalEngine, said: list[str]) -> None:
        self.engine = engine
        self.said = said
        self.loads = 0
        self.held = False
        self.inside = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, run_id: str) -> RunState:
        self.loads += 1
        self.said.append(f"load {self.loads} begins")
        if self.held:
            self.inside.set()
            await self.release.wait()
        return await asyncio.to_thread(self.engine.state, run_id)


async def _first_held(
    engine: LocalEngine, said: list[str], run_id: str
) -> tuple[HeldLoads, SharedLoads, asyncio.Future[RunState]]:
    """Shared loads whose first load (of ``run_id``) is under way, held by the test."""
    loader = HeldLoads(engine, said)
    loads = SharedLoads(loader)
    loader.held = True
    first = asyncio.ensure_future(loads.state(run_id))
    await loader.inside.wait()
    return loader, loads, first


def test_those_asking_during_a_load_share_the_next_one_begun_after_they_asked(
    engine: LocalEngine, tmp_path: Path
) -> None:
    run_id = _run(engine, tmp_path, Step(id="a", run="true"))
    said: list[str] = []

    async def ask(loads: SharedLoads, n: int) -> RunState:
        said.append(f"ask {n}")
        return await loads.state(run_id)

    async def scene() -> None:
        loader = HeldLoads(engine, said)
        loads = SharedLoads(loader)
        loader.held = True
        first = asyncio.ensure_future(ask(loads, 0))
        await loader.inside.wait()
        later = [asyncio.ensure_future(ask(loads, n)) for n in range(1, 6)]
        await asyncio.sleep(0)
        loader.held = False
        loader.release.set()
        states = await asyncio.gather(first, *later)
        assert loader.loads == 2
        assert all(s is states[1] for s in states[1:]) and states[0] is not states[1]
        # the load they share began once all of them had asked (the first may have
        # read the store before they did)
        assert said[: said.index("load 2 begins")] == [
            "ask 0", "load 1 begins", *(f"ask {n}" for n in range(1, 6))
        ]  # fmt: skip
        again = await loads.state(run_id)  # nothing under way: a load of its own
        assert loader.loads == 3 and again is not states[1]

    asyncio.run(scene())


def test_a_load_that_fails_fails_its_askers_and_one_cancelled_leaves_the_rest(
    engine: LocalEngine, tmp_path: Path
) -> None:
    run_id = _run(engine, tmp_path, Step(id="a", run="true"))

    async def scene() -> None:
        loader, loads, first = await _first_held(engine, [], "no-such-run")
        failing = asyncio.ensure_future(loads.state("no-such-run"))
        gone, kept = (asyncio.ensure_future(loads.state(run_id)) for _ in range(2))
        await asyncio.sleep(0)
        gone.cancel()
        loader.held = False
        loader.release.set()
        for asked in (first, failing):
            with pytest.raises(UnknownRunError):
                await asked
        assert (await kept).run_id == run_id
        assert gone.cancelled() and loader.loads == 3

    asyncio.run(scene())


def test_an_attempt_that_records_takes_its_own_copy(engine: LocalEngine, tmp_path: Path) -> None:
    run_id = _run(
        engine,
        tmp_path,
        Step(id="cmd", run="true"),
        Step(
            id="child",
            delegate={
                "goal": "sub",
                "plan": {"goal": "sub", "steps": [{"id": "x", "run": "true"}]},
            },
        ),
    )
    state = engine.state(run_id)

    def start(step: str) -> StepStarted:
        key = idempotency_key(run_id, step, 1)
        return StepStarted(at=1.0, step=step, attempt=1, key=key)

    assert not changes_state(state, start("cmd"))
    assert changes_state(state, start("child"))
    copy = own_copy(state)
    assert copy is not state and copy.model_dump() == state.model_dump()
    assert copy.steps["cmd"] is not state.steps["cmd"]


def test_a_load_cancelled_before_it_began_leaves_no_asker_waiting_for_ever(
    engine: LocalEngine, tmp_path: Path
) -> None:
    run_id = _run(engine, tmp_path, Step(id="a", run="true"))

    async def scene() -> None:
        loader, loads, first = await _first_held(engine, [], run_id)
        before = set(loads._serving)
        second = asyncio.ensure_future(loads.state(run_id))
        await asyncio.sleep(0)
        (waiting,) = loads._serving - before  # the next load's, not begun
        waiting.cancel()  # as the worker's loop closing cancels it
        with pytest.raises(asyncio.CancelledError):
            await second
        loader.held = False
        loader.release.set()
        assert (await first).run_id == run_id
        assert (await loads.state(run_id)).run_id == run_id  # a load of its own, begun anew

    asyncio.run(scene())
