"""Delegation to child runs, through the real ``trestle`` executable and the real engine:
SQLite files, subprocesses, a driver killed with SIGKILL. No mocks.

Each plan hands work to a child plan (``delegate: plan:``); the child's commands leave
counter files, so "ran once" is read from the workspace, not from Trestle's record.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any, cast

import pytest

from test_cli import Cli, run_id_of
from trestle.core.errors import PlanError
from trestle.core.events import (
    BudgetExhausted,
    BudgetRaised,
    ChildRunEnded,
    ChildRunStarted,
    RunCreated,
    RunFinished,
    ShareAwaited,
)
from trestle.core.notices import notices_for
from trestle.formats.planfile import load_plan
from trestle.store import SqliteStore


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path, tmp_path / "t.db")


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def lines(root: Path, name: str) -> list[str]:
    path = root / name
    return path.read_text("utf-8").splitlines() if path.exists() else []


def events(cli: Cli, run_id: str) -> list[object]:
    store = SqliteStore(cli.store, create=False)
    try:
        return [stored.event for stored in store.events(run_id)]
    finally:
        store.close()


CHILD = """\
    steps:
      - id: note
        run: echo child >> note.txt
        verify:
          - file_contains: note.txt
            text: child
"""

PARENT = """\
    goal: hand the note to a child
    steps:
      - id: prepare
        run: echo prep >> prep.txt
      - id: research
        needs: [prepare]
        delegate:
          goal: write the note
          plan: child.yaml
        verify:
          - file_contains: note.txt
            text: child
      - id: after
        needs: [research]
        run: cat note.txt >> after.txt
"""


def test_a_child_does_the_step_and_the_tree_is_shown(cli: Cli) -> None:
    write(cli.dir, "child.yaml", CHILD)
    write(cli.dir, "plan.yaml", PARENT)
    result = cli("run", "plan.yaml", "--no-live")
    assert result.returncode == 0, result.stdout + result.stderr
    root = run_id_of(result)
    child = f"{root}.research.1"
    assert lines(cli.dir, "note.txt") == ["child"]
    assert lines(cli.dir, "after.txt") == ["child"]
    # the child's own progress is shown under its place in the tree, as it happens
    said = result.stdout.splitlines()
    child_lines = [line for line in said if line.startswith("  research.1 | ")]
    assert "  research.1 | start    note (attempt 1)" in child_lines
    assert said.index(child_lines[-1]) < said.index("done     research (attempt 1)")

    first = events(cli, child)[0]
    assert isinstance(first, RunCreated) and first.parent is not None
    assert (first.parent.parent, first.parent.root, first.parent.path) == (
        root,
        root,
        ("research#1",),
    )
    assert first.plan.escalate is False  # its failures are the parent's to handle
    parent_events = events(cli, root)
    started = [e for e in parent_events if isinstance(e, ChildRunStarted)]
    ended = [e for e in parent_events if isinstance(e, ChildRunEnded)]
    assert [(e.child, e.resumed) for e in started] == [(child, False)]
    assert [(e.child, e.status) for e in ended] == [(child, "succeeded")]

    listed = cli.json("runs")
    assert [(r["run_id"], r["parent"], r["root"]) for r in listed] == [
        (child, root, root),
        (root, None, None),
    ]
    table = cli("runs").stdout
    assert table.index(root) < table.index(f"└ {child}")  # the child under its root
    shown = cli.json("show", root)
    assert shown["tree"]["children"] == [{"run_id": child, "status": "succeeded", "depth": 1}]
    assert "research.1: succeeded" not in cli("show", root).stdout
    assert f"└ {child}  succeeded" in cli("show", root).stdout
    as_child = cli("show", "research.1")  # a tail of the child's id finds it
    assert f"a child of run {root} (its step 'research', round 1)" in as_child.stdout
    log = cli("log", root).stdout
    assert f"created child run {child}" in " ".join(log.split())


def test_a_child_shares_its_parents_group_unless_its_plan_names_one(cli: Cli) -> None:
    write(cli.dir, "child.yaml", CHILD)
    write(cli.dir, "own.yaml", "group: elsewhere\n" + textwrap.dedent(CHILD))
    parent = "group: team\n" + textwrap.dedent(PARENT)
    parent += "  - id: aside\n    delegate:\n      goal: note it apart\n      plan: own.yaml\n"
    write(cli.dir, "plan.yaml", parent)
    result = cli("run", "plan.yaml", "--no-live")
    assert result.returncode == 0, result.stdout + result.stderr
    root = run_id_of(result)
    groups = {}
    for sid in ("research", "aside"):
        first = events(cli, f"{root}.{sid}.1")[0]
        assert isinstance(first, RunCreated)
        groups[sid] = first.plan.group
    assert groups == {"research": "team", "aside": "elsewhere"}


FAILING_CHILD = """\
    steps:
      - id: try
        run: echo try >> tries.txt; exit 3
"""


def test_a_failed_child_follows_the_parents_retries_then_its_dead_letter(cli: Cli) -> None:
    write(cli.dir, "child.yaml", FAILING_CHILD)
    write(
        cli.dir,
        "plan.yaml",
        """\
        steps:
          - id: research
            retries: 1
            backoff: {initial: 0.05}
            delegate:
              goal: try
              plan: child.yaml
        """,
    )
    result = cli("run", "plan.yaml", "--no-live")
    assert result.returncode == 3, result.stdout + result.stderr  # dead letter: needs human
    root = run_id_of(result)
    assert lines(cli.dir, "tries.txt") == ["try", "try"]  # one child per attempt
    listed = {r["run_id"]: r["status"] for r in cli.json("runs")}
    assert listed == {
        root: "needs_human",
        f"{root}.research.1": "partial",  # the child did not dead-letter its step
        f"{root}.research.2": "partial",
    }
    report = cli.json("show", root)
    (step,) = report["steps"]
    assert step["dead_lettered"] and step["failed_attempts"] == 2
    assert f"child run {root}.research.2 ended partial" in step["error"]
    assert "try: failed" in step["output_tail"]


APPROVING_CHILD = """\
    steps:
      - id: ship
        run: echo shipped >> shipped.txt
        approval: confirm
"""


def test_a_childs_approval_waits_in_the_inbox_and_the_root_resumes(cli: Cli) -> None:
    write(cli.dir, "child.yaml", APPROVING_CHILD)
    write(
        cli.dir,
        "plan.yaml",
        """\
        steps:
          - id: release
            delegate:
              goal: ship it
              plan: child.yaml
          - id: other
            run: echo other >> other.txt
        """,
    )
    result = cli("run", "plan.yaml", "--no-live")
    assert result.returncode == 3, result.stdout + result.stderr
    root = run_id_of(result)
    child = f"{root}.release.1"
    assert lines(cli.dir, "other.txt") == ["other"]  # the independent step went on
    assert lines(cli.dir, "shipped.txt") == []
    said = " ".join(result.stdout.split())
    assert f"waits on its child run {child}" in said
    assert f"trestle resume {root}" in said

    health = cli("health", "--json")
    assert health.returncode == 1  # runs wait on a human
    (waits,) = [h for h in json.loads(health.stdout) if h["run_id"] == root]
    assert [(w["kind"], w["step"]) for w in waits["waiting"]] == [("child", "release")]

    (card,) = cli.json("inbox")
    assert card["run_id"] == child and card["tree"] == f"{root} > release#1"
    assert "in tree" in cli("inbox").stdout
    approved = cli("approve", f"{child}.1")
    assert approved.returncode == 0, approved.stderr
    # the root is what resumes: it finds the child again (as the report said)
    assert f"when the run is resumed: `trestle resume {root}`" in approved.stdout
    # the child alone is not: it would run its steps beside the root's
    recorded = len(events(cli, child))
    alone = cli("resume", child, "--no-live")
    assert alone.returncode == 2, alone.stdout + alone.stderr
    assert f"is delegated from run {root!r}" in " ".join(alone.stderr.split())
    assert f"`trestle resume {root}`; nothing was recorded" in " ".join(alone.stderr.split())
    assert len(events(cli, child)) == recorded

    resumed = cli("resume", root, "--no-live")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert lines(cli.dir, "shipped.txt") == ["shipped"]
    assert lines(cli.dir, "other.txt") == ["other"]
    started = [e for e in events(cli, root) if isinstance(e, ChildRunStarted)]
    assert [(e.child, e.resumed) for e in started] == [(child, False), (child, True)]


def cost_child(cost: float, tag: str) -> str:
    return f"""\
    steps:
      - id: spend
        run: echo {tag} >> spent.txt; sleep 0.3
        cost: {cost}
"""


def test_children_carve_the_parents_budget_and_never_pass_it(cli: Cli) -> None:
    """Four children of $0.40 each under a hard $1.00: two fit at once; the third
    waits until they release their shares (each spent $0.30) and then fits; the
    fourth can never fit beside what was spent, so the run stops; what the children
    spent is counted."""
    for tag in "abcd":
        write(cli.dir, f"{tag}.yaml", cost_child(0.3, tag))
    steps = "".join(
        f"""
          - id: child-{tag}
            delegate:
              goal: spend {tag}
              plan: {tag}.yaml
              budget: {{cost: {{hard: 0.4}}}}
        """
        for tag in "abcd"
    )
    write(cli.dir, "plan.yaml", "budget:\n  cost: {hard: 1.0}\nsteps:" + textwrap.dedent(steps))
    result = cli("run", "plan.yaml", "--no-live")
    assert result.returncode == 6, result.stdout + result.stderr  # a hard budget stop
    root = run_id_of(result)
    ran = lines(cli.dir, "spent.txt")
    assert sorted(ran[:2]) == ["a", "b"] and ran[2:] == ["c"]
    said = " ".join(result.stdout.split())
    assert "waits child-c: its child's share would spend $1.20 of $1.00" in said, said
    assert "while 'child-a', 'child-b' hold theirs; it starts once they release them" in said
    recorded = events(cli, root)
    awaited = [e for e in recorded if isinstance(e, ShareAwaited)]
    assert [(e.step, e.dimension) for e in awaited] == [("child-c", "cost"), ("child-d", "cost")]
    ended = [e for e in recorded if isinstance(e, ChildRunEnded)]
    assert [e.spent for e in ended] == [{"steps": 1.0, "cost": 0.3}] * 3
    report = cli.json("show", root)
    assert report["status"] == "stopped"
    assert "would spend $1.30 of $1.00 (hard cost limit)" in " ".join(report["to_check"])


def test_a_child_stopped_by_its_share_cannot_have_it_raised_on_its_own(cli: Cli) -> None:
    """Raising a child's carved share would let the tree pass its root's limit: the
    report, the live line and ``trestle health`` say so instead of printing a raise, no
    notice asks a human to raise it, and ``trestle budget --add`` refuses."""
    write(
        cli.dir,
        "child.yaml",
        cost_child(0.3, "a") + "      - id: more\n        needs: [spend]\n"
        "        run: echo more >> spent.txt\n        cost: 0.3\n",
    )
    plan = """\
        budget:
          cost: {hard: 1.0}
        steps:
          - id: spend
            delegate:
              goal: spend twice
              plan: child.yaml
              budget: {cost: {hard: 0.4}}
        """
    write(cli.dir, "plan.yaml", plan)
    result = cli("run", "plan.yaml", "--no-live")
    root = run_id_of(result)
    child = f"{root}.spend.1"
    assert lines(cli.dir, "spent.txt") == ["a"]  # the second step would pass the share
    [live] = [line for line in result.stdout.splitlines() if "STOPPED" in line]
    assert f"carved from its parent run {root}'s" in live and "trestle budget" not in live
    health = cli("health")
    assert f"trestle budget {child}" not in health.stdout, health.stdout
    [stop] = [e for e in events(cli, child) if isinstance(e, BudgetExhausted)]
    assert stop.carved_from == root
    assert notices_for(child, 1, stop) == []  # the parent's dead letter raises one
    shown = cli.json("show", child)
    assert shown["status"] == "stopped"
    said = " ".join(shown["to_check"])
    assert f"carved from its parent run {root}'s (for step 'spend')" in said
    assert "trestle budget" not in said  # no raise is offered
    raised = cli("budget", child, "--add", "cost=1")
    assert raised.returncode == 2, raised.stdout + raised.stderr
    assert f"run {child!r} cannot have its budget raised: its budget is a share" in " ".join(
        raised.stderr.split()
    )
    assert lines(cli.dir, "spent.txt") == ["a"]
    assert not any(isinstance(e, BudgetRaised) for e in events(cli, child))


def test_a_plan_that_limits_a_dimension_needs_it_carved_for_each_child(tmp_path: Path) -> None:
    write(tmp_path, "child.yaml", CHILD)
    plan = write(
        tmp_path,
        "plan.yaml",
        """\
        budget:
          tokens: {hard: 1000}
        steps:
          - id: research
            delegate:
              goal: note
              plan: child.yaml
        """,
    )
    with pytest.raises(PlanError, match="delegates without a hard tokens limit"):
        load_plan(plan)


def test_fan_out_is_capped_at_once_and_in_all(cli: Cli) -> None:
    for tag in "abcde":
        write(cli.dir, f"{tag}.yaml", cost_child(0.0, tag).replace("sleep 0.3", "sleep 0.4"))
    steps = "".join(
        f"""
          - id: child-{tag}
            optional: true
            delegate: {{goal: "work {tag}", plan: {tag}.yaml}}
        """
        for tag in "abcde"
    )
    head = "child_parallelism: 2\nmax_children: 4\nsteps:"
    write(cli.dir, "plan.yaml", head + textwrap.dedent(steps))
    result = cli("run", "plan.yaml", "--no-live")
    root = run_id_of(result)
    assert sorted(lines(cli.dir, "spent.txt")) == ["a", "b", "c", "d"]
    report = cli.json("show", root)
    failed = [s for s in report["steps"] if s["category"] == "failed"]
    assert [s["id"] for s in failed] == ["child-e"]
    assert "the plan allows 4 (max_children)" in failed[0]["reason"]
    # never more than two children alive at once, by their own records
    spans = []
    for row in cli.json("runs"):
        if row["parent"] == root:
            recorded = events(cli, row["run_id"])
            created, finished = recorded[0], recorded[-1]
            assert isinstance(created, RunCreated) and isinstance(finished, RunFinished)
            spans.append((created.at, finished.at))
    assert len(spans) == 4
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most == 2


def _under_src(cli: Cli, steps: str) -> None:
    """``plan.yaml``: a parent that may write only ``src/**`` and ``steps`` (YAML, at
    the steps' indentation), delegating to ``child.yaml``, which writes ``docs/x.txt``."""
    write(cli.dir, "child.yaml", "steps:\n  - id: w\n    write: {path: docs/x.txt, content: x}\n")
    parent = 'policy:\n  scope:\n    write_paths: ["src/**"]\nsteps:\n'
    write(cli.dir, "plan.yaml", parent + textwrap.indent(textwrap.dedent(steps), "  "))


def test_a_child_cannot_reach_beyond_its_parents_scope(cli: Cli) -> None:
    _under_src(
        cli,
        """\
        - id: wide
          delegate: {goal: wide, plan: child.yaml, scope: ["docs/**"]}
          optional: true
        - id: narrow
          delegate: {goal: narrow, plan: child.yaml, scope: ["src/a/**"]}
          optional: true
        """,
    )
    result = cli("run", "plan.yaml", "--no-live")
    root = run_id_of(result)
    report = {s["id"]: s for s in cli.json("show", root)["steps"]}
    assert (
        "scope 'docs/**', which is not within the parent's ['src/**']" in (report["wide"]["error"])
    )
    assert not (cli.dir / "docs").exists()
    # the child that may write only under src/a asks a human before writing docs/x.txt
    (card,) = cli.json("inbox")
    assert card["run_id"] == f"{root}.narrow.1"
    assert card["tier"] == "confirm" and "outside write_paths" in card["why"]


def test_a_child_is_held_to_its_scope_under_the_operators_scope_too(cli: Cli) -> None:
    # the operator's trestle.toml wins over the plan wherever it sets a field, so its
    # write_paths widened the child's again: given notes/**, it wrote src/ unasked
    operator = cli.dir / "trestle.toml"
    operator.write_text('[policy.scope]\nwrite_paths = ["notes/**", "src/**"]\n')
    accepted = hashlib.sha256(operator.read_bytes()).hexdigest()
    write(cli.dir, "child.yaml", "steps:\n  - id: w\n    write: {path: src/x.py, content: x}\n")
    write(
        cli.dir,
        "plan.yaml",
        "steps:\n  - id: notes\n    delegate: {goal: notes, plan: child.yaml, scope: [notes/**]}\n",
    )
    result = cli("run", "plan.yaml", "--no-live", "--accept-policy", accepted)
    assert result.returncode == 3, result.stdout + result.stderr
    assert not (cli.dir / "src").exists()
    (card,) = cli.json("inbox")
    assert card["run_id"] == f"{run_id_of(result)}.notes.1"
    assert "outside write_paths ['notes/**']" in card["why"]


GRANDCHILD = """\
    steps:
      - id: slow
        run: while [ ! -f go ]; do sleep 0.05; done; echo done >> done.txt
        timeout: 120
        idempotent: true
        verify:
          - file_contains: done.txt
            text: done
"""


def test_a_tree_killed_in_a_grandchild_resumes_from_the_root_without_repeating(
    cli: Cli,
) -> None:
    write(cli.dir, "grandchild.yaml", GRANDCHILD)
    write(
        cli.dir,
        "child.yaml",
        """\
        steps:
          - id: once
            run: echo once >> once.txt
          - id: deeper
            needs: [once]
            delegate: {goal: deeper, plan: grandchild.yaml}
        """,
    )
    write(
        cli.dir,
        "plan.yaml",
        """\
        steps:
          - id: first
            run: echo first >> first.txt
          - id: down
            needs: [first]
            delegate: {goal: down, plan: child.yaml}
        """,
    )
    driver = subprocess.Popen(
        cli.argv("run", "plan.yaml", "--no-live"),
        cwd=cli.dir,
        env=cli.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the driver alone is killed, as an OOM kill would
    )
    assert driver.stdout is not None
    root = driver.stdout.readline().split()[1]
    grandchild = f"{root}.down.1.deeper.1"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # kill it while the grandchild's step runs
        if cli.store.exists() and any(
            r["run_id"] == grandchild and r["summary"].get("running") for r in cli.json("runs")
        ):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the grandchild never started its step")
    os.kill(driver.pid, signal.SIGKILL)
    driver.communicate(timeout=30)
    # the step ran until the kill (it waits for go: a loaded machine's poll of `runs`
    # missed a step of two seconds), and goes on once resumed
    (cli.dir / "go").touch()

    resumed = cli("resume", root, "--no-live")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert lines(cli.dir, "first.txt") == ["first"]
    assert lines(cli.dir, "once.txt") == ["once"]
    assert lines(cli.dir, "done.txt") == ["done"]
    statuses = {r["run_id"]: r["status"] for r in cli.json("runs")}
    assert statuses == {
        root: "succeeded",
        f"{root}.down.1": "succeeded",
        grandchild: "succeeded",
    }
    # each level found its child again rather than making another
    for run, child in ((root, f"{root}.down.1"), (f"{root}.down.1", grandchild)):
        started = [e for e in events(cli, run) if isinstance(e, ChildRunStarted)]
        assert [(e.child, e.resumed) for e in started] == [(child, False), (child, True)]


def test_a_child_killed_mid_step_is_decided_by_following_what_trestle_prints(
    cli: Cli,
) -> None:
    """The driver alone is killed while the child's side effect runs. Then an operator
    does exactly what Trestle prints, from the root's report down to the child's, and
    the side effect happens once."""
    write(
        cli.dir,
        "child.yaml",
        """\
        steps:
          - id: slow
            run: sleep 30; echo once >> side.txt
            verify:
              - file_contains: side.txt
                text: once
        """,
    )
    write(
        cli.dir,
        "plan.yaml",
        """\
        steps:
          - id: down
            delegate: {goal: do the slow thing, plan: child.yaml}
          - id: after
            needs: [down]
            run: cat side.txt >> after.txt
        """,
    )
    driver = subprocess.Popen(
        cli.argv("run", "plan.yaml", "--no-live"),
        cwd=cli.dir,
        env=cli.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the driver alone is killed, as an OOM kill would
    )
    assert driver.stdout is not None
    root = driver.stdout.readline().split()[1]
    child = f"{root}.down.1"
    deadline = time.monotonic() + 30
    while not any(
        r["run_id"] == child and r["summary"].get("running")
        for r in (cli.json("runs") if cli.store.exists() else [])
    ):
        assert time.monotonic() < deadline, "the child never started its step"
        time.sleep(0.05)
    os.kill(driver.pid, signal.SIGKILL)
    driver.communicate(timeout=30)

    resumed = cli("resume", root, "--no-live")
    assert resumed.returncode == 3, resumed.stdout + resumed.stderr
    said = " ".join(resumed.stdout.split())
    told = f"with `trestle show {child}`, then `trestle resume {root}`"
    assert told in said
    shown = " ".join(cli("show", child).stdout.split())
    # the child's step may or may not have acted: its report names both decisions
    retry = re.search(r"if not: `(trestle retry [^`]+)`", shown)
    assert retry is not None, shown
    decided = cli(*retry.group(1).split()[1:])
    assert decided.returncode == 0, decided.stdout + decided.stderr
    finished = cli("resume", root, "--no-live")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert lines(cli.dir, "side.txt") == ["once"]
    assert lines(cli.dir, "after.txt") == ["once"]


def test_cancel_stops_the_whole_subtree(cli: Cli) -> None:
    write(
        cli.dir, "child.yaml", "steps:\n  - id: long\n    run: sleep 37.25; echo late >> late.txt\n"
    )
    write(
        cli.dir, "plan.yaml", "steps:\n  - id: down\n    delegate: {goal: down, plan: child.yaml}\n"
    )
    driver = subprocess.Popen(
        cli.argv("run", "plan.yaml", "--no-live"),
        cwd=cli.dir,
        env=cli.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert driver.stdout is not None
    root = driver.stdout.readline().split()[1]
    child = f"{root}.down.1"
    deadline = time.monotonic() + 30
    while not any(r["run_id"] == child and r["summary"].get("running") for r in cli.json("runs")):
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    cancelled = cli("cancel", root, "--reason", "wrong branch")
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert f"child run {child} cancelled" in cancelled.stdout
    driver.communicate(timeout=60)
    statuses = {r["run_id"]: r["status"] for r in cli.json("runs")}
    assert statuses == {root: "cancelled", child: "cancelled"}
    assert lines(cli.dir, "late.txt") == []
    time.sleep(0.2)
    assert not any("sleep 37.25" in _cmdline(pid) for pid in _pids())  # nothing left behind


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_delegated_plan_files_are_read_once_and_their_problems_named(tmp_path: Path) -> None:
    write(tmp_path, "child.yaml", CHILD)
    plan = load_plan(write(tmp_path, "plan.yaml", PARENT))
    child = plan.step("research").delegate
    assert child is not None and child.plan is not None
    assert child.plan.steps[0].id == "note"  # recorded with the parent: never read again

    write(tmp_path, "self.yaml", "steps:\n  - id: a\n    delegate: {goal: g, plan: self.yaml}\n")
    with pytest.raises(PlanError, match=r"self\.yaml:3: .*delegated to from inside itself"):
        load_plan(tmp_path / "self.yaml")
    write(tmp_path, "gone.yaml", "steps:\n  - id: a\n    delegate: {goal: g, plan: nope.yaml}\n")
    with pytest.raises(PlanError, match=r"gone\.yaml:3: .*nope\.yaml' does not exist"):
        load_plan(tmp_path / "gone.yaml")
    write(tmp_path, "bad.yaml", "steps:\n  - id: b\n    retries: many\n    run: 'true'\n")
    write(tmp_path, "uses.yaml", "steps:\n  - id: a\n    delegate: {goal: g, plan: bad.yaml}\n")
    with pytest.raises(PlanError, match=r"bad\.yaml:3: "):
        load_plan(tmp_path / "uses.yaml")
    # special files and names no file system takes: one message each, naming the line
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    for name, said in [
        ("fifo", "is not a regular file"),
        ("/dev/zero", "is not a regular file"),
        ("x" * 5000, "File name too long"),
        ("loop1", "Symlink loop"),
    ]:
        write(tmp_path, "odd.yaml", f"steps:\n  - id: a\n    delegate: {{goal: g, plan: {name}}}\n")
        with pytest.raises(PlanError) as raised:
            load_plan(tmp_path / "odd.yaml")
        assert len(raised.value.problems) == 1, raised.value.problems
        assert said in raised.value.problems[0] and "odd.yaml:3:" in str(raised.value)
    both = "steps:\n  - id: a\n    delegate: {goal: g, plan: {steps: [{id: x, run: 'true'}]}, "
    write(tmp_path, "both.yaml", both + "agent: {model: m}}\n")
    with pytest.raises(PlanError, match="give the child a 'plan' or an 'agent'"):
        load_plan(tmp_path / "both.yaml")


def test_the_cli_names_a_bad_delegation_with_the_plan_error_code(cli: Cli) -> None:
    write(cli.dir, "plan.yaml", "steps:\n  - id: a\n    delegate: {goal: g, plan: nope.yaml}\n")
    result = cli("run", "plan.yaml")
    assert result.returncode == 2
    assert "plan.yaml:3: " in result.stderr and "nope.yaml" in result.stderr
    assert json.loads(cli("runs", "--json").stdout or "[]") == []


def test_the_delegation_example_runs_as_the_demo_runs_it(cli: Cli) -> None:
    example = Path(__file__).resolve().parents[1] / "examples/delegation/plan.yaml"
    workspace = cli.dir / "release"
    workspace.mkdir()
    result = cli("run", example, "--workspace", workspace, "--no-prompt", "--no-live")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "## Changes" in (workspace / "dist/RELEASE.txt").read_text("utf-8")
    assert len([r for r in cli.json("runs") if r["parent"]]) == 2


def test_a_scope_that_climbs_out_with_dotdot_is_refused_at_load(cli: Cli) -> None:
    # `src/../docs/**` read as inside `src/**` to the check of its text against the
    # parent's writes: the plan is refused, naming the glob, before anything is recorded
    _under_src(
        cli, '- {id: climb, delegate: {goal: c, plan: child.yaml, scope: ["src/../docs/**"]}}\n'
    )
    result = cli("run", "plan.yaml", "--no-live")
    assert result.returncode == 2, result.stdout + result.stderr
    said = " ".join(result.stderr.split())
    assert "plan.yaml" in said and "scope 'src/../docs/**' climbs out with '..'" in said
    assert not cli.store.exists() or not SqliteStore(cli.store).runs()


def test_an_agent_parents_scope_is_held_within_the_operators_for_its_children() -> None:
    # an agent run's --scope became its child's operator write_paths whole: a child
    # wrote notes/ unasked where the operator's src/** asked its parent first
    from types import SimpleNamespace

    from trestle.core import tree
    from trestle.core.policy import ActionFacts, Policy, classify

    operator = Policy.model_validate({"scope": {"write_paths": ["src/**"]}})

    def parent(scope: tuple[str, ...]) -> Any:
        return SimpleNamespace(
            agent=SimpleNamespace(scope=scope),
            plan=SimpleNamespace(policy=None),
            operator_policy=operator,
        )

    outside = parent(("notes/**",))
    for given in ((), ("notes/a.md",)):
        with pytest.raises(tree.DelegationError, match="may write nothing unasked"):
            tree._narrowed_scope(outside, cast(Any, SimpleNamespace(scope=given)), "s1")
    inside = parent(("src/app/**", "notes/**"))
    scope = tree._narrowed_scope(inside, cast(Any, SimpleNamespace(scope=())), "s1")
    assert scope == ("src/app/**",)
    child = tree._operator_policy(operator, scope)
    assert child is not None and child.scope.write_paths == ("src/app/**",)
    for path, tier in (("src/app/x.py", "log"), ("src/other.py", "confirm")):
        facts = ActionFacts(nature="write", name="write_file", paths=(path,))
        assert classify(facts, plan=None, operator=child, run_id="r", action_key="k").tier == tier
