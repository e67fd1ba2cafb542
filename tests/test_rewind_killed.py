"""A ``trestle rewind`` killed part-way, then what Trestle prints done.

A rewind keeps the workspace as it finds it (files written by hand included) as a
checkpoint, puts the files back, then records ``run_rewound``. Killed after it changed
files and before it recorded, the run still said ``succeeded``, ``trestle resume`` did
nothing on a workspace half put back, and running the rewind again kept the half-put-
back workspace under the first one's name: the only copy of the user's own file was
gone from every checkpoint. Now the rewind marks itself begun until it is recorded:
``trestle show`` warns, a resume is refused saying what to run, and the rewind run
again keeps what the first one kept. The CLI here is the real one, killed by SIGKILL
at the named moment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_rewind import World

pytestmark = pytest.mark.usefixtures("unconfined")

# the CLI with SIGKILL sent to itself at one moment of a rewind
KILLED_AT = """\
import os, signal, sys
moment = sys.argv.pop(1)
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
if moment == "before-record":  # every file put back, run_rewound not recorded
    import trestle.lifecycle.rewinding as rewinding
    rewinding.record = die
elif moment == "after-record":  # run_rewound recorded, the mark not yet deleted
    from trestle.workspace.shadow import ShadowRepo
    ShadowRepo.delete = die
else:  # the files to go deleted, none written back
    from trestle.workspace.shadow import ShadowRepo
    ShadowRepo._write_back = die
from trestle.cli.app import entry
sys.argv[0] = "trestle"
entry()
"""

PLAN = """\
    workspace: ws
    steps:
      - id: a
        write: {path: a.txt, content: "a\\n"}
      - id: b
        needs: [a]
        write: {path: b.txt, content: "b\\n"}
"""


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path)
    w.ws.mkdir()
    return w


def killed(world: World, moment: str, *args: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "TRESTLE_STORE"}
    env.update(TRESTLE_STORE=str(world.store), NO_COLOR="1")
    done = subprocess.run(
        [sys.executable, "-c", KILLED_AT, moment, *args],
        cwd=world.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode


def kept(world: World, run_id: str) -> list[str]:
    listed = json.loads(world.ok("checkpoints", run_id, "--json"))
    return [c["commit"] for c in listed if c["when"] == "kept"]


@pytest.mark.parametrize("moment", ["before-record", "after-delete"])
def test_a_rewind_cut_short_is_said_at_resume_and_finished_losing_nothing(
    world: World, moment: str
) -> None:
    run_id = world.run(PLAN)
    (world.ws / "mine.txt").write_text("my own work\n")  # in no checkpoint of the run
    assert killed(world, moment, "rewind", run_id, "--to", "b", "--yes") == -9
    assert not (world.ws / "b.txt").exists()  # half put back: b.txt went
    [first] = kept(world, run_id)

    shown = " ".join(world.ok("show", run_id).split())
    assert f"warning: a rewind of run '{run_id}' was cut short" in shown
    # the run had succeeded, and health lists runs not finished: it is listed for this
    health = world.cli("health", "--json")
    assert health.returncode == 1, health.stdout + health.stderr
    [listed] = json.loads(health.stdout)
    [waits] = listed["waiting"]
    assert (listed["run_id"], waits["kind"]) == (run_id, "rewind")
    assert "cut short before it recorded what it did" in waits["what"]
    assert waits["next"].startswith(f"run `trestle rewind {run_id} --to STEP` again")
    assert "cut short" in " ".join(world.cli("health").stdout.split())
    resumed = world.cli("resume", run_id, "--no-live")
    said = " ".join(resumed.stderr.split())
    assert resumed.returncode == 2, resumed.stdout + resumed.stderr
    assert f"a rewind of run '{run_id}' was cut short before it recorded what it did" in said
    assert f"run `trestle rewind {run_id} --to STEP` again to finish it" in said
    assert f"--to-checkpoint {run_id}/rewind-" in said and "nothing was recorded" in said

    again = world.ok("rewind", run_id, "--to", "b", "--yes")
    assert first[:12] in again  # what the first rewind kept is still what was kept
    assert first in kept(world, run_id)
    world.ok("rewind", run_id, "--to-checkpoint", first[:12], "--yes")
    assert (world.ws / "mine.txt").read_text() == "my own work\n"
    assert (world.ws / "b.txt").read_text() == "b\n"
    world.ok("rewind", run_id, "--to", "b", "--yes")
    assert "cut short" not in world.ok("show", run_id)
    listed = json.loads(world.cli("health", "--json").stdout)  # reopened: not finished
    assert not [w for r in listed for w in r["waiting"] if w["kind"] == "rewind"]
    world.ok("resume", run_id, "--no-live")  # the run goes on from the rewind
    assert (world.ws / "b.txt").read_text() == "b\n"


def test_a_rewind_put_back_by_hand_lets_the_run_be_resumed(world: World) -> None:
    run_id = world.run(PLAN)
    assert killed(world, "before-record", "rewind", run_id, "--to", "b", "--yes") == -9
    [first] = kept(world, run_id)
    world.ok("rewind", run_id, "--to-checkpoint", first[:12], "--yes")  # undone, as said
    resumed = world.cli("resume", run_id, "--no-live")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (world.ws / "b.txt").read_text() == "b\n"


def test_a_step_named_like_the_mark_is_a_step(world: World) -> None:
    # the mark was RUN/rewinding: a step named "rewinding" had its checkpoints read as
    # a rewind cut short (its resume refused) and deleted with the mark
    run_id = world.run(PLAN.replace("id: a", "id: rewinding").replace("[a]", "[rewinding]"))
    assert "cut short" not in world.ok("show", run_id)
    world.ok("rewind", run_id, "--to", "b", "--yes")
    world.ok("resume", run_id, "--no-live")
    world.ok("rewind", run_id, "--to", "rewinding", "--yes")  # its checkpoints are still there
    assert not (world.ws / "a.txt").exists()


def test_a_rewind_killed_after_it_recorded_is_done(world: World) -> None:
    run_id = world.run(PLAN)
    assert killed(world, "after-record", "rewind", run_id, "--to", "b", "--yes") == -9
    assert "cut short" not in world.ok("show", run_id)  # its mark is left, and read as done
    assert "cut short" not in world.cli("health").stdout
    world.ok("resume", run_id, "--no-live")  # which drops it
    assert (world.ws / "b.txt").read_text() == "b\n"
    assert world.ok("checkpoints", run_id).count(" kept ") == 1
