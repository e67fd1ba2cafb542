"""The driver never runs a program a step planted on its ``PATH``, as root and as a
user.

The driver runs git (every checkpoint) and bubblewrap itself, unconfined. With a
directory of the workspace on ``PATH`` (a project's activated virtualenv,
``node_modules/.bin``), a step plants a ``git`` and a ``bwrap`` there that mark a file
outside the workspace and then run the real one. The same run's next checkpoint, and
the next drive's sandbox, must use the real programs.
"""

from __future__ import annotations

import os

from test_approvals_cli import flat, run_id_of
from test_boundary import Target, UserCli, driver  # noqa: F401 (a fixture)

# each planted program marks a file outside the workspace, then runs the real one
PLANT = "printf '#!/bin/sh\\ntouch {mark}-{name}\\nexec /usr/bin/{name} \"$@\"\\n' > bin/{name}"
PLAN = """\
steps:
  - id: plant
    run: "mkdir -p bin && {git} && {bwrap} && chmod +x bin/git bin/bwrap"
  - id: next
    needs: [plant]
    run: "true"
"""


def test_a_program_a_step_planted_on_the_path_never_runs_as_the_driver(
    driver: tuple[UserCli, Target],  # noqa: F811
) -> None:
    cli, target = driver
    mark = target.host / "PLANTED"
    git, bwrap = (
        PLANT.format(mark=mark, name=name).replace('"', '\\"') for name in ("git", "bwrap")
    )
    cli.write("plan.yaml", PLAN.format(git=git, bwrap=bwrap))
    path = f"{cli.dir / 'bin'}:/usr/bin:/bin"
    for _ in range(2):  # the run's checkpoints run git; the next drive finds bubblewrap
        result = cli("run", "plan.yaml", PATH=path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "steps: 2 done" in result.stdout
    assert (cli.dir / "bin" / "git").exists() and (cli.dir / "bin" / "bwrap").exists()
    assert sorted(p.name for p in target.host.glob("PLANTED*")) == []


# the step plants a notify-send and an editor; a desktop target is told of the approval
NOTICE_PLAN = """\
steps:
  - id: plant
    run: "mkdir -p bin && {notify} && {editor} && chmod +x bin/notify-send bin/edit"
  - id: deploy
    needs: [plant]
    run: "true"
    irreversible: true
"""


def test_a_notifier_or_editor_a_step_planted_on_the_path_never_runs(
    driver: tuple[UserCli, Target],  # noqa: F811
) -> None:
    cli, target = driver
    mark = target.host / "PLANTED"
    notify, editor = (
        f"printf '#!/bin/sh\\ntouch {mark}-{name}\\n' > bin/{name}"
        for name in ("notify-send", "edit")
    )
    cli.write("plan.yaml", NOTICE_PLAN.format(notify=notify, editor=editor))
    config = target.host / "home" / ".config" / "trestle"
    (config / "notify.toml").write_text('[targets.desk]\ntype = "desktop"\n')
    os.chown(config / "notify.toml", cli.uid or os.getuid(), cli.uid or os.getuid())
    path = f"{cli.dir / 'bin'}:/usr/bin:/bin"
    waiting = cli("run", "plan.yaml", PATH=path)  # the approval's notice: notify-send
    assert waiting.returncode == 3, waiting.stdout + waiting.stderr
    assert (cli.dir / "bin" / "notify-send").exists() and (cli.dir / "bin" / "edit").exists()
    assert sorted(p.name for p in target.host.glob("PLANTED*")) == []  # notify-send
    run_id = run_id_of(waiting)
    edited = cli("approve", f"{run_id}.1", "--edit", PATH=path, EDITOR="edit", VISUAL="")
    assert edited.returncode == 2, edited.stdout + edited.stderr
    assert "$EDITOR ('edit') is not installed outside" in flat(edited.stderr)
    assert sorted(p.name for p in target.host.glob("PLANTED*")) == []
