"""A driver that is root in a user namespace of its own, as in a rootless container or
under ``unshare --map-root-user``: the system names ``/root`` as its home, and the real
root keeps that directory to itself. The sandbox hides a home's credentials beside the
tools it shows (``~/.cargo/credentials``); asking whether they were there raised
PermissionError, and every sandboxed command of such a driver failed before it ran."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_boundary import SOURCE, _as, _python_for, driver_host

PLAN = """\
goal: a command of a driver that is root in its own user namespace
steps:
  - id: hello
    run: echo ran > out.txt
"""


def lay_out(base: Path) -> None:
    for name in ("ws", "home", "store"):
        (base / name).mkdir()
    (base / "ws" / "plan.yaml").write_text(PLAN)


@pytest.fixture
def host() -> Iterator[tuple[Path, int | None]]:
    yield from driver_host("user", "trestle-userns-", lay_out)


def test_a_driver_that_is_root_in_its_own_user_namespace_runs_its_commands_sandboxed(
    host: tuple[Path, int | None],
) -> None:
    base, uid = host
    assert uid is not None
    if shutil.which("unshare") is None:
        pytest.fail("no `unshare` (util-linux) to give the driver a user namespace")
    searchable = subprocess.run([*_as(uid), "test", "-x", "/root"], check=False)
    if searchable.returncode == 0:
        pytest.skip(f"uid {uid} may search /root here: nothing is kept from it")
    python = _python_for(uid)
    ours = [p for p in sys.path if p.startswith((sys.prefix, str(SOURCE)))]
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(base / "home"),
        "PYTHONPATH": os.pathsep.join(ours),
        "TRESTLE_STORE": str(base / "store" / "trestle.db"),
        "TRESTLE_KEY_FILE": str(base / "home" / "approval.key"),
    }
    as_root_inside = ["unshare", "--user", "--map-root-user"]
    run = [python, "-m", "trestle", "run", "plan.yaml", "--sandbox", "require", "--no-live"]
    done = subprocess.run(
        [*_as(uid), *as_root_inside, *run, "--no-prompt"],
        cwd=base / "ws",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "sandboxed (bubblewrap)" in done.stdout + done.stderr
    assert (base / "ws" / "out.txt").read_text() == "ran\n"
