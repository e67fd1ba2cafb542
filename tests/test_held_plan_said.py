"""A step whose command tries to rewrite the plan it runs from fails with the system's
words, ``Read-only file system``, which name neither the sandbox nor the plan. The
report says why and what to do instead, and ``trestle log`` keeps the run's
``commands sandboxed`` line, which names the plan files held.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from test_approvals_cli import Cli, flat, run_id_of
from test_sandbox import _require_bwrap

PLAN = """\
goal: a step that edits its own plan
steps:
  - id: edit
    run: "echo '# changed' >> plan.yaml"
"""


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(dir=tmp_path, store=tmp_path / "trestle.db")


def test_a_step_that_rewrites_its_plan_is_told_why_it_failed(cli: Cli) -> None:
    _require_bwrap()
    cli.write("plan.yaml", PLAN)
    result = cli("run", "plan.yaml")
    assert result.returncode == 3, result.stdout + result.stderr
    assert (cli.dir / "plan.yaml").read_text() == PLAN
    run = run_id_of(result)
    said = flat(result.stdout)
    assert "cannot create plan.yaml: Read-only file system" in said
    hint = (
        "the output of 'edit' says a file could not be changed: the sandbox keeps .git, "
        "trestle.toml, the system and every plan file a run has used (with its python: "
        "code) read-only to commands; the run's `commands sandboxed` line names the plan "
        f"files held (`trestle log {run}`; docs/security.md)."
    )
    assert hint in said
    assert hint in flat(cli("show", run).stdout)

    # wide enough that the row is one line
    row = [
        line for line in cli("log", run, COLUMNS="500").stdout.splitlines() if "sandbox_" in line
    ]
    held = (cli.dir / "plan.yaml").resolve()
    assert f"read-only to commands (plan files and their python: code): {held}" in flat(row[0])


def test_a_step_that_fails_otherwise_is_not_told_about_the_sandbox(cli: Cli) -> None:
    cli.write("plan.yaml", "steps:\n  - id: broken\n    run: exit 4\n")
    result = cli("run", "plan.yaml")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "could not be changed" not in result.stdout
