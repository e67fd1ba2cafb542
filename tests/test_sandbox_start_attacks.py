"""A command cannot make the driver start it again, as root and as a user; a sandbox
that never starts is said to have run nothing.

A sandbox that could not start is started again (``run_shell``): whether its command
began is told by a byte bubblewrap takes from a pipe once the sandbox is made. A
hostile command tries to make one that began look as if it had not: it reads back every
pipe it holds through ``/proc/self/fd`` (where a byte its own shell wrote would be),
then fails. It must run once. The driver, root or uid 1000 (through ``setpriv``, as in
``test_boundary.py``), runs it in the sandbox.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from test_boundary import _chown_tree, driver_host, run_as_driver
from test_sandbox import SECRET, _require_bwrap
from trestle.execution.actions import run_shell
from trestle.execution.sandbox import Cell, choose

# every pipe the command holds, read back (a byte in any of them taken away), then a
# failure, as a sandbox that could not start fails
TAKE_BACK = r"""echo ran >> runs.txt
for fd in /proc/self/fd/*; do
  case "$(readlink "$fd")" in pipe:*) timeout 1 head -c 1 < "$fd" > /dev/null 2>&1 ;; esac
done
exit 1"""

DRIVER = """
import asyncio, json, sys
from pathlib import Path
from trestle.execution.actions import run_shell
from trestle.execution.sandbox import Cell, choose

base, command = Path(sys.argv[1]), json.loads(sys.argv[2])
ws = base / "ws"
cell = Cell(choose("require"), ws, "step")
env = {"PATH": "/usr/bin:/bin"}
done = asyncio.run(run_shell(command, cwd=ws, env=env, timeout=60, cell=cell))
print(json.dumps([done.exit_code, (ws / "runs.txt").read_text()]))
"""


@pytest.fixture(params=["root", "user"])
def host(request: pytest.FixtureRequest) -> Iterator[tuple[Path, int | None]]:
    yield from driver_host(request.param, "trestle-start-", _lay_out)


def _lay_out(base: Path) -> None:
    (base / "ws").mkdir()


def test_a_command_that_takes_back_what_tells_it_began_runs_once(
    host: tuple[Path, int | None],
) -> None:
    base, uid = host
    done = run_as_driver(base, uid, DRIVER, TAKE_BACK)
    assert done == [1, "ran\n"]


def test_a_sandbox_that_never_starts_is_said_to_have_run_nothing(tmp_path: Path) -> None:
    # a step left a directory where the approved bytes of deploy.sh are to be shown: no
    # start can make that mount, and the report says the command never ran
    _require_bwrap()
    ws = tmp_path / "ws"
    (ws / "deploy.sh").mkdir(parents=True)
    copy = tmp_path / "approved.sh"
    copy.write_text("echo ran >> runs.txt\n")
    cell = Cell(choose("require"), ws, "step", True, (("deploy.sh", str(copy)),))
    env = {"PATH": "/usr/bin:/bin"}
    done = asyncio.run(run_shell("sh deploy.sh", cwd=ws, env=env, timeout=60, cell=cell))
    assert done.status == "failed"
    assert done.error == "its sandbox could not start (5 tries); nothing of it ran"
    assert "bwrap: Can't create file at" in done.output
    assert not (ws / "runs.txt").exists()


# what the command reads, and how what the driver judged is swapped before bubblewrap
# binds it: a directory or file made a link to the hidden directory, as another step's
# command running meanwhile can
SWAPS = {
    ".git": ("mkdir .git", "cat .git/secret"),
    "trestle.toml": ("echo '# policy' > trestle.toml", "cat trestle.toml"),
}

SWAPPING = """
import asyncio, json, os, sys
from pathlib import Path
from trestle.execution.actions import run_shell
from trestle.execution.sandbox import Cell, choose

base, (name, make, read) = Path(sys.argv[1]), json.loads(sys.argv[2])
ws, hidden = base / "ws", base / "hidden"
cell = Cell(choose("require", hidden=(hidden,)), ws, "step")
env = {"PATH": "/usr/bin:/bin"}
asyncio.run(run_shell(make, cwd=ws, env=env, timeout=60, cell=cell))
built, starts = Cell.argv, []

def swapped(self, command, cwd, held_open=None):
    argv = built(self, command, cwd, held_open)
    starts.append(1)
    if len(starts) == 1:  # judged a directory or file; a link when bubblewrap starts
        os.rename(ws / name, base / "moved")
        # relative: bubblewrap follows it at the destination too, to the hidden place
        os.symlink("../hidden" if name == ".git" else "../hidden/secret", ws / name)
    return argv

Cell.argv = swapped
done = asyncio.run(run_shell(read, cwd=ws, env=env, timeout=60, cell=cell))
print(json.dumps([done.output, len(starts)]))
"""


@pytest.mark.parametrize("name", SWAPS)
def test_what_is_bound_from_the_workspace_is_what_was_judged(
    host: tuple[Path, int | None], name: str
) -> None:
    base, uid = host
    (base / "hidden").mkdir()
    (base / "hidden" / "secret").write_text(SECRET)
    _chown_tree(base, os.getuid() if uid is None else uid)
    make, read = SWAPS[name]
    output, starts = cast(list[Any], run_as_driver(base, uid, SWAPPING, [name, make, read]))
    assert SECRET not in output
    assert starts == 2  # the start that found a link in its place was made again


HELD = """
import asyncio, json, os, sys
from pathlib import Path
from trestle.execution.actions import run_shell
from trestle.execution.sandbox import Cell, choose

base = Path(sys.argv[1])
ws = base / "ws"
scope = tuple(f"d{i}/**" for i in range(1, 9))  # eight directories bound by descriptor
cell = Cell(choose("require", scope=scope), ws, "step")
env = {"PATH": "/usr/bin:/bin"}
before = sorted(os.listdir("/proc/self/fd"), key=int)
done = asyncio.run(run_shell("ls /proc/self/fd", cwd=ws, env=env, timeout=60, cell=cell))
after = sorted(os.listdir("/proc/self/fd"), key=int)
print(json.dumps([done.output.split(), before, after]))
"""


def test_a_command_holds_no_descriptor_it_was_bound_by_and_the_driver_keeps_none(
    host: tuple[Path, int | None],
) -> None:
    # .git and eight scope directories bound by descriptor: bubblewrap is handed nine,
    # the command none of them (only its standard three, and the one ls reads), and the
    # driver closes every one once the sandbox started
    base, uid = host
    (base / "ws" / ".git").mkdir()
    _chown_tree(base, os.getuid() if uid is None else uid)
    held, before, after = cast(list[Any], run_as_driver(base, uid, HELD, []))
    assert held == ["0", "1", "2", "3"]
    # the driver's own: at most the watchdog's pipe and the event loop's leftovers added
    assert len(after) <= len(before) + 2
