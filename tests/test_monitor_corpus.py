"""``trestle monitors eval`` on runs laid out as they are published, through the real CLI.

``tests/data/published_runs`` holds the real-run excerpts in the shared layout: a
folder per scaffold, a run set under each with its ``index.jsonl`` (the upstream
lines), gzipped runs under ``trajs/``. The bench reads runs with the same loader.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench_modules import load_bench
from test_cli import Cli, flat
from trestle.core.errors import ConfigError
from trestle.monitors.corpus import index_outcome, load_runs
from trestle.monitors.trace import Turn

TREE = Path(__file__).resolve().parent / "data" / "published_runs"
OPENHANDS_SET = "openhands/mopenhands_claude-3.5-sonnet-oct_python_verified"
MINI_SET = "mini-swe-agent/20251118_mini-v1.15.0_gemini-3-pro-preview"
MINI_ROW = "| mini-swe-agent | 3 | - (no runs) | 0/3 = 0% (95% CI 0%-56%) |"
OPENHANDS_ROW = "| openhands | 4 | 0/1 = 0% (95% CI 0%-79%) | 0/3 = 0% (95% CI 0%-56%) |"


def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path, tmp_path / "t.db")


def copy_tree(tmp_path: Path) -> Path:
    """A copy of the tree to break (the links to the excerpts become files)."""
    return Path(shutil.copytree(TREE, tmp_path / "runs"))


def test_a_tree_of_published_runs_gives_figures_per_scaffold(tmp_path: Path) -> None:
    result = cli(tmp_path)("monitors", "eval", TREE)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # outcomes from the indexes: the pytest run used its 50 calls without a finish
    assert "Replayed 7 runs (1 exhausted, 6 succeeded)." in out
    assert MINI_ROW in out and OPENHANDS_ROW in out
    assert "4 runs record no turn limit (OpenHands): each was given 50 calls" in flat(out)
    assert "7 runs name no model: the context monitor assumed a 128,000-token" in flat(out)
    named = cli(tmp_path)("monitors", "eval", TREE, "--model", "claude-3-5-sonnet-20241022")
    assert named.returncode == 0 and "name no model" not in named.stdout


def test_a_scaffold_folder_and_a_run_set_folder_count_under_the_scaffold(tmp_path: Path) -> None:
    for path in (TREE / "openhands", TREE / OPENHANDS_SET):
        result = cli(tmp_path)("monitors", "eval", path)
        assert result.returncode == 0, result.stderr
        assert "Replayed 4 runs (1 exhausted, 3 succeeded)." in result.stdout
        assert OPENHANDS_ROW in result.stdout


def test_sources_are_the_scaffold_folders_not_the_formats(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    (root / "openhands").rename(root / "openhands-codeact")
    result = cli(tmp_path)("monitors", "eval", root, "--json")
    assert result.returncode == 0, result.stderr
    sources = {s["source"]: s for s in json.loads(result.stdout)["sources"]}
    assert sorted(sources) == ["mini-swe-agent", "openhands-codeact"]
    assert sources["openhands-codeact"]["exhausted_by_half"] == {"part": 0, "whole": 1}
    names = [r["name"] for r in json.loads(result.stdout)["results"]]
    assert f"{MINI_SET}/trajs/django__django-11299.traj.json.gz" in names


def test_single_files_and_plain_folders_are_still_read(tmp_path: Path) -> None:
    run = TREE / OPENHANDS_SET / "trajs" / "pytest-dev__pytest-10356.json.gz"
    result = cli(tmp_path)("monitors", "eval", run, "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["runs"] == 1 and figures["sources"][0]["source"] == "openhands"
    # a folder without an index: every run file in it, outcomes from the files (these
    # excerpts are cut before the final call, so they say nothing of how they ended)
    result = cli(tmp_path)("monitors", "eval", TREE / OPENHANDS_SET / "trajs")
    assert result.returncode == 0, result.stderr
    assert "Replayed 4 runs (0 exhausted, 0 succeeded)." in result.stdout


def test_the_turn_limit_of_openhands_runs_is_an_option(tmp_path: Path) -> None:
    corpus = load_runs([TREE / OPENHANDS_SET], turn_limit=30)
    assert corpus.given_turn_limit == 4
    assert {r.facts.turn_limit for r in corpus.runs} == {30}
    mini = load_runs([TREE / MINI_SET])  # mini-swe-agent records its own (250 steps)
    assert mini.given_turn_limit == 0 and {r.facts.turn_limit for r in mini.runs} == {250}
    result = cli(tmp_path)("monitors", "eval", TREE / OPENHANDS_SET, "--turn-limit", "30")
    assert result.returncode == 0, result.stderr
    assert "each was given 30 calls (--turn-limit)" in flat(result.stdout)


def test_a_file_the_index_names_but_is_missing_is_an_error_naming_the_line(
    tmp_path: Path,
) -> None:
    root = copy_tree(tmp_path)
    (root / OPENHANDS_SET / "trajs" / "django__django-16082.json.gz").unlink()
    result = cli(tmp_path)("monitors", "eval", root)
    assert result.returncode == 2
    err = flat(result.stderr)
    assert f"{OPENHANDS_SET}/index.jsonl:2: names 'trajs/django__django-16082.json.gz'" in err
    assert "missing" in err and "Traceback" not in result.stderr


def test_an_index_line_that_cannot_be_read_is_an_error_naming_the_line(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    index = root / MINI_SET / "index.jsonl"
    lines = index.read_text(encoding="utf-8").splitlines()
    for bad, says in (
        ('{"instance_id": "x", "file": ', "not JSON"),
        ('{"instance_id": "x", "resolved": true}', "missing 'file'"),
        ('{"file": "trajs/django__django-11951.traj.json.gz"}', "'resolved' must be"),
    ):
        index.write_text("\n".join([lines[0], bad, lines[2]]) + "\n", encoding="utf-8")
        result = cli(tmp_path)("monitors", "eval", root)
        assert result.returncode == 2
        err = flat(result.stderr)
        assert f"{MINI_SET}/index.jsonl:2: {says}" in err, err
        assert "Traceback" not in result.stderr


def test_a_file_of_unknown_format_is_an_error_naming_it_and_the_formats(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    odd = root / OPENHANDS_SET / "trajs" / "django__django-11265.json.gz"
    odd.unlink()
    odd.write_bytes(gzip.compress(json.dumps({"steps": []}).encode()))
    result = cli(tmp_path)("monitors", "eval", root)
    assert result.returncode == 2
    err = flat(result.stderr)
    assert "trajs/django__django-11265.json.gz: unknown trajectory format; tried" in err
    for name in ("swe-agent", "mini-swe-agent", "openhands", "openhands-events", "trestle"):
        assert f"{name}:" in err


@pytest.mark.parametrize(
    ("entry", "outcome"),
    [
        ({"resolved": True, "exit_status": "exit_cost"}, "succeeded"),
        ({"resolved": False, "exit_status": "exit_cost"}, "exhausted"),
        ({"resolved": False, "exit_status": "exit_context"}, "exhausted"),
        ({"resolved": False, "exit_status": "submitted (exit_cost)"}, "exhausted"),
        ({"resolved": False, "exit_status": "submitted"}, "failed"),
        ({"resolved": False, "exit_status": "exit_total_execution_time"}, "exhausted"),
        ({"resolved": False, "exit_status": "LimitsExceeded"}, "exhausted"),  # mini-swe-agent
        ({"resolved": False, "exit_status": "exit_error"}, "failed"),
        ({"resolved": False, "exit_status": "Submitted"}, "failed"),  # mini-swe-agent
        ({"resolved": False, "ended_without_finish_at_budget": True}, "exhausted"),
        ({"resolved": False, "ended_without_finish_at_budget": False}, "failed"),
        ({"resolved": True, "ended_without_finish_at_budget": True}, "succeeded"),
        ({"label": "empty_or_error_patch"}, "failed"),
    ],
)
def test_outcomes_follow_the_published_rules(entry: dict[str, Any], outcome: str) -> None:
    assert index_outcome(entry, "index.jsonl:1") == outcome


def test_a_labels_file_beside_the_runs_wins_over_the_index(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    labels = {"pytest-dev__pytest-10356.json.gz": {"outcome": "failed", "problems": ["loop"]}}
    (root / OPENHANDS_SET / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    corpus = load_runs([root])
    name = f"{OPENHANDS_SET}/trajs/pytest-dev__pytest-10356.json.gz"
    assert corpus.labels[name].problems == ("loop",)
    assert next(r for r in corpus.runs if r.name == name).outcome == "failed"


def test_a_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file or folder"):
        load_runs([tmp_path / "nowhere"])


def test_the_bench_reads_the_runs_the_cli_reads() -> None:
    bench = load_bench("monitors_real")
    # the OpenHands logs name no model: the bench gives the published one, as
    # `trestle monitors eval --model` does
    same = load_runs([TREE], model=bench.OPENHANDS_MODEL)
    assert bench.load_runs(TREE, "all") == list(same.runs)
    halves = [r.name for half in ("tune", "report") for r in bench.load_runs(TREE, half)]
    assert sorted(halves) == sorted(r.name for r in load_runs([TREE]).runs)


def test_the_bench_says_what_a_turn_costs_the_monitors_of_each_source() -> None:
    bench = load_bench("monitors_real")
    runs = bench.load_runs(TREE, "all")
    table = bench.cost(runs, bench.trestle_monitors).splitlines()
    rows = [line.strip("|").split(" | ") for line in table[2:]]
    timed = Counter(r.source for r in runs if any(isinstance(o, Turn) for o in r.observations))
    assert {row[0].strip(): int(row[1]) for row in rows} == dict(timed)
    assert len(timed) > 1  # a row per source, not one for all
    assert all(cell.strip().endswith(" µs") for row in rows for cell in row[2:])
