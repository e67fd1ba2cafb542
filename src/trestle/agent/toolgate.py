"""The gate every agent tool call passes: the run's scope, then the approval policy.

A call the policy puts in the ``confirm`` tier (a ``git push``, an irreversible
command, a write the operator's rules hold back) runs only with a recorded human
approval of that exact call: its step, its tool and its arguments, hashed. Without
one the gate defers; the step pauses, the run asks, and when the step runs again its
replay reaches the same call, which the gate now finds approved (or rejected, which
the model is told). Nothing a model or a tool outputs can produce an approval. An
approval lets one call run: the same call made again later is asked about again.

A call that runs a command is also bound to the workspace files the command names, as
they read when the human was asked (:mod:`trestle.execution.named_files`), as a plan
step's command is: ``sh deploy.sh`` approved runs the ``deploy.sh`` the card showed.
One that reads otherwise by the time the call runs is asked about again, and the
command runs with them held as approved (:func:`trestle.execution.pinning.holding`).

A call is judged as a plan step is (:func:`trestle.core.gate.judge`): a call that writes
or runs something carries its step's confidence, less the step's failed attempts and
open monitor alerts, and below the threshold it is asked like a ``confirm`` call; audit
sampling draws calls as it draws steps. Every verdict the policy reached carries its
decision (``gate``) and the facts judged, which the call's start records.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from trestle.core.approvers import similar_reaches
from trestle.core.conversation import canonical_json
from trestle.core.events import Gate, ToolAsk
from trestle.core.gate import moved_files, similar_approval, similar_key
from trestle.core.policy import ActionFacts, action_hash, classify, path_glob_matches
from trestle.core.state import RunState
from trestle.core.step_state import ApprovalState
from trestle.execution.named_files import APPROVED_MOST, named_files
from trestle.tools.base import GatedCall, GateVerdict


class RunToolGate:
    """Judges one agent step's tool calls against its run's policy and approvals.

    Args:
        state: the live run state (read only).
        step_id: the step whose calls this gate judges.
        scope: globs the run may write; empty means the whole workspace.
        files: for a plan step, the files it declared it changes or creates; its
            writes elsewhere are refused (None: no such limit).
        unconfined: why commands would run with no sandbox, when the operator did
            not choose that: a confirm-tier command is then refused, not asked.

    After a ``defer`` verdict, ``ask`` holds what the human is asked to approve.
    """

    def __init__(
        self,
        state: RunState,
        step_id: str,
        scope: tuple[str, ...],
        files: tuple[str, ...] | None = None,
        unconfined: str | None = None,
    ) -> None:
        self.state, self.step_id, self.scope, self.files = state, step_id, scope, files
        self.unconfined = unconfined
        self.ask: ToolAsk | None = None

    async def review(self, call: GatedCall) -> GateVerdict:
        facts = call.facts
        outside = [p for p in facts.paths if not self._in_scope(p)]
        if outside:
            return GateVerdict.deny(
                f"{outside[0]!r} is outside the scope this run may change {list(self.scope)!r}"
            )
        undeclared = [p for p in facts.paths if self.files is not None and p not in self.files]
        if undeclared:
            return GateVerdict.deny(
                f"{undeclared[0]!r} is not among the files step {self.step_id!r} declared "
                f"{list(self.files or ())!r}; change only those, or finish and say what else "
                "the goal needs"
            )
        arguments = canonical_json(call.arguments)
        digest = action_hash({"step": self.step_id, "tool": call.tool, "arguments": arguments})
        facts = self._judged(facts)
        decision = classify(
            facts,
            plan=self.state.plan.policy,
            operator=self.state.operator_policy,
            run_id=self.state.run_id,
            action_key=f"{self.step_id}/{call.tool}/{digest[:16]}",
        )
        gate = Gate(decision=decision, action_hash=digest)
        if decision.tier != "confirm" and decision.audit != "before":
            return GateVerdict.allow(decision.reason, gate=gate, facts=facts)
        if self.unconfined is not None and decision.tier == "confirm" and facts.command:
            return GateVerdict.deny(
                f"{decision.reason}: a confirm-tier command, and commands here would run "
                f"{self.unconfined}; it runs only where the operator chose --sandbox off",
                gate=gate,
                facts=facts,
            )
        key = similar_key(decision, facts, None)
        number, decided = self._decision_for(digest, call.slot)
        edited = decided.edited_arguments if decided is not None else None
        if decided is not None and edited is not None and decided.edited_hash != digest:
            # approved as a human edited it: the edited call runs instead, once it has
            # passed this gate in its turn (where the edited hash finds this decision)
            allowed = GateVerdict.allow(
                f"a human ({decided.by}) edited this call before approving it",
                by_human=True,
                gate=gate.model_copy(update={"approval": number}),
                facts=facts,
            )
            return allowed.model_copy(update={"arguments": json.loads(edited)})
        files = await self._named(facts)
        stale = ""
        if decided is not None and decided.status in ("approved", "modified"):
            moved = _moved(decided.files, files) + _moved_writes(decided, facts)
            if not moved:
                return GateVerdict.allow(
                    f"approved by {decided.by}",
                    by_human=True,
                    gate=gate.model_copy(update={"approval": number}),
                    facts=facts,
                    bound=decided.files,
                )
            stale = f"; {', '.join(moved)} changed since approval {number} was asked: asked again"
        if decided is not None and decided.status == "rejected":
            why = f": {decided.reason}" if decided.reason else ""
            return GateVerdict.deny(
                f"a human ({decided.by}) rejected this call{why}",
                gate=gate.model_copy(update={"approval": number}),
                facts=facts,
            )
        similar = similar_approval(self.state.similar_approved, key)
        bound = self.state.approvals[similar].files if similar is not None else None
        if (
            similar is not None
            and similar_reaches(self.state, similar, self.step_id, call.tool, facts, decision.tier)
            and not _moved(bound, files)
        ):  # unless an approver rule covers this call that the similar one's did not, or
            # it names files the similar one's did not name as they read then
            return GateVerdict.allow(
                "approved with similar calls",
                by_human=True,
                gate=gate.model_copy(update={"approval": similar}),
                facts=facts,
                bound=bound,
            )
        self.ask = ToolAsk(
            tool=call.tool,
            arguments=arguments,
            facts=facts,
            decision=decision,
            action_hash=digest,
            similar_key=key,
            files=files,
        )
        return GateVerdict.defer(
            f"{decision.tier} ({decision.source}): {decision.reason}{stale}",
            gate=gate,
            facts=facts,
        )

    async def _named(self, facts: ActionFacts) -> dict[str, str] | None:
        """The workspace files the call's command names, as they read now (None: it runs
        no command). Hashed off the event loop: a file may be large."""
        if facts.command is None:
            return None
        workspace, cwd = Path(self.state.workspace), facts.cwd or "."
        return await asyncio.to_thread(
            named_files, facts.command, workspace, most=APPROVED_MOST, cwd=cwd
        )

    def _in_scope(self, path: str) -> bool:
        return not self.scope or any(path_glob_matches(glob, path) for glob in self.scope)

    def _judged(self, facts: ActionFacts) -> ActionFacts:
        """The call's facts with what its confidence is made of, as a step's are
        (:func:`trestle.core.gate.step_facts`): the confidence the tool states for the
        call, else the step's (the model's own, in its plan, for a planned step),
        less a penalty per failed attempt of the step and per open alert on it.

        Reads and tests carry none: they change nothing, as no plan step's action
        is, and asking before each would stall a step whose confidence is low."""
        if facts.nature in ("read", "test") or self.step_id not in self.state.steps:
            return facts
        step, st = self.state.step_spec(self.step_id), self.state.steps[self.step_id]
        confidence = facts.confidence if facts.confidence is not None else step.confidence
        return facts.model_copy(
            update={
                "confidence": confidence,
                "failed_attempts": st.failed_attempts,
                "alerts": self.state.open_alerts(self.step_id),
            }
        )

    def _decision_for(
        self, digest: str, slot: tuple[int, int, str] | None
    ) -> tuple[int | None, ApprovalState | None]:
        """The latest decided approval of exactly this call and its number, if any,
        leaving out an approval another call of the step already ran on: a human
        approved one call, and the model making the same call again later (a second
        push, a script it rewrote in between) is asked about again. A rejection
        stands for every later call alike."""
        found: tuple[int | None, ApprovalState | None] = (None, None)
        for number, approval in self.state.approvals.items():
            if (
                approval.subject == "tool"
                and approval.step == self.step_id
                and digest in (approval.action_hash, approval.edited_hash)
                and approval.status != "pending"
                and (approval.status == "rejected" or not self._spent(number, slot))
            ):
                found = (number, approval)
        return found

    def _spent(self, number: int, slot: tuple[int, int, str] | None) -> bool:
        """Whether a call of the step other than the one at ``slot`` started on approval
        ``number`` (the same call again, after a crash or a pause, has not spent it)."""
        step = self.state.steps.get(self.step_id)
        if step is None:
            return False
        return any(
            approval == number and (round, turn, call_id) != slot
            for round, turn, call_id, _, _, approval, _ in step.tool_calls
        )


def _moved(approved: dict[str, str] | None, now: dict[str, str] | None) -> list[str]:
    """The files that read otherwise now than when the approval was asked (none where
    the approval bound none: a call that runs no command, or one asked before calls
    were bound to their files)."""
    if approved is None or now is None:
        return []
    return moved_files(approved, now)


def _moved_writes(approval: ApprovalState, facts: ActionFacts) -> list[str]:
    """The workspace paths the call writes now that it did not write when it was asked,
    and those it no longer writes: its arguments are the same, but a link on their way
    may lead elsewhere now (``d/app.yaml``, ``d`` pointed from staging to prod)."""
    if approval.ask is None:
        return []
    return sorted(set(approval.ask.facts.paths) ^ set(facts.paths))
