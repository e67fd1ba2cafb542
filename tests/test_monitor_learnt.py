"""The learnt detector: its features on a recorded run, its training, and its flags.

The run is ``mini-051-mathx-rerun`` of the monitor corpus: 30 turns (its turn limit)
of a mini-swe-agent run that reads, then edits ``mathx/rounding.py`` and re-runs the
same failing test ten times.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import ModuleType

import pytest

from bench_modules import load_bench
from test_cli import Cli
from trestle.core.records.monitors import MonitorSettings
from trestle.monitors.catalog import default_monitors, hand_written_monitors
from trestle.monitors.evaluate import evaluate
from trestle.monitors.importers import ImportedRun, load_trajectory_file
from trestle.monitors.learnt import (
    DETECTOR_FILE,
    Detector,
    LearntMonitor,
    PrefixWatcher,
    load_detector,
)
from trestle.monitors.prefix import FEATURES, features_of

DATA = Path(__file__).resolve().parent / "data"
RUN = DATA / "monitor_corpus" / "mini-swe-agent" / "mini-051-mathx-rerun.traj.json"
TRAJECTORIES = Path(__file__).resolve().parents[2] / "shared" / "trajectories"


@pytest.fixture(scope="module")
def run() -> ImportedRun:
    return load_trajectory_file(RUN)


@pytest.fixture(scope="module")
def train() -> ModuleType:
    return load_bench("train_detector")


def test_the_features_of_a_recorded_run(run: ImportedRun) -> None:
    assert run.facts.turn_limit == 30 and len(run.turns) == 30
    values = features_of(run.turns, run.facts.turn_limit)
    assert list(values) == list(FEATURES)
    assert values["limit_share"] == 1.0
    # ten edits, all to one file; ten reads; ten test runs, every one failing
    assert values["edits"] == pytest.approx(math.log1p(10))
    assert values["files_edited"] == pytest.approx(math.log1p(1))
    assert values["max_edits_one_file"] == pytest.approx(math.log1p(10))
    assert values["reads"] == values["tests"] == pytest.approx(math.log1p(10))
    assert values["runs"] == 0.0
    assert values["fail_share"] == 1.0
    assert values["error_share"] == pytest.approx(10 / 30)
    # the last edit was at turn 28 of 0-29: one turn since
    assert values["since_edit"] == pytest.approx(1 / 30)
    # nine of the ten test runs repeat the first's shape, five of the views an earlier one
    assert values["repeated_commands"] == pytest.approx(14 / 20)
    assert values["no_action_share"] == values["malformed_share"] == 0.0
    # a prefix is the run so far: its first 10 turns hold two edits and one test run
    early = features_of(run.turns[:10], 30)
    assert early["limit_share"] == pytest.approx(10 / 30)
    assert early["edits"] == pytest.approx(math.log1p(2))
    assert early["tests"] == pytest.approx(math.log1p(1))


def test_the_monitors_alerts_are_features(run: ImportedRun) -> None:
    watcher = PrefixWatcher(hand_written_monitors(MonitorSettings()))
    for item in run.observations:
        watcher.observe(item, run.facts)
    values = watcher.prefix.values(run.facts.turn_limit)
    assert watcher.turns == 30
    assert values["alerts_test_rerun"] > 0  # the same failure, edit after edit
    without = features_of(run.turns, run.facts.turn_limit)
    assert without["alerts_test_rerun"] == 0.0  # none given, none counted


def made_up_detector(threshold: float) -> Detector:
    """Weighs edits and failing runs up, nothing else; standardised around zero."""
    weights = {"edits": 1.0, "fail_share": 2.0, "reads": -0.5}
    names = tuple(FEATURES)
    return Detector(
        features=names,
        means=(0.0,) * len(names),
        scales=(1.0,) * len(names),
        weights=tuple(weights.get(n, 0.0) for n in names),
        bias=0.0,
        threshold=threshold,
        checkpoints=(0.4,),
    )


def test_a_flag_names_the_features_behind_it(run: ImportedRun) -> None:
    monitor = LearntMonitor(made_up_detector(0.5), hand_written_monitors(MonitorSettings()))
    alerts = [a for item in run.observations for a in monitor.observe(item, run.facts)]
    assert len(alerts) == 1  # once, at the checkpoint: 40% of 30 turns
    alert = alerts[0]
    assert (alert.monitor, alert.kind, alert.severity, alert.turn) == (
        "learnt",
        "likely_exhaustion",
        "warning",
        11,
    )
    assert "after 12 of 30 turns" in alert.message
    # the two features that raised the score, largest first, with their values
    assert "fail_share=1.00 (+2.00), edits=1.39 (+1.39)" in alert.message
    assert "reads" not in alert.message  # it lowered the score


def test_no_flag_under_the_threshold_or_without_a_turn_limit(run: ImportedRun) -> None:
    high = LearntMonitor(made_up_detector(100.0), hand_written_monitors(MonitorSettings()))
    assert not [a for item in run.observations for a in high.observe(item, run.facts)]
    unlimited = run.facts.model_copy(update={"turn_limit": None})
    low = LearntMonitor(made_up_detector(-100.0), hand_written_monitors(MonitorSettings()))
    assert not [a for item in run.observations for a in low.observe(item, unlimited)]


def test_the_shipped_detector_is_off_by_default_and_loads_when_asked() -> None:
    assert "learnt" not in [m.name for m in default_monitors(MonitorSettings())]
    on = default_monitors(MonitorSettings(learnt=True))
    assert [m.name for m in on][-1] == "learnt"
    detector = load_detector()
    assert detector.features == tuple(FEATURES)
    assert max(detector.checkpoints) < 0.5  # it decides before half-way


def test_a_file_that_is_not_a_detector_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "detector.json"
    bad.write_text('{"features": []}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"detector\.json: not a learnt detector"):
        load_detector(bad)
    with pytest.raises(ValueError, match="not a learnt detector"):
        load_detector(tmp_path / "missing.json")


def test_training_is_exact_and_its_threshold_spares_the_succeeded_runs(
    run: ImportedRun, train: ModuleType
) -> None:
    # a small training set made of some of the corpus's runs, labelled by their files
    files = sorted((DATA / "monitor_corpus").glob("mini-swe-agent/*"))[::3]
    runs = [load_trajectory_file(p) for p in files]
    runs = [r for r in runs if r.outcome in ("succeeded", "exhausted") and r.facts.turn_limit]
    assert {r.outcome for r in runs} == {"succeeded", "exhausted"}
    samples = train.collect(runs)
    settings = train.Settings(steps=50)
    first = train.fit(samples, settings)
    assert train.fit(samples, settings).model_dump_json() == first.model_dump_json()
    assert first.features == tuple(FEATURES) and first.checkpoints == settings.checkpoints
    scores = [train.run_score(first, r) for r in samples if r.outcome == "succeeded"]
    assert all(s is None or s <= first.threshold for s in scores)  # none flagged
    # the threshold is a succeeded run's score (rounded up): one bit lower flags it
    assert any(s is not None and s > first.threshold - 1e-5 for s in scores)


@pytest.mark.slow
@pytest.mark.skipif(
    not TRAJECTORIES.is_dir() or not os.environ.get("TRESTLE_CHECK_DETECTOR"),
    reason="about 20 s: TRESTLE_CHECK_DETECTOR=1, with the calibration set beside the "
    "repository (or: python bench/train_detector.py --check)",
)
def test_the_shipped_detector_is_what_the_script_trains(train: ModuleType) -> None:
    assert train.main(["--root", str(TRAJECTORIES), "--out", str(DETECTOR_FILE), "--check"]) == 0


def test_the_bench_scores_the_learnt_detector(run: ImportedRun) -> None:
    bench = load_bench("monitors_real")
    evaluation = evaluate([run], bench.learnt_detector)
    assert [m.monitor for m in evaluation.monitors] == ["learnt"]


def test_monitors_eval_adds_the_detector_when_asked(tmp_path: Path) -> None:
    cli = Cli(tmp_path, tmp_path / "t.db")
    names = {}
    for flags in ((), ("--learnt",)):
        result = cli("monitors", "eval", RUN, *flags, "--json")
        assert result.returncode == 0, result.stderr
        names[flags] = [m["monitor"] for m in json.loads(result.stdout)["monitors"]]
    assert "learnt" not in names[()]
    assert names[("--learnt",)] == [*names[()], "learnt"]
