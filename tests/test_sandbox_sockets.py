"""Which of the host's UNIX sockets a sandboxed command can reach, as root and as a user.

Only a socket a command could reach is covered (each is one more mount); one in a
directory the sandbox hides or never shows is left alone. The daemons here bind a
socket in each kind of place, some through a link or ``..`` (``/proc/net/unix`` names
the path as bound, which may lead elsewhere than its name says); the driver, root or
uid 1000 (through ``setpriv``, as in ``test_boundary.py``), then runs a command that
connects to each. None connects, and only those in a hidden place are left out of the
command's arguments.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_boundary import driver_host, run_as_driver
from test_sandbox import _require_bwrap
from trestle.execution.actions import run_shell
from trestle.execution.sandbox import Cell, choose

# what the driver runs: one command per socket that connects to it, in the sandbox
# (and unconfined, which shows each command connects where nothing covers the socket)
DRIVER = """
import asyncio, json, sys
from pathlib import Path
from trestle.core.policy import SandboxPolicy
from trestle.execution.actions import run_shell
from trestle.execution.sandbox import Cell, choose

base, sockets = Path(sys.argv[1]), json.loads(sys.argv[2])
ws = base / "ws"
policy = SandboxPolicy(read=(str(base / "home" / "tools"), str(base / "home" / "data")))
cell = Cell(choose("require", hidden=(base / "store",), policy=policy), ws, "step")
env = {"PATH": "/usr/bin:/bin"}

def connects(path, cell):
    code = f"import socket; socket.socket(socket.AF_UNIX).connect({path!r})"
    command = f"{sys.executable} -c {json.dumps(code)}"
    done = asyncio.run(run_shell(command, cwd=ws, env=env, timeout=30, cell=cell))
    return done.exit_code == 0

argv = cell.argv("true", ws)
unconfined = Cell(choose("off"), ws, "step")
print(json.dumps({
    "covered": sorted(p for a, p in zip(argv, argv[1:]) if a == "/dev/null" and ".sock" in p),
    "reached": sorted(place for place, path in sockets.items() if connects(path, cell)),
    "unconfined": sorted(p for p, path in sockets.items() if connects(path, unconfined)),
}))
"""


@pytest.fixture(params=["root", "user"])
def host(request: pytest.FixtureRequest) -> Iterator[tuple[Path, int | None]]:
    # not under /tmp, which is private in the sandbox (one daemon binds there too)
    yield from driver_host(request.param, "trestle-sockets-", _lay_out)


def _lay_out(base: Path) -> None:
    for path in ("home/tools", "home/realdata", "home/.cache", "ws/run", "ws/cached", "store"):
        (base / path).mkdir(parents=True)
    (base / "home" / "data").symlink_to(base / "home" / "realdata")
    (base / "home" / ".cache" / "daemon").symlink_to(base / "ws" / "cached")


def _daemons(base: Path) -> dict[str, tuple[Path, Path]]:
    """Where the daemons bind, by kind of place: the path as bound (as
    ``/proc/net/unix`` lists it) and the path a command would reach the socket by."""
    home, ws = base / "home", base / "ws"
    private = Path(tempfile.gettempdir()) / f"trestle-sock-{base.name}.sock"
    return {
        "hidden": (base / "store" / "d.sock",) * 2,  # the store's directory
        "hidden home": (home / "d.sock",) * 2,
        "shown": (home / "tools" / "d.sock",) * 2,  # the home's part shown again
        "shown through a link": (home / "realdata" / "d.sock", home / "data" / "d.sock"),
        "workspace": (ws / "run" / "d.sock",) * 2,
        "a hidden name leading to the workspace": (
            home / ".cache" / "daemon" / "d.sock",
            ws / "cached" / "d.sock",
        ),
        "a hidden name with ..": (base / "store" / ".." / "ws" / "d2.sock", ws / "d2.sock"),
        "private /tmp": (private,) * 2,
    }


def _driver(base: Path, uid: int | None, sockets: dict[str, str]) -> dict[str, object]:
    result = run_as_driver(base, uid, DRIVER, sockets)
    assert isinstance(result, dict)
    return result


def test_no_host_socket_is_reached_and_only_the_reachable_ones_are_covered(
    host: tuple[Path, int | None],
) -> None:
    base, uid = host
    daemons = _daemons(base)
    held = []
    try:
        for path, _ in daemons.values():
            server = socket.socket(socket.AF_UNIX)
            server.bind(str(path))  # as written: /proc/net/unix lists it so
            server.listen(1)
            os.chmod(path, 0o777)
            held.append(server)
        found = _driver(base, uid, {k: str(v[1]) for k, v in daemons.items()})
    finally:
        for server in held:
            server.close()
        daemons["private /tmp"][0].unlink(missing_ok=True)
    assert found["unconfined"] == sorted(daemons)  # each reached where nothing covers it
    assert found["reached"] == []
    # each reachable one covered where a command reaches it, not where it was bound
    hidden = ("hidden", "hidden home", "private /tmp")
    reachable = [str(reached) for kind, (_, reached) in daemons.items() if kind not in hidden]
    # other programs' sockets (other tests' daemons, running beside) are covered too
    covered = found["covered"]
    assert isinstance(covered, list)
    assert [p for p in covered if p.startswith(f"{base}/")] == sorted(reachable)


def test_a_socket_a_hidden_name_leads_to_stays_covered_when_a_command_renames_it(
    tmp_path: Path,
) -> None:
    # listed under the hidden store's directory, the socket lies in the workspace
    # through a link there; one command renames its directory, the next connects
    _require_bwrap()
    ws, store = tmp_path / "ws", tmp_path / "store"
    (ws / "cached").mkdir(parents=True)
    store.mkdir()
    (store / "link").symlink_to(ws / "cached")
    cell = Cell(choose("require", hidden=(store,)), ws, "step")
    env = {"PATH": "/usr/bin:/bin"}
    connect = "import socket; socket.socket(socket.AF_UNIX).connect('cached2/d.sock')"
    daemon = socket.socket(socket.AF_UNIX)
    daemon.bind(str(store / "link" / "d.sock"))
    daemon.listen(1)
    try:
        for command, code in (("mv cached cached2", 0), (f'python3 -c "{connect}"', 1)):
            done = asyncio.run(run_shell(command, cwd=ws, env=env, timeout=30, cell=cell))
            assert done.exit_code == code, done
        unconfined = Cell(choose("off"), ws, "step")
        done = asyncio.run(
            run_shell(f'python3 -c "{connect}"', cwd=ws, env=env, timeout=30, cell=unconfined)
        )
        assert done.exit_code == 0, done  # the command connects where nothing covers it
    finally:
        daemon.close()


@pytest.mark.parametrize(
    "leave",
    [
        "python3 -c \"import socket; socket.socket(socket.AF_UNIX).bind('run/d.sock')\"",
        "touch run/d.sock",
    ],
)
def test_a_daemons_socket_stays_covered_when_a_command_leaves_another_file_at_its_path(
    tmp_path: Path, leave: str
) -> None:
    # /proc/net/unix still lists run/d.sock, and a file is there: not the daemon's
    _require_bwrap()
    ws = tmp_path / "ws"
    (ws / "run").mkdir(parents=True)
    cell = Cell(choose("require"), ws, "step")
    env = {"PATH": "/usr/bin:/bin"}
    connect = "import socket; socket.socket(socket.AF_UNIX).connect('run2/d.sock')"
    daemon = socket.socket(socket.AF_UNIX)
    daemon.bind(str(ws / "run" / "d.sock"))
    daemon.listen(1)
    try:
        for command in ("true", f"mv run run2 && mkdir run && {leave}"):
            done = asyncio.run(run_shell(command, cwd=ws, env=env, timeout=30, cell=cell))
            assert done.exit_code == 0, done
        done = asyncio.run(
            run_shell(f'python3 -c "{connect}"', cwd=ws, env=env, timeout=30, cell=cell)
        )
        assert done.exit_code == 1, done
    finally:
        daemon.close()
