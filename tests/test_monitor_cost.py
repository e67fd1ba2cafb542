"""The cost monitor: burn rate, projected spend against the budget, costly steps."""

from __future__ import annotations

from collections.abc import Sequence

from trestle.core.records.monitors import Alert
from trestle.monitors.cost import CostMonitor
from trestle.monitors.trace import Observation, RunFacts, StepEnd, Turn


def calls(costs: Sequence[float], *, step: str = "fix") -> list[Turn]:
    """One turn per cost, seq 10*index."""
    return [Turn(index=i, seq=10 * i, step=step, cost=c) for i, c in enumerate(costs)]


def feed(
    items: Sequence[Observation], facts: RunFacts, monitor: CostMonitor | None = None
) -> list[Alert]:
    monitor = monitor or CostMonitor()
    return [alert for item in items for alert in monitor.observe(item, facts)]


def spent_before(turn: int, costs: Sequence[float]) -> float:
    return sum(costs[: turn + 1])


def test_an_expensive_but_steady_run_within_its_limit_raises_nothing() -> None:
    facts = RunFacts(cost_limit=10.0, turn_limit=50)
    costs = [0.19 + 0.01 * (i % 2) for i in range(50)]  # $9.75 in all, every call alike
    assert sum(costs) < 10.0
    steps = [
        StepEnd(seq=1000 + i, step=f"s{i}", attempt=1, ok=True, seconds=9, cost=c)
        for i, c in enumerate([1.9, 2.1, 2.0, 1.8, 2.2])
    ]
    assert feed([*calls(costs), *steps], facts) == []


def test_a_rising_spend_is_flagged_before_the_limit_then_critical() -> None:
    facts = RunFacts(cost_limit=5.0, turn_limit=40)
    costs = [0.05 + 0.01 * i for i in range(40)]  # context grows: $9.80 if it runs on
    alerts = [a for a in feed(calls(costs), facts) if a.kind == "projected_overspend"]
    assert [(a.severity, a.turn) for a in alerts] == [("warning", 19), ("critical", 20)]
    warning, critical = alerts
    # the warning comes once half as many calls again would overrun, with budget left
    assert spent_before(19, costs) / 5.0 < 0.6 <= spent_before(20, costs) / 5.0 < 1.0
    assert warning.evidence == (150, 160, 170, 180, 190)
    assert "spent $2.90 of the $5.00 limit (58%) in 20 calls" in warning.message
    assert "for 10 calls more" in warning.message and "about $5.10" in warning.message
    assert warning.suggestion.startswith("About $2.10 of budget is left")
    assert critical.monitor == "cost" and critical.step == "fix" and critical.round == 1


def test_a_run_is_projected_half_as_long_again_not_to_its_turn_limit() -> None:
    # real runs end long before their limits: $0.10 a call for 20 calls is $2.00 of $4;
    # projected to a 250-call limit it would overrun, half as long again it does not
    facts = RunFacts(cost_limit=4.0, turn_limit=250)
    assert feed(calls([0.1] * 20), facts) == []
    alerts = feed(calls([0.1] * 40), facts)
    assert [(a.kind, a.severity, a.turn) for a in alerts] == [
        ("projected_overspend", "critical", 26),  # $2.70 spent (68%), $4.10 projected
    ]
    assert "for 14 calls more" in alerts[0].message


def test_past_the_turn_limit_the_projection_falls_back_to_the_trend() -> None:
    # a turn limit per step: the run's call count passes it, and the projection goes on
    facts = RunFacts(cost_limit=4.0, turn_limit=10)
    alerts = feed(calls([0.1] * 30), facts)
    assert [(a.severity, a.turn) for a in alerts] == [("critical", 26)]


def test_the_turn_limit_caps_the_projection() -> None:
    # 30 of 32 calls made: only 2 are left, whatever the trend
    facts = RunFacts(cost_limit=4.0, turn_limit=32)
    assert feed(calls([0.1] * 32), facts) == []


def test_no_limit_or_no_prices_means_no_projection() -> None:
    assert feed(calls([0.1 + 0.05 * i for i in range(8)]), RunFacts(turn_limit=10)) == []
    assert feed(calls([0.0] * 60), RunFacts(cost_limit=0.5, turn_limit=60)) == []


def test_a_sharp_rise_in_cost_per_call_is_only_noted() -> None:
    # a rise matters only if the budget will not last: that is the projection's alert
    costs = [0.01] * 5 + [0.04] * 5 + [0.12] * 5
    alerts = feed(calls(costs), RunFacts())
    assert [(a.kind, a.severity, a.turn) for a in alerts] == [
        ("burn_rate", "info", 9),  # 4x the first five calls
        ("burn_rate", "info", 13),  # 10.4x: one $0.04 call and four $0.12 ones
    ]
    assert alerts[0].evidence == (50, 60, 70, 80, 90)
    assert "4.0 times the first 5 ($0.0100)" in alerts[0].message
    # a growing context raises the cost of each call slowly: quiet, then at most a note
    assert feed(calls([0.01 + 0.0005 * i for i in range(30)]), RunFacts()) == []
    growing = feed(calls([0.01 + 0.0008 * i for i in range(60)]), RunFacts())
    assert [(a.kind, a.severity) for a in growing] == [("burn_rate", "info")]


def test_a_step_far_above_its_peers_warns() -> None:
    def end(seq: int, cost: float, step: str = "s") -> StepEnd:
        return StepEnd(seq=seq, step=step, attempt=1, ok=True, seconds=5, cost=cost)

    items = [
        end(1, 0.0, "shell"),  # a command step: no price, not a peer
        end(2, 0.5),
        end(3, 0.6),
        end(4, 1.6, "early"),  # only two peers so far: not judged
        end(5, 0.4),
        end(6, 3.0, "big"),  # 5.45x the median $0.55
        end(7, 0.5),
    ]
    (alert,) = feed(items, RunFacts(cost_limit=100.0))
    assert (alert.kind, alert.severity, alert.evidence, alert.step) == (
        "step_cost_outlier",
        "warning",
        (6,),
        "big",
    )
    assert "cost $3.00, 5.5 times the median $0.55 of 4 earlier step attempts" in alert.message


def test_cost_alerts_are_deterministic() -> None:
    facts = RunFacts(cost_limit=5.0, turn_limit=40)
    items = calls([0.05 + 0.01 * i for i in range(40)])
    first, second = feed(items, facts), feed(items, facts)
    assert first == second and len(first) == 3
