"""OpenHands' evaluation output (``output.jsonl``, one run a line) read by the importer
and evaluated by ``trestle monitors eval`` through the real console script.

``data/openhands_output.jsonl`` has three runs in the harness's shape: one graded
resolved, one that a ContextWindowExceededError ended after two long ``cat`` outputs
on an 8,192-token model, one graded unresolved.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from test_cli import Cli
from trestle.core.errors import ConfigError
from trestle.monitors.corpus import load_runs
from trestle.monitors.evaloutput import is_evaluation_output, read_evaluation_output
from trestle.monitors.importers import load_trajectory_file
from trestle.monitors.trace import Turn

OUTPUT = Path(__file__).parent / "data" / "openhands_output.jsonl"


def test_each_line_is_a_run_with_its_outcome_model_limit_and_costs() -> None:
    assert is_evaluation_output(OUTPUT)
    found = read_evaluation_output(OUTPUT)
    assert found.errors == []
    runs = {run.name: run for run in found.runs}
    assert list(runs) == [
        "openhands_output.jsonl#pkg__calc-101",
        "openhands_output.jsonl#web__dispatch-202",
        "openhands_output.jsonl#text__parse-303",
    ]
    resolved, overflowed, unresolved = runs.values()
    assert [r.outcome for r in runs.values()] == ["succeeded", "exhausted", "failed"]
    assert overflowed.exit_status == "exit_context"
    assert resolved.facts.model == "openai/gpt-4-0613" and resolved.facts.turn_limit == 30
    assert "add() subtracts" in resolved.facts.goal
    turns = [o for o in resolved.observations if isinstance(o, Turn)]
    assert [a.tool for t in turns for a in t.actions] == [
        "execute_bash",
        "execute_bash",
        "str_replace_editor",
        "execute_bash",
        "finish",
    ]
    assert [t.prompt_tokens for t in turns] == [1400, 1650, 1800, 1950, 2050]
    assert [t.cost for t in turns] == [0.05, 0.05, 0.06, 0.06, 0.06]
    assert resolved.cost == 0.28 and turns[3].actions[0].ok is True
    big = overflowed.turns[-1].actions[0]
    assert big.output_chars == len(big.output) == 6_989
    assert unresolved.turns[0].actions[0].ok is False


def test_monitors_eval_evaluates_every_run_and_sees_the_overflow_coming(tmp_path: Path) -> None:
    cli = Cli(tmp_path, tmp_path / "t.db")
    result = cli("monitors", "eval", OUTPUT, "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert (figures["runs"], figures["exhausted"], figures["succeeded"]) == (3, 1, 1)
    by_name = {r["name"]: r for r in figures["results"]}
    overflow = by_name["openhands_output.jsonl#web__dispatch-202"]
    flag = next(f for f in overflow["flags"] if f["monitor"] == "context" and f["kind"])
    # raised on the last call that got an answer: the next one overflowed
    assert (flag["severity"], flag["turn"]) == ("critical", 3)
    assert "8,192-token window of openai/gpt-4-0613" in flag["message"]
    assert not by_name["openhands_output.jsonl#pkg__calc-101"]["flags"]


def test_a_malformed_line_is_named_and_the_other_runs_are_still_read(tmp_path: Path) -> None:
    lines = OUTPUT.read_text(encoding="utf-8").splitlines()
    broken = [lines[0], '{"instance_id": "half__written-1", "history": [', lines[1], "[1, 2]"]
    folder = tmp_path / "outputs"
    folder.mkdir()
    (folder / "output.jsonl").write_text("\n".join([*broken, lines[2]]) + "\n", encoding="utf-8")
    corpus = load_runs([folder])
    assert [r.name for r in corpus.runs] == [
        "output.jsonl#pkg__calc-101",
        "output.jsonl#web__dispatch-202",
        "output.jsonl#text__parse-303",
    ]
    assert len(corpus.errors) == 2
    assert corpus.errors[0].endswith("output.jsonl:2: not JSON: Expecting value at column 48")
    assert corpus.errors[1].endswith("output.jsonl:4: must be an object, not list")

    cli = Cli(tmp_path, tmp_path / "t.db")
    result = cli("monitors", "eval", folder / "output.jsonl")
    assert result.returncode == 2  # bad input, though the rest was evaluated
    assert "Replayed 3 runs (1 exhausted, 1 succeeded)" in result.stdout
    assert "output.jsonl:2: not JSON" in result.stderr
    assert "output.jsonl:4: must be an object" in result.stderr
    assert "2 runs could not be read" in result.stderr and "Traceback" not in result.stderr


def test_a_gzipped_output_is_read_and_a_line_without_an_instance_is_refused(
    tmp_path: Path,
) -> None:
    plain = tmp_path / "output.jsonl"
    shutil.copy(OUTPUT, plain)
    with plain.open("a", encoding="utf-8") as out:
        out.write(json.dumps({"history": [], "test_result": {}}) + "\n")
    found = read_evaluation_output(plain)
    assert len(found.runs) == 3
    assert found.errors == [f"{plain}:4: missing 'instance_id' (the task the run was on)"]
    assert not is_evaluation_output(tmp_path / "missing.json")


def test_reading_it_as_one_trajectory_says_what_it_is() -> None:
    with pytest.raises(ConfigError, match="an OpenHands evaluation output of 3 runs"):
        load_trajectory_file(OUTPUT)
