"""A command run in a fork of the tests' zygote (``tests/forked_cli.py``) says, exits
and reads its input as the same command started fresh: the suite's commands run there,
so a difference would make the suite test something users do not run."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from forked_cli import Forked, run_trestle, start_trestle
from test_approvals_cli import DEPLOY, Cli

Said = tuple[int, str, str]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(dir=tmp_path, store=tmp_path / "trestle.db")


def both(cli: Cli, *args: str, stdin: str | None = None) -> tuple[Said, Said]:
    """The command's exit code, stdout and stderr, forked and then started fresh."""
    seen: list[Said] = []
    for how in ("fork", "exec"):
        env = cli.env(TRESTLE_TEST_EXEC="1") if how == "exec" else cli.env()
        done = run_trestle(args, cwd=cli.dir, env=env, input=stdin)
        seen.append((done.returncode, done.stdout, done.stderr))
    return seen[0], seen[1]


def test_a_forked_command_says_and_exits_as_one_started_fresh(cli: Cli) -> None:
    cli.write("bad.yaml", "goal: g\nsteps:\n  - id: a\n    python: 'print(1)'\n")
    assert both(cli, "runs")[0][0] == 8  # no store yet, and none is made
    assert not cli.store.exists()
    run_id = cli.start(DEPLOY)
    cases = [
        ("--version",),
        ("runs",),
        ("show", run_id),
        ("inbox", "--json"),
        ("log", run_id, "--json"),
        ("show", "nope"),
        ("plan", "bad.yaml"),
        ("run", "bad.yaml"),
        ("approve", "nope.1"),
        ("frobnicate",),
    ]
    seen = {args: both(cli, *args) for args in cases}
    for args, (forked, fresh) in seen.items():
        assert forked == fresh, args
    assert [seen[args][0][0] for args in cases] == [0] * 5 + [2] * 5


def test_standard_input_reaches_a_forked_command_whole(cli: Cli) -> None:
    """An edit on standard input larger than a plan may be is refused after reading
    more than a pipe holds: the fork reads it through the same buffered stream."""
    run_id = cli.start(DEPLOY)
    huge = "x" * (9 * 1024 * 1024)
    forked, fresh = both(cli, "approve", f"{run_id}.1", "--edit", "--from", "-", stdin=huge)
    assert forked == fresh
    assert forked[0] == 2 and "larger than 8,388,608 bytes" in forked[2]
    assert cli.json("inbox")[0]["ref"] == f"{run_id}.1"  # nothing was approved


def test_the_forked_command_has_its_own_directory_and_environment(cli: Cli) -> None:
    """The command runs where it is asked to, with the environment it is given, not
    the worker's or the zygote's."""
    other = cli.dir / "elsewhere"
    other.mkdir()
    wide = run_trestle(["run", "--help"], cwd=cli.dir, env=cli.env(COLUMNS="200"))
    narrow = run_trestle(["run", "--help"], cwd=other, env=cli.env(COLUMNS="60"))
    assert wide.returncode == narrow.returncode == 0
    assert max(map(len, wide.stdout.splitlines())) > 60 >= max(map(len, narrow.stdout.splitlines()))
    cli.write("elsewhere/plan.yaml", "goal: g\nsteps:\n  - id: a\n    run: pwd > where\n")
    ran = run_trestle(["run", "plan.yaml", "--no-live"], cwd=other, env=cli.env())
    assert ran.returncode == 0, ran.stderr
    assert (other / "where").read_text().strip() == str(other)


def test_a_forked_command_past_its_timeout_is_killed(cli: Cli) -> None:
    cli.write("plan.yaml", "goal: wait\nsteps:\n  - id: wait\n    run: sleep 60\n")
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as late:
        run_trestle(["run", "plan.yaml", "--no-live"], cwd=cli.dir, env=cli.env(), timeout=2)
    assert time.monotonic() - started < 20
    assert str(late.value.stdout).startswith("run "), late.value  # what it said, as run's
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    drivers = [p for p in pids if _cwd(p) == str(cli.dir) and "forked_cli" in _cmdline(p)]
    assert drivers == []


WAIT = "goal: wait\nsteps:\n  - id: wait\n    run: sleep 60 && touch late\n"


def test_a_started_command_is_read_signalled_and_waited_for_as_one_started_fresh(
    cli: Cli,
) -> None:
    """``start_trestle``: a driver read line by line while it runs, stopped by a signal
    as a service manager stops it, then waited for; forked and fresh say and exit
    alike, and neither runs the step on."""
    seen = []
    for how in ("fork", "exec"):
        env = cli.env(TRESTLE_TEST_EXEC="1") if how == "exec" else cli.env()
        where = cli.dir / how  # each its own run: the second is not told of the first
        where.mkdir()
        (where / "plan.yaml").write_text(WAIT)
        driver = start_trestle(
            ["run", "plan.yaml", "--no-live", "--store", "s.db"], cwd=where, env=env
        )
        assert isinstance(driver, Forked) == (how == "fork")
        assert driver.stdout is not None
        first = _read_to_start(driver.stdout)  # as it runs: "run ID" comes first
        assert driver.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            driver.wait(timeout=0.2)
        with pytest.raises(subprocess.TimeoutExpired):
            driver.communicate(timeout=0.5)  # the step sleeps on
        driver.send_signal(signal.SIGTERM)
        out, err = driver.communicate(timeout=60)  # goes on where the first stopped
        run_id = first.split()[1]
        said = (first + out + err).replace(run_id, "ID").replace(str(where), "WHERE")
        seen.append((driver.returncode, said))
        assert driver.poll() == driver.wait() == driver.returncode
    assert seen[0] == seen[1]
    assert seen[0][0] not in (0, None)
    assert not [*cli.dir.glob("*/late")]


def _read_to_start(stream: IO[str]) -> str:
    """``stream``'s lines up to the one saying the step started (a signal before it
    would stop the run at another point), that one included."""
    lines = [stream.readline()]
    while not lines[-1].startswith("start"):
        assert lines[-1], "the driver ended before its step started:\n" + "".join(lines)
        lines.append(stream.readline())
    return "".join(lines)


def test_a_started_command_can_write_its_errors_to_its_output(cli: Cli) -> None:
    """``stderr=STDOUT``, as a dashboard's background run is read: one stream, both
    kinds of text in it."""
    for env in (cli.env(), cli.env(TRESTLE_TEST_EXEC="1")):
        done = start_trestle(["run", "nope.yaml"], cwd=cli.dir, env=env, stderr=subprocess.STDOUT)
        out, err = done.communicate(timeout=60)
        assert (done.returncode, err) == (2, None)
        assert "error: nope.yaml: file not found" in out


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def _cwd(pid: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


# what differs between the zygote and the command it forks, read at import
PROCESS_READS = {
    "os.getpid",
    "os.getppid",
    "os.getcwd",
    "os.environ",
    "os.getenv",
    "os.getuid",
    "Path.home",
    "Path.cwd",
    "socket.gethostname",
    "getpass.getuser",
    "sys.argv",
}


def test_no_module_of_trestle_reads_its_process_at_import() -> None:
    """A value read at import (a pid, a variable, the directory) would be the zygote's
    in every forked command, and the suite would test a process users never run."""
    import trestle

    found = []
    for path in sorted(Path(trestle.__file__).parent.rglob("*.py")):
        if path.name == "__main__.py":
            continue  # run for each command, in the fork too
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in _run_at_import(tree.body):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Attribute) and ast.unparse(inner) in PROCESS_READS:
                    found.append(f"{path.name}:{inner.lineno}: {ast.unparse(inner)}")
    assert found == []


def _run_at_import(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """The parts of a module's statements that run when it is imported: not function
    bodies (their defaults and decorators do run), a class's body but not its methods'."""
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from node.decorator_list
            yield from node.args.defaults
            yield from (d for d in node.args.kw_defaults if d is not None)
        elif isinstance(node, ast.ClassDef):
            yield from node.decorator_list
            yield from _run_at_import(node.body)
        elif isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'":
            continue  # a module run as a script
        else:
            yield node
