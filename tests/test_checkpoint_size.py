"""A file past the checkpoints' size bound is left out of them, and said to be.

A step that leaves a 20 GiB sparse file must not make the next checkpoint read it:
the run goes on, the checkpoint and the step's diff name the file, and a rewind that
would need it says it cannot restore it rather than put back a tree without it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from test_rewind import World
from trestle.dashboard.views import step_change
from trestle.lifecycle.runs import load_state
from trestle.store import SqliteStore
from trestle.workspace.left_out import LeftOut, human_size
from trestle.workspace.shadow import LeftOutError, ShadowRepo

pytestmark = pytest.mark.usefixtures("unconfined")

SPARSE = 20 * 1024**3  # what `truncate -s 20G` makes: nothing on disk, 20 GiB to read

PLAN = """\
    workspace: ws
    parallelism: 1
    steps:
      - id: small
        approval: log
        run: printf 'kept\\n' > small.txt
      - id: huge
        approval: log
        needs: [small]
        run: truncate -s 20G big.txt && printf 'beside it\\n' > note.txt
      - id: last
        approval: log
        needs: [huge]
        run: printf 'done\\n' > last.txt
"""


def test_a_file_at_the_bound_is_stored_and_one_past_it_is_named(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    repo = ShadowRepo(tmp_path / "shadow.git", ws, max_file_size=1000)
    (ws / "at.bin").write_bytes(b"a" * 1000)
    with open(ws / "past.bin", "wb") as f:
        f.truncate(1001)
    first = repo.snapshot("one", "first", ordered=True)

    (ref,) = repo.list("one")
    assert ref.message == "first"
    assert ref.left_out == (LeftOut("past.bin", 1001, 1000),)
    assert repo.left_out(first) == ref.left_out
    assert [c.path for c in repo.changes(first)] == []  # past.bin is in neither side
    (ws / "past.bin").unlink()
    (ws / "at.bin").write_bytes(b"b" * 1000)
    with pytest.raises(LeftOutError, match=r"past\.bin \(1001 bytes, over 1000 bytes\)"):
        repo.restore(first)  # it cannot be written back
    assert (ws / "at.bin").read_bytes() == b"b" * 1000  # nothing was changed

    second = repo.snapshot("two")
    assert repo.left_out(second) == ()
    (ws / "at.bin").write_bytes(b"c" * 1000)
    repo.restore(second)
    assert (ws / "at.bin").read_bytes() == b"b" * 1000  # a file at the bound comes back


def test_a_path_that_looks_like_the_record_stays_the_message(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    repo = ShadowRepo(tmp_path / "shadow.git", ws, max_file_size=10)
    (ws / 'odd\n"name').write_bytes(b"x" * 11)
    text = 'notes\n\ntrestle-left-out: lines a message may hold "x"'
    repo.snapshot("a", text)
    (ref,) = repo.list("a")
    assert ref.message == text
    assert ref.left_out == (LeftOut('odd\n"name', 11, 10),)
    assert human_size(SPARSE) == "20 GiB" and human_size(64 * 1024**2) == "64 MiB"


def test_a_step_leaving_a_sparse_20_gib_file_goes_on_and_is_said_to(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.ws.mkdir()
    run_id = world.run(PLAN)
    assert (world.ws / "last.txt").read_text() == "done\n"  # the run went on
    assert (world.ws / "big.txt").stat().st_size == SPARSE

    listed = json.loads(world.ok("checkpoints", run_id, "--json"))
    after = next(c for c in listed if (c["step"], c["when"]) == ("huge", "after"))
    assert after["left_out"] == [{"path": "big.txt", "size": SPARSE, "limit": 64 * 1024**2}]
    ended = [e for e in world.events(run_id) if e["kind"] == "step_attempt_ended"]
    wrote = next(e["files"]["wrote"] for e in ended if e["step"] == "huge")
    assert wrote["big.txt"] == ""  # written, its content never read
    shown = " ".join(world.ok("checkpoints", run_id).split())
    assert "left out: big.txt (20 GiB, over 64 MiB)" in shown

    done = world.cli("diff", run_id, "huge")
    assert done.returncode == 0, done.stderr
    assert "+beside it" in done.stdout and "big.txt" not in done.stdout
    assert "left out of the checkpoint: big.txt (20 GiB, over 64 MiB)" in done.stderr
    # the next step's diff does not name it again: it did not change it
    assert "big.txt" not in world.cli("diff", run_id, "last").stderr
    store = SqliteStore(world.store)
    try:  # the dashboard's step diff says it beside the diff
        said, text = step_change(store, load_state(store, run_id), "huge")
    finally:
        store.close()
    assert said.endswith("; left out of the checkpoint: big.txt (20 GiB, over 64 MiB)")
    assert "+beside it" in text

    # rewinding past it would have to delete it, and no checkpoint can keep it
    refused = world.cli("rewind", run_id, "--to", "huge", "--yes")
    assert refused.returncode == 2
    said = " ".join(refused.stderr.split())
    assert "cannot restore" in said and "the workspace now holds big.txt (20 GiB" in said
    assert (world.ws / "big.txt").stat().st_size == SPARSE
    assert (world.ws / "last.txt").exists()  # nothing was changed

    os.unlink(world.ws / "big.txt")  # moved aside, the rewind goes ahead
    world.ok("rewind", run_id, "--to", "huge", "--yes")
    assert sorted(p.name for p in world.ws.iterdir()) == ["small.txt"]


def test_a_rewind_to_a_checkpoint_that_left_a_file_out_is_refused(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.ws.mkdir()
    run_id = world.run(PLAN)
    os.unlink(world.ws / "big.txt")
    refused = world.cli("rewind", run_id, "--to", "last", "--yes")
    assert refused.returncode == 2
    said = " ".join(refused.stderr.split())
    assert (
        "that checkpoint did not store big.txt (20 GiB, over 64 MiB), so a restore cannot" in said
    )
    assert (world.ws / "last.txt").exists()


def test_the_plan_sets_the_bound(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.ws.mkdir()
    run_id = world.run(
        """\
        workspace: ws
        checkpoint_max_file_size: 1000
        steps:
          - id: write
            approval: log
            run: head -c 1000 /dev/zero | tr '\\0' a > at.txt && head -c 1001 /dev/zero > past.bin
        """
    )
    listed = json.loads(world.ok("checkpoints", run_id, "--json"))
    after = next(c for c in listed if c["when"] == "after")
    assert after["left_out"] == [{"path": "past.bin", "size": 1001, "limit": 1000}]
    done = world.cli("diff", run_id, "write")
    assert "+" + "a" * 1000 in done.stdout  # a file at the bound is stored as before
    assert "left out of the checkpoint: past.bin (1001 bytes, over 1000 bytes)" in done.stderr
