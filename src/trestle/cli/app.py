"""The ``trestle`` command line: a thin sync edge over the engine and the store.

Exit codes: 0 all required steps done; 1 finished with failures (partial completion);
2 bad input (plan file, config, arguments, unknown run or step); 3 waiting on a human
(an approval, an escalation or a dead letter); 4 the store cannot be used; 5 another
process drives the run; 6 stopped (budget or monitor; a hard budget limit can be raised
with ``trestle budget RUN --add``, then resumed); 7 cancelled (``trestle cancel``:
the run's driver exits so, and so does a later ``resume``); 8 no store where the command
looked (commands that read never create one); 9 a policy file a step could have written
is new or changed since a human accepted it (``trestle policy accept``: nothing ran; and
``policy accept`` answered no); 11 a rewind not confirmed; 12 on Temporal, Temporal
closed the run's workflow before the run ended; 128 + the signal's number when
a signal interrupted the driver: 130 SIGINT (Ctrl-C), 143 SIGTERM, 129 SIGHUP; 130 too
for Ctrl-C at any question a command asks (nothing is changed).

Which store a command opens, and how a RUN is found: see :mod:`trestle.cli.stores`.

A driving command (``run``, ``resume``, ``agent``) prints the report however it ends;
how it drives and stops on a signal: :mod:`trestle.cli.drive`.

The commands live in modules by concern (:mod:`.running`, :mod:`.reading`,
:mod:`.decisions`, :mod:`.checkpoints`, :mod:`.blame`, :mod:`.doctor`, :mod:`.plans`,
:mod:`.agent`, :mod:`.export`, :mod:`.budget`, :mod:`.groups`, :mod:`.monitors`,
:mod:`.policy`, :mod:`.prune`, :mod:`.ui`, :mod:`.people`, :mod:`.mcp_command`), with
the options they share in :mod:`.options` and the console and store helpers in
:mod:`.console`; none imports this module, which registers each command in the order
``--help`` lists them.

A command imports what it uses in its own body: this module is loaded by every
command, ``--help`` included, and the engine, the event types, the agent and the
monitors cost about half a second to import, which a command that lists runs or
prints help should not pay (``bench/startup.py`` measures it).
"""

from __future__ import annotations

import copy
import errno
import os
import signal
import sqlite3
import sys
from contextlib import suppress
from typing import Annotated

import typer

# Typer keeps its own copy of click (pinned: pyproject.toml); the exceptions a usage
# error raises are only importable from it
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.main import get_command_name
from typer.models import CommandInfo

from trestle.cli import (
    agent,
    blame,
    budget,
    checkpoints,
    decisions,
    doctor,
    export,
    groups,
    mcp_command,
    monitors,
    notify,
    people,
    plans,
    policy,
    prune,
    reading,
    running,
    ui,
)
from trestle.cli.console import _err, _out
from trestle.cli.options import EXIT_CODES_HELP
from trestle.cli.streams import guard_standard_streams
from trestle.core.errors import ConfigError, StoreError, TrestleError
from trestle.support.home import HomeUnknown

app = typer.Typer(
    name="trestle",
    help="Run multi-step plans durably: verified steps, retries, crash-safe resume.\n\n"
    + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: "[default: ...]" is text, not a markup tag
)


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


app.command()(running.run)
app.command()(running.worker)
app.command()(running.resume)
app.command()(reading.runs)
app.command()(reading.show)
app.command()(reading.log)
app.command()(reading.watch)
app.command(short_help="What a step's attempt printed, exactly as recorded.")(reading.output)
app.command()(reading.dlq)
app.command()(reading.health)
app.command()(decisions.retry)
app.command()(decisions.skip)
app.command()(decisions.cancel)
app.command(name="inbox")(decisions.inbox_command)
app.command()(decisions.approve)
app.command()(decisions.reject)
app.add_typer(decisions.feedback_app, name="feedback")
app.command(name="checkpoints")(checkpoints.checkpoints_command)
app.command(name="rewind")(checkpoints.rewind_command)
app.command(name="diff")(checkpoints.diff_command)
app.command()(blame.blame)
app.command()(doctor.doctor)
app.command()(plans.plan)
app.command()(plans.schema)

app.command()(agent.agent)
app.command()(agent.tell)
app.command()(agent.trajectory)
app.command()(export.export)
app.command()(agent.demo)
app.command(name="budget")(budget.budget_command)
app.command()(groups.board)
app.command()(groups.mail)
app.command(name="prune")(prune.prune_command)
app.command(name="ui")(ui.ui_command)
app.add_typer(people.people_app, name="people")
app.add_typer(mcp_command.mcp_app, name="mcp")
app.add_typer(monitors.monitors_app, name="monitors")
app.add_typer(notify.notify_app, name="notify")
app.add_typer(policy.policy_app, name="policy")


# what the root alone answers: its help (``trestle`` alone prints it too) or the version
LISTING_ONLY: tuple[list[str], ...] = ([], ["--help"], ["--version"])


def _named(args: list[str]) -> typer.Typer:
    """The app with only the command ``args`` name registered, when it names one.

    Typer turns every registered command's signature into options before it parses
    anything: about 80 ms for all of them, in every process. A command's own parsing,
    help and errors need only that command, so the others are left out. The root's help
    and version list the commands without parsing for any (:func:`_listed`). Anything
    else (another root option, a name that is no command, whose error names the close
    ones) gets the whole app."""
    if args in LISTING_ONLY:
        return _listed(app)
    name = args[0] if args else ""
    commands = [
        info
        for info in app.registered_commands
        if name == (info.name or get_command_name(getattr(info.callback, "__name__", "")))
    ]
    groups = [info for info in app.registered_groups if name == info.name]
    if not (commands or groups):
        return app
    named = copy.copy(app)
    named.registered_commands, named.registered_groups = commands, groups
    return named


def _listed(typer_app: typer.Typer) -> typer.Typer:
    """``typer_app`` with every command (its groups' too) standing in for itself with
    no options: the same name, help and flags, as a listing of commands shows them,
    with nothing Typer has to read a signature for. Never given anything to run."""
    listed = copy.copy(typer_app)
    listed.registered_commands = [_unparsed(info) for info in typer_app.registered_commands]
    listed.registered_groups = []
    for group in typer_app.registered_groups:
        inner = copy.copy(group)
        if isinstance(group.typer_instance, typer.Typer):
            inner.typer_instance = _listed(group.typer_instance)
        listed.registered_groups.append(inner)
    return listed


def _unparsed(info: CommandInfo) -> CommandInfo:
    """``info`` with a callback of no parameters, named and documented as its own."""
    callback = info.callback

    def stand_in() -> None:
        raise AssertionError("a listed command was run")  # LISTING_ONLY runs none

    stand_in.__name__ = getattr(callback, "__name__", "")
    stand_in.__doc__ = getattr(callback, "__doc__", None)
    unparsed = copy.copy(info)
    unparsed.callback = stand_in
    return unparsed


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
    _flush_spans()  # os._exit skips the exit hook that sends the spans still batched
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


def _flush_spans() -> None:
    """Send the spans this process still holds, if it made any (see trestle.telemetry)."""
    env = sys.modules.get("trestle.telemetry.env")
    if env is not None and env.from_env.cache_info().currsize:
        telemetry = env.from_env()
        if telemetry is not None:
            with suppress(Exception):  # a receiver gone must not change the exit code
                telemetry.flush()


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
        code = _named(sys.argv[1:])(prog_name="trestle", standalone_mode=False)
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
    except typer.Abort as exc:  # Ctrl-C, or end of input at a prompt
        if isinstance(exc.__context__, KeyboardInterrupt):
            _err().print("\nerror: interrupted by SIGINT (Ctrl-C)", markup=False)
            sys.exit(128 + signal.SIGINT)
        _err().print("error: aborted: the input ended", markup=False)
        sys.exit(1)
    except TrestleError as exc:
        _err().print(f"error: {exc}", markup=False)
        sys.exit(exc.exit_code)
    except HomeUnknown as exc:  # where the key and what a human accepted are kept
        _err().print(f"error: {exc}", markup=False)
        sys.exit(2)
    except sqlite3.Error as exc:  # the store names its failures; this is the backstop
        _err().print(f"error: the store failed: {exc}", markup=False)
        sys.exit(StoreError.exit_code)
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
        # a name given longer than the system takes (an option, a variable, a plan's
        # field): bad input, wherever it is first used
        _err().print(f"error: {str(exc.filename)!r}: {exc.strerror}", markup=False)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
