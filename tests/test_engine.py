"""The local engine end to end: real SQLite files, real subprocesses, no mocks.

Every test writes a plan, records a run in a fresh SQLite file under ``tmp_path``,
drives it with :class:`LocalEngine`, and then looks at two things: the durable event
stream, and what the steps' shell commands left in the workspace (counter files that
each attempt appends a line to). Assertions are about ordering and counts, never about
how long something took.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from trestle.core.errors import ConfigError, LeaseHeldError
from trestle.core.events import (
    AnyEvent,
    RunFinished,
    RunResumed,
    StepAttemptEnded,
    StepBlocked,
    StepEscalated,
    StepFailed,
    StepProbed,
    StepProbeStarted,
    StepReopened,
    StepRetryScheduled,
    StepSkipped,
    StepStarted,
    idempotency_key,
)
from trestle.core.plan import Plan
from trestle.core.state import RunState, fold
from trestle.core.step_state import TERMINAL
from trestle.engines.local import LocalEngine
from trestle.formats.planfile import parse_plan
from trestle.lifecycle.approvals import inbox, submit_decision
from trestle.lifecycle.runs import create_run, load_state, request_decision
from trestle.store import Appended, Owner, SqliteStore

POLL = 0.02  # engine poll interval: small, so waiting runs notice requests quickly


class Harness:
    """One test's world: a workspace, a plan directory, a SQLite file, and engines."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.workspace = root / "ws"
        self.workspace.mkdir()
        self.db = root / "trestle.db"
        self.store = SqliteStore(self.db)
        self._engines: list[LocalEngine] = []
        self._stores: list[SqliteStore] = [self.store]

    def plan(self, text: str) -> Plan:
        source = self.root / "plan.yaml"
        source.write_text(textwrap.dedent(text), encoding="utf-8")
        return parse_plan(source.read_text("utf-8"), source=str(source), base_dir=self.root)

    def create(self, text: str) -> str:
        plan = self.plan(text)
        return create_run(
            self.store, plan, workspace=self.workspace, plan_path=self.root / "plan.yaml"
        )

    def engine(self, store: SqliteStore | None = None, snapshot_every: int = 200) -> LocalEngine:
        engine = LocalEngine(store or self.store, poll_interval=POLL, snapshot_every=snapshot_every)
        self._engines.append(engine)
        return engine

    def second_store(self) -> SqliteStore:
        """Another connection to the same file, as a second process would open."""
        store = SqliteStore(self.db)
        self._stores.append(store)
        return store

    def run(self, run_id: str, snapshot_every: int = 200) -> RunState:
        return asyncio.run(self.engine(snapshot_every=snapshot_every).run(run_id))

    def events(self, run_id: str) -> list[AnyEvent]:
        return [e.event for e in self.store.events(run_id)]

    def count(self, name: str) -> int:
        """Lines in a workspace counter file (0 if the file was never written)."""
        path = self.workspace / name
        return len(path.read_text("utf-8").splitlines()) if path.exists() else 0

    def module(self, source: str) -> str:
        """Write a uniquely named module next to the plan and return its name.

        Unique names keep ``sys.modules`` from handing one test another test's module.
        """
        name = f"steps_{uuid.uuid4().hex[:12]}"
        (self.root / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        return name

    def close(self) -> None:
        for engine in self._engines:
            engine.close()
        for store in self._stores:
            store.close()


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.close()


E = TypeVar("E")


def of_kind(events: list[AnyEvent], kind: type[E], step: str | None = None) -> list[E]:
    """The events of one type (and, if given, about one step), in order."""
    return [
        e
        for e in events
        if isinstance(e, kind) and (step is None or getattr(e, "step", None) == step)
    ]


def assert_consistent(h: Harness, run_id: str) -> RunState:
    """Invariants every finished drive must satisfy, whatever the plan did.

    - the stored state (snapshot + tail) equals folding every event;
    - a step starts only after each of its needs succeeded or was resolved for it;
    - each step that ended is in exactly one terminal state and has a reason.
    """
    events = h.events(run_id)
    state = load_state(h.store, run_id)
    assert state.model_dump() == fold(events).model_dump()
    done: set[str] = set()
    resolved: set[str] = set()
    for event in events:
        match event:
            case StepStarted(step=sid):
                for need in state.step_spec(sid).needs:
                    assert need in resolved, f"{sid} started before its need {need} was met"
            case StepAttemptEnded(step=sid, ok=True) | StepProbed(step=sid, passed=True):
                done.add(sid)
                resolved.add(sid)
            case StepSkipped(step=sid):
                resolved.add(sid)
            case StepFailed(step=sid) if state.step_spec(sid).optional:
                resolved.add(sid)
    for sid, st in state.steps.items():
        if st.status in TERMINAL:
            assert st.reason, f"step {sid} is {st.status} without a reason"
        if st.status == "succeeded":
            assert sid in done
    return state


# --- verification -------------------------------------------------------------------


def test_step_succeeds_when_action_and_every_check_pass(h: Harness) -> None:
    run_id = h.create(
        r"""
        steps:
          - id: build
            run: echo x >> count; printf 'name = demo\nversion = 1.2\n' > out.txt
            verify:
              - file_exists: out.txt
              - file_contains: out.txt
                text: "name = demo"
              - file_contains: out.txt
                regex: '^version = \d+\.\d+$'
              - command: test -s out.txt
        """
    )
    state = h.run(run_id)
    assert state.finished == "succeeded"
    st = state.steps["build"]
    assert (st.status, st.succeeded_via, st.reason) == ("succeeded", "action", "verified")
    assert h.count("count") == 1
    [ended] = of_kind(h.events(run_id), StepAttemptEnded)
    assert ended.ok and ended.action.status == "ok" and ended.action.exit_code == 0
    recorded = [(c.expected, c.actual, c.passed) for c in ended.checks]
    assert recorded == [
        ("exists", "exists", True),
        ("contains 'name = demo'", "found", True),
        (r"matches /^version = \d+\.\d+$/", "found", True),
        ("exit 0", "exit 0", True),
    ]
    assert [c.check for c in ended.checks][2] == r"out.txt matches /^version = \d+\.\d+$/"
    assert_consistent(h, run_id)


def test_exit_zero_with_a_failing_check_is_a_failed_attempt(h: Harness) -> None:
    run_id = h.create(
        r"""
        steps:
          - id: build
            run: echo x >> count; echo hello > out.txt
            retries: 1
            backoff: {initial: 0}
            verify:
              - file_contains: out.txt
                text: goodbye
              - file_contains: out.txt
                regex: '^hel+o$'
              - command: "echo 'no such thing' >&2; exit 3"
        """
    )
    state = h.run(run_id)
    st = state.steps["build"]
    assert st.status == "failed"
    assert st.reason is not None and "check failed" in st.reason and "goodbye" in st.reason
    # the retry ran again: its before-retry probe could not see the work done
    assert h.count("count") == 2
    events = h.events(run_id)
    attempts = of_kind(events, StepAttemptEnded)
    assert len(attempts) == 2
    for ended in attempts:
        assert not ended.ok and ended.action.status == "ok" and ended.action.exit_code == 0
        contains, regex, command = ended.checks
        assert (contains.expected, contains.passed) == ("contains 'goodbye'", False)
        assert contains.actual.startswith("not found")
        assert (regex.actual, regex.passed) == ("found", True)
        assert (command.expected, command.passed) == ("exit 0", False)
        assert command.actual.startswith("exit 3") and "no such thing" in command.actual
    [probe] = of_kind(events, StepProbed)
    assert (probe.reason, probe.passed) == ("before_retry", False)
    assert state.finished == "needs_human"
    assert_consistent(h, run_id)


def test_a_run_state_shows_itself_in_one_short_line(h: Harness) -> None:
    # asyncio.run formats the repr of the state a run returns: a whole state's took
    # tens of milliseconds for a long run
    steps = "".join(f"  - id: s{i}\n    run: 'true'\n" for i in range(40))
    state = h.run(h.create(f"goal: many steps\nsteps:\n{steps}"))
    assert repr(state) == (
        f"RunState(run_id={state.run_id!r}, seq={state.seq}, steps=40, finished='succeeded')"
    )


def test_run_returns_the_state_the_store_folds(h: Harness) -> None:
    # run() hands back the drive's own state instead of loading the run again: it must
    # be the very state a load folds (snapshots taken mid-run, a retry, a dead letter)
    run_id = h.create(
        """
        steps:
          - id: a
            run: echo a >> count
          - id: flaky
            run: echo f >> count; exit 1
            retries: 1
            backoff: {initial: 0}
            needs: [a]
          - id: aside
            run: 'true'
            needs: [a]
        """
    )
    engine = h.engine(snapshot_every=1)
    for _ in range(2):  # the second drive finds nothing to do
        returned = asyncio.run(engine.run(run_id))
        assert returned.finished == "needs_human"
        assert returned.model_dump() == engine.state(run_id).model_dump()
        assert returned.model_dump() == load_state(h.store, run_id).model_dump()


@pytest.mark.parametrize("retries", [0, 2])
def test_retries_are_bounded_to_retries_plus_one_attempts(h: Harness, retries: int) -> None:
    run_id = h.create(
        f"""
        steps:
          - id: flaky
            run: echo "$TRESTLE_ATTEMPT $TRESTLE_IDEMPOTENCY_KEY" >> count; exit 1
            retries: {retries}
            backoff: {{initial: 0}}
        """
    )
    state = h.run(run_id)
    assert h.count("count") == retries + 1
    lines = (h.workspace / "count").read_text("utf-8").splitlines()
    assert lines == [f"{n} {idempotency_key(run_id, 'flaky', n)}" for n in range(1, retries + 2)]
    events = h.events(run_id)
    assert len(of_kind(events, StepStarted)) == retries + 1
    assert len(of_kind(events, StepRetryScheduled)) == retries
    assert [e.action.exit_code for e in of_kind(events, StepAttemptEnded)] == [1] * (retries + 1)
    [failed] = of_kind(events, StepFailed)
    assert failed.dead_lettered
    assert f"failed {retries + 1} of {retries + 1} attempts" in failed.reason
    assert state.steps["flaky"].status == "failed"
    assert state.finished == "needs_human"
    assert_consistent(h, run_id)


def test_before_a_retry_passing_checks_finish_the_step_without_rerunning(h: Harness) -> None:
    run_id = h.create(
        """
        steps:
          - id: deploy
            run: echo x >> count; echo done > deployed.txt; exit 1
            retries: 3
            backoff: {initial: 0}
            verify:
              - file_contains: deployed.txt
                text: done
          - id: after
            needs: [deploy]
            run: echo x >> after-count
        """
    )
    state = h.run(run_id)
    assert state.finished == "succeeded"
    st = state.steps["deploy"]
    assert (st.status, st.succeeded_via) == ("succeeded", "probe")
    assert h.count("count") == 1
    assert h.count("after-count") == 1
    events = h.events(run_id)
    assert len(of_kind(events, StepStarted, "deploy")) == 1
    [ended] = of_kind(events, StepAttemptEnded, "deploy")
    assert not ended.ok and ended.checks == ()  # a failed action's checks do not run
    [probe] = of_kind(events, StepProbed, "deploy")
    assert (probe.reason, probe.passed) == ("before_retry", True)
    assert probe.checks[0].actual == "found"
    assert_consistent(h, run_id)


# --- failure, blocking and human decisions ------------------------------------------


def test_dependents_of_a_failed_step_are_blocked_and_never_run(h: Harness) -> None:
    run_id = h.create(
        """
        steps:
          - id: a
            run: echo x >> a; exit 1
          - id: b
            needs: [a]
            run: echo x >> b
          - id: c
            needs: [b]
            run: echo x >> c
          - id: d
            run: echo x >> d
          - id: e
            needs: [d]
            run: echo x >> e
          - id: f
            needs: [c, e]
            run: echo x >> f
        """
    )
    state = h.run(run_id)
    assert [h.count(s) for s in "abcdef"] == [1, 0, 0, 1, 1, 0]
    assert state.steps["a"].status == "failed"
    for sid in "bcf":
        st = state.steps[sid]
        assert (st.status, st.blocked_by) == ("blocked", "a")
        assert st.reason == "needs 'a', which failed"
    assert state.steps["d"].status == state.steps["e"].status == "succeeded"
    events = h.events(run_id)
    assert sorted(e.step for e in of_kind(events, StepBlocked)) == ["b", "c", "f"]
    assert not {"b", "c", "f"} & {e.step for e in of_kind(events, StepStarted)}
    assert state.finished == "needs_human"
    assert_consistent(h, run_id)


def test_without_escalation_a_failed_run_is_partial(h: Harness) -> None:
    run_id = h.create(
        """
        escalate: false
        steps:
          - id: a
            run: exit 1
          - id: b
            needs: [a]
            run: echo x >> b
        """
    )
    state = h.run(run_id)
    assert state.finished == "partial"
    assert not state.steps["a"].dead_lettered
    assert state.steps["b"].status == "blocked"
    assert h.count("b") == 0


def test_a_failed_optional_step_blocks_nothing(h: Harness) -> None:
    run_id = h.create(
        """
        steps:
          - id: lint
            optional: true
            run: echo x >> lint; exit 2
          - id: build
            needs: [lint]
            run: echo x >> build
          - id: ship
            needs: [build]
            run: echo x >> ship
        """
    )
    state = h.run(run_id)
    assert state.steps["lint"].status == "failed"
    assert not state.steps["lint"].dead_lettered
    assert [h.count(s) for s in ("lint", "build", "ship")] == [1, 1, 1]
    assert state.finished == "succeeded"
    assert not of_kind(h.events(run_id), StepBlocked)
    assert_consistent(h, run_id)


FLAKY_UNTIL_FIXED = """
    steps:
      - id: migrate
        run: echo x >> migrate; test -f fixed
      - id: serve
        needs: [migrate]
        run: echo x >> serve
      - id: announce
        needs: [serve]
        run: echo x >> announce
    """


def test_a_retry_request_reruns_a_dead_lettered_step_and_its_dependents(h: Harness) -> None:
    run_id = h.create(FLAKY_UNTIL_FIXED)
    state = h.run(run_id)
    assert state.finished == "needs_human"
    assert state.steps["migrate"].dead_lettered
    assert state.steps["serve"].status == "blocked"
    assert h.store.run(run_id).status == "needs_human"

    # finishing again without a request changes nothing and records nothing
    seq = state.seq
    assert h.run(run_id).seq == seq
    # only failed or escalated steps can be retried
    with pytest.raises(ConfigError, match="cannot retry step 'serve'"):
        request_decision(h.store, run_id, "retry", "serve", "no")

    (h.workspace / "fixed").touch()
    request = request_decision(h.store, run_id, "retry", "migrate", "fixed the schema")
    state = h.run(run_id)
    assert state.finished == "succeeded"
    assert [h.count(s) for s in ("migrate", "serve", "announce")] == [2, 1, 1]
    assert state.steps["migrate"].attempt == 2
    events = h.events(run_id)
    [reopened] = of_kind(events, StepReopened)
    assert (reopened.step, reopened.request_id) == ("migrate", request.id)
    assert of_kind(events, StepStarted, "migrate")[-1].key == idempotency_key(run_id, "migrate", 2)
    assert h.store.pending_requests(run_id) == []
    assert h.store.run(run_id).status == "succeeded"
    assert_consistent(h, run_id)


def test_a_skip_request_lets_the_dependents_of_a_failed_step_proceed(h: Harness) -> None:
    run_id = h.create(FLAKY_UNTIL_FIXED)
    assert h.run(run_id).finished == "needs_human"
    request_decision(h.store, run_id, "skip", "migrate", "migrated by hand")
    state = h.run(run_id)
    assert state.steps["migrate"].status == "skipped"
    assert state.steps["migrate"].reason == "migrated by hand"
    assert [h.count(s) for s in ("migrate", "serve", "announce")] == [1, 1, 1]
    assert state.finished == "succeeded"
    [skipped] = of_kind(h.events(run_id), StepSkipped)
    assert skipped.step == "migrate"
    assert_consistent(h, run_id)


# --- timeouts -------------------------------------------------------------------------


def pid_is_gone(pid: int) -> bool:
    """True once ``pid`` no longer runs.

    A zombie counts as gone: it has exited, and only waits for a parent to reap it.
    Orphans are re-parented to pid 1, and in some containers pid 1 never reaps, so
    ``os.kill(pid, 0)`` keeps succeeding on a process that is long dead.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def wait_until_gone(pid: int, deadline: float = 10.0) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if pid_is_gone(pid):
            return True
        time.sleep(0.02)
    return pid_is_gone(pid)


@pytest.mark.usefixtures("unconfined")
def test_a_timeout_kills_the_whole_process_group_and_fails_the_attempt(h: Harness) -> None:
    run_id = h.create(
        """
        steps:
          - id: hang
            run: echo x >> count; sleep 60 & echo $! >> child.pids; sleep 60 & wait
            timeout: 0.5
            retries: 1
            backoff: {initial: 0}
          - id: after
            needs: [hang]
            run: echo x >> after
        """
    )
    state = h.run(run_id)
    assert h.count("count") == 2  # both attempts ran, each was killed
    pids = [int(p) for p in (h.workspace / "child.pids").read_text().split()]
    assert len(pids) == 2
    for pid in pids:
        assert wait_until_gone(pid), f"background child {pid} survived the timeout"
    attempts = of_kind(h.events(run_id), StepAttemptEnded)
    assert [a.action.status for a in attempts] == ["timeout", "timeout"]
    assert all(not a.ok and "timed out" in (a.action.error or "") for a in attempts)
    assert state.steps["hang"].status == "failed"
    assert state.steps["after"].status == "blocked"
    assert h.count("after") == 0
    assert_consistent(h, run_id)


@pytest.mark.usefixtures("unconfined")
def test_a_child_that_outlives_its_shell_is_killed_on_timeout(h: Harness) -> None:
    run_id = h.create(
        """
        steps:
          - id: hang
            run: sh -c 'sleep 60 & echo $! > child.pid; wait'
            timeout: 0.5
        """
    )
    h.run(run_id)
    pid = int((h.workspace / "child.pid").read_text())
    assert wait_until_gone(pid), f"child {pid} survived the timeout"
    [ended] = of_kind(h.events(run_id), StepAttemptEnded)
    assert ended.action.status == "timeout"


# --- actions of every kind, and callable checks -------------------------------------


def test_write_steps_write_inside_the_workspace_only(h: Harness) -> None:
    run_id = h.create(
        """
        steps:
          - id: config
            write:
              path: conf/app.toml
              content: "port = 8080\\n"
            verify:
              - file_contains: conf/app.toml
                regex: '^port = 80[0-9]{2}$'
          - id: escape
            approval: log  # past the policy (which would ask first), to meet the jail
            write:
              path: out/outside.txt  # '../outside.txt' is refused when the plan loads
              content: nope
        """
    )
    (h.workspace / "out").symlink_to(h.root)  # a link that leads out, met at run time
    state = h.run(run_id)
    assert (h.workspace / "conf" / "app.toml").read_text() == "port = 8080\n"
    assert state.steps["config"].status == "succeeded"
    assert state.steps["escape"].status == "failed"
    assert not (h.root / "outside.txt").exists()
    [ended] = of_kind(h.events(run_id), StepAttemptEnded, "escape")
    assert ended.action.status == "error"
    assert "outside the workspace" in (ended.action.error or "")


def test_python_steps_get_a_step_context_and_callable_checks_judge(h: Harness) -> None:
    mod = h.module(
        """
        import json

        def record(ctx):
            fields = {
                "run_id": ctx.run_id, "step_id": ctx.step_id, "attempt": ctx.attempt,
                "key": ctx.key, "workspace": str(ctx.workspace),
                "plan_dir": str(ctx.plan_dir),
            }
            (ctx.workspace / f"{ctx.step_id}.json").write_text(json.dumps(fields))
            return "recorded"

        async def record_async(ctx):
            return record(ctx)

        def recorded(ctx):
            return (ctx.workspace / "first.json").exists()

        def never(ctx):
            return False

        def explode(ctx):
            raise ValueError("the widget is missing")
        """
    )
    run_id = h.create(
        f"""
        steps:
          - id: first
            python: {mod}:record
            verify:
              - python: {mod}:recorded
          - id: second
            needs: [first]
            python: {mod}:record_async
          - id: unverified
            python: {mod}:record
            verify:
              - python: {mod}:never
          - id: refuses
            python: {mod}:never
          - id: raises
            python: {mod}:explode
        """
    )
    state = h.run(run_id)
    for sid in ("first", "second"):
        fields = json.loads((h.workspace / f"{sid}.json").read_text())
        assert fields == {
            "run_id": run_id,
            "step_id": sid,
            "attempt": 1,
            "key": idempotency_key(run_id, sid, 1),
            "workspace": str(h.workspace.resolve()),
            "plan_dir": str(h.root.resolve()),
        }
        assert state.steps[sid].status == "succeeded"
    events = h.events(run_id)
    [first] = of_kind(events, StepAttemptEnded, "first")
    assert first.action.output == "recorded"
    assert [(c.expected, c.actual, c.passed) for c in first.checks] == [("true", "true", True)]

    [unverified] = of_kind(events, StepAttemptEnded, "unverified")
    assert unverified.action.status == "ok" and not unverified.ok
    [check] = unverified.checks
    assert not check.passed and check.actual == f"{mod}:never returned False"
    assert state.steps["unverified"].status == "failed"

    [refuses] = of_kind(events, StepAttemptEnded, "refuses")
    assert refuses.action.status == "failed"
    [raises] = of_kind(events, StepAttemptEnded, "raises")
    assert raises.action.status == "error"
    assert raises.action.error == "ValueError: the widget is missing"
    assert_consistent(h, run_id)


def test_a_step_start_is_durable_before_its_action_runs(h: Harness) -> None:
    mod = h.module(
        f"""
        from trestle.store import SqliteStore

        def look(ctx):
            store = SqliteStore({str(h.db)!r})
            try:
                keys = [getattr(e.event, "key", None) for e in store.events(ctx.run_id)]
            finally:
                store.close()
            return ctx.key in keys
        """
    )
    run_id = h.create(
        f"""
        steps:
          - id: look
            python: {mod}:look
        """
    )
    assert h.run(run_id).steps["look"].status == "succeeded"


def test_drive_yields_each_event_only_once_it_is_durable(h: Harness) -> None:
    run_id = h.create(
        """
        steps:
          - id: a
            run: "true"
          - id: b
            needs: [a]
            run: exit 1
          - id: c
            needs: [b]
            run: "true"
        """
    )
    engine = h.engine()
    reader = h.second_store()

    async def collect() -> list[int]:
        seen: list[int] = []
        async for item in engine.drive(run_id):
            [stored] = reader.events(run_id, after=item.seq - 1)[:1]
            assert stored == item
            seen.append(item.seq)
        return seen

    seen = asyncio.run(collect())
    assert seen == list(range(2, len(h.events(run_id)) + 1))
    assert isinstance(h.events(run_id)[-1], RunFinished)


# --- parallelism ---------------------------------------------------------------------


def interval_plan(parallelism: int, barrier: bool) -> str:
    """Three independent steps logging their start and end to one shared file.

    Lines appended with ``>>`` land in the order they happened, so the log orders the
    steps' intervals without reading any clock. With ``barrier`` each step waits
    (a bounded while) for the other two to have started before it ends.
    """
    wait = (
        "i=0; while [ $(grep -c start log) -lt 3 ] && [ $i -lt 200 ]; do "
        "sleep 0.02; i=$((i+1)); done; "
        if barrier
        else "sleep 0.1; "
    )
    steps = "".join(
        f"""
          - id: {sid}
            run: echo "start {sid}" >> log; {wait}echo "end {sid}" >> log
        """
        for sid in ("x", "y", "z")
    )
    return f"parallelism: {parallelism}\nsteps:{textwrap.dedent(steps)}"


def test_independent_steps_run_in_parallel(h: Harness) -> None:
    run_id = h.create(interval_plan(parallelism=4, barrier=True))
    assert h.run(run_id).finished == "succeeded"
    log = (h.workspace / "log").read_text().splitlines()
    assert len(log) == 6
    kinds = [line.split()[0] for line in log]
    # every interval overlaps every other: all three started before any ended
    assert kinds == ["start"] * 3 + ["end"] * 3


def test_parallelism_one_runs_steps_one_at_a_time(h: Harness) -> None:
    run_id = h.create(interval_plan(parallelism=1, barrier=False))
    assert h.run(run_id).finished == "succeeded"
    log = (h.workspace / "log").read_text().splitlines()
    assert log == [f"{kind} {sid}" for sid in ("x", "y", "z") for kind in ("start", "end")]
    # and in the record: each start comes after the previous attempt ended
    events = [e for e in h.events(run_id) if isinstance(e, (StepStarted, StepAttemptEnded))]
    assert [type(e).__name__ for e in events] == ["StepStarted", "StepAttemptEnded"] * 3


# --- the lease ------------------------------------------------------------------------


def test_a_second_engine_is_refused_while_the_first_drives(h: Harness) -> None:
    run_id = h.create(
        """
        steps:
          - id: hold
            run: "i=0; while [ ! -f go ] && [ $i -lt 500 ]; do sleep 0.02; i=$((i+1)); done"
            verify:
              - file_exists: go
        """
    )
    first = h.engine()
    second = h.engine(h.second_store())

    async def scenario() -> RunState:
        async for item in first.drive(run_id):
            if isinstance(item.event, StepStarted):
                with pytest.raises(LeaseHeldError, match="being driven by"):
                    await second.run(run_id)
                (h.workspace / "go").touch()
        return load_state(h.store, run_id)

    state = asyncio.run(scenario())
    assert state.steps["hold"].status == "succeeded"
    # the refused engine recorded nothing; once the lease is released it may drive
    assert not of_kind(h.events(run_id), RunResumed)
    assert asyncio.run(second.run(run_id)).finished == "succeeded"


# --- outcome unknown: a run whose driver died mid-step -------------------------------


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def crash_mid_step(h: Harness, text: str, started: list[str]) -> str:
    """Record a run as a driver that died would leave it: starts with no outcome."""
    run_id = h.create(text)
    owner = Owner(name="crashed", pid=dead_pid(), host=os.uname().nodename)
    now = time.time()
    # a long ttl: the takeover must come from noticing the owner died, not from expiry
    lease = h.store.acquire_lease(run_id, owner, ttl=3600, now=now)
    events: list[AnyEvent] = [
        StepStarted(at=now, step=sid, attempt=1, key=idempotency_key(run_id, sid, 1))
        for sid in started
    ]
    h.store.append(
        run_id,
        Appended(events=events, first_seq=2, status="running", summary="{}"),
        token=lease.token,
    )
    assert load_state(h.store, run_id).steps[started[0]].status == "running"
    return run_id


def test_an_unknown_outcome_with_passing_checks_is_done_without_rerunning(h: Harness) -> None:
    run_id = crash_mid_step(
        h,
        """
        steps:
          - id: pay
            irreversible: true
            run: echo x >> count; echo paid > receipt.txt
            verify:
              - file_contains: receipt.txt
                text: paid
          - id: notify
            needs: [pay]
            run: echo x >> notify
        """,
        started=["pay"],
    )
    (h.workspace / "receipt.txt").write_text("paid\n")  # the dead driver's work
    state = h.run(run_id)
    st = state.steps["pay"]
    assert (st.status, st.succeeded_via) == ("succeeded", "probe")
    assert st.reason == "outcome was unknown after a crash; verify checks passed"
    assert h.count("count") == 0
    assert h.count("notify") == 1
    assert state.finished == "succeeded" and state.resumes == 1
    events = h.events(run_id)
    assert isinstance(events[2], RunResumed)
    assert len(of_kind(events, StepStarted, "pay")) == 1
    [probe] = of_kind(events, StepProbed, "pay")
    assert (probe.reason, probe.passed) == ("unknown_outcome", True)
    assert_consistent(h, run_id)


@pytest.mark.parametrize(
    "spec",
    [
        "idempotent: true\n    verify: [{file_exists: out.txt}]",
        "idempotent: true",
        "write: {path: out.txt, content: hi}",
    ],
    ids=["idempotent-checked", "idempotent-unchecked", "write"],
)
def test_an_unknown_outcome_of_a_rerunnable_step_runs_it_again(h: Harness, spec: str) -> None:
    action = "" if spec.startswith("write") else "\n    run: echo x >> count; echo hi > out.txt"
    text = (
        f"steps:\n  - id: sync\n    {spec}{action}\n"
        "  - id: next\n    needs: [sync]\n    run: echo x >> next\n"
    )
    run_id = crash_mid_step(h, text, started=["sync"])
    state = h.run(run_id)
    assert state.steps["sync"].status == "succeeded"
    assert (h.workspace / "out.txt").read_text().strip() == "hi"
    assert h.count("count") == (0 if spec.startswith("write") else 1)
    assert h.count("next") == 1
    events = h.events(run_id)
    assert [e.key for e in of_kind(events, StepStarted, "sync")] == [
        idempotency_key(run_id, "sync", 1),
        idempotency_key(run_id, "sync", 2),
    ]
    probes = of_kind(events, StepProbeStarted, "sync")
    # probed even without checks: the probe is where leftover processes are settled
    assert [p.reason for p in probes] == ["unknown_outcome"]
    assert not of_kind(events, StepEscalated)
    assert_consistent(h, run_id)


@pytest.mark.parametrize(
    "spec",
    [
        "irreversible: true\n    verify: [{file_exists: out.txt}]",
        "verify: [{file_exists: out.txt}]",
        "idempotent: false\n    verify: [{file_exists: out.txt}]",
        "irreversible: true",
    ],
    ids=["irreversible", "not-marked-idempotent", "not-idempotent", "irreversible-unchecked"],
)
def test_an_unknown_outcome_of_an_unsafe_step_is_escalated_not_rerun(h: Harness, spec: str) -> None:
    text = (
        f"steps:\n  - id: charge\n    {spec}\n    run: echo x >> count; touch out.txt\n"
        "  - id: email\n    needs: [charge]\n    run: echo x >> email\n"
        "  - id: other\n    run: echo x >> other\n"
    )
    run_id = crash_mid_step(h, text, started=["charge"])
    state = h.run(run_id)
    st = state.steps["charge"]
    assert st.status == "escalated" and st.dead_lettered
    assert st.reason is not None and "check by hand" in st.reason
    assert state.finished == "needs_human"
    assert h.store.run(run_id).status == "needs_human"
    assert h.count("count") == 0 and h.count("email") == 0
    assert h.count("other") == 1  # an independent branch goes on
    events = h.events(run_id)
    assert len(of_kind(events, StepStarted, "charge")) == 1
    [escalated] = of_kind(events, StepEscalated)
    probes = of_kind(events, StepProbed, "charge")
    # probed even without checks: its leftover processes are settled first
    assert [(p.reason, p.passed, p.leftovers) for p in probes] == [
        ("unknown_outcome", False, "none")
    ]
    if "verify" in spec:
        assert "its verify checks did not pass" in escalated.reason
    else:
        assert "it has no verify checks" in escalated.reason

    # a human checked: it did happen, so skip it, and what depends on it goes on
    request_decision(h.store, run_id, "skip", "charge", "charged, checked by hand")
    state = h.run(run_id)
    assert state.steps["charge"].status == "skipped"
    assert h.count("count") == 0 and h.count("email") == 1
    assert state.finished == "succeeded"
    assert_consistent(h, run_id)


def test_an_escalated_step_can_be_retried_by_a_human(h: Harness) -> None:
    run_id = crash_mid_step(
        h,
        """
        steps:
          - id: charge
            irreversible: true
            run: echo x >> count; touch out.txt
            verify: [{file_exists: out.txt}]
          - id: email
            needs: [charge]
            run: echo x >> email
        """,
        started=["charge"],
    )
    assert h.run(run_id).steps["charge"].status == "escalated"
    request_decision(h.store, run_id, "retry", "charge", "it never happened")
    state = h.run(run_id)
    # an irreversible step asks before it runs again
    assert state.steps["charge"].status == "awaiting_approval"
    assert state.finished == "needs_human" and h.count("count") == 0
    [card] = inbox(h.store)
    assert (card.step, card.rule, card.action and card.action.command) == (
        "charge",
        "irreversible",
        "echo x >> count; touch out.txt",
    )
    submit_decision(h.store, card.ref, "approve", reason="checked the ledger")
    state = h.run(run_id)
    assert state.finished == "succeeded"
    assert [h.count("count"), h.count("email")] == [1, 1]
    assert state.steps["charge"].attempt == 2
    assert_consistent(h, run_id)


# --- snapshots -----------------------------------------------------------------------


def test_snapshots_plus_tail_equal_folding_every_event(h: Harness) -> None:
    mod = h.module(
        """
        def noop(ctx):
            return None
        """
    )
    lines = ["steps:"]
    for i in range(40):
        lines.append(f"  - id: s{i:02d}\n    python: {mod}:noop")
        if i:
            lines.append(f"    needs: [s{i - 1:02d}]")
    run_id = h.create("\n".join(lines) + "\n")
    state = h.run(run_id, snapshot_every=5)
    assert state.finished == "succeeded"
    events = h.events(run_id)
    assert len(events) > 80
    snap = h.store.snapshot(run_id)
    assert snap is not None
    assert 5 < snap.seq <= len(events)
    # the snapshot is the fold of the events up to it ...
    from_snapshot = RunState.from_snapshot(snap.state_json, plan=state.plan)
    assert from_snapshot.model_dump() == fold(events[: snap.seq]).model_dump()
    # ... and snapshot + tail is the fold of everything
    assert load_state(h.store, run_id).model_dump() == fold(events).model_dump()
