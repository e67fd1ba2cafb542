"""Commands a human decides with: ``retry``, ``skip``, ``cancel``, ``inbox``, ``approve``,
``reject``, and ``feedback export`` of the decisions made."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

# Typer keeps its own copy of click (pinned: pyproject.toml); the exceptions a usage
# error raises are only importable from it
from trestle.cli.console import (
    _all_runs,
    _found,
    _opened,
    _out,
    _print_json,
    _warn_unreadable,
    _who,
    write_output,
)
from trestle.cli.options import (
    ApprovalArg,
    JsonOption,
    RunArg,
    StepArg,
    StoreOption,
)
from trestle.core.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from trestle.core.card import HandoffCard
    from trestle.core.state import RunState
    from trestle.lifecycle.cancel import Cancelled


def retry(
    run_id: RunArg,
    step: StepArg,
    reason: Annotated[str, typer.Option(help="Why it is worth another try.")] = "retry requested",
    store: StoreOption = None,
) -> None:
    """Give a failed or escalated step a fresh set of attempts (on the next resume)."""
    from trestle.cli.human import say_outcome
    from trestle.lifecycle.runs import request_decision

    with _found(store, run_id) as (st, run_id):
        after = st.run(run_id).last_seq
        queued = request_decision(st, run_id, "retry", step, reason)
        say_outcome(_out(), st, f"retry of {step!r}", run_id, queued.id, after=after)


def skip(
    run_id: RunArg,
    step: StepArg,
    reason: Annotated[str, typer.Option(help="Why the step is not needed (recorded).")],
    store: StoreOption = None,
) -> None:
    """Mark a step as not to be run; steps that need it go on without it."""
    from trestle.cli.human import say_outcome
    from trestle.lifecycle.runs import request_decision

    with _found(store, run_id) as (st, run_id):
        after = st.run(run_id).last_seq
        queued = request_decision(st, run_id, "skip", step, reason)
        say_outcome(_out(), st, f"skip of {step!r}", run_id, queued.id, after=after)


def cancel(
    run_id: RunArg,
    reason: Annotated[str, typer.Option(help="Why the run is cancelled (recorded).")],
    store: StoreOption = None,
) -> None:
    """Cancel a run and its delegated children: stop them and their steps' processes
    (whichever process drives them), record why, and print the report. A cancelled run
    cannot be resumed."""
    from trestle.cli.render import report_view
    from trestle.core.report import build_report
    from trestle.lifecycle.cancel import cancel_tree

    with _found(store, run_id) as (st, run_id):
        done, below = cancel_tree(st, run_id, reason, by=_who())
    out = _out()
    for line in cancel_lines(run_id, reason, done, below):
        out.print(line, markup=False, soft_wrap=True)
    out.print(report_view(build_report(done.state)))


def cancel_lines(
    run_id: str, reason: str, done: Cancelled, below: list[tuple[str, Cancelled]]
) -> list[str]:
    """What a cancel says of the run and its children (before the report)."""
    if done.already:
        lines = [f"run {run_id} was already {done.state.cancelled}"]
    else:
        how = f" (its driver {done.by} stopped it)" if done.by else ""
        lines = [f"run {run_id} cancelled{how}: {reason}"]
    lines += [f"  NOT ENDED: {far}" for far in done.elsewhere]  # a dead driver's, elsewhere
    for child, child_done in below:
        what = "was already cancelled" if child_done.already else "cancelled"
        lines.append(f"  child run {child} {what}")
    return lines


def inbox_command(
    run_id: Annotated[str | None, typer.Option("--run", help="Only this run.")] = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Open approvals across runs, each as a handoff card, oldest first."""
    from trestle.cli.human import show_entry
    from trestle.core.card_groups import grouped
    from trestle.lifecycle.approvals import inbox

    unreadable: list[str] = []
    with _found(store, run_id) if run_id else _all_runs(store) as (st, run_id):
        cards = inbox(st, run_id=run_id, unreadable=unreadable)
        _warn_unreadable(unreadable)
        if as_json:
            _print_json([card.model_dump(mode="json") for card in cards])
            return
        out = _out()
        if not cards:
            out.print("inbox is empty")
        now = time.time()
        for entry in grouped(cards):
            show_entry(out, st, entry, now)


def _refuse_inside_a_step() -> None:
    # a step (or an agent's command) that calls the CLI must not approve its own actions
    if os.environ.get("TRESTLE_STEP_ID"):
        raise ConfigError("decisions cannot be made from inside a running step")


def approve(
    ref: ApprovalArg,
    similar: Annotated[
        bool,
        typer.Option(
            "--similar",
            help="Also approve similar actions for the rest of the run, and the similar "
            "ones waiting now (the card's group in `trestle inbox`).",
        ),
    ] = False,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            help="With --similar: the group id `trestle inbox` showed; refused if the "
            "group changed since, so the decision covers exactly what was shown.",
        ),
    ] = None,
    edit: Annotated[
        bool,
        typer.Option(
            "--edit",
            help="Edit the action (a step's, a tool call's arguments, or a plan under "
            "review) in $EDITOR, then approve the edit.",
        ),
    ] = False,
    edit_from: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="With --edit: take the edit from this YAML or JSON file ('-': standard "
            "input) instead of $EDITOR.",
        ),
    ] = None,
    reason: Annotated[str, typer.Option(help="Recorded with the decision.")] = "",
    top_up: Annotated[
        float | None, typer.Option(help="For a budget pause: how much to add.", min=0)
    ] = None,
    store: StoreOption = None,
) -> None:
    """Approve an action (or a budget top-up); the run goes on when resumed."""
    from trestle.cli.human import say_outcome, take_edit, tool_diff
    from trestle.core.card import build_card
    from trestle.lifecycle.approvals import find_approval, queue_decision, split_ref

    _refuse_inside_a_step()
    if edit_from is not None and not edit:
        raise ConfigError("--from gives the edit for --edit: pass both")
    run_part, nth = split_ref(ref)
    with _found(store, run_part) as (st, run_id):
        ref = f"{run_id}.{nth}"
        if edit:
            state, number = find_approval(st, ref)
            card = build_card(state, number)
            edited = take_edit(st, card, edit_from)
            queued = queue_decision(st, ref, "modify", edited=edited, reason=reason)
            _say_edited_call(card, edited, Path(state.workspace), tool_diff)
            _say_edited_plan(state, number, edited)
        else:
            queued = queue_decision(
                st, ref, "approve", similar=similar, reason=reason, top_up=top_up, group=group
            )
        what = f"approved {queued.ref}" + (" as edited" if edit else "")
        say_outcome(_out(), st, what, queued.run_id, queued.request_id, after=queued.after)


def _say_edited_call(
    card: HandoffCard,
    edited: dict[str, Any],
    workspace: Path,
    diff_of: Callable[[HandoffCard, Path], str | None],
) -> None:
    """For an edited tool call: what the workspace file would become, as a diff."""
    action = card.action
    if action is None or action.kind != "tool" or "arguments" not in edited:
        return
    as_edited = action.model_copy(update={"arguments": json.dumps(edited["arguments"])})
    diff = diff_of(card.model_copy(update={"action": as_edited}), workspace)
    if diff:
        _out().print(f"the edited call would change:\n{diff}", markup=False, soft_wrap=True)


def _say_edited_plan(state: RunState, number: int, edited: dict[str, Any]) -> None:
    """For an edited plan under review: the steps it drops and the steps it adds."""
    from trestle.lifecycle.approvals import modification

    if "plan" not in edited:
        return
    change = modification(state, state.approvals[number], edited).plan_edit
    if change is not None:
        dropped = ", ".join(change.dropped) or "nothing"
        added = ", ".join(s.id for s in change.added)
        _out().print(f"the plan as edited drops {dropped}; adds {added}", markup=False)


def reject(
    ref: ApprovalArg,
    reason: Annotated[str, typer.Option(help="Why (recorded and fed back to the proposer).")],
    store: StoreOption = None,
) -> None:
    """Reject an action: it does not run, and the reason is recorded."""
    from trestle.cli.human import say_outcome
    from trestle.lifecycle.approvals import queue_decision, split_ref

    _refuse_inside_a_step()
    run_part, nth = split_ref(ref)
    with _found(store, run_part) as (st, run_id):
        queued = queue_decision(st, f"{run_id}.{nth}", "reject", reason=reason)
        what = f"rejected {queued.ref}"
        say_outcome(_out(), st, what, queued.run_id, queued.request_id, after=queued.after)


feedback_app = typer.Typer(
    help="Decisions and their reasons, to improve agents and policies.", rich_markup_mode=None
)


@feedback_app.command("export")
def feedback_export(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here instead of stdout (-: stdout too)."),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Every human act as JSON Lines (approve, reject, modify, retry, skip, tell, cancel,
    budget, rewind): who, when, what was proposed, what was decided, and what happened
    next."""
    from trestle.lifecycle.feedback import feedback

    unreadable: list[str] = []
    with _opened(store) as st:
        lines = [json.dumps(row, default=str) + "\n" for row in feedback(st, unreadable)]
    _warn_unreadable(unreadable)
    if output is None:
        sys.stdout.writelines(lines)
    else:
        write_output(output, "".join(lines))
