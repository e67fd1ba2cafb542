"""Operations on recorded runs that need no engine: create, load, and human requests."""

from __future__ import annotations

import getpass
import hmac
import json
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, ValidationError

from trestle.agentplan.edits import Change, change_refusal
from trestle.core.errors import (
    ConfigError,
    RunCancelledError,
    RunExistsError,
    StoreDamagedError,
    TrestleError,
    UnknownRunError,
)
from trestle.core.events import (
    AnyEvent,
    EngineBinding,
    RunCreated,
    StepAttemptEnded,
    StoredEvent,
    TreeLink,
)
from trestle.core.field_problems import did_you_mean
from trestle.core.plan import Plan
from trestle.core.policy import Policy
from trestle.core.records.agent import AgentSettings
from trestle.core.records.monitors import MonitorSettings
from trestle.core.records.policy_source import PolicySource
from trestle.core.report import category
from trestle.core.state import RunState
from trestle.core.step_state import StepStatus
from trestle.formats.python_code import named_sources, python_sources
from trestle.lifecycle.doorbell import ring
from trestle.store.base import Appended, Request, RequestKind, Snapshot, Store, require_text
from trestle.store.location import store_name
from trestle.trust.identity import public_key, with_identity
from trestle.trust.known_plans import note_run_files
from trestle.trust.signing import (
    decision_key,
    existing_key,
    monitors_mac,
    signed_payload,
    snapshot_mac,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

NEW_ID_DRAWS = 8


@dataclass
class Tail:
    """The events a load read after the seq it started from (``after``: a snapshot's,
    or the first event's), and the snapshot it read with its monitors' save, if it
    was signed with the load's key (None otherwise): a resume's monitors are restored
    and catch up on them without reading them, or checking the signature, again."""

    after: int = 0
    events: list[StoredEvent] = field(default_factory=list)
    snapshot: Snapshot | None = None


def new_run_id(now: float) -> str:
    """Sortable by creation time, unique enough to type: ``20261121-152000-a3f9``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{stamp}-{secrets.token_hex(2)}"


def create_run(
    store: Store,
    plan: Plan,
    *,
    workspace: Path,
    plan_path: Path | None = None,
    now: float | None = None,
    run_id: str | None = None,
    operator_policy: Policy | None = None,
    policy_source: PolicySource | None = None,
    agent: AgentSettings | None = None,
    monitors: MonitorSettings | None = None,
    parent: TreeLink | None = None,
    engine: EngineBinding | None = None,
    started_by: str | None = None,
) -> str:
    """Record a new run (its first event) and return its id. Nothing runs yet.

    ``operator_policy`` and ``monitors`` (from ``trestle.toml``) are recorded with the
    run, so the run is judged by the settings it started under, however the file
    changes later; ``policy_source`` (from :func:`trestle.trust.policy_trust.trusted_settings`)
    records which file that was and why it was trusted. The source files the plan's
    ``python:`` steps and checks import are pinned by their SHA-256 too
    (:func:`trestle.formats.python_code.python_sources`). Where the operator names
    approvers, the run records its starter's public key (:mod:`trestle.trust.identity`);
    a child run (``parent``) records ``started_by``, its root's starter, not the key of
    whoever's process made it (a human who resumed the parent was its starter, and the
    root's starter counted as one of two approvers).
    """
    now = time.time() if now is None else now
    # a path whose bytes are not UTF-8 cannot be stored: named now (it was a traceback
    # from deep in the store's driver, exit 1)
    where = {"workspace": str(workspace.resolve())}
    if plan_path is not None:
        where["plan file"] = str(plan_path.resolve())
    for what, path in where.items():
        require_text(f"the run's {what}", path=path)
    plan_dir = plan_path.resolve().parent if plan_path else workspace.resolve()
    event = RunCreated(
        at=now,
        run_id=run_id or new_run_id(now),
        plan=plan,
        workspace=str(workspace.resolve()),
        plan_path=str(plan_path.resolve()) if plan_path else None,
        operator_policy=operator_policy,
        policy_source=policy_source,
        # the python: code as the run starts; a step may rewrite it later
        python_sources=python_sources(plan, plan_dir, workspace.resolve()),
        agent=agent,
        monitors=monitors,
        parent=parent,
        engine=engine,
        # who started it, by key, where a two-person rule must know whom to exclude
        started_by=(
            started_by
            if parent is not None
            else public_key()
            if operator_policy and operator_policy.approvers
            else None
        ),
    )
    # every run in the workspace keeps them read-only now, not this one's alone (what
    # the named modules import is held by this run only: often the project's own code)
    named = named_sources(plan, plan_dir, workspace.resolve())
    note_run_files([*([event.plan_path] if event.plan_path else []), *named])
    summary = summary_json(RunState.from_created(event))
    # a generated id is the second plus 16 random bits: runs created together can
    # draw the same one, and then draw again (a given id is the caller's to choose)
    for _ in range(NEW_ID_DRAWS - 1 if run_id is None else 0):
        try:
            store.create_run(event, summary=summary)
        except RunExistsError:
            event = event.model_copy(update={"run_id": new_run_id(now)})
        else:
            return event.run_id
    store.create_run(event, summary=summary)
    return event.run_id


Vet = Callable[[RunState, AnyEvent], str | None]


def load_state(
    store: Store,
    run_id: str,
    *,
    vet: Vet | None = None,
    ignored: list[tuple[int, AnyEvent, str]] | None = None,
    key: bytes | None = None,
    tail: Tail | None = None,
) -> RunState:
    """The run's current state: the latest snapshot plus the events after it (kept in
    ``tail`` when one is given).

    Only a snapshot signed with ``key`` (by default the key on this machine, if there
    is one) is used; any other is passed over and every event folded, since a snapshot
    stands in for the decisions it sums up and anything that can open the store could
    have written it.

    ``vet`` (the engine passes :func:`trestle.lifecycle.approvals.forged` with the key) names why
    an event must not be folded; such an event is passed over and listed in
    ``ignored`` as (seq, event, why).

    Raises:
        StoreDamagedError: the run's records cannot be folded into a state (naming
            the seq), or end before the seq its listing row names.
    """
    row = store.run(run_id)  # read first: a concurrent append can only add to the events
    # a plan run's snapshot holds no monitors' save: asking for it costs nothing there
    snap = store.snapshot(run_id, monitors=tail is not None)
    stored = store.events(run_id, limit=1)
    first = stored[0].event if stored else None
    if not isinstance(first, RunCreated):
        found = "no events" if first is None else f"seq 1 is {first.kind!r}"
        raise _damaged(store, run_id, f"it does not begin with run_created ({found})")
    if snap is not None and not trusted(run_id, snap, key):
        snap = None
    if tail is not None:
        tail.snapshot = snap
    state = _from_snapshot(snap, first) if snap is not None else None
    state = state or RunState.from_created(first)
    if tail is not None:
        tail.after = state.seq
    catch_up(store, state, vet=vet, ignored=ignored, read=tail.events if tail else None)
    if state.seq < row.last_seq:
        raise _damaged(
            store,
            run_id,
            f"its events end at seq {state.seq}, but its listing row says {row.last_seq}",
        )
    return state


def catch_up(
    store: Store,
    state: RunState,
    *,
    vet: Vet | None = None,
    ignored: list[tuple[int, AnyEvent, str]] | None = None,
    read: list[StoredEvent] | None = None,
) -> None:
    """Fold into ``state`` every event recorded after its seq (see ``load_state``);
    ``read`` gets each one, folded or not."""
    for item in store.events(state.run_id, after=state.seq):
        if read is not None:
            read.append(item)
        why = vet(state, item.event) if vet is not None else None
        if why is not None:
            state.ignore(item.seq)
            if ignored is not None:
                ignored.append((item.seq, item.event, why))
            continue
        try:
            state.apply(item.event, item.seq)
        except TrestleError:
            raise
        except Exception as exc:  # any failure to fold a recorded event is damage
            raise _damaged(
                store,
                state.run_id,
                f"event seq {item.seq} ({item.event.kind}) does not fold: {exc}",
            ) from None


def readable_states(
    store: Store, run_ids: Iterable[str], unreadable: list[str] | None, *, vet: Vet | None = None
) -> Iterator[RunState]:
    """Each run's state, for listings across runs. A run that cannot be read is named in
    ``unreadable`` (when given, else the error is raised) and the listing goes on."""
    for run_id in run_ids:
        try:
            yield load_state(store, run_id, vet=vet)
        except (StoreDamagedError, ValueError, KeyError, IndexError, TypeError) as exc:
            if unreadable is None:
                raise
            reason = " ".join(str(exc).split())[:200]
            unreadable.append(f"run {run_id!r} cannot be read, left out: {reason}")


MAC_BYTES = 32  # a SHA-256 HMAC, before a snapshot's monitors' save


def trusted(run_id: str, snap: Snapshot, key: bytes | None = None) -> bool:
    """Whether ``snap`` carries the signature of an engine holding ``key`` (by default
    the key on this machine; with none, no snapshot is trusted)."""
    key = key if key is not None else existing_key()
    if key is None or not snap.mac:
        return False
    return hmac.compare_digest(snapshot_mac(key, run_id, snap.seq, snap.state_json), snap.mac)


def trusted_monitors(run_id: str, snap: Snapshot, key: bytes) -> bytes:
    """The monitors' save ``snap`` holds if an engine holding ``key`` signed it, else
    b"" (read with ``store.snapshot(run_id, monitors=True)``)."""
    signature, save = snap.monitors[:MAC_BYTES], snap.monitors[MAC_BYTES:]
    if not save or not hmac.compare_digest(monitors_mac(key, run_id, snap.seq, save), signature):
        return b""
    return save


def signed_snapshot(
    run_id: str, seq: int, state_json: str, monitors: bytes, key: bytes
) -> Snapshot:
    """A snapshot as an engine writes it: its state signed with ``key``, and its
    monitors' save (if any) signed apart, its signature before it."""
    if monitors:
        monitors = monitors_mac(key, run_id, seq, monitors) + monitors
    mac = snapshot_mac(key, run_id, seq, state_json)
    return Snapshot(seq=seq, state_json=state_json, monitors=monitors, mac=mac)


def _from_snapshot(snap: Snapshot, first: RunCreated) -> RunState | None:
    """The snapshot's state, or None when it cannot be read: a snapshot only saves
    time, so the state is then folded from the events, which are the record."""
    try:
        return RunState.from_snapshot(snap.state_json, plan=first.plan)
    except (ValidationError, ValueError, TypeError):
        return None


def _damaged(store: Store, run_id: str, problem: str) -> StoreDamagedError:
    return StoreDamagedError(store_name(store), f"run {run_id!r}: {problem}", run_id=run_id)


def cancelled_message(state: RunState) -> str:
    """Why nothing more can be done with a cancelled run."""
    return (
        f"run {state.run_id!r} was {state.cancelled}; a cancelled run cannot be resumed, "
        "retried or changed: start a new run for what it did not do"
    )


def refuse_if_cancelled(state: RunState) -> None:
    if state.cancelled is not None:
        raise RunCancelledError(cancelled_message(state))


def summary_json(state: RunState) -> str:
    """What ``trestle runs`` shows of a run without reading its events: its steps'
    statuses, counted, and (for a delegated child) its parent and root."""
    counts = state.status_counts()
    if state.cancelled is not None:
        # started, or asked for, and now never to finish: not "retry wait" or "running"
        counts = {}
        for st in state.steps.values():
            shown = (
                "cancelled" if category(st) in ("in_progress", "awaiting_approval") else st.status
            )
            counts[shown] = counts.get(shown, 0) + 1
        counts = dict(sorted(counts.items()))
    data: dict[str, object] = {"counts": counts}
    if state.parent is not None:
        data |= {"parent": state.parent.parent, "root": state.parent.root}
    if state.interrupted is not None and state.finished is None and state.cancelled is None:
        data["interrupted"] = state.interrupted
    if state.usage.total.calls:  # `trestle runs` shows what each run's model calls used
        data["usage"] = state.usage.total.model_dump()
    return json.dumps(data)


def record(
    store: Store,
    state: RunState,
    event: AnyEvent,
    *,
    token: int,
    status: str | None = None,
    consumed_requests: Sequence[int] = (),
) -> None:
    """Apply one ``event`` to ``state`` and append it with the run's new listing row,
    under the lease ``token`` (a decision taken outside a drive: cancel, rewind). The
    row's status is ``status``, else what the run is once the event applies."""
    state.apply(event)
    store.append(
        state.run_id,
        Appended(
            events=[event],
            first_seq=state.seq,
            status=status or state.finished or "running",
            summary=summary_json(state),
            consumed_requests=consumed_requests,
        ),
        token=token,
    )


# a step's status as a clause: "cannot retry step 'x': it already succeeded"
STATUS_WORDS: dict[StepStatus, str] = {
    "pending": "it has not started yet",
    "running": "it is running",
    "attempt_failed": "its last attempt just failed and the run has not yet decided what next",
    "retry_wait": "it is waiting to retry",
    "probing": "it is being probed",
    "unknown": "its outcome is unknown until the run is resumed",
    "escalated": "it is escalated",
    "awaiting_approval": "it is waiting for approval",
    "deferred": "it is waiting for a tool call's approval",
    "succeeded": "it already succeeded",
    "failed": "it failed",
    "blocked": "it is blocked by a step it needs",
    "skipped": "it was skipped",
}
RETRYABLE = ("failed", "escalated")
SKIPPABLE = ("failed", "escalated", "blocked", "pending", "retry_wait")


def request_decision(
    store: Store,
    run_id: str,
    kind: RequestKind,
    step: str,
    reason: str,
    *,
    key: bytes | None = None,
    by: str | None = None,
    identity: Ed25519PrivateKey | None = None,
) -> Request:
    """Queue a human's retry or skip; the run's driver records it on its next pass,
    naming ``by`` (default: this user at this host) as who asked.

    Signed like approvals (:mod:`trestle.trust.signing`): a row a step writes into the store
    itself cannot skip a step a human rejected. ``identity`` (a decider's own key, as
    ``trestle mcp serve`` hands in) signs it too, and the record names its key.
    """
    if kind == "skip" and not reason.strip():  # as the dashboard and MCP refuse it
        raise ConfigError(f"a skip needs a reason: say why step {step!r} is not needed")
    state = load_state(store, run_id)
    refuse_if_cancelled(state)
    if step not in state.steps:
        hint = did_you_mean(step, state.steps)
        raise UnknownRunError(f"run {run_id!r} has no step {step!r}{hint}")
    status = state.steps[step].status
    allowed = RETRYABLE if kind == "retry" else SKIPPABLE
    if status not in allowed:
        done = "retried" if kind == "retry" else "skipped"
        raise ConfigError(
            f"run {run_id!r}: cannot {kind} step {step!r}: {STATUS_WORDS[status]} "
            f"(only {', '.join(allowed)} steps can be {done})"
        )
    now = time.time()
    who = by or f"{getpass.getuser()}@{socket.gethostname()}"
    fields = {"run_id": run_id, "kind": kind, "step": step, "reason": reason, "by": who}
    payload = _signed(fields, key, identity)
    request_id = store.add_request(run_id, kind, step, reason, now=now, payload=payload)
    ring(store, run_id)
    return Request(
        id=request_id,
        run_id=run_id,
        kind=kind,
        step=step,
        reason=reason,
        created_at=now,
        payload=payload,
    )


class DeadLetter(BaseModel):
    """A step waiting on a human, with every event that concerns it."""

    # its history may hold any kind of event: built at import, it built every event
    # type's schema into its own, which the events themselves defer (2% of the
    # instructions importing the commands took)
    model_config = ConfigDict(defer_build=True)
    run_id: str
    step: str
    status: str
    reason: str | None
    attempts: int
    history: list[StoredEvent]


def dead_letters(store: Store, unreadable: list[str] | None = None) -> list[DeadLetter]:
    """Every open dead-letter entry, across the runs in ``store``; a run that cannot be
    read is named in ``unreadable`` (when given, else raised), as
    :func:`readable_states` does, and the others are listed."""
    entries = []
    waiting = [row.run_id for row in store.runs() if row.status in ("needs_human", "running")]
    for state in readable_states(store, waiting, unreadable):
        letters = [(sid, st) for sid, st in state.steps.items() if st.dead_lettered]
        if not letters:
            continue
        try:
            events = store.events(state.run_id)  # a snapshot may have spared the load them
        except StoreDamagedError as exc:
            if unreadable is None:
                raise
            unreadable.append(f"run {state.run_id!r} cannot be read, left out: {exc}")
            continue
        for sid, st in letters:
            history = [e for e in events if getattr(e.event, "step", None) == sid]
            entries.append(
                DeadLetter(
                    run_id=state.run_id,
                    step=sid,
                    status=st.status,
                    reason=st.reason,
                    attempts=st.attempt,
                    history=history,
                )
            )
    return entries


def attempt_ended(
    store: Store, run_id: str, step: str, attempt: int | None = None
) -> StepAttemptEnded:
    """How a step's attempt ended, its output whole (``trestle output``): attempt
    ``attempt``, or the last one that ended.

    Raises:
        UnknownRunError: no such run or step.
        ConfigError: no such attempt ended (it never started, or never finished).
    """
    state = load_state(store, run_id)
    if step not in state.steps:
        hint = did_you_mean(step, state.steps)
        raise UnknownRunError(f"run {run_id!r} has no step {step!r}{hint}")
    ended = [
        e.event
        for e in store.events(run_id)
        if isinstance(e.event, StepAttemptEnded) and e.event.step == step
    ]
    chosen = [e for e in ended if attempt is None or e.attempt == attempt]
    if chosen:
        return chosen[-1]
    if not ended:
        raise ConfigError(f"run {run_id!r}: step {step!r} has no attempt that ended yet")
    numbers = ", ".join(sorted({str(e.attempt) for e in ended}, key=int))
    raise ConfigError(
        f"run {run_id!r}: step {step!r} has no attempt {attempt} that ended "
        f"(attempts that ended: {numbers})"
    )


def request_requirement(
    store: Store,
    run_id: str,
    text: str,
    *,
    by: str,
    key: bytes | None = None,
    identity: Ed25519PrivateKey | None = None,
) -> Request:
    """Queue a requirement for an agent run (``trestle tell``); its driver adds it to
    the plan on its next pass. Signed like the other requests. A run its budget
    stopped takes one too: it is planned when the run is resumed (after ``trestle
    budget RUN --add``)."""
    state = load_state(store, run_id)
    refuse_if_cancelled(state)
    if state.agent is None:
        raise ConfigError(
            f"run {run_id!r} is a plan run, not an agent run: it takes no requirements"
        )
    _refuse_if_over(state, f"start a new run for {text!r}")
    if not text.strip():
        raise ConfigError("the requirement is empty: say what else the run must do")
    told = {"step": "", "reason": text}
    return _queue_tell(store, run_id, told, by=by, key=key, identity=identity)


def request_plan_change(
    store: Store,
    run_id: str,
    step: str,
    change: Change,
    text: str,
    *,
    by: str,
    key: bytes | None = None,
    identity: Ed25519PrivateKey | None = None,
) -> Request:
    """Queue a change to a step of an agent run's plan that has not started
    (``trestle tell --drop STEP`` / ``--change STEP TEXT``), signed like the other
    requests. Refused at once, with nothing queued, when the run as it is now could
    not take it (:func:`trestle.agentplan.edits.change_refusal`); the driver judges it
    again when it reads it.

    Raises:
        ConfigError: the change is refused; the message says why.
        UnknownRunError: no such run.
    """
    state = load_state(store, run_id)
    refuse_if_cancelled(state)
    if state.agent is not None:  # a plan run is told why it takes no changes at all
        _refuse_if_over(state, "nothing of its plan is left to change")
    why = change_refusal(state, step, change, text)
    if why is not None:
        raise ConfigError(f"run {run_id!r}: {why}")
    fields = {"step": step, "reason": text, "change": change}
    return _queue_tell(store, run_id, fields, by=by, key=key, identity=identity)


def _refuse_if_over(state: RunState, instead: str) -> None:
    """A finished run takes nothing more; one its budget stopped goes on once raised."""
    if state.finished not in ("succeeded", "partial", "stopped"):
        return
    if state.finished == "stopped" and state.budget_stop is not None:
        return  # `trestle budget --add` then `resume` goes on: what it is told waits
    raise ConfigError(f"run {state.run_id!r} already finished ({state.finished}): {instead}")


def _signed(fields: dict[str, str], key: bytes | None, identity: Ed25519PrivateKey | None) -> str:
    """A request's payload, signed with the decision key and, when one is handed in,
    the decider's identity key (:mod:`trestle.trust.identity`)."""
    if identity is None:
        return signed_payload(fields, key or decision_key())
    named, signature = with_identity(dict(fields), key=identity)
    return signed_payload(named, key or decision_key(), identity=signature)


def _queue_tell(
    store: Store,
    run_id: str,
    told: dict[str, str],
    *,
    by: str,
    key: bytes | None,
    identity: Ed25519PrivateKey | None = None,
) -> Request:
    now = time.time()
    fields = {"run_id": run_id, "kind": "tell", **told, "by": by}
    payload = _signed(fields, key, identity)
    step, text = told["step"], told["reason"]
    request_id = store.add_request(run_id, "tell", step, text, now=now, payload=payload)
    ring(store, run_id)
    return Request(
        id=request_id,
        run_id=run_id,
        kind="tell",
        step=step,
        reason=text,
        created_at=now,
        payload=payload,
    )
