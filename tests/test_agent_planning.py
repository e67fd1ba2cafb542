"""The plan a model proposes: validation, feedback, the runtime plan, the negotiation.

Each refusal is checked for the words a model needs to fix it (the step, the field,
the offending value, a suggestion). A hypothesis test feeds arbitrary JSON and
near-valid plans: validation never raises, and what it accepts is a sound plan.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_helpers import drive as drive_agent
from agent_helpers import (
    fix_replies,
    of_kind,
    plan_json,
    plan_step,
    recorded,
    sample_workspace,
    start_run,
    state_of,
)
from trestle.agent import (
    AgentPlan,
    PlanFeedback,
    PlanNegotiation,
    agent_plan_json_schema,
    check_agent_plan,
    is_agent_step,
    runtime_plan,
    validate_agent_plan,
)
from trestle.core.errors import RunError
from trestle.core.events import PlanProposed, StepAttemptEnded
from trestle.core.plan import CommandCheck, Plan, find_cycle, graph_problems, waves
from trestle.core.policy import path_glob_matches, workspace_path
from trestle.engines.local import LocalEngine
from trestle.formats.exec_limits import COMMAND_BYTES
from trestle.lifecycle.runs import create_run
from trestle.models import ScriptedModel
from trestle.store import SqliteStore

PYTEST = {"command": "python -m pytest -q tests/test_parser.py"}
WORKSPACE = ["src/parser.py", "src/cli.py", "tests/test_parser.py", "README.md"]


def step(step_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": step_id, "objective": f"do {step_id}", "verify": [PYTEST], **fields}


def feedback(raw: Any, **kwargs: Any) -> PlanFeedback:
    kwargs.setdefault("scope", ())
    result = validate_agent_plan(raw, **kwargs)
    assert isinstance(result, PlanFeedback), result
    return result


def texts(fb: PlanFeedback) -> list[str]:
    return [p.text() for p in fb.problems]


# --- accepted plans ----------------------------------------------------------------------


def test_a_valid_plan_becomes_a_runtime_plan_of_agent_steps() -> None:
    raw = {
        "summary": "fix the off-by-one, then cover it",
        "steps": [
            step("fix", files=["./src//parser.py"], confidence=0.8, reasoning="the bug is here"),
            step(
                "cover",
                needs=["fix"],
                new_files=["tests/test_edges.py"],
                verify=[{"file_exists": "tests/test_edges.py"}, PYTEST],
            ),
            step("docs", needs=["fix"], files=["README.md"], optional=True),
        ],
    }
    plan = validate_agent_plan(
        json.dumps(raw),
        scope=["src/**", "tests/**", "README.md"],
        workspace_files=WORKSPACE,
        goal="parse empty input",
        workspace="repo",
        retries=1,
    )
    assert isinstance(plan, Plan)
    assert plan.goal == "parse empty input" and plan.workspace == "repo"
    assert plan.ids == ("fix", "cover", "docs")
    fix, cover, docs = plan.steps
    assert all(
        is_agent_step(s) and s.agent is not None and s.agent.role == "execute" for s in plan.steps
    )
    assert fix.description == "do fix" and fix.tags == ("agent",)
    assert fix.confidence == 0.8 and fix.reasoning == "the bug is here"
    assert fix.retries == 1 and fix.rerunnable
    assert cover.needs == ("fix",) and len(cover.verify) == 2
    assert docs.optional
    assert graph_problems(plan.steps) == []
    # the plan round-trips through JSON, as the run's first event stores it
    assert Plan.model_validate_json(plan.model_dump_json()) == plan


def test_check_agent_plan_keeps_the_files_with_normalised_paths() -> None:
    raw = {"steps": [step("a", files=["src/./parser.py", "src/parser.py"], needs=[])]}
    checked = check_agent_plan(raw, scope=["src/**"], workspace_files=WORKSPACE)
    assert isinstance(checked, AgentPlan)
    assert checked.step("a").files == ("src/parser.py",)
    assert checked.files_in_scope() == ("src/parser.py",)


def test_irreversible_steps_are_never_rerun_blindly() -> None:
    plan = validate_agent_plan({"steps": [step("push", irreversible=True)]}, scope=())
    assert isinstance(plan, Plan)
    assert plan.steps[0].irreversible and not plan.steps[0].rerunnable


def test_a_fenced_json_answer_is_accepted() -> None:
    text = "```json\n" + json.dumps({"steps": [step("a")]}) + "\n```"
    assert isinstance(validate_agent_plan(text, scope=()), Plan)


def test_the_schema_given_to_the_model_is_strict_and_untitled() -> None:
    schema = agent_plan_json_schema()

    def keys(node: Any) -> set[str]:
        if isinstance(node, dict):
            return set(node) | {k for v in node.values() for k in keys(v)}
        if isinstance(node, list):
            return {k for v in node for k in keys(v)}
        return set()

    assert "title" not in keys(schema)  # no field is called title, so no key may be
    step_schema = schema["$defs"]["AgentPlanStep"]
    assert step_schema["additionalProperties"] is False
    assert set(step_schema["required"]) == {"id", "objective"}
    assert step_schema["properties"]["verify"]["minItems"] == 1
    kinds = {
        ref["$ref"].rsplit("/", 1)[1]
        for ref in step_schema["properties"]["verify"]["items"]["oneOf"]
    }
    assert kinds == {"CommandCheck", "FileExistsCheck", "FileContainsCheck"}


# --- refusals, each precise ------------------------------------------------------------------


def test_malformed_json_names_line_column_and_what_came_before() -> None:
    fb = feedback('{\n  "steps": [\n    {"id": "a",, }\n  ]\n}')
    (problem,) = fb.problems
    assert problem.kind == "json"
    assert "line 3, column 16" in problem.message and "just after" in problem.message
    assert '"id": "a",' in problem.message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "empty"),
        ("[]", 'wrap the list as {"steps": [...]}'),
        ("42", "must be a JSON object, not int"),
        ("1" * 5000, "not usable JSON"),
        ("[" * 100_000, "recursion depth"),
    ],
)
def test_answers_that_are_not_a_plan_object_are_refused(raw: str, expected: str) -> None:
    (problem,) = feedback(raw).problems
    assert problem.kind == "json" and expected in problem.message


def test_schema_errors_give_the_step_the_field_path_and_the_message() -> None:
    raw = {
        "steps": [
            {"id": "fix", "verify": [{"command": 3}], "colour": "red"},
            {"id": "bad id!", "objective": "x", "verify": [{"python": "m:f"}]},
        ]
    }
    problems = texts(feedback(raw))
    assert "step 'fix' (steps[0]), field 'objective': required field is missing" in problems
    assert (
        "step 'fix' (steps[0]), field 'verify[0].command': Input should be a valid string"
        in problems
    )
    assert "step 'fix' (steps[0]), field 'colour': unknown field" in problems
    assert any(
        p.startswith("step 'bad id!' (steps[1]), field 'id': String should match") for p in problems
    )
    assert any(
        "field 'verify[0]': a check needs exactly one of" in p
        and "python checks are not available" in p
        for p in problems
    )


def test_a_plan_without_steps_is_refused() -> None:
    (problem,) = feedback({"steps": []}).problems
    assert problem.kind == "schema" and problem.where == "field 'steps'"


def test_cycles_are_named_step_by_step() -> None:
    raw = {"steps": [step("a", needs=["c"]), step("b", needs=["a"]), step("c", needs=["b"])]}
    fb = feedback(raw)
    assert fb.kinds() == {"cycle"}
    message = fb.problems[0].message
    assert message.startswith("dependency cycle: ")
    assert all(f"'{name}'" in message for name in "abc")
    path = message.removeprefix("dependency cycle: ").split(";")[0].split(" -> ")
    assert path[0] == path[-1] and len(path) == 4


def test_unknown_needs_get_a_did_you_mean_and_self_needs_are_refused() -> None:
    raw = {"steps": [step("build"), step("test", needs=["biuld", "test"])]}
    problems = texts(feedback(raw))
    assert problems == [
        "step 'test' (steps[1]), field 'needs': unknown step 'biuld' (did you mean 'build'?)",
        "step 'test' (steps[1]), field 'needs': a step cannot need itself",
    ]


def test_duplicate_ids_are_refused() -> None:
    fb = feedback({"steps": [step("a"), step("a")]})
    assert texts(fb) == ["step 'a' (steps[1]): duplicate step id"]


def test_steps_without_checks_or_with_checks_that_cannot_fail_are_unverifiable() -> None:
    raw = {
        "steps": [
            step("none", verify=[]),
            step("true", verify=[{"command": "true"}]),
            step("echo", verify=[{"command": "echo done"}]),
            step("masked", verify=[{"command": "pytest -q || true"}]),
            step("fine", verify=[{"command": "pytest -q && echo ok"}]),
        ]
    }
    fb = feedback(raw)
    assert fb.kinds() == {"unverifiable"}
    wheres = [p.where for p in fb.problems]
    assert wheres == [
        "step 'none' (steps[0])",
        "step 'true' (steps[1]), field 'verify[0].command'",
        "step 'echo' (steps[2]), field 'verify[0].command'",
        "step 'masked' (steps[3]), field 'verify[0].command'",
    ]
    assert "no verify checks" in fb.problems[0].message


def test_files_outside_the_workspace_or_the_scope_are_refused() -> None:
    raw = {
        "steps": [
            step(
                "a",
                files=["../etc/passwd", "/abs/x.py", "src/*.py", "docs/guide.md", "src/cli.py"],
                verify=[{"file_contains": "~/secrets", "text": "x"}],
            )
        ]
    }
    fb = feedback(raw, scope=["src/**"])
    assert fb.kinds() == {"out_of_scope"}
    problems = texts(fb)
    assert len(problems) == 5
    assert "field 'files[0]': '../etc/passwd' is not a file inside the workspace" in problems[0]
    assert "'/abs/x.py'" in problems[1] and "'src/*.py'" in problems[2]
    assert problems[3].endswith(
        "'docs/guide.md' is outside the scope this run may change ['src/**']"
    )
    assert "field 'verify[0]': checks '~/secrets'" in problems[4]


def test_an_empty_scope_is_the_whole_workspace() -> None:
    raw = {"steps": [step("a", files=["docs/guide.md"])]}
    assert isinstance(validate_agent_plan(raw, scope=()), Plan)


def test_with_the_file_list_files_to_change_must_exist_and_new_ones_must_not() -> None:
    raw = {
        "steps": [
            step("a", files=["src/parsr.py"], new_files=["src/cli.py", "src/new.py"]),
        ]
    }
    fb = feedback(raw, workspace_files=WORKSPACE)
    assert texts(fb) == [
        "step 'a' (steps[0]), field 'files[0]': 'src/parsr.py' does not exist "
        "(did you mean 'src/parser.py'?); list files to create under new_files",
        "step 'a' (steps[0]), field 'new_files[0]': 'src/cli.py' already exists; "
        "list files to change under files",
    ]
    # without the file list the same plan is accepted: existence is not known
    assert isinstance(validate_agent_plan(raw, scope=()), Plan)


def test_too_many_steps_are_refused() -> None:
    raw = {"steps": [step(f"s{i}") for i in range(5)]}
    fb = feedback(raw, max_steps=4)
    assert fb.kinds() == {"too_many_steps"}
    assert "has 5 steps; at most 4" in fb.problems[0].message


def test_a_check_too_long_to_start_is_refused_and_the_model_plans_again(tmp_path: Path) -> None:
    # accepted before, it failed each attempt of its step as a sandbox that never started
    longest = "python3 -c 'import calc' #" + "x" * (COMMAND_BYTES - 26)
    assert len(longest) == COMMAND_BYTES
    at_most = step("a", verify=[{"command": longest}])
    assert isinstance(validate_agent_plan({"steps": [at_most]}, scope=()), Plan)

    workspace = sample_workspace(tmp_path)
    store = SqliteStore(tmp_path / "runs.db")
    run_id = start_run(store, workspace)
    too_long = plan_step("fix", "add() returns the sum", files=["calc.py"])
    too_long["verify"] = [{"command": longest + "é"}]  # two bytes more
    replies = fix_replies()
    replies.insert(2, plan_json(too_long))
    model = ScriptedModel(replies)

    drive_agent(store, run_id, model)

    proposed = of_kind(recorded(store, run_id), PlanProposed)
    assert [(p.attempt, p.accepted) for p in proposed] == [(1, False), (2, True)]
    # which step, which command, its size and the limit, and what to do instead
    assert proposed[0].problems == (
        "step 'fix' (steps[0]), field 'verify[0].command': the command is 100,002 bytes, "
        "more than 100,000 (the most a command can start with): put it in a script file a "
        "step creates (its new_files) and run that",
    )
    told = model.requests[3].messages[-1].content
    assert told.startswith("Plan attempt 1 of 3 was refused") and "100,002 bytes" in told
    assert state_of(store, run_id).finished == "succeeded"
    store.close()


def test_a_flood_of_problems_is_capped_with_a_count() -> None:
    fb = feedback({"steps": [{"id": f"s{i}"} for i in range(40)]})
    assert len(fb.problems) == 26
    assert fb.problems[-1].message == "15 more problems not shown; fix the ones above first"


def test_every_problem_is_reported_at_once_in_step_order() -> None:
    raw = {"steps": [step("a", verify=[], files=["../x"]), step("b", needs=["zz"])]}
    fb = feedback(raw)
    assert [p.kind for p in fb.problems] == ["unverifiable", "out_of_scope", "unknown_need"]
    text = fb.text()
    assert text.startswith("Plan not accepted (3 problems):\n- step 'a'")


# --- the runtime plan outside the agent runtime ------------------------------------------------


def test_the_plain_engine_fails_an_agent_step_with_an_explanation(tmp_path: Path) -> None:
    checked = check_agent_plan({"steps": [step("a")]}, scope=())
    assert isinstance(checked, AgentPlan)
    plan = runtime_plan(checked, goal="g", retries=0)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    store = SqliteStore(tmp_path / "t.db")
    try:
        run_id = create_run(store, plan, workspace=workspace)
        engine = LocalEngine(store, poll_interval=0.02)
        try:
            asyncio.run(engine.run(run_id))
        finally:
            engine.close()
        ended = [e.event for e in store.events(run_id) if isinstance(e.event, StepAttemptEnded)]
    finally:
        store.close()
    assert len(ended) == 1 and not ended[0].ok
    assert "is an agent step: it needs the agent runtime" in (ended[0].action.error or "")


# --- the negotiation ---------------------------------------------------------------------


def test_negotiation_counts_attempts_and_escalates_when_they_run_out() -> None:
    bad = feedback({"steps": [step("a", verify=[])]})
    n = PlanNegotiation(max_attempts=3)
    assert (n.status, n.next_attempt) == ("open", 1)
    n = n.record(bad)
    assert (n.status, n.next_attempt, n.should_escalate) == ("open", 2, False)
    prompt = n.retry_prompt()
    assert prompt.startswith("Plan attempt 1 of 3 was refused.")
    assert "no verify checks" in prompt and "(2 attempts left)" in prompt
    n = n.record(bad).record(bad)
    assert n.status == "exhausted" and n.should_escalate
    assert "refused 3 times (limit 3)" in n.escalation_summary()
    with pytest.raises(RunError, match="exhausted after 3 attempt"):
        n.record(bad)
    assert PlanNegotiation.model_validate_json(n.model_dump_json()) == n


def test_negotiation_ends_at_the_first_accepted_plan() -> None:
    good = validate_agent_plan({"steps": [step("a")]}, scope=())
    assert isinstance(good, Plan)
    n = PlanNegotiation().record(feedback({"steps": []})).record(good)
    assert n.status == "accepted" and not n.should_escalate
    assert [a.accepted for a in n.attempts] == [False, True]
    with pytest.raises(RunError, match="accepted"):
        n.record(good)
    with pytest.raises(RunError, match="refused attempt"):
        n.retry_prompt()


# --- properties ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
ids = st.sampled_from(["a", "b", "c", "d", "fix", "test", "a b", ""])
paths = st.sampled_from(
    ["src/parser.py", "src/new.py", "tests/t.py", "../x", "/x", "docs/a.md", "src/*.py", "."]
)
checks = st.one_of(
    st.fixed_dictionaries(
        {"command": st.sampled_from(["pytest", "true", "make test || true", ""])}
    ),
    st.fixed_dictionaries({"file_exists": paths}),
    st.fixed_dictionaries({"file_contains": paths, "regex": st.sampled_from(["ok", "(", "a+"])}),
    st.fixed_dictionaries({"python": st.just("m:f")}),
    json_values,
)
plan_steps = st.fixed_dictionaries(
    {"id": ids, "objective": st.sampled_from(["", "do it"])},
    optional={
        "needs": st.lists(ids, max_size=3),
        "verify": st.lists(checks, max_size=2),
        "files": st.lists(paths, max_size=2),
        "new_files": st.lists(paths, max_size=2),
        "irreversible": st.booleans(),
        "optional": st.booleans(),
        "confidence": st.floats(min_value=-1, max_value=2, allow_nan=False),
    },
)
plans = st.fixed_dictionaries({"steps": st.lists(plan_steps, max_size=5)})
good_checks = st.sampled_from(
    [PYTEST, {"file_exists": "src/new.py"}, {"file_contains": "src/parser.py", "text": "x"}]
)


@st.composite
def near_valid_plans(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly well-formed plans whose needs may form cycles or name missing steps."""
    names = draw(st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=6, unique=True))
    steps = []
    for name in names:
        others = [n for n in names if n != name]
        needs = draw(st.lists(st.sampled_from(others), max_size=2, unique=True)) if others else []
        if draw(st.integers(0, 9)) == 0:
            needs.append(draw(st.sampled_from([name, "zz"])))
        outside = draw(st.integers(0, 9)) == 0
        steps.append(
            {
                "id": name,
                "objective": f"do {name}",
                "needs": needs,
                "verify": draw(st.lists(good_checks, min_size=1, max_size=2)),
                "files": ["docs/a.md" if outside else "src/parser.py"],
            }
        )
    return {"steps": steps}


SCOPE = ("src/**", "tests/**")


def assert_sound(result: Plan | PlanFeedback) -> None:
    if isinstance(result, PlanFeedback):
        assert result.problems and all(p.message for p in result.problems)
        return
    assert graph_problems(result.steps) == []
    assert sorted(i for wave in waves(result) for i in wave) == sorted(result.ids)
    assert find_cycle({s.id: s.needs for s in result.steps}) is None
    for s in result.steps:
        assert is_agent_step(s) and s.verify
        assert not any(
            isinstance(c, CommandCheck) and c.command.strip() == "true" for c in s.verify
        )


def assert_named_cycle_is_real(fb: PlanFeedback, raw: Any) -> None:
    """Each step on the named cycle needs the one before it, in the plan as written."""
    plan = json.loads(raw) if isinstance(raw, str) else raw
    needs = {s["id"]: s.get("needs", []) for s in plan["steps"]}
    (problem,) = [p for p in fb.problems if p.kind == "cycle"]
    names = problem.message.removeprefix("dependency cycle: ").split(";")[0].split(" -> ")
    path = [name.strip("'") for name in names]
    assert path[0] == path[-1]
    for before, after in itertools.pairwise(path):
        assert before in needs[after]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(near_valid_plans(), plans, json_values, st.text(max_size=40)))
def test_validation_never_raises_and_accepts_only_sound_plans(raw: Any) -> None:
    given_raw = raw if isinstance(raw, str) else json.dumps(raw)
    for form in (raw, given_raw):
        if not isinstance(form, (str, dict)):
            continue
        result = validate_agent_plan(form, scope=SCOPE, workspace_files=["src/parser.py"])
        assert_sound(result)
        if isinstance(result, PlanFeedback) and "cycle" in result.kinds():
            assert_named_cycle_is_real(result, form)
        if isinstance(result, Plan):
            checked = check_agent_plan(form, scope=SCOPE, workspace_files=["src/parser.py"])
            assert isinstance(checked, AgentPlan)
            for f in checked.files_in_scope():
                inside = workspace_path(f)
                assert inside is not None
                assert any(path_glob_matches(g, inside) for g in SCOPE)
