"""Commands that read what runs did: ``runs``, ``show``, ``log``, ``watch``, ``output``,
``dlq``, ``health``."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

# Typer keeps its own copy of click (pinned: pyproject.toml); the exceptions a usage
# error raises are only importable from it
from trestle.cli.console import (
    _err,
    _found,
    _opened,
    _out,
    _print_json,
    _warn_unreadable,
    write_recorded,
)
from trestle.cli.options import (
    JsonOption,
    RunArg,
    StepArg,
    StoreOption,
)


def runs(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """List runs, newest first."""
    from trestle.cli.listing import interrupted_notes, runs_table
    from trestle.lifecycle.driven import drivings

    with _opened(store) as st:
        rows = st.runs()
        driven = drivings(st, rows)
    if as_json:
        listed = []
        for row in rows:
            summary = row.summarised()
            judged = driven[row.run_id]
            tree = {"parent": summary.parent, "root": summary.root}
            listed.append(
                {**row.__dict__, "status": judged.status, "summary": summary.counts, **tree}
                | {"interrupted": summary.interrupted, "usage": summary.usage}
                | {"driver_lost": judged.lost}
            )
        _print_json(listed)
    else:
        out = _out()
        out.print(runs_table(rows, driven) if rows else "no runs yet")
        for note in interrupted_notes(rows, driven):
            out.print(note, soft_wrap=True, markup=False, highlight=False)


def show(run_id: RunArg, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """A run's state and report."""
    from trestle.cli.listing import interrupted_notes
    from trestle.core.report import build_report
    from trestle.lifecycle.approvals import trusted_state
    from trestle.lifecycle.driven import drivings
    from trestle.lifecycle.rewinding import unfinished_rewind_note
    from trestle.presentation.wording import clip, shown
    from trestle.store.base import subtree

    with _found(store, run_id) as (st, run_id):
        state = trusted_state(st, run_id)  # forged decisions left out, as the engine does
        below = subtree(st.runs(), run_id) if state.children else []
        row = st.run(run_id)
        # its report, and its children's rows, say running; nothing may drive them
        driven = drivings(st, [row, *(child for child, _ in below)])
        rewinding = unfinished_rewind_note(st, run_id, drop_done=False)
    report = build_report(state)
    # said as `runs` and `health` say it: a run nothing drives since its driver was
    # stopped or died is interrupted, and a step a dead driver left running is no more
    judged = driven[run_id]
    interrupted, driver_lost = judged.status == "interrupted", judged.lost
    if as_json:
        tree = {
            "parent": state.parent.model_dump(mode="json") if state.parent else None,
            "children": [
                {"run_id": r.run_id, "status": driven[r.run_id].status, "depth": d}
                for r, d in below
            ],
        }
        shown_status = {"status": "interrupted"} if interrupted else {}
        data = report.model_dump(mode="json") | shown_status
        _print_json({**data, "tree": tree, "driver_lost": driver_lost})
        return
    from trestle.cli.render import report_view, steps_table

    out = _out()
    if state.parent is not None:
        link = state.parent
        out.print(
            f"a child of run {link.parent} (its step {link.step!r}, round {link.round}): "
            f"{link.describe()}",
            markup=False,
            soft_wrap=True,
        )
    if state.finished is None:
        out.print(steps_table(state, lost=driver_lost))
    out.print(report_view(report, interrupted=interrupted, lost=driver_lost))
    if rewinding is not None:
        out.print(f"warning: {rewinding}", soft_wrap=True, markup=False, highlight=False)
    for note in interrupted_notes([row], driven) if driver_lost or judged.released else []:
        out.print(note, soft_wrap=True, markup=False, highlight=False)
    if below:
        out.print("children:")
        for child, depth in below:
            status = shown(driven[child.run_id].status)
            line = f"└ {child.run_id}  {status}  {clip(child.goal, 60)}"
            out.print("  " * depth + line, markup=False, soft_wrap=True)


def log(
    run_id: RunArg,
    store: StoreOption = None,
    as_json: JsonOption = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Print the events so far, then each new one as the run records it, one "
            "line each (JSON Lines with --json), until the run finishes or waits for a "
            "human; exit with the run's code. Also `trestle watch RUN`.",
        ),
    ] = False,
    history: Annotated[
        bool,
        typer.Option(
            "--history",
            help="For a run on Temporal: read the events from its workflow's history "
            "instead of the store (they are the same events).",
        ),
    ] = False,
) -> None:
    """The execution log: every event with step, attempt, time and outcome."""
    if follow:
        from trestle.cli.follow import follow_command

        follow_command(run_id, store, as_json)
    with _found(store, run_id) as (st, run_id):
        events = st.events(run_id)
        if history:
            from trestle.cli.temporal import events_from_history

            events = events_from_history(st, run_id)
    if as_json:
        _print_json([{"seq": e.seq, **e.event.model_dump(mode="json")} for e in events])
    else:
        from trestle.cli.render import log_table

        _out().print(log_table(events))


def watch(run_id: RunArg, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Follow a run live (the same as `trestle log RUN --follow`): the events so far,
    then each new one, until the run finishes or waits; exits with the run's code."""
    from trestle.cli.follow import follow_command

    follow_command(run_id, store, as_json)


def output(
    run_id: RunArg,
    step: StepArg,
    attempt: Annotated[
        int | None,
        typer.Option("--attempt", min=1, help="Which attempt (default: the last that ended)."),
    ] = None,
    store: StoreOption = None,
) -> None:
    """What a step's attempt printed (stdout and stderr together), exactly as recorded
    (a command's output is kept up to 8,000 characters; past that, its first and last
    4,000, with a line saying how much was cut between them); on a terminal, with the
    characters a terminal would act on shown as escapes."""
    from trestle.lifecycle.runs import attempt_ended

    with _found(store, run_id) as (st, run_id):
        ended = attempt_ended(st, run_id, step, attempt)
    text = ended.action.output
    if not text:
        _err().print(f"attempt {ended.attempt} of {step!r} printed nothing", markup=False)
    write_recorded(text)
    if text and sys.stdout.isatty() and not text.endswith("\n"):
        sys.stdout.write("\n")  # a prompt after it on a terminal; piped, it stays exact


def dlq(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Dead-lettered steps across runs: failed after their retries, or escalated."""
    from trestle.cli.render import attempt_output_lines
    from trestle.lifecycle.runs import dead_letters
    from trestle.presentation.descriptions import log_detail
    from trestle.presentation.wording import shown

    unreadable: list[str] = []
    with _opened(store) as st:
        entries = dead_letters(st, unreadable)
    _warn_unreadable(unreadable)  # the others are listed, as health and inbox do
    if as_json:
        _print_json([entry.model_dump(mode="json") for entry in entries])
        return
    out = _out()
    if not entries:
        out.print("dead-letter queue is empty")
    for entry in entries:
        out.print(
            f"{entry.run_id} {entry.step} {shown(entry.status)}: {entry.reason}",
            markup=False,
            soft_wrap=True,
        )
        for item in entry.history:
            line = f"    #{item.seq} {item.event.kind} {log_detail(item.event)}"
            out.print(line, markup=False, soft_wrap=True)
            for more in attempt_output_lines(item, "        "):
                out.print(more, markup=False, soft_wrap=True)
        out.print(
            f"    resolve: trestle retry {entry.run_id} {entry.step}  |  "
            f"trestle skip {entry.run_id} {entry.step} --reason ...",
            markup=False,
            soft_wrap=True,
        )


def health(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Runs not finished: driver and heartbeat, running and stalled steps, budget use,
    alerts, and what waits for a human; and notification targets that fail. Exits 1
    when any run has a stalled step or waits for a human (a dead letter, an escalation,
    an approval or a pause), or a notification could not be delivered."""
    from trestle.cli.render import health_view
    from trestle.lifecycle.lease import DEFAULT_LEASE_TTL
    from trestle.notifications.ledger import trouble_text, troubles_if_any
    from trestle.operations.health import health as run_health_all

    unreadable: list[str] = []
    with _opened(store) as st:
        runs = run_health_all(
            st, now=time.time(), lease_ttl=DEFAULT_LEASE_TTL, unreadable=unreadable
        )
    _warn_unreadable(unreadable)
    if as_json:
        _print_json([r.model_dump(mode="json") for r in runs])
    else:
        out = _out()
        if not runs:
            out.print("no active runs")
        for r in runs:
            out.print(health_view(r), soft_wrap=True)
    # the operator's notifications, from their ledger: told on stderr beside --json,
    # whose output stays the list of runs
    failing = troubles_if_any()
    for t in failing:
        line = trouble_text(t)
        if as_json:
            sys.stderr.write(f"trestle: {line}\n")
        else:
            _out().print(line, style="red", markup=False, soft_wrap=True)
    if any(r.troubled for r in runs) or failing:
        raise typer.Exit(1)
