"""The agent's phases: what each may do, how one leads to the next, and what UNDERSTAND yields.

::

    UNDERSTAND ──> PLAN ──> EXECUTE ──> VALIDATE ──accepted──> DONE
                    ^  ^       │            │
                    │  └───────┘ revision   │ re-plan (at most max_replans)
                    └───────────────────────┘
    (any phase ──failed / escalated / stopped──> DONE)

Which tool natures (see :data:`trestle.core.policy.Nature`) each phase allows:

==========  ===================  ================================================
phase       natures              why
==========  ===================  ================================================
UNDERSTAND  read, test           look, and run the tests once to learn what fails
                                 before anything changes (the baseline)
PLAN        read                 the plan is written from the findings; a look at
                                 a file is fine, running anything adds nothing
EXECUTE     all                  the step's tool loop; the gate still reviews each call
VALIDATE    read, test           acceptance checks judge the work; nothing changes it
DONE        none
==========  ===================  ================================================

A test run only executes the run's configured test command, which the approval policy
already treats as harmless (``auto``); its caches are not the source tree.

:class:`PhaseState` is a frozen record: :meth:`PhaseState.advance` and
:meth:`PhaseState.finish` return the next state, or raise :class:`PhaseError` for a
move the table above does not allow. Pure: no IO, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from trestle.agentplan.planning import Feedback, capped, output_schema, parse_output
from trestle.core.errors import PhaseError
from trestle.core.policy import Nature
from trestle.core.record import Record
from trestle.core.records.agent import DEFAULT_MAX_REPLANS, Findings, Phase

ALL_NATURES: frozenset[Nature] = frozenset({"read", "test", "write", "command", "call"})

PHASE_NATURES: Mapping[Phase, frozenset[Nature]] = {
    Phase.UNDERSTAND: frozenset({"read", "test"}),
    Phase.PLAN: frozenset({"read"}),
    Phase.EXECUTE: ALL_NATURES,
    Phase.VALIDATE: frozenset({"read", "test"}),
    Phase.DONE: frozenset(),
}

TRANSITIONS: Mapping[Phase, frozenset[Phase]] = {
    Phase.UNDERSTAND: frozenset({Phase.PLAN, Phase.DONE}),
    Phase.PLAN: frozenset({Phase.EXECUTE, Phase.DONE}),
    # back to PLAN: a revision (a requirement the user added mid-run)
    Phase.EXECUTE: frozenset({Phase.VALIDATE, Phase.PLAN, Phase.DONE}),
    # back to PLAN: a re-plan after failed acceptance checks, bounded
    Phase.VALIDATE: frozenset({Phase.PLAN, Phase.DONE}),
    Phase.DONE: frozenset(),
}

Ending = Literal["accepted", "failed", "escalated", "stopped"]
"""How the agent reached DONE: acceptance checks passed (only from VALIDATE), or not."""


def allowed_natures(phase: Phase) -> frozenset[Nature]:
    """The tool natures ``phase`` allows; pass them to ``ToolRegistry.call``."""
    return PHASE_NATURES[phase]


class PhaseChange(Record):
    """One move between phases, with the reason; the runtime records it as an event."""

    source: Phase
    target: Phase
    reason: str
    ending: Ending | None = None


class PhaseState(Record):
    """The current phase, the moves that led to it and what the re-plan bound leaves.

    Attributes:
        phase: where the agent is.
        max_replans: how many times failed acceptance checks may send it back to PLAN.
        replans: how many times they have.
        revisions: how many times EXECUTE went back to PLAN for a new requirement.
        ending: how DONE was reached; None before.
        history: every move so far, oldest first.
    """

    phase: Phase = Phase.UNDERSTAND
    max_replans: int = Field(default=DEFAULT_MAX_REPLANS, ge=0)
    replans: int = Field(default=0, ge=0)
    revisions: int = Field(default=0, ge=0)
    ending: Ending | None = None
    history: tuple[PhaseChange, ...] = ()

    @property
    def natures(self) -> frozenset[Nature]:
        """The tool natures the current phase allows."""
        return allowed_natures(self.phase)

    @property
    def can_replan(self) -> bool:
        """Would VALIDATE -> PLAN be allowed now? If not, failed acceptance escalates."""
        return self.phase is Phase.VALIDATE and self.replans < self.max_replans

    def advance(self, target: Phase, *, reason: str) -> PhaseState:
        """Move to ``target`` (not DONE: use :meth:`finish`).

        Raises:
            PhaseError: the move is not in :data:`TRANSITIONS`, or it is a re-plan and
                ``max_replans`` are used up.
        """
        if target is Phase.DONE:
            raise PhaseError("use finish(ending, reason=...) to reach DONE: it records how")
        self._check_move(target)
        update: dict[str, Any] = {"phase": target}
        if self.phase is Phase.VALIDATE and target is Phase.PLAN:
            if not self.can_replan:
                raise PhaseError(
                    f"no re-plan left: {self.replans} of {self.max_replans} used; escalate instead"
                )
            update["replans"] = self.replans + 1
        elif self.phase is Phase.EXECUTE and target is Phase.PLAN:
            update["revisions"] = self.revisions + 1
        change = PhaseChange(source=self.phase, target=target, reason=reason)
        update["history"] = (*self.history, change)
        return self.model_copy(update=update)

    def finish(self, ending: Ending, *, reason: str) -> PhaseState:
        """Move to DONE, saying how it ended.

        Raises:
            PhaseError: already DONE, or ``accepted`` from any phase but VALIDATE (only
                passing acceptance checks can accept the work).
        """
        self._check_move(Phase.DONE)
        if ending == "accepted" and self.phase is not Phase.VALIDATE:
            raise PhaseError(
                f"the work can only be accepted from VALIDATE, not from {self.phase}: "
                "acceptance checks decide"
            )
        change = PhaseChange(source=self.phase, target=Phase.DONE, reason=reason, ending=ending)
        return self.model_copy(
            update={"phase": Phase.DONE, "ending": ending, "history": (*self.history, change)}
        )

    def _check_move(self, target: Phase) -> None:
        if target not in TRANSITIONS[self.phase]:
            allowed = ", ".join(sorted(TRANSITIONS[self.phase])) or "none"
            raise PhaseError(f"cannot move from {self.phase} to {target} (allowed: {allowed})")


# --- what UNDERSTAND yields ------------------------------------------------------------


def findings_json_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`Findings`, to give the model for its structured answer."""
    return output_schema(Findings)


def parse_findings(raw: str | Mapping[str, Any]) -> Findings | Feedback:
    """The model's findings, or feedback naming what to fix; never raises for ``raw``."""
    parsed = parse_output(raw, Findings, subject="findings")
    if isinstance(parsed, list):
        return Feedback(subject="findings", problems=capped(parsed))
    return parsed
