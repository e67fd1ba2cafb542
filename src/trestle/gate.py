"""The approval gate: under which tier may a step's next attempt start, and does a human
have to approve it first?

Pure. The decider asks :func:`judge` before every attempt (first runs, retries and
re-runs alike). A step whose tier needs a human starts only with a recorded approval
of the *exact* action: the approval stores a hash of the action, and an action that
changed since (a human's edit, a plan revision) hashes differently and is asked again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from trestle.events import Gate
from trestle.plan import Step
from trestle.policy import ActionFacts, Nature, TierDecision, action_hash, classify
from trestle.state import RunState, StepState

NATURES: dict[str, Nature] = {"run": "command", "write": "write", "python": "call", "agent": "call"}


def step_facts(step: Step, st: StepState) -> ActionFacts:
    """What the policy judges a plan step by."""
    return ActionFacts(
        nature=NATURES[step.action_kind],
        name=step.id,
        command=step.run,
        paths=(step.write.path,) if step.write is not None else (),
        irreversible=step.irreversible,
        tags=step.tags,
        cost=step.cost,
        confidence=step.confidence,
        failed_attempts=st.failed_attempts,
        tier=step.approval,
    )


# the decider and the engine both hash an attempt's action; a step is frozen, so its
# hash is computed once per step object (kept alive here, so its id stays its own)
_DIGESTS: dict[int, tuple[Step, str]] = {}


def action_digest(step: Step) -> str:
    """``action_hash`` of the step's action, memoised per (frozen) step object."""
    hit = _DIGESTS.get(id(step))
    if hit is not None and hit[0] is step:
        return hit[1]
    if len(_DIGESTS) > 100_000:
        _DIGESTS.clear()
    digest = action_hash(step.action_payload())
    _DIGESTS[id(step)] = (step, digest)
    return digest


def similar_key(decision: TierDecision, facts: ActionFacts, call: str | None) -> str:
    """What "approve similar" extends to: the same rule, the same kind of action, and the
    same command (program and subcommand: `git commit` is not `git push`), folder (a
    write) or module (a call)."""
    if facts.command:
        words = facts.command.split()
        head = " ".join(words[:2]) if len(words) > 1 and not words[1].startswith("-") else words[0]
    elif facts.paths:
        head = str(PurePosixPath(facts.paths[0]).parent)
    elif call is not None:
        head = call.partition(":")[0]
    else:
        head = facts.name
    return f"{decision.source}|{facts.nature}|{head}"


@dataclass(frozen=True)
class Judgement:
    """``gate`` when the attempt may start now; otherwise a human must be asked."""

    decision: TierDecision
    action_hash: str
    similar_key: str
    gate: Gate | None

    @property
    def needs_human(self) -> bool:
        return self.gate is None


def judge(state: RunState, sid: str, attempt: int) -> Judgement:
    step, st = state.step_spec(sid), state.steps[sid]
    facts = step_facts(step, st)
    decision = classify(
        facts,
        plan=state.plan.policy,
        operator=state.operator_policy,
        run_id=state.run_id,
        action_key=f"{sid}/{attempt}",
    )
    digest = action_digest(step)
    key = similar_key(decision, facts, step.python)
    if decision.tier != "confirm" and decision.audit != "before":
        return Judgement(decision, digest, key, Gate(decision=decision, action_hash=digest))
    approval = st.approval if st.approved_hash == digest else state.similar_approved.get(key)
    if approval is None:
        return Judgement(decision, digest, key, None)
    gate = Gate(decision=decision, action_hash=digest, approval=approval)
    return Judgement(decision, digest, key, gate)
