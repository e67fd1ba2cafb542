"""What to do about an alert: one policy, configurable in ``trestle.toml``.

    [monitors]
    stall_after = 900            # seconds a step may show no sign of life
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
merged into it (:func:`~trestle.monitors.alerts.merge_alerts`) gets the strongest of
the actions it and each of them would have had alone.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trestle.core.record import Record
from trestle.monitors.alerts import Alert, Severity

MonitorAction = Literal["note", "inject", "replan", "pause", "stop"]
STEERING: frozenset[MonitorAction] = frozenset({"inject", "replan"})
# weakest to strongest: how much each does to the run, from a note to ending it
ACTION_ORDER: tuple[MonitorAction, ...] = ("note", "inject", "replan", "pause", "stop")


class MonitorSettings(Record):
    """How a run's monitors act, recorded with the run so a replay acts alike."""

    enabled: bool = True
    actions: dict[Severity, MonitorAction] = {
        "info": "note",
        "warning": "inject",
        "critical": "pause",
    }
    # the claim monitor's finding is already acted on by the step's own verification
    # (the retry is told the check failed); a stall is dead-lettered by the engine
    kinds: dict[str, MonitorAction] = {"hallucinated_success": "note", "stalled": "note"}
    stall_after: float = Field(default=900.0, gt=0, le=30 * 24 * 3600)
    embedder: str = "hashing"

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
