"""bench/stale.py tells a published figure that still holds from one that moved.

Results are written by the benches' own helper (bench/figures.py) into a temporary
directory, and stale.py runs as ``make bench`` runs it, in its own process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench_modules import BENCH, load_bench

figures = load_bench("figures")


def _figure(id: str, value: float, noise: dict[str, Any], nproc: str = "2") -> dict[str, Any]:
    return {
        "id": id,
        "command": "python bench/made_up.py",
        "value": value,
        "unit": "ms",
        "noise": {**noise, "why": "made up for the test"},
        "commit": "abc1234",
        "nproc": nproc,
        "python": "CPython 3.11.7",
        "sqlite": "3.40.1",
    }


def _stale(tmp_path: Path, *figures_: dict[str, Any], strict: bool = True) -> tuple[int, str]:
    register = tmp_path / "published.json"
    register.write_text(json.dumps({"figures": list(figures_)}), encoding="utf-8")
    argv = [sys.executable, str(BENCH / "stale.py"), "--published", str(register)]
    argv += ["--results", str(tmp_path / "results"), *(["--strict"] if strict else [])]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return done.returncode, done.stdout + done.stderr


def _row(output: str, figure: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(f"| `{figure}`"))


def _machine(nproc: str = "2", cpu: str = "unknown") -> dict[str, str]:
    return {
        "nproc": nproc,
        "cpu": cpu,
        "python": "CPython 3.11.7",
        "sqlite": "3.40.1",
        "trestle_commit": "x",
    }


def test_a_moved_figure_is_flagged_and_fails_strict(tmp_path: Path) -> None:
    results = tmp_path / "results"
    figures.record("held", 104.0, "ms", _machine(), samples=[99, 110], results_dir=results)
    figures.record("moved", 120.0, "ms", _machine(), results_dir=results)  # older than next
    figures.record("moved", 150.0, "ms", _machine(), results_dir=results)
    published = (
        _figure("held", 100, {"relative": 0.1}),
        _figure("moved", 100, {"relative": 0.1}),
        _figure("never", 100, {"relative": 0.1}),
        _figure("cores", 100, {"relative": 0.1}, nproc="16"),
    )
    figures.record("cores", 300.0, "ms", _machine(), results_dir=results)

    code, out = _stale(tmp_path, *published)

    assert code == 1, out
    assert _row(out, "held").endswith("| 1.04x | holds: noise ±10% |")
    assert "**MOVED beyond noise**: off by 50 ms" in _row(out, "moved")  # the latest, 150
    assert "| 1.50x |" in _row(out, "moved")
    assert "not measured since" in _row(out, "never")
    assert "not comparable: 16 cores published, 2 now" in _row(out, "cores")
    assert "moved beyond their noise: moved\n" in out

    code, _ = _stale(tmp_path, *published, strict=False)
    assert code == 0


def test_held_figures_pass_strict_and_an_absolute_noise_is_a_count(tmp_path: Path) -> None:
    results = tmp_path / "results"
    figures.record("zero", 0.0, "count", _machine(), results_dir=results)
    figures.record("share", 9.4, "%", _machine(), results_dir=results)

    code, out = _stale(
        tmp_path, _figure("zero", 0, {"absolute": 0}), _figure("share", 9, {"absolute": 0.5})
    )
    assert code == 0, out
    assert "holds" in _row(out, "zero") and "holds" in _row(out, "share")

    figures.record("zero", 1.0, "count", _machine(), results_dir=results)
    code, out = _stale(tmp_path, _figure("zero", 0, {"absolute": 0}))
    assert code == 1 and "MOVED" in _row(out, "zero"), out


def test_a_register_without_noise_is_refused_naming_the_figure(tmp_path: Path) -> None:
    broken = _figure("step", 1, {"relative": 0.1})
    broken["noise"] = {"why": "forgot the number"}
    code, out = _stale(tmp_path, broken)
    assert code == 2
    assert "figure 'step': noise needs 'relative' or 'absolute'" in out


def test_the_commit_is_that_of_the_trestle_imported(tmp_path: Path) -> None:
    """A tree on PYTHONPATH is measured, so its HEAD is the commit, "+dirty" once its
    src/ changes."""
    tree = tmp_path / "other"
    (tree / "src" / "trestle").mkdir(parents=True)
    (tree / "src" / "trestle" / "__init__.py").write_text("")

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "other")
    head = git("rev-parse", "--short", "HEAD")
    probe = [sys.executable, "-c", "import hostinfo; print(hostinfo.trestle_commit())"]
    env = {"PYTHONPATH": f"{tree / 'src'}:{BENCH}", "PATH": "/usr/bin:/bin"}
    seen = subprocess.run(probe, capture_output=True, text=True, env=env, check=True).stdout
    assert seen.strip() == head

    (tree / "src" / "trestle" / "__init__.py").write_text("changed = True\n")
    seen = subprocess.run(probe, capture_output=True, text=True, env=env, check=True).stdout
    assert seen.strip() == f"{head}+dirty"


def test_compare_records_the_figures_it_measured_at_the_published_sizes(tmp_path: Path) -> None:
    """compare.py's summaries become the register's figures; a quick run's do not."""
    compare, tables = load_bench("compare"), load_bench("comparetables")
    steps: dict[str, Any] = {
        "params": {"n": 1000},
        "raw": {
            "trestle": [{"steps_s": s, "fan_s": 0.25, "fan1_s": 0.22} for s in (1.0, 1.1, 1.3)],
            "langgraph": [{"steps_s": s, "fan_s": 1.2, "fan1_s": 0.22} for s in (1.1, 1.2, 1.4)],
        },
    }
    per_turn = {"turns": [50, 500], "us_per_turn": [[3.1e3, 3.3e3], [4e3, 5e3]]}
    theirs = {"turns": [50, 500], "us_per_turn": [[6.2e3, 6.6e3], [40e3, 42e3]]}
    turns: dict[str, Any] = {"raw": {"trestle": per_turn, "langgraph": theirs}}
    for name, data in (("steps", steps), ("turns", turns)):
        data["summary"] = tables.SUMMARISERS[name](data, list(data["raw"]))
    config = {"steps": 1000, "width": 32, "sleep": 0.2, "trials": 200}
    results = {
        "machine": _machine(),
        "config": config,
        "workloads": {"steps": steps, "turns": turns},
    }
    quick = {**results, "config": {**config, "steps": 30}, "workloads": {"steps": steps}}
    compare.record_figures(quick, to=tmp_path / "results")
    assert not list((tmp_path / "results").glob("figure-step*"))

    compare.record_figures(results, to=tmp_path / "results")
    register = json.loads((BENCH / "published.json").read_text(encoding="utf-8"))
    # the verdicts against a step of 1,051 µs and a turn at 500 of 6,959 µs, 0.12x
    # LangGraph's, whatever is published today
    pinned = {"step_us": 1051, "turn_us_500": 6959, "turn_vs_langgraph_500": 0.12}
    figures = [dict(f, value=pinned.get(f["id"], f["value"])) for f in register["figures"]]
    code, out = _stale(tmp_path, *figures)

    noise = {f["id"]: f["noise"].get("relative") for f in register["figures"]}
    assert code == 1, out  # 4,500 µs at 500 turns is beyond the published figure's noise
    assert "| 1,100 µs (1,000 to 1,300) (`x`;" in _row(out, "step_us")
    assert _row(out, "step_us").endswith(f"holds: noise ±{noise['step_us']:.0%} |")
    assert "| 1.14 x (" in _row(out, "fanout_ratio")
    assert "| 0.917 x (`x`;" in _row(out, "step_vs_langgraph")  # Trestle / LangGraph
    assert "3,200 µs (3,100 to 3,300)" in _row(out, "turn_us_50")
    assert "MOVED beyond noise" in _row(out, "turn_us_500")
    assert "| 0.5 x (`x`;" in _row(out, "turn_vs_langgraph_50")  # 3,200 / 6,400 µs
    # 4,500 / 41,000 µs: within the published ratio's noise, so the move is the pace's
    assert "| 0.11 x (`x`;" in _row(out, "turn_vs_langgraph_500")
    assert "`turn_vs_langgraph_500` of the same run holds" in _row(out, "turn_us_500")
    assert "not measured since" in _row(out, "storage_mb_1000")
    runs = {
        json.loads(path.read_text(encoding="utf-8"))["run"]
        for path in (tmp_path / "results").glob("figure-*.json")
    }
    assert len(runs) == 1, runs  # one run of compare.py: one run for all its figures


def test_a_moved_figure_says_what_its_ratio_of_the_same_run_did(tmp_path: Path) -> None:
    """A slower machine moves a figure and the other system's alike: the ratio of the
    same run tells that from this code moving against the other; one of another run
    tells nothing."""
    results = tmp_path / "results"

    def measured(figure: str, value: float, run: str) -> None:
        figures.record(figure, value, "ms", _machine(), results_dir=results, run=run)

    measured("paced", 150, run="a")
    measured("paced_ratio", 0.51, run="a")  # published 0.5: holds
    measured("slower", 150, run="b")
    measured("slower_ratio", 0.75, run="b")  # moved with it: this code got slower
    measured("apart", 150, run="c")
    measured("apart_ratio", 0.5, run="d")  # another run's: says nothing of run c's
    published = []
    for name in ("paced", "slower", "apart"):
        published.append({**_figure(name, 100, {"relative": 0.1}), "beside": f"{name}_ratio"})
        published.append({**_figure(f"{name}_ratio", 0.5, {"relative": 0.1}), "unit": "x"})

    code, out = _stale(tmp_path, *published)

    assert code == 1, out  # the absolute figures moved, whatever the cause
    assert _row(out, "paced").endswith(
        "**MOVED beyond noise**: off by 50 ms, noise ±10%; `paced_ratio` of the same run "
        "holds (0.51 x, 0.5 x published): the machine's pace moved it and its reference "
        "alike, not this code against it |"
    )
    assert "; `slower_ratio` of the same run moved too (0.75 x, 0.5 x published) |" in (
        _row(out, "slower")
    )
    assert "; no `apart_ratio` from the same run to tell the machine from the code |" in (
        _row(out, "apart")
    )
    assert "moved beyond their noise: paced, slower, slower_ratio, apart\n" in out


def test_a_ratio_beside_a_figure_must_be_registered(tmp_path: Path) -> None:
    broken = {**_figure("step", 1, {"relative": 0.1}), "beside": "step_ratio"}
    code, out = _stale(tmp_path, broken)
    assert code == 2
    assert "figure 'step': beside names 'step_ratio', not a figure" in out


def test_startup_records_each_command_beside_its_ratio_to_the_bare_interpreter(
    tmp_path: Path,
) -> None:
    startup = load_bench("startup")
    times = {
        "python -c pass (the floor)": [0.020, 0.018, 0.019],
        "trestle --help": [0.140, 0.133, 0.150],
        "trestle runs (200 runs)": [0.290, 0.285, 0.300],
    }
    startup.record_figures(times, _machine(), to=tmp_path / "results")
    found = {
        r["figure"]: r
        for r in (
            json.loads(path.read_text(encoding="utf-8"))
            for path in (tmp_path / "results").glob("figure-*.json")
        )
    }
    assert found["startup_help_ms"]["value"] == pytest.approx(140.0)
    assert found["startup_help_vs_python"]["value"] == pytest.approx(140.0 / 19.0)
    assert found["startup_runs_vs_python"]["value"] == pytest.approx(290.0 / 19.0)
    assert len({r["run"] for r in found.values()}) == 1  # one run, so stale.py pairs them


def test_a_time_measured_on_another_processor_is_not_judged_and_its_ratio_is(
    tmp_path: Path,
) -> None:
    """The same code on a slower processor takes longer: the figure is not said to have
    moved, its same-run ratio to a reference still is judged, and a figure whose
    register names no processor is judged as before."""
    results = tmp_path / "results"
    amd = _machine(cpu="AMD EPYC")
    figures.record("turn", 175.0, "ms", amd, results_dir=results, run="a")
    figures.record("turn_ratio", 0.52, "x", amd, results_dir=results, run="a")
    figures.record("unnamed", 175.0, "ms", amd, results_dir=results, run="a")
    xeon = {"cpu": "Intel(R) Xeon(R) Processor"}
    published = (
        {**_figure("turn", 100, {"relative": 0.1}), **xeon, "beside": "turn_ratio"},
        {**_figure("turn_ratio", 0.5, {"relative": 0.1}), **xeon, "unit": "x"},
        _figure("unnamed", 100, {"relative": 0.1}),
    )

    code, out = _stale(tmp_path, *published)

    assert (
        "not comparable: a time on 'Intel(R) Xeon(R) Processor' published, on 'AMD EPYC' now"
        in _row(out, "turn")
    )
    assert "holds" in _row(out, "turn_ratio")
    assert "MOVED" in _row(out, "unnamed")
    assert code == 1 and "moved beyond their noise: unnamed\n" in out, out
