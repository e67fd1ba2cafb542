"""An agent run killed at random moments, then driven again, records each turn once.

A turn that only reads is committed once its reads are done, with the next call's
reservation; a kill before that commit loses the turn, and the next driver asks for it
again. So whatever moment the driver dies (SIGKILL to the driver alone), the run must
end succeeded with every turn recorded once, every read ended once per turn, the
conversation's reads in turn order, and the budget's tally equal to the usage recorded
plus the worst case of each call a kill cut short (each answer counted once, no
reservation left held). The driver is a real process on a real store.
``TRESTLE_AGENT_KILLS`` sets the most kills a run takes (4 by default),
``TRESTLE_AGENT_KILL_RUNS`` how many runs, each with its own seed from
``TRESTLE_AGENT_KILL_SEED`` on (1 by default; ``make soak`` runs more). A kill at one
exact point (right after the plan was recorded) has a test of its own.
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import signal
import string
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent_helpers import agent_settings, of_kind, recorded, start_run
from trestle.core.events import (
    AnyEvent,
    ModelCalled,
    ModelCallReserved,
    PlanExtended,
    RunCreated,
    RunResumed,
    StepAttemptEnded,
    ToolCallEnded,
)
from trestle.core.state import RunState
from trestle.lifecycle.runs import load_state
from trestle.store import SqliteStore

DRIVER = Path(__file__).with_name("agent_kill_driver.py")
KILLS = int(os.environ.get("TRESTLE_AGENT_KILLS", "4"))
SEED = int(os.environ.get("TRESTLE_AGENT_KILL_SEED", "20261124"))
RUNS = int(os.environ.get("TRESTLE_AGENT_KILL_RUNS", "1"))
READS = 200
# Only a guard against a hung driver; nothing here asserts how long anything takes.
DEADLINE = 120.0


def start(store_path: Path, run_id: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(DRIVER), str(store_path), run_id, str(READS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
    )


def new_run(tmp_path: Path, rng: random.Random) -> tuple[Path, str]:
    """A store with an agent run that reads READS notes; nothing runs yet."""
    workspace = tmp_path / "ws"
    (workspace / "notes").mkdir(parents=True)
    for i in range(READS):  # each shows new lines: the monitors see progress, not a loop
        words = ("".join(rng.choices(string.ascii_lowercase, k=8)) for _ in range(40))
        (workspace / "notes" / f"n{i}.txt").write_text("\n".join(words) + "\n")
    store_path = tmp_path / "runs.db"
    settings = agent_settings(test_command="true", max_turns=READS + 10)
    with contextlib.closing(SqliteStore(store_path)) as store:
        run_id = start_run(store, workspace, goal="read the notes", settings=settings)
    return store_path, run_id


def finish(store_path: Path, run_id: str) -> list[AnyEvent]:
    """Drive the run to its end in a fresh driver; its events."""
    driver = start(store_path, run_id)
    out, err = driver.communicate(timeout=DEADLINE)
    assert out.decode().splitlines()[-1:] == ["succeeded"], err.decode()
    with contextlib.closing(SqliteStore(store_path)) as store:
        return recorded(store, run_id)


def test_a_plan_recorded_just_before_a_crash_is_not_recorded_again(tmp_path: Path) -> None:
    # the plan step's replayed answer would add the same steps a second time, and the
    # run would wait for ever on steps listed twice
    store_path, run_id = new_run(tmp_path, random.Random(SEED))
    dying = start(store_path, run_id, DIE_AFTER="plan_extended")
    dying.communicate(timeout=DEADLINE)
    assert dying.returncode == -signal.SIGKILL

    events = finish(store_path, run_id)

    assert len(of_kind(events, PlanExtended)) == 1
    plans = [e for e in of_kind(events, StepAttemptEnded) if e.step == "plan"]
    assert [e.action.output for e in plans] == ["plan accepted (recorded before)"]


def cut_short(events: list[AnyEvent]) -> int:
    """Tokens reserved for model calls whose driver was killed before their answer was
    recorded."""
    in_flight: dict[str, int] = {}
    lost = 0
    for event in events:
        match event:
            case ModelCallReserved(step=step, tokens=tokens):
                in_flight[step] = tokens
            case ModelCalled(step=step) | StepAttemptEnded(step=step):
                in_flight.pop(step, None)
            case RunResumed():
                lost += sum(in_flight.values())
                in_flight.clear()
    return lost


@pytest.mark.parametrize("seed", range(SEED, SEED + RUNS))
def test_an_agent_run_killed_at_random_moments_records_each_turn_once(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    store_path, run_id = new_run(tmp_path, rng)

    killed = 0
    with contextlib.closing(SqliteStore(store_path)) as watching:
        for _ in range(KILLS):
            # killed once the run has gone a random way on (a whole run records about
            # 870 events), a random moment later: at a commit as often as between two;
            # by the clock alone a faster run could finish before any kill
            target = watching.run(run_id).last_seq + rng.randint(1, 600)
            driver = start(store_path, run_id)
            deadline = time.monotonic() + DEADLINE
            while driver.poll() is None and watching.run(run_id).last_seq < target:
                assert time.monotonic() < deadline, "the driver made no progress"
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.02))
            if driver.poll() is not None:
                break  # it finished first
            os.kill(driver.pid, signal.SIGKILL)
            driver.wait()
            killed += 1
    assert killed, "every driver finished before its kill: nothing was tested"
    events = finish(store_path, run_id)
    with contextlib.closing(SqliteStore(store_path)) as store:
        state = load_state(store, run_id)
    called = of_kind(events, ModelCalled)
    turns = collections.Counter((c.step, c.round, c.turn) for c in called)
    assert [t for t, n in turns.items() if n > 1] == []
    ends = collections.Counter(
        (e.step, e.round, e.turn, e.call_id) for e in of_kind(events, ToolCallEnded)
    )
    assert [e for e, n in ends.items() if n > 1] == []
    understood = [c for c in called if c.step == "understand"]
    assert [c.turn for c in understood] == list(range(1, READS + 2))
    read = [e for e in of_kind(events, ToolCallEnded) if e.step == "understand"]
    assert [e.turn for e in read] == list(range(1, READS + 1)) and all(e.ok for e in read)
    # the budget counted every recorded answer once, and the worst case of each call a
    # kill cut short (it may have been answered and billed); it holds nothing back
    answered = sum(c.response.usage.total_tokens for c in called)
    assert state.tally.spent["tokens"] == answered + cut_short(events)
    assert state.tally.reserved.get("tokens", 0.0) == 0.0
    # a call was reserved before each answer, and again for each one a kill lost
    assert len(of_kind(events, ModelCallReserved)) >= len(called)
    by_step = collections.Counter(c.step for c in called)
    print(f"killed {killed} times; {len(called)} turns recorded once each: {dict(by_step)}")


def test_an_extension_folded_twice_adds_its_steps_once(tmp_path: Path) -> None:
    # a store written before the plan step looked for its own review holds the same
    # extension twice; it must fold to the run it was
    store_path, run_id = new_run(tmp_path, random.Random(SEED))
    events = finish(store_path, run_id)
    [extension] = of_kind(events, PlanExtended)
    at = events.index(extension)
    twice = [*events[: at + 1], extension, *events[at + 1 :]]

    def fold(stream: list[AnyEvent]) -> RunState:
        first = stream[0]
        assert isinstance(first, RunCreated)
        state = RunState.from_created(first)
        for seq, event in enumerate(stream[1:], start=2):
            state.apply(event, seq)
        return state

    once, again = fold(events), fold(twice)
    assert [(s.id, s.needs) for s in again.plan.steps] == [(s.id, s.needs) for s in once.plan.steps]
    assert {sid: st.status for sid, st in again.steps.items()} == {
        sid: st.status for sid, st in once.steps.items()
    }
    assert again.finished == once.finished == "succeeded"
