"""The operator crash harness: kill the driver at random, then do what Trestle printed.

Each trial runs a real ``trestle run`` subprocess on a plan whose steps append
``<step> <idempotency key>`` to a ledger (some with checks, one idempotent, one a
Python callable, one irreversible behind an approval, several in parallel), and
interrupts the driver at a moment drawn from ``random.Random(trial)``: SIGKILL of the
driver's pid only (its step processes keep running, as after a crash or an OOM kill),
or, in the signal variants, SIGTERM or SIGHUP. Then it acts as an operator who does
exactly what Trestle printed: it reads the report's suggestions (``trestle show`` after
a SIGKILL, which leaves none) and runs them: ``approve``, ``retry``, ``skip`` and
``resume``. An escalated step offers skip ("if it took effect") or retry ("if not");
the operator checks the ledger by hand, as told. Resumes are interrupted at random too,
until the kills planned for the trial are spent; then the run is followed to its end.

The audit: every step's line is in the ledger exactly once (no duplicated effect, no
lost step), the run succeeded, and no output holds a traceback.

    python bench/crash_operator.py --trials 200            # the long version (make soak)
    python bench/crash_operator.py --trials 20 --signal SIGINT

``tests/test_crash_operator.py`` runs a short seeded version.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STEPS = ("fetch", "lint", "build", "docs", "notes", "package", "test", "release", "announce")
COMMAND = re.compile(r"`(trestle [^`]+)`")
MAX_ACTIONS = 40  # an operator who needs more is being led in circles
DRIVER_TIMEOUT = 120.0

CALLABLES = """\
import time


def note(ctx):
    time.sleep(float((ctx.workspace / "notes.nap").read_text()))
    with open(ctx.workspace / "ledger.txt", "a") as ledger:
        ledger.write(f"notes {ctx.key}\\n")


def noted(ctx):
    ledger = ctx.workspace / "ledger.txt"
    return ledger.exists() and any(
        line.startswith("notes ") for line in ledger.read_text().splitlines()
    )
"""


def build_plan(rng: random.Random) -> dict[str, Any]:
    def nap() -> str:
        return f"sleep {rng.uniform(0.05, 0.5):.2f}"

    def append(step: str) -> str:
        return f'echo "{step} $TRESTLE_IDEMPOTENCY_KEY" >> ledger.txt'

    def has(step: str) -> list[dict[str, str]]:
        return [{"file_contains": "ledger.txt", "regex": f"^{step} "}]

    dedupe = f'grep -q "^build " ledger.txt || {append("build")}'
    steps: list[dict[str, Any]] = [
        {"id": "fetch", "run": f"{nap()}; {append('fetch')}; {nap()}", "verify": has("fetch")},
        {
            "id": "lint",
            "needs": ["fetch"],
            "run": f"{nap()}; {append('lint')}",
            "verify": [{"command": "grep -q '^lint ' ledger.txt"}],
        },
        {
            "id": "build",
            "needs": ["fetch"],
            "idempotent": True,
            "run": f"{nap()}; flock ledger.lock sh -c '{dedupe}'; {nap()}",
            "verify": has("build"),
        },
        # no checks, not idempotent: after a crash only a human can tell
        {"id": "docs", "needs": ["fetch"], "run": f"{nap()}; {append('docs')}; {nap()}"},
        {
            "id": "notes",
            "needs": ["fetch"],
            "python": "steps:note",
            "verify": [{"python": "steps:noted"}],
        },
        {
            # long enough to outlive a killed driver until the operator's next command
            "id": "package",
            "needs": ["fetch"],
            "run": f"sleep {rng.uniform(3.0, 6.0):.2f}; {append('package')}",
            "verify": has("package"),
        },
        {
            "id": "test",
            "needs": ["build"],
            "retries": 2,
            "backoff": {"initial": 0},
            "run": f'{nap()}; [ "$TRESTLE_ATTEMPT" != 1 ] || exit 3; {append("test")}',
            "verify": has("test"),
        },
        {
            "id": "release",
            "needs": ["test", "lint", "docs", "notes", "package"],
            "irreversible": True,
            "approval": "confirm",
            "run": f"{nap()}; {append('release')}; {nap()}",
            "verify": has("release"),
        },
        {
            "id": "announce",
            "needs": ["release"],
            "run": append("announce"),
            "verify": has("announce"),
        },
    ]
    assert tuple(s["id"] for s in steps) == STEPS
    return {"goal": "operator crash harness", "workspace": "ws", "parallelism": 3, "steps": steps}


@dataclass
class Tally:
    trials: int = 0
    kills: int = 0
    signals: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    lost: int = 0
    tracebacks: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        acts = ", ".join(f"{k}={v}" for k, v in sorted(self.actions.items()))
        return (
            f"operator crash harness: trials={self.trials} kills={self.kills} "
            f"signals={self.signals} duplicates={self.duplicates} lost={self.lost} "
            f"tracebacks={self.tracebacks} actions: {acts}"
        )


class Trial:
    def __init__(
        self,
        number: int,
        base: Path,
        stop_signals: Sequence[signal.Signals],
        max_kills: int = 3,
    ) -> None:
        self.number = number
        self.rng = random.Random(number)
        self.root = base / f"trial-{number:04d}"
        self.ws = self.root / "ws"
        self.ws.mkdir(parents=True)
        (self.ws / "notes.nap").write_text(f"{self.rng.uniform(0.05, 0.6):.2f}")
        (self.root / "steps.py").write_text(CALLABLES)
        self.plan = self.root / "plan.yaml"
        self.plan.write_text(yaml.safe_dump(build_plan(self.rng), sort_keys=False))
        self.db = self.root / "trestle.db"
        self.report = self.root / "report.json"
        # even trials crash (SIGKILL of the driver only); odd ones take turns at the signals
        self.signal = (
            signal.SIGKILL if number % 2 == 0 else stop_signals[number // 2 % len(stop_signals)]
        )
        self.kills_left = self.rng.randint(1, max_kills)
        self.run_id: str | None = None
        self.outputs: list[str] = []
        self.problems: list[str] = []
        self.environ: dict[str, str] = {}  # what the trial's every command adds to its own

    # --- commands -----------------------------------------------------------------

    def trestle(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A command that does not drive the run: it runs to its end."""
        done = subprocess.run(
            [sys.executable, "-m", "trestle", *args, "--store", str(self.db)],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=DRIVER_TIMEOUT,
            env={**os.environ, **self.environ},
        )
        self.outputs.append(done.stdout + done.stderr)
        return done

    def drive(self, args: list[str], tally: Tally) -> dict[str, Any] | None:
        """Start a driver; interrupt it at a random moment while kills are left.
        Returns the report it wrote, or None if it was killed before it could."""
        self.report.unlink(missing_ok=True)
        env = {**os.environ, **self.environ, "COLUMNS": "200"}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trestle",
                *args,
                "--store",
                str(self.db),
                "--no-live",
                "--no-prompt",
                "--report-json",
                str(self.report),
            ],
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        killed = self.kills_left > 0 and self.interrupt(proc)
        if killed:
            self.kills_left -= 1
            if self.signal == signal.SIGKILL:
                tally.kills += 1
            else:
                tally.signals += 1
        out, err = proc.communicate(timeout=DRIVER_TIMEOUT)
        self.outputs.append(out + err)
        if self.run_id is None:
            match = re.match(r"run ([^\s:]+)", out)  # "run ID" or "run ID: ..."
            if match:
                self.run_id = match.group(1)
            else:  # killed before it said: the operator looks for the run
                assert killed, f"no run id printed: {out!r} {err!r}"
                listed = self.trestle("runs", "--json")
                # exit 8: killed before it created the store (reading creates none)
                rows = [] if listed.returncode == 8 else json.loads(listed.stdout)
                if not rows:
                    return self.drive(args, tally)  # nothing was recorded: start again
                self.run_id = rows[0]["run_id"]
        if killed and self.signal == signal.SIGKILL:
            return None
        # every exit prints the report (and writes it where asked)
        assert f"run {self.run_id}: " in out, f"no report printed: {out!r} {err!r}"
        data: dict[str, Any] = json.loads(self.report.read_text())
        if killed:  # the signal's code; unless the drive had just ended by itself (its
            # report's code), or the signal came as the process exited after the report
            codes = (128 + int(self.signal), data["exit_code"], -int(self.signal))
            assert proc.returncode in codes, f"exit {proc.returncode}, not {codes}: {err}"
        return data

    def interrupt(self, proc: subprocess.Popen[str]) -> bool:
        """Send the trial's signal to the driver at a random moment, unless it ends
        first; whether it was sent."""
        if self.signal != signal.SIGKILL:
            # a signal before the driver set up its handlers (while Python imports)
            # kills it like SIGKILL; that case is the SIGKILL trials' part
            self.wait_until_driving(proc)
        try:
            proc.wait(timeout=self.rng.uniform(0.3, 3.5))
        except subprocess.TimeoutExpired:
            proc.send_signal(self.signal)  # the driver's pid only, never its group
            return True
        return False

    def wait_until_driving(self, proc: subprocess.Popen[str]) -> None:
        """Until the driver recorded something after the events already there."""
        before = self.last_seq()
        end = time.monotonic() + DRIVER_TIMEOUT
        while proc.poll() is None and self.last_seq() <= before and time.monotonic() < end:
            time.sleep(0.02)

    def last_seq(self) -> int:
        if not self.db.exists():
            return 0
        try:
            with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5) as db:
                row = db.execute("SELECT max(seq) FROM events").fetchone()
        except sqlite3.Error:  # not created yet
            return 0
        return int(row[0] or 0)

    def show(self) -> dict[str, Any]:
        assert self.run_id is not None
        done = self.trestle("show", self.run_id, "--json")
        assert done.returncode == 0, done.stderr
        data: dict[str, Any] = json.loads(done.stdout)
        return data

    # --- the operator -------------------------------------------------------------

    def start(self) -> list[str]:
        """The command that starts the run (``trestle`` and the store left out)."""
        return ["run", str(self.plan)]

    def ledger(self) -> Counter[str]:
        path = self.ws / "ledger.txt"
        lines = path.read_text().splitlines() if path.exists() else []
        return Counter(line.split()[0] for line in lines)

    def follow(self, tally: Tally) -> dict[str, Any]:
        """Start the run, then do what the report says until it has nothing to say."""
        report = self.drive(self.start(), tally)
        for _ in range(MAX_ACTIONS):
            if report is None:  # the driver died without a word: ask what state it is in
                tally.actions["show"] += 1
                report = self.show()
            if report["status"] == "succeeded":
                return report
            resume = self.act(report, tally)
            if resume is None:  # counted as a problem; the operator resumes anyway
                self.problems.append(f"the report suggests nothing: {report['to_check']}")
                resume = f"trestle resume {self.run_id}"
            tally.actions["resume"] += 1
            report = self.drive(resume.split()[1:], tally)
        raise AssertionError("the run did not end after following the report")

    def act(self, report: dict[str, Any], tally: Tally) -> str | None:
        """Run every suggestion but resume, which it returns to be run last."""
        resume = None
        for advice in report["to_check"]:
            commands = [" ".join(c.split()) for c in COMMAND.findall(advice)]
            retry = next((c for c in commands if c.startswith("trestle retry ")), None)
            skip = next((c for c in commands if c.startswith("trestle skip ")), None)
            approve = next((c for c in commands if c.startswith("trestle approve ")), None)
            resume = next((c for c in commands if c.startswith("trestle resume ")), resume)
            chosen: str | None
            if retry and skip:  # "if it took effect: skip; if not: retry": look by hand
                step = retry.split()[3]
                chosen = skip if self.ledger()[step] else retry
            else:
                chosen = approve or retry
            if chosen is None:
                continue
            args = chosen.split()[1:]
            if args[-1] == "...":
                args[-1] = "checked by hand"
            tally.actions[args[0]] += 1
            done = self.trestle(*args)
            if done.returncode != 0:  # refused: do what the refusal says instead
                said = " ".join((done.stdout + done.stderr).split())
                resume = next((c for c in COMMAND.findall(said) if "resume" in c), None)
                assert resume, f"{chosen} failed with no way on: {said}"
        return resume

    # --- the audit ----------------------------------------------------------------

    steps: tuple[str, ...] = STEPS  # each must be in the ledger exactly once

    def workspace_problems(self) -> list[str]:
        """What else is wrong in the workspace once the run succeeded (nothing here)."""
        return []

    def audit(self, report: dict[str, Any], tally: Tally) -> None:
        where = f"trial {self.number} ({self.run_id}, {self.signal.name})"
        wait_for_processes(self.run_id or "")
        lines = self.ledger()
        for step in self.steps:
            if lines[step] > 1:
                tally.duplicates += lines[step] - 1
                tally.problems.append(f"{where}: {step!r} took effect {lines[step]} times")
            elif lines[step] == 0:
                tally.lost += 1
                tally.problems.append(f"{where}: {step!r} never took effect")
        if report["status"] != "succeeded":
            tally.problems.append(f"{where}: run ended {report['status']}")
        tally.problems += [f"{where}: {problem}" for problem in self.problems]
        tally.problems += [f"{where}: {problem}" for problem in self.workspace_problems()]
        for text in self.outputs:
            if "Traceback" in text:
                tally.tracebacks += 1
                tally.problems.append(f"{where}: a traceback: {text[-800:]}")


def processes_of(run_id: str) -> list[int]:
    marker = f"TRESTLE_RUN_ID={run_id}\0".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def wait_for_processes(run_id: str, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while processes_of(run_id) and time.monotonic() < end:
        time.sleep(0.05)


def run_trials(
    trials: int,
    base: Path,
    stop_signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGHUP),
    first: int = 0,
    max_kills: int = 3,
) -> Tally:
    """Trials ``first .. first + trials - 1``; even ones SIGKILL the driver, odd ones
    send ``stop_signals`` in turn."""
    tally = Tally()
    for number in range(first, first + trials):
        trial = Trial(number, base, stop_signals, max_kills)
        try:
            report = trial.follow(tally)
            trial.audit(report, tally)
        except AssertionError as exc:
            tally.problems.append(f"trial {number} ({trial.signal.name}): {exc}")
        tally.trials += 1
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--first", type=int, default=0, help="seed of the first trial")
    parser.add_argument(
        "--signal",
        action="append",
        choices=["SIGTERM", "SIGHUP", "SIGINT"],
        help="a signal odd trials send, in turn (default SIGTERM and SIGHUP; even trials "
        "SIGKILL the driver)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trestle-crash-operator-") as tmp:
        os.environ.setdefault("TRESTLE_KEY_FILE", str(Path(tmp) / "approval.key"))
        signals = [signal.Signals[name] for name in args.signal or ("SIGTERM", "SIGHUP")]
        tally = run_trials(args.trials, Path(tmp), signals, args.first)
    print(tally.line())
    for problem in tally.problems[:20]:
        print(f"  {problem}")
    sys.exit(1 if tally.problems else 0)


if __name__ == "__main__":
    main()
