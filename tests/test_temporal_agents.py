"""The coding agent on the Temporal engine, on the real dev server and real
``trestle worker`` processes: the bundled demo (with the step it delegates) ends as it
does on the local engine; a worker killed mid-step is replaced and no recorded model
or tool call is made twice; a long run continues as new and each turn is recorded
once."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter

import pytest

from temporal_helpers import (
    Workers,
    agent_args,
    assert_history_agrees,
    comparable,
    demo_repo,
    executions,
    wait_for,
)
from test_cli import Cli
from trestle.core.events import ModelCalled, ToolCallStarted
from trestle.store import SqliteStore

pytestmark = pytest.mark.slow
KILLED_READS = 150  # the worker dies about 50 turns in
LONG_TURNS = int(os.environ.get("TRESTLE_TEMPORAL_AGENT_TURNS", "200"))  # make soak: 2,000


def agent_run_id(printed: str) -> str:
    """``trestle agent`` prints ``run ID: GOAL`` first."""
    return printed.split("\n", 1)[0].removeprefix("run ").split(":", 1)[0]


def turns_recorded(store: SqliteStore, run_id: str) -> Counter[tuple[str, int, int]]:
    """How often each (step, round, turn) of the run's model calls was recorded."""
    return Counter(
        (s.event.step, s.event.round, s.event.turn)
        for s in store.events(run_id)
        if isinstance(s.event, ModelCalled)
    )


def test_the_demo_agent_run_ends_alike_on_both_engines(cli: Cli, address: str) -> None:
    workers = Workers(cli, address)
    try:
        workers.start()
        reports, codes = {}, {}
        for engine in ("local", "temporal"):
            repo, trajectory = demo_repo(cli.dir / engine)
            out = cli.dir / f"{engine}.json"
            flags = workers.flags() if engine == "temporal" else []
            result = workers.run(*agent_args(repo, trajectory, "--report-json", str(out), *flags))
            codes[engine] = result.returncode
            assert out.exists(), result.stdout + result.stderr
            reports_run = json.loads(out.read_text())["run_id"]
            reports[engine] = comparable(json.loads(out.read_text()))
            reports[engine]["slug.py"] = (repo / "textkit" / "slug.py").read_text()
        assert codes == {"local": 0, "temporal": 0}
        assert reports["temporal"] == reports["local"]
        assert_history_agrees(workers, reports_run)
    finally:
        workers.stop()


def test_a_worker_killed_mid_agent_step_is_replaced_and_no_call_is_made_twice(
    cli: Cli, address: str
) -> None:
    workers = Workers(cli, address, TRESTLE_TEMPORAL_HEARTBEAT="2")
    try:
        first = workers.start()
        repo, trajectory = demo_repo(cli.dir, reads=KILLED_READS)
        following = workers.start_run(
            *agent_args(repo, trajectory, "--max-turns", "1000", *workers.flags())
        )
        store = SqliteStore(cli.store)

        def far_into_understand() -> bool:
            runs = store.runs()
            return bool(runs) and runs[0].last_seq >= 200  # about 50 turns

        wait_for(far_into_understand, what="50 turns")
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        workers.start()
        out, err = following.communicate(timeout=300)
        assert following.returncode == 0, out + err
        run_id = store.runs()[-1].run_id
        kinds = [s.event.kind for s in store.events(run_id)]
        assert "step_attempt_lost" in kinds
        recorded = turns_recorded(store, run_id)
        assert set(recorded.values()) == {1}  # every turn once: the re-run replayed them
        assert sum(1 for step, _, _ in recorded if step == "understand") == KILLED_READS + 4
        calls = Counter(
            s.event.key for s in store.events(run_id) if isinstance(s.event, ToolCallStarted)
        )
        assert set(calls.values()) == {1}  # no tool call was started twice
    finally:
        workers.stop()


def test_a_long_agent_run_continues_as_new_and_records_each_turn_once(
    cli: Cli, address: str
) -> None:
    # a history limit of twice the turns: the run continues as new at least once
    workers = Workers(cli, address, TRESTLE_TEMPORAL_HISTORY_LIMIT=str(2 * LONG_TURNS))
    try:
        workers.start()
        repo, trajectory = demo_repo(cli.dir, reads=LONG_TURNS)
        result = workers.run(
            *agent_args(repo, trajectory, "--max-turns", str(LONG_TURNS + 100), *workers.flags()),
            timeout=1200,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr
        run_id = agent_run_id(result.stdout)
        store = SqliteStore(cli.store)
        recorded = turns_recorded(store, run_id)
        assert set(recorded.values()) == {1}
        assert sum(1 for step, _, _ in recorded if step == "understand") == LONG_TURNS + 4
        assert executions(workers.address, run_id, cli.store.parent / "blobs") >= 2
        assert "INTERRUPTED by continue-as-new" in result.stdout
    finally:
        workers.stop()


def test_tell_and_approve_reach_an_agent_run_on_temporal(cli: Cli, address: str) -> None:
    """``trestle tell`` while the plan waits for review: the workflow, woken by the
    request's signal, plans the requirement at once (no `resume`); the approval then
    lets the run go on by itself."""
    workers = Workers(cli, address)
    try:
        workers.start()
        repo, trajectory = demo_repo(cli.dir)
        args = [a for a in agent_args(repo, trajectory, *workers.flags()) if a != "--auto-plan"]
        waiting = workers.run(*args)
        assert waiting.returncode == 3, waiting.stdout + waiting.stderr
        run_id = agent_run_id(waiting.stdout)
        told = workers.run("tell", run_id, "also strip leading dashes")
        assert told.returncode == 0, told.stdout + told.stderr
        assert "queued" not in told.stdout  # its driver took it while the command waited
        store = SqliteStore(cli.store)
        kinds = [s.event.kind for s in store.events(run_id)]
        assert "requirement_added" in kinds and "plan_extended" in kinds
        # a change of the plan is judged by the workflow as the local engine judges it
        dropped = workers.run("tell", run_id, "--drop", "cover-accents")
        assert dropped.returncode == 0, dropped.stdout + dropped.stderr
        assert " ".join(dropped.stdout.split()) == (
            f"run {run_id} dropped 'cover-accents': it will not run"
        )
        assert workers.run("approve", f"{run_id}.1").returncode == 0
        wait_for(lambda: store.run(run_id).status == "needs_human", what="the run to settle")
        report = workers.run("show", run_id)
        # the recording has no answers for the told step: it fails, the rest ran
        assert "'revise-1' failed after 2 attempts" in " ".join(report.stdout.split())
        [changed] = [s.event for s in store.events(run_id) if s.event.kind == "plan_step_changed"]
        assert changed.model_dump(include={"step", "change"}) == {
            "step": "cover-accents",
            "change": "drop",
        }
        assert not any(
            s.event.kind == "step_started" and getattr(s.event, "step", "") == "cover-accents"
            for s in store.events(run_id)
        )
    finally:
        workers.stop()


def test_an_approved_command_runs_alone_on_temporal_too(cli: Cli, address: str) -> None:
    """As on the local engine (``tests/test_tool_call_alone.py``): two agent steps side
    by side, each calling a command the operator's policy holds; approved, each waits on
    its worker for the workflow's grant, and neither runs beside the other."""
    from test_tool_call_alone import EVIL, agent_command, replayed_repo
    from trestle.core.events import AloneGranted, ToolCallEnded
    from trestle.lifecycle.approvals import inbox

    workers = Workers(cli, address)
    try:
        workers.start()
        repo, args = replayed_repo(cli.dir), agent_command(cli.dir, *workers.flags())
        waiting = workers.run(*args)
        assert waiting.returncode == 3, waiting.stdout + waiting.stderr
        run_id = agent_run_id(waiting.stdout)
        store = SqliteStore(cli.store)
        cards = inbox(store, run_id=run_id)
        assert sorted(c.step or "" for c in cards) == ["flip", "publish"]
        for card in cards:
            assert workers.run("approve", card.ref).returncode == 0

        def settled() -> bool:  # it waited for a human before: its status alone says nothing
            granted = [s for s in store.events(run_id) if isinstance(s.event, AloneGranted)]
            return len(granted) == 2 and store.run(run_id).status != "running"

        wait_for(settled, what="both calls granted, and the run to settle")
        events = [s.event for s in store.events(run_id)]
        assert "EVIL" not in (repo / "out.log").read_text()
        first, second = granted = [e.step for e in events if isinstance(e, AloneGranted)]
        assert sorted(granted) == ["flip", "publish"]
        ended = [e.step for e in events if isinstance(e, ToolCallEnded) and e.tool == "run_command"]
        assert ended == ([first, second] if first == "publish" else [first])
        assert (repo / "out.log").read_text() == ("GOOD\n" if first == "publish" else "")
        assert (repo / "payload").read_text() == EVIL
    finally:
        workers.stop()


def test_a_step_waiting_at_an_approved_call_is_granted_while_the_workflow_drains(
    cli: Cli, address: str
) -> None:
    """At its history limit a workflow starts nothing new and lets what runs end, then
    continues as new. A step waiting at an approved call is part of what runs, and only
    ends once its call ran: it is granted as ever (the draining drive stopped deciding,
    and waited on it for good)."""
    from temporal_helpers import NOTE_ONLY
    from test_tool_call_alone import DEPLOY, agent_command, replayed_repo
    from trestle.core.events import AloneGranted, StepAttemptEnded
    from trestle.lifecycle.approvals import inbox

    slow = [f"sh slow.sh {i}" for i in range(60)]  # flip's calls fill the history
    repo = replayed_repo(cli.dir, beside=slow, confirm=[DEPLOY], policy=NOTE_ONLY)
    (repo / "slow.sh").write_text("sleep 0.25\n")
    workers = Workers(cli, address, TRESTLE_TEMPORAL_HISTORY_LIMIT="520")
    try:
        workers.start()
        workers.start_run(*agent_command(cli.dir, *workers.flags()))
        wait_for(cli.store.exists, what="the store")
        store = SqliteStore(cli.store)
        wait_for(lambda: bool(inbox(store)), what="publish's card")
        (card,) = inbox(store)
        assert workers.run("approve", card.ref).returncode == 0  # while flip runs on
        run_id = card.run_id
        wait_for(lambda: store.run(run_id).status == "succeeded", what="the run to end")
        events = [s.event for s in store.events(run_id)]
        (granted,) = [i for i, e in enumerate(events) if isinstance(e, AloneGranted)]
        flip_ended = [
            i for i, e in enumerate(events) if isinstance(e, StepAttemptEnded) and e.step == "flip"
        ]
        assert flip_ended and flip_ended[0] < granted  # it waited for flip, then ran
        assert (repo / "out.log").read_text() == "GOOD\n"
        assert executions(address, run_id, cli.store.parent / "blobs") >= 2  # continued as new
    finally:
        workers.stop()


def test_a_delegated_childs_approved_command_holds_its_parent_on_temporal_too(
    cli: Cli, address: str
) -> None:
    """As on the local engine (``tests/test_tool_call_alone.py``): the delegating step's
    attempt, on a worker, holds the workflow's run for its child's approved command,
    through sealed updates; the parent's ``flip`` ends first, so the child's call finds
    the payload changed and is asked again. Nothing of what flip wrote ran."""
    from agent_helpers import GOAL
    from test_tool_call_alone import (
        CHILD_PLAN,
        DEPLOY,
        FINDINGS,
        FLIP,
        TREE_PLAN,
        assert_the_child_held_its_parent,
        said,
        tree_workspace,
    )
    from trestle.demo import write_sample
    from trestle.formats.policyfile import read_policy_file
    from trestle.lifecycle.approvals import inbox
    from trestle.trust.policy_trust import accept

    repo = write_sample(cli.dir / "repo")
    tree_workspace(repo, flip_after=6)  # long enough for the child to reach its call
    (repo / "trestle.toml").write_text(  # the operator's, as the local test's Policy
        f"[policy]\nconfirm_commands = {json.dumps([DEPLOY])}\n\n"
        '[[policy.rules]]\nname = "flag"\ntier = "confirm"\npaths = ["flag.txt"]\n'
    )
    accept(read_policy_file(repo / "trestle.toml"))
    conversations = {
        "understand#1": [said(FINDINGS)],
        "plan#1": [said(TREE_PLAN)],
        "flip#1": [said(path="flag.txt", content="go"), said(command=FLIP), said()],
        "deploy#1/understand#1": [said(FINDINGS)],
        "deploy#1/plan#1": [said(CHILD_PLAN)],
        "deploy#1/publish#1": [said(command=DEPLOY), said()],
    }
    trajectory = cli.dir / "tree.json"
    trajectory.write_text(
        json.dumps({"format": "trestle-trajectory/1", "conversations": conversations})
    )
    workers = Workers(cli, address)
    try:
        workers.start()
        args = ["agent", GOAL, "--repo", str(repo), "--model", f"replay:{trajectory}"]
        args += ["--test-command", "test -s payload", "--auto-plan", "--no-live", "--no-prompt"]
        waiting = workers.run(*args, *workers.flags())
        assert waiting.returncode == 3, waiting.stdout + waiting.stderr
        run_id = agent_run_id(waiting.stdout)
        store = SqliteStore(cli.store)
        cards = inbox(store)
        assert sorted(c.step or "" for c in cards) == ["flip", "publish"]  # the root's, the child's
        workers.stop()  # both decided before a worker takes either up: flip and deploy together
        for card in cards:
            assert workers.run("approve", card.ref).returncode == 0
        workers.start()
        resumed = workers.run("resume", run_id, "--no-live", "--no-prompt")
        assert resumed.returncode == 3, resumed.stdout + resumed.stderr

        assert_the_child_held_its_parent(store, run_id, repo)
    finally:
        workers.stop()
