"""Help and usage errors as a user reads them: plain text, defaults shown, no boxes.

Through the real ``trestle`` executable, piped (as a pager or a script sees it).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import typer.main
from typer import _click as click
from typer.core import TyperGroup

from forked_cli import run_trestle
from test_cli import cli_env, flat
from trestle.cli.app import LISTING_ONLY, _named, app

BOX = "╭│╰"


def trestle(*args: str) -> subprocess.CompletedProcess[str]:
    return run_trestle(args, cwd=Path.cwd(), env=cli_env())


def test_option_help_keeps_its_defaults_and_plain_flags_have_no_metavar() -> None:
    shown = trestle("run", "--help")
    assert shown.returncode == 0, shown.stderr
    text = flat(shown.stdout)
    assert "--store PATH|URL The store: an SQLite file, or a PostgreSQL" in text
    assert "postgresql:// URL [default: $TRESTLE_STORE; else" in text
    assert "Operator policy file [default: the nearest trestle.toml]" in text
    assert "--live / --no-live" in text and "--prompt / --no-prompt" in text
    assert "<bool>" not in text
    assert not set(BOX) & set(shown.stdout)


def test_a_usage_error_is_an_error_line_like_any_other_then_the_usage() -> None:
    for args, said, usage in (
        (("show",), "error: Missing argument 'RUN'.", "trestle show [OPTIONS] RUN"),
        (("nope",), "error: No such command 'nope'.", "trestle [OPTIONS] COMMAND [ARGS]..."),
        (("run", "--bogus", "x"), "error: No such option: --bogus", "trestle run [OPTIONS] PLAN"),
        (
            ("output", "RUN", "STEP", "--attempt", "0"),
            "error: Invalid value for '--attempt': 0 is not in the range x>=1.",
            "trestle output [OPTIONS] RUN STEP",
        ),
    ):
        wrong = trestle(*args)
        assert wrong.returncode == 2, (args, wrong.stderr)
        command = " ".join(usage.split()[:2]) if args[0] != "nope" else "trestle"
        assert wrong.stderr.splitlines() == [
            said,
            f"usage: {usage} (more: `{command} --help`)",
        ], wrong.stderr
        assert not set(BOX) & set(wrong.stderr), wrong.stderr


def test_resume_of_an_unknown_run_says_only_that(tmp_path: Path) -> None:
    store = tmp_path / "t.db"
    plan = tmp_path / "plan.yaml"
    plan.write_text("goal: a store with one run\nsteps:\n  - id: one\n    run: 'true'\n")
    assert trestle("run", str(plan), "--store", str(store)).returncode == 0
    unknown = trestle("resume", "nope", "--store", str(store))
    assert unknown.returncode == 2, unknown.stderr
    assert unknown.stdout == ""  # no "run nope" as if it had started
    assert f"error: no run 'nope' in {store}" in unknown.stderr


def test_usage_lines_name_arguments_as_the_help_lists_them() -> None:
    for args, usage in (
        (("run", "--help"), "[OPTIONS] PLAN\n"),
        (("output", "--help"), "[OPTIONS] RUN STEP\n"),
        (("approve", "--help"), "[OPTIONS] APPROVAL\n"),
    ):
        shown = trestle(*args)
        assert shown.returncode == 0, shown.stderr
        first = shown.stdout.splitlines()[0] + "\n"
        assert first.endswith(usage), (args, first)
        assert "{" not in first, first


def test_the_help_names_every_exit_code_the_cli_exits_with() -> None:
    import re

    from trestle.cli.drive_watch import NO_WORKER_EXIT
    from trestle.core import errors
    from trestle.core.report import EXIT_CODES

    raised = {
        error.exit_code
        for error in vars(errors).values()
        if isinstance(error, type) and issubclass(error, errors.TrestleError)
    }
    codes = raised | set(EXIT_CODES.values()) | {NO_WORKER_EXIT}
    shown = trestle("--help")
    assert shown.returncode == 0, shown.stderr
    text = flat(shown.stdout)
    named = {int(n) for n in re.findall(r"(?:Exit codes:|;) (\d+) ", text)}
    assert codes <= named, sorted(codes - named)


def _described(command: click.Command) -> list[object]:
    """What a command parses and prints about itself, its subcommands' included."""
    params = [(p.name, p.opts, p.secondary_opts, getattr(p, "help", None)) for p in command.params]
    subcommands = getattr(command, "commands", {})
    return [
        command.name,
        command.help,
        params,
        *(_described(subcommands[n]) for n in sorted(subcommands)),
    ]


def test_a_command_built_alone_parses_and_helps_as_in_the_whole_app() -> None:
    """A process builds only the command it was asked for (trestle.cli.app._named):
    that command must be the one the whole app holds, and anything else gets it all."""
    whole = typer.main.get_command(app)
    assert isinstance(whole, TyperGroup)
    for name, command in whole.commands.items():
        alone = typer.main.get_command(_named([name, "--help"]))
        assert isinstance(alone, TyperGroup)
        assert list(alone.commands) == [name]
        assert _described(alone.commands[name]) == _described(command), name
        assert _described(alone)[2] == _described(whole)[2]  # the root's own options
    for args in (["nope"], ["-x", "run"], ["--", "run"], ["--help", "run"]):
        assert _named(args) is app, args


def test_the_roots_help_and_version_list_the_commands_as_the_whole_app_does() -> None:
    """``trestle``, ``--help`` and ``--version`` build the commands without their
    options (trestle.cli.app._listed): the help they print is the whole app's."""
    whole = typer.main.get_command(app)
    assert isinstance(whole, TyperGroup)
    with click.Context(whole, info_name="trestle") as context:
        expected = whole.get_help(context)
    for args in LISTING_ONLY:
        listed = typer.main.get_command(_named(list(args)))
        assert isinstance(listed, TyperGroup)
        assert list(listed.commands) == list(whole.commands)
        assert all(not command.params for command in listed.commands.values())
        with click.Context(listed, info_name="trestle") as context:
            assert listed.get_help(context) == expected, args
