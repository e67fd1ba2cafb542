"""``bench/realtext.py`` gives the scripted agent loop real agents' text: the reasoning
and observation of each turn of the trajectories it is pointed at, each observation
once; ``bench/turn_parts.py --text real`` runs the loop on them. Nothing here is about
speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench_modules import BENCH, load_bench

THOUGHT = "THOUGHT: I should look at the module that parses the query string first. " * 4


def _trajectory(folder: Path, name: str, observations: list[str]) -> None:
    """A mini-swe-agent run whose every turn reasons, then runs ``cat`` and is shown one
    of ``observations``."""
    messages: list[dict[str, object]] = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Please solve this issue: the query is split wrongly."},
    ]
    for i, shown in enumerate(observations):
        said = f"{THOUGHT}({name} {i})\n\n```mswea_bash_command\ncat f{i}.py\n```"
        messages += [
            {"role": "assistant", "content": said, "extra": {"actions": [{"command": "cat"}]}},
            {"role": "user", "content": f"<returncode>0</returncode>\n<output>\n{shown}</output>"},
        ]
    run = {"trajectory_format": "mini-swe-agent-1", "messages": messages, "info": {}}
    (folder / f"{name}.traj.json").write_text(json.dumps(run))


def _source(i: int) -> str:
    return "".join(f"def f{i}_{n}(query):\n    return query.split('&')[{n}]\n" for n in range(8))


def test_each_turn_with_reasoning_and_an_observation_is_taken_once_in_order(
    tmp_path: Path,
) -> None:
    realtext = load_bench("realtext")
    _trajectory(tmp_path, "b-run", [_source(3), "short", _source(4)])
    _trajectory(tmp_path, "a-run", [_source(1), _source(2), _source(1)])  # shown again
    pairs = realtext.real_turns(tmp_path)
    assert [said.split("(")[-1].split(")")[0] for said, _ in pairs] == [
        "a-run 0",
        "a-run 1",
        "b-run 0",
        "b-run 2",
    ]
    assert [shown.strip() for _, shown in pairs] == [_source(n).strip() for n in (1, 2, 3, 4)]
    assert realtext.real_turns(tmp_path, limit=2) == pairs[:2]


def test_too_few_real_turns_or_no_folder_is_an_error_naming_the_folder(tmp_path: Path) -> None:
    realtext = load_bench("realtext")
    _trajectory(tmp_path, "run", [_source(1), _source(2)])
    with pytest.raises(ValueError, match=f"{tmp_path}: 2 turns .* 3 wanted"):
        realtext.use_real_text(tmp_path, turns=3)
    with pytest.raises(ValueError, match="no such folder"):
        realtext.real_turns(tmp_path / "missing")


def test_the_turn_parts_bench_runs_a_loop_of_real_text(tmp_path: Path) -> None:
    _trajectory(tmp_path, "run", [_source(i) for i in range(8)])
    done = _turn_parts("--turns", "6", "--trajectories", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "6 turns of real text" in done.stdout
    assert "numpy sums" not in done.stdout  # only the execute step embeds every read
    executing = _turn_parts(
        "--turns", "6", "--trajectories", str(tmp_path), "--reads-in", "execute"
    )
    assert executing.returncode == 0, executing.stderr
    # a process imports them once, at some turn of real text: not spread over the turns
    assert "the drift monitor's numpy sums: imported in " in executing.stdout
    short = _turn_parts("--turns", "9", "--trajectories", str(tmp_path))
    assert short.returncode == 2
    assert "8 turns with 200 characters or more" in short.stderr


def _turn_parts(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(BENCH / "turn_parts.py"), "--repeat", "1", "--text", "real"]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=300, check=False)
