"""An MCP server whose sandbox could not start is started again, as a command's is,
as root and as a user; one whose sandbox began is not.

A host daemon's socket the driver saw goes away, file and directory, after the
server's sandbox was worked out and before bubblewrap starts: bubblewrap cannot make
the mount's point that covers it and runs nothing. The driver, root or uid 1000
(through ``setpriv``, as in ``test_boundary.py``), starts the notes server
(``tests/mcp_server.py``) in the sandbox and lists its tools.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from test_boundary import _chown_tree, driver_host, run_as_driver
from test_sandbox import SECRET

SERVER = Path(__file__).with_name("mcp_server.py")

DRIVER = """
import asyncio, json, socket, sys
from pathlib import Path
from trestle.core.records.mcp import McpServer
from trestle.execution.sandbox import Sandbox, choose
from trestle.tools.mcp_client import McpConnection, McpStartError

base, (server, fail, how) = Path(sys.argv[1]), json.loads(sys.argv[2])
place = base / "daemon"
place.mkdir()
daemon = socket.socket(socket.AF_UNIX)
daemon.bind(str(place / "d.sock"))
daemon.listen()
built, starts = Sandbox.argv, []

def vanishing(self, command, **kwargs):
    argv = built(self, command, **kwargs)
    starts.append(str(place / "d.sock") in argv)
    if how == "vanish" and len(starts) == 1:  # it goes away between the look and the start
        daemon.close()
        (place / "d.sock").unlink()
        place.rmdir()
    if how == "swap" and len(starts) == 1:  # another step's command swaps .git for a link
        (base / "ws" / ".git").rename(base / "moved")
        (base / "ws" / ".git").symlink_to("../hidden")
    return argv

import anyio
spawn = anyio.open_process

async def swapping(*args, **kwargs):  # once the arguments are final, before the start
    if how == "swap7" and not (base / "moved").exists():  # a writable directory swapped
        (base / "ws" / "d7").rename(base / "moved")  # for a link to one shown read-only
        (base / "ws" / "d7").symlink_to("../outside")
    return await spawn(*args, **kwargs)

Sandbox.argv = vanishing
anyio.open_process = swapping
command = (sys.executable, server, *(["--fail-start"] if fail else []))
if how == "swap":  # what the server sees of .git, on its stderr, which its failure quotes
    command = ("sh", "-c", f"cat .git/secret >&2; exec {' '.join(command)}")
if how == "swap7":  # seven scope directories bound from the workspace, and .git
    command = ("sh", "-c", f"echo x > d7/pwned; ls /proc/self/fd >&2; exec {' '.join(command)}")
scope = tuple(f"d{i}/**" for i in range(1, 8)) if how == "swap7" else ()
notes = McpServer(name="notes", command=command, timeout=20, start_timeout=20)
sandbox = choose("require", hidden=(base / "hidden",), scope=scope)
connection = McpConnection(notes, sandbox, base / "ws")

async def main():
    try:
        await connection.start()
        return sorted(connection.tools)[:1]
    except McpStartError as exc:
        return str(exc)
    finally:
        await connection.aclose()

print(json.dumps([asyncio.run(main()), starts]))
"""


@pytest.fixture(params=["root", "user"])
def host(request: pytest.FixtureRequest) -> Iterator[tuple[Path, int | None]]:
    pytest.importorskip("mcp")
    # read-only to the server but reachable (not in /tmp or a home, which it does not
    # see): bubblewrap must make the covering mount's point itself
    yield from driver_host(request.param, "trestle-mcp-start-", _lay_out)


def _lay_out(base: Path) -> None:
    (base / "ws").mkdir()
    shutil.copy(SERVER, base / "server.py")


def _driver(base: Path, uid: int | None, case: list[object]) -> tuple[object, list[bool]]:
    listed, starts = cast(list[Any], run_as_driver(base, uid, DRIVER, case))
    return listed, starts


def test_a_server_whose_sandbox_could_not_start_is_started_again(
    host: tuple[Path, int | None],
) -> None:
    base, uid = host
    server = str(base / "server.py")
    listed, starts = _driver(base, uid, [server, False, "vanish"])
    assert starts == [True, False]  # the socket covered at first, gone the second time
    assert listed == ["add_note"]


def test_a_server_whose_sandbox_began_is_not_started_again(
    host: tuple[Path, int | None],
) -> None:
    base, uid = host
    # the server itself fails at once, before speaking MCP: its sandbox had begun
    server = str(base / "server.py")
    said, starts = _driver(base, uid, [server, True, ""])
    assert starts == [True]
    assert isinstance(said, str) and "cannot open its database" in said


def test_a_git_swapped_for_a_link_before_the_start_shows_nothing_hidden(
    host: tuple[Path, int | None],
) -> None:
    # judged a directory, .git is a link to the hidden directory when bubblewrap binds
    # it: bound by descriptor, the start is refused and made again, judged afresh
    base, uid = host
    (base / "ws" / ".git").mkdir()
    (base / "hidden").mkdir()
    (base / "hidden" / "secret").write_text(SECRET)
    _chown_tree(base, os.getuid() if uid is None else uid)
    said, starts = _driver(base, uid, [str(base / "server.py"), True, "swap"])
    assert isinstance(said, str) and "cannot open its database" in said
    assert SECRET not in said
    assert len(starts) == 2


def test_seven_binds_by_descriptor_and_one_swapped_for_a_link_write_nothing_outside(
    host: tuple[Path, int | None],
) -> None:
    # more descriptors than a shell hands on (dash: up to 9) were bound by path, so a
    # scope directory swapped for a link between the judging and the start was
    # followed, and a directory the sandbox shows read-only was bound writable; the
    # server is now handed every descriptor
    base, uid = host
    (base / "ws" / ".git").mkdir()
    for i in range(1, 8):
        (base / "ws" / f"d{i}").mkdir()
    (base / "outside").mkdir()
    _chown_tree(base, os.getuid() if uid is None else uid)
    said, starts = _driver(base, uid, [str(base / "server.py"), True, "swap7"])
    assert isinstance(said, str) and "cannot open its database" in said
    assert not (base / "outside" / "pwned").exists()
    assert len(starts) == 2  # refused, then made again, judged afresh
    # the server holds its standard three and the directory ls reads, nothing else
    listed = said.split("its stderr ends:")[-1].split()
    assert [n for n in listed if n.isdigit()] == ["0", "1", "2", "3"]
