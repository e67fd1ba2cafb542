"""An agent run killed at random moments, then driven again, records each turn once.

A turn that only reads is committed once its reads are done, with the next call's
reservation; a kill before that commit loses the turn, and the next driver asks for it
again. So whatever moment the driver dies (SIGKILL to the driver alone), the run must
end succeeded with every turn recorded once, every read ended once per turn, the
budget's tally equal to the usage recorded (each answer counted once, no reservation
left held), and the conversation's reads in turn order. The driver is a real process
on a real store. ``TRESTLE_AGENT_KILLS`` sets the most kills a run takes (4 by
default), ``TRESTLE_AGENT_KILL_RUNS`` how many runs, each with its own seed from
``TRESTLE_AGENT_KILL_SEED`` on (1 by default; ``make soak`` runs more).
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

from agent_helpers import of_kind, recorded
from trestle.core.events import ModelCalled, ModelCallReserved, ToolCallEnded
from trestle.core.records.agent import AgentSettings, bootstrap_plan
from trestle.runs import create_run, load_state
from trestle.store import SqliteStore

DRIVER = Path(__file__).with_name("agent_kill_driver.py")
KILLS = int(os.environ.get("TRESTLE_AGENT_KILLS", "4"))
SEED = int(os.environ.get("TRESTLE_AGENT_KILL_SEED", "20261124"))
RUNS = int(os.environ.get("TRESTLE_AGENT_KILL_RUNS", "1"))
READS = 200
# Only a guard against a hung driver; nothing here asserts how long anything takes.
DEADLINE = 120.0


def start(store_path: Path, run_id: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(DRIVER), str(store_path), run_id, str(READS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("seed", range(SEED, SEED + RUNS))
def test_an_agent_run_killed_at_random_moments_records_each_turn_once(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    workspace = tmp_path / "ws"
    (workspace / "notes").mkdir(parents=True)
    for i in range(READS):  # each shows new lines: the monitors see progress, not a loop
        words = ("".join(rng.choices(string.ascii_lowercase, k=8)) for _ in range(40))
        (workspace / "notes" / f"n{i}.txt").write_text("\n".join(words) + "\n")
    store_path = tmp_path / "runs.db"
    with contextlib.closing(SqliteStore(store_path)) as store:
        settings = AgentSettings(
            model="scripted", test_command="true", plan_approval="auto", max_turns=READS + 10
        )
        run_id = create_run(
            store, bootstrap_plan("read the notes"), workspace=workspace, agent=settings
        )

    killed = 0
    for _ in range(KILLS):
        driver = start(store_path, run_id)
        time.sleep(rng.uniform(0.4, 1.2))  # the interpreter starts in about half a second
        if driver.poll() is not None:
            break  # it finished first
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        killed += 1
    assert killed, "every driver finished before its kill: nothing was tested"
    driver = start(store_path, run_id)
    out, err = driver.communicate(timeout=DEADLINE)
    assert out.decode().splitlines()[-1:] == ["succeeded"], err.decode()

    with contextlib.closing(SqliteStore(store_path)) as store:
        events = recorded(store, run_id)
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
    # the budget counted every recorded answer once and holds nothing back
    assert state.tally.spent["tokens"] == sum(c.response.usage.total_tokens for c in called)
    assert state.tally.reserved.get("tokens", 0.0) == 0.0
    # a call was reserved before each answer, and again for each one a kill lost
    assert len(of_kind(events, ModelCallReserved)) >= len(called)
    by_step = collections.Counter(c.step for c in called)
    print(f"killed {killed} times; {len(called)} turns recorded once each: {dict(by_step)}")
