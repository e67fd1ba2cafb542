"""Driving a run from the command line: ``run``, ``resume``, ``agent`` and ``demo``.

The drive prints progress (a live table on a terminal, a line per event otherwise),
asks about approvals when it waits for them on a terminal, prints the report however
it ends and exits with the report's code. On SIGINT, SIGTERM or SIGHUP it stops the
steps' processes, records the interruption (``RunInterrupted``), prints the report and
exits with ``128 + signal``. Only driving commands import this module (and the engine
behind it), so the commands that read stay quick to start.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.live import Live

from trestle.cli.console import _err, write_file
from trestle.cli.human import prompt_approvals
from trestle.cli.render import event_line, report_view, steps_table
from trestle.core.errors import LeaseHeldError, TrestleError
from trestle.core.events import SandboxChosen, StoredEvent
from trestle.core.outside_writes import outside_writes
from trestle.core.records.agent import AgentSettings
from trestle.core.report import Report, build_report
from trestle.core.safetext import model_json
from trestle.core.state import RunState
from trestle.engines.local import LocalEngine
from trestle.engines.stop import Stop
from trestle.engines.work import StepPerformer
from trestle.execution.sandbox import Mode
from trestle.lifecycle.runs import load_state
from trestle.store.base import Store
from trestle.store.location import (
    RecentStores,
    default_store,
    open_store,
    store_name,
    store_where,
)
from trestle.support import collector


@contextmanager
def opened_for_new_run(store: str | Path | None, workspace: Path | None) -> Iterator[Store]:
    """The store a new run is recorded in (``--store``, a path or URL, else
    :func:`~trestle.store.location.default_store`), created if need be and remembered,
    so the commands that take its RUN find it from anywhere; ``store_line`` says where."""
    where = store_where(store) if store is not None else default_store(workspace)
    opened = open_store(where)
    RecentStores().remember(where)
    try:
        yield opened
    finally:
        opened.close()


def store_line(store: Store) -> str:
    """Printed right after ``run <id>``: where the run is recorded (a file's absolute
    path, a database's URL without its password)."""
    return f"store {store_name(store)}"


def performer_for_run(store: Store, run_id: str) -> StepPerformer | None:
    """An agent run needs its model and tools again; a plan run needs nothing more."""
    settings = load_state(store, run_id).agent
    return None if settings is None else agent_performer(settings)


def agent_performer(settings: AgentSettings) -> StepPerformer:
    """The performer of an agent run (or a plan run's agent child) with these settings:
    its model and tools (the agent's runtime is imported only when a run needs it)."""
    from trestle.agent.runtime import performer_for

    return performer_for(settings)


def drive(
    store: Store,
    run_id: str,
    out: Console,
    report_json: Path | None,
    live: bool,
    prompt: bool,
    *,
    performer: StepPerformer | None = None,
    exit: bool = True,
    sandbox: Mode | None = None,
) -> int:
    """Drive the run; on a terminal, when it waits for approvals, ask and go on.

    Prints the report however the drive ends, and exits with its code, or
    (``exit=False``) returns the code. A signal (see the module docstring) stops the
    drive cleanly and always exits, with ``128 + signal``.
    """
    collector.set_aside_loaded()  # the command's modules are loaded; its work begins
    interactive = prompt and out.is_terminal and sys.stdin.isatty()
    engine = LocalEngine(store, performer=performer, performer_for=agent_performer, sandbox=sandbox)
    signalled: str | None = None
    with _Signals() as signals:
        try:
            while True:
                signalled = asyncio.run(_drive_once(engine, run_id, out, live))
                if signalled or not (interactive and prompt_approvals(store, run_id, out)):
                    break
        except KeyboardInterrupt:  # Ctrl-C outside the drive: at a prompt, say
            out.print()  # end the prompt's line: the report starts on its own
            signalled = "SIGINT"
        except _Interrupted as exc:
            signalled = exc.signal
        except TrestleError as exc:
            signals.raising = False
            driven = isinstance(exc, LeaseHeldError)  # refused: the report must not say resume
            _print_report_if_readable(store, run_id, out, report_json, driven_elsewhere=driven)
            raise
        finally:
            signals.raising = False  # from here on a signal waits for the report
            engine.close()
        report = build_report(engine.state(run_id))  # as the engine judges it: no forgeries
        # a run a signal stopped is listed as interrupted: its report says so too
        out.print(report_view(report, interrupted=(signalled or signals.caught) is not None))
        if report_json is not None:
            write_report(report_json, report)
        signalled = signalled or signals.caught
    if signalled is not None:
        _err().print(f"interrupted by {signalled}; continue with `trestle resume {run_id}`")
        raise typer.Exit(signal_exit_code(signalled))
    if exit:
        raise typer.Exit(report.exit_code)
    return report.exit_code


def _print_report_if_readable(
    store: Store,
    run_id: str,
    out: Console,
    report_json: Path | None,
    *,
    driven_elsewhere: bool = False,
) -> None:
    """The report of a drive that ended in an error, if the store still reads."""
    try:
        report = build_report(load_state(store, run_id), driven_elsewhere=driven_elsewhere)
    except Exception:  # the error itself is what the user needs to see
        return
    out.print(report_view(report))
    if report_json is not None:
        write_report(report_json, report)


def write_report(path: Path, report: Report) -> None:
    """``--report-json``'s file, written once the run has ended. One that cannot be
    written then (the disk filled) is said on stderr: the run's exit code stays the
    run's, and the report printed above is whole."""
    try:
        write_file(path, model_json(report, indent=2) + "\n")
    except OSError as exc:
        why = exc.strerror or str(exc)
        _err().print(f"error: --report-json {str(path)!r}: cannot write it: {why}", markup=False)


# a driving command turns these into a clean stop: processes stopped, interruption
# recorded, report printed, exit 128 + the signal's number
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def signal_exit_code(name: str) -> int:
    """The shell's convention: 128 + the signal's number (130 for SIGINT)."""
    return 128 + int(signal.Signals[name])


class _Interrupted(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.signal = name


class _Signals:
    """SIGTERM and SIGHUP outside the event loop: at an approval prompt they end the
    command like Ctrl-C does (``raising``); once the drive is over they only wait for
    the report to be printed, and the command then exits with their code."""

    def __init__(self) -> None:
        self.raising = True
        self.caught: str | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def _handle(self, signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        self.caught = self.caught or name
        if self.raising:
            raise _Interrupted(name)

    def __enter__(self) -> _Signals:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS[1:]}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


async def _drive_once(engine: LocalEngine, run_id: str, out: Console, live: bool) -> str | None:
    """One drive, stopped cleanly by a signal; returns the signal's name, if one came."""
    stop = Stop()
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.request, sig.name)
    try:
        if live and out.is_terminal:
            await _drive_live(engine, run_id, out, stop)
        else:
            await _drive_lines(engine, run_id, out, stop)
    finally:
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            if handler is not None:  # None: set outside Python; the default is left
                signal.signal(sig, handler)
    return stop.reason


def _warn_sandbox(stored: StoredEvent, store: Store) -> None:
    """Said on stderr at a drive's start: that commands run without a sandbox, or, in
    one, each write a step's command makes outside the workspace, which the sandbox
    discards or refuses (see :mod:`trestle.core.outside_writes`)."""
    event = stored.event
    if not isinstance(event, SandboxChosen):
        return
    if not event.confined:
        _err().print(
            f"WARNING: commands run {event.detail}. They can read and change anything "
            "you can, the approval key and the store included. Confirm-tier commands "
            "run only with --sandbox off.",
            markup=False,
        )
        return
    for exposed in event.exposed:
        _err().print(f"WARNING: {exposed}.", markup=False, soft_wrap=True)
    state = load_state(store, stored.run_id)
    for write in outside_writes(state.plan, state.workspace):
        _err().print(
            f"WARNING: {write.describe()}. Write it inside the workspace, or run with "
            "--sandbox off.",
            markup=False,
            soft_wrap=True,
        )


async def _drive_lines(engine: LocalEngine, run_id: str, out: Console, stop: Stop) -> None:
    def descendant(stored: StoredEvent) -> None:
        """A delegated run's line, indented under its place in the tree."""
        line = event_line(stored)
        if line is not None:
            place = stored.run_id.removeprefix(f"{run_id}.")
            first, *rest = line.splitlines()
            said = [f"  {place} | {first}", *(f"  {' ' * len(place)} | {r}" for r in rest)]
            out.print("\n".join(said), markup=False, soft_wrap=True)

    engine.descendant_events = descendant
    async for stored in engine.drive(run_id, stop=stop):
        _warn_sandbox(stored, engine.store)
        line = event_line(stored)
        if line is not None:
            out.print(line, markup=False, soft_wrap=True)


async def _drive_live(engine: LocalEngine, run_id: str, out: Console, stop: Stop) -> None:
    state: RunState | None = None
    with Live(console=out, refresh_per_second=8, transient=True) as view:
        async for stored in engine.drive(run_id, stop=stop):
            _warn_sandbox(stored, engine.store)
            if state is None:
                state = load_state(engine.store, run_id)
            else:
                state.apply(stored.event, stored.seq)
            view.update(steps_table(state))
