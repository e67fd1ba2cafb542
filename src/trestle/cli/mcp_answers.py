"""What the tools of ``trestle mcp serve`` answer (:mod:`trestle.cli.mcp_server`): the
CLI's own functions over one store, each answer as data and as the text the CLI prints.

Reading tools answer as ``trestle runs``, ``show`` and ``inbox`` do (their ``--json``
as the data). Decisions go through the decision path the CLI's commands use
(:func:`trestle.lifecycle.approvals.queue_decision`,
:func:`trestle.lifecycle.runs.request_decision`, ``request_requirement``,
:func:`trestle.lifecycle.cancel.cancel_tree`): signed with the operator's key, queued
in the store, recorded by the run's driver, and made by ``by`` (``mcp:CLIENT:USER@HOST``).
Approvals, rejections, retries, skips and tells are signed with the server's identity
key too, always (:func:`trestle.trust.identity.identity_path`: ``trestle mcp serve
--identity FILE`` names it), so the record says whose key decided whether or not a
rule asks.
Nothing here imports the MCP SDK.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from trestle.cli.stores import run_in
from trestle.core.errors import ConfigError
from trestle.trust.step_origin import inside_a_step

if TYPE_CHECKING:
    from rich.console import RenderableType

    from trestle.store.base import Store

TEXT_WIDTH = 120  # the text answers' width: a card's lines and the tables stay whole


@dataclass(frozen=True)
class Answer:
    """A tool's answer: ``data`` (JSON, the structured content) and ``text``."""

    data: dict[str, Any]
    text: str


def refuse_inside_a_step(store: Store | None, started: str | None = None) -> None:
    """ConfigError when this call is part of a run's step, or the server was started
    by one (``started``: why, as :func:`inside_a_step` said when it started)."""
    inside = started or inside_a_step(store)
    if inside is not None:
        raise ConfigError(f"decisions cannot be made from inside a running step: {inside}")


def runs_answer(store: Store, limit: int) -> Answer:
    """``trestle runs``: the newest ``limit`` runs."""
    from trestle.cli.listing import runs_table
    from trestle.lifecycle.driven import drivings

    rows = store.runs()[:limit]
    driven = drivings(store, rows)
    listed = []
    for row in rows:
        summary = row.summarised()
        tree = {"parent": summary.parent, "root": summary.root}
        status = driven[row.run_id].status
        listed.append({**row.__dict__, "status": status, "summary": summary.counts, **tree})
    more = len(store.runs()) - len(rows)
    text = _text(runs_table(rows, driven)) if rows else "no runs yet\n"
    if more > 0:
        text += f"({more} older runs not listed: raise limit)\n"
    return Answer(_json({"runs": listed, "more": max(more, 0)}), text)


def show_answer(store: Store, run: str) -> Answer:
    """``trestle show RUN``: the run's state and report."""
    from trestle.cli.render import report_view, steps_table
    from trestle.core.report import build_report
    from trestle.lifecycle.approvals import trusted_state
    from trestle.lifecycle.driven import drivings
    from trestle.store.base import subtree

    run_id = found_run(store, run)
    state = trusted_state(store, run_id)  # forged decisions left out, as the engine does
    below = subtree(store.runs(), run_id) if state.children else []
    report = build_report(state)
    driven = drivings(store, [store.run(run_id), *(child for child, _ in below)])
    judged = driven[run_id]
    tree = {
        "parent": state.parent.model_dump(mode="json") if state.parent else None,
        "children": [
            {"run_id": r.run_id, "status": driven[r.run_id].status, "depth": d} for r, d in below
        ],
    }
    parts: list[RenderableType | str] = []
    if state.parent is not None:
        link = state.parent
        parts.append(
            f"a child of run {link.parent} (its step {link.step!r}, round {link.round}): "
            f"{link.describe()}"
        )
    if state.finished is None:
        parts.append(steps_table(state, lost=judged.lost))
    interrupted = judged.status == "interrupted"
    parts.append(report_view(report, interrupted=interrupted, lost=judged.lost))
    parts += [f"{'  ' * d}└ {r.run_id}  {r.status}  {r.goal}" for r, d in below]
    data = {**report.model_dump(mode="json"), "tree": tree}
    if interrupted:
        data["status"] = "interrupted"
    return Answer(_json(data), _text(*parts))


def inbox_answer(store: Store, run: str | None) -> Answer:
    """``trestle inbox``: each open approval as its handoff card, oldest first (a
    write's card with the diff it would make); the cards one ``approve`` with
    ``similar`` decides together are listed as one group (the JSON's ``group``)."""
    from trestle.cli.render import card_view
    from trestle.core.card_groups import grouped, member_line, waiting
    from trestle.lifecycle.approvals import inbox, write_diff
    from trestle.lifecycle.runs import load_state

    run_id = found_run(store, run) if run else None
    unreadable: list[str] = []
    cards = inbox(store, run_id=run_id, unreadable=unreadable)
    listed, parts = [], []
    now = time.time()
    for entry in grouped(cards):  # a group: its first card in full, a line per other
        for card in entry.cards:
            diff = write_diff(card, Path(load_state(store, card.run_id).workspace))
            listed.append({**card.model_dump(mode="json"), "diff": diff})
            if card is entry.head:
                parts.append(card_view(card, diff, now))
            else:
                parts.append(f"  also {member_line(card)}  ({waiting(card, now)})")
        parts.append(entry.decide(mcp=True) + "\n")
    parts += [f"warning: {problem}" for problem in unreadable]
    text = _text(*parts) if parts else "inbox is empty\n"
    return Answer(_json({"cards": listed, "unreadable": unreadable}), text)


def approve(
    store: Store,
    ref: str,
    *,
    by: str,
    reason: str,
    similar: bool,
    top_up: float | None,
    group: str | None = None,
) -> Answer:
    """``trestle approve REF [--similar [--group ID]]``."""
    from trestle.lifecycle.approvals import queue_decision
    from trestle.trust.identity import private_key

    queued = queue_decision(
        store,
        _ref(store, ref),
        "approve",
        reason=reason,
        similar=similar,
        group=group,
        top_up=top_up,
        by=by,
        identity=private_key(),
    )
    what = f"approved {queued.ref}"
    return _outcome(store, what, queued.run_id, queued.request_id, queued.after, queued.ref)


def reject(store: Store, ref: str, *, by: str, reason: str) -> Answer:
    """``trestle reject REF --reason TEXT``."""
    from trestle.lifecycle.approvals import queue_decision
    from trestle.trust.identity import private_key

    queued = queue_decision(
        store, _ref(store, ref), "reject", reason=reason, by=by, identity=private_key()
    )
    what = f"rejected {queued.ref}"
    return _outcome(store, what, queued.run_id, queued.request_id, queued.after, queued.ref)


def retry_or_skip(
    store: Store, kind: Literal["retry", "skip"], run: str, step: str, *, by: str, reason: str
) -> Answer:
    """``trestle retry RUN STEP`` or ``trestle skip RUN STEP --reason TEXT``."""
    from trestle.lifecycle.runs import request_decision
    from trestle.trust.identity import private_key

    if kind == "skip" and not reason.strip():
        raise ConfigError("a skip needs a reason: say why the step is not needed")
    run_id = found_run(store, run)
    after = store.run(run_id).last_seq
    queued = request_decision(store, run_id, kind, step, reason, by=by, identity=private_key())
    return _outcome(store, f"{kind} of {step!r}", run_id, queued.id, after)


def tell(store: Store, run: str, text: str, *, by: str) -> Answer:
    """``trestle tell RUN TEXT``: a requirement for an agent run."""
    from trestle.lifecycle.runs import request_requirement
    from trestle.trust.identity import private_key

    run_id = found_run(store, run)
    after = store.run(run_id).last_seq
    queued = request_requirement(store, run_id, text, by=by, identity=private_key())
    return _outcome(store, "the requirement", run_id, queued.id, after)


def change_plan(
    store: Store, run: str, step: str, *, drop: bool, objective: str, by: str
) -> Answer:
    """``trestle tell RUN --drop STEP`` or ``--change STEP TEXT``: a step of an agent
    run's plan that has not started."""
    from trestle.lifecycle.runs import request_plan_change
    from trestle.trust.identity import private_key

    if drop == bool(objective.strip()):
        raise ConfigError("say one change: drop true, or the step's new objective")
    run_id = found_run(store, run)
    after = store.run(run_id).last_seq
    change: Literal["drop", "objective"] = "drop" if drop else "objective"
    queued = request_plan_change(
        store, run_id, step, change, objective, by=by, identity=private_key()
    )
    what = f"the {'drop' if drop else 'change'} of {step!r}"
    return _outcome(store, what, run_id, queued.id, after)


def cancel(store: Store, run: str, *, by: str, reason: str) -> Answer:
    """``trestle cancel RUN --reason TEXT``: the run and its delegated children."""
    from trestle.cli.decisions import cancel_lines
    from trestle.cli.render import report_view
    from trestle.core.report import build_report
    from trestle.lifecycle.cancel import cancel_tree

    if not reason.strip():
        raise ConfigError("a cancel needs a reason: say why the run is cancelled")
    run_id = found_run(store, run)
    done, below = cancel_tree(store, run_id, reason, by=by)
    lines = cancel_lines(run_id, reason, done, below)
    report = build_report(done.state)
    data = {
        "run_id": run_id,
        "status": "already_cancelled" if done.already else "cancelled",
        "message": lines[0],
        "stopped_by": done.by,
        "not_ended": list(done.elsewhere),
        "children": [{"run_id": c, "already": d.already} for c, d in below],
        "report": report.model_dump(mode="json"),
    }
    return Answer(_json(data), _text(*lines, report_view(report)))


def found_run(store: Store, run: str) -> str:
    """The id of the run ``run`` names (its id or a unique tail); UnknownRunError
    naming it (and a near miss) when the store holds no such run."""
    found = run_in(store, run)
    if found is None:
        store.run(run)  # raises, naming the run and the store
        raise AssertionError("unreachable: store.run found a run run_in did not")
    return found


def _ref(store: Store, ref: str) -> str:
    """``RUN.N`` with the run's full id (a tail of it is enough, as on the CLI)."""
    from trestle.lifecycle.approvals import split_ref

    run_part, nth = split_ref(ref)
    return f"{found_run(store, run_part)}.{nth}"


def _outcome(
    store: Store, what: str, run_id: str, request_id: int, after: int, ref: str | None = None
) -> Answer:
    """What became of a request just queued: applied at once by the run's live driver,
    or queued for the next one (a refusal is a ConfigError, as on the CLI)."""
    from trestle.cli.human import outcome_said

    applied, said = outcome_said(store, what, run_id, request_id, after=after)
    data = {
        "run_id": run_id,
        "request_id": request_id,
        "status": "applied" if applied else "queued",
        "message": said,
    }
    if ref is not None:
        data["ref"] = ref
    return Answer(data, said + "\n")


def _text(*parts: RenderableType | str) -> str:
    """``parts`` as the CLI prints them (without colour), one after another."""
    from trestle.cli.console import _shown_console

    buffer = io.StringIO()
    console = _shown_console()(
        file=buffer, width=TEXT_WIDTH, color_system=None, highlight=False, soft_wrap=False
    )
    for part in parts:
        if isinstance(part, str):
            console.print(part, markup=False, soft_wrap=True)
        else:
            console.print(part)
    # a table pads its cells to the width: the padding is no part of the answer
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())


def _json(data: Any) -> dict[str, Any]:
    """``data`` as plain JSON values (times and paths as the CLI's ``--json`` writes them)."""
    plain: dict[str, Any] = json.loads(json.dumps(data, default=str))
    return plain
