"""What a human approved is what runs: the checks an attempt passes before it starts (the
action's hash, a granted approval, the files its command names, a sandbox for a
confirm-tier command). Pure but for reading the named files."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from trestle.core.events import (
    AnyEvent,
    ApprovalRequested,
    Gate,
)
from trestle.core.gate import action_digest
from trestle.core.plan import Step
from trestle.core.state import RunState
from trestle.execution.named_files import APPROVED_MOST, named_files
from trestle.execution.sandbox import (
    Sandbox,
)


def with_named_files(state: RunState, event: AnyEvent) -> AnyEvent:
    """An approval request for a command step, with the workspace files the command
    names as they read now (see :mod:`trestle.execution.named_files`): the approval is bound to
    them."""
    command = command_to_bind(state, event)
    if command is None:
        return event
    files = named_files(command, Path(state.workspace), most=APPROVED_MOST)
    return event.model_copy(update={"files": files})


def command_to_bind(state: RunState, event: AnyEvent) -> str | None:
    """The command whose named files ``event`` must be bound to, or None: an approval
    request for a command step that carries no files yet. Pure: a driver that may do
    no IO asks for the files elsewhere."""
    if not isinstance(event, ApprovalRequested) or event.step is None or event.files is not None:
        return None
    if event.subject not in ("action", "audit"):
        return None
    return bound_command(state.step_spec(event.step))


def bound_command(step: Step) -> str | None:
    """The command step's line as the files an approval binds are read from it: its
    ``env:`` set before it, as the shell would see ``BASH_ENV=lib.sh sh deploy.sh``, so
    that a file a variable names (a script bash sources as it starts, a library the
    loader preloads) is bound, and held as code, like one the line names."""
    if step.run is None or not step.env:
        return step.run
    assigned = " ".join(f"{name}={shlex.quote(value)}" for name, value in sorted(step.env.items()))
    return f"{assigned} {step.run}"


@dataclass(frozen=True)
class Approved:
    """An approval of a command, with what the workspace files it names read then."""

    number: int
    command: str
    files: dict[str, str]


def approved_files(state: RunState, step: Step, gate: Gate | None) -> Approved | None:
    """The approval the step's command passed with the files it names, if any."""
    if gate is None or gate.approval is None or step.run is None:
        return None
    granted = state.approvals.get(gate.approval)
    command = bound_command(step)
    if granted is None or granted.files is None or command is None:
        return None
    return Approved(gate.approval, command, granted.files)


def files_moved(approved: Approved, moved: list[str]) -> tuple[int, str] | None:
    """The approval that no longer holds and why, when ``moved`` names files; else None."""
    if not moved:
        return None
    return approved.number, (
        "refused: the action differs from the one that passed the approval gate: "
        f"{', '.join(moved)} changed since approval {approved.number} was asked; asking again"
    )


def approved_by_human(state: RunState, gate: Gate | None) -> bool:
    """Did a human approve this very action (not a rule, not an audit after it)?"""
    if gate is None or gate.approval is None:
        return False
    granted = state.approvals.get(gate.approval)
    return granted is not None and granted.status in ("approved", "modified")


def unapproved(state: RunState, step: Step, gate: Gate | None) -> str | None:
    """Why this action must not run now, or None: the gate's hash must be the action's,
    and a tier that needs a human must carry an approval that was granted."""
    if gate is None:
        return None  # recorded before approval gates existed
    if action_digest(step) != gate.action_hash:
        return "refused: the action differs from the one that passed the approval gate"
    needs_human = gate.decision.tier == "confirm" or gate.decision.audit == "before"
    if not needs_human:
        return None
    granted = state.approvals.get(gate.approval) if gate.approval is not None else None
    if granted is None or granted.status not in ("approved", "modified"):
        return "refused: the action needs an approval and none was granted"
    return None


def unconfined(
    state: RunState, step: Step, gate: Gate | None, sandbox: Sandbox | None
) -> str | None:
    """Why a confirm-tier command must not run here, or None: with no sandbox, one
    runs only if the operator chose to run unconfined (``--sandbox off``)."""
    if gate is None or gate.decision.tier != "confirm" or sandbox is None:
        return None
    if sandbox.confines or sandbox.opted_out or (step.run is None and step.agent is None):
        return None  # python: and write steps are not confined by any sandbox
    run = state.run_id
    return (
        f"refused: step {step.id!r} is confirm-tier and commands here would run "
        f"{sandbox.describe()}. Install bubblewrap (apt install bubblewrap), or accept "
        f"running it unconfined: `trestle retry {run} {step.id}`, then "
        f"`trestle resume {run} --sandbox off`"
    )
