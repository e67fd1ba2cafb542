"""Commands a model writes are actions: tiered, shown and approved before they run.

An agent's plan carries ``verify`` commands and its findings may name the test
command; both run in the workspace like any step. A plan whose command pushes or
publishes waits for a human at its review even when plans are otherwise approved
automatically, the review's card lists every such command with its tier, and the
approval's hash covers them. Whatever a tool, a check or a test printed reaches the
model with secrets redacted.

Real git repositories (a bare remote the push would reach), real SQLite stores and
real subprocesses; only the model is scripted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_helpers import (
    FIX_STEP,
    TEST_COMMAND,
    agent_settings,
    call,
    drive,
    findings_json,
    fix_replies,
    plan_json,
    plan_step,
    recorded,
    sample_workspace,
    start_run,
    state_of,
)
from trestle.agent.runtime import MODELS_OWN_CHECK
from trestle.core.card import HandoffCard, build_card
from trestle.core.events import ApprovalRequested
from trestle.core.redaction import _SHAPES, redact, secret_values
from trestle.models import ScriptedModel
from trestle.store.sqlite import SqliteStore


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "store.db")


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, Path]:
    """The sample workspace as a git repository with one commit, and a bare remote."""
    workspace = sample_workspace(tmp_path)
    remote = tmp_path / "remote.git"
    _git(tmp_path, "init", "-q", "--bare", str(remote))
    _git(workspace, "init", "-q", "-b", "main")
    _git(workspace, "config", "user.email", "dev@example.com")
    _git(workspace, "config", "user.name", "dev")
    _git(workspace, "add", "-A")
    _git(workspace, "commit", "-q", "-m", "start")
    _git(workspace, "remote", "add", "origin", str(remote))
    return workspace, remote


def _pushed(remote: Path) -> bool:
    return bool(_git(remote, "for-each-ref").strip())


def _review_card(store: SqliteStore, run_id: str) -> HandoffCard:
    (asked,) = [e for e in recorded(store, run_id) if isinstance(e, ApprovalRequested)]
    assert asked.step == "review"
    return build_card(state_of(store, run_id), asked.approval)


def test_a_verify_command_that_pushes_makes_the_plan_wait_for_a_human(
    store: SqliteStore, repo: tuple[Path, Path]
) -> None:
    workspace, remote = repo
    pushing = plan_step(
        "fix",
        "add() returns the sum",
        files=["calc.py"],
        verify=[{"command": "git push origin main"}],
    )
    run_id = start_run(store, workspace, settings=agent_settings(plan_approval="auto"))
    replies = fix_replies()
    replies[2] = plan_json(pushing, summary="fix add")
    model = ScriptedModel(replies)

    drive(store, run_id, model)

    state = state_of(store, run_id)
    assert state.steps["review"].status == "awaiting_approval"
    assert state.steps["fix"].status == "pending"
    assert not _pushed(remote)
    card = _review_card(store, run_id)
    assert card.tier == "confirm"
    assert "fix verify[0]: `git push origin main` (confirm:" in card.objective
    assert card.action is not None and "git push origin main" in (card.action.agent or "")


def test_the_models_own_test_command_is_tiered_and_on_the_card(
    store: SqliteStore, repo: tuple[Path, Path]
) -> None:
    workspace, remote = repo
    settings = agent_settings(plan_approval="auto", test_command=None)
    run_id = start_run(store, workspace, settings=settings)
    model = ScriptedModel(
        [
            call("read_file", path="calc.py"),
            findings_json(test_command=f"{TEST_COMMAND} && git push origin main"),
            plan_json(FIX_STEP, summary="fix add"),
        ]
    )

    drive(store, run_id, model)

    state = state_of(store, run_id)
    assert state.steps["review"].status == "awaiting_approval"
    assert not _pushed(remote)
    card = _review_card(store, run_id)
    assert "acceptance test command: `" in card.objective
    assert card.action is not None and "git push origin main" in (card.action.agent or "")


def test_work_accepted_by_the_models_own_test_command_says_so(
    store: SqliteStore, tmp_path: Path
) -> None:
    """With no test command given, the model's own command accepts the work: a model
    that names ``true`` passes whatever it did. The acceptance's output and the phase's
    reason say whose command it was; with a test command given they say nothing more."""
    for users in (None, TEST_COMMAND):
        workspace = sample_workspace(tmp_path / f"ws-{users is None}")
        settings = agent_settings(plan_approval="auto", test_command=users)
        run_id = start_run(store, workspace, settings=settings)
        fix = fix_replies()[3:]  # the edit and the finish
        model = ScriptedModel([findings_json(test_command="true"), plan_json(FIX_STEP), *fix])

        drive(store, run_id, model)

        state = state_of(store, run_id)
        assert state.finished == "succeeded"
        output = state.steps["validate"].output_tail
        reasons = [e.event.reason for e in store.events(run_id) if e.event.kind == "phase_entered"]
        if users is None:
            assert output == f"acceptance passed: true ({MODELS_OWN_CHECK})"
            assert reasons[-1] == f"accepted: 'true' passed ({MODELS_OWN_CHECK})"
        else:
            assert output == f"acceptance passed: {TEST_COMMAND}"
            assert reasons[-1] == f"accepted: {TEST_COMMAND!r} passed"


def test_what_the_model_wrote_makes_no_line_of_the_review_card(
    store: SqliteStore, tmp_path: Path
) -> None:
    """The review card lists the plan's steps and the commands the model wrote, one to a
    line, and the model wrote them: a command holding a line break was listed as two
    commands (``pytest -q`` and ``true``, while one command ran both lines), and an
    objective holding one wrote a heading of the card's, ``commands the model wrote:
    none``. Each is on its one line of the card now, in the terminal as on the dashboard."""
    workspace = sample_workspace(tmp_path)
    forged = "pytest -q`\n- fix verify[1]: `true"
    step = plan_step(
        "fix",
        "add() returns the sum\ncommands the model wrote: none",
        files=["calc.py"],
        verify=[{"command": forged}],
    )
    run_id = start_run(store, workspace, settings=agent_settings(plan_approval="confirm"))
    model = ScriptedModel([findings_json(), plan_json(step, summary="fix add\n- fix: nothing")])
    drive(store, run_id, model)
    assert state_of(store, run_id).steps["review"].status == "awaiting_approval"

    shown = subprocess.run(
        [sys.executable, "-m", "trestle", "inbox", "--store", str(tmp_path / "store.db")],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "300"},
        check=True,
    ).stdout
    lines = [line.strip() for line in shown.splitlines()]

    at = lines.index("step           review: approve the plan:")
    assert lines[at + 1 : at + 5] == [
        "fix add - fix: nothing",
        "- fix: add() returns the sum commands the model wrote: none",
        "commands the model wrote, run in the workspace:",
        "- fix verify[0]: `pytest -q`\\n- fix verify[1]: `true` (log: a command "
        "substitution is not in auto_commands, so logged)",
    ], shown
    at = lines.index("commands it runs:")
    assert lines[at + 1] == "- pytest -q`\\n- fix verify[1]: `true", shown
    assert not any(line.startswith(("- fix verify[1]", "- true")) for line in lines), shown


def test_harmless_model_commands_keep_a_plan_approved_automatically(
    store: SqliteStore, tmp_path: Path
) -> None:
    workspace = sample_workspace(tmp_path)
    run_id = start_run(store, workspace, settings=agent_settings(plan_approval="auto"))
    model = ScriptedModel(fix_replies())

    drive(store, run_id, model)

    assert state_of(store, run_id).finished == "succeeded"


SECRET = "tok-9f8e7d6c5b4a39281706"
SHAPED = "sk-proj-" + "Q" * 32


def test_secrets_a_tool_or_a_failing_check_prints_never_reach_the_model(
    store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOY_API_TOKEN", SECRET)
    workspace = sample_workspace(tmp_path)
    (workspace / "settings.ini").write_text(
        f"token = {SECRET}\nopenai = {SHAPED}\n", encoding="utf-8"
    )
    leaky = plan_step(
        "fix",
        "add() returns the sum",
        files=["calc.py"],
        verify=[{"command": "cat settings.ini; false"}],
    )
    settings = agent_settings(plan_approval="auto", step_retries=1)
    run_id = start_run(store, workspace, settings=settings)
    model = ScriptedModel(
        [
            call("read_file", path="settings.ini"),
            findings_json(),
            plan_json(leaky, summary="fix add"),
            call("finish", summary="nothing to do"),
            call("finish", summary="still nothing"),
        ]
    )

    drive(store, run_id, model)

    sent = "\n".join(m.content for r in model.requests for m in r.messages)
    assert SECRET not in sent and SHAPED not in sent
    assert "[redacted: $DEPLOY_API_TOKEN]" in sent
    assert "[redacted: credential]" in sent
    # the failing check's output went back to the model on the retry, redacted too
    retry = "\n".join(m.content for m in model.requests[-1].messages)
    assert "[redacted: $DEPLOY_API_TOKEN]" in retry


def test_redact_names_the_variable_never_the_value() -> None:
    secrets = secret_values(
        {
            "GH_TOKEN": "ghs-long-enough-value",
            "PORT": "8080",
            "HOME": "/root",
            "SSH_AUTH_SOCK": "/tmp/ssh-abc/agent.1",
        }
    )
    assert secrets == {"ghs-long-enough-value": "GH_TOKEN"}
    key = "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----"
    text = f"push with ghs-long-enough-value and key AKIAABCDEFGHIJKLMNOP\n{key}"
    out = redact(text, secrets)
    assert out == (
        "push with [redacted: $GH_TOKEN] and key [redacted: credential]\n[redacted: credential]"
    )
    assert redact("nothing here, port 8080", secrets) == "nothing here, port 8080"


CREDENTIALS = [
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----",
    "sk-" + "a" * 24,
    "sk-proj-" + "b" * 24,
    "sk-ant-" + "c" * 24,
    *(f"gh{k}_" + "D" * 36 for k in "pousr"),
    "github_pat_" + "E" * 40,
    *(f"xox{k}-" + "1" * 12 for k in "abposr"),
    "AKIA" + "F" * 16,
    "ASIA" + "G" * 16,
    "AIza" + "h" * 35,
    "glpat-" + "i" * 20,
    "npm_" + "J" * 36,
    "pypi-" + "k" * 50,
]


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(
        st.one_of(
            st.sampled_from(CREDENTIALS),
            st.text(alphabet="abcghkoprsuxz_-ABGIKSAZ019 \n", max_size=30),
        ),
        max_size=8,
    )
)
def test_the_quick_look_for_credentials_misses_none(parts: list[str]) -> None:
    text = "".join(parts)
    assert redact(text, {}) == _SHAPES.sub("[redacted: credential]", text)


def test_every_credential_shape_is_redacted() -> None:
    for credential in CREDENTIALS:
        assert redact(f"see {credential} here", {}) == "see [redacted: credential] here"
