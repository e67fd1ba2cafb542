"""Driver kills at chosen moments, then do what Trestle printed (the operator harness's
operator and audit, ``crash_operator.py``, at two moments a random kill rarely hits).

- ``start``: SIGKILL of the driver while a sandboxed command is starting (its
  ``bwrap`` exists; the command may or may not have written its first byte), made slow
  by a plan whose ``sandbox.read`` lists hundreds of directories.
- ``write``: SIGKILL of the driver during a plan ``write:`` step of a large file: while
  it writes (even trials) or once the file is renamed into place but its outcome not
  yet recorded (odd trials). The audit also wants every file whole and no
  ``*.trestle-tmp`` left anywhere in the workspace.

Each trial kills once, after a pause drawn from ``random.Random(trial)``, then follows
the report (``trestle show``, ``trestle resume``, ...) until the run ends.

    python bench/crash_moments.py --trials 10                  # both scenarios
    python bench/crash_moments.py --trials 50 --scenario write

``tests/test_crash_moments.py`` runs a short seeded version.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from crash_operator import Tally, Trial, wait_for_processes

SCENARIOS = ("start", "write")
# sandbox.read directories, each judged for every command; all in the store's
# directory, so each is left out, the first named on the command's stderr and the rest
# counted (named all, a deep base directory, a test's, made the command's text too
# long for exec: E2BIG)
READS = 400
WRITES = 4
WRITE_BYTES = 1800 * 1024
MOMENT_TIMEOUT = 60.0


def append(step: str) -> str:
    return f'echo "{step} $TRESTLE_IDEMPOTENCY_KEY" >> ledger.txt'


def has(step: str) -> list[dict[str, str]]:
    return [{"file_contains": "ledger.txt", "regex": f"^{step} "}]


START_STEPS = ("fetch", "docs", "lint", "build", "notes")


def start_plan(reads: Sequence[str]) -> dict[str, Any]:
    dedupe = f'grep -q "^build " ledger.txt || {append("build")}'
    steps: list[dict[str, Any]] = [
        {"id": "fetch", "run": append("fetch"), "verify": has("fetch")},
        # no checks, not idempotent: after a crash only a human can tell
        {"id": "docs", "needs": ["fetch"], "run": append("docs")},
        {"id": "lint", "needs": ["docs"], "run": append("lint"), "verify": has("lint")},
        {
            "id": "build",
            "needs": ["lint"],
            "idempotent": True,
            "run": f"flock ledger.lock sh -c '{dedupe}'",
            "verify": has("build"),
        },
        {"id": "notes", "needs": ["build"], "run": append("notes")},
    ]
    assert tuple(s["id"] for s in steps) == START_STEPS
    return {
        "goal": "a kill while a sandboxed command starts",
        "workspace": "ws",
        "parallelism": 1,
        "policy": {"sandbox": {"read": list(reads)}},
        "steps": steps,
    }


def big_content(index: int) -> str:
    return "x" * WRITE_BYTES + f"\n{index}\n"


def write_plan() -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"id": "fetch", "run": append("fetch"), "verify": has("fetch")}]
    before = "fetch"
    for i in range(WRITES):
        write = {"path": f"out/big{i}.txt", "content": big_content(i)}
        steps.append({"id": f"w{i}", "needs": [before], "write": write})
        before = f"w{i}"
    steps.append({"id": "docs", "needs": [before], "run": append("docs")})
    return {
        "goal": "a kill during a write step",
        "workspace": "ws",
        "parallelism": 1,
        "steps": steps,
    }


def environ_holds(pid: str, *markers: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            seen = f.read()
    except OSError:
        return False
    return all(marker in seen for marker in markers)


def bwrap_of(step: str, root: Path) -> bool:
    """Whether a ``bwrap`` of ``step`` in the trial under ``root`` exists."""
    marker = f"TRESTLE_STEP_ID={step}\0".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm", "rb") as f:
                if f.read().strip() != b"bwrap":
                    continue
        except OSError:
            continue
        if environ_holds(entry.name, marker, str(root).encode()):
            return True
    return False


def writing_into(pid: int, folder: Path) -> bool:
    """Whether process ``pid`` holds a file in ``folder`` open: the temporary file of a
    write, named (``*.trestle-tmp``) or not yet (``O_TMPFILE``: ``folder/#123``)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(f"{folder}/") and ("/#" in target or "trestle-tmp" in target):
            return True
    return False


class MomentTrial(Trial):
    """One SIGKILL of the driver at the scenario's moment, then the operator."""

    def __init__(self, number: int, base: Path, scenario: str, reads: int = READS) -> None:
        super().__init__(number, base / scenario, [signal.SIGTERM], max_kills=1)
        self.scenario = scenario
        self.signal = signal.SIGKILL
        self.kills_left = 1
        self.moments: list[str] = []
        if scenario == "start":
            self.steps = START_STEPS
            self.target = self.rng.choice(START_STEPS[1:])
            self.pause = self.rng.choice((0.0, 0.001, 0.003, 0.006, 0.01, 0.02, 0.04))
            folders = [self.root / "reads" / f"d{i}" for i in range(reads)]
            for folder in folders:
                folder.mkdir(parents=True)
            plan = start_plan([str(folder) for folder in folders])
        else:
            self.steps = ("fetch", "docs")
            self.target = f"w{self.rng.randrange(WRITES)}"
            self.pause = 0.0  # the moment is short: a pause would miss it
            plan = write_plan()
        self.plan.write_text(yaml.safe_dump(plan, sort_keys=False))

    def at_moment(self, proc: subprocess.Popen[str]) -> bool:
        if self.scenario == "start":
            return bwrap_of(self.target, self.root)
        out = self.ws / "out"
        if self.number % 2 == 0:
            return writing_into(proc.pid, out)
        return (out / f"big{self.target[1:]}.txt").exists()

    def interrupt(self, proc: subprocess.Popen[str]) -> bool:
        end = time.monotonic() + MOMENT_TIMEOUT
        wait = 0.0005 if self.scenario == "start" else 0.00005
        while proc.poll() is None and time.monotonic() < end:
            if self.at_moment(proc):
                time.sleep(self.pause)
                if proc.poll() is not None:
                    break
                proc.send_signal(signal.SIGKILL)  # the driver's pid only
                self.moments.append(f"{self.target} +{self.pause * 1000:.0f}ms")
                return True
            time.sleep(wait)
        self.moments.append(f"{self.target}: missed")
        return False

    def workspace_problems(self) -> list[str]:
        if self.scenario != "write":
            return []
        problems = []
        for i in range(WRITES):
            path = self.ws / "out" / f"big{i}.txt"
            if not path.is_file() or path.read_text() != big_content(i):
                problems.append(f"{path.name} missing or not whole")
        left = sorted(str(p.relative_to(self.ws)) for p in self.ws.rglob("*.trestle-tmp"))
        if left:
            problems.append(f"temporary files left in the workspace: {left}")
        return problems


def run_trials(trials: int, base: Path, scenario: str, first: int = 0, reads: int = READS) -> Tally:
    """Trials ``first .. first + trials - 1`` of ``scenario``."""
    tally = Tally()
    for number in range(first, first + trials):
        trial = MomentTrial(number, base, scenario, reads)
        try:
            report = trial.follow(tally)
            trial.audit(report, tally)
        except AssertionError as exc:
            tally.problems.append(f"trial {number} ({scenario} {trial.target}): {exc}")
        finally:
            wait_for_processes(trial.run_id or "")
        tally.trials += 1
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="trials per scenario")
    parser.add_argument("--first", type=int, default=0, help="seed of the first trial")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory(prefix="trestle-crash-moments-") as tmp:
        os.environ.setdefault("TRESTLE_KEY_FILE", str(Path(tmp) / "approval.key"))
        for scenario in args.scenario or SCENARIOS:
            tally = run_trials(args.trials, Path(tmp), scenario, args.first)
            print(f"{scenario}: {tally.line()}")
            for problem in tally.problems[:20]:
                print(f"  {problem}")
            failed = failed or bool(tally.problems)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
