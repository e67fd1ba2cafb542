"""Phases: the natures each allows (checked through the real tool registry), the legal
moves between them, the bounded re-plan loop, and the findings UNDERSTAND yields."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import pytest

from trestle.agent import (
    PHASE_NATURES,
    TRANSITIONS,
    Feedback,
    Findings,
    Phase,
    PhaseError,
    PhaseState,
    allowed_natures,
    findings_json_schema,
    parse_findings,
)
from trestle.core.errors import RunError
from trestle.tools import GatedCall, GateVerdict, ToolContext, coding_registry


class AllowGate:
    """Lets every call through and keeps what it saw."""

    def __init__(self) -> None:
        self.calls: list[GatedCall] = []

    async def review(self, call: GatedCall) -> GateVerdict:
        self.calls.append(call)
        return GateVerdict.allow()


def test_each_phase_allows_the_documented_natures() -> None:
    assert allowed_natures(Phase.UNDERSTAND) == {"read", "test"}
    assert allowed_natures(Phase.PLAN) == {"read"}
    assert allowed_natures(Phase.EXECUTE) == {"read", "test", "write", "command", "call"}
    assert allowed_natures(Phase.VALIDATE) == {"read", "test"}
    assert allowed_natures(Phase.DONE) == frozenset()
    # nothing but EXECUTE may change the workspace
    for phase in Phase:
        changes = PHASE_NATURES[phase] & {"write", "command", "call"}
        assert bool(changes) == (phase is Phase.EXECUTE)


@pytest.mark.parametrize("phase", [Phase.UNDERSTAND, Phase.PLAN, Phase.VALIDATE])
def test_the_registry_refuses_writes_outside_execute(tmp_path: Path, phase: Phase) -> None:
    (tmp_path / "a.txt").write_text("hello\n", encoding="utf-8")
    registry = coding_registry()
    ctx = ToolContext(workspace=tmp_path, run_id="r", step_id="s")
    gate = AllowGate()

    async def call(name: str, args: dict[str, str]) -> tuple[bool, str]:
        obs = await registry.call(
            name, json.dumps(args), ctx, gate, allowed_natures=allowed_natures(phase), phase=phase
        )
        return obs.ok, obs.content

    ok, content = asyncio.run(call("write_file", {"path": "a.txt", "content": "changed"}))
    assert not ok and f"write_file is not allowed in {phase.value}" in content
    assert (tmp_path / "a.txt").read_text("utf-8") == "hello\n"
    ok, content = asyncio.run(call("read_file", {"path": "a.txt"}))
    assert ok and "hello" in content
    assert [c.tool for c in gate.calls] == ["read_file"]  # the refused write never reached it


def test_the_happy_path_goes_through_every_phase_and_is_recorded() -> None:
    state = PhaseState()
    assert state.phase is Phase.UNDERSTAND and state.natures == {"read", "test"}
    for target in (Phase.PLAN, Phase.EXECUTE, Phase.VALIDATE):
        state = state.advance(target, reason=f"to {target}")
    state = state.finish("accepted", reason="acceptance checks passed")
    assert state.phase is Phase.DONE and state.ending == "accepted"
    assert [(c.source, c.target) for c in state.history] == [
        (Phase.UNDERSTAND, Phase.PLAN),
        (Phase.PLAN, Phase.EXECUTE),
        (Phase.EXECUTE, Phase.VALIDATE),
        (Phase.VALIDATE, Phase.DONE),
    ]
    assert state.history[-1].ending == "accepted"
    assert PhaseState.model_validate_json(state.model_dump_json()) == state


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (s, t)
        for s, t in itertools.product(Phase, Phase)
        if t is not Phase.DONE and t not in TRANSITIONS[s]
    ],
)
def test_every_move_outside_the_table_is_refused(source: Phase, target: Phase) -> None:
    state = PhaseState(phase=source)
    with pytest.raises(PhaseError, match=f"cannot move from {source.value} to {target.value}"):
        state.advance(target, reason="x")


def test_done_is_reached_only_through_finish_and_accepted_only_from_validate() -> None:
    with pytest.raises(PhaseError, match="use finish"):
        PhaseState(phase=Phase.VALIDATE).advance(Phase.DONE, reason="x")
    for phase in (Phase.UNDERSTAND, Phase.PLAN, Phase.EXECUTE):
        with pytest.raises(PhaseError, match="only be accepted from VALIDATE"):
            PhaseState(phase=phase).finish("accepted", reason="x")
        ended = PhaseState(phase=phase).finish("escalated", reason="budget spent")
        assert ended.phase is Phase.DONE and ended.ending == "escalated"
    done = PhaseState(phase=Phase.VALIDATE).finish("failed", reason="x")
    with pytest.raises(PhaseError, match="cannot move from DONE"):
        done.finish("stopped", reason="again")
    assert issubclass(PhaseError, RunError)


def test_replanning_after_validation_is_bounded() -> None:
    state = PhaseState(max_replans=2)
    state = state.advance(Phase.PLAN, reason="").advance(Phase.EXECUTE, reason="")
    for used in (1, 2):
        state = state.advance(Phase.VALIDATE, reason="steps done")
        assert state.can_replan
        state = state.advance(Phase.PLAN, reason="acceptance failed")
        assert state.replans == used
        state = state.advance(Phase.EXECUTE, reason="")
    state = state.advance(Phase.VALIDATE, reason="")
    assert not state.can_replan
    with pytest.raises(PhaseError, match="no re-plan left: 2 of 2 used"):
        state.advance(Phase.PLAN, reason="acceptance failed again")
    assert state.finish("escalated", reason="re-plans used up").ending == "escalated"


def test_a_revision_from_execute_does_not_use_up_replans() -> None:
    state = PhaseState(phase=Phase.EXECUTE, max_replans=0)
    state = state.advance(Phase.PLAN, reason="user: also add logging")
    assert (state.revisions, state.replans) == (1, 0)
    assert not PhaseState(phase=Phase.EXECUTE).can_replan


# --- findings ------------------------------------------------------------------------------


def test_findings_parse_from_the_model_answer() -> None:
    raw = {
        "summary": "parse() breaks on empty input",
        "relevant_files": [{"path": "src/parser.py", "why": "parse() lives here"}],
        "how_to_test": "run the parser tests",
        "test_command": "python -m pytest -q tests/test_parser.py",
        "constraints": ["keep the public API"],
        "open_questions": ["should empty input return None or []?"],
    }
    found = parse_findings(json.dumps(raw))
    assert isinstance(found, Findings)
    assert found.relevant_files[0].path == "src/parser.py"
    assert found.test_command == "python -m pytest -q tests/test_parser.py"
    assert parse_findings(raw) == found
    assert Findings.model_validate_json(found.model_dump_json()) == found


def test_bad_findings_get_feedback_not_an_exception() -> None:
    fb = parse_findings('{"summary": "x", "relevant_files": ["a.py"], "extra": 1}')
    assert isinstance(fb, Feedback)
    assert [p.text() for p in fb.problems] == [
        "field 'relevant_files[0]': Input should be a valid dictionary or instance of RelevantFile",
        "field 'how_to_test': required field is missing",
        "field 'extra': unknown field",
    ]
    assert fb.text().startswith("Findings not accepted (3 problems):")
    broken = parse_findings('{"summary": ')
    assert isinstance(broken, Feedback) and broken.kinds() == {"json"}


def test_the_findings_schema_is_what_the_model_is_asked_for() -> None:
    schema = findings_json_schema()
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"summary", "how_to_test"}
    assert set(schema["properties"]) == {
        "summary",
        "relevant_files",
        "how_to_test",
        "test_command",
        "constraints",
        "open_questions",
    }
    assert "title" not in schema and "title" not in schema["$defs"]["RelevantFile"]
