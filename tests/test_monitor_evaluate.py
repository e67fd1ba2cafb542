"""The monitor evaluation, checked by hand on tiny runs with tiny monitors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from trestle.core.records.monitors import Alert
from trestle.monitors.alerts import Monitor
from trestle.monitors.corpus import load_corpus
from trestle.monitors.evaluate import Evaluation, evaluate, render, to_json, wilson
from trestle.monitors.importers import ImportedRun, Label, Outcome
from trestle.monitors.trace import Action, ActionKind, Observation, RunFacts, Turn

CORPUS = Path(__file__).resolve().parent / "data" / "monitor_corpus"


class ReadStreak:
    """Notes two reads in a row (info), flags three (warning)."""

    name = "reads"

    def __init__(self) -> None:
        self.streak = 0

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        if not isinstance(item, Turn):
            return []
        reading = bool(item.actions) and all(a.kind == "read" for a in item.actions)
        self.streak = self.streak + 1 if reading else 0
        if self.streak not in (2, 3):
            return []
        severity = "info" if self.streak == 2 else "warning"
        return [
            Alert(
                monitor=self.name,
                kind="streak",
                severity=severity,
                message=f"{self.streak} reads in a row",
                evidence=(item.seq,),
                suggestion="Edit something.",
                turn=item.index,
            )
        ]


class Spend:
    """Flags once the run has spent more than half its cost limit."""

    name = "spend"

    def __init__(self) -> None:
        self.spent = 0.0
        self.raised = False

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        if not isinstance(item, Turn) or self.raised or facts.cost_limit is None:
            return []
        self.spent += item.cost
        if self.spent <= facts.cost_limit / 2:
            return []
        self.raised = True
        return [
            Alert(
                monitor=self.name,
                kind="over",
                severity="critical",
                message=f"spent {self.spent:.2f}",
                evidence=(item.seq,),
                suggestion="Stop.",
            )
        ]


def run(name: str, outcome: Outcome, kinds: str, costs: Sequence[float]) -> ImportedRun:
    """A run of one action per turn: ``kinds`` spells them (r read, e edit, t test, f finish)."""
    spelled: dict[str, ActionKind] = {"r": "read", "e": "edit", "t": "test", "f": "finish"}
    turns = tuple(
        Turn(
            index=i,
            seq=i + 1,
            actions=(Action(seq=i + 1, tool="bash", kind=spelled[k], arguments=k),),
            cost=cost,
        )
        for i, (k, cost) in enumerate(zip(kinds, costs, strict=True))
    )
    return ImportedRun(
        name=name,
        source="mini-swe-agent",
        observations=turns,
        facts=RunFacts(cost_limit=1.0, turn_limit=10),
        exit_status=None,
        outcome=outcome,
        calls=len(turns),
        cost=sum(costs),
    )


RUNS = [
    run("a", "unknown", "rrrr", [0.1] * 4),  # flagged at 3 of 4 calls: too late
    run("b", "unknown", "rrrrrr", [0.1, 0.1, 0.4, 0.1, 0.1, 0.1]),  # at 3 of 6: half-way
    run("c", "unknown", "retf", [0.05] * 4),  # healthy, never flagged
    run("d", "unknown", "rrref", [0.05] * 5),  # healthy, flagged by the streak
    run("e", "unknown", "rf", [0.1, 0.1]),
]
LABELS = {
    "a": Label(outcome="exhausted", problems=("no_edit",)),
    "b": Label(outcome="exhausted", problems=("cost", "no_edit")),
    "c": Label(outcome="succeeded"),
    "d": Label(outcome="succeeded"),
    "e": Label(outcome="failed", problems=("hallucinated",)),
}
CATCHES = {"reads": ["no_edit"], "spend": ["cost"]}


def both(facts: RunFacts) -> list[Monitor]:
    return [ReadStreak(), Spend()]


def test_first_flags_are_placed_by_calls_and_cost() -> None:
    evaluation = evaluate(RUNS, both, LABELS, CATCHES)
    results = {r.name: r for r in evaluation.results}

    a = results["a"].first()
    assert a is not None and (a.monitor, a.kind) == ("*", None)
    assert (a.turn, a.call_share) == (2, 0.75) and a.cost_share == pytest.approx(0.75)
    b_reads, b_spend = results["b"].first("reads"), results["b"].first("spend", "over")
    assert b_reads is not None and b_spend is not None
    assert (b_reads.turn, b_reads.call_share) == (2, 0.5)
    assert b_reads.cost_share == pytest.approx(0.6 / 0.9)
    assert (b_spend.turn, b_spend.severity) == (2, "critical")  # the last turn observed
    assert results["c"].first() is None and results["e"].first() is None
    assert results["d"].first("reads", "streak") is not None
    assert results["d"].alerts == 2  # the info note counts as an alert, not as a flag
    assert results["b"].outcome == "exhausted"  # the label's outcome wins
    assert results["b"].problems == ("cost", "no_edit")


def test_figures_per_monitor_per_kind_and_overall_with_labels() -> None:
    evaluation = evaluate(RUNS, both, LABELS, CATCHES)

    assert (evaluation.runs, evaluation.exhausted, evaluation.succeeded) == (5, 2, 2)
    overall = evaluation.overall
    assert overall.flagged == 3  # a, b, d
    assert overall.exhausted_by_half == 0.5  # b, not a
    assert overall.succeeded_flagged == 0.5  # d, not c
    assert overall.median_call_share == 0.6  # 0.75, 0.5, 0.6
    assert (overall.true_positives, overall.false_positives, overall.false_negatives) == (2, 1, 1)
    assert overall.precision == pytest.approx(2 / 3) and overall.recall == pytest.approx(2 / 3)

    reads, spend = evaluation.monitors
    assert (reads.monitor, spend.monitor) == ("reads", "spend")
    assert (reads.flagged, reads.true_positives, reads.false_positives, reads.false_negatives) == (
        3,
        2,
        1,
        0,
    )
    assert reads.precision == pytest.approx(2 / 3) and reads.recall == 1.0
    assert reads.median_cost_share == pytest.approx(0.6 / 0.9)  # 0.75, 0.667, 0.6
    assert (spend.flagged, spend.precision, spend.recall) == (1, 1.0, 1.0)
    assert (spend.exhausted_by_half, spend.succeeded_flagged) == (0.5, 0.0)
    assert [(k.monitor, k.kind, k.flagged) for k in evaluation.kinds] == [
        ("reads", "streak", 3),
        ("spend", "over", 1),
    ]
    assert not evaluation.meets_targets


def test_without_labels_there_is_no_precision_and_outcomes_are_the_runs_own() -> None:
    evaluation = evaluate(RUNS, both)
    assert evaluation.overall.precision is None and evaluation.monitors[0].recall is None
    assert evaluation.exhausted == 0 and evaluation.overall.exhausted_by_half is None
    # with labels but no catches map, only the overall figure has precision
    labelled = evaluate(RUNS, both, LABELS)
    assert labelled.overall.precision is not None and labelled.monitors[0].precision is None


def test_each_run_gets_a_fresh_monitor_set() -> None:
    made: list[RunFacts] = []

    def counting(facts: RunFacts) -> list[Monitor]:
        made.append(facts)
        return [ReadStreak()]

    # two runs of two reads: a shared monitor would see a streak of three in the second
    twice = [run("x", "exhausted", "rr", [0.1, 0.1]), run("y", "exhausted", "rr", [0.1, 0.1])]
    evaluation = evaluate(twice, counting)
    assert len(made) == 2 and evaluation.overall.flagged == 0


def test_render_and_json() -> None:
    evaluation = evaluate(RUNS, both, LABELS, CATCHES)
    text = render(evaluation)
    assert "exhausted runs flagged by half-way: 50% (target: at least 70%)" in text
    assert "succeeded runs flagged: 50% (target: at most 3%)" in text
    assert "| all |  | 3/5 | 50% | 50% | 60% | 67% | 67% | 67% |" in text
    assert "| reads | streak | 3/5 |" in text and "| spend | over | 1/5 | 50% | 0% |" in text
    assert Evaluation.model_validate_json(to_json(evaluation)) == evaluation


class PastShare:
    """The naive rule: flag every run once it is past 60% of its call limit."""

    name = "naive"

    def __init__(self) -> None:
        self.turns = 0

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        if not isinstance(item, Turn) or facts.turn_limit is None:
            return []
        self.turns += 1
        if self.turns != int(facts.turn_limit * 0.6) + 1:
            return []
        return [
            Alert(
                monitor=self.name,
                kind="late",
                severity="warning",
                message=f"{self.turns} of {facts.turn_limit} calls",
                evidence=(item.seq,),
                suggestion="Wrap up.",
            )
        ]


def test_the_corpus_defeats_the_naive_rule_as_real_runs_do() -> None:
    runs, labels = load_corpus(CORPUS)
    evaluation = evaluate(runs, lambda facts: [PastShare()], labels)
    naive = evaluation.overall
    exhausted = [r for r in evaluation.results if r.outcome == "exhausted"]
    flagged_at_all = sum(r.first() is not None for r in exhausted) / len(exhausted)
    assert flagged_at_all >= 0.85  # it flags most doomed runs, though never by half-way
    assert naive.exhausted_by_half == 0.0
    assert naive.succeeded_flagged is not None and 0.05 <= naive.succeeded_flagged <= 0.2


def test_wilson_intervals_match_hand_computed_values() -> None:
    assert wilson(0, 0) is None
    low, high = wilson(0, 8) or (-1.0, -1.0)
    assert low == 0.0 and high == pytest.approx(0.3244, abs=1e-4)
    assert wilson(23, 28) == pytest.approx((0.6441, 0.9212), abs=1e-4)
    assert wilson(50, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)
