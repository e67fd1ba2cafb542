"""The cascade-tracing suite, short: twelve of the seeded cascades of
``bench/cascades.py`` (seed 36), each run for real and blamed from its stored events.

The cases are the suite's first ten plan cascades (every depth from 1 to 5, fan-in 1
and 2, every decoy kind and culprit style) and two agent runs (agent-02: the culprit
was retried; agent-05). The full suite (50 cascades) does not find every culprit in
its top three: its misses are reported in BENCHMARKS.md, "Cascade tracing", not
asserted here. The fraction first is asserted at half: these twelve have 7 first on
seed 36, but the same twelve positions of the held-out seeds 101 and 202 have 5 and
6. What it shows to hold, asserted here: every run fails where its case says; these
twelve rank the culprit in the top three and at least half of them first; the CLI
ranks as the call does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from bench_modules import load_bench

pytestmark = pytest.mark.usefixtures("unconfined")

SEED = 36
PLANS = 10
AGENTS = ("agent-02", "agent-05")


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    yield load_bench("cascades")


def test_the_same_seed_gives_the_same_cases(bench: ModuleType) -> None:
    cases = load_bench("cascade_cases")
    assert cases.generate(SEED, 12, 3) == cases.generate(SEED, 12, 3)
    assert cases.generate(SEED, 12, 3) != cases.generate(SEED + 1, 12, 3)
    # a longer suite begins with the shorter one's cases
    assert cases.generate(SEED, 40, 10)[:PLANS] == cases.generate(SEED, PLANS, 0)


def test_twelve_cascades_rank_their_culprit_in_the_top_three(
    bench: ModuleType, tmp_path: Path
) -> None:
    assert os.environ["TRESTLE_SANDBOX"] == "off"
    cases = load_bench("cascade_cases").generate(SEED, PLANS, 6)
    chosen = [c for c in cases if c.kind == "plan" or c.name in AGENTS]
    assert len(chosen) == 12
    tags = {k: {c.tags[k] for c in chosen} for k in ("depth", "decoy", "style", "kind")}
    assert tags["depth"] == {"1", "2", "3", "4", "5"} and tags["kind"] == {"plan", "agent"}
    assert len(tags["decoy"]) == 5 and len(tags["style"]) == 5

    outcomes = []
    for n, case in enumerate(chosen):
        root = tmp_path / case.name
        root.mkdir()
        outcomes.append(bench.evaluate(case, root, cli=n % 4 == 0))

    ranks = {o.name: o.rank for o in outcomes}
    assert [o.name for o in outcomes if not o.valid] == []
    assert all(o.cli_agrees for o in outcomes if o.cli_agrees is not None)
    assert all(r is not None and r <= 3 for r in ranks.values()), ranks
    assert sum(r == 1 for r in ranks.values()) >= len(ranks) / 2, ranks
