"""Raising a run's budget after a hard limit stopped it (``trestle budget RUN --add``).

A hard limit stops a run with ``budget_exhausted`` (exit 6): nothing new starts. A
human may raise that limit: ``trestle budget RUN --add tokens=2000`` records
``budget_raised``, signed by the decision path like an approval, which moves the
dimension's hard level (and its soft level with it) up by the amount and reopens the
run, so that ``trestle resume RUN`` goes on from where it stopped. Nothing that
succeeded runs again: the run only starts what it had not started.

The raise is recorded at once, under the run's lease, so nothing drives the run
meanwhile. It is refused, and nothing is recorded:

- from inside a step (as a decision is: :mod:`trestle.trust.step_origin`), exit 2;
- for a dimension the run has no limit on, an amount that is not a finite number
  above 0, a run its budget did not stop (said in words), a raise that leaves out
  the dimension that stopped it, or one that would still leave the start it stopped
  at over the limit (naming what that start needs and what the limit would be), exit 2;
- where the operator's approver rules cover raises
  (:func:`trestle.core.approvers.raise_rules`) and this person's identity key is not
  in a group of each, naming who may raise it, exit 2;
- for a cancelled run, exit 7; while a live process still drives the run (it finishes
  the steps that ran when the limit was hit, then ends), exit 5.

Whatever later reads the run to act on it verifies the event
(:func:`trestle.lifecycle.approvals.forged`): one that does not verify, or that answers a stop
which no longer stands, is ignored and reported.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trestle.core.approvers import judge_raise, raise_rules
from trestle.core.budget import DIMENSIONS, Dimension, fmt, hard_level, least_raise
from trestle.core.errors import ConfigError, LeaseHeldError
from trestle.core.events import BudgetRaised
from trestle.core.field_problems import did_you_mean
from trestle.core.report import carved_budget
from trestle.core.state import RunState
from trestle.formats.age import parse_age
from trestle.lifecycle.approvals import trusted_state, vetter
from trestle.lifecycle.doorbell import ring
from trestle.lifecycle.lease import DEFAULT_LEASE_TTL, this_process
from trestle.lifecycle.runs import load_state, record, refuse_if_cancelled
from trestle.store.base import Store
from trestle.trust.identity import public_key, public_of, with_identity
from trestle.trust.signing import decision_key, signed_payload
from trestle.trust.step_origin import inside_a_step

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

WHOLE: tuple[Dimension, ...] = ("steps", "tokens")  # counted in units, never in parts


@dataclass(frozen=True)
class Raised:
    """What :func:`raise_budget` recorded: the run as it is now, and each raised
    dimension's hard level now (None where it has only a soft level)."""

    state: RunState
    add: dict[Dimension, float]
    limits: dict[Dimension, float | None]


def parse_add(text: str) -> tuple[Dimension, float]:
    """``tokens=2000``, ``tokens=+2000``, ``cost=$1.50``, ``steps=3``, ``seconds=600``
    or ``seconds=10m`` as a dimension and an amount; anything else a ConfigError."""
    name, sep, value = text.partition("=")
    name = name.strip().lower()
    if not sep:
        raise ConfigError(
            f"--add {text!r}: expected DIMENSION=AMOUNT, like tokens=2000 "
            f"(the dimensions: {', '.join(DIMENSIONS)})"
        )
    if name not in DIMENSIONS:
        raise ConfigError(
            f"--add {text!r}: unknown budget dimension {name!r}{did_you_mean(name, DIMENSIONS)}"
            f"; the dimensions are {', '.join(DIMENSIONS)}"
        )
    dim = name
    raw = value.strip().removeprefix("+").strip()
    if dim == "cost":
        raw = raw.removeprefix("$")
    try:
        if dim == "seconds" and raw[-1:].isalpha() and raw.lower() not in ("inf", "nan"):
            amount = parse_age(raw)
        else:
            amount = float(raw.replace(",", ""))
    except (ValueError, ConfigError):
        raise ConfigError(f"--add {text!r}: {value.strip()!r} is not an amount") from None
    if not math.isfinite(amount) or amount <= 0:
        raise ConfigError(f"--add {text!r}: the amount must be a finite number above 0")
    if dim in WHOLE and not amount.is_integer():
        raise ConfigError(f"--add {text!r}: {dim} are counted whole; give a whole number")
    return dim, amount


def parse_adds(texts: list[str]) -> dict[Dimension, float]:
    """Several ``--add`` options; a dimension given twice is a ConfigError."""
    add: dict[Dimension, float] = {}
    for text in texts:
        dim, amount = parse_add(text)
        if dim in add:
            raise ConfigError(f"--add: {dim} is given twice; give it once, with the sum")
        add[dim] = amount
    return add


# the run as a clause, for a refusal: "run 'x' cannot have its budget raised: it ..."
def run_words(state: RunState) -> str:
    """What the run is now, said as a clause (in the style of ``runs.STATUS_WORDS``)."""
    if state.cancelled is not None:
        return f"it was {state.cancelled}"
    if state.stopped is not None:
        if "top-up refused" in state.stopped:
            return (
                f"it was {state.stopped} (a human refused the top-up; a raise does not "
                "overrule that)"
            )
        if state.stopped.startswith("stopped by its budget"):  # a snapshot from before raises
            return f"it was {state.stopped}, recorded before a stop could be raised"
        return f"it was {state.stopped}, not by a hard budget limit"
    paused = [
        n for n, a in state.approvals.items() if a.status == "pending" and a.subject == "budget"
    ]
    if paused:
        ref = f"{state.run_id}.{paused[0]}"
        return (
            f"it is paused at a soft limit, not stopped: approve its top-up with "
            f"`trestle approve {ref} --top-up AMOUNT`"
        )
    match state.finished:
        case "succeeded":
            return "it already succeeded"
        case "partial":
            return "it finished with failures, not stopped by its budget"
        case "needs_human":
            return "it waits on a human (see `trestle show`), not stopped by its budget"
        case _:
            if state.tally.raised and state.finished is None:
                return (
                    "it is not stopped: its budget was raised since it stopped; continue "
                    f"with `trestle resume {state.run_id}` if nothing drives it"
                )
            if state.interrupted is not None:
                return f"it was interrupted by {state.interrupted}, not stopped by its budget"
            return "it has not finished, and no budget limit stopped it"


def refusal(state: RunState, add: Mapping[Dimension, float]) -> str | None:
    """Why ``add`` cannot be raised on the run as it is now, or None."""
    run = state.run_id
    stop = state.budget_stop
    carved = carved_budget(state)
    if carved is not None:
        return f"run {run!r} cannot have its budget raised: {carved}"
    if stop is None:
        return f"run {run!r} cannot have its budget raised: {run_words(state)}"
    budget = state.plan.budget
    limited = [d for d in DIMENSIONS if budget is not None and budget.limit(d) is not None]
    for dim in add:
        if dim not in limited:
            return (
                f"run {run!r} has no {dim} limit to raise "
                f"(its budget limits {', '.join(limited) or 'nothing'})"
            )
    hard = hard_level(budget, state.tally, stop.dimension)
    if stop.dimension not in add or hard is None:
        return (
            f"run {run!r} was stopped by its hard {stop.dimension} limit, not by "
            f"{' or '.join(add)}: raise that one (`trestle budget {run} --add "
            f"{stop.dimension}=AMOUNT`)"
        )
    used = stop.used if stop.used is not None else _used_now(state, stop.dimension)
    new = hard + add[stop.dimension]
    if used > new:
        return (
            f"run {run!r}: raising the {stop.dimension} limit by "
            f"{fmt(stop.dimension, add[stop.dimension])} is not enough: the start it stopped "
            f"at would use {fmt(stop.dimension, used)}, and the limit would be "
            f"{fmt(stop.dimension, new)}; add at least "
            f"{fmt(stop.dimension, least_raise(stop.dimension, used, hard))}"
        )
    return None


def _not_an_approver(state: RunState, identity: Ed25519PrivateKey | None) -> str | None:
    """Why the raiser (``identity``, else this user's ``identity.key``) may not raise
    the run's budget under the operator's approver rules
    (:func:`trestle.core.approvers.judge_raise`), or None."""
    if not raise_rules(state):
        return None
    who = judge_raise(state, _signer(identity))
    if who.outcome == "refuse":
        return f"run {state.run_id!r}: you may not raise its budget: {who.reason}"
    return None


def _signer(identity: Ed25519PrivateKey | None) -> str:
    """The public key a raise is signed with: ``identity``'s, else this user's."""
    return public_of(identity) if identity is not None else public_key()


def _used_now(state: RunState, dim: Dimension) -> float:
    """For a stop recorded without what it needed: what is used now, plus one step."""
    if dim == "seconds":
        return state.active_seconds
    used = state.tally.spent.get(dim, 0.0) + state.tally.reserved.get(dim, 0.0)
    return used + 1 if dim == "steps" else used


def raise_budget(
    store: Store,
    run_id: str,
    add: Mapping[Dimension, float],
    *,
    by: str,
    reason: str = "",
    key: bytes | None = None,
    identity: Ed25519PrivateKey | None = None,
) -> Raised:
    """Raise the hard limits in ``add`` of a run its budget stopped (see the module).
    ``identity`` is the raiser's own key when it is not this user's ``identity.key``
    (a dashboard account's): the approver rules judge the key the raise is signed with.

    Raises:
        ConfigError: from inside a step, or the raise does not apply (the reason says why).
        RunCancelledError: the run was cancelled.
        LeaseHeldError: a live process still drives the run.
    """
    inside = inside_a_step(store)
    if inside is not None:
        raise ConfigError(f"a budget cannot be raised from inside a running step: {inside}")
    if not add:
        raise ConfigError("say what to raise: --add DIMENSION=AMOUNT, like tokens=2000")
    state = trusted_state(store, run_id)
    refuse_if_cancelled(state)
    problem = refusal(state, add) or _not_an_approver(state, identity)
    if problem is not None:
        raise ConfigError(problem)
    key = key or decision_key()
    try:
        lease = store.acquire_lease(
            run_id, this_process("trestle budget"), ttl=DEFAULT_LEASE_TTL, now=time.time()
        )
    except LeaseHeldError:
        held = store.lease(run_id)
        holder = held.owner.name if held else "another process"
        raise LeaseHeldError(
            f"run {run_id!r} is still driven by {holder}: it finishes the steps that were "
            "running when the budget stopped the run, then ends; raise the budget after "
            f"that (`trestle watch {run_id}` ends when it does)"
        ) from None
    try:
        state = load_state(store, run_id, vet=vetter(key))  # as it is under the lease
        refuse_if_cancelled(state)
        problem = refusal(state, add)
        if problem is not None:
            raise ConfigError(problem)
        assert state.budget_stop is not None
        amounts = {dim: float(amount) for dim, amount in add.items()}
        fields: dict[str, object] = {
            "run_id": run_id,
            "kind": "budget",
            "add": amounts,
            "reason": reason,
            "by": by,
            "stop_seq": state.budget_stop.seq,
        }
        signature = None
        if identity is not None or raise_rules(state):  # who raises counts: their own key
            fields["by"] = judge_raise(state, _signer(identity)).name or by
            fields, signature = with_identity(fields, key=identity)
        event = BudgetRaised(
            at=time.time(),
            add=amounts,
            by=str(fields["by"]),
            reason=reason,
            stop_seq=state.budget_stop.seq,
            signed=signed_payload(fields, key, identity=signature),
        )
        record(store, state, event, token=lease.token)
    finally:
        store.release_lease(run_id, lease.token)
    ring(store, run_id)  # a run on Temporal goes on by itself once its workflow hears
    limits = {dim: hard_level(state.plan.budget, state.tally, dim) for dim in amounts}
    return Raised(state, amounts, limits)
