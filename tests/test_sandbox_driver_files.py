"""The driver's own files a step reaches through the workspace, as root and as a user.

A project virtualenv at ``<workspace>/.venv`` that ``trestle`` itself runs from is
read-only to every step: a ``.pth`` file a ``run:`` step plants there would run in the
next driver, outside the sandbox. A store named through a link in the workspace, which
a step could point elsewhere for the next driver, is said at the run's start and by
``trestle show``. The drivers are made as in ``tests/test_boundary.py``.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

from test_approvals_cli import flat, run_id_of
from test_boundary import USER, Target, UserCli, _chown_tree, driver
from trestle.execution.driver_files import DriverFiles, _driver_python, named_paths

__all__ = ["driver"]  # the fixture, run as root and as uid 1000

PLANT = """\
goal: plant code in the driver's Python
steps:
  - id: plant
    approval: auto
    run: |
      cp planted.pth {site}/zz_planted.pth 2>/dev/null || echo refused > refused.txt
      mkdir -p other/lib/site-packages && cp planted.pth other/lib/site-packages/ok.pth
"""


def _owner(cli: UserCli) -> int:
    return USER if cli.uid is not None else os.getuid()


def test_a_pth_a_step_plants_in_the_drivers_venv_in_the_workspace_never_runs_in_the_driver(
    driver: tuple[UserCli, Target],
) -> None:
    cli, target = driver
    venv = cli.dir / ".venv"
    subprocess.run([target.python, "-m", "venv", "--without-pip", str(venv)], check=True)
    mark = target.host / "planted-ran"  # read-only to steps: only the driver can write it
    cli.write("planted.pth", f"import os; open({str(mark)!r}, 'w').write('ran')\n")
    [site] = venv.glob("lib/python3*/site-packages")
    cli.write("plan.yaml", PLANT.format(site=site.relative_to(cli.dir)))
    _chown_tree(cli.dir, _owner(cli))
    cli = dataclasses.replace(cli, python=str(venv / "bin" / "python"))

    ran = cli("run", "plan.yaml", "--no-live")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    shown = cli("show", run_id_of(ran))  # a fresh driver from that virtualenv

    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert not mark.exists(), "a .pth a step planted ran in the driver"
    assert (cli.dir / "refused.txt").exists()
    assert (cli.dir / "other" / "lib" / "site-packages" / "ok.pth").exists()  # another venv
    assert f"read-only to commands (the driver's own Python): {venv}" in flat(ran.stdout)
    assert "cannot hold" not in shown.stdout  # held: nothing to warn about


def test_a_store_named_through_a_link_in_the_workspace_is_said_at_start_and_by_show(
    driver: tuple[UserCli, Target],
) -> None:
    cli, target = driver
    link = cli.dir / "state"
    link.symlink_to(target.host / "store")
    os.chown(link, _owner(cli), _owner(cli), follow_symlinks=False)
    cli = dataclasses.replace(cli, store=link / "trestle.db")
    cli.write("plan.yaml", "goal: g\nsteps:\n  - id: a\n    run: echo a\n")
    _chown_tree(cli.dir / "plan.yaml", _owner(cli))

    ran = cli("run", "plan.yaml", "--no-live")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    shown = cli("show", run_id_of(ran))

    said = f"the store is named through the workspace ({link / 'trestle.db'})"
    assert said in flat(ran.stderr)
    assert said in flat(shown.stdout)
    assert "keep the store out of the workspace" in flat(shown.stdout)


def test_what_holds_and_what_is_said_of_each_layout(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / ".venv" / "lib" / "site-packages").mkdir(parents=True)
    (ws / ".venv" / "lib64").symlink_to("lib")  # inside the read-only venv: fixed
    (ws / "src").mkdir()
    (ws / "var" / "cfg").mkdir(parents=True)
    (ws / "var" / "id.key").write_text("k")
    (tmp_path / "venv").mkdir()
    (ws / "linked-venv").symlink_to(tmp_path / "venv")
    (tmp_path / "ws-store").symlink_to(ws / "var")  # a link outside, into the workspace
    venv = str(ws / ".venv")
    site = str(ws / ".venv" / "lib64" / "site-packages")

    held = _driver_python(ws, (venv,), (site,), "/elsewhere/trestle")
    assert held == DriverFiles(held=(ws / ".venv",), exposed=())
    linked = _driver_python(ws, (str(ws / "linked-venv"),), (), "/elsewhere/trestle")
    assert linked.held == ()
    assert f"environment {ws / 'linked-venv'} is reached through" in linked.exposed[0]
    assert "move the virtualenv out of the workspace" in linked.exposed[0]
    source = _driver_python(ws, (venv,), (str(ws / "src"),), "/elsewhere/trestle")
    assert len(source.exposed) == 1 and f"imports Python from {ws / 'src'}" in source.exposed[0]

    said = named_paths(
        ws,
        {
            "the store": ws / "linked-venv" / "trestle.db",  # a link in the workspace
            "the approval key": ws / "keys" / "approval.key",  # a name a step may make
            "the configuration": ws / "var" / "cfg",  # a real directory: hidden, pinned
            "the identity key": tmp_path / "ws-store" / "id.key",  # a link outside
            "the accounts": None,
        },
    )
    assert [s.split(" is named")[0] for s in said] == ["the store", "the approval key"]
