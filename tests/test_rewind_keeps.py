"""A rewind loses nothing: it shows first what it will delete, change and restore, asks
(or needs ``--yes``), and keeps the workspace as it found it, files written by hand
after the run included, as a checkpoint that ``trestle checkpoints`` lists and that
``trestle rewind --to-checkpoint`` puts back.

Real runs through the console script (the harness of ``test_rewind``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_rewind import World, file, flat, tree
from trestle.core.errors import ConfigError
from trestle.lifecycle.checkpoints import shadow_repo
from trestle.lifecycle.lease import this_process
from trestle.lifecycle.rewinding import plan_rewind, rewind
from trestle.lifecycle.runs import load_state
from trestle.store import SqliteStore

pytestmark = pytest.mark.usefixtures("unconfined")

PLAN = """\
    workspace: ws
    steps:
      - id: make
        run: printf 'made\\n' > made.txt && printf 'v2\\n' > data.txt
      - id: use
        needs: [make]
        run: cat made.txt > used.txt && rm old.txt
"""


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path)
    w.ws.mkdir()
    (w.ws / "data.txt").write_text("v1\n")
    (w.ws / "old.txt").write_text("old\n")
    return w


def kept_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "  kept " in line]


def test_a_file_written_by_hand_is_named_kept_listed_and_restorable(world: World) -> None:
    run_id = world.run(PLAN)
    (world.ws / "notes.txt").write_text("my notes, written after the run\n")
    (world.ws / "made.txt").write_text("made\nand edited by hand\n")
    by_hand = tree(world.ws)
    events = world.events(run_id)

    refused = world.cli("rewind", run_id, "--to", "make")

    # off a terminal and without --yes: shown, refused, nothing changed
    assert refused.returncode == 11, refused.stdout + refused.stderr
    shown = refused.stdout.splitlines()
    assert shown[0] == f"rewind run {run_id} to before 'make' (attempt 1):"
    assert shown[1:7] == [
        "  delete  made.txt",
        "  delete  notes.txt",
        "  delete  used.txt",
        "  change  data.txt",
        "  restore old.txt",
        "  reopen  make, use",
    ]
    assert "the workspace as it is now is kept first as a checkpoint of the run" in refused.stdout
    assert "error: not done: off a terminal this needs --yes" in flat(refused.stderr)
    assert tree(world.ws) == by_hand
    assert world.events(run_id) == events
    assert kept_lines(world.ok("checkpoints", run_id)) == []

    done = world.ok("rewind", run_id, "--to", "make", "--yes")

    assert tree(world.ws) == {"data.txt": file("v1\n"), "old.txt": file("old\n")}
    assert "workspace restored to before 'make' (attempt 1): 1 file restored, 1 " in flat(done)
    listed = json.loads(world.ok("checkpoints", run_id, "--json"))
    [kept] = [c for c in listed if c["when"] == "kept"]
    assert kept["note"] == "the workspace before rewinding to 'make' attempt 1"
    assert f"kept as checkpoint {kept['commit'][:12]}" in done
    assert listed[-1] == kept  # the latest checkpoint of the run
    [line] = kept_lines(world.ok("checkpoints", run_id))
    assert f"kept {kept['commit'][:12]}  the workspace before rewinding to 'make'" in line
    assert f"`trestle rewind {run_id} --to-checkpoint {kept['commit'][:12]}`" in line

    back = world.cli("rewind", run_id, "--to-checkpoint", kept["commit"][:12], "--yes")

    assert back.returncode == 0, back.stdout + back.stderr
    assert "  restore notes.txt" in back.stdout and "  restore made.txt" in back.stdout
    assert "  delete  old.txt" in back.stdout and "the run's steps stay as they are" in back.stdout
    assert tree(world.ws) == by_hand
    assert (world.ws / "notes.txt").read_text() == "my notes, written after the run\n"
    # putting it back kept what it replaced, too
    assert len(kept_lines(world.ok("checkpoints", run_id))) == 2


def test_bad_arguments_are_refused_before_anything_changes(world: World) -> None:
    run_id = world.run(PLAN)
    files = tree(world.ws)

    neither = world.cli("rewind", run_id, "--yes")
    both = world.cli("rewind", run_id, "--to", "make", "--to-checkpoint", "abc1234", "--yes")
    unknown = world.cli("rewind", run_id, "--to-checkpoint", "0000000", "--yes")
    stray = world.cli("rewind", run_id, "--to-checkpoint", "abc1234", "--attempt", "1")

    for done in (neither, both, unknown, stray):
        assert done.returncode == 2, done.stdout + done.stderr
    assert "give either --to STEP or --to-checkpoint ID" in neither.stderr
    assert f"run {run_id!r} has no checkpoint '0000000'" in flat(unknown.stderr)
    assert "--attempt goes with --to STEP" in stray.stderr
    assert tree(world.ws) == files


def test_nothing_is_done_when_the_workspace_changed_since_it_was_shown(world: World) -> None:
    run_id = world.run(PLAN)
    store = SqliteStore(world.store)
    try:
        state = load_state(store, run_id)
        shown = plan_rewind(shadow_repo(state, world.shadow, store), state, store, "use")
        (world.ws / "late.txt").write_text("written after the rewind was shown\n")
        files = tree(world.ws)

        with pytest.raises(ConfigError, match="changed since the rewind was shown: nothing"):
            rewind(store, run_id, "use", shadow_dir=world.shadow, owner=this_process(), shown=shown)

        assert tree(world.ws) == files
        assert [e.event.kind for e in store.events(run_id)][-1] == "run_finished"
    finally:
        store.close()


def on_a_terminal(world: World, answer: str, *args: str) -> tuple[int, str]:
    """Run ``trestle ARGS`` with a terminal for its input and output, answering its
    question with ``answer``; its exit code and everything it showed."""
    main, child = os.openpty()
    env = {k: v for k, v in os.environ.items() if k != "TRESTLE_STORE"}
    env.update(TRESTLE_STORE=str(world.store), COLUMNS="200", TERM="dumb", NO_COLOR="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "trestle", *args],
        stdin=child,
        stdout=child,
        stderr=child,
        cwd=world.root,
        env=env,
        close_fds=True,
    )
    os.close(child)
    shown = b""
    answered = False
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal closed: the command is done
            break
        if not chunk:
            break
        shown += chunk
        if not answered and b"Go ahead?" in shown:
            os.write(main, answer.encode() + b"\n")
            answered = True
    os.close(main)
    return proc.wait(timeout=120), shown.decode().replace("\r\n", "\n")


def test_on_a_terminal_it_asks_and_a_no_changes_nothing(world: World) -> None:
    run_id = world.run(PLAN)
    files = tree(world.ws)

    code, shown = on_a_terminal(world, "n", "rewind", run_id, "--to", "use")

    assert code == 11, shown  # not confirmed
    assert "  delete  used.txt\n" in shown and "  restore old.txt\n" in shown
    assert "Go ahead? [y/N]" in shown and "nothing was changed" in shown
    assert tree(world.ws) == files
    assert kept_lines(world.ok("checkpoints", run_id)) == []

    code, shown = on_a_terminal(world, "y", "rewind", run_id, "--to", "use")

    assert code == 0, shown
    assert "workspace restored to before 'use' (attempt 1)" in shown
    assert not (world.ws / "used.txt").exists() and (world.ws / "old.txt").exists()
    assert len(kept_lines(world.ok("checkpoints", run_id))) == 1
