"""The cost monitor: a rising burn rate, a budget that will not last, a costly step.

Three signals, from the dollars each model call cost (``Turn.cost``, 0 when unknown)
and each step attempt cost (``StepEnd.cost``):

- burn rate: the mean cost of the last ``window`` calls against the first ``window``,
  a note at ``rise_info`` times and again at ``rise_warning`` times. Only a note: the
  context grows with every call, so on real runs the cost per call rises tenfold in
  healthy runs of 50-80 calls. A rise matters only if the budget will not last, and
  that is the projection's business (one problem, one alert);
- projected spend: what the run will have spent if it goes on at its recent rate for
  ``horizon`` (half) as many calls again as it has made, but not past its turn limit
  (a limit per step is passed in a run of several steps: then no cap), against
  ``RunFacts.cost_limit``. Projecting all the way to the turn limit, or for as many
  calls again, flagged healthy real runs that finished well before either (real runs
  use a fraction of their call limit): a budget the run will not reach is not an
  overspend. A projection over the limit warns once a
  quarter of the budget is spent and is critical once ``critical_spent`` (60%) is;
- a step attempt that cost ``step_factor`` times the median of at least ``min_peers``
  earlier priced attempts.

A run that spends steadily within its limit raises nothing.
"""

from __future__ import annotations

import math
from statistics import fmean, median

from trestle.core.records.monitors import Alert, Severity
from trestle.monitors.trace import Observation, RunFacts, StepEnd, Turn

_LEVELS: dict[Severity | None, int] = {None: 0, "info": 1, "warning": 2, "critical": 3}


class CostMonitor:
    """Burn rate, projected spend against the budget, and costly steps (see the module).

    Args:
        window: calls in the early and the recent burn-rate windows.
        rise_info: recent/early cost per call that makes a note.
        rise_warning: recent/early cost per call that makes a second note.
        warn_spent: share of the budget spent before a projected overrun warns.
        critical_spent: share spent before a projected overrun is critical.
        step_factor: how many times the peers' median cost makes a step an outlier.
        min_peers: earlier priced step attempts needed to judge one.
        horizon: the calls still to come, as a share of the calls made so far, that
            the projection assumes (capped by the turn limit).
    """

    name = "cost"

    def __init__(
        self,
        *,
        window: int = 5,
        rise_info: float = 3.0,
        rise_warning: float = 10.0,
        warn_spent: float = 0.25,
        critical_spent: float = 0.6,
        step_factor: float = 3.0,
        min_peers: int = 3,
        horizon: float = 0.5,
    ) -> None:
        self.window = window
        self.rise_info, self.rise_warning = rise_info, rise_warning
        self.warn_spent, self.critical_spent = warn_spent, critical_spent
        self.step_factor, self.min_peers = step_factor, min_peers
        self.horizon = horizon
        self._calls = 0
        self._priced: list[tuple[int, float]] = []  # (seq, cost) of calls with a known cost
        self._spent = 0.0
        self._burn_step = 0  # 1: past rise_info, 2: past rise_warning
        self._projection_level: Severity | None = None
        self._step_costs: list[float] = []

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        if isinstance(item, StepEnd):
            return self._step(item)
        if not isinstance(item, Turn):
            return []
        self._calls += 1
        if item.cost <= 0.0:
            return []
        self._priced.append((item.seq, item.cost))
        self._spent += item.cost
        return [a for a in (self._burn_rate(item), self._projection(item, facts)) if a]

    def _recent(self) -> list[tuple[int, float]]:
        return self._priced[-self.window :]

    def _burn_rate(self, turn: Turn) -> Alert | None:
        if len(self._priced) < 2 * self.window:
            return None
        early = fmean(cost for _, cost in self._priced[: self.window])
        recent = fmean(cost for _, cost in self._recent())
        ratio = recent / early
        step = 2 if ratio >= self.rise_warning else 1 if ratio >= self.rise_info else 0
        if step <= self._burn_step:
            return None
        self._burn_step = step
        severity: Severity = "info"
        return Alert(
            monitor=self.name,
            kind="burn_rate",
            severity=severity,
            message=(
                f"the last {self.window} calls cost ${recent:.4f} each on average, "
                f"{ratio:.1f} times the first {self.window} (${early:.4f})"
            ),
            evidence=tuple(seq for seq, _ in self._recent()),
            suggestion=(
                "Keep each call small: read only the lines you need instead of whole "
                "files or long outputs, and stop re-reading what you have already seen."
            ),
            step=turn.step or None,
            round=turn.round,
            turn=turn.index,
        )

    def _projection(self, turn: Turn, facts: RunFacts) -> Alert | None:
        limit = facts.cost_limit
        if not limit or len(self._priced) < 3:
            return None
        rate = fmean(cost for _, cost in self._recent())
        left, horizon = math.ceil(self._calls * self.horizon), "more"
        limit_left = facts.turn_limit - self._calls if facts.turn_limit is not None else -1
        if 0 <= limit_left < left:
            left, horizon = limit_left, "left to the turn limit"
        projected = self._spent + left * rate
        share = self._spent / limit
        if projected <= limit:
            return None
        severity: Severity | None = (
            "critical"
            if share >= self.critical_spent
            else "warning"
            if share >= self.warn_spent
            else None
        )
        if severity is None or _LEVELS[severity] <= _LEVELS[self._projection_level]:
            return None
        self._projection_level = severity
        return Alert(
            monitor=self.name,
            kind="projected_overspend",
            severity=severity,
            message=(
                f"spent ${self._spent:.2f} of the ${limit:.2f} limit ({share:.0%}) in "
                f"{self._calls} calls; at ${rate:.4f} a call for {left} calls {horizon}, "
                f"the run would spend about ${projected:.2f}"
            ),
            evidence=tuple(seq for seq, _ in self._recent()),
            suggestion=(
                f"About ${max(limit - self._spent, 0.0):.2f} of budget is left: stop "
                "exploring, make the change the objective needs, run its test once, "
                "and finish."
            ),
            step=turn.step or None,
            round=turn.round,
            turn=turn.index,
        )

    def _step(self, end: StepEnd) -> list[Alert]:
        if end.cost <= 0.0:
            return []
        peers = list(self._step_costs)
        self._step_costs.append(end.cost)
        if len(peers) < self.min_peers:
            return []
        typical = median(peers)
        if end.cost <= self.step_factor * typical:
            return []
        return [
            Alert(
                monitor=self.name,
                kind="step_cost_outlier",
                severity="warning",
                message=(
                    f"step {end.step!r} (attempt {end.attempt}) cost ${end.cost:.2f}, "
                    f"{end.cost / typical:.1f} times the median ${typical:.2f} of "
                    f"{len(peers)} earlier step attempts"
                ),
                evidence=(end.seq,),
                suggestion=(
                    f"Find what made step {end.step!r} expensive (long outputs, whole-file "
                    "reads, repeated attempts) and keep the next steps to their objective."
                ),
                step=end.step,
            )
        ]
