"""An unsandboxed stdio MCP server (``--sandbox off``) that double-forks with
``setsid()`` leaves nothing running once the driver stops it, or once the driver is
SIGKILLed: it runs under a keeper (:mod:`trestle.execution.keeper`). Without the keeper
(a system with no child subreaper) the process outlives the run, as it did before.
As root and as uid 1000 (through ``setpriv``, as in ``test_boundary.py``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from test_boundary import driver_host, run_as_driver

SERVER = Path(__file__).with_name("mcp_server.py")

# a server that leaves a process behind in a session of its own (setsid, forked twice),
# which writes its pid and sleeps, then becomes the notes server
ESCAPING = """
import os, sys, time
child = os.fork()
if child == 0:
    os.setsid()
    if os.fork() == 0:
        for fd in range(3):  # it holds none of the server's pipes
            os.dup2(os.open(os.devnull, os.O_RDWR), fd)
        with open(sys.argv[1] + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(sys.argv[1] + ".tmp", sys.argv[1])
        time.sleep(3600)
    os._exit(0)
os.waitpid(child, 0)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""

DRIVER = """
import asyncio, json, os, signal, subprocess, sys, time
from pathlib import Path
from trestle.core.records.mcp import McpServer
from trestle.execution import keeper
from trestle.execution.sandbox import choose
from trestle.tools.mcp_client import McpConnection

base, how = Path(sys.argv[1]), json.loads(sys.argv[2])
left = base / "left.pid"

async def drive():
    if how == "no keeper":
        keeper.AVAILABLE = False
    command = (sys.executable, str(base / "escaping.py"), str(left), str(base / "server.py"))
    notes = McpServer(name="notes", command=command, timeout=20, start_timeout=20)
    connection = McpConnection(notes, choose("off"), base / "ws")
    await connection.start()
    listed = sorted(connection.tools)[:1]
    if how == "killed":  # what it listed, for the script that started it
        (base / "listed.json").write_text(json.dumps(listed))
        os.kill(os.getpid(), signal.SIGKILL)
    await connection.aclose()
    return listed

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False

if how == "killed":  # the driver is a process of its own, SIGKILLed once started
    subprocess.run([sys.executable, sys.argv[0], *sys.argv[1:2], '"killed driver"'])
    listed = json.loads((base / "listed.json").read_text())
elif how == "killed driver":
    how = "killed"
    asyncio.run(drive())
    sys.exit(0)
else:
    listed = asyncio.run(drive())
pid = int(left.read_text())
# the keeper ends it before the stop returns; the look still waits for the kernel (a
# driver's death is seen through its keeper's signal), a while but for the witness
for _ in range(10 if how == "no keeper" else 500):
    if not alive(pid):
        break
    time.sleep(0.02)
survived = alive(pid)
if survived:
    os.kill(pid, signal.SIGKILL)
print(json.dumps([listed, survived]))
"""


@pytest.fixture(params=["root", "user"])
def host(request: pytest.FixtureRequest) -> Iterator[tuple[Path, int | None]]:
    pytest.importorskip("mcp")
    yield from driver_host(request.param, "trestle-mcp-keeper-", _lay_out)


def _lay_out(base: Path) -> None:
    (base / "ws").mkdir()
    shutil.copy(SERVER, base / "server.py")
    (base / "escaping.py").write_text(ESCAPING)
    (base / "driver.py").write_text(DRIVER)


def _driven(base: Path, uid: int | None, how: str) -> tuple[list[str], bool]:
    # run from its file, which the killed case starts again as the driver it kills
    path = str(base / "driver.py")
    script = f"import runpy, sys; sys.argv[0] = {path!r}; runpy.run_path({path!r})"
    listed, survived = cast(list[Any], run_as_driver(base, uid, script, how))
    return listed, survived


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_a_server_escaping_its_group_ends_with_it(host: tuple[Path, int | None], how: str) -> None:
    base, uid = host
    listed, survived = _driven(base, uid, how)
    assert listed == ["add_note"]
    assert not survived


def test_without_the_keeper_it_outlives_the_run(host: tuple[Path, int | None]) -> None:
    # the witness the test above relies on: the server's process does escape the group
    base, uid = host
    listed, survived = _driven(base, uid, "no keeper")
    assert listed == ["add_note"]
    assert survived  # (the driver script killed it once seen alive)
