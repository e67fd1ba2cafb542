"""``python -m trestle`` run from the workspace, as the trestle command is: a module a
command plants there is never what the driver imports.

``-m`` puts the working directory first on the import path. A plan step's command
plants ``wave/`` (a standard module nothing imported yet) in the workspace; a later
``python:`` hook, trusted code run by the driver, imports ``wave`` when it runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PLANTED = "import pathlib; pathlib.Path('pwned').write_text('the driver')"


def test_a_module_a_command_planted_in_the_workspace_is_not_imported_by_the_driver(
    tmp_path: Path,
) -> None:
    ws, home = tmp_path / "ws", tmp_path / "home"
    ws.mkdir()
    home.mkdir()
    (ws / "hooks.py").write_text("def go(ctx):\n    import wave\n    return True\n")
    (ws / "plan.yaml").write_text(
        "goal: plant a module\nsteps:\n"
        "  - id: plant\n    approval: auto\n"
        f'    run: mkdir wave && echo "{PLANTED}" > wave/__init__.py\n'
        "  - id: hook\n    needs: [plant]\n    python: hooks:go\n"
    )
    ran = subprocess.run(
        [sys.executable, "-m", "trestle", "run", "plan.yaml", "--no-live"],
        cwd=ws,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(home),
            "TRESTLE_STORE": str(home / "t.db"),
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),  # the trestle under test
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert (ws / "wave" / "__init__.py").exists(), ran.stdout + ran.stderr  # planted
    assert not (ws / "pwned").exists(), "the driver imported the planted module"
    assert ran.returncode == 0, ran.stdout + ran.stderr
