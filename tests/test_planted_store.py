"""A store a step planted in its workspace is not taken for yours.

Commands that read find a store by looking upward from the current directory for
``.trestle/trestle.db``. A step can write such a file anywhere in its workspace
(``src/.trestle/trestle.db``), holding a run of its own making, with the id of a real
one; from ``src/``, ``trestle approve`` and ``trestle resume`` then drove that run, and
its ``python:`` step ran code the step wrote in the driver. ``resume`` and ``rewind``
look in a store found that way only if a run of this account was started in it (it is
in the index of stores used, which no step reaches); commands that only read or record
a decision still open it. Nor is an SQLite file holding a trigger or a view opened:
Trestle makes none, and a trigger runs in the driver's connection. Nor is a store with
a rollback journal beside it: SQLite plays one back into the store when it opens it.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

from test_rewind import World, run_id_of
from trestle.store import SqliteStore
from trestle.store.location import recent_stores_file


def test_a_store_planted_below_the_workspace_is_not_driven(tmp_path: Path) -> None:
    world = World(tmp_path)
    (world.ws / "src").mkdir(parents=True)
    mark = tmp_path / "ran-in-the-driver"
    (world.ws / "hook.py").write_text(
        f"def go(ctx=None):\n    open({str(mark)!r}, 'w').write('ran')\n"
    )
    (tmp_path / "forged.yaml").write_text(
        "workspace: ws\nsteps:\n  - id: a\n    run: 'true'\n    approval: confirm\n"
        "  - id: b\n    needs: [a]\n    python: hook:go\n"
    )
    forged = tmp_path / "forged" / "trestle.db"
    made = world.cli("run", "forged.yaml", "--no-live", "--no-prompt", store=forged)
    forged_run = run_id_of(made)
    recent_stores_file().unlink()  # what a step writes is never a store a run was started in
    (world.ws / "forged.bin").write_bytes(forged.read_bytes())  # the bytes a step can write
    world.run(
        """\
        workspace: ws
        steps:
          - id: plant
            run: mkdir -p src/.trestle && cp forged.bin src/.trestle/trestle.db
        """
    )
    assert (world.ws / "src" / ".trestle" / "trestle.db").is_file()

    def from_src(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "TRESTLE_STORE"}
        env.update(COLUMNS="100", NO_COLOR="1", TERM="dumb")
        return subprocess.run(
            [sys.executable, "-m", "trestle", *args],
            cwd=world.ws / "src",
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    approved = from_src("approve", f"{forged_run}.1")  # recorded in that store: harmless
    resumed = from_src("resume", forged_run, "--no-live")
    rewound = from_src("rewind", forged_run, "--to", "a", "--yes")
    listed = from_src("runs")  # reading it is no harm: all it shows is escaped
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert not mark.exists()
    for done in (resumed, rewound):
        assert done.returncode != 0, done.stdout + done.stderr
        assert "no run of yours was started in it" in done.stderr, done.stderr
    assert listed.returncode == 0 and forged_run in listed.stdout, listed.stderr


def test_a_store_with_a_trigger_a_step_planted_is_not_opened(tmp_path: Path) -> None:
    """A later run whose workspace is ``src`` keeps its store in ``src/.trestle``, where an
    earlier run's step could plant an SQLite file whose trigger, run by the driver's own
    connection, rewrote every event it recorded (the plan's command among them)."""
    world = World(tmp_path)
    (world.ws / "src").mkdir(parents=True)
    planted = tmp_path / "planted.db"
    SqliteStore(planted).close()
    db = sqlite3.connect(planted)
    db.execute(
        "CREATE TRIGGER rewrite AFTER INSERT ON events BEGIN UPDATE events SET data = "
        "replace(data, 'echo safe', 'echo EVIL') WHERE run_id = NEW.run_id AND seq = NEW.seq; END"
    )
    db.commit()
    db.close()
    (world.ws / "planted.bin").write_bytes(planted.read_bytes())  # the bytes a step can write
    world.run(
        """\
        workspace: ws
        steps:
          - id: plant
            run: mkdir -p src/.trestle && cp planted.bin src/.trestle/trestle.db
        """
    )
    (tmp_path / "later.yaml").write_text(
        "workspace: ws/src\nsteps:\n  - id: a\n    run: echo safe\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRESTLE_STORE"}
    later = subprocess.run(
        [sys.executable, "-m", "trestle", "run", "later.yaml", "--no-live", "--no-prompt"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert later.returncode == 4, later.stdout + later.stderr
    assert "it holds trigger 'rewrite', which Trestle never makes" in later.stderr, later.stderr
    recorded = sqlite3.connect(world.ws / "src" / ".trestle" / "trestle.db")
    assert recorded.execute("SELECT count(*) FROM events").fetchone() == (0,)


def hot_journal(source: bytes) -> bytes:
    """A rollback journal SQLite plays back as the pages of ``source`` (an SQLite file):
    what a command can write where the store is kept, to turn it into that file."""
    page = int.from_bytes(source[16:18], "big")
    pages, nonce, sector = len(source) // page, 0x5EED, 512
    header = bytes.fromhex("d9d505f920a163d7") + struct.pack(
        ">5I", pages, nonce, pages, sector, page
    )
    body = b""
    for n in range(pages):
        content = source[n * page : (n + 1) * page]
        checksum = (nonce + sum(content[i] for i in range(page - 200, 0, -200))) & 0xFFFFFFFF
        body += struct.pack(">I", n + 1) + content + struct.pack(">I", checksum)
    return header.ljust(sector, b"\0") + body


def test_a_journal_a_step_wrote_beside_a_store_in_the_workspace_is_not_played_back(
    tmp_path: Path,
) -> None:
    # the store right in the workspace: its file, WAL and shared memory are hidden from
    # commands, but a journal, which never exists for it, could not be; the next open
    # replaced the store with a run of the step's making, whose python: step then ran
    world = World(tmp_path)
    world.ws.mkdir()
    store = world.ws / "trestle.db"
    forged = tmp_path / "forged.db"
    with sqlite3.connect(forged) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE runs (run_id TEXT)")
        db.execute("INSERT INTO runs VALUES ('forged')")
    (world.ws / "journal.bin").write_bytes(hot_journal(forged.read_bytes()))
    world.plan(
        """\
        workspace: ws
        steps:
          - id: plant
            run: cp journal.bin trestle.db-journal
        """
    )
    ran = world.cli("run", "plan.yaml", "--no-live", "--no-prompt", store=store)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    run_id = run_id_of(ran)
    assert (world.ws / "trestle.db-journal").is_file()  # the boundary let it through

    for command in (("show", run_id), ("runs",), ("resume", run_id), ("doctor",)):
        refused = world.cli(*command, store=store)
        said = " ".join(refused.stderr.split())
        assert refused.returncode == 4, refused.stdout + refused.stderr
        assert "trestle.db-journal lies beside it, a rollback journal SQLite never writes" in said
    (world.ws / "trestle.db-journal").unlink()  # as told
    assert world.cli("show", run_id, store=store).returncode == 0  # nothing was lost


def test_another_runs_store_in_the_workspace_is_hidden_from_its_steps(tmp_path: Path) -> None:
    # a run in ws/sub keeps its store in ws/sub/.trestle: a step of a run in ws rewrote
    # its events, adding a python: step of its own that the next resume ran in the driver
    world = World(tmp_path)
    (world.ws / "sub").mkdir(parents=True)
    theirs = world.ws / "sub" / ".trestle" / "trestle.db"
    (tmp_path / "b.yaml").write_text("workspace: ws/sub\nsteps:\n  - {id: b, run: 'true'}\n")
    made = world.cli("run", "b.yaml", "--no-live", "--no-prompt", store=theirs)
    assert made.returncode == 0, made.stdout + made.stderr
    world.run(
        """\
        workspace: ws
        steps:
          - id: look
            run: ls -A sub/.trestle > listed.txt; cat sub/.trestle/trestle.db | wc -c > size.txt
        """
    )
    assert (world.ws / "listed.txt").read_text() == ""  # an empty directory in its place
    assert (world.ws / "size.txt").read_text().strip() == "0"


def test_a_store_made_in_the_workspace_while_a_run_goes_on_is_hidden_from_its_next_command(
    tmp_path: Path,
) -> None:
    # the stores to hide were looked for once, when the drive began: a run started in
    # ws/sub meanwhile kept its store open to every later command of the run in ws
    world = World(tmp_path)
    (world.ws / "sub").mkdir(parents=True)
    world.plan(
        """\
        workspace: ws
        steps:
          - id: wait
            run: touch waiting; while [ ! -e sub/.trestle/trestle.db ]; do sleep 0.1; done
            timeout: 120
          - id: look
            needs: [wait]
            run: ls -A sub/.trestle > listed.txt
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "TRESTLE_STORE"}
    env.update(TRESTLE_STORE=str(world.store), NO_COLOR="1")
    above = subprocess.Popen(
        [sys.executable, "-m", "trestle", "run", "plan.yaml", "--no-live", "--no-prompt"],
        cwd=world.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for _ in range(1200):  # the run in ws is in its first command before the other starts
        if (world.ws / "waiting").exists() or above.poll() is not None:
            break
        time.sleep(0.1)
    theirs = world.ws / "sub" / ".trestle" / "trestle.db"
    (tmp_path / "b.yaml").write_text("workspace: ws/sub\nsteps:\n  - {id: b, run: 'true'}\n")
    made = world.cli("run", "b.yaml", "--no-live", "--no-prompt", store=theirs)
    assert made.returncode == 0, made.stdout + made.stderr
    out, err = above.communicate(timeout=120)
    assert above.returncode == 0, out + err
    assert (world.ws / "listed.txt").read_text() == ""
    assert theirs.stat().st_size > 0  # there all along, out of the step's sight


def test_a_new_store_and_its_directory_are_their_owners_alone(tmp_path: Path) -> None:
    # made 0644 in a 0755 directory under the usual umask, every step's output in them
    # was open to every user of the machine
    old = os.umask(0o022)
    try:
        store = SqliteStore(tmp_path / "ws" / ".trestle" / "trestle.db")
        store.close()
    finally:
        os.umask(old)
    assert (tmp_path / "ws" / ".trestle").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "ws" / ".trestle" / "trestle.db").stat().st_mode & 0o777 == 0o600
