"""Damaged stores are named as such: real files, damaged for real, through the real CLI.

Each fault is made on a copy of a real store (three finished runs, one with snapshots):
bytes overwritten in the middle, the file cut to 99% and 50%, an empty file, a file that
is not SQLite, rows edited behind the store's back (a gap in a run's seqs, an event that
cannot be read, a first event that is not ``run_created``), a read-only file, directory
and mount, and a full disk on a small tmpfs. Every command must exit 0 or 4, never
print a traceback, and name the file and the problem; ``trestle doctor`` must say what
is wrong and which runs are intact. A seeded fuzz flips bytes and pages of the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import trestle.demo as bundled
from forked_cli import run_trestle
from trestle.cli.app import main
from trestle.engines.local import LocalEngine
from trestle.formats.planfile import load_plan
from trestle.lifecycle.runs import create_run
from trestle.store import SqliteStore, bodies, decoding
from trestle.store.decoding import COMPRESSED
from trestle.trust.signing import key_path

PLAN = """\
goal: record some runs
steps:
  - id: fetch
    run: echo fetched > fetched.txt
    verify:
      - file_exists: fetched.txt
  - id: build
    needs: [fetch]
    run: echo built
  - id: test
    needs: [build]
    run: "true"
"""
PAGE = 4096
TRAJECTORY = Path(bundled.__file__).parent / "trajectory.json"


@dataclass(frozen=True)
class Good:
    """A healthy store with three finished runs, kept as the original to copy."""

    path: Path
    plan: Path
    runs: list[str]
    key: Path  # the engine key its snapshots were signed with


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Good:
    where = tmp_path_factory.mktemp("good")
    plan_file = where / "plan.yaml"
    plan_file.write_text(PLAN, encoding="utf-8")
    plan = load_plan(plan_file)
    path = where / "trestle.db"
    store = SqliteStore(path)
    runs = []
    for n, every in enumerate((200, 2, 200)):
        run_id = create_run(store, plan, workspace=where, run_id=f"run-{n}", now=1000.0 + n)
        engine = LocalEngine(store, snapshot_every=every)
        asyncio.run(engine.run(run_id))
        engine.close()
        runs.append(run_id)
    store.close()
    return Good(path, plan_file, runs, key_path())


@dataclass(frozen=True)
class Copy:
    store: Path
    plan: Path
    runs: list[str]
    key: Path

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.store, isolation_level=None)


@pytest.fixture
def copy(good: Good, tmp_path: Path) -> Copy:
    store = tmp_path / "store" / "trestle.db"
    store.parent.mkdir()
    shutil.copyfile(good.path, store)
    plan = tmp_path / "plan.yaml"
    shutil.copyfile(good.plan, plan)
    return Copy(store, plan, good.runs, good.key)


def trestle(
    *args: str | Path, cwd: Path, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TRESTLE_STORE"}
    env.update(COLUMNS="200", NO_COLOR="1", TERM="dumb")
    if not prefix:
        return run_trestle(args, cwd=cwd, env=env, timeout=120)
    return subprocess.run(
        [*prefix, sys.executable, "-m", "trestle", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def flat(text: str) -> str:
    return " ".join(text.split())


def refused(result: subprocess.CompletedProcess[str], store: Path, *problem: str) -> str:
    """Exit 4, no traceback, and a message naming the file and each part of the problem."""
    message = flat(result.stderr)
    assert result.returncode == 4, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert message.startswith(f"error: {store}: "), message
    for part in problem:
        assert part in message, message
    return message


def commands(c: Copy) -> list[list[str | Path]]:
    """Every command that reads or writes the store, on ``c``'s first run."""
    run = c.runs[0]
    return [
        ["run", c.plan, "--no-live"],
        ["resume", run, "--no-live"],
        ["show", run],
        ["log", run],
        ["runs"],
        ["inbox"],
        ["dlq"],
        ["health"],
        ["feedback", "export"],
        ["retry", run, "test"],
        ["agent", "do it", "--repo", c.plan.parent, "--model", f"replay:{TRAJECTORY}"],
    ]


# --- the file itself ----------------------------------------------------------------------


def truncate(path: Path, fraction: float) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(int(size * fraction))


def test_a_store_cut_to_99_percent_is_refused_by_every_command(copy: Copy) -> None:
    truncate(copy.store, 0.99)
    for args in commands(copy):
        result = trestle(*args, "--store", copy.store, cwd=copy.plan.parent)
        refused(result, copy.store, "the store is damaged", "truncated", "trestle doctor")

    report = trestle("doctor", "--store", copy.store, cwd=copy.plan.parent)
    assert report.returncode == 4 and "Traceback" not in report.stderr
    assert "DAMAGED" in report.stdout and "truncated" in report.stdout


def test_a_store_cut_in_half_is_refused_and_doctor_says_so(copy: Copy) -> None:
    truncate(copy.store, 0.5)
    refused(
        trestle("show", copy.runs[0], "--store", copy.store, cwd=copy.plan.parent),
        copy.store,
        "truncated",
    )
    refused(
        trestle("run", copy.plan, "--store", copy.store, cwd=copy.plan.parent),
        copy.store,
        "truncated",
    )
    report = trestle("doctor", "--store", copy.store, "--json", cwd=copy.plan.parent)
    assert report.returncode == 4
    found = json.loads(report.stdout)
    assert not found["healthy"] and "truncated" in found["problems"][0]


def test_overwritten_pages_are_refused_when_read_and_before_a_new_run(copy: Copy) -> None:
    size = copy.store.stat().st_size
    # a third of the file past its middle, page headers included: the events' pages
    # (the tables' first pages, made when the schema was, come before them)
    with open(copy.store, "r+b") as f:
        f.seek(size // 2)
        f.write(bytes(range(256)) * (size // 3 // 256))

    created = trestle("run", copy.plan, "--no-live", "--store", copy.store, cwd=copy.plan.parent)
    refused(created, copy.store, "the store is damaged", "damaged pages")
    shown = [trestle("show", r, "--store", copy.store, cwd=copy.plan.parent) for r in copy.runs]
    assert {r.returncode for r in shown} <= {0, 4} and 4 in {r.returncode for r in shown}
    for result in shown:
        if result.returncode == 4:
            refused(result, copy.store, "the store is damaged")

    report = trestle("doctor", "--store", copy.store, cwd=copy.plan.parent)
    assert report.returncode == 4 and "Traceback" not in report.stderr
    assert "integrity check" in report.stdout


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "the file is empty (0 bytes)"),
        (b"\x00\xff" * 100, "not a SQLite database (200 bytes without SQLite's header)"),
        (
            b"name,seq\n" * 100,
            "not a store: the file is text, beginning 'name,seq', not a SQLite database; "
            "check the path given as --store",
        ),
    ],
    ids=["zero-length", "not-a-database", "text"],
)
def test_a_file_that_is_no_store_is_refused_and_left_as_it_is(
    copy: Copy, content: bytes, problem: str
) -> None:
    copy.store.write_bytes(content)
    for args in (["runs"], ["run", copy.plan, "--no-live"], ["show", copy.runs[0]]):
        result = trestle(*args, "--store", copy.store, cwd=copy.plan.parent)
        refused(result, copy.store, problem)
    assert copy.store.read_bytes() == content  # never recreated over the user's file

    report = trestle("doctor", "--store", copy.store, cwd=copy.plan.parent)
    assert report.returncode == 4 and problem.split("; ")[0].removeprefix("not a store: ") in flat(
        report.stdout
    )
    assert ".recover" not in report.stdout  # SQLite reads nothing there either


def test_a_missing_store_is_still_created_whole(tmp_path: Path) -> None:
    store = tmp_path / "new" / "trestle.db"
    (tmp_path / "plan.yaml").write_text("steps:\n  - id: a\n    run: 'true'\n")
    started = trestle("run", "plan.yaml", "--store", store, "--no-live", cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    assert store.read_bytes()[:16] == b"SQLite format 3\x00"
    # no temp left: the store, and beside it the checkpoints every step takes by default
    assert sorted(p.name for p in store.parent.iterdir()) == ["shadow.git", "trestle.db"]
    assert trestle("doctor", "--store", store, cwd=tmp_path).returncode == 0


# --- records edited behind the store's back -----------------------------------------------


def event_json(c: Copy, run: str, seq: int) -> tuple[str, str]:
    """The event's kind and stored JSON (its compressed body opened: a damage writes
    it back as plain text, with the flag that says so cleared)."""
    with contextlib.closing(c.db()) as db:
        kind, data, packed = db.execute(
            "SELECT kind, data, packed FROM events WHERE run_id = ? AND seq = ?", (run, seq)
        ).fetchone()
    return str(kind), bodies.decompressed(data) if packed & COMPRESSED else str(data)


def last_seq(c: Copy, run: str) -> int:
    with contextlib.closing(c.db()) as db:
        return int(db.execute("SELECT max(seq) FROM events WHERE run_id = ?", (run,)).fetchone()[0])


def damage_gap(c: Copy, run: str) -> tuple[int, str]:
    """Move the run's last event two places on: seq last is missing."""
    last = last_seq(c, run)
    with contextlib.closing(c.db()) as db:
        db.execute("UPDATE events SET seq = ? WHERE run_id = ? AND seq = ?", (last + 2, run, last))
    return last, f"event seq {last} is missing"


def damage_json(c: Copy, run: str) -> tuple[int, str]:
    with contextlib.closing(c.db()) as db:
        db.execute('UPDATE events SET data = \'{"v": 1, "ki\' WHERE run_id = ? AND seq = 3', (run,))
    return 3, "event seq 3 cannot be read"


def damage_kind(c: Copy, run: str) -> tuple[int, str]:
    _, data = event_json(c, run, 2)
    changed = json.loads(data) | {"kind": "mystery"}
    with contextlib.closing(c.db()) as db:
        db.execute(
            "UPDATE events SET data = ?, kind = 'mystery', packed = packed & 1 "
            "WHERE run_id = ? AND seq = 2",
            (json.dumps(changed), run),
        )
    return 2, "event seq 2 cannot be read"


def damage_first(c: Copy, run: str) -> tuple[int, str]:
    kind, data = event_json(c, run, 2)
    with contextlib.closing(c.db()) as db:
        db.execute(
            "UPDATE events SET kind = ?, data = ?, packed = packed & 1 "
            "WHERE run_id = ? AND seq = 1",
            (kind, data, run),
        )
    return 1, "does not begin with run_created"


def damage_label(c: Copy, run: str) -> tuple[int, str]:
    """The row's kind changed, its body left whole: read as the type listed it is not
    one, so it is read over the union and the mismatch is named."""
    kind, _ = event_json(c, run, 3)
    with contextlib.closing(c.db()) as db:
        db.execute("UPDATE events SET kind = 'run_finished' WHERE run_id = ? AND seq = 3", (run,))
    return 3, f"event seq 3 is listed as 'run_finished' but holds {kind!r}"


@pytest.mark.parametrize(
    "damage",
    [damage_gap, damage_json, damage_kind, damage_first, damage_label],
    ids=[
        "out-of-order-seq",
        "undecodable-json",
        "unknown-kind",
        "first-not-created",
        "relabelled-kind",
    ],
)
def test_a_damaged_run_is_named_and_the_other_runs_stay_usable(
    copy: Copy, damage: Callable[[Copy, str], tuple[int, str]]
) -> None:
    bad, fine = copy.runs[0], copy.runs[2]
    _, problem = damage(copy, bad)
    cwd = copy.plan.parent

    for args in (["show", bad], ["log", bad], ["resume", bad, "--no-live"]):
        result = trestle(*args, "--store", copy.store, cwd=cwd)
        refused(result, copy.store, f"run {bad!r}", problem)
    assert trestle("show", fine, "--store", copy.store, cwd=cwd).returncode == 0
    assert trestle("runs", "--store", copy.store, cwd=cwd).returncode == 0

    report = trestle("doctor", "--store", copy.store, "--json", cwd=cwd)
    assert report.returncode == 4, report.stderr
    found = {r["run_id"]: r for r in json.loads(report.stdout)["runs"]}
    assert not found[bad]["intact"] and problem in " ".join(found[bad]["problems"])
    assert found[fine]["intact"] and found[fine]["problems"] == []

    salvaged = copy.store.parent / "salvaged.db"
    out = trestle("doctor", "--store", copy.store, "--salvage", salvaged, cwd=cwd)
    assert "salvaged 2 runs" in out.stdout, out.stdout + out.stderr
    assert trestle("doctor", "--store", salvaged, cwd=cwd).returncode == 0
    shown = trestle("show", fine, "--store", salvaged, "--json", cwd=cwd)
    assert json.loads(shown.stdout)["exit_code"] == 0


def test_doctor_finds_a_snapshot_and_a_listing_row_that_disagree_with_the_events(
    copy: Copy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRESTLE_KEY_FILE", str(copy.key))  # the key the engine signed with
    snapshotted = copy.runs[1]  # recorded with a snapshot every two events
    with contextlib.closing(copy.db()) as db:
        (state,) = db.execute(
            "SELECT state FROM snapshots WHERE run_id = ?", (snapshotted,)
        ).fetchone()
        changed = json.loads(decoding.state_text(state) or "") | {"resumes": 7}  # compressed
        db.execute(
            "UPDATE snapshots SET state = ? WHERE run_id = ?", (json.dumps(changed), snapshotted)
        )
        db.execute("UPDATE runs SET status = 'running' WHERE run_id = ?", (copy.runs[0],))
    report = trestle("doctor", "--store", copy.store, "--json", cwd=copy.plan.parent)
    found = {r["run_id"]: r for r in json.loads(report.stdout)["runs"]}
    assert report.returncode == 4
    assert "snapshot" in found[snapshotted]["problems"][0]
    # changed after the engine signed it: a resume would not use it, and doctor says so
    assert any(
        "is not signed with this machine's engine key" in note
        for note in found[snapshotted]["notes"]
    ), found[snapshotted]
    assert "listing row says 'running'" in found[copy.runs[0]]["problems"][0]
    missing = copy.store.parent / "nothing.db"
    nothing = trestle("doctor", "--store", missing, cwd=copy.plan.parent)
    assert (nothing.returncode, nothing.stderr) == (8, f"error: no store at {missing}\n")
    assert not missing.exists()


def test_a_healthy_store_passes_the_doctor(copy: Copy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRESTLE_KEY_FILE", str(copy.key))
    report = trestle("doctor", "--store", copy.store, cwd=copy.plan.parent)
    assert report.returncode == 0, report.stdout
    assert report.stdout.splitlines()[0] == f"store {copy.store}: healthy"
    assert "signed" not in report.stdout  # the engine signed every snapshot it wrote


# --- read-only stores ---------------------------------------------------------------------

# root ignores file permissions; without these capabilities it obeys them like anyone
NO_OVERRIDE = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")


def needs_permissions_to_bind(path: Path) -> None:
    if os.geteuid() != 0 and os.access(path, os.W_OK):
        pytest.skip("the file stays writable for this user")
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("setpriv is needed to run as root without permission overrides")


def as_reader(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return trestle(*args, cwd=cwd, prefix=NO_OVERRIDE if os.geteuid() == 0 else ())


@pytest.mark.parametrize("what", ["file", "directory"])
def test_a_read_only_store_can_be_read_and_refuses_writes_naming_why(copy: Copy, what: str) -> None:
    needs_permissions_to_bind(copy.store)
    target = copy.store if what == "file" else copy.store.parent
    target.chmod(0o444 if what == "file" else 0o555)
    cause = "the file is not writable" if what == "file" else "is not writable"
    cwd = copy.plan.parent
    try:
        shown = as_reader("show", copy.runs[0], "--store", copy.store, "--json", cwd=cwd)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["exit_code"] == 0
        reads: list[list[str | Path]] = [["runs"], ["log", copy.runs[1]], ["health"], ["doctor"]]
        for args in reads:
            result = as_reader(*args, "--store", copy.store, cwd=cwd)
            assert result.returncode == 0, (args, result.stderr)
        writes: list[list[str | Path]] = [
            ["run", copy.plan, "--no-live"],
            ["resume", copy.runs[0], "--no-live"],
        ]
        for args in writes:
            result = as_reader(*args, "--store", copy.store, cwd=cwd)
            refused(result, copy.store, "the store is read-only", cause)
    finally:
        target.chmod(0o644 if what == "file" else 0o755)
    assert trestle("doctor", "--store", copy.store, cwd=cwd).returncode == 0


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_store_on_a_read_only_mount_can_be_read_and_refuses_writes(copy: Copy) -> None:
    with tmpfs(copy.store.parent.parent / "ro", "4m") as mount:
        store = mount / "trestle.db"
        shutil.copyfile(copy.store, store)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        cwd = copy.plan.parent
        assert trestle("show", copy.runs[0], "--store", store, cwd=cwd).returncode == 0
        assert trestle("doctor", "--store", store, cwd=cwd).returncode == 0
        result = trestle("run", copy.plan, "--no-live", "--store", store, cwd=cwd)
        refused(result, store, "the store is read-only", "read-only file system")


FILLS_THE_DISK = """\
goal: run until the disk is full
steps:
  - id: first
    run: echo first > first.txt
    verify:
      - file_exists: first.txt
  - id: fill
    needs: [first]
    run: echo started > mark.txt; head -c 64M /dev/zero > filler.bin; true
    verify:
      - file_exists: mark.txt
  - id: last
    needs: [fill]
    run: echo last > last.txt
"""


def test_a_full_disk_stops_the_run_with_its_records_intact_and_it_resumes_later(
    tmp_path: Path,
) -> None:
    with tmpfs(tmp_path / "small", "2m") as disk:
        plan = disk / "plan.yaml"
        plan.write_text(FILLS_THE_DISK, encoding="utf-8")
        store = disk / "trestle.db"
        started = trestle("run", plan, "--no-live", "--store", store, cwd=disk)
        message = refused(started, store, "the disk is full", "intact", "trestle resume")
        run_id = message.split("trestle resume ")[1].split("`")[0]
        (disk / "filler.bin").unlink()

        log = json.loads(trestle("log", run_id, "--store", store, "--json", cwd=disk).stdout)
        assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
        done = [e["step"] for e in log if e["kind"] == "step_attempt_ended" and e["ok"]]
        assert "first" in done  # what was recorded before the disk filled is there
        assert trestle("doctor", "--store", store, cwd=disk).returncode == 0

        resumed = trestle("resume", run_id, "--no-live", "--store", store, cwd=disk)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert (disk / "last.txt").exists()


# --- seeded fuzz --------------------------------------------------------------------------

FUZZ_CASES = int(os.environ.get("TRESTLE_STORE_FUZZ_CASES", "50"))


def damage_at_random(path: Path, rng: random.Random) -> str:
    data = bytearray(path.read_bytes())
    pages = len(data) // PAGE
    how = rng.choice(["bytes", "page", "zero-page", "truncate", "header"])
    if how == "bytes":
        for _ in range(rng.randint(1, 64)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif how in ("page", "zero-page"):
        page = rng.randrange(pages)
        fill = rng.randbytes(PAGE) if how == "page" else bytes(PAGE)
        data[page * PAGE : (page + 1) * PAGE] = fill
    elif how == "truncate":
        del data[rng.randrange(len(data)) :]
    else:
        at = rng.randrange(100)
        data[at] = rng.randrange(256)
    path.write_bytes(bytes(data))
    return how


def in_process(*args: str | Path) -> tuple[int, str]:
    """``trestle ARGS`` through the console script's entry point, in this process: an
    exception other than the exit fails the test with its traceback."""
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["trestle", *map(str, args)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    else:
        code = 0
    finally:
        sys.argv = argv
    return code, out.getvalue() + err.getvalue()


def test_seeded_store_fuzz_never_gives_a_traceback_and_exits_0_or_4(
    good: Good, tmp_path: Path
) -> None:
    rng = random.Random(20261122)
    for case in range(FUZZ_CASES):
        store = tmp_path / f"case-{case}.db"
        shutil.copyfile(good.path, store)
        how = damage_at_random(store, rng)
        commands: list[list[str | Path]] = [
            ["show", rng.choice(good.runs)],
            ["runs"],
            ["doctor"],
        ]
        if case % 5 == 0:
            commands.append(["run", good.plan, "--no-live"])
        for args in commands:
            code, output = in_process(*args, "--store", store)
            assert code in (0, 4), (case, how, args, code, output)
            assert "Traceback" not in output, (case, how, args, output)
            if code == 4 and args[0] != "doctor":
                assert str(store) in output, (case, how, args, output)


# A number column given text, a text column given a number or bytes: SQLite keeps what a
# column is given, so damage or another program can leave any of these. Found by the
# long store fuzz (`make soak`): the doctor, `show` and `resume` met some with tracebacks.
# Run 1 has snapshots.
WRONG_TYPES = {
    "event seq": "UPDATE events SET seq = 'x' || seq WHERE run_id = 'run-1' AND seq = 2",
    "event packed flag": "UPDATE events SET packed = 'abc' WHERE run_id = 'run-1' AND seq = 2",
    "event version": "UPDATE events SET v = 'v' WHERE run_id = 'run-1' AND seq = 2",
    "event time": "UPDATE events SET at = 'later' WHERE run_id = 'run-1' AND seq = 2",
    "event kind": "UPDATE events SET kind = x'ff00' WHERE run_id = 'run-1' AND seq = 2",
    "event data as a number": "UPDATE events SET data = 12 WHERE run_id = 'run-1' AND seq = 2",
    "event data as bytes": "UPDATE events SET data = x'80ff' WHERE run_id = 'run-1' AND seq = 2",
    "listing's last seq": "UPDATE runs SET last_seq = 'zz' WHERE run_id = 'run-1'",
    "listing's times": "UPDATE runs SET created_at = 'then', updated_at = 'now'",
    "listing's status": "UPDATE runs SET status = 7 WHERE run_id = 'run-1'",
    "listing's summary": "UPDATE runs SET summary = x'00ff' WHERE run_id = 'run-1'",
    "snapshot seq": "UPDATE snapshots SET seq = 'q' WHERE run_id = 'run-1'",
    "snapshot state as bytes": "UPDATE snapshots SET state = x'80' WHERE run_id = 'run-1'",
    "lease pid": "INSERT OR REPLACE INTO leases VALUES ('run-1', 'o', 'pid!', 'h', 3, 1e300)",
    "lease token": "INSERT OR REPLACE INTO leases VALUES ('run-1', 'o', 1, 'h', 'tok', 0)",
    "lease expiry": "INSERT OR REPLACE INTO leases VALUES ('run-1', 'o', 1, 'h', 3, 'soon')",
    "request consumed": "INSERT INTO requests(run_id, kind, step, reason, created_at, consumed, "
    "payload) VALUES ('run-1', 'approve', 'a', 'r', 'now', 'no', '{}')",
}


@pytest.mark.parametrize("damage", list(WRONG_TYPES))
def test_a_column_holding_the_wrong_type_is_named_as_damage_never_a_traceback(
    copy: Copy, damage: str
) -> None:
    with contextlib.closing(copy.db()) as db:
        db.execute(WRONG_TYPES[damage])
    for args in (["runs"], ["show", "run-1"], ["doctor"], ["resume", "run-1", "--no-live"]):
        code, output = in_process(*args, "--store", copy.store)
        assert code in (0, 4), (damage, args, code, output)
        assert "Traceback" not in output, (damage, args, output)
        if code == 4 and args[0] != "doctor":
            assert str(copy.store) in output, (damage, args, output)
