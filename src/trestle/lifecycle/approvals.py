"""The decision path: the inbox of open approvals, and how a human's decision reaches a run.

A decision is queued in the store as a signed request (:mod:`trestle.trust.signing`); the
process driving the run checks it and records an ``approval_decided`` event, or an
``approval_refused`` one that says why it does not apply. Nothing else can produce an
approval: not a step's output, not a row a step writes into the store, not a model.
"""

from __future__ import annotations

import getpass
import json
import math
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from trestle.agentplan.review_edit import edited_review
from trestle.core.approval_groups import group_id, group_problem, members, signed_members
from trestle.core.approvers import covering, judge_raise, member_name, shown_decider
from trestle.core.approvers import judge as judge_approver
from trestle.core.card import HandoffCard, approval_ref, build_card
from trestle.core.conversation import canonical_json
from trestle.core.errors import ConfigError, UnknownRunError
from trestle.core.events import (
    AnyEvent,
    ApprovalDecided,
    ApprovalEndorsed,
    ApprovalRefused,
    BudgetRaised,
    PlanEdit,
    PlanExtended,
    Verdict,
)
from trestle.core.field_problems import plain_message
from trestle.core.plan import Step
from trestle.core.plan_review import is_plan_review
from trestle.core.policy import action_hash
from trestle.core.records.agent import AgentPlan
from trestle.core.state import RunState
from trestle.core.step_state import ApprovalState
from trestle.lifecycle.doorbell import ring
from trestle.lifecycle.runs import Vet, load_state, readable_states, refuse_if_cancelled
from trestle.presentation.diffs import unified
from trestle.store.base import Refusal, Request, Store
from trestle.trust.identity import decision_fields, with_identity
from trestle.trust.signing import decision_key, signed_payload
from trestle.trust.step_origin import inside_a_step
from trestle.workspace.beneath import Refused, read_regular

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# the fields of a step a human may change when approving a modified action
EDITABLE = ("run", "write", "python", "env", "timeout")
ACTIONS = ("run", "write", "python")
# the source of a tool call's approval asked after the call started and its outcome is
# unknown (trestle.agent.unknown): there is no call left to edit
UNKNOWN_OUTCOME = "unknown_outcome"
MOST_DIFFED_BYTES = 4 << 20  # of the file a write would change, read for the card's diff


def inbox(
    store: Store, *, run_id: str | None = None, unreadable: list[str] | None = None
) -> list[HandoffCard]:
    """Every undecided approval, oldest first, across runs (or in one run). Runs that
    cannot be read are named in ``unreadable`` (when given) and left out."""
    rows = [store.run(run_id)] if run_id else store.runs()
    cards = []
    # a finished run may still hold a review drawn after the fact
    vet = vetter(decision_key())
    for state in readable_states(store, [r.run_id for r in rows], unreadable, vet=vet):
        if state.cancelled is not None:
            continue  # it takes no more decisions
        for number, a in state.approvals.items():
            if a.status == "pending":
                cards.append((a.requested_at, build_card(state, number)))
    return [card for _, card in sorted(cards, key=lambda pair: pair[0])]


def split_ref(ref: str) -> tuple[str, str]:
    """``RUN.N`` as its run (or a tail of it) and its number, as text."""
    run_id, sep, number = ref.rpartition(".")
    if not sep or not run_id or not number.isdigit():
        raise ConfigError(f"approval {ref!r}: expected RUN.N, as `trestle inbox` lists it")
    return run_id, number


def find_approval(store: Store, ref: str) -> tuple[RunState, int]:
    """Resolve ``RUN.N`` (or a unique tail of it, such as ``a3f9.2``) to a run and number."""
    run_id, number = split_ref(ref)
    if not any(r.run_id == run_id for r in store.runs()):
        matches = [r.run_id for r in store.runs() if r.run_id.endswith(run_id)]
        if len(matches) != 1:
            how = "matches no run" if not matches else f"matches {len(matches)} runs"
            raise UnknownRunError(f"approval {ref!r}: {run_id!r} {how}")
        run_id = matches[0]
    state = trusted_state(store, run_id)
    if int(number) not in state.approvals:
        raise UnknownRunError(f"run {run_id!r} has no approval {int(number)}")
    return state, int(number)


def submit_decision(
    store: Store,
    ref: str,
    verdict: Verdict,
    *,
    reason: str = "",
    similar: bool = False,
    edited: Mapping[str, Any] | None = None,
    top_up: float | None = None,
    by: str | None = None,
    key: bytes | None = None,
    group: str | None = None,
) -> str:
    """Queue a signed decision on approval ``ref``; return the approval's full ref.

    The run records it when it next runs (``trestle resume``), or at once if a
    process is driving it and waiting. Raises ConfigError for a decision that cannot
    apply (already decided, an invalid edit), before anything is queued.
    """
    queued = queue_decision(
        store,
        ref,
        verdict,
        reason=reason,
        similar=similar,
        edited=edited,
        top_up=top_up,
        by=by,
        key=key,
        group=group,
    )
    return queued.ref


@dataclass(frozen=True)
class QueuedDecision:
    """A decision in the queue: what the run's outcome event will carry and where to
    look for it (see :mod:`trestle.lifecycle.outcomes`)."""

    ref: str  # the approval, RUN.N
    run_id: str
    request_id: int
    after: int  # the run's last seq when the decision was queued


def queue_decision(
    store: Store,
    ref: str,
    verdict: Verdict,
    *,
    reason: str = "",
    similar: bool = False,
    edited: Mapping[str, Any] | None = None,
    top_up: float | None = None,
    by: str | None = None,
    key: bytes | None = None,
    identity: Ed25519PrivateKey | None = None,
    group: str | None = None,
) -> QueuedDecision:
    """:func:`submit_decision`, returning the queued request too. ``identity`` is the
    decider's own key when it is not this user's ``identity.key``: a dashboard account's
    (:mod:`trestle.dashboard.accounts`), so an approver rule tells its people apart.

    An approve with ``similar`` also decides the approvals of its group that wait now
    (:mod:`trestle.core.approval_groups`), each named in the signed request; ``group``,
    the id the inbox showed, refuses the decision if the group changed since."""
    inside = inside_a_step(store)
    if inside is not None:
        raise ConfigError(f"decisions cannot be made from inside a running step: {inside}")
    state, number = find_approval(store, ref)
    refuse_if_cancelled(state)
    a = state.approvals[number]
    full = approval_ref(state.run_id, number)
    if a.status != "pending":
        raise ConfigError(f"approval {full!r} was already decided ({a.status} by {a.by})")
    if verdict == "reject" and not reason.strip():
        raise ConfigError(f"approval {full!r}: a rejection needs a reason (--reason)")
    if top_up is not None and not _amount(top_up):
        raise ConfigError(f"approval {full!r}: the top-up must be a finite amount of at least 0")
    if top_up is not None and a.breach is None:  # it would be dropped without a word
        raise ConfigError(
            f"approval {full!r}: a top-up is for a budget pause, and this approval is not "
            "one: approve it without --top-up"
        )
    if verdict == "modify":
        if a.step is None or edited is None or not a.blocking:
            raise ConfigError(
                f"approval {full!r}: only an action that waits (a step's action, a tool "
                "call, a plan under review) can be approved as edited"
            )
        try:
            modification(state, a, edited)  # refuse a bad edit now, not later
        except ConfigError as exc:
            raise ConfigError(f"approval {full!r}: {exc}") from None
    group_members = _group_as_shown(state, number, verdict, similar=similar, shown=group)
    fields = {
        "run_id": state.run_id,
        "approval": number,
        "verdict": verdict,
        "action_hash": a.action_hash,
        "files": a.files,  # the workspace files as the card showed them
        "reason": reason,
        "similar": similar,
        "edited": dict(edited) if edited is not None else None,
        "top_up": top_up,
        "by": by or f"{getpass.getuser()}@{socket.gethostname()}",
    }
    if group_members:
        fields["group"] = group_members
    signature = None
    if identity is not None or covering(state, a):
        # who decides counts: sign with the decider's own key too (a key handed in, a
        # dashboard account's or an MCP server's, always signs: the record names it)
        fields, signature = with_identity(fields, key=identity)
    # one the run will refuse (the starter's approve, a non-member's) is refused now:
    # queued, it held the approval's place from the people who may decide it
    signer = fields.get("signer")
    judged = _judged(verdict, similar)
    who = judge_approver(state, a, signer if isinstance(signer, str) else None, judged, time.time())
    if who.outcome == "refuse":
        raise ConfigError(f"approval {full!r}: {who.reason}")
    payload = signed_payload(fields, key or decision_key(), identity=signature)
    unless = _queued_before(state, number, full, fields, key or decision_key())
    request_id = store.add_request(
        state.run_id,
        "decision",
        a.step or "",
        reason,
        now=time.time(),
        payload=payload,
        unless=unless,
    )
    ring(store, state.run_id)
    return QueuedDecision(full, state.run_id, request_id, state.seq)


def _group_as_shown(
    state: RunState, number: int, verdict: Verdict, *, similar: bool, shown: str | None
) -> list[dict[str, Any]]:
    """The other members an approve with ``--similar`` of approval ``number`` decides;
    ConfigError if ``shown`` (the group id the inbox showed) is not the group now."""
    full = approval_ref(state.run_id, number)
    if shown is not None and (verdict != "approve" or not similar):
        raise ConfigError(f"approval {full!r}: a group is decided with approve --similar")
    if verdict != "approve" or not similar:
        return []
    now = members(state, number)
    if shown is not None and group_id(state, now) != shown:
        refs = ", ".join(approval_ref(state.run_id, n) for n in now)
        raise ConfigError(
            f"approval {full!r}: the group changed since {shown!r} was shown (it is now "
            f"{refs}): look again with `trestle inbox --run {state.run_id}`"
        )
    return signed_members(state, number)


@dataclass(frozen=True)
class Modification:
    """What a human's edit makes of the action that waits: the step as edited (or the
    plan review listing the edited plan), or the tool call's edited arguments; and the
    hash of what then runs."""

    action_hash: str
    step: Step | None = None
    arguments: str | None = None  # a tool call's, as canonical JSON
    plan_edit: PlanEdit | None = None


def modification(state: RunState, a: ApprovalState, edited: Mapping[str, Any]) -> Modification:
    """The action ``a`` waits on as ``edited`` changes it; ConfigError naming what is
    wrong with an edit that cannot apply."""
    assert a.step is not None
    if a.subject == "tool":
        ask = a.ask
        if ask is None:
            raise ConfigError("the tool call it asks about is not recorded")
        if ask.decision.source == UNKNOWN_OUTCOME:
            raise ConfigError(
                f"the {ask.tool} call already started and its outcome is unknown: it cannot "
                "be edited, only let go on (approve) or stopped (reject)"
            )
        arguments = tool_arguments(edited)
        text = canonical_json(arguments)
        digest = action_hash({"step": a.step, "tool": ask.tool, "arguments": text})
        return Modification(action_hash=digest, arguments=text)
    if is_plan_review(state, a.step):
        review, plan_edit = edited_review(state, a.step, edited)
        return Modification(
            action_hash=action_hash(review.action_payload()), step=review, plan_edit=plan_edit
        )
    step = edited_step(state.step_spec(a.step), edited)
    return Modification(action_hash=action_hash(step.action_payload()), step=step)


def tool_arguments(edited: Mapping[str, Any]) -> dict[str, Any]:
    """A tool call's arguments as a human edited them (``arguments``: a mapping)."""
    unknown = sorted(set(edited) - {"arguments"})
    if unknown:
        raise ConfigError(f"cannot edit {', '.join(unknown)} of a tool call: only its arguments")
    arguments = edited.get("arguments")
    if not isinstance(arguments, Mapping):
        raise ConfigError("a tool call's edited 'arguments' must be a mapping of argument names")
    return dict(arguments)


def decision_queued(store: Store, run_id: str, number: int) -> bool:
    """Whether a decision on approval ``number`` of the run is queued for its driver
    (made from another terminal, the dashboard or MCP) and not yet recorded."""
    return any(number in _decides(f) for r in store.pending_requests(run_id) if (f := _queued(r)))


def _queued(request: Request) -> dict[str, Any] | None:
    """The fields of a queued decision, else None. Not verified: the run judges them
    when it records them."""
    if request.kind != "decision":
        return None
    try:
        fields = json.loads(request.payload)["fields"]
    except (ValueError, KeyError, TypeError):
        return None  # not a genuine decision: the run will refuse it
    return fields if isinstance(fields, dict) else None


def _decides(fields: Mapping[str, Any]) -> set[object]:
    """The approvals a decision's fields decide: its own, and with ``--similar`` the
    others of its group, each named in it."""
    group = fields.get("group")
    members = group if isinstance(group, list) else []
    return {fields.get("approval"), *(m.get("approval") for m in members if isinstance(m, dict))}


def _queued_before(
    state: RunState, number: int, full: str, fields: Mapping[str, Any], key: bytes
) -> Refusal:
    """Why a decision (``fields``) on approval ``number`` cannot be queued behind the
    decisions already queued, asked in the transaction that would queue it: one decision
    decides an approval (or, with ``--similar``, its group's), so a second was refused
    only when the run folded it, after both deciders had been told theirs was queued.
    Where the operator's rule asks for several approvers, each may queue theirs (their
    approves are counted in turn) until as many that count are queued as it still
    needs; one the run will refuse (a starter's, a non-member's, one ``key`` does not
    verify) takes no place."""
    a = state.approvals[number]
    need = max((rule.approvals for rule in covering(state, a)), default=1)
    signer, mine = fields.get("signer"), _decides(fields)

    def counts(queued: Mapping[str, Any]) -> bool:
        # judged as of now: an escalation group's member counts once its deadline passed
        verdict = _judged(queued.get("verdict"), queued.get("similar"))
        judged = judge_approver(state, a, queued.get("signer"), verdict, time.time())
        return judged.outcome != "refuse"

    def refusal(pending: list[Request]) -> str | None:
        # only what the decision path signed, its signer verified: a request anyone who
        # may write the store queued held an approval's place until the run refused it
        found = [
            f
            for r in pending
            if r.kind == "decision"
            and (f := decision_fields(r.payload, key)) is not None
            and _decides(f) & mine
        ]
        queued = [f for f in found if counts(f)]
        if not queued:
            return None
        if need > 1 and signer is not None and any(f.get("signer") == signer for f in queued):
            return f"approval {full!r}: your decision on it is queued already"
        if (
            len(mine) == 1
            and all(f.get("verdict") == "approve" and _decides(f) == mine for f in queued)
            and len(a.endorsed_by) + len(queued) < need
        ):
            return None
        return (
            f"approval {full!r} was already decided; the run records it when it next runs "
            f"(`trestle resume {state.run_id}`)"
        )

    return refusal


def edited_step(step: Step, edited: Mapping[str, Any]) -> Step:
    """The step with the human's changes to its action; ConfigError if they are invalid."""
    unknown = sorted(set(edited) - set(EDITABLE))
    if unknown:
        raise ConfigError(f"cannot edit {', '.join(unknown)}: only {', '.join(EDITABLE)}")
    data = step.model_dump(mode="json", exclude_defaults=True)
    if any(k in edited for k in ACTIONS):  # a new action replaces the old one
        for k in ACTIONS:
            data.pop(k, None)
    data.update(edited)
    try:
        return Step.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'step'}: {plain_message(e)}" for e in exc.errors()
        )
        raise ConfigError(f"step {step.id!r}: the edited action is invalid: {problems}") from None


def editable_fields(card: HandoffCard) -> dict[str, Any]:
    """The card's action as the fields a human may edit (``run``, ``write``, ``python``,
    ``env``, ``timeout``): what ``trestle approve --edit`` opens and the dashboard's
    edit form shows. ConfigError for an action that cannot be edited."""
    action = card.action
    if action is not None and action.kind == "tool" and action.arguments is not None:
        return {"arguments": json.loads(action.arguments)}
    if action is None or action.kind in ("tool", "agent"):
        raise ConfigError(
            f"approval {card.ref}: only a step's command, write or call, a tool call or a "
            "plan under review can be edited; reject it with a reason instead"
        )
    current: dict[str, Any] = {}
    if action.command is not None:
        current["run"] = action.command
    if action.path is not None:
        current["write"] = {"path": action.path, "content": action.content or ""}
    if action.call is not None:
        current["python"] = action.call
    if action.env:
        current["env"] = action.env
    if action.timeout is not None:
        current["timeout"] = action.timeout
    return current


def editable(store: Store, card: HandoffCard) -> dict[str, Any]:
    """What a human may edit before approving, as ``trestle approve --edit`` opens it: a
    step's action fields (:func:`editable_fields`), a tool call's ``arguments``, or a
    plan under review as ``plan`` (its ``summary`` and ``steps``, as the model wrote
    them). ConfigError for an approval with nothing to edit."""
    agent = card.action is not None and card.action.kind == "agent"
    if (
        card.step is not None
        and agent
        and is_plan_review(trusted_state(store, card.run_id), card.step)
    ):
        plan = plan_under_review(store, card.run_id, card.step)
        if plan is None:
            raise ConfigError(f"approval {card.ref}: the plan under review is not recorded")
        return {"plan": plan.model_dump(mode="json", exclude_defaults=True)}
    return editable_fields(card)


def plan_under_review(store: Store, run_id: str, review: str) -> AgentPlan | None:
    """The plan the review step ``review`` shows, as the model proposed it: what
    ``trestle approve --edit`` opens for a plan review. None if none was recorded."""
    for stored in store.events(run_id):
        event = stored.event
        if isinstance(event, PlanExtended) and event.steps and event.steps[0].id == review:
            return event.agent_plan
    return None


def edit_from_yaml(text: str, source: str = "the edited action") -> dict[str, Any]:
    """The fields a human saved as YAML (the editor's file, ``--from``'s, the dashboard's
    form), or a ConfigError saying why nothing is approved, and where (``source``, the
    line and column: PyYAML's own text names a ``<unicode string>``)."""
    import yaml  # for an edit only: the commands that read runs import this module

    try:
        edited = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"{source} is not valid YAML{at}: {problem}; nothing was approved"
        ) from None
    except (RecursionError, ValueError) as exc:  # nested thousands deep; 5,000 digits
        raise ConfigError(f"{source} cannot be read: {exc}; nothing was approved") from None
    if not edited:
        raise ConfigError("the edit was emptied: nothing was approved")
    if not isinstance(edited, dict):
        raise ConfigError("the edited action must be a mapping of fields")
    return edited


def write_diff(card: HandoffCard, workspace: Path) -> str | None:
    """The unified diff between the file as it is now and what the write would leave."""
    action = card.action
    if action is None or action.path is None or action.content is None:
        return None
    try:
        before = text_now(workspace, action.path)
    except Refused as exc:
        return f"({action.path} is not shown: {exc})"
    except (OSError, UnicodeDecodeError):
        return f"({action.path} exists but is not readable text)"
    diff = unified(
        before or "",
        action.content,
        fromfile=f"a/{action.path}" if before is not None else "/dev/null",
        tofile=f"b/{action.path}",
    )
    return diff or "(no change: the file already has this content)"


def text_now(workspace: Path, path: str) -> str | None:
    """The text of ``path`` in ``workspace`` as it reads now, for a card's diff; None
    when there is no such file.

    Read as the tools read (:func:`~trestle.workspace.beneath.read_regular`): the
    file is a step's to make, and the card is read by the operator, on the dashboard by
    everyone it lets in, and through the MCP tools: a link to /proc/self/environ showed
    the reader's environment in the diff, a link to a file outside showed that file, a
    FIFO held the reader for ever and a sparse file of 100 GB filled its memory.

    Raises:
        Refused: the path leads outside, or names no regular file, or one past
            :data:`MOST_DIFFED_BYTES`.
        OSError, UnicodeDecodeError: it cannot be read as text.
    """
    try:
        data = read_regular(workspace.resolve(), path, MOST_DIFFED_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return data.decode("utf-8")


def decision_as_event(state: RunState, request: Request, key: bytes, now: float) -> AnyEvent:
    """The request as ``approval_decided`` if it is genuine and still applies, else as
    ``approval_refused`` naming why."""
    return decided(state, request, decision_fields(request.payload, key), now)


def decided(
    state: RunState, request: Request, fields: dict[str, Any] | None, now: float
) -> AnyEvent:
    """``decision_as_event`` for a request whose signature was already checked:
    ``fields`` are its signed fields, None when it was not signed by the decision path.
    Pure, so a driver that cannot read the key (a Temporal workflow) judges the same."""

    def refuse(number: int | None, why: str) -> ApprovalRefused:
        return ApprovalRefused(at=now, approval=number, reason=why, request_id=request.id)

    if fields is None:
        return refuse(None, "not signed by the decision path (trestle approve/reject)")
    number = fields.get("approval") if isinstance(fields.get("approval"), int) else None
    a = state.approvals.get(number) if number is not None else None
    if fields.get("run_id") != state.run_id or a is None or number is None:
        return refuse(number, "names an approval this run does not have")
    if a.status != "pending":
        return refuse(number, f"the approval was already decided ({a.status})")
    if a.step is not None and a.blocking:
        # a tool call's hash is of the call itself (see trestle.agent.toolgate), which
        # the step's replay must reach again; a step's action must not have changed
        changed = a.subject != "tool" and (
            action_hash(state.step_spec(a.step).action_payload()) != a.action_hash
        )
        if fields.get("action_hash") != a.action_hash or changed:
            return refuse(number, "the action changed since it was shown: ask again")
    if (fields.get("files") or {}) != (a.files or {}):
        return refuse(number, "not a decision on the files the card showed")
    verdict, top_up = fields.get("verdict"), fields.get("top_up")
    if verdict not in ("approve", "reject", "modify"):
        return refuse(number, f"unknown verdict {verdict!r}")
    if top_up is not None and not _amount(top_up):
        return refuse(number, f"the top-up {top_up!r} is not a finite amount of at least 0")
    signer = fields.get("signer")
    who = judge_approver(state, a, signer, _judged(verdict, fields.get("similar")), now)
    if who.outcome == "refuse":
        return refuse(number, who.reason)
    if who.outcome == "endorse":
        return ApprovalEndorsed(
            at=now,
            approval=number,
            by=who.name or "unknown",
            signer=str(fields.get("signer")),
            reason=str(fields.get("reason") or ""),
            request_id=request.id,
            signed=request.payload,
        )
    signed_group = fields.get("group") if verdict == "approve" else None
    covers, problem = group_problem(state, number, signed_group, signer, now)
    if problem is not None:
        return refuse(number, f"nothing was decided: {problem}")
    change: Modification | None = None
    if verdict == "modify":
        if a.step is None or not a.blocking:
            return refuse(number, "only an action that waits can be approved as edited")
        try:
            change = modification(state, a, fields.get("edited") or {})
        except ConfigError as exc:
            return refuse(number, str(exc))
    return ApprovalDecided(
        at=now,
        approval=number,
        verdict=verdict,
        # a member of the operator's approver groups is named as the group names them
        by=shown_decider(
            who.name or member_name(state.operator_policy, signer),
            signer,
            str(fields.get("by") or "unknown"),
        ),
        reason=str(fields.get("reason") or ""),
        similar=bool(fields.get("similar")),
        action_hash=change.action_hash if change is not None else a.action_hash,
        edited=change.step if change is not None else None,
        arguments=change.arguments if change is not None else None,
        plan_edit=change.plan_edit if change is not None else None,
        top_up=top_up,
        covers=covers,
        request_id=request.id,
        signed=request.payload,
    )


def vetter(key: bytes) -> Vet:
    """:func:`forged` with ``key``, for :func:`trestle.lifecycle.runs.load_state`."""
    return lambda state, event: forged(state, event, key)


def trusted_state(store: Store, run_id: str) -> RunState:
    """The run's state with forged decisions left out, as the engine will judge it."""
    return load_state(store, run_id, vet=vetter(decision_key()))


def forged(state: RunState, event: AnyEvent, key: bytes) -> str | None:
    """Why ``event``, about to be folded into ``state``, must be ignored as forged, or
    None. Only human decisions are judged: ``approval_decided`` must carry a signed
    request that verifies with ``key`` and says what the event says, about an approval
    still open; ``budget_raised`` likewise, about the budget stop that stands.

    This is the shell's half of the check: the pure fold cannot read keys, so the
    process that acts on a run's state folds it through this (see
    :func:`trestle.lifecycle.runs.load_state`).
    """
    if isinstance(event, BudgetRaised):
        return _raise_forged(state, event, key)
    if isinstance(event, ApprovalEndorsed):
        return _endorsement_forged(state, event, key)
    if not isinstance(event, ApprovalDecided):
        return None
    if event.signed is None:
        return "carries no signed request"
    fields = decision_fields(event.signed, key)
    if fields is None:
        return "its signature does not verify"
    a = state.approvals.get(event.approval)
    verdict = _judged(event.verdict, event.similar)
    if a is not None and judge_approver(state, a, fields["signer"], verdict, event.at).outcome != (
        "decide"
    ):
        return "its signer may not decide this approval alone (the operator's approvers)"
    said = (
        fields.get("run_id"),
        fields.get("approval"),
        fields.get("verdict"),
        bool(fields.get("similar")),
        fields.get("top_up"),
    )
    if said != (state.run_id, event.approval, event.verdict, event.similar, event.top_up):
        return "it says other than the signed request it carries"
    if (
        a is None
        or a.status != "pending"
        or fields.get("action_hash") != a.action_hash
        or (fields.get("files") or {}) != (a.files or {})
    ):
        return "the signed request is not for this approval as it stands"
    if event.verdict == "modify":
        if a.step is None or not a.blocking:
            return "a modification of an action that does not wait"
        try:
            change = modification(state, a, fields.get("edited") or {})
        except ConfigError:
            return "the signed edit is invalid"
        made = (event.edited, event.arguments, event.plan_edit, event.action_hash)
        if made != (change.step, change.arguments, change.plan_edit, change.action_hash):
            return "the edited action is not the one signed"
    elif event.action_hash != a.action_hash:
        return "it approves another action than the one signed"
    signed_group = fields.get("group") if event.verdict == "approve" else None
    covers, problem = group_problem(state, event.approval, signed_group, fields["signer"], event.at)
    if problem is not None or covers != event.covers:
        return "the approvals it decides with its group are not the ones signed, as they stand"
    return None


def _endorsement_forged(state: RunState, event: ApprovalEndorsed, key: bytes) -> str | None:
    """:func:`forged` for one approver's approve of a two-person approval."""
    fields = decision_fields(event.signed, key) if event.signed is not None else None
    if fields is None:
        return "its signature does not verify"
    a = state.approvals.get(event.approval)
    said = (fields.get("run_id"), fields.get("approval"), fields.get("signer"))
    if said != (state.run_id, event.approval, event.signer):
        return "it says other than the signed request it carries"
    if (
        a is None
        or a.status != "pending"
        or fields.get("action_hash") != a.action_hash
        or (fields.get("files") or {}) != (a.files or {})
    ):
        return "the signed request is not for this approval as it stands"
    verdict = _judged(fields.get("verdict"), fields.get("similar"))
    if judge_approver(state, a, event.signer, verdict, event.at).outcome != "endorse":
        return "its signer's approve does not count towards this approval"
    return None


def _raise_forged(state: RunState, event: BudgetRaised, key: bytes) -> str | None:
    """:func:`forged` for a raise of the budget (see :mod:`trestle.lifecycle.topup`)."""
    if event.signed is None:
        return "carries no signed request"
    fields = decision_fields(event.signed, key)
    if fields is None:
        return "its signature does not verify"
    who = judge_raise(state, fields["signer"])
    if who.outcome == "refuse":
        return f"its signer may not raise this run's budget: {who.reason}"
    said = (fields.get("run_id"), fields.get("kind"), fields.get("add"), fields.get("by"))
    if said != (state.run_id, "budget", dict(event.add), event.by) or (
        (fields.get("stop_seq"), fields.get("reason")) != (event.stop_seq, event.reason)
    ):
        return "it says other than the signed request it carries"
    stop = state.budget_stop
    if stop is None or stop.seq != event.stop_seq:
        return "the signed request is not for the budget stop as it stands"
    if not all(_amount(v) and v > 0 for v in event.add.values()):
        return "it raises by an amount that is not a finite number above 0"
    return None


def _judged(verdict: object, similar: object) -> object:
    """The verdict as the approver rules judge it: an approve ``--similar`` as
    ``similar``, which a rule that asks for several approvers refuses."""
    return "similar" if verdict == "approve" and similar else verdict


def _amount(value: object) -> bool:
    """A number a budget can grow by: finite, not negative (and not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value >= 0
