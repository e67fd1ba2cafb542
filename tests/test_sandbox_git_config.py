"""git's own configuration in the home is shown to commands only where no step can
point it elsewhere, as root and as a user.

Commands see ``~/.gitconfig`` and ``~/.config/git`` read-only (commits carry the user's
name), bound wherever they resolve when a command starts. Here ``~/.gitconfig`` is a
link into the workspace (a dotfiles checkout): one command repoints the workspace's
file at the hidden home's ssh key, and the next reads ``~/.gitconfig``. The driver,
root or uid 1000 (through ``setpriv``, as in ``test_boundary.py``), runs both in the
sandbox: the key is not read, the output says why, and a configuration kept in the
home itself is still shown.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from test_boundary import driver_host, run_as_driver
from test_sandbox import SECRET

DRIVER = """
import asyncio, json, sys
from pathlib import Path
from trestle.execution.actions import run_shell
from trestle.execution.sandbox import Cell, choose

base, commands = Path(sys.argv[1]), json.loads(sys.argv[2])
ws = base / "ws"
cell = Cell(choose("require", hidden=(base / "home" / ".config" / "trestle",)), ws, "step")
env = {"PATH": "/usr/bin:/bin", "HOME": str(base / "home")}
for command in commands:
    done = asyncio.run(run_shell(command, cwd=ws, env=env, timeout=60, cell=cell))
print(json.dumps(done.output))
"""


@pytest.fixture(params=["root", "user"])
def host(request: pytest.FixtureRequest) -> Iterator[tuple[Path, int | None]]:
    yield from driver_host(request.param, "trestle-gitconfig-", _lay_out)


def _lay_out(base: Path) -> None:
    home = base / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text(SECRET)
    (home / ".config" / "git").mkdir(parents=True)
    (home / ".config" / "git" / "config").write_text("[user]\n\tname = Ann\n")
    (base / "ws").mkdir()
    (base / "ws" / "gitconfig").write_text("[core]\n")
    (home / ".gitconfig").symlink_to(base / "ws" / "gitconfig")


def test_a_gitconfig_linked_into_the_workspace_shows_nothing_a_step_points_it_at(
    host: tuple[Path, int | None],
) -> None:
    base, uid = host
    key = base / "home" / ".ssh" / "id_ed25519"
    repoint = f"rm gitconfig && ln -s {key} gitconfig"
    output = run_as_driver(base, uid, DRIVER, [repoint, "cat ~/.gitconfig ~/.config/git/config"])
    assert isinstance(output, str)
    assert SECRET not in output
    gitconfig = base / "home" / ".gitconfig"
    assert f"git's configuration {str(gitconfig)!r} is not shown to this command" in output
    assert "leads through the workspace" in output
    assert "name = Ann" in output  # the configuration kept in the home itself
