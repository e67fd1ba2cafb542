"""Alerts: what a monitor says, and the protocol every monitor follows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from trestle.core.record import Record
from trestle.monitors.trace import Observation, RunFacts

# info: worth a note; warning: the run is likely going wrong; critical: it is, and
# carrying on wastes the budget. The evaluation counts warning and critical as flags.
Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")
FLAGGING: frozenset[Severity] = frozenset({"warning", "critical"})


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


class Monitor(Protocol):
    """Watches a run's observations in order; keeps its own state between calls.

    A monitor must be deterministic: the same observations give the same alerts, so a
    replayed run raises exactly what the live run raised. It should not repeat itself:
    raise once, and again only when the problem grows (a longer streak, a higher
    severity).
    """

    name: str

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        """The alerts ``item`` gives rise to, given everything observed before it."""
        ...


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
