"""The crash-injection workflow, the same in every system: six steps, one irreversible.

Each step naps, appends ``<step> <pid>`` to ``<work>/ledger.txt`` (its externally
visible effect), and naps again, so a SIGKILL can land before, between or after the
effects and the system's own records. The naps come from ``<work>/crash.json``,
which the harness writes from the trial's seed, so every system meets the same
timings in trial ``n``. ``release`` stands for the irreversible step (a deploy, a
payment): doing it twice is the worst outcome.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

STEPS = ("fetch", "build", "test", "package", "release", "announce")
IRREVERSIBLE = "release"
LEDGER = "ledger.txt"
TIMINGS = "crash.json"
DECISIONS = "decisions.txt"  # one line per human decision a system asked for
MAX_NAP = 0.04


def write_timings(work: Path, seed: int) -> None:
    """Draw each step's two naps from ``seed`` and store them for the drivers."""
    rng = random.Random(seed)
    naps = {step: [rng.uniform(0, MAX_NAP), rng.uniform(0, MAX_NAP)] for step in STEPS}
    (work / TIMINGS).write_text(json.dumps(naps))


def act(work: Path, step: str) -> None:
    """Do ``step``: nap, append its line to the ledger, nap."""
    naps = json.loads((work / TIMINGS).read_text())[step]
    time.sleep(naps[0])
    with (work / LEDGER).open("a") as ledger:
        ledger.write(f"{step} {os.getpid()}\n")  # one write(2) on an O_APPEND file
    time.sleep(naps[1])


def has_effect(work: Path, step: str) -> bool:
    """Whether ``step``'s line is in the ledger (Trestle's verify check uses this)."""
    ledger = work / LEDGER
    if not ledger.exists():
        return False
    return any(line.split()[0] == step for line in ledger.read_text().splitlines())


def ledger_counts(work: Path) -> dict[str, int]:
    """How many times each step took effect."""
    counts = dict.fromkeys(STEPS, 0)
    ledger = work / LEDGER
    if ledger.exists():
        for line in ledger.read_text().splitlines():
            step = line.split()[0]
            counts[step] = counts.get(step, 0) + 1
    return counts
