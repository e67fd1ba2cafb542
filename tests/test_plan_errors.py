"""What an operator sees when a plan file is wrong, through the real ``trestle``:
every problem at once, each as ``file:line: where: what`` in the file's own words,
with exit 2 (a plan error; a run that fails exits 1) and nothing recorded."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from test_plan_input import trestle
from trestle.core.plan import Plan, Step, WriteAction

PLAN_ERROR_EXIT = 2


def refused(tmp_path: Path, text: str, command: str = "plan") -> list[str]:
    """The error lines ``trestle plan`` (or ``run``) prints for this plan file."""
    (tmp_path / "plan.yaml").write_text(text)
    store = tmp_path / "t.db"
    extra: list[str | Path] = ["--store", store] if command == "run" else []
    result = trestle(tmp_path, command, "plan.yaml", *extra)
    assert result.returncode == PLAN_ERROR_EXIT, result.stdout + result.stderr
    assert result.stdout == ""
    assert not store.exists()
    assert result.stderr.startswith("error: ")
    return result.stderr.removeprefix("error: ").splitlines()


def test_unknown_fields_suggest_the_field_meant(tmp_path: Path) -> None:
    lines = refused(
        tmp_path,
        "gaol: ship it\n"
        "paralelism: 2\n"
        "steps:\n"
        "  - id: build\n"
        "    run: make\n"
        "    retires: 2\n"
        "    verfiy:\n"
        "      - command: make check\n",
    )
    assert lines == [
        "plan.yaml:1: field 'gaol': unknown field (did you mean 'goal'?)",
        "plan.yaml:2: field 'paralelism': unknown field (did you mean 'parallelism'?)",
        "plan.yaml:6: step 'build', field 'retires': unknown field (did you mean 'retries'?)",
        "plan.yaml:7: step 'build', field 'verfiy': unknown field (did you mean 'verify'?)",
    ]


def test_a_suggestion_comes_from_the_fields_of_that_place(tmp_path: Path) -> None:
    """``factr`` inside ``backoff`` is a backoff's ``factor``; ``comand`` in a check is
    the check's ``command``, not one of the step's fields."""
    lines = refused(
        tmp_path,
        "steps:\n"
        "  - id: build\n"
        "    run: make\n"
        "    backoff: {factr: 2}\n"
        "    verify:\n"
        "      - {command: make check, timout: 5}\n",
    )
    assert lines == [
        "plan.yaml:4: step 'build', field 'backoff.factr': unknown field (did you mean 'factor'?)",
        "plan.yaml:6: step 'build', field 'verify[0].timout': unknown field "
        "(did you mean 'timeout'?)",
    ]


def test_every_problem_is_reported_at_once_with_its_line(tmp_path: Path) -> None:
    """Unknown fields, bad values, a bad need, a missing module and a write out of the
    workspace: one run of ``trestle plan`` names them all, in file order."""
    lines = refused(
        tmp_path,
        "goal: several things wrong\n"  # 1
        "paralelism: 4\n"  # 2
        "steps:\n"  # 3
        "  - id: build\n"  # 4
        "    run: make\n"  # 5
        "    retries: many\n"  # 6
        "  - id: test\n"  # 7
        "    needs: [biuld]\n"  # 8
        "    run: make test\n"  # 9
        "    verify:\n"  # 10
        "      - file_exists: out\n"  # 11
        "      - command: [make, check]\n"  # 12
        "  - id: hook\n"  # 13
        "    python: 'no_such_hooks:go'\n"  # 14
        "  - id: leak\n"  # 15
        "    write: {path: ../outside.txt, content: x}\n"  # 16
        "  - run: echo no id\n",  # 17
    )
    assert lines == [
        "plan.yaml:2: field 'paralelism': unknown field (did you mean 'parallelism'?)",
        "plan.yaml:6: step 'build', field 'retries': must be a whole number, not 'many'",
        "plan.yaml:8: step 'test', field 'needs': unknown step 'biuld' (did you mean 'build'?)",
        "plan.yaml:12: step 'test', field 'verify[1].command': must be text, not a list",
        "plan.yaml:14: step 'hook', field 'python': cannot load no_such_hooks:go: "
        "no module named 'no_such_hooks'",
        "plan.yaml:16: step 'leak', field 'write.path': '../outside.txt' leads outside the "
        "workspace: give a path relative to the workspace, without '..'",
        "plan.yaml:17: step #5, field 'id': required, but missing",
    ]


def test_messages_are_in_the_files_words_not_pydantics(tmp_path: Path) -> None:
    lines = refused(
        tmp_path,
        "checkpoints: sometimes\n"
        "steps:\n"
        "  - id: build\n"
        "    run: make\n"
        "    needs: build-first\n"
        "    timeout: 0\n"
        "    optional: perhaps\n"
        "    verify:\n"
        "      - {command: ''}\n",
    )
    assert lines == [
        "plan.yaml:1: field 'checkpoints': must be one of 'irreversible', 'every_step' or "
        "'off', not 'sometimes'",
        "plan.yaml:5: step 'build', field 'needs': must be a list, not 'build-first' (a list "
        'of one: ["build-first"])',
        "plan.yaml:6: step 'build', field 'timeout': must be more than 0, not 0",
        "plan.yaml:7: step 'build', field 'optional': must be true or false, not 'perhaps'",
        "plan.yaml:9: step 'build', field 'verify[0].command': must not be empty",
    ]
    empty = refused(tmp_path, "goal: nothing\nsteps: []\n")
    assert empty == ["plan.yaml:2: field 'steps': must list at least 1 item, not 0"]
    joined = "\n".join(lines + empty)
    for pydantic_words in ("Input should", "Tuple should", "valid tuple", "after validation"):
        assert pydantic_words not in joined


def test_a_bad_workspace_names_the_plan_file_line_and_field(tmp_path: Path) -> None:
    lines = refused(
        tmp_path,
        "goal: build\nworkspace: no-such-dir\nsteps:\n  - {id: a, run: 'true'}\n",
        command="run",
    )
    assert lines == [
        "plan.yaml:2: field 'workspace': 'no-such-dir' does not exist (or run with -w DIR)"
    ]
    (tmp_path / "a-file").write_text("")
    lines = refused(
        tmp_path, "workspace: a-file\nsteps:\n  - {id: a, run: 'true'}\n", command="run"
    )
    assert lines == [
        "plan.yaml:1: field 'workspace': 'a-file' is not a directory (or run with -w DIR)"
    ]
    # -w is the operator's own argument, and is reported as one
    result = trestle(tmp_path, "run", "plan.yaml", "-w", "elsewhere", "--store", tmp_path / "t.db")
    assert result.returncode == 2
    assert "Invalid value for -w: 'elsewhere' is not a directory" in " ".join(result.stderr.split())


def test_a_write_out_of_the_workspace_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """Refused by ``trestle plan`` and by ``trestle run`` before the run is recorded,
    so no human is asked to approve a write that would then fail."""
    text = (
        "steps:\n"
        "  - id: up\n"
        "    write: {path: ../x, content: a}\n"
        "  - id: absolute\n"
        "    write: {path: /tmp/x, content: a}\n"
        "  - id: sneaky\n"
        "    write: {path: sub/../../x, content: a}\n"
        "  - id: fine\n"
        "    write: {path: sub/../x, content: a}\n"
    )
    expected = [
        "plan.yaml:3: step 'up', field 'write.path': '../x' leads outside the workspace: "
        "give a path relative to the workspace, without '..'",
        "plan.yaml:5: step 'absolute', field 'write.path': '/tmp/x' leads outside the "
        "workspace: give a path relative to the workspace, without '..'",
        "plan.yaml:7: step 'sneaky', field 'write.path': 'sub/../../x' leads outside the "
        "workspace: give a path relative to the workspace, without '..'",
    ]
    assert refused(tmp_path, text) == expected
    assert refused(tmp_path, text, command="run") == expected
    assert not (tmp_path.parent / "x").exists()


def test_a_file_check_out_of_the_workspace_is_refused_when_the_plan_is_loaded(
    tmp_path: Path,
) -> None:
    """A file check reads only inside the workspace (and the sandbox discards what a
    command writes to its private /tmp): one that names a path outside could never pass."""
    text = (
        "steps:\n"
        "  - id: save\n"
        "    run: echo x > out.txt\n"
        "    verify:\n"
        "      - {file_exists: out.txt}\n"
        "      - {file_exists: /tmp/out.txt}\n"
        "      - {file_contains: ../out.txt, text: x}\n"
    )
    tail = (
        "and a file check reads only inside it: give a path relative to the workspace, without '..'"
    )
    assert refused(tmp_path, text) == [
        f"plan.yaml:6: step 'save', field 'verify[1].file_exists': '/tmp/out.txt' leads "
        f"outside the workspace, {tail}",
        f"plan.yaml:7: step 'save', field 'verify[2].file_contains': '../out.txt' leads "
        f"outside the workspace, {tail}",
    ]


def test_a_cost_budget_over_an_agent_whose_model_has_no_price_is_refused(
    tmp_path: Path,
) -> None:
    """What the calls of a model the price table does not know cost is unknown, so a
    cost limit over them could never be reached: refused, as `trestle agent` refuses
    its own --max-cost; a priced model, or a limit on tokens alone, is not."""
    step = (
        "  - id: {id}\n"
        "    delegate:\n"
        "      goal: fix it\n"
        "      agent: {{model: '{model}'}}\n"
        "      budget: {{{dimension}: {{hard: 1}}}}\n"
    )
    text = "steps:\n" + "".join(
        step.format(id=i, model=m, dimension=d)
        for i, m, d in [
            ("mine", "openai:my-finetune", "cost"),
            ("listed", "openai:gpt-4o-mini", "cost"),
            ("counted", "anthropic:my-finetune", "tokens"),
        ]
    )
    assert refused(tmp_path, text, "run") == [
        "plan.yaml:5: step 'mine', field 'delegate.agent.model': 'openai:my-finetune' has "
        "no price in Trestle's price table, so what its calls cost is unknown and a cost "
        "budget could never be reached: limit its tokens instead"
    ]


def test_a_write_out_of_the_workspace_is_refused_by_the_python_api_too() -> None:
    """The same rule holds for a step made in Python, not only for a plan file."""
    with pytest.raises(ValidationError, match="'/tmp/x' leads outside the workspace"):
        Step(id="absolute", write=WriteAction(path="/tmp/x", content="a"))
    up = {"id": "up", "write": {"path": "a/../../x", "content": ""}}
    with pytest.raises(ValidationError, match=re.escape("'a/../../x' leads outside")):
        Plan.model_validate({"steps": [up]})
    assert Step(id="fine", write=WriteAction(path="a/../x", content="")).write is not None


def test_plan_errors_exit_2_unlike_a_failed_run(tmp_path: Path) -> None:
    refused(tmp_path, "steps:\n  - {id: a, run: 'true', retires: 1}\n", command="run")
    (tmp_path / "plan.yaml").write_text("escalate: false\nsteps:\n  - {id: a, run: 'false'}\n")
    failed = trestle(tmp_path, "run", "plan.yaml", "--store", tmp_path / "t.db")
    assert failed.returncode == 1, failed.stdout + failed.stderr


def test_trestle_toml_and_plan_files_speak_alike(tmp_path: Path) -> None:
    """Both go through one helper: the same did-you-mean, the same plain words, and
    both name the line."""
    (tmp_path / ".git").mkdir()  # the policy search stops at the repository's root
    (tmp_path / "trestle.toml").write_text("[policy]\naudit_rat = 0.5\nfailure_penalty = 'high'\n")
    (tmp_path / "plan.yaml").write_text("steps:\n  - {id: a, run: 'true'}\n")
    result = trestle(tmp_path, "run", "plan.yaml", "--store", tmp_path / "t.db")
    assert result.returncode == 2, result.stdout + result.stderr
    assert sorted(result.stderr.removeprefix("error: ").splitlines()) == [
        f"{tmp_path / 'trestle.toml'}:2: policy.audit_rat: unknown field "
        "(did you mean 'audit_rate'?)",
        f"{tmp_path / 'trestle.toml'}:3: policy.failure_penalty: must be a number, not 'high'",
    ]


def test_a_cycle_is_said_beside_an_unknown_need(tmp_path: Path) -> None:
    lines = refused(
        tmp_path,
        "goal: g\n"
        "steps:\n"
        "  - {id: a, run: x, needs: [c]}\n"
        "  - {id: b, run: x, needs: [a, a]}\n"
        "  - {id: c, run: x, needs: [b, nope, c]}\n",
    )

    assert lines == [
        "plan.yaml:3: dependency cycle: a -> b -> c -> a",
        "plan.yaml:4: step 'b', field 'needs': lists 'a' twice",
        "plan.yaml:5: step 'c', field 'needs': unknown step 'nope'",
        "plan.yaml:5: step 'c', field 'needs': a step cannot need itself",
    ]


def test_a_workspace_whose_name_is_not_utf8_is_refused_naming_it(tmp_path: Path) -> None:
    # the path could not be stored: a traceback from the store's driver, exit 1
    ws = Path(os.fsdecode(bytes(tmp_path) + b"/ws\xffbad"))
    ws.mkdir()
    (ws / "plan.yaml").write_text("steps:\n  - {id: a, run: 'true'}\n")
    store = tmp_path / "t.db"
    result = trestle(ws, "run", "plan.yaml", "--store", store)
    assert result.returncode == PLAN_ERROR_EXIT, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "the run's workspace path is not valid text" in " ".join(result.stderr.split())
