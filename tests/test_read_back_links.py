"""What the driver and the card read back from the workspace after a step, as root and
as a user: the step's commands made the files, so a file there may be a link to a
secret of the driver's account or to ``/proc/self/environ``, or a FIFO.

A ``file_contains`` check reads the file unconfined, and its verdict goes back to the
run (to the model, in an agent's run): a link made it an oracle on the file it named,
a FIFO held the driver for ever. The diff a card shows for a ``write:`` step (in the
terminal, on the dashboard, through the MCP tools) read the file the same way, and
showed the secret, or the reader's own environment, to whoever read the card; the diff
of a tool call read whatever path the model named, outside the workspace too.
"""

from __future__ import annotations

import asyncio
import os
import textwrap
from pathlib import Path

import pytest

from agent_helpers import of_kind, recorded
from test_boundary import Target, UserCli, driver  # noqa: F401 (a fixture)
from test_sandbox import SECRET
from trestle.cli.tool_edits import call_diff
from trestle.core.events import StepAttemptEnded
from trestle.engines.local import LocalEngine
from trestle.execution import checks
from trestle.formats.planfile import parse_plan
from trestle.lifecycle.runs import create_run, load_state
from trestle.store import SqliteStore


def test_a_check_reads_no_link_out_of_the_workspace_and_no_fifo(
    driver: tuple[UserCli, Target],  # noqa: F811
) -> None:
    cli, target = driver
    cli.write(
        "plan.yaml",
        f"""\
        steps:
          - id: plant
            run: "ln -s {target.real_home_secret} secret.txt; mkfifo pipe.txt"
            verify:
              - file_contains: secret.txt
                text: "{SECRET}"
              - file_contains: pipe.txt
                text: "x"
          - id: look
            run: "ln -s {target.real_home_secret.parent} out"
            verify:
              - file_exists: out/{target.real_home_secret.name}
          - id: links
            run: "ln -s {target.real_home_secret} there.txt; ln -s /nowhere/at-all gone.txt"
            verify:  # the links are there; where they lead is not looked at
              - file_exists: there.txt
              - file_exists: gone.txt
        """,
    )
    result = cli("run", "plan.yaml")
    said = result.stdout + result.stderr
    assert result.returncode == 3, said  # the checks failed (a human decides), saying why
    assert "secret.txt: it leads outside the workspace" in said
    # file_exists looked through a link out: an oracle on what the sandbox hides
    assert f"out/{target.real_home_secret.name}: it leads outside the workspace" in said
    assert "FAILED   links" not in said and "failed   links" not in said
    assert "pipe.txt: it is not a regular file" in said


def test_a_cards_diff_shows_no_file_a_link_leads_to(
    driver: tuple[UserCli, Target],  # noqa: F811
) -> None:
    cli, target = driver
    # the secret in the account's home, and the key in the reader's own environment
    for name, link in (("home", target.real_home_secret), ("env", "/proc/self/environ")):
        cli.write(
            f"{name}.yaml",
            f"""\
            steps:
              - id: plant
                run: "ln -s {link} {name}.txt"
              - id: note
                needs: [plant]
                write: {{path: {name}.txt, content: "hello"}}
                irreversible: true
            """,
        )
        assert cli("run", f"{name}.yaml").returncode == 3  # it waits for a human
    shown = cli("inbox")
    assert shown.returncode == 0, shown.stderr
    assert SECRET not in shown.stdout
    for name in ("home", "env"):
        assert f"({name}.txt is not shown: it leads outside the workspace" in shown.stdout


def test_a_tool_calls_diff_reads_nothing_outside_the_workspace(tmp_path: Path) -> None:
    workspace, outside = tmp_path / "ws", tmp_path / "outside.txt"
    workspace.mkdir()
    outside.write_text(SECRET)
    os.mkfifo(workspace / "pipe")
    for path in ("../outside.txt", str(outside), "pipe"):
        diff = call_diff("write_file", {"path": path, "content": "x"}, workspace)
        assert diff is not None and SECRET not in diff
        assert diff.startswith(f"({path} is not shown: "), diff
    assert "+x" in (call_diff("write_file", {"path": "new", "content": "x"}, workspace) or "")


def test_an_approval_binds_no_file_that_reads_on_past_its_size(
    driver: tuple[UserCli, Target],  # noqa: F811
) -> None:
    """An approval holds to the files its command names, hashed whole: a link to
    /proc/self/pagemap (empty by its size, 256 GB by its reading) held the driver for
    minutes before the approval was asked, and again before the approved command ran."""
    cli, _ = driver
    cli.write(
        "plan.yaml",
        """\
        steps:
          - id: plant
            run: "ln -s /proc/self/pagemap deploy.sh"
          - id: deploy
            needs: [plant]
            run: "sh deploy.sh"
            irreversible: true
        """,
    )
    waiting = cli("run", "plan.yaml")
    assert waiting.returncode == 3, waiting.stdout + waiting.stderr
    card = " ".join(cli("inbox").stdout.split())
    assert "deploy.sh (not a plain file: it reads on past its size)" in card, card


def test_a_regex_check_that_backtracks_is_stopped_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a version regex against a file of 300,000 digits and no dot: 10^11 steps of
    # backtracking, which held the interpreter's lock, so the driver ignored SIGTERM,
    # and a step beside it never had its end recorded
    monkeypatch.setattr(checks, "REGEX_SECONDS", 1.0)
    plan = parse_plan(
        textwrap.dedent(
            """\
        steps:
          - id: make
            run: "true"  # the step's commands made VERSION (written below)
            verify:
              - file_contains: VERSION
                regex: '\\d+\\.\\d+\\.\\d+'
          - id: beside
            run: "sleep 0.5"
        """
        )
    )
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "VERSION").write_text("1" * 300_000)
    store = SqliteStore(tmp_path / "store.db")
    run_id = create_run(store, plan, workspace=tmp_path / "ws")
    engine = LocalEngine(store, poll_interval=0.05)
    try:
        asyncio.run(asyncio.wait_for(engine.run(run_id), 120))
    finally:
        engine.close()
    state = load_state(store, run_id)
    assert state.steps["beside"].status == "succeeded"
    assert state.steps["make"].status == "failed"
    ended = of_kind(recorded(store, run_id), StepAttemptEnded)
    [made] = [c for e in ended if e.step == "make" for c in e.checks]
    assert not made.passed and made.actual.startswith("still searching after 1 s, stopped")
