"""What a human approved is what runs: the approved bytes of the scripts a command runs
and sources, even when they are changed between the engine's last check and the
command's read.

The mechanism first (a script, what it sources, a program run by its path, each
changed after the engine pinned it; a data file the command goes on writing), then
the race as an attacker runs it: a process outside the run rewrites the approved
script as fast as it can while ``trestle resume`` starts the approved step. Each
attempt either runs the approved text or is refused and asked again; the unapproved
text never runs.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_approvals import Harness
from test_approvals_cli import Cli, flat
from test_sandbox import _require_bwrap
from trestle.core.events import StepAttemptEnded, StepStarted
from trestle.execution.actions import run_shell
from trestle.execution.named_files import executed_files, named_files
from trestle.execution.pinning import pinned
from trestle.execution.sandbox import Cell, choose

GOOD = "echo GOOD >> out.log\n"
EVIL = "echo EVIL >> out.log\n"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(dir=tmp_path, store=tmp_path / "trestle.db")


RACES = int(os.environ.get("TRESTLE_APPROVED_RACES", "6"))  # more in make soak


def _run_pinned(ws: Path, command: str, change: dict[str, str]) -> tuple[list[str], str]:
    """Approve ``command`` as the workspace reads now, change ``change`` after the
    engine pinned what it runs, run it confined; what it wrote and its output."""
    approved = named_files(command, ws)
    sandbox = choose("require")
    with pinned(command, approved, ws) as (pins, moved, unheld):
        assert moved == [] and unheld == []
        for name, text in change.items():
            (ws / name).write_text(text)
        cell = Cell(sandbox, ws, "deploy", approved=True, pinned=pins)
        result = asyncio.run(
            run_shell(command, cwd=ws, env={"PATH": "/usr/bin:/bin"}, timeout=30, cell=cell)
        )
    log = ws / "out.log"
    return (log.read_text().splitlines() if log.exists() else []), result.output


def test_a_script_and_what_it_sources_run_as_approved_though_changed_after(
    tmp_path: Path,
) -> None:
    _require_bwrap()
    (tmp_path / "deploy.sh").write_text(". ./lib.sh\n" + GOOD)
    (tmp_path / "lib.sh").write_text("echo LIB-GOOD >> out.log\n")
    assert executed_files("sh deploy.sh", tmp_path) == {"deploy.sh", "lib.sh"}
    wrote, output = _run_pinned(
        tmp_path, "sh deploy.sh", {"deploy.sh": EVIL, "lib.sh": "echo LIB-EVIL >> out.log\n"}
    )
    assert wrote == ["LIB-GOOD", "GOOD"], output


def test_a_program_run_by_its_path_keeps_its_mode_and_its_approved_text(tmp_path: Path) -> None:
    _require_bwrap()
    script = tmp_path / "deploy.sh"
    script.write_text("#!/bin/sh\n" + GOOD)
    script.chmod(0o755)
    wrote, output = _run_pinned(tmp_path, "./deploy.sh", {"deploy.sh": "#!/bin/sh\n" + EVIL})
    assert wrote == ["GOOD"], output


def test_a_file_the_command_only_reads_or_writes_stays_writable(tmp_path: Path) -> None:
    _require_bwrap()
    (tmp_path / "out.log").write_text("")
    command = 'echo more >> out.log; test "$(wc -l < out.log)" -ge 1'
    assert executed_files(command, tmp_path) == set()
    wrote, output = _run_pinned(tmp_path, command, {})
    assert wrote == ["more"], output


@pytest.mark.parametrize(
    "command",
    [
        "sleep 0.2",
        "true && echo done > out.txt",
        "python3 missing.py --out=also-missing",
        "sh deploy.sh",
        "cat notes.txt | wc -l",
        "wc -l < notes.txt",
        "timeout 5 sh -c 'cat notes.txt'",
        "CONFIG=notes.txt true",
        "make",
        "./bin/tool",
        "ls sub",
        "echo $(< deploy.sh)",
    ],
)
def test_a_command_names_a_file_by_the_quick_look_exactly_when_it_names_one_at_all(
    tmp_path: Path, command: str
) -> None:
    # an attempt skips the thread that hashes what its command names when the quick
    # look (no file read) finds none: it must find one whenever named_files would
    from trestle.core.plan import Step
    from trestle.engines.touched import may_read, reads_of
    from trestle.execution.named_files import names_any

    (tmp_path / "deploy.sh").write_text("cat notes.txt\n")
    (tmp_path / "notes.txt").write_text("n\n")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "tool").write_text("#!/bin/sh\n")
    (tmp_path / "sub").mkdir()
    named = named_files(command, tmp_path)
    assert names_any(command, tmp_path) is bool(named), named
    step = Step(id="s", run=command)
    assert may_read(step, tmp_path) is bool(reads_of(step, tmp_path))
    assert not may_read(Step(id="p", python="pkg.mod:fn"), tmp_path)


def test_a_word_no_file_could_be_named_is_no_files_name_and_stops_nothing(cli: Cli) -> None:
    """A word of 256 bytes or more (``python -c '...'``, a long ``echo``) cannot be a
    file's name, and looking it up as one raised "File name too long": the driver
    stopped at the step's start, exit 2, its run left running for a resume that
    stopped the same way. Nor does a path under a directory that cannot be searched.
    Such a word names no file: the step runs, and one that waits for approval asks."""
    long_word = "a" * 300
    deep = "/".join(["d" * 200] * 30)  # over PATH_MAX
    for command in (f"echo {long_word}", f"cat {deep}", f"sh -c 'echo {long_word}'"):
        assert named_files(command, cli.dir) == {} and executed_files(command, cli.dir) == set()
    cli.write(
        "plan.yaml",
        f"""\
        steps:
          - {{id: say, run: "echo {long_word} > said.txt"}}
          - {{id: ship, needs: [say], run: "cat said.txt {long_word}", irreversible: true}}
        """,
    )
    ran = cli("run", "plan.yaml", "--no-prompt")
    assert ran.returncode == 3, ran.stdout + ran.stderr  # ship waits for a human
    assert cli.lines("said.txt") == [long_word]
    shown = cli.json("show", ran.stdout.split()[1])
    steps = {s["id"]: s["status"] for s in shown["steps"]}
    assert steps == {"say": "succeeded", "ship": "awaiting_approval"}, shown["steps"]


# what the driver finds a command names when a step made a directory unsearchable: run
# as root and as a user (to whom the directory is closed), in a workspace laid out so
LOCKED_DRIVER = """
import json, os, sys
from pathlib import Path
from trestle.execution.named_files import executed_files, named_files, names_any
ws = Path(sys.argv[1]) / "ws"
os.chmod(ws / "locked", 0)
try:
    out = {c: [sorted(named_files(c, ws)), names_any(c, ws), sorted(executed_files(c, ws))]
           for c in json.loads(sys.argv[2])}
finally:
    os.chmod(ws / "locked", 0o755)
print(json.dumps(out))
"""


@pytest.fixture(params=["root", "user"])
def locked_host(request: pytest.FixtureRequest) -> Iterator[tuple[Path, int | None]]:
    from test_boundary import driver_host

    def lay_out(base: Path) -> None:
        (base / "ws" / "locked").mkdir(parents=True)
        (base / "ws" / "locked" / "x.sh").write_text("echo x\n")
        (base / "ws" / "open.sh").write_text("echo open\n")
        (base / "home").mkdir()

    yield from driver_host(request.param, "trestle-named-", lay_out)


def test_a_path_under_a_directory_a_step_closed_names_no_file_to_root_or_a_user(
    locked_host: tuple[Path, int | None],
) -> None:
    from test_boundary import run_as_driver

    base, uid = locked_host
    commands = ["sh locked/x.sh open.sh", "cat locked/x.sh"]
    seen = run_as_driver(base, uid, LOCKED_DRIVER, commands)
    assert isinstance(seen, dict), seen
    closed = uid is not None  # root searches any directory
    inside = [] if closed else ["locked/x.sh"]
    assert seen["sh locked/x.sh open.sh"] == [
        sorted([*inside, "open.sh"]),
        True,
        sorted([*inside, "open.sh"]),
    ]
    assert seen["cat locked/x.sh"] == [inside, not closed, inside]  # .sh: code by its name


def test_a_script_a_step_makes_after_its_commands_approval_never_runs_unapproved(
    cli: Cli,
) -> None:
    """``sh deploy.sh`` approved while no deploy.sh was there binds no file; a step
    that writes one after the approval made the approved command run its bytes, which
    no human saw. A file the command names that it did not name when asked is a change
    like any other: the attempt is refused and asked again, bound to the file."""
    _require_bwrap()
    cli.write(
        "plan.yaml",
        """\
        steps:
          - {id: ship, run: sh deploy.sh, irreversible: true}
          - {id: plant, run: "sleep 0.5; printf 'echo EVIL >> out.log\\n' > deploy.sh"}
        """,
    )
    started = cli("run", "plan.yaml", "--no-prompt")
    assert started.returncode == 3, started.stdout + started.stderr
    run_id = started.stdout.split()[1]
    assert (cli.dir / "deploy.sh").exists()  # planted after ship's approval was asked
    assert cli("approve", f"{run_id}.1").returncode == 0
    resumed = cli("resume", run_id)
    assert resumed.returncode == 3, resumed.stdout + resumed.stderr
    assert "deploy.sh changed since approval 1 was asked; asking again" in flat(resumed.stdout)
    assert not (cli.dir / "out.log").exists()
    card = flat(cli("inbox").stdout)
    assert f"{run_id}.2" in card and "deploy.sh (" in card, card


def test_a_script_rewritten_while_its_approved_step_starts_never_runs_unapproved(
    cli: Cli,
) -> None:
    _require_bwrap()
    evil_runs = approved_runs = refused = 0
    for trial in range(RACES):
        (cli.dir / "out.log").unlink(missing_ok=True)
        cli.write("deploy.sh", GOOD)
        run_id = cli.start("steps: [{id: deploy, run: sh deploy.sh, irreversible: true}]")
        assert cli("approve", f"{run_id}.1").returncode == 0
        stop = threading.Event()

        def flip(stop: threading.Event = stop) -> None:
            # rewrites in place, as a sibling step or a leftover process would
            while not stop.is_set():
                for text in (EVIL, GOOD):
                    with open(cli.dir / "deploy.sh", "r+") as f:
                        f.write(text)
                        f.truncate()

        racer = threading.Thread(target=flip)
        # start flipping once the approval is recorded, around the engine's check
        racer.start()
        time.sleep(0.01 * trial)
        try:
            resumed = cli("resume", run_id)
        finally:
            stop.set()
            racer.join()
        ran = cli.lines("out.log")
        evil_runs += "EVIL" in ran
        approved_runs += ran == ["GOOD"]
        said = flat(resumed.stdout)
        refused += "the action differs from the one that passed the approval gate" in said
        assert ran in ([], ["GOOD"]), f"trial {trial}: {ran}\n{resumed.stdout}"
    print(f"{RACES} races: {evil_runs} ran unapproved text, {approved_runs} ran as approved")
    assert evil_runs == 0
    assert approved_runs + refused == RACES


def test_a_huge_file_a_command_names_is_read_for_an_approval_not_for_the_record(
    tmp_path: Path,
) -> None:
    # a step can leave a sparse file of 100 GB that a later command names: hashing it
    # for the record of what each attempt read held every such start for minutes; an
    # approval still binds every byte of what its command names
    from trestle.core.plan import Step
    from trestle.engines.touched import MAX_HASHED, reads_of

    (tmp_path / "big").write_bytes(b"")
    os.truncate(tmp_path / "big", 100 << 30)
    (tmp_path / "small").write_text("x\n")
    started = time.monotonic()
    read = reads_of(Step(id="b", run="ls -la big small"), tmp_path)
    assert time.monotonic() - started < 5
    assert read["big"] == f"not hashed: {100 << 30} bytes, over {MAX_HASHED}"
    assert read["small"] == named_files("cat small", tmp_path)["small"]
    os.truncate(tmp_path / "big", MAX_HASHED + 1)  # small enough to hash in a test
    approved = named_files("ls -la big", tmp_path)["big"]
    assert len(approved) == 64 and approved == named_files("cat big", tmp_path)["big"]


def test_an_approved_script_that_cannot_be_held_does_not_run(cli: Cli) -> None:
    """A script of two names (a parallel step could flip its bytes through the other
    name between the check of its digest and the shell's read), and one too large to
    hash (a sparse file: hashing 200 GB held the driver, past its SIGTERM): each is
    approved, and neither runs; the attempt says why, at once."""
    _require_bwrap()
    cli.write(
        "plan.yaml",
        """\
        steps:
          - id: prep
            run: >-
              printf 'echo ran >> out.log\\n' > deploy.sh && ln -f deploy.sh .other.sh &&
              truncate -s 300M big.sh
          - {id: deploy, needs: [prep], run: sh deploy.sh, irreversible: true}
          - {id: large, needs: [prep], run: sh big.sh, irreversible: true}
        """,
    )
    started = cli("run", "plan.yaml", "--no-prompt")
    assert started.returncode == 3, started.stdout + started.stderr
    run_id = started.stdout.split()[1]
    for n in (1, 2):
        assert cli("approve", f"{run_id}.{n}").returncode == 0
    began = time.monotonic()
    resumed = cli("resume", run_id, "--no-live")
    assert time.monotonic() - began < 60
    said = flat(resumed.stdout)
    assert "deploy.sh cannot be held as approved while the command runs" in said, said
    assert "big.sh cannot be held as approved" in said
    assert not (cli.dir / "out.log").exists()


@pytest.mark.parametrize(
    "command",
    [
        "timeout 60 sh deploy.sh",
        "sh < deploy.sh",
        "cat deploy.sh | sh",
        "bash -o errexit deploy.sh",
        "env bash deploy.sh",
        "nice ./deploy.sh",
        "exec sh deploy.sh",
        "command sh deploy.sh",
        "sh -e deploy.sh",
        "bash -euo pipefail deploy.sh",
        "sh /dev/stdin < deploy.sh",
        "bash /dev/fd/3 3< deploy.sh",
        "watch -n1 sh deploy.sh",
        "find . -name deploy.sh -exec sh {} ';'",
        "parallel sh ::: deploy.sh",
        "timeout 5 sh -c 'sh deploy.sh'",
        "perl -I lib deploy.sh",
        "sh <>deploy.sh",
        'bash -c "$(< deploy.sh)"',
        "source <(cat deploy.sh)",
        'eval "$(cat deploy.sh)"',
        ". /dev/stdin < deploy.sh",
        "bash --init-file deploy.sh -i",
        "fish deploy.sh",
        "awk -f deploy.sh",
        ". -- deploy.sh",
        "python3 -s deploy.sh",
    ],
)
def test_a_script_run_through_a_launcher_or_its_input_is_code_held_or_refused(
    tmp_path: Path, command: str
) -> None:
    """The script is code however the shell gets it: copied where it is a plain file,
    and refused where it has a second name a parallel step could write through."""
    script = tmp_path / "deploy.sh"
    script.write_text("#!/bin/sh\n" + GOOD)
    script.chmod(0o755)
    assert executed_files(command, tmp_path) == {"deploy.sh"}
    with pinned(command, named_files(command, tmp_path), tmp_path) as (pins, moved, unheld):
        assert [name for name, _ in pins] == ["deploy.sh"] and moved == unheld == []
    os.link(script, tmp_path / ".other.sh")
    with pinned(command, named_files(command, tmp_path), tmp_path) as (pins, moved, unheld):
        assert pins == () and moved == [] and unheld == ["deploy.sh"]


def test_a_file_the_line_writes_is_never_held_as_code(tmp_path: Path) -> None:
    """Held read-only, a file the command writes would fail the command it was approved
    for: one it writes as well as runs stays writable (checked in place)."""
    (tmp_path / "deploy.sh").write_text(GOOD)
    (tmp_path / "out.log").write_text("")
    assert executed_files("sh deploy.sh > deploy.sh", tmp_path) == set()
    assert executed_files("sh deploy.sh; echo x >> out.log", tmp_path) == {"deploy.sh"}


def test_an_approved_command_runs_alone_so_no_sibling_changes_code_it_runs_unseen(
    tmp_path: Path,
) -> None:
    """``sh -c '. ./"$0"' payload`` runs ``payload`` as code, which the reader of
    commands does not see as code, so it is checked just before the command starts but
    not copied. A sibling step rewriting it in a loop ran beside the approved step, in
    the window between that check and the shell's read. The approved command now
    starts only once the sibling has ended, and nothing starts beside it."""
    _require_bwrap()
    h = Harness(tmp_path)
    try:
        (h.workspace / "payload").write_text(GOOD)
        run_id = h.create(
            """
            steps:
              - id: deploy
                run: sh -c '. ./"$0"' payload
                irreversible: true
              - id: flip
                run: >-
                  while [ ! -f go ]; do sleep 0.02; done;
                  while [ ! -f stop ]; do printf 'echo EVIL >> out.log\\n' > payload;
                  printf 'echo GOOD >> out.log\\n' > payload; done
                timeout: 60
            """
        )
        driver, result = h.approved_while_driven(run_id)
        try:
            (h.workspace / "go").touch()
            time.sleep(1.0)  # the sibling flips the payload: before, deploy ran beside it
        finally:
            (h.workspace / "stop").touch()
            driver.join(60)
        assert result and result[0].finished == "succeeded", h.events(run_id)[-3:]
        assert h.lines("out.log") == ["GOOD"]
        events = h.events(run_id)
        flip_ended = next(e.at for e in events if isinstance(e, StepAttemptEnded))
        deploy = next(e for e in events if isinstance(e, StepStarted) and e.step == "deploy")
        assert deploy.at >= flip_ended
    finally:
        h.close()


@pytest.mark.parametrize(
    "command",
    [
        "BASH_ENV=lib bash -c true",
        "env BASH_ENV=./lib bash -c true",
        "export BASH_ENV=lib; bash -c true",
        "LD_PRELOAD=/usr/lib/none.so:lib ls",
        'NODE_OPTIONS="--require ./lib" node -e 1',
        "NODE_OPTIONS=--require=./lib node -e 1",
        "ENV=lib sh -i",
    ],
)
def test_a_file_a_variable_names_as_code_is_bound_and_held(tmp_path: Path, command: str) -> None:
    """bash sources ``$BASH_ENV`` as it starts, the loader maps ``$LD_PRELOAD``'s
    libraries: such a file was not even bound to the approval (a word ``NAME=value``
    named nothing), so it could change after it at will."""
    (tmp_path / "lib").write_text(GOOD)
    assert list(named_files(command, tmp_path)) == ["lib"]
    assert executed_files(command, tmp_path) == {"lib"}


def test_a_script_bash_sources_from_its_environment_runs_as_approved(tmp_path: Path) -> None:
    _require_bwrap()
    (tmp_path / "lib").write_text(GOOD)
    wrote, output = _run_pinned(tmp_path, "BASH_ENV=lib bash -c true", {"lib": EVIL})
    assert wrote == ["GOOD"], output


def test_a_file_the_steps_env_names_is_bound_to_its_approval(cli: Cli) -> None:
    """A step's ``env:`` is set before its command: ``BASH_ENV: lib`` there binds
    ``lib`` as the line ``BASH_ENV=lib bash -c true`` would."""
    _require_bwrap()
    cli.write("lib", GOOD)
    run_id = cli.start(
        """
        steps:
          - id: deploy
            run: bash -c true
            env: {BASH_ENV: lib}
            irreversible: true
        """
    )
    assert cli("approve", f"{run_id}.1").returncode == 0
    cli.write("lib", EVIL)
    resumed = cli("resume", run_id, "--no-live")
    assert "lib changed since approval 1 was asked" in flat(resumed.stdout), resumed.stdout
    assert not (cli.dir / "out.log").exists()
