"""The operator crash harness on Temporal: SIGKILL a worker, not the driver, at random.

The plan, the operator and the audit are ``crash_operator.py``'s. The run is driven by
a workflow on a Temporal dev server (the ``temporal`` binary beside this Python), its
steps performed by ``trestle worker`` processes; ``trestle run`` only follows it. At a
moment drawn from ``random.Random(trial)`` the trial SIGKILLs the worker (its step
processes go with it, or go on unconfined, as a host's would) and starts another at
once, as a supervisor does. Then the operator does what Trestle printed: ``trestle
show`` once the following command ends, ``approve``, ``retry``, ``skip``, and ``trestle
resume`` to follow the run on (a decision wakes its workflow by itself).

The audit: every step's line in the ledger exactly once, the run succeeded, no
command's output holds a traceback (a worker's log, ``worker-N.log`` in the trial's
directory, may: the SDK logs each cancelled activity with one).

    python bench/crash_temporal.py --trials 20
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from crash_operator import Tally, Trial
from temporal_scale import dev_server

HEARTBEAT = "2"  # seconds a killed worker's attempt waits before it counts as lost
WORKER_START = 60.0  # seconds a worker may take to say it polls


class WorkerKillTrial(Trial):
    """A trial whose kills land on the worker performing the run's steps."""

    def __init__(self, number: int, base: Path, address: str) -> None:
        super().__init__(number, base, (signal.SIGTERM,))
        self.signal = signal.SIGKILL
        self.address = address
        self.queue = f"crash-{number}"
        self.environ = {"TRESTLE_TEMPORAL_HEARTBEAT": HEARTBEAT}
        self.workers: list[subprocess.Popen[bytes]] = []

    def flags(self) -> list[str]:
        return ["--engine", "temporal", "--address", self.address, "--task-queue", self.queue]

    def start(self) -> list[str]:
        return ["run", str(self.plan), *self.flags()]

    def interrupt(self, proc: subprocess.Popen[str]) -> bool:
        """SIGKILL the worker at a random moment and start another; whether it did."""
        if not self.workers:  # the run's store exists once it is recorded
            self.wait_until_driving(proc)
            self.start_worker()
        try:
            proc.wait(timeout=self.rng.uniform(0.3, 3.5))
        except subprocess.TimeoutExpired:
            victim = self.workers[-1]
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            self.start_worker()
            return True
        return False

    def act(self, report: dict[str, Any], tally: Tally) -> str | None:
        # a decision wakes the run's workflow, which goes on by itself: the operator
        # follows it with resume, which wakes it too and follows what it records
        return super().act(report, tally) or f"trestle resume {self.run_id}"

    def start_worker(self) -> None:
        log = self.root / f"worker-{len(self.workers)}.log"
        with log.open("wb") as out:  # a file: a pipe nobody reads fills, and blocks it
            worker = subprocess.Popen(
                [sys.executable, "-m", "trestle", "worker", *self.flags(), "--store", str(self.db)],
                cwd=self.root,
                env={**os.environ, **self.environ},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.workers.append(worker)
        end = time.monotonic() + WORKER_START
        while b"worker on task queue" not in log.read_bytes():
            if worker.poll() is not None or time.monotonic() > end:
                raise AssertionError(f"the worker did not start: {log.read_text()[-800:]}")
            time.sleep(0.05)

    def stop_workers(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.terminate()
        for worker in self.workers:
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def run_trials(trials: int, base: Path, first: int = 0) -> Tally:
    """Trials ``first .. first + trials - 1`` against one dev server."""
    tally = Tally()
    with dev_server() as address:
        for number in range(first, first + trials):
            trial = WorkerKillTrial(number, base, address)
            try:
                report = trial.follow(tally)
                trial.audit(report, tally)
            except AssertionError as exc:
                tally.problems.append(f"trial {number} (worker SIGKILL): {exc}")
            finally:
                trial.stop_workers()
            tally.trials += 1
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--first", type=int, default=0, help="seed of the first trial")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trestle-crash-temporal-") as tmp:
        os.environ.setdefault("TRESTLE_KEY_FILE", str(Path(tmp) / "approval.key"))
        tally = run_trials(args.trials, Path(tmp), args.first)
    print(tally.line().replace("operator crash harness", "temporal worker-kill harness"))
    for problem in tally.problems[:20]:
        print(f"  {problem}")
    sys.exit(1 if tally.problems else 0)


if __name__ == "__main__":
    main()
