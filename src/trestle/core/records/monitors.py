"""The monitors' records: an alert, and what to do about it.

An :class:`Alert` is what a monitor saw (``trestle.monitors`` holds the monitors and
the hub that feeds them); runs record alerts as events, and the core folds them.
What to do about an alert is one policy, configurable in ``trestle.toml``::

    [monitors]
    stall_after = 900            # seconds a step may show no sign of life
    context_window = 128000      # tokens the model's context holds (default: by model)
    learnt = true                # add the learnt detector's warning (default: off)
    reread = true                # add the reread monitor (default: off)
    [monitors.actions]           # by severity ...
    warning = "inject"
    critical = "pause"
    [monitors.kinds]             # ... and by kind, which wins
    repeated_action = "replan"
    projected_overspend = "stop"

The actions:

- ``note``: the alert is recorded (in the log and the report); nothing else happens;
- ``inject``: the agent step the alert is about is told, before its next model call,
  what the monitor saw and what to do instead;
- ``replan``: that step's attempt is abandoned and it starts again from a fresh
  conversation told why (a retry that counts against its limit);
- ``pause``: nothing new starts and running agent steps stop at their next turn until
  a human approves going on (``trestle approve``) or rejects it, which stops the run;
- ``stop``: the run stops as a hard budget limit would, with its report.

``inject`` and ``replan`` need an agent step to act on; for any other alert they fall
back to ``note``.

The actions are listed from weakest to strongest (:data:`ACTION_ORDER`): each does
more to the run than the one before, up to ending it. An alert that speaks for others
merged into it (:func:`merge_alerts`) gets the strongest of
the actions it and each of them would have had alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

from pydantic import Field, field_validator

from trestle.core.record import Record

# --- alerts ---------------------------------------------------------------------------

# info: worth a note; warning: the run is likely going wrong; critical: it is, and
# carrying on wastes the budget. The evaluation counts warning and critical as flags.
Severity = Literal["info", "warning", "critical"]


SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")


FLAGGING: frozenset[Severity] = frozenset({"warning", "critical"})

# How a model's output can be malformed (token-level failures):
# empty: said nothing, called nothing; unparseable: tool arguments that are not JSON;
# invalid_arguments: JSON that does not fit the tool's schema; unknown_tool: a tool
# that was not offered; truncated: cut off by the token limit (finish_reason length);
# several_actions: more than one action where one was expected; no_action: text only
# where an action was expected (a format error in the one-action-per-turn formats).
Malformed = Literal[
    "empty",
    "unparseable",
    "invalid_arguments",
    "unknown_tool",
    "truncated",
    "several_actions",
    "no_action",
]

# every kind of alert a monitor raises: what ``[monitors.kinds]`` may name (a key not
# here, ``actoin_cycle``, set nothing and said nothing). tests/test_monitor_kinds.py
# holds it to the kinds the monitors' source raises. Not checked when a recorded run is
# read: a kind a later version retires must not make its runs unreadable.
ALERT_KINDS: frozenset[str] = frozenset(
    {
        "action_cycle",
        "burn_rate",
        "context_pressure",
        "drifting",
        "format_streak",
        "hallucinated_success",
        "likely_exhaustion",
        "monologue",
        "no_edit",
        "no_progress",
        "out_of_scope",
        "projected_overspend",
        "repeated_action",
        "repeated_failure",
        "same_file_reread",
        "same_test_failure",
        "slow_step",
        "stalled",
        "step_cost_outlier",
        "tests_changed",
        "unchanged_output",
    }
) | frozenset(get_args(Malformed))  # the format monitor's one malformed turn, by its problem


class MergedAlert(Record):
    """What an alert merged into another was: enough to choose the action it would
    have had on its own (see :func:`merge_alerts`)."""

    monitor: str
    kind: str
    severity: Severity


class Alert(Record):
    """A monitor's finding: what it saw, how bad, which events show it, what to do."""

    monitor: str  # the monitor that raised it ("format", "loops", "drift", "cost", ...)
    kind: str  # the failure mode ("repeated_action", "format_streak", ...)
    severity: Severity
    message: str
    evidence: tuple[int, ...]  # seqs of the events (or file entries) that show it
    suggestion: str
    step: str | None = None
    round: int | None = None
    turn: int | None = None  # the turn index it was raised at, when raised on a turn
    merged: tuple[MergedAlert, ...] = ()  # alerts merged into this one, which it speaks for

    @property
    def key(self) -> str:
        """Identifies the alert within a run: a replay raises the same keys."""
        last = self.evidence[-1] if self.evidence else 0
        return f"{self.monitor}/{self.kind}@{last}"


_RANK: dict[Severity, int] = {"info": 0, "warning": 1, "critical": 2}


def merge_alerts(alerts: Sequence[Alert]) -> list[Alert]:
    """One alert per problem: alerts raised together on the same last event merge.

    Several monitors can see one problem at once (the same script re-run: a repeat, a
    same-failure rerun, a cycle). Alerts raised on one observation whose evidence ends
    at the same event become the most severe of them (the first, among equals), its
    message naming what the others saw, and its evidence the union of theirs; the
    agent gets one correction, the operator one pause. The merged alert lists the
    others (``merged``), so that the policy acts on the strongest action any of them
    would have had (a kind configured to ``replan`` still replans when it merges into
    a more severe alert of another kind). Order is kept otherwise, and the result
    depends only on the input, so a replay merges the same way.
    """
    merged: list[Alert] = []
    by_event: dict[int, int] = {}  # last evidence seq -> position in merged
    for alert in alerts:
        last = alert.evidence[-1] if alert.evidence else None
        if last is None or last not in by_event:
            if last is not None:
                by_event[last] = len(merged)
            merged.append(alert)
            continue
        position = by_event[last]
        kept, other = merged[position], alert
        if _RANK[other.severity] > _RANK[kept.severity]:
            kept, other = other, kept
        merged[position] = kept.model_copy(
            update={
                "message": f"{kept.message}; also {other.monitor}/{other.kind}: {other.message}",
                "evidence": tuple(sorted({*kept.evidence, *other.evidence})),
                "merged": (
                    *kept.merged,
                    MergedAlert(monitor=other.monitor, kind=other.kind, severity=other.severity),
                    *other.merged,
                ),
            }
        )
    return merged


# --- what to do about an alert --------------------------------------------------------

MonitorAction = Literal["note", "inject", "replan", "pause", "stop"]
STEERING: frozenset[MonitorAction] = frozenset({"inject", "replan"})
# weakest to strongest: how much each does to the run, from a note to ending it
ACTION_ORDER: tuple[MonitorAction, ...] = ("note", "inject", "replan", "pause", "stop")


# the claim monitor's finding is already acted on by the step's own verification (the
# retry is told the check failed); a stall is dead-lettered by the engine; a changed test
# is often the task itself: recorded for the reviewer, who may ask for "pause" to read it
# before the acceptance runs
DEFAULT_KINDS: dict[str, MonitorAction] = {
    "hallucinated_success": "note",
    "stalled": "note",
    "tests_changed": "note",
}


class MonitorSettings(Record):
    """How a run's monitors act, recorded with the run so a replay acts alike."""

    enabled: bool = True
    actions: dict[Severity, MonitorAction] = {
        "info": "note",
        "warning": "inject",
        "critical": "pause",
    }
    # by kind, over DEFAULT_KINDS: a [monitors.kinds] table naming other kinds keeps
    # these (it replaced them, and a claim the step's verification had already acted on
    # was told to the model as a warning)
    kinds: dict[str, MonitorAction] = Field(default_factory=lambda: dict(DEFAULT_KINDS))
    stall_after: float = Field(default=900.0, gt=0, le=30 * 24 * 3600)
    embedder: str = "hashing"
    # the model's context window in tokens, for the context monitor; None: the known
    # window of the run's model, else a default (trestle.monitors.windows)
    context_window: int | None = Field(default=None, gt=0, le=100_000_000)
    # the learnt detector (trestle.monitors.learnt) beside the hand-written monitors: a
    # warning when a run looks, before half its turn limit, like runs that used it up
    learnt: bool = False
    # the reread monitor (trestle.monitors.rereads): one file read again and again while
    # nothing changes it; off by default, as it flagged more successful runs than it
    # gained exhausted ones on the report half of the real runs (BENCHMARKS.md)
    reread: bool = False

    @field_validator("kinds", mode="after")
    @classmethod
    def _over_the_defaults(cls, kinds: dict[str, MonitorAction]) -> dict[str, MonitorAction]:
        return {**DEFAULT_KINDS, **kinds}

    def stall_limit(self, step_timeout: float | None) -> float:
        """Seconds a running step may record nothing: ``stall_after``, or the step's
        own timeout if that is longer (the timeout then governs)."""
        return max(self.stall_after, step_timeout or 0.0)

    def action_for(self, alert: Alert, *, agent_step: bool) -> MonitorAction:
        """The action for ``alert``: the strongest of its own and those of the alerts
        merged into it (by :data:`ACTION_ORDER`); steering needs an agent step to steer."""
        found = [(alert.kind, alert.severity), *((m.kind, m.severity) for m in alert.merged)]
        return max(
            (self._action(kind, severity, agent_step) for kind, severity in found),
            key=ACTION_ORDER.index,
        )

    def _action(self, kind: str, severity: Severity, agent_step: bool) -> MonitorAction:
        action = self.kinds.get(kind) or self.actions.get(severity, "note")
        if action in STEERING and not agent_step:
            return "note"
        return action


DEFAULT_MONITORS = MonitorSettings()
