"""A step's processes outlive a killed driver: no side effect runs twice because of it.

Real ``trestle`` subprocesses, real step processes, real signals. The driver is killed
on its own (SIGKILL of its pid, not its process group), the way a crash or an OOM kill
leaves a run; then the test does what the report says.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from forked_cli import Started, run_trestle, start_trestle
from trestle.core.decider import decide
from trestle.core.events import (
    RunCreated,
    RunInterrupted,
    RunResumed,
    StepEscalated,
    StepProbed,
    StepProbeStarted,
    StepProcessStarted,
    StepReopened,
    StepStarted,
)
from trestle.core.plan import Plan, Step
from trestle.core.state import RunState
from trestle.execution.processes import Leader, leftovers
from trestle.execution.processes import start_time as proc_start_time
from trestle.execution.sandbox import find_bwrap
from trestle.formats.planfile import load_plan
from trestle.lifecycle.lease import this_process
from trestle.lifecycle.runs import create_run, load_state
from trestle.store import SqliteStore

START = 1_800_000_000.0


def trestle(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_trestle(args, cwd=cwd, timeout=120)


def start_driver(plan: Path, db: Path) -> Started:
    return start_trestle(["run", plan, "--store", db, "--no-live"], cwd=plan.parent)


def write_plan(tmp_path: Path, steps: list[dict[str, object]]) -> Path:
    (tmp_path / "ws").mkdir()
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"goal": "orphans", "workspace": "ws", "steps": steps}))
    return plan


def wait_for(db: Path, kind: type, step: str, deadline: float = 30.0) -> str:
    """Wait until the only run in ``db`` records ``kind`` for ``step``; its run id."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if db.exists():
            store = SqliteStore(db)
            try:
                for row in store.runs():
                    if any(
                        isinstance(e.event, kind) and getattr(e.event, "step", None) == step
                        for e in store.events(row.run_id)
                    ):
                        return row.run_id
            finally:
                store.close()
        time.sleep(0.05)
    raise AssertionError(f"no {kind.__name__} for {step!r}")


def processes_with_key(key: str) -> list[int]:
    return sorted(leftovers(key, None))


def events_of(db: Path, run_id: str) -> list[object]:
    store = SqliteStore(db)
    try:
        return [e.event for e in store.events(run_id)]
    finally:
        store.close()


def wait_gone(key: str, deadline: float = 15.0) -> None:
    end = time.monotonic() + deadline
    while processes_with_key(key):
        assert time.monotonic() < end, f"processes of {key} still running"
        time.sleep(0.05)


# --- the reported bug -------------------------------------------------------------


def test_following_the_report_after_the_driver_is_killed_never_duplicates_the_effect(
    tmp_path: Path,
) -> None:
    plan = write_plan(
        tmp_path,
        [
            {
                "id": "append",
                "run": "sleep 2; echo a >> ledger.txt",
                "verify": [{"file_contains": "ledger.txt", "regex": "^a$"}],
            }
        ],
    )
    db = tmp_path / "trestle.db"
    driver = start_driver(plan, db)
    run_id = wait_for(db, StepStarted, "append")
    time.sleep(0.7)
    driver.send_signal(signal.SIGKILL)  # the driver only: its step goes on as an orphan
    driver.wait()

    resumed = trestle("resume", run_id, "--store", str(db), "--no-live", cwd=tmp_path)
    assert "Traceback" not in resumed.stdout + resumed.stderr
    assert "the process stopped mid-step" not in resumed.stdout
    for _ in range(3):  # do what the report says until the run is done
        state = load_state(SqliteStore(db), run_id)
        st = state.steps["append"]
        if st.status != "escalated":
            break
        assert st.reason is not None and "the driver stopped while it ran" in st.reason
        assert f"`trestle retry {run_id} append`" in " ".join(resumed.stdout.split())
        assert trestle("retry", run_id, "append", "--store", str(db), cwd=tmp_path).returncode == 0
        resumed = trestle("resume", run_id, "--store", str(db), "--no-live", cwd=tmp_path)
    wait_gone(f"{run_id}/append/1")
    assert (tmp_path / "ws" / "ledger.txt").read_text().splitlines() == ["a"]
    assert load_state(SqliteStore(db), run_id).steps["append"].status == "succeeded"
    probes = [e for e in events_of(db, run_id) if isinstance(e, StepProbed)]
    assert probes[0].reason == "unknown_outcome" and probes[0].leftovers is not None


def test_the_step_process_dies_with_its_driver(tmp_path: Path) -> None:
    # the leader is the command itself (exec), so it carries the death signal
    plan = write_plan(tmp_path, [{"id": "wait", "run": "exec sleep 60"}])
    db = tmp_path / "trestle.db"
    driver = start_driver(plan, db)
    run_id = wait_for(db, StepStarted, "wait")
    key = f"{run_id}/wait/1"
    end = time.monotonic() + 10
    while not processes_with_key(key):
        assert time.monotonic() < end
        time.sleep(0.02)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    wait_gone(key, deadline=5.0)


def processes_marked(mark: str) -> list[int]:
    """Live processes whose environment holds ``ORPHAN_MARK=<mark>``."""
    marker = f"ORPHAN_MARK={mark}\0".encode()
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                environ = Path(entry.path, "environ").read_bytes()
            except OSError:
                continue
            if environ.startswith(marker) or b"\0" + marker in environ:
                found.append(int(entry.name))
    return found


KILLS_AT_SPAWN = 8


def test_a_driver_killed_as_its_sandbox_starts_leaves_nothing_behind(tmp_path: Path) -> None:
    """Killed the moment a sandboxed step's process appears, the driver takes all of
    it along: bubblewrap's inner process, left waiting for an outer one that died, was
    left behind forever in about half of such kills before the watchdog."""
    found, why = find_bwrap()
    assert found is not None, f"this test needs bubblewrap (make test installs it): {why}"
    left = []
    for trial in range(KILLS_AT_SPAWN):
        mark = f"{os.getpid()}-{trial}"
        base = tmp_path / str(trial)
        base.mkdir()
        plan = write_plan(base, [{"id": "wait", "run": "sleep 60", "env": {"ORPHAN_MARK": mark}}])
        driver = start_driver(plan, base / "trestle.db")
        end = time.monotonic() + 30
        while not processes_marked(mark):
            assert time.monotonic() < end and driver.poll() is None, driver.stderr
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        end = time.monotonic() + 5
        while processes_marked(mark) and time.monotonic() < end:
            time.sleep(0.05)
        if processes_marked(mark):
            left.append(mark)
            for pid in processes_marked(mark):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    assert left == [], f"{len(left)} of {KILLS_AT_SPAWN} kills left processes behind"


def test_a_long_attempt_records_its_process_group(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, [{"id": "wait", "run": "sleep 1.5"}])
    db = tmp_path / "trestle.db"
    driver = start_driver(plan, db)
    run_id = wait_for(db, StepProcessStarted, "wait")
    [record] = [e for e in events_of(db, run_id) if isinstance(e, StepProcessStarted)]
    assert record.pgid == record.pid and record.attempt == 1
    assert record.start_time == proc_start_time(record.pid)
    assert os.getpgid(record.pid) == record.pgid
    driver.communicate(timeout=60)
    assert driver.returncode == 0


def test_a_short_attempt_costs_no_extra_record(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, [{"id": "quick", "run": "true"}])
    db = tmp_path / "trestle.db"
    driver = start_driver(plan, db)
    driver.communicate(timeout=60)
    store = SqliteStore(db)
    [row] = store.runs()
    assert not [e for e in store.events(row.run_id) if isinstance(e.event, StepProcessStarted)]
    store.close()


def test_leftovers_are_found_by_group_unless_the_leader_pid_was_reused() -> None:
    # a process that scrubbed its environment is still found through its group
    proc = subprocess.Popen(["sleep", "30"], env={}, start_new_session=True)
    try:
        born = proc_start_time(proc.pid)
        assert born is not None
        ours = Leader(pid=proc.pid, pgid=proc.pid, start_time=born)
        assert leftovers("no-such-key", ours) == {proc.pid}
        reused = Leader(pid=proc.pid, pgid=proc.pid, start_time=born - 1)
        assert leftovers("no-such-key", reused) == set()
    finally:
        proc.kill()
        proc.wait()


# --- signals: a clean stop, the report, and a resume that re-runs what was stopped ------


@pytest.mark.parametrize(
    ("sig", "code"),
    [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)],
    ids=["SIGTERM", "SIGHUP", "SIGINT"],
)
def test_a_signal_stops_the_steps_records_it_prints_the_report_and_resume_reruns(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    # the marker lives in the workspace: a write outside it would need an approval
    first_long = "[ -f marker ] || { touch marker; sleep 60; }"
    plan = write_plan(
        tmp_path,
        [
            {
                "id": "slow",
                "run": f"{first_long}; echo slow >> ledger.txt",
                "verify": [{"file_contains": "ledger.txt", "regex": "^slow$"}],
            },
            {"id": "after", "needs": ["slow"], "run": "echo after >> ledger.txt"},
        ],
    )
    db = tmp_path / "trestle.db"
    driver = start_driver(plan, db)
    run_id = wait_for(db, StepStarted, "slow")
    while not (tmp_path / "ws" / "marker").exists():
        time.sleep(0.02)
    driver.send_signal(sig)
    out, err = driver.communicate(timeout=30)
    assert driver.returncode == code, err
    assert "Traceback" not in out + err
    said = " ".join(out.split())
    assert "what a human should check" in said and f"`trestle resume {run_id}`" in said
    assert f"interrupted ({sig.name})" in said
    assert processes_with_key(f"{run_id}/slow/1") == []  # stopped, not orphaned
    [interrupted] = [e for e in events_of(db, run_id) if isinstance(e, RunInterrupted)]
    assert (interrupted.by, interrupted.stopped) == (sig.name, ("slow",))

    resumed = trestle("resume", run_id, "--store", str(db), "--no-live", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    state = load_state(SqliteStore(db), run_id)
    st = state.steps["slow"]
    assert (st.status, st.attempt, st.failed_attempts) == ("succeeded", 2, 0)
    assert (tmp_path / "ws" / "ledger.txt").read_text().splitlines() == ["slow", "after"]
    assert not [e for e in events_of(db, run_id) if isinstance(e, StepEscalated)]


# --- the core: what a stop and a human retry mean -----------------------------------------


def _state(step: Step) -> RunState:
    created = RunCreated(at=START, run_id="r", plan=Plan(goal="g", steps=(step,)), workspace="/tmp")
    state = RunState.from_created(created)
    for event in decide(state, START):
        state.apply(event)
    return state


def test_an_irreversible_step_without_checks_stopped_mid_step_goes_to_a_human() -> None:
    state = _state(Step(id="push", run="git push", irreversible=True, approval="log"))
    state.apply(RunInterrupted(at=START, by="SIGTERM", stopped=("push",)))
    [probe] = decide(state, START)
    assert isinstance(probe, StepProbeStarted)
    state.apply(probe)
    state.apply(StepProbed(at=START, step="push", reason=probe.reason, passed=False))
    escalated = decide(state, START)[0]
    assert isinstance(escalated, StepEscalated)
    assert "Trestle stopped it mid-step on SIGTERM" in escalated.reason


def test_a_stopped_step_is_rerun_without_counting_a_failure() -> None:
    state = _state(Step(id="build", run="make", idempotent=True))
    state.apply(RunInterrupted(at=START, by="SIGINT", stopped=("build",)))
    assert state.steps["build"].failed_attempts == 0
    [started] = decide(state, START)
    assert isinstance(started, StepStarted) and started.attempt == 2


def test_a_stopped_step_with_checks_is_probed_then_rerun() -> None:
    check = {"file_exists": "out"}
    state = _state(Step.model_validate({"id": "pay", "run": "pay", "verify": [check]}))
    state.apply(RunInterrupted(at=START, by="SIGTERM", stopped=("pay",)))
    assert decide(state, START) == [StepProbeStarted(at=START, step="pay", reason="before_retry")]
    state.apply(StepProbeStarted(at=START, step="pay", reason="before_retry"))
    state.apply(StepProbed(at=START, step="pay", reason="before_retry", passed=False))
    [started] = decide(state, START)
    assert isinstance(started, StepStarted) and started.attempt == 2
    assert state.steps["pay"].failed_attempts == 0


def test_a_stopped_step_that_may_have_done_its_work_goes_to_a_human() -> None:
    # no checks and not idempotent: its effect may have landed before the stop
    state = _state(Step(id="mail", run="send-mail"))
    state.apply(RunInterrupted(at=START, by="SIGHUP", stopped=("mail",)))
    assert state.steps["mail"].status == "unknown"


def test_a_human_retry_of_an_escalated_step_probes_first() -> None:
    check = {"file_exists": "out"}
    state = _state(Step.model_validate({"id": "pay", "run": "pay", "verify": [check]}))
    state.apply(RunResumed(at=START, owner="p2"))
    [probe] = decide(state, START)
    state.apply(probe)
    state.apply(StepProbed(at=START, step="pay", reason="unknown_outcome", passed=False))
    for event in decide(state, START):
        state.apply(event)
    assert state.steps["pay"].status == "escalated"
    state.apply(StepReopened(at=START, step="pay", reason="retry requested"))
    # the work may have landed since (a late process, or the human's own hand)
    assert decide(state, START) == [StepProbeStarted(at=START, step="pay", reason="before_retry")]


def test_a_signal_lets_a_python_step_it_cannot_stop_finish_and_records_its_outcome(
    tmp_path: Path,
) -> None:
    (tmp_path / "slowstep.py").write_text(
        "import time\n\n\ndef work(ctx):\n    time.sleep(1.5)\n"
        "    with open(ctx.workspace / 'ledger.txt', 'a') as f:\n        f.write('work\\n')\n"
    )
    plan = write_plan(tmp_path, [{"id": "work", "python": "slowstep:work"}])
    db = tmp_path / "trestle.db"
    driver = start_driver(plan, db)
    run_id = wait_for(db, StepStarted, "work")
    time.sleep(0.3)
    driver.send_signal(signal.SIGTERM)
    out, err = driver.communicate(timeout=60)
    assert driver.returncode == 143, err
    assert "interrupted (SIGTERM)" in " ".join(out.split())
    events = events_of(db, run_id)
    [interrupted] = [e for e in events if isinstance(e, RunInterrupted)]
    assert interrupted.stopped == ()  # a thread cannot be stopped: it was let finish
    assert load_state(SqliteStore(db), run_id).steps["work"].status == "succeeded"
    assert (tmp_path / "ws" / "ledger.txt").read_text() == "work\n"


def test_a_drive_that_ends_in_an_error_still_prints_the_report(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, [{"id": "only", "run": "true"}])
    db = tmp_path / "trestle.db"
    store = SqliteStore(db)
    run_id = create_run(store, load_plan(plan), workspace=tmp_path / "ws")
    # a live process (this one) holds the run: the resume is refused, exit 5
    store.acquire_lease(run_id, this_process("other"), ttl=60, now=time.time())
    store.close()
    done = trestle("resume", run_id, "--store", str(db), "--no-live", cwd=tmp_path)
    assert done.returncode == 5, done.stderr
    assert f"run {run_id}: running" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    # beside the refusal, the report says to wait for the driver, not to resume
    said = " ".join(done.stdout.split())
    assert "continue it with `trestle resume" not in said, said
    assert (
        "the run has not finished, and another process drives it: wait for it to end, or "
        "stop that process (Ctrl-C, or SIGTERM to its pid) and then resume it; `trestle "
        "health` shows who drives it."
    ) in said
    assert "is being driven by other" in done.stderr
