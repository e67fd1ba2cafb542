"""``bench/monitor_headroom.py`` on the published-layout sample and on made-up runs.

The sample (``tests/data/published_runs``) holds excerpts: the first turns of seven
real runs, so none is still running at half-way and the search there is checked at an
earlier decision point. Made-up runs check the threshold search against known answers
and against a brute-force search.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from bench_modules import load_bench
from trestle.monitors.corpus import load_runs

TREE = Path(__file__).resolve().parent / "data" / "published_runs"
EXHAUSTED_RUN = "pytest-dev__pytest-10356.json.gz"


@pytest.fixture(scope="module")
def headroom() -> ModuleType:
    return load_bench("monitor_headroom")


def made_up(
    headroom: ModuleType,
    outcome: str,
    values: Mapping[str, float],
    *,
    running: bool = True,
    half: str = "tune",
) -> Any:
    features = {name: 0.0 for name in headroom.FEATURES} | dict(values)
    return headroom.Prefix(
        name=f"{outcome}-{len(values)}-{sorted(values.items())}",
        source="made-up",
        half=half,
        outcome=outcome,
        calls=50 if running else 20,
        limit=50,
        running=running,
        features=features,
    )


def test_the_sample_at_half_way(headroom: ModuleType) -> None:
    runs, unlimited = headroom.load_prefixes(TREE)
    assert unlimited == 0 and len(runs) == 7
    assert {r.half for r in runs} == {"tune"}  # every task of the sample hashes to tune
    by = {(r.source, r.outcome): 0 for r in runs}
    for r in runs:
        by[(r.source, r.outcome)] += 1
    assert by == {
        ("mini-swe-agent", "succeeded"): 3,
        ("openhands", "succeeded"): 3,
        ("openhands", "exhausted"): 1,
    }
    assert headroom.sources_with_exhausted(runs) == ["openhands"]
    # excerpts: at most 24 of OpenHands' 50 calls, 57 of mini-swe-agent's 250
    assert not any(r.running for r in runs)
    for r in runs:
        assert list(r.features) == list(headroom.FEATURES)
        assert all(math.isfinite(v) for v in r.features.values())
        f = r.features
        assert f["edits"] == f["source_edits"] + f["scratch_edits"]
        for name in ("fail_share", "error_share", "no_action_share", "malformed_share"):
            assert 0.0 <= f[name] <= 1.0
    oh = [r for r in runs if r.source == "openhands"]
    found = headroom.search(oh, [])
    assert found.allowed == 0 and found.singles == [] and found.pairs == []
    assert len(found.unfit) == 2 * len(headroom.FEATURES)


def test_the_features_count_what_the_turns_hold(headroom: ModuleType) -> None:
    (run,) = [r for r in load_runs([TREE]).runs if r.name.endswith(EXHAUSTED_RUN)]
    seen = headroom.half_way(50, 0.2)
    assert seen == 10
    features = headroom.prefix_features(run.turns, seen)
    actions = [a for t in run.turns if t.index < seen for a in t.actions]
    kinds = [a.kind for a in actions]
    assert features["edits"] == kinds.count("edit")
    assert features["reads"] == kinds.count("read")
    assert features["tests"] == kinds.count("test")
    assert features["runs"] == kinds.count("run")
    errors = sum(a.ok is False for a in actions)
    assert features["error_share"] == pytest.approx(errors / len(actions))
    reasoning = [len(t.text) for t in run.turns if t.index < seen]
    assert features["reasoning_chars"] == pytest.approx(sum(reasoning) / seen)
    # later turns change nothing before the decision point
    assert headroom.prefix_features(run.turns[:seen], seen) == features


def test_the_search_on_the_sample_keeps_to_the_limit(headroom: ModuleType) -> None:
    runs, _ = headroom.load_prefixes(TREE, 0.2)  # decide after call 10 of 50
    oh = [r for r in runs if r.source == "openhands"]
    assert [r.running for r in oh if r.outcome == "exhausted"] == [True]
    assert sum(r.running for r in oh if r.outcome == "succeeded") == 2
    found = headroom.search(oh, oh)
    assert found.allowed == 0  # 3% of 3 succeeded runs
    assert found.singles and found.pairs
    assert len(found.singles) + len(found.unfit) == 2 * len(headroom.FEATURES)
    for f in (*found.singles, *found.pairs):
        assert f.fit.succeeded_flagged <= found.allowed
        assert f.fit == headroom.tally(f.rule, oh) == f.scored
        assert f.fit.exhausted == 1 and f.fit.succeeded == 3
        assert len(f.rule.conditions) == (1 if f in found.singles else 2)
    assert found.singles[0].fit.exhausted_flagged == 1
    scores = [f.fit.score for f in found.singles]
    assert scores == sorted(scores, reverse=True)
    assert all(not f.rule.flags(r) for f in found.singles for r in oh if not r.running)


def test_the_search_finds_the_known_best_thresholds(headroom: ModuleType) -> None:
    # edits: succeeded 0..9, exhausted 5..14; the exhausted with 5..9 edits also read
    tune = [made_up(headroom, "succeeded", {"edits": v}) for v in range(10)]
    tune += [made_up(headroom, "exhausted", {"edits": v, "reads": v < 10}) for v in range(5, 15)]
    tune.append(made_up(headroom, "succeeded", {"edits": 100}, running=False))
    report = [made_up(headroom, "exhausted", {"edits": v}, half="report") for v in (9, 10)]
    report.append(made_up(headroom, "succeeded", {"edits": 12}, half="report"))
    found = headroom.search(tune, report)
    assert found.allowed == 0  # floor(3% of 11)
    best = {str(f.rule): f for f in found.singles}
    edits = best["edits > 9.5"]
    assert (edits.fit.exhausted_flagged, edits.fit.succeeded_flagged) == (5, 0)
    assert (edits.scored.exhausted_flagged, edits.scored.exhausted) == (1, 2)
    assert (edits.scored.succeeded_flagged, edits.scored.succeeded) == (1, 1)
    top = found.pairs[0]
    assert str(top.rule) == "edits > 9.5 OR reads > 0.5"
    assert (top.fit.exhausted_flagged, top.fit.succeeded_flagged) == (10, 0)
    # a looser limit allows one false flag, and the threshold moves by one value
    looser = headroom.search(tune, report, limit=0.1, pairs=False)
    assert looser.allowed == 1
    edits = {str(f.rule): f for f in looser.singles}["edits > 8.5"]
    assert (edits.fit.exhausted_flagged, edits.fit.succeeded_flagged) == (6, 1)


def test_the_pair_search_matches_a_brute_force_one(headroom: ModuleType) -> None:
    rng = random.Random(7)
    runs = [
        made_up(
            headroom,
            rng.choice(("exhausted", "succeeded")),
            {"edits": rng.randrange(8), "reads": rng.randrange(8)},
        )
        for _ in range(40)
    ]
    directions = ("high", "low")
    cases = itertools.product((0, 2), ("and", "or"), directions, directions)
    for allowed, op, da, db in cases:
        a = headroom._chain(runs, "edits", da)
        b = headroom._chain(runs, "reads", db)
        brute = max(
            (
                (joined(x.exhausted, y.exhausted, op), -joined(x.succeeded, y.succeeded, op))
                for x in a
                for y in b
                if joined(x.succeeded, y.succeeded, op) <= allowed
                and (
                    op == "and" or max(x.succeeded.bit_count(), y.succeeded.bit_count()) <= allowed
                )
            ),
            default=None,
        )
        got = headroom._best_pair(a, b, op, allowed)
        assert (None if got is None else (got[0], -got[1])) == brute, (allowed, op, da, db)


def joined(x: int, y: int, op: str) -> int:
    return (x & y if op == "and" else x | y).bit_count()


def test_the_script_prints_the_tables_and_writes_json(
    headroom: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "headroom.json"
    assert headroom.main(["--root", str(TREE), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "## openhands" in text and "No exhausted runs, not searched: mini-swe-agent" in text
    assert "| tune | 0/1 | 0/3 | 0/0 |" in text
    assert "### Top 10 single rules" in text and "### Top 10 pairs" in text
    data = json.loads(out.read_text(encoding="utf-8"))
    assert list(data["sources"]) == ["openhands"]
    source = data["sources"]["openhands"]
    assert source["running"]["tune"]["exhausted"] == [0, 1]
    assert source["allowed_false_flags"] == {"tune": 0, "report": 0}
    assert len(source["runs"]) == 4
    assert headroom.share(3, 4) == "3/4 = 75% (95% CI 30%-95%)"
    assert headroom.share(0, 0) == "- (no runs)"
