"""No step gives a submodule's checkout a repository of its own, whatever the layout,
as root and as a user.

The operator's ``git status`` at the top of a repository asks each gitlink's checkout
for its state; a repository a step made there (here: an empty one whose configuration
names ``core.fsmonitor``) has git run the step's program outside the sandbox. Each
checkout the index lists in the workspace is held, in every layout git makes: one
checked out (its ``.git`` a ``gitdir:`` file), one deinitialised (an empty directory),
one whose directory is gone, one holding its own ``.git`` directory, one with ``"`` and
``\\`` in its path, one nested in another, one in a workspace that is a subdirectory of
its repository, and one in a linked worktree. The step tries each; then the operator,
as the owner of the files, runs ``git status`` at each repository's top, and nothing
of the step's runs. The step's ordinary writes still land.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_boundary import _as, driver_host, run_as_driver
from test_cli import Cli
from test_sandbox import _require_bwrap
from trestle.execution.submodule_checkouts import submodule_holds

DRIVER = """
import asyncio, json, sys
from pathlib import Path
from trestle.execution.actions import run_shell
from trestle.execution.sandbox import Cell, choose

base, commands = Path(sys.argv[1]), json.loads(sys.argv[2])
sandbox = choose("require", hidden=(base / "home" / ".config" / "trestle",))
env = {"PATH": "/usr/bin:/bin", "HOME": str(base / "home")}
codes = []
for workspace, command in commands:
    ws = base / workspace
    cell = Cell(sandbox, ws, "step")
    done = asyncio.run(run_shell(command, cwd=ws, env=env, timeout=60, cell=cell))
    codes.append(done.exit_code)
print(json.dumps(codes))
"""

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@x", "-c", "protocol.file.allow=always"]

# a repository of the step's making in checkout $1, whose configuration runs a program
# (it leaves WORKSPACE-pwned-$2 beside the workspaces) at the next `git status` that asks it
PLANT = """plant() {
  d="$1/.git"; rm -rf "$d" 2>/dev/null; mkdir -p "$d/objects" "$d/refs" &&
  echo 'ref: refs/heads/main' > "$d/HEAD" &&
  printf '[core]\\n\\trepositoryformatversion = 0\\n\\tfsmonitor = "touch %s-pwned-%s; false"\\n' \
    "$BASE" "$2" > "$d/config"
}
"""

ATTACKS = {
    "ws": {
        "checked out": "vendor/init",
        "deinitialised": "vendor/gone",
        "gone": "vendor/removed",
        "its own .git directory": "vendor/own",
        "an odd path": 'vendor/q"u\\o',
        "nested": "vendor/nest/inner",
    },
    "mono/sub": {"in a subdirectory workspace": "lib"},
    "wt": {"in a linked worktree": "lib"},
    "wt256": {"in a linked worktree of a SHA-256 repository": "lib"},
}
# a command before the attacks gives the subdirectory workspace a repository of its
# own, whose index lists more checkouts than one look holds: the repository above,
# whose index lists the real one, is looked at first
FLOOD = (
    "git init -q . && awk 'BEGIN { for (i = 0; i < 2100; i++) "
    'printf "160000 %s\\tx/%d\\n", "1111111111111111111111111111111111111111", i }\' '
    "| git update-index --index-info"
)


def _git(*args: str) -> None:
    subprocess.run([*GIT, *args], check=True, capture_output=True)


def _repository(path: Path, objects: str = "sha1") -> None:
    _git("init", "-q", "-b", "main", f"--object-format={objects}", str(path))
    (path / "a.txt").write_text("a\n")
    _git("-C", str(path), "add", "a.txt")
    _git("-C", str(path), "commit", "-qm", "a")


def _lay_out(base: Path) -> None:
    lib, nested, ws = base / "lib", base / "libnested", base / "ws"
    _repository(lib)
    _repository(nested)
    _git("-C", str(nested), "submodule", "-q", "add", str(lib), "inner")
    _git("-C", str(nested), "commit", "-qm", "inner")
    _repository(ws)
    for path in ("vendor/init", "vendor/gone", "vendor/removed", 'vendor/q"u\\o'):
        _git("-C", str(ws), "submodule", "-q", "add", str(lib), path)
    _git("-C", str(ws), "submodule", "-q", "add", str(nested), "vendor/nest")
    _git("-C", str(ws), "submodule", "-q", "update", "--init", "--recursive")
    _git("clone", "-q", str(lib), str(ws / "vendor" / "own"))
    _git("-C", str(ws), "add", "vendor/own")  # a gitlink whose checkout keeps its .git
    _git("-C", str(ws), "commit", "-qm", "submodules")
    _git("-C", str(ws), "submodule", "-q", "deinit", "vendor/gone", "vendor/removed")
    (ws / "vendor" / "removed").rmdir()
    mono = base / "mono"
    _repository(mono)
    _git("-C", str(mono), "submodule", "-q", "add", str(lib), "sub/lib")
    _git("-C", str(mono), "commit", "-qm", "sub")
    for suffix, objects in (("", "sha1"), ("256", "sha256")):
        sub, main = base / f"lib{suffix}", base / f"main{suffix}"
        if objects == "sha256":
            _repository(sub, objects)
        _repository(main, objects)
        _git("-C", str(main), "submodule", "-q", "add", str(sub), "lib")
        _git("-C", str(main), "commit", "-qm", "lib")
        _git("-C", str(main), "worktree", "add", "-q", str(base / f"wt{suffix}"))
        _git("-C", str(base / f"wt{suffix}"), "submodule", "-q", "update", "--init")
    (base / "home").mkdir()


@pytest.fixture(params=["root", "user"])
def host(request: pytest.FixtureRequest) -> Iterator[tuple[Path, int | None]]:
    yield from driver_host(request.param, "trestle-submodules-", _lay_out)


def _status(base: Path, uid: int | None, top: str) -> None:
    """The operator's ``git status`` at ``top``, as the files' owner."""
    prefix = [] if uid is None else _as(uid)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(base / "home")}
    subprocess.run(
        [*prefix, "git", "-C", str(base / top), "status", "--short"],
        env=env,
        capture_output=True,
        check=False,
    )


def test_no_step_gives_a_submodule_checkout_a_repository_of_its_own(
    host: tuple[Path, int | None],
) -> None:
    base, uid = host
    commands = [("mono/sub", FLOOD)]
    for workspace, checkouts in ATTACKS.items():
        tries = [f"plant '{path}' {n}" for n, path in enumerate(checkouts.values())]
        script = f"BASE={base}/{workspace.replace('/', '-')}\n{PLANT}\n" + "\n".join(tries)
        commands.append((workspace, f"echo written > note.txt\n{script}\ntrue"))
    codes = run_as_driver(base, uid, DRIVER, commands)
    assert codes == [0] * len(commands)
    for top in ("ws", "mono", "wt", "wt256"):
        _status(base, uid, top)
    ran = sorted(p.name for p in base.iterdir() if "pwned" in p.name)
    got = [
        what
        for workspace, checkouts in ATTACKS.items()
        for n, what in enumerate(checkouts)
        if f"{workspace.replace('/', '-')}-pwned-{n}" in ran
    ]
    assert got == [], f"the operator's git status ran the step's program: {got}"
    for workspace in ATTACKS:
        assert (base / workspace / "note.txt").read_text() == "written\n"
    assert (base / "ws" / "vendor" / "init" / ".git").read_text().startswith("gitdir: ")
    assert os.listdir(base / "ws" / "vendor" / "removed") == []  # made again, and empty


def _with_gitlinks(ws: Path, *names: str) -> Path:
    """``ws`` a repository whose index lists ``names`` as gitlinks; its index file."""
    _repository(ws)
    commit = subprocess.run(
        ["git", "-C", str(ws), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    for name in names:
        _git("-C", str(ws), "update-index", "--add", "--cacheinfo", f"160000,{commit},{name}")
    return ws / ".git" / "index"


def test_an_index_naming_paths_git_refuses_holds_nothing_outside_and_stops_nothing(
    tmp_path: Path,
) -> None:
    """An index a step wrote by hand (git refuses to write these): a gitlink with a NUL
    in its name, one that climbs out with ``..``, beside a plain one."""
    ws = tmp_path / "ws"
    index = _with_gitlinks(ws, "aXb", "x/zz/zz/a.txt", "ok")
    data = index.read_bytes().replace(b"aXb", b"a\0b").replace(b"zz/zz", b"../..")
    index.write_bytes(data)  # its checksum no longer matches: read as SHA-1's
    assert submodule_holds(ws.resolve()) == (ws.resolve() / "ok",)
    assert not (tmp_path / "a.txt").exists() and not (ws / "x").exists()


def test_the_workspace_a_checkout_with_no_repository_is_said_at_the_start(tmp_path: Path) -> None:
    """Nothing short of the whole workspace holds a submodule's checkout that is the
    workspace itself and has no ``.git``: the run says so as it starts."""
    _require_bwrap()
    lib, ws = tmp_path / "lib", tmp_path / "ws"
    _repository(lib)
    _repository(ws)
    _git("-C", str(ws), "submodule", "-q", "add", str(lib), "vendor/lib")
    _git("-C", str(ws), "commit", "-qm", "lib")
    _git("-C", str(ws), "submodule", "-q", "deinit", "vendor/lib")
    checkout = ws / "vendor" / "lib"
    (tmp_path / "plan.yaml").write_text("steps:\n  - id: s\n    run: echo hi > hi.txt\n")
    cli = Cli(dir=checkout, store=tmp_path / "store" / "trestle.db")
    done = cli("run", str(tmp_path / "plan.yaml"), "-w", str(checkout), "--no-live")
    assert done.returncode == 0, done.stdout + done.stderr
    said = " ".join(done.stderr.split())
    assert f"WARNING: the workspace {checkout} is the checkout of a submodule of {ws}" in said
    assert f"look at {checkout}/.git before you run git in {ws}" in said
    assert (checkout / "hi.txt").exists()
