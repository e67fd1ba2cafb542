"""The crash suite: SIGKILL the driving process at random moments, resume, and audit.

Each trial records one run of a plan whose steps leave externally visible effects: each
appends ``<step> <idempotency key>`` to a ledger file in the workspace (one step also
makes a git commit), and each verifies its own line is there, so a probe after a crash
can tell whether the work happened. A driver subprocess is killed at a moment drawn
from ``random.Random(trial)``, a fresh one resumes, again a few times, and finally the
run is driven to the end. Half of the kills also kill the steps' own processes (a
machine dying); the other half leave them running on as orphans (only the driver died).

Then the audit: no effect happened twice; no step was lost (each one succeeded, or was
escalated because it is unsafe to re-run and its outcome was genuinely unknown, and a
human then skipped it); the run succeeded; and the folded events equal the stored state.

The suite runs on an SQLite file and on a PostgreSQL database (a fresh one per trial).
``TRESTLE_CRASH_TRIALS`` sets the number of trials on SQLite (default 8); PostgreSQL
gets half as many, the same code path over another store.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from trestle.core.errors import LeaseHeldError
from trestle.core.events import (
    AnyEvent,
    RunResumed,
    StepAttemptEnded,
    StepEscalated,
    StepFailed,
    StepProbed,
    StepSkipped,
    StepStarted,
)
from trestle.core.state import RunState, fold
from trestle.engines.local import LocalEngine
from trestle.formats.planfile import parse_plan
from trestle.lifecycle.runs import create_run, load_state, request_decision
from trestle.store.location import open_store

TRIALS = int(os.environ.get("TRESTLE_CRASH_TRIALS", "8"))
POLL = 0.02
LEASE_TTL = 3.0  # short, so a dead driver's pid reused by another process costs seconds

DRIVER = f"""\
import asyncio
import sys
import time

from trestle.engines.local import LocalEngine
from trestle.core.errors import LeaseHeldError
from trestle.store.location import open_store

store = open_store(sys.argv[1])
engine = LocalEngine(store, poll_interval={POLL}, lease_ttl={LEASE_TTL})
for _ in range(100):
    try:
        state = asyncio.run(engine.run(sys.argv[2]))
        break
    except LeaseHeldError:  # only if the dead driver's pid was reused meanwhile
        time.sleep(0.1)
else:
    sys.exit("lease never freed")
engine.close()
store.close()
print(state.finished)
"""

CALLABLES = """\
def note(ctx):
    with open(ctx.workspace / "ledger.txt", "a") as ledger:
        ledger.write(f"notes {ctx.key}\\n")


def noted(ctx):
    lines = (ctx.workspace / "ledger.txt").read_text().splitlines()
    return any(line.startswith("notes ") for line in lines)
"""

# the plan's steps, in file order (build_plan asserts it)
STEPS = ("fetch", "lint", "build", "docs", "notes", "test", "package", "release", "announce")


def build_plan(rng: random.Random, module: str) -> dict[str, Any]:
    """The trial's plan: parallel branches, an idempotent step, an irreversible one."""

    def nap() -> str:
        return f"sleep {rng.uniform(0, 0.2):.3f}"

    def append(step: str) -> str:
        return f'echo "{step} $TRESTLE_IDEMPOTENCY_KEY" >> ledger.txt'

    def ledger_has(step: str) -> dict[str, str]:
        return {"file_contains": "ledger.txt", "regex": f"^{step} "}

    def grep(step: str) -> dict[str, str]:
        return {"command": f"grep -q '^{step} ' ledger.txt"}

    def plain(step: str, needs: list[str], check: dict[str, str]) -> dict[str, Any]:
        return {
            "id": step,
            "needs": needs,
            "run": f"{nap()}; {append(step)}; {nap()}",
            "verify": [check],
        }

    dedupe = f'grep -q "^build " ledger.txt || {append("build")}'
    steps: list[dict[str, Any]] = [
        plain("fetch", [], ledger_has("fetch")),
        plain("lint", ["fetch"], grep("lint")),
        {
            "id": "build",
            "needs": ["fetch"],
            "idempotent": True,
            # truly idempotent: look and append under one lock, so a re-run racing an
            # orphaned earlier attempt still appends once
            "run": f"{nap()}; flock ledger.lock sh -c '{dedupe}'; {nap()}",
            "verify": [ledger_has("build")],
        },
        plain("docs", ["fetch"], ledger_has("docs")),
        {
            "id": "notes",
            "needs": ["fetch"],
            "python": f"{module}:note",
            "verify": [{"python": f"{module}:noted"}],
        },
        {
            # fails its first attempt before doing anything, then retries
            "id": "test",
            "needs": ["build"],
            "retries": 2,
            "backoff": {"initial": 0},
            "run": f'{nap()}; [ "$TRESTLE_ATTEMPT" != 1 ] || exit 3; {append("test")}; {nap()}',
            "verify": [ledger_has("test")],
        },
        plain("package", ["build", "lint"], ledger_has("package")),
        {
            "id": "release",
            "needs": ["test", "package", "docs", "notes"],
            "irreversible": True,
            "approval": "log",  # approved up front: this suite is about crashes, not approvals
            "run": f'{nap()}; git commit -q --allow-empty -m "release $TRESTLE_IDEMPOTENCY_KEY"'
            f" && {append('release')}; {nap()}",
            "verify": [
                {"command": "git log --format=%s | grep -q '^release '"},
                ledger_has("release"),
            ],
        },
        plain("announce", ["release"], grep("announce")),
    ]
    assert tuple(s["id"] for s in steps) == STEPS
    # the release commits without a human: the author lets it write .git's history
    policy = {"sandbox": {"git": ["release"]}}
    return {"goal": "crash suite", "parallelism": 4, "policy": policy, "steps": steps}


# --- processes -------------------------------------------------------------------------


def step_processes(run_id: str) -> list[int]:
    """Live processes started for this run (steps and checks carry TRESTLE_RUN_ID)."""
    marker = f"TRESTLE_RUN_ID={run_id}\0".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, a zombie, or not ours
            continue
        if marker in environ:
            found.append(int(entry.name))
    return found


def kill_step_processes(run_id: str) -> int:
    """SIGKILL every process of the run, until none is left (a shell may fork meanwhile)."""
    killed = 0
    for _ in range(100):
        pids = step_processes(run_id)
        if not pids:
            return killed
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(0.01)
    raise AssertionError(f"processes of {run_id} kept appearing")


def wait_for_step_processes(run_id: str, deadline: float = 20.0) -> None:
    end = time.monotonic() + deadline
    while left := step_processes(run_id):
        assert time.monotonic() < end, f"processes of {run_id} still running: " + "; ".join(
            _cmdline(pid) for pid in left
        )
        time.sleep(0.02)


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[:2]
    except OSError:
        return f"{pid} (gone)"
    command = raw.replace(b"\0", b" ").decode(errors="replace")[:200]
    return f"{pid} {' '.join(state)} {command}"


# --- one trial ----------------------------------------------------------------------------


@dataclass
class Tally:
    trials: int = 0
    kills: int = 0
    machine_kills: int = 0  # kills that also took down the steps' processes
    resumes: int = 0
    duplicates: int = 0
    lost: int = 0
    escalations: int = 0
    found_done: int = 0  # outcome unknown, and a probe found the work done
    reruns: int = 0  # outcome unknown, work not done, step idempotent: run again
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"crash suite: trials={self.trials} kills={self.kills} "
            f"(machine={self.machine_kills}) resumes={self.resumes} "
            f"duplicates={self.duplicates} lost={self.lost} escalations={self.escalations} "
            f"found-done={self.found_done} reruns={self.reruns}"
        )


class Trial:
    def __init__(
        self, number: int, base: Path, driver: Path, module: str, where: str | None = None
    ) -> None:
        self.number = number
        self.rng = random.Random(number)
        self.root = base / f"trial-{number:04d}"
        self.ws = self.root / "ws"
        self.ws.mkdir(parents=True)
        self.db = where or str(self.root / "trestle.db")  # an SQLite file, or a URL
        self.driver = driver
        self.store = open_store(self.db)
        self.skip_requested: set[str] = set()
        git = ["git", "-C", str(self.ws)]
        subprocess.run([*git, "init", "-q"], check=True)
        for key, value in (
            ("user.name", "Crash Suite"),
            ("user.email", "crash@example.invalid"),
            ("commit.gpgsign", "false"),
        ):
            subprocess.run([*git, "config", key, value], check=True)
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "initial"], check=True)
        # the plan file sits beside the callables' module, one directory for all trials
        plan_path = base / f"plan-{number:04d}.yaml"
        plan_path.write_text(yaml.safe_dump(build_plan(self.rng, module), sort_keys=False))
        plan = parse_plan(plan_path.read_text(), source=str(plan_path), base_dir=base)
        self.run_id = create_run(
            self.store,
            plan,
            workspace=self.ws,
            plan_path=plan_path,
            run_id=f"crash{number}-{uuid.uuid4().hex[:6]}",
        )

    def last_seq(self) -> int:
        return self.store.run(self.run_id).last_seq

    def kill_and_resume(self, tally: Tally, cycles: int) -> None:
        """Start a driver, kill it at a random moment; ``cycles`` times."""
        for cycle in range(cycles):
            err = (self.root / f"driver-{cycle}.err").open("wb")
            proc = subprocess.Popen(
                [sys.executable, str(self.driver), self.db, self.run_id],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
            if cycle:
                tally.resumes += 1
            # the moment: after a random number of further durable events, plus a
            # random delay, so kills land both just after commits and mid-step
            target = self.last_seq() + self.rng.randint(1, 14)
            delay = self.rng.uniform(0, 0.12)
            machine = self.rng.random() < 0.5
            deadline = time.monotonic() + 60
            while proc.poll() is None and self.last_seq() < target:
                assert time.monotonic() < deadline, "driver made no progress"
                time.sleep(0.005)
            time.sleep(delay)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                tally.kills += 1
                if machine:
                    kill_step_processes(self.run_id)
                    tally.machine_kills += 1
            else:
                err.close()
                text = (self.root / f"driver-{cycle}.err").read_text()
                assert proc.returncode == 0, f"driver failed: {text}"
            err.close()
            self.request_skips()

    def request_skips(self) -> int:
        """A human checks each escalated step by hand and skips it; how many were new."""
        state = load_state(self.store, self.run_id)
        new = 0
        for sid, st in state.steps.items():
            if st.status == "escalated" and sid not in self.skip_requested:
                request_decision(self.store, self.run_id, "skip", sid, "checked by hand")
                self.skip_requested.add(sid)
                new += 1
        return new

    def finish(self, tally: Tally) -> RunState:
        """Drive to the end in this process, resolving escalations as they come."""
        state = load_state(self.store, self.run_id)
        for _ in range(len(STEPS) + 2):
            tally.resumes += 1
            state = self.drive_once()
            if state.finished != "needs_human" or not self.request_skips():
                break
        return state

    def drive_once(self) -> RunState:
        store = open_store(self.db)
        engine = LocalEngine(store, poll_interval=POLL, lease_ttl=LEASE_TTL)
        try:
            for _ in range(100):
                try:
                    return asyncio.run(engine.run(self.run_id))
                except LeaseHeldError:  # the dead driver's pid was reused meanwhile
                    time.sleep(0.1)
            raise AssertionError("lease never freed")
        finally:
            engine.close()
            store.close()

    def audit(self, state: RunState, tally: Tally) -> None:
        """Everything the crash suite promises, counted into ``tally``."""
        wait_for_step_processes(self.run_id)  # orphans of killed drivers may still write
        events = [e.event for e in self.store.events(self.run_id)]
        problems = tally.problems
        where = f"trial {self.number} ({self.run_id})"
        if load_state(self.store, self.run_id).model_dump() != fold(events).model_dump():
            problems.append(f"{where}: stored state differs from the fold of its events")
        problems += [f"{where}: {p}" for p in needs_violations(state, events)]

        ledger = (self.ws / "ledger.txt").read_text().splitlines()
        lines = Counter(line.split()[0] for line in ledger)
        keys = {line.split()[0]: line.split()[1] for line in ledger}
        started = {(e.step, e.key) for e in events if isinstance(e, StepStarted)}
        log = subprocess.run(
            ["git", "-C", str(self.ws), "log", "--format=%s"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        commits = sum(1 for subject in log if subject.startswith("release "))
        if commits > 1:
            tally.duplicates += commits - 1
            problems.append(f"{where}: release committed {commits} times")

        escalated = [e for e in events if isinstance(e, StepEscalated)]
        tally.escalations += len(escalated)
        for e in events:
            if isinstance(e, StepProbed) and e.reason == "unknown_outcome":
                if e.passed:
                    tally.found_done += 1
                elif state.step_spec(e.step).rerunnable:
                    tally.reruns += 1
        for i, event in enumerate(events):
            if isinstance(event, StepEscalated):
                why = escalation_unjustified(state, events, i)
                if why:
                    problems.append(f"{where}: escalation of {event.step!r}: {why}")

        for sid in STEPS:
            st = state.steps[sid]
            if lines[sid] > 1:
                tally.duplicates += lines[sid] - 1
                problems.append(f"{where}: {sid!r} took effect {lines[sid]} times")
            if st.status == "succeeded":
                if lines[sid] == 0:
                    tally.lost += 1
                    problems.append(f"{where}: {sid!r} succeeded but left no effect")
                elif (sid, keys[sid]) not in started:
                    problems.append(f"{where}: {sid!r} ran with unrecorded key {keys[sid]}")
            elif st.status == "skipped":
                if not any(e.step == sid for e in escalated):
                    tally.lost += 1
                    problems.append(f"{where}: {sid!r} skipped without an escalation")
            else:
                tally.lost += 1
                problems.append(f"{where}: {sid!r} ended {st.status}: {st.reason}")
        if state.steps["release"].status == "succeeded" and commits != 1:
            problems.append(f"{where}: release succeeded with {commits} commits")
        if state.finished != "succeeded":
            problems.append(f"{where}: run ended {state.finished}")

    def close(self) -> None:
        self.store.close()


def needs_violations(state: RunState, events: list[AnyEvent]) -> list[str]:
    """Starts that came before every need succeeded (or was skipped)."""
    met: set[str] = set()
    out = []
    for event in events:
        match event:
            case StepStarted(step=sid):
                missing = [n for n in state.step_spec(sid).needs if n not in met]
                if missing:
                    out.append(f"{sid!r} started before {missing} were met")
            case StepAttemptEnded(step=sid, ok=True) | StepProbed(step=sid, passed=True):
                met.add(sid)
            case StepSkipped(step=sid):
                met.add(sid)
            case StepFailed(step=sid):
                out.append(f"{sid!r} failed: {event.reason}")
    return out


def escalation_unjustified(state: RunState, events: list[AnyEvent], index: int) -> str | None:
    """Why the escalation at ``events[index]`` was not warranted, or None if it was.

    Warranted means: the step is unsafe to re-run, its last attempt started and never
    recorded an outcome, a new driver took over since, and (if it has checks) a probe
    after the takeover found the work not done.
    """
    escalation = events[index]
    assert isinstance(escalation, StepEscalated)
    sid = escalation.step
    if state.step_spec(sid).rerunnable:
        return "the step is safe to re-run"
    before = events[:index]
    starts = [i for i, e in enumerate(before) if isinstance(e, StepStarted) and e.step == sid]
    if not starts:
        return "the step never started"
    start = before[starts[-1]]
    assert isinstance(start, StepStarted)
    after_start = before[starts[-1] + 1 :]
    if any(
        isinstance(e, StepAttemptEnded) and e.step == sid and e.attempt == start.attempt
        for e in after_start
    ):
        return f"attempt {start.attempt} had a recorded outcome"
    resumed = [i for i, e in enumerate(after_start) if isinstance(e, RunResumed)]
    if not resumed:
        return "no driver took over after the attempt started"
    since = after_start[resumed[-1] + 1 :]
    probed = [
        e
        for e in since
        if isinstance(e, StepProbed) and e.step == sid and e.reason == "unknown_outcome"
    ]
    if not probed or probed[-1].passed:
        return "its checks were not probed (or passed) after the takeover"
    return None


# --- the suite ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_kill_and_resume_never_duplicates_or_loses_a_step(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    driver = tmp_path / "drive.py"
    driver.write_text(DRIVER)
    module = f"crash_steps_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(CALLABLES)
    tally = Tally()
    trials = TRIALS if kind == "sqlite" else max(1, TRIALS // 2)
    for number in range(trials):
        where = None
        if kind == "postgres":
            where = request.getfixturevalue("postgres").create_database()
        trial = Trial(number, tmp_path, driver, module, where)
        try:
            trial.kill_and_resume(tally, cycles=trial.rng.randint(1, 3))
            state = trial.finish(tally)
            trial.audit(state, tally)
        finally:
            kill_step_processes(trial.run_id)
            trial.close()
        tally.trials += 1
    with capsys.disabled():
        print(f"\n{tally.line()}")
    assert tally.kills >= trials // 2, "too few kills landed: the suite tested little"
    assert not tally.problems, "\n".join(tally.problems[:20])
    assert (tally.duplicates, tally.lost) == (0, 0)
