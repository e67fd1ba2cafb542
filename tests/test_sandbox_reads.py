"""A ``sandbox.read`` entry a step can redirect shows nothing hidden, as root and as a
user.

The operator lists paths to show read-only; bubblewrap binds each wherever it
resolves when a command starts. Here one command of a step rewrites the workspace
(a link on the way to an entry now leads to the store's directory, the configuration
directory or its parent) and the next command reads through the entry. The driver,
root or uid 1000 (through ``setpriv``, as in ``test_boundary.py``), runs both in the
sandbox: no secret is read, and the second command's output names the entry left
out. Ordinary entries (a toolchain in the hidden home, a link to one outside the
workspace) are still shown.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from test_boundary import driver_host, run_as_driver
from test_sandbox import SECRET

# case: (the read entry, what a command points ws/data at first or "", what is read)
CASES = {
    "a workspace link to the store": ("home/data", "store", "home/data/secret"),
    "a workspace link to the configuration": (
        "home/data",
        "home/.config/trestle",
        "home/data/approval.key",
    ),
    "a workspace link to a hidden path's parent": (
        "home/data",
        "home/.config",
        "home/data/trestle/approval.key",
    ),
    "the workspace by another name": ("home/proj/data", "store", "home/proj/data/secret"),
    "an entry in the workspace": ("ws/data", "store", "ws/data/secret"),
    "a link beside the workspace to a hidden path's parent": (
        "home/cfg",
        "",
        "home/cfg/trestle/approval.key",
    ),
    "a toolchain in the home": ("home/tools", "", "home/tools/tool.txt"),
    "a link to a toolchain outside the workspace": ("home/sdk", "", "home/sdk/sdk.txt"),
}
ORDINARY = ("a toolchain in the home", "a link to a toolchain outside the workspace")

# what the driver runs: for each case, a command that points ws/data somewhere, then
# one that reads through the entry, both in the sandbox
DRIVER = """
import asyncio, json, sys
from pathlib import Path
from trestle.core.policy import SandboxPolicy
from trestle.execution.actions import run_shell
from trestle.execution.sandbox import Cell, choose

base, cases = Path(sys.argv[1]), json.loads(sys.argv[2])
ws = base / "ws"
hidden = (base / "store", base / "home" / ".config" / "trestle")
env = {"PATH": "/usr/bin:/bin"}
said = {}
for case, (entry, target, read) in cases.items():
    policy = SandboxPolicy(read=(str(base / entry),))
    cell = Cell(choose("require", hidden=hidden, policy=policy), ws, "step")
    point = f"rm -rf data && ln -s {base / target} data" if target else "true"
    for command in (point, f"cat {base / read}"):
        done = asyncio.run(run_shell(command, cwd=ws, env=env, timeout=30, cell=cell))
    said[case] = done.output
print(json.dumps(said))
"""


@pytest.fixture(params=["root", "user"])
def host(request: pytest.FixtureRequest) -> Iterator[tuple[Path, int | None]]:
    yield from driver_host(request.param, "trestle-reads-", _lay_out)


def _lay_out(base: Path) -> None:
    for path in ("home/.config/trestle", "home/tools", "ws/data", "store", "opt/sdk"):
        (base / path).mkdir(parents=True)
    (base / "home/.config/trestle/approval.key").write_text(SECRET)
    (base / "store/secret").write_text(SECRET)
    (base / "home/tools/tool.txt").write_text("the tool\n")
    (base / "opt/sdk/sdk.txt").write_text("the sdk\n")
    (base / "home/data").symlink_to(base / "ws/data")
    (base / "home/cfg").symlink_to(base / "home/.config")
    (base / "home/sdk").symlink_to(base / "opt/sdk")
    (base / "home/proj").symlink_to(base / "ws")  # ~/proj: the workspace


def _driver(base: Path, uid: int | None) -> dict[str, str]:
    said = run_as_driver(base, uid, DRIVER, CASES)
    assert isinstance(said, dict)
    return said


def test_no_read_entry_a_step_can_redirect_shows_a_hidden_path(
    host: tuple[Path, int | None],
) -> None:
    base, uid = host
    said = _driver(base, uid)
    for case, (entry, _, _) in CASES.items():
        output = said[case]
        assert SECRET not in output, (case, output)
        named = f"sandbox.read {str(base / entry)!r} is not shown to this command"
        assert (named in output) == (case not in ORDINARY), (case, output)
    assert "the tool" in said["a toolchain in the home"]
    assert "the sdk" in said["a link to a toolchain outside the workspace"]
    assert "lies in the workspace" in said["an entry in the workspace"]
    assert "leads through the workspace" in said["a workspace link to the store"]
    assert "which holds" in said["a link beside the workspace to a hidden path's parent"]
