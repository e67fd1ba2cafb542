"""`trestle diff RUN STEP`: each step's own changes, by default, and nobody else's.

Real runs through the console script (the harness of ``test_rewind``): a plan with no
``checkpoints`` key, steps one after another and side by side, edits by hand after the
run. A change made after a step's attempt (by a later step, or by hand) must never be
in its diff; one made while another step ran beside it is named apart, with that step.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from test_rewind import World, flat, without_index_lines
from trestle.formats.planfile import parse_plan

pytestmark = pytest.mark.usefixtures("unconfined")


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path)
    w.ws.mkdir()
    return w


SEQUENTIAL = """\
    workspace: ws
    steps:
      - id: first
        run: printf 'one\\n' > a.txt
      - id: second
        needs: [first]
        run: printf 'two\\n' >> a.txt && printf 'b\\n' > b.txt
      - id: third
        needs: [second]
        run: rm b.txt && printf 'c\\n' > c.txt
"""


def paths_in(diff: str) -> list[str]:
    return re.findall(r"^diff --git a/(\S+)", diff, re.M)


def test_by_default_every_attempt_has_checkpoints_and_its_own_diff(world: World) -> None:
    run_id = world.run(SEQUENTIAL)
    (world.ws / "a.txt").write_text("one\ntwo\nby hand\n")
    (world.ws / "mine.txt").write_text("written by hand after the run\n")

    listed = json.loads(world.ok("checkpoints", run_id, "--json"))
    first = world.cli("diff", run_id, "first")
    second = world.cli("diff", run_id, "second")
    third = world.cli("diff", run_id, "third")

    assert [(c["step"], c["when"]) for c in listed] == [
        (step, when) for step in ("first", "second", "third") for when in ("before", "after")
    ]
    assert all(isinstance(c["order"], int) for c in listed)
    assert [c["order"] for c in listed] == sorted(c["order"] for c in listed)
    for done in (first, second, third):
        assert done.returncode == 0 and done.stderr == "", done.stderr
    assert without_index_lines(first.stdout) == (
        "diff --git a/a.txt b/a.txt\nnew file mode 100644\n--- /dev/null\n+++ b/a.txt\n"
        "@@ -0,0 +1 @@\n+one\n"
    )
    assert paths_in(second.stdout) == ["a.txt", "b.txt"]
    assert "+two\n" in second.stdout and "by hand" not in second.stdout
    assert paths_in(third.stdout) == ["b.txt", "c.txt"]
    assert "mine.txt" not in first.stdout + second.stdout + third.stdout


def shadow_ref(world: World, step: str, when: str) -> str:
    """A shell test for a checkpoint of this run's ``step`` being taken (refs are loose
    files in the shadow store: nothing in it packs them)."""
    return f"ls {world.shadow}/refs/trestle/*/{step}/1/{when} >/dev/null 2>&1"


def test_a_change_made_beside_a_step_or_after_it_is_never_its_own(world: World) -> None:
    # 'quick' writes only once 'slow' has its checkpoint before, and 'slow' writes only
    # once 'quick' has its after: quick's change falls inside slow's window, and slow's
    # own change after quick's window, whatever order the two start in
    wait = "until {}; do sleep 0.05; done"
    plan = f"""\
        workspace: ws
        steps:
          - id: slow
            run: {wait.format(shadow_ref(world, "quick", "after"))}; printf 's\\n' > s.txt
          - id: quick
            run: {wait.format(shadow_ref(world, "slow", "before"))}; printf 'q\\n' > q.txt
          - id: later
            needs: [slow, quick]
            run: printf 'changed by later\\n' > s.txt && printf 'l\\n' > l.txt
    """
    run_id = world.run(plan)
    (world.ws / "q.txt").write_text("edited by hand\n")

    slow = world.cli("diff", run_id, "slow")
    quick = world.cli("diff", run_id, "quick")
    later = world.cli("diff", run_id, "later")

    assert slow.returncode == 0, slow.stderr
    assert paths_in(slow.stdout) == ["s.txt"]
    assert "+s\n" in slow.stdout and "changed by later" not in slow.stdout
    assert "left out: changed during attempt 1 of 'slow' while other steps ran too" in flat(
        slow.stderr
    )
    assert "  q.txt (or quick)\n" in slow.stderr
    # quick's window lies inside slow's: its change may be slow's, so it is not shown
    assert quick.returncode == 0, quick.stderr
    assert quick.stdout == ""
    assert "  q.txt (or slow)\n" in quick.stderr
    assert later.returncode == 0 and later.stderr == ""
    assert paths_in(later.stdout) == ["l.txt", "s.txt"]
    assert "edited by hand" not in slow.stdout + quick.stdout + later.stdout


def test_diff_and_rewind_of_an_earlier_attempt(world: World) -> None:
    run_id = world.run(
        """\
        workspace: ws
        steps:
          - id: flaky
            retries: 1
            backoff: {initial: 0}
            run: echo "try $TRESTLE_ATTEMPT" >> tries.txt && test "$TRESTLE_ATTEMPT" -gt 1
          - id: after
            needs: [flaky]
            run: echo done > done.txt
        """
    )

    latest = world.cli("diff", run_id, "flaky")
    first = world.cli("diff", run_id, "flaky", "--attempt", "1")
    missing = world.cli("diff", run_id, "flaky", "--attempt", "3")

    assert "+try 2\n" in latest.stdout and "+try 1\n" not in latest.stdout
    assert without_index_lines(first.stdout).endswith("@@ -0,0 +1 @@\n+try 1\n")
    assert missing.returncode == 2
    assert "step 'flaky' has no checkpoint before attempt 3 (it has one before attempts 1, 2)" in (
        flat(missing.stderr)
    )

    out = world.ok("rewind", run_id, "--to", "flaky", "--attempt", "2", "--yes")

    assert "rewind run" in out and "to before 'flaky' (attempt 2)" in flat(out)
    assert (world.ws / "tries.txt").read_text() == "try 1\n"
    assert not (world.ws / "done.txt").exists()


@pytest.mark.parametrize(
    ("written", "meant"), [("off", "off"), ("'off'", "off"), ("", "every_step")]
)
def test_checkpoints_off_can_be_written_bare(written: str, meant: str) -> None:
    # YAML reads a bare `off` as false; the plan's key means "off" all the same
    key = f"checkpoints: {written}\n" if written else ""
    plan = parse_plan(f"{key}steps:\n  - {{id: a, run: 'true'}}\n", source="plan.yaml")
    assert plan.checkpoints == meant


def test_a_step_that_has_not_started_is_said_to_have_no_checkpoint_yet(world: World) -> None:
    run_id = world.run(
        """\
        workspace: ws
        steps:
          - id: build
            run: printf 'built\\n' > out.txt
          - id: ship
            needs: [build]
            irreversible: true
            run: printf 'shipped\\n' >> out.txt
        """,
        expect=3,  # ship waits for its approval
    )

    for args in (("diff", run_id, "ship"), ("rewind", run_id, "--to", "ship", "--yes")):
        refused = world.cli(*args)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert flat(refused.stderr) == (
            f"error: run {run_id!r}: step 'ship' has not started, so it has no checkpoint yet"
        )
    assert (world.ws / "out.txt").read_text() == "built\n"
