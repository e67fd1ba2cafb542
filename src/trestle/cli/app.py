"""The ``trestle`` command line: a thin sync edge over the engine and the store.

Exit codes: 0 all required steps done; 1 finished with failures (partial completion);
2 bad input (plan file, config, arguments, unknown run or step); 3 waiting on a human
(an approval, an escalation or a dead letter); 4 the store cannot be used; 5 another
process drives the run; 6 stopped (budget or monitor; a hard budget limit can be raised
with ``trestle budget RUN --add``, then resumed); 7 cancelled (``trestle cancel``:
the run's driver exits so, and so does a later ``resume``); 8 no store where the command
looked (commands that read never create one); 9 a policy file a step could have written
is new or changed since a human accepted it (``trestle policy accept``: nothing ran);
128 + the signal's number when a signal
interrupted the driver: 130 SIGINT (Ctrl-C), 143 SIGTERM, 129 SIGHUP.

Which store a command opens, and how a RUN is found: see :mod:`trestle.cli.stores`.

A driving command (``run``, ``resume``, ``agent``) prints the report however it ends;
how it drives and stops on a signal: :mod:`trestle.cli.drive`.

A command imports what it uses in its own body: this module is loaded by every
command, ``--help`` included, and the engine, the event types, the agent and the
monitors cost about half a second to import, which a command that lists runs or
prints help should not pay (``bench/startup.py`` measures it).
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

# Typer keeps its own copy of click (pinned: pyproject.toml); the exceptions a usage
# error raises are only importable from it
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from trestle.cli.stores import reading_store, store_with_run
from trestle.cli.streams import guard_standard_streams
from trestle.core.errors import ConfigError, StoreError, TrestleError

if TYPE_CHECKING:
    from rich.console import Console

    from trestle.core.events import EngineBinding
    from trestle.store import SqliteStore, Store

EXIT_CODES_HELP = (
    "Exit codes: 0 done; 1 finished with failures; 2 bad input; 3 waiting on a human; "
    "4 the store cannot be used; 5 another process drives the run; 6 stopped (budget or "
    "monitor); 7 cancelled (trestle cancel); 8 no store found (nothing is created); "
    "9 the policy file is not accepted (trestle policy accept; nothing ran); "
    "128+N interrupted by signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP), after the report."
)

app = typer.Typer(
    name="trestle",
    help="Run multi-step plans durably: verified steps, retries, crash-safe resume.\n\n"
    + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: "[default: ...]" is text, not a markup tag
)

StoreOption = Annotated[
    Path | None,
    typer.Option(
        "--store",
        help="SQLite store file [default: $TRESTLE_STORE; else a new run's is "
        ".trestle/trestle.db in its workspace, and other commands use the nearest "
        ".trestle/trestle.db from here upward, or for a RUN a store used recently]",
    ),
]
SandboxOption = Annotated[
    str | None,
    typer.Option(
        "--sandbox",
        metavar="auto|require|off",
        help="Confine commands with bubblewrap: auto (where it works; without it, "
        "confirm-tier commands are refused), require, or off (run unconfined) "
        "[default: $TRESTLE_SANDBOX, else auto].",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
ReportJson = Annotated[
    Path | None, typer.Option("--report-json", help="Also write the final report here.")
]
EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help="local (this process drives the run) or temporal (workers on a Temporal "
        "task queue drive it; needs the temporal extra).",
    ),
]
AddressOption = Annotated[
    str,
    typer.Option(
        "--address",
        envvar="TRESTLE_TEMPORAL_ADDRESS",
        help="The Temporal service, HOST:PORT.",
    ),
]
NamespaceOption = Annotated[str, typer.Option("--namespace", help="The Temporal namespace.")]
TaskQueueOption = Annotated[
    str, typer.Option("--task-queue", help="The Temporal task queue workers serve.")
]
PromptOption = Annotated[
    bool,
    typer.Option(help="On a terminal, ask about approvals when the run waits for them."),
]
LiveOption = Annotated[bool, typer.Option(help="Live table on a terminal.")]
PolicyOption = Annotated[
    Path | None,
    typer.Option(help="Operator policy file [default: the nearest trestle.toml]."),
]
AcceptPolicyOption = Annotated[
    str | None,
    typer.Option(
        "--accept-policy",
        metavar="SHA256",
        help="Accept the policy file first if its SHA-256 is this (`sha256sum "
        "trestle.toml`); a file in the workspace is obeyed only once accepted.",
    ),
]
RunArg = Annotated[
    str, typer.Argument(metavar="RUN", help="Run id (from `trestle runs`) or a unique tail of it.")
]
ApprovalArg = Annotated[
    str, typer.Argument(metavar="APPROVAL", help="RUN.N from `trestle inbox` (or its tail).")
]
StepArg = Annotated[str, typer.Argument(metavar="STEP", help="Step id within the run.")]


PIPED_WIDTH = 100_000  # off a terminal nothing is wrapped or cut: a line stays a line


def _console(*, stderr: bool) -> Console:
    """On a terminal, Rich fits the window. Piped or redirected, lines are never
    wrapped and tables take the width of what they hold, so run ids, paths and the
    commands a message suggests stay whole and can be copied or grepped. Either way,
    control characters in what is printed are shown, not obeyed (:func:`_shown_console`)."""
    shown = _shown_console()
    console = shown(stderr=stderr, highlight=False)
    if console.is_terminal:
        return console
    return shown(stderr=stderr, highlight=False, soft_wrap=True, width=PIPED_WIDTH)


@functools.cache
def _shown_console() -> type[Console]:
    """A console that prints every character a terminal would act on (an escape
    sequence in a step's output, a model's text or a command awaiting approval) as an
    escape (:func:`trestle.presentation.wording.visible`), before the layout is measured, so a
    table wraps the escape rather than cutting what follows it."""
    from rich.console import Console, ConsoleOptions, RenderableType
    from rich.segment import Segment
    from rich.style import Style
    from rich.text import Text

    from trestle.presentation.wording import visible

    class ShownConsole(Console):
        def render_str(self, text: str, **kwargs: Any) -> Text:
            return super().render_str(visible(text), **kwargs)

        def render(
            self, renderable: RenderableType, options: ConsoleOptions | None = None
        ) -> Iterator[Segment]:
            if isinstance(renderable, Text) and visible(renderable.plain) != renderable.plain:
                # the escapes shift every character after them: the text keeps its
                # overall style and loses the spans inside it
                style: str | Style = renderable.style
                renderable = Text(visible(renderable.plain), style=style)
            yield from super().render(renderable, options)

    return ShownConsole


def _out() -> Console:
    return _console(stderr=False)


def _err() -> Console:
    return _console(stderr=True)


@contextmanager
def _opened(store_path: Path | None) -> Iterator[SqliteStore]:
    """The store a command that reads uses; it is never created (exit 7 if missing)."""
    from trestle.store import SqliteStore

    store = SqliteStore(reading_store(store_path), create=False)
    try:
        yield store
    finally:
        store.close()


_found = store_with_run  # the store holding a RUN (its id or a unique tail) and its id


@contextmanager
def _all_runs(store_path: Path | None) -> Iterator[tuple[SqliteStore, None]]:
    with _opened(store_path) as store:
        yield store, None


def _version(value: bool) -> None:
    if value:
        from trestle import __version__

        _out().print(f"trestle {__version__}", markup=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Run multi-step plans durably: verified steps, retries, crash-safe resume."""


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@app.command()
def run(
    plan_file: Annotated[Path, typer.Argument(metavar="PLAN", help="The plan file (YAML).")],
    workspace: Annotated[
        Path | None,
        typer.Option("--workspace", "-w", help="Run here instead of the plan's workspace."),
    ] = None,
    store: StoreOption = None,
    report_json: ReportJson = None,
    live: LiveOption = True,
    prompt: PromptOption = True,
    policy: PolicyOption = None,
    accept_policy: AcceptPolicyOption = None,
    sandbox: SandboxOption = None,
    engine: EngineOption = "local",
    address: AddressOption = "127.0.0.1:7233",
    namespace: NamespaceOption = "default",
    task_queue: TaskQueueOption = "trestle",
) -> None:
    """Validate a plan, show it, run it, and report. Prints the run id first."""
    from trestle.cli.drive import drive, opened_for_new_run, store_line
    from trestle.cli.render import plan_overview
    from trestle.execution.sandbox import mode_from
    from trestle.formats.planfile import load_plan, plan_workspace
    from trestle.lifecycle.runs import create_run
    from trestle.trust.policy_trust import trusted_settings

    mode = mode_from(sandbox)
    plan = load_plan(plan_file)
    if workspace is None:
        ws = plan_workspace(plan, plan_file)
    elif workspace.is_dir():
        ws = workspace
    else:
        raise typer.BadParameter(f"{str(workspace)!r} is not a directory", param_hint="-w")
    operator = trusted_settings(ws, policy, accept_sha256=accept_policy)
    bound = engine_binding(engine, address, namespace, task_queue)
    out = _out()
    with opened_for_new_run(store, ws) as st:
        run_id = create_run(
            st,
            plan,
            workspace=ws,
            plan_path=plan_file,
            operator_policy=operator.policy,
            policy_source=operator.source,
            monitors=operator.monitors,
            engine=bound,
        )
        out.print(f"run {run_id}")
        out.print(store_line(st), markup=False, soft_wrap=True)
        out.print(f"policy: {operator.source.describe()}", markup=False, soft_wrap=True)
        out.print(plan_overview(plan, str(plan_file)))
        if bound is not None:
            from trestle.cli.temporal import start_and_follow

            start_and_follow(st, run_id, bound, out, report_json)
        drive(st, run_id, out, report_json, live, prompt, sandbox=mode)


def engine_binding(
    engine: str, address: str, namespace: str, task_queue: str
) -> EngineBinding | None:
    """None for the local engine; the run's binding to its workflow for Temporal."""
    if engine == "local":
        return None
    if engine != "temporal":
        raise typer.BadParameter(f"{engine!r}: choose local or temporal", param_hint="--engine")
    from trestle.cli.temporal import binding, require_temporal

    require_temporal()
    return binding(address, namespace, task_queue)


@app.command()
def worker(
    engine: EngineOption = "temporal",
    address: AddressOption = "127.0.0.1:7233",
    namespace: NamespaceOption = "default",
    task_queue: TaskQueueOption = "trestle",
    store: StoreOption = None,
    max_attempts: Annotated[
        int, typer.Option("--max-attempts", min=1, help="Step attempts this worker runs at once.")
    ] = 16,
) -> None:
    """Serve a Temporal task queue: drive the runs started there, perform their steps.
    Stops on Ctrl-C or SIGTERM (an attempt it was running is probed, then re-run or
    escalated, by the worker that takes the run next)."""
    from trestle.cli.drive import opened_for_new_run
    from trestle.cli.temporal import worker as serve_queue

    bound = engine_binding(engine, address, namespace, task_queue)
    if bound is None:
        raise typer.BadParameter(
            "a worker serves Temporal: --engine temporal", param_hint="--engine"
        )
    from trestle.cli.stores import chosen_store, reading_store

    # a store named is created if need be; otherwise the nearest one, never a new one
    # wherever the worker happens to start
    with opened_for_new_run(chosen_store(store) or reading_store(None), None) as st:
        serve_queue(st, bound, _out(), max_attempts)


@app.command()
def resume(
    run_id: RunArg,
    store: StoreOption = None,
    report_json: ReportJson = None,
    live: LiveOption = True,
    prompt: PromptOption = True,
    sandbox: SandboxOption = None,
) -> None:
    """Continue a run: after a crash, an approval, or a retry/skip decision."""
    from trestle.cli.drive import drive, performer_for_run
    from trestle.execution.sandbox import mode_from

    mode = mode_from(sandbox)
    out = _out()
    with _found(store, run_id) as (st, run_id):
        out.print(f"run {run_id}")
        from trestle.lifecycle.doorbell import bound_engine

        bound = bound_engine(st, run_id)
        if bound is not None:  # its workflow drives it: wake it (or start it) and follow
            from trestle.cli.temporal import require_temporal, start_and_follow

            require_temporal()
            start_and_follow(st, run_id, bound, out, report_json)
        performer = performer_for_run(st, run_id)
        drive(st, run_id, out, report_json, live, prompt, performer=performer, sandbox=mode)


@app.command()
def runs(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """List runs, newest first."""
    from trestle.cli.listing import runs_table

    with _opened(store) as st:
        rows = st.runs()
    if as_json:
        listed = []
        for row in rows:
            summary = row.summarised()
            tree = {"parent": summary.parent, "root": summary.root}
            listed.append({**row.__dict__, "summary": summary.counts, **tree})
        _print_json(listed)
    else:
        _out().print(runs_table(rows) if rows else "no runs yet")


@app.command()
def show(run_id: RunArg, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """A run's state and report."""
    from trestle.cli.render import report_view, steps_table
    from trestle.core.report import build_report
    from trestle.lifecycle.approvals import trusted_state
    from trestle.presentation.wording import clip, shown
    from trestle.store.base import subtree

    with _found(store, run_id) as (st, run_id):
        state = trusted_state(st, run_id)  # forged decisions left out, as the engine does
        below = subtree(st.runs(), run_id) if state.children else []
    report = build_report(state)
    if as_json:
        tree = {
            "parent": state.parent.model_dump(mode="json") if state.parent else None,
            "children": [{"run_id": r.run_id, "status": r.status, "depth": d} for r, d in below],
        }
        _print_json({**report.model_dump(mode="json"), "tree": tree})
        return
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
        out.print(steps_table(state))
    out.print(report_view(report))
    if below:
        out.print("children:")
        for row, depth in below:
            line = f"└ {row.run_id}  {shown(row.status)}  {clip(row.goal, 60)}"
            out.print("  " * depth + line, markup=False, soft_wrap=True)


@app.command()
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
    from trestle.cli.render import log_table

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
        _out().print(log_table(events))


@app.command()
def watch(run_id: RunArg, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Follow a run live (the same as `trestle log RUN --follow`): the events so far,
    then each new one, until the run finishes or waits; exits with the run's code."""
    from trestle.cli.follow import follow_command

    follow_command(run_id, store, as_json)


@app.command(short_help="What a step's attempt printed, exactly as recorded.")
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
    4,000, with a line saying how much was cut between them)."""
    from trestle.lifecycle.runs import attempt_ended

    with _found(store, run_id) as (st, run_id):
        ended = attempt_ended(st, run_id, step, attempt)
    text = ended.action.output
    if not text:
        _err().print(f"attempt {ended.attempt} of {step!r} printed nothing", markup=False)
    sys.stdout.write(text)
    if text and sys.stdout.isatty() and not text.endswith("\n"):
        sys.stdout.write("\n")  # a prompt after it on a terminal; piped, it stays exact


@app.command()
def dlq(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Dead-lettered steps across runs: failed after their retries, or escalated."""
    from trestle.cli.render import attempt_output_lines
    from trestle.lifecycle.runs import dead_letters
    from trestle.presentation.descriptions import log_detail
    from trestle.presentation.wording import shown

    with _opened(store) as st:
        entries = dead_letters(st)
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


@app.command()
def health(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Runs not finished: driver and heartbeat, running and stalled steps, budget use,
    alerts, and what waits for a human. Exits 1 when any run has a stalled step or
    waits for a human (a dead letter, an escalation, an approval or a pause)."""
    from trestle.cli.render import health_view
    from trestle.lifecycle.lease import DEFAULT_LEASE_TTL
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
    if any(r.troubled for r in runs):
        raise typer.Exit(1)


@app.command()
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


@app.command()
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


@app.command()
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
    if done.already:
        out.print(f"run {run_id} was already {done.state.cancelled}", markup=False)
    else:
        how = f" (its driver {done.by} stopped it)" if done.by else ""
        out.print(f"run {run_id} cancelled{how}: {reason}", markup=False, soft_wrap=True)
    for child, child_done in below:
        what = "was already cancelled" if child_done.already else "cancelled"
        out.print(f"  child run {child} {what}", markup=False, soft_wrap=True)
    out.print(report_view(build_report(done.state)))


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "user"


@app.command(name="inbox")
def inbox_command(
    run_id: Annotated[str | None, typer.Option("--run", help="Only this run.")] = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Open approvals across runs, each as a handoff card, oldest first."""
    from trestle.cli.human import show_card
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
        for card in cards:
            show_card(out, st, card)
            out.print(
                f"decide: trestle approve {card.ref}  |  trestle reject {card.ref} --reason ...\n",
                markup=False,
                soft_wrap=True,
            )


def _refuse_inside_a_step() -> None:
    # a step (or an agent's command) that calls the CLI must not approve its own actions
    if os.environ.get("TRESTLE_STEP_ID"):
        raise ConfigError("decisions cannot be made from inside a running step")


@app.command()
def approve(
    ref: ApprovalArg,
    similar: Annotated[
        bool,
        typer.Option("--similar", help="Also approve similar actions for the rest of the run."),
    ] = False,
    edit: Annotated[
        bool, typer.Option("--edit", help="Edit the action in $EDITOR, then approve the edit.")
    ] = False,
    reason: Annotated[str, typer.Option(help="Recorded with the decision.")] = "",
    top_up: Annotated[
        float | None, typer.Option(help="For a budget pause: how much to add.", min=0)
    ] = None,
    store: StoreOption = None,
) -> None:
    """Approve an action (or a budget top-up); the run goes on when resumed."""
    from trestle.cli.human import edit_in_editor, say_outcome
    from trestle.core.card import build_card
    from trestle.lifecycle.approvals import find_approval, queue_decision, split_ref

    _refuse_inside_a_step()
    run_part, nth = split_ref(ref)
    with _found(store, run_part) as (st, run_id):
        ref = f"{run_id}.{nth}"
        if edit:
            state, number = find_approval(st, ref)
            edited = edit_in_editor(build_card(state, number))
            queued = queue_decision(st, ref, "modify", edited=edited, reason=reason)
        else:
            queued = queue_decision(
                st, ref, "approve", similar=similar, reason=reason, top_up=top_up
            )
        what = f"approved {queued.ref}" + (" as edited" if edit else "")
        say_outcome(_out(), st, what, queued.run_id, queued.request_id, after=queued.after)


@app.command()
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
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("export")
def feedback_export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Every decided approval as JSON Lines: action, tier, rule, decision, reason."""
    from trestle.lifecycle.approvals import feedback

    unreadable: list[str] = []
    with _opened(store) as st:
        lines = [json.dumps(row, default=str) + "\n" for row in feedback(st, unreadable)]
    _warn_unreadable(unreadable)
    if output is None:
        sys.stdout.writelines(lines)
    else:
        output.write_text("".join(lines), encoding="utf-8")


def _warn_unreadable(problems: list[str]) -> None:
    """Listings across runs go on past a run they cannot read, and say so on stderr."""
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)


def _shadow(store: Store) -> Path:
    from trestle.workspace.shadow import shadow_dir_for

    shadow_dir = shadow_dir_for(store)
    if shadow_dir is None or not shadow_dir.exists():
        raise ConfigError("this store has no workspace checkpoints yet")
    return shadow_dir


@app.command(name="checkpoints")
def checkpoints_command(
    run_id: RunArg, store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """Workspace checkpoints a run took, oldest first."""
    from trestle.lifecycle.checkpoints import checkpoints, shadow_repo
    from trestle.lifecycle.runs import load_state

    with _found(store, run_id) as (st, run_id):
        state = load_state(st, run_id)
        found = checkpoints(shadow_repo(state, _shadow(st), st), state, st)
    if as_json:
        _print_json([c.__dict__ for c in found])
        return
    out = _out()
    if not found:
        out.print(f"run {run_id} has no checkpoints")
    for c in found:
        stamp = time.strftime("%H:%M:%S", time.localtime(c.taken_at))
        out.print(
            f"{stamp}  {c.step} attempt {c.attempt} {c.when:<6} {c.commit[:12]}", markup=False
        )


@app.command(name="rewind")
def rewind_command(
    run_id: RunArg,
    to: Annotated[str, typer.Option("--to", metavar="STEP", help="Restore to before this step.")],
    store: StoreOption = None,
) -> None:
    """Put the workspace back to before STEP and reopen what that undid; then resume."""
    from trestle.lifecycle.checkpoints import rewind
    from trestle.lifecycle.lease import this_process
    from trestle.lifecycle.runs import load_state

    with _found(store, run_id) as (st, run_id):
        load_state(st, run_id)
        done = rewind(st, run_id, to, shadow_dir=_shadow(st), owner=this_process())
    out = _out()
    out.print(
        f"workspace restored to before {to!r} (attempt {done.checkpoint.attempt}): "
        f"{len(done.result.restored)} file(s) restored, {len(done.result.recreated)} "
        f"recreated, {len(done.result.deleted)} deleted",
        markup=False,
        soft_wrap=True,
    )
    out.print(f"reopened: {', '.join(done.reopened)}", markup=False, soft_wrap=True)
    out.print(f"the workspace as it was is kept as snapshot {done.safety[:12]}", markup=False)
    out.print(f"continue with `trestle resume {run_id}`", markup=False)


@app.command(name="diff")
def diff_command(run_id: RunArg, step: StepArg, store: StoreOption = None) -> None:
    """What a step changed in the workspace (its latest attempt's checkpoints)."""
    from trestle.lifecycle.checkpoints import shadow_repo, step_diff
    from trestle.lifecycle.runs import load_state

    with _found(store, run_id) as (st, run_id):
        state = load_state(st, run_id)
        done = step_diff(shadow_repo(state, _shadow(st), st), state, st, step)
    text = done.text
    if not done.finished:
        _err().print(f"no checkpoint after {step!r}: showing it against the workspace now")
    sys.stdout.write(text if text else "no changes\n")


@app.command()
def doctor(
    store: StoreOption = None,
    as_json: JsonOption = False,
    salvage_to: Annotated[
        Path | None,
        typer.Option(
            "--salvage", metavar="OUT", help="Copy every intact run into a new store here."
        ),
    ] = None,
) -> None:
    """Check a store: file, pages, schema, and every run's events, snapshot and listing
    row; say what is wrong and what can be recovered. Exits 0 healthy, 4 damaged."""
    from trestle.operations.doctor import diagnose, diagnosis_lines, salvage

    path = reading_store(store)
    found = diagnose(path, now=time.time())
    copied = None if salvage_to is None else salvage(path, salvage_to, now=time.time())
    if as_json:
        _print_json({**found.model_dump(mode="json"), "salvaged": copied})
    else:
        out = _out()
        for line in diagnosis_lines(found):
            out.print(line, markup=False, soft_wrap=True)
        if salvage_to is not None and copied is not None:
            out.print(f"salvaged {len(copied)} run(s) into {salvage_to}", markup=False)
    raise typer.Exit(0 if found.healthy else StoreError.exit_code)


@app.command()
def plan(
    plan_file: Annotated[Path, typer.Argument(metavar="PLAN", help="The plan file (YAML).")],
) -> None:
    """Validate a plan and show its order, parallel waves and critical path."""
    from trestle.cli.render import plan_overview
    from trestle.formats.planfile import load_plan

    _out().print(plan_overview(load_plan(plan_file), str(plan_file)))


@app.command()
def schema() -> None:
    """Print the plan file's JSON Schema."""
    from trestle.formats.planfile import plan_json_schema

    _print_json(plan_json_schema())


from trestle.cli import agent as _agent_commands  # noqa: E402, F401  (registers them)
from trestle.cli import budget as _budget_command  # noqa: E402, F401
from trestle.cli import groups as _group_commands  # noqa: E402, F401
from trestle.cli import monitors as _monitor_commands  # noqa: E402, F401
from trestle.cli import policy as _policy_commands  # noqa: E402, F401
from trestle.cli import prune as _prune_command  # noqa: E402, F401
from trestle.cli import ui as _ui_command  # noqa: E402, F401


def _refuse_undecodable_arguments(args: list[str]) -> None:
    """Bytes that are not UTF-8 reach Python as lone surrogates, which no record, store
    or report can hold: refused at the edge, naming the argument, before anything runs."""
    for n, arg in enumerate(args, start=1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ConfigError(
                f"argument {n} ({arg!r}) holds bytes that are not UTF-8 (at character "
                f"{exc.start + 1}); give text in UTF-8"
            ) from None


# Temporal's core SDK, once loaded, can abort the interpreter while it finalises
# ("PyGILState_Release: thread state ... must be current"), which turns any exit code,
# a refusal's 2 included, into SIGABRT.
TEMPORAL_CORE = "temporalio.bridge.temporal_sdk_bridge"


def entry() -> None:
    """The ``trestle`` command: :func:`main`, then out. A process that loaded
    Temporal's core leaves without finalising the interpreter (nothing of Trestle's
    waits for that), its output flushed first, so its exit code is the one it chose."""
    try:
        main()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    if TEMPORAL_CORE not in sys.modules:
        sys.exit(code)  # type: ignore[arg-type]
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # a reader gone, or the stream closed
            stream.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


def main() -> None:
    """Entry point: every error is one ``error:`` line on stderr, then its exit code.

    A usage error (a missing argument, an unknown option, a bad value) adds the usage
    line and exits 2; Trestle's own errors exit with their code (module docstring);
    ``typer.Exit`` codes pass through. A reader that closes the output early (``| head``)
    does not stop a run: see :mod:`trestle.cli.streams`.
    """
    guard_standard_streams()
    try:
        _refuse_undecodable_arguments(sys.argv[1:])
        code = app(prog_name="trestle", standalone_mode=False)
    except NoArgsIsHelpError as exc:  # `trestle` alone: the help, as Typer prints it
        exc.show()
        sys.exit(exc.exit_code)
    except UsageError as exc:
        _err().print(f"error: {exc.format_message()}", markup=False, soft_wrap=True)
        if exc.ctx is not None:
            usage = exc.ctx.get_usage().removeprefix("Usage: ")
            more = f"{exc.ctx.command_path} --help"
            _err().print(f"usage: {usage} (more: `{more}`)", markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except ClickException as exc:  # a file option that cannot be opened, say
        _err().print(f"error: {exc.format_message()}", markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Abort:  # Ctrl-C or end of input at a prompt
        _err().print("error: aborted", markup=False)
        sys.exit(1)
    except TrestleError as exc:
        _err().print(f"error: {exc}", markup=False)
        sys.exit(exc.exit_code)
    except sqlite3.Error as exc:  # the store names its failures; this is the backstop
        _err().print(f"error: the store failed: {exc}", markup=False)
        sys.exit(StoreError.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
