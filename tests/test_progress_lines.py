"""The lines of progress ``trestle agent`` prints off a terminal, one an event, and the
report's list of what to check, one item a line, whatever a model or a step wrote into
them (a reason quoting the list of problems a model was told); the whole text stays in
the record."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_agent_cli import CALC_TESTS, OPENAI_MODEL, Cli, run_id_of
from trestle.testing import OpenAIServer

# the answers the findings of two attempts of three tries each could take
REFUSED = 6
# how each line this run prints before its report begins (the store and policy it
# uses, then an event's kind); a line of a reason's own would begin otherwise
EVENTS = (
    "store ",
    "policy: ",
    "acceptance: ",
    "commands ",
    "start ",
    "phase ",
    "ALERT ",
    "failed ",
    "retry ",
    "FAILED ",
    "blocked ",
    "finished ",
)


@pytest.fixture
def cli(tmp_path: Path, _own_decision_key: Path) -> Cli:
    return Cli(tmp_path, tmp_path / "trestle.db", _own_decision_key)


def test_a_reason_quoting_the_refused_findings_stays_on_its_events_line(cli: Cli) -> None:
    repo = cli.dir / "calc"
    repo.mkdir()
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    with OpenAIServer(model=OPENAI_MODEL) as server:
        for _ in range(REFUSED):
            server.queue_text("the bug is in add()")  # not the findings' JSON
        result = cli(
            "agent",
            "make add() return the sum",
            "--repo",
            repo,
            "--model",
            f"openai:{OPENAI_MODEL}",
            "--base-url",
            server.base_url,
            "--test-command",
            CALC_TESTS,
            "--no-live",
            "--no-prompt",
            OPENAI_API_KEY="x",
        )
        assert server.pending == 0

    assert result.returncode == 3, result.stdout + result.stderr
    lines = result.stdout.split("\n")
    # the step's failure quoted its findings' problems, one to a line ("- not valid
    # JSON ..."), each printed as a line of its own
    [failed] = [line for line in lines if line.startswith("FAILED   understand")]
    assert "findings refused: Findings not accepted (1 problem): - not valid JSON" in failed
    assert failed.endswith(" [dead-letter queue]")
    run_id = run_id_of(result)
    progress = lines[1 : lines.index(f"run {run_id}: needs human")]
    assert [line for line in progress if not line.startswith(EVENTS)] == []
    # and the report's list of what to check is one item a line, as the reason is
    # folded there too
    said = lines[lines.index("what a human should check:") + 1 :]
    [item] = [line for line in said if line.startswith("  - 'understand' failed")]
    assert "Findings not accepted (1 problem): - not valid JSON" in item
    assert [line for line in said if line.startswith("- ")] == []
    # the record keeps the reason as it was written
    events = cli.events(run_id)
    [reason] = [e["reason"] for e in events if e["kind"] == "step_failed"]
    assert "Findings not accepted (1 problem):\n- not valid JSON" in reason
