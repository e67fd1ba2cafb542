"""The crash-injection harness: SIGKILL a system's driver at seeded random moments.

Trial ``n`` (the same ``n`` for every system) writes the workflow's nap timings
from seed ``n``, then ``1..3`` times: forks a driver that starts or resumes the
workflow with the system's own recovery mechanism, waits until the ledger has grown
by ``0..2`` lines, waits a further ``0..80`` ms, and kills the driver with SIGKILL
(if it has not finished). A last driver then runs uninterrupted. The kill plan comes
from ``random.Random(n)`` too, so each system meets the same kills relative to its
ledger.

Audit, from the ledger and the last driver alone:

- **duplicated**: a step whose effect (its ledger line) happened more than once;
- **lost**: a step with no effect although the run finished;
- **unresumable**: the last driver failed or timed out, so the run never finished;
- **human decisions**: retries or skips a system asked an operator for (Trestle
  escalates an irreversible step whose outcome a crash left unknown and whose check
  found no effect; the harness answers as an operator would, from the ledger).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import crashflow
import forking

KILL_DELAY_MAX = 0.08
FINISH_TIMEOUT = 120.0
Driver = Callable[[Path], Any]


@dataclass
class CrashTally:
    trials: int = 0
    kills: int = 0
    trials_with_duplicate: int = 0
    duplicated_steps: int = 0  # steps (over all trials) whose effect happened twice or more
    irreversible_duplicated: int = 0  # trials where the irreversible step happened twice
    lost_steps: int = 0
    unresumable: int = 0
    human_decisions: int = 0
    problems: list[str] = field(default_factory=list)


def ledger_lines(work: Path) -> int:
    ledger = work / crashflow.LEDGER
    try:
        return ledger.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def trial(drive: Driver, number: int, base: Path, tally: CrashTally) -> None:
    """Run trial ``number`` in ``base/trial-<n>`` and count what it found into ``tally``."""
    work = base / f"trial-{number:04d}"
    work.mkdir(parents=True)
    crashflow.write_timings(work, number)
    rng = random.Random(number)
    for _ in range(rng.randint(1, 3)):
        child = forking.start(lambda: drive(work))
        target = ledger_lines(work) + rng.randint(0, 2)
        delay = rng.uniform(0, KILL_DELAY_MAX)
        deadline = time.monotonic() + FINISH_TIMEOUT
        while not child.finished() and ledger_lines(work) < target:
            if time.monotonic() > deadline:
                break
            time.sleep(0.002)
        time.sleep(delay)
        if child.finished():
            child.reap()
            break  # finished before the kill landed; nothing more to interrupt
        child.kill()
        tally.kills += 1
    tally.trials += 1
    where = f"trial {number}"
    try:
        forking.run(lambda: drive(work), timeout=FINISH_TIMEOUT)
        finished = True
    except forking.ChildError as exc:
        tally.unresumable += 1
        tally.problems.append(f"{where}: could not be resumed: {str(exc)[:400]}")
        finished = False
    counts = crashflow.ledger_counts(work)
    twice = [step for step, n in counts.items() if n > 1]
    if twice:
        tally.trials_with_duplicate += 1
        tally.duplicated_steps += len(twice)
        tally.problems.append(f"{where}: took effect more than once: {twice}")
    if counts[crashflow.IRREVERSIBLE] > 1:
        tally.irreversible_duplicated += 1
    if finished:
        missing = [step for step, n in counts.items() if n == 0]
        tally.lost_steps += len(missing)
        if missing:
            tally.problems.append(f"{where}: finished without the effects of {missing}")
    decisions = work / crashflow.DECISIONS
    if decisions.exists():
        tally.human_decisions += len(decisions.read_text().splitlines())


def run_trials(drive: Driver, trials: int, base: Path, first: int = 0) -> CrashTally:
    """Trials ``first .. first + trials - 1``, each in a fresh directory under ``base``."""
    tally = CrashTally()
    for number in range(first, first + trials):
        trial(drive, number, base, tally)
    return tally
