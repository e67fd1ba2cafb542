"""Approvals from the command line: the real ``trestle`` console script in subprocesses.

Each test runs ``python -m trestle`` on real plan files and shell steps, with
``$TRESTLE_STORE`` pointing at a fresh SQLite file, and checks what a person sees:
exit codes, the inbox and its cards, the messages of refused commands, the files the
steps leave behind, and the exported feedback. Every ``trestle run`` and ``trestle
resume`` is its own process, so each decision crosses a process exit (a durable wait).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pty
import re
import select
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from forked_cli import run_trestle
from trestle.engines.local import LocalEngine
from trestle.formats.planfile import parse_plan
from trestle.lifecycle.runs import create_run
from trestle.store import SqliteStore

RUN_LINE = re.compile(r"run (\d{8}-\d{6}-[0-9a-f]{4})")
WIDTH = "200"  # wide enough that no card line wraps
PATIENCE = 60.0  # how long a conversation may take before the child is killed


@dataclass(frozen=True)
class Cli:
    """``trestle`` run in ``dir`` with ``$TRESTLE_STORE`` pointing at ``store``."""

    dir: Path
    store: Path
    # in a fork of the worker's zygote (tests/forked_cli.py), when started as
    # `python -m trestle`; False: a fresh interpreter each time
    forked: ClassVar[bool] = True

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "TRESTLE_STORE"}
        env.update(COLUMNS=WIDTH, NO_COLOR="1", TERM="dumb", TRESTLE_STORE=str(self.store))
        env.update(extra)
        return env

    def launcher(self) -> list[str]:
        """How ``trestle`` is started: this Python, as a module."""
        return [sys.executable, "-m", "trestle"]

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        if self.forked and self.launcher() == Cli.launcher(self):
            return run_trestle(args, cwd=self.dir, env=self.env(**env))
        return subprocess.run(
            [*self.launcher(), *args],
            cwd=self.dir,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def json(self, *args: str) -> Any:
        result = self(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def write(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def lines(self, name: str) -> list[str]:
        path = self.dir / name
        return path.read_text("utf-8").splitlines() if path.exists() else []

    def start(self, plan: str, expect: int = 3) -> str:
        """``trestle run`` a plan that stops to wait (exit 3); return the run id."""
        self.write("plan.yaml", plan)
        result = self("run", "plan.yaml")
        assert result.returncode == expect, result.stdout + result.stderr
        return run_id_of(result)


def run_id_of(result: subprocess.CompletedProcess[str]) -> str:
    match = RUN_LINE.fullmatch(result.stdout.splitlines()[0])
    assert match, f"first line is not `run <id>`: {result.stdout[:200]!r}"
    return match.group(1)


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(dir=tmp_path, store=tmp_path / "trestle.db")


DEPLOY = """
    goal: release 1.2 to production
    steps:
      - id: build
        run: echo built >> build.log
      - id: deploy
        description: put the release live
        needs: [build]
        run: echo deployed >> deploys.log
        irreversible: true
        reasoning: the build passed and the release window is open
        confidence: 0.9
        uncertainties: [the CDN cache may serve the old assets for a while]
      - id: announce
        needs: [deploy]
        run: echo announced >> announce.log
"""


# --- waiting, deciding, resuming ---------------------------------------------------------


def test_a_waiting_run_exits_and_a_fresh_process_continues_after_approval(cli: Cli) -> None:
    run_id = cli.start(DEPLOY)
    assert cli.lines("build.log") == ["built"]
    assert not (cli.dir / "deploys.log").exists()

    shown = cli("inbox")
    assert shown.returncode == 0, shown.stderr
    card = [line.rstrip() for line in shown.stdout.splitlines()]
    assert card[0] == f"approval {run_id}.1"
    assert {
        "goal           release 1.2 to production",
        "step           deploy: put the release live",
        "action         run: echo deployed >> deploys.log",
        "asked because  'deploy' is irreversible [irreversible]",
        "reasoning      the build passed and the release window is open",
        "confidence     0.90",
        "done so far    build (2 remaining)",
        "if approved    step 'deploy' runs this exact action",
        "if rejected    step 'deploy' does not run and fails with your reason; "
        "steps that need it are blocked",
    } <= set(card)
    assert any(line.startswith("uncertain      the CDN cache may serve") for line in card)
    assert f"decide: trestle approve {run_id}.1  |  trestle reject {run_id}.1 --reason ..." in card

    approved = cli("approve", f"{run_id[-4:]}.1")  # a unique tail of the ref will do
    assert approved.returncode == 0, approved.stderr
    assert flat(approved.stdout) == (
        f"approved {run_id}.1: queued (request 1); it will be applied or refused when the "
        f"run is resumed: `trestle resume {run_id}`"
    )
    assert not (cli.dir / "deploys.log").exists()  # nothing runs until the run is driven

    resumed = cli("resume", run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"decided  {run_id}.1: approve by " in resumed.stdout
    assert cli.lines("deploys.log") == ["deployed"]
    assert cli.lines("announce.log") == ["announced"]
    assert cli.lines("build.log") == ["built"]  # what was done before is not done again
    assert cli("resume", run_id).returncode == 0
    assert cli.lines("deploys.log") == ["deployed"]
    assert cli("inbox").stdout.strip() == "inbox is empty"


def test_an_operator_rule_in_trestle_toml_beats_the_plan(cli: Cli) -> None:
    cli.write(
        "trestle.toml",
        """
        [[policy.rules]]
        name = "releases need a human"
        tier = "confirm"
        tags = ["release"]
        """,
    )
    written = hashlib.sha256((cli.dir / "trestle.toml").read_bytes()).hexdigest()
    accepted = cli("policy", "accept", "--sha256", written)  # its author accepts it
    assert accepted.returncode == 0, accepted.stderr
    run_id = cli.start(
        """
        policy:
          rules:
            - {name: releases are routine, tier: auto, tags: [release]}
        steps:
          - {id: tag, run: echo tagged >> tags.log, tags: [release]}
        """
    )
    [card] = cli.json("inbox")
    assert (card["ref"], card["rule"]) == (f"{run_id}.1", "operator.rules[0]")
    assert card["why"] == "operator rule 'releases need a human' forces confirm: tag 'release'"
    assert not (cli.dir / "tags.log").exists()


def test_the_inbox_lists_open_approvals_across_runs(cli: Cli) -> None:
    first = cli.start(DEPLOY)
    second = cli.start(
        """
        goal: tidy the history
        steps:
          - {id: push, run: git push --force origin main}
        """
    )
    cards = cli.json("inbox")
    assert [(c["ref"], c["step"], c["rule"]) for c in cards] == [
        (f"{first}.1", "deploy", "irreversible"),
        (f"{second}.1", "push", "confirm_commands"),
    ]
    assert cards[1]["action"]["command"] == "git push --force origin main"
    assert cards[1]["goal"] == "tidy the history"

    table = cli("inbox").stdout.splitlines()
    assert [line.rstrip() for line in table if line.startswith("approval ")] == [
        f"approval {first}.1",
        f"approval {second}.1",
    ]
    assert [c["ref"] for c in cli.json("inbox", "--run", second)] == [f"{second}.1"]


def test_the_card_of_a_write_shows_its_diff_against_the_file_on_disk(cli: Cli) -> None:
    cli.write("conf/app.toml", "name = demo\nport = 80\n")
    cli.start(
        """
        steps:
          - id: config
            write: {path: conf/app.toml, content: "name = demo\\nport = 8080\\n"}
            approval: confirm
          - id: fresh
            write: {path: new.toml, content: "x = 1\\n"}
            approval: confirm
        """
    )  # in another folder: not a group with the first, so shown in full too
    text = [line.rstrip() for line in cli("inbox").stdout.splitlines()]
    assert "action         write conf/app.toml (24 characters)" in text
    at = text.index("--- a/conf/app.toml")
    assert text[at : at + 6] == [
        "--- a/conf/app.toml",
        "+++ b/conf/app.toml",
        "@@ -1,2 +1,2 @@",
        " name = demo",
        "-port = 80",
        "+port = 8080",
    ]
    at = text.index("--- /dev/null")
    assert text[at : at + 4] == ["--- /dev/null", "+++ b/new.toml", "@@ -0,0 +1 @@", "+x = 1"]
    assert (cli.dir / "conf/app.toml").read_text() == "name = demo\nport = 80\n"


# --- rejecting, editing, exporting -------------------------------------------------------


def test_a_rejection_is_recorded_blocks_dependents_and_is_exported(cli: Cli) -> None:
    run_id = cli.start(DEPLOY)
    rejected = cli("reject", f"{run_id}.1", "--reason", "wait for the freeze to end")
    assert rejected.returncode == 0, rejected.stderr
    resumed = cli("resume", run_id, "--report-json", "report.json")

    assert resumed.returncode == 1, resumed.stdout  # partial: a required step failed
    assert f"decided  {run_id}.1: reject by " in resumed.stdout
    report = json.loads((cli.dir / "report.json").read_text())
    steps = {s["id"]: s for s in report["steps"]}
    assert steps["deploy"]["category"] == "failed"
    assert steps["deploy"]["reason"].endswith(": wait for the freeze to end")
    assert (steps["announce"]["category"], steps["announce"]["blocked_by"]) == (
        "blocked",
        "deploy",
    )
    assert not (cli.dir / "deploys.log").exists()  # the irreversible step never ran
    assert not (cli.dir / "announce.log").exists()

    exported = cli("feedback", "export")
    assert exported.returncode == 0, exported.stderr
    [row] = [json.loads(line) for line in exported.stdout.splitlines()]
    assert (row["ref"], row["decision"], row["reason"]) == (
        f"{run_id}.1",
        "rejected",
        "wait for the freeze to end",
    )
    assert (row["step"], row["rule"], row["tier"]) == ("deploy", "irreversible", "confirm")
    assert row["action"]["command"] == "echo deployed >> deploys.log"
    assert row["goal"] == "release 1.2 to production" and row["confidence"] == 0.9
    assert row["decided_at"] >= row["requested_at"]

    to_file = cli("feedback", "export", "-o", "feedback.jsonl")
    assert to_file.returncode == 0 and to_file.stdout == ""
    assert (cli.dir / "feedback.jsonl").read_text() == exported.stdout


EDITOR = """
import os, pathlib, sys

path = pathlib.Path(sys.argv[1])
text = path.read_text()
pathlib.Path(sys.argv[0]).with_name("seen.yaml").write_text(text)
pathlib.Path(sys.argv[0]).with_name("cwd.txt").write_text(os.getcwd())
path.write_text(text.replace("production", "staging"))
"""


def test_approve_edit_runs_the_edited_action_not_the_original(cli: Cli) -> None:
    editor = cli.write("editor.py", EDITOR)
    run_id = cli.start(
        """
        steps:
          - id: deploy
            run: echo production >> targets.log
            irreversible: true
        """
    )
    edited = cli("approve", f"{run_id}.1", "--edit", EDITOR=f"{sys.executable} {editor}")
    assert edited.returncode == 0, edited.stderr

    seen = (cli.dir / "seen.yaml").read_text()
    assert seen.startswith("# Edit the action of step 'deploy', save and quit to approve")
    # not started in the workspace, whose editor configuration a step may have written
    started_in = Path((cli.dir / "cwd.txt").read_text())
    assert started_in != cli.dir and cli.dir not in started_in.parents
    assert "run: echo production >> targets.log" in seen
    assert cli("resume", run_id).returncode == 0
    assert cli.lines("targets.log") == ["staging"]
    [row] = [json.loads(line) for line in cli("feedback", "export").stdout.splitlines()]
    assert row["decision"] == "modified"
    assert row["action"]["command"] == "echo staging >> targets.log"


def test_after_approve_edit_report_log_and_feedback_name_the_action_that_ran(cli: Cli) -> None:
    editor = cli.write("editor.py", EDITOR)
    run_id = cli.start(
        """
        steps:
          - id: deploy
            run: echo production >> targets.log
            irreversible: true
        """
    )
    assert (
        cli("approve", f"{run_id}.1", "--edit", EDITOR=f"{sys.executable} {editor}").returncode == 0
    )
    resumed = cli("resume", run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert cli.lines("targets.log") == ["staging"]
    [decided] = [e for e in cli.json("log", run_id) if e["kind"] == "approval_decided"]
    by = decided["by"]

    ran, planned = "echo staging >> targets.log", "echo production >> targets.log"
    assert f"decided  {run_id}.1: approved as edited by {by}: {ran}" in resumed.stdout
    report = flat(resumed.stdout.split(f"run {run_id}: succeeded")[1])
    assert f"'deploy' made an irreversible change ({ran}); review it." in report
    assert f"'deploy' runs the action as {by} edited it ({ran}), not as planned ({planned})." in (
        report
    )
    [step] = cli.json("show", run_id)["steps"]
    assert (step["action"], step["edited_by"]) == (ran, by)
    assert f"approval 1: modify by {by}; runs as edited: {ran}" in flat(cli("log", run_id).stdout)
    [row] = [json.loads(line) for line in cli("feedback", "export").stdout.splitlines()]
    assert (row["action"]["command"], row["edited_by"]) == (ran, by)
    assert row["planned_action"]["command"] == planned


def test_an_editor_that_fails_or_empties_the_file_approves_nothing(cli: Cli) -> None:
    run_id = cli.start(DEPLOY)
    failed = cli("approve", f"{run_id}.1", "--edit", EDITOR="false")
    assert failed.returncode == 2
    assert "false exited with 1; nothing was approved" in flat(failed.stderr)
    emptied = cli("approve", f"{run_id}.1", "--edit", EDITOR="truncate -s 0")
    assert emptied.returncode == 2
    assert "the edit was emptied: nothing was approved" in flat(emptied.stderr)
    assert cli("resume", run_id).returncode == 3
    assert not (cli.dir / "deploys.log").exists()


def test_an_edit_that_moves_a_write_out_of_the_workspace_is_refused_before_queueing(
    cli: Cli, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside") / "note.txt"
    editor = cli.write(
        "editor.py",
        f"""
        import pathlib, sys

        path = pathlib.Path(sys.argv[1])
        path.write_text(path.read_text().replace("path: note.txt", "path: {outside}"))
        """,
    )
    run_id = cli.start(
        """
        steps:
          - id: note
            approval: confirm
            write: {path: note.txt, content: hello}
        """
    )
    edited = cli("approve", f"{run_id}.1", "--edit", EDITOR=f"{sys.executable} {editor}")
    assert edited.returncode == 2
    assert (
        f"step 'note': the edited action is invalid: write.path: '{outside}' leads outside "
        "the workspace: give a path relative to the workspace, without '..'"
    ) in flat(edited.stderr)
    # nothing was queued: the card still waits, and no write happened anywhere
    assert [card["ref"] for card in cli.json("inbox")] == [f"{run_id}.1"]
    assert cli("resume", run_id).returncode == 3
    assert not outside.exists() and not (cli.dir / "note.txt").exists()


# --- refs and refusals -------------------------------------------------------------------


def _waiting_run(cli: Cli, run_id: str) -> None:
    """Record and drive (in this process) a run that waits on approval 1."""
    plan = parse_plan("steps:\n  - {id: push, run: git push origin main}\n")
    store = SqliteStore(cli.store)
    engine = LocalEngine(store, poll_interval=0.02)
    try:
        create_run(store, plan, workspace=cli.dir, run_id=run_id)
        assert asyncio.run(engine.run(run_id)).finished == "needs_human"
    finally:
        engine.close()
        store.close()


REFUSED_REFS = [
    ("beef.1", "error: run 'beef' is ambiguous: it matches 2 runs: 20260101-000001-beef"),
    ("cafe.1", "error: no run 'cafe' in "),
    ("20260101-000000-beef.7", "error: run '20260101-000000-beef' has no approval 7"),
    ("20260101-000000-beef", "expected RUN.N, as `trestle inbox` lists it"),
]


def test_ambiguous_and_unknown_refs_are_refused(cli: Cli) -> None:
    _waiting_run(cli, "20260101-000000-beef")
    _waiting_run(cli, "20260101-000001-beef")
    for ref, message in REFUSED_REFS:
        for command in (["approve", ref], ["reject", ref, "--reason", "no"]):
            result = cli(*command)
            assert result.returncode == 2, (ref, result.stderr)
            assert message in flat(result.stderr)
    assert len(cli.json("inbox")) == 2  # nothing was decided
    # a unique tail still works alongside them
    assert cli("approve", "0-beef.1").returncode == 0
    assert cli("reject", "1-beef.1", "--reason", "not now").returncode == 0


def test_reject_needs_a_reason_and_a_decision_cannot_be_made_twice(cli: Cli) -> None:
    run_id = cli.start(DEPLOY)
    no_reason = cli("reject", f"{run_id}.1")
    assert no_reason.returncode == 2
    assert "Missing option '--reason'" in no_reason.stderr
    empty = cli("reject", f"{run_id}.1", "--reason", "")
    assert empty.returncode == 2
    assert "a rejection needs a reason (--reason)" in flat(empty.stderr)

    assert cli("approve", f"{run_id}.1").returncode == 0
    assert cli("resume", run_id).returncode == 0
    for command in (["approve", f"{run_id}.1"], ["reject", f"{run_id}.1", "--reason", "late"]):
        again = cli(*command)
        assert again.returncode == 2
        assert f"approval '{run_id}.1' was already decided (approved by " in flat(again.stderr)
    assert cli.lines("deploys.log") == ["deployed"]


def test_a_second_decision_before_resume_is_refused_or_wins(cli: Cli) -> None:
    run_id = cli.start(DEPLOY)
    assert cli("approve", f"{run_id}.1").returncode == 0
    rejected = cli("reject", f"{run_id}.1", "--reason", "changed my mind")
    cli("resume", run_id)
    # what the person was told must be what happened
    if rejected.returncode == 0:
        assert not (cli.dir / "deploys.log").exists()
    else:
        assert rejected.returncode == 2 and "already" in flat(rejected.stderr)


SNEAKY = """
    steps:
      - {{id: deploy, run: echo deployed >> deploys.log, irreversible: true}}
      - id: sneaky
        run: >-
          {python} -m trestle approve $TRESTLE_RUN_ID.1 > approve.out 2>&1;
          echo $? >> codes.log;
          {python} -m trestle reject $TRESTLE_RUN_ID.1 --reason x > reject.out 2>&1;
          echo $? >> codes.log
"""


def test_a_step_cannot_decide_its_runs_approvals(cli: Cli) -> None:
    run_id = cli.start(SNEAKY.format(python=sys.executable))
    assert cli.lines("codes.log") == ["2", "2"]
    for name in ("approve.out", "reject.out"):
        text = flat((cli.dir / name).read_text())
        assert text == "error: decisions cannot be made from inside a running step"
    [card] = cli.json("inbox")
    assert (card["ref"], card["status"]) == (f"{run_id}.1", "pending")
    assert cli("resume", run_id).returncode == 3
    assert not (cli.dir / "deploys.log").exists()


# --- audits after the fact ---------------------------------------------------------------


AUDITED = """
    policy: {audit_rate: 1}
    steps:
      - {id: notes, run: echo noted >> notes.log}
"""


def test_an_after_the_fact_review_is_decided_from_the_cli(cli: Cli) -> None:
    run_id = cli.start(AUDITED, expect=0)
    report = cli.json("show", run_id)
    assert f"'notes' ran and was drawn for review: see approval {run_id}.1." in report["to_check"]
    [card] = cli.json("inbox", "--run", run_id)
    assert (card["subject"], card["blocking"], card["step"]) == ("audit", False, "notes")
    assert card["on_approve"] == "the review is recorded (the action already ran)"
    assert cli("reject", f"{run_id}.1", "--reason", "should have asked first").returncode == 0
    assert cli("resume", run_id).returncode == 0
    [row] = [json.loads(line) for line in cli("feedback", "export").stdout.splitlines()]
    assert (row["subject"], row["decision"], row["reason"]) == (
        "audit",
        "rejected",
        "should have asked first",
    )
    assert cli.lines("notes.log") == ["noted"]


def test_the_inbox_shows_reviews_of_runs_that_succeeded(cli: Cli) -> None:
    run_id = cli.start(AUDITED, expect=0)
    assert [c["ref"] for c in cli.json("inbox")] == [f"{run_id}.1"]


# --- the interactive prompt --------------------------------------------------------------


def _converse(cli: Cli, argv: list[str], answers: list[tuple[str, str]]) -> tuple[int, str]:
    """Run ``trestle`` on a pseudo-terminal, giving each answer once its prompt shows.

    Returns the exit code (negative if it had to be killed) and the screen's text.
    """
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trestle", *argv],
        cwd=cli.dir,
        env=cli.env(TERM="xterm"),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        close_fds=True,
    )
    os.close(slave)
    screen, answered_at = "", 0
    pending = list(answers)
    deadline = time.monotonic() + PATIENCE
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if not select.select([master], [], [], 0.05)[0]:
                continue
            try:
                screen += os.read(master, 4096).decode("utf-8", "replace")
            except OSError:  # the child has closed the terminal
                break
            if pending and screen[answered_at:].rstrip().endswith(pending[0][0]):
                os.write(master, pending.pop(0)[1].encode())
                answered_at = len(screen)
    finally:
        if proc.poll() is None:
            proc.kill()  # stuck at a prompt no answer was given for
        code = proc.wait()
        os.close(master)
    return code, re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)


def test_run_on_a_terminal_asks_and_goes_on(cli: Cli) -> None:
    cli.write("plan.yaml", DEPLOY)
    code, screen = _converse(
        cli,
        ["run", "plan.yaml", "--no-live"],
        [("[l]ater?", "a\n")],
    )
    assert code == 0, screen
    assert "asked because  'deploy' is irreversible [irreversible]" in screen
    assert cli.lines("deploys.log") == ["deployed"]
    assert cli.lines("announce.log") == ["announced"]


def test_a_rejection_at_the_prompt_asks_for_a_reason(cli: Cli) -> None:
    cli.write("plan.yaml", DEPLOY)
    code, screen = _converse(
        cli,
        ["run", "plan.yaml", "--no-live"],
        [("[l]ater?", "r\n"), ("fed back):", "not during the freeze\n")],
    )
    assert code == 1, screen
    assert not (cli.dir / "deploys.log").exists()
    [row] = [json.loads(line) for line in cli("feedback", "export").stdout.splitlines()]
    assert (row["decision"], row["reason"]) == ("rejected", "not during the freeze")


# --- what approve --similar covers ---------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout


def test_approve_similar_never_covers_a_chained_command(cli: Cli, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(cli.dir, "init", "-q")
    git(cli.dir, "config", "user.name", "t")
    git(cli.dir, "config", "user.email", "t@example.com")
    git(cli.dir, "remote", "add", "origin", str(remote))
    run_id = cli.start(
        """
        goal: commit and publish
        steps:
          - id: one
            run: git commit --allow-empty -q -m one
          - id: two
            needs: [one]
            run: git commit --allow-empty -q -m two
          - id: sneaky
            needs: [two]
            run: git commit --allow-empty -q -m three; touch X; git push -q origin HEAD:main
        """
    )
    card = [line.rstrip() for line in cli("inbox").stdout.splitlines()]
    assert (
        "if --similar   also approves later commands asked for the same reason that are exactly "
        "`git commit --allow-empty -q -m <message>` with any message"
    ) in card
    assert cli("approve", f"{run_id}.1", "--similar").returncode == 0
    resumed = cli("resume", run_id)
    assert resumed.returncode == 3, resumed.stdout + resumed.stderr

    assert git(cli.dir, "log", "--format=%s").split() == ["two", "one"]  # 'two' was covered
    assert not (cli.dir / "X").exists()
    assert git(remote, "for-each-ref") == ""  # nothing reached the remote
    [waiting] = cli.json("inbox")
    assert waiting["step"] == "sneaky" and waiting["ref"] == f"{run_id}.2"
    shown = flat(cli("inbox").stdout)
    assert "if --similar approves nothing more: this command is not one plain simple" in shown
