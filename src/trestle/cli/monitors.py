"""``trestle monitors eval``: replay recorded runs through the monitors and measure them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from trestle.cli.console import _out
from trestle.presentation.wording import counted

if TYPE_CHECKING:
    from trestle.monitors.alerts import Monitor
    from trestle.monitors.trace import RunFacts

monitors_app = typer.Typer(
    help="Failure-mode monitors: measure them on recorded runs.", rich_markup_mode=None
)


@monitors_app.command("eval")
def eval_(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Recorded runs: SWE-agent .traj, mini-swe-agent .traj.json, an OpenHands "
            "completion log or event stream, OpenHands' evaluation output (output.jsonl, "
            "one run a line), or a Trestle run's events (`trestle log RUN "
            "--json > run.json`), each possibly gzipped (.gz); or a folder of them (with "
            "its labels.json, if any); or a tree of folders as runs are published (a "
            "folder per scaffold, a subfolder per run set with its index.jsonl of "
            "outcomes), read recursively.",
            show_default=False,
        ),
    ],
    labels: Annotated[
        Path | None,
        typer.Option(help="Labels: file name -> {outcome, problems} (JSON)."),
    ] = None,
    turn_limit: Annotated[
        int,
        typer.Option(
            min=1,
            help="Turn limit for runs whose file records none (OpenHands): the call "
            "budget the runs had.",
        ),
    ] = 50,
    model: Annotated[
        str,
        typer.Option(
            help="The model for runs whose file names none (OpenHands completion logs): "
            "the context monitor takes its window.",
        ),
    ] = "",
    context_window: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="The model's context window in tokens, for every run [default: the "
            "known window of each run's model, else 128000].",
            show_default=False,
        ),
    ] = None,
    embedder: Annotated[
        str, typer.Option(help="Similarity for the drift monitor: hashing or wordllama.")
    ] = "hashing",
    learnt: Annotated[
        bool,
        typer.Option(
            "--learnt",
            help="Add the learnt detector (off by default, as in a run: [monitors] learnt).",
        ),
    ] = False,
    reread: Annotated[
        bool,
        typer.Option(
            "--reread",
            help="Add the reread monitor (off by default, as in a run: [monitors] reread).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """The targets' two figures, overall and per source with 95% intervals; then per
    monitor: runs alerted, where the first alert came (turn, share of calls and cost),
    and with labels precision and recall. Lines of an output.jsonl that cannot be
    read are named on stderr after the figures of the others, and the exit code is 2."""
    from trestle.core.records.monitors import MonitorSettings
    from trestle.monitors.catalog import CATCHES, default_monitors
    from trestle.monitors.corpus import load_runs
    from trestle.monitors.evaluate import evaluate, render, to_json
    from trestle.monitors.importers import load_labels
    from trestle.monitors.windows import DEFAULT_WINDOW

    for given_path in [*paths, *([labels] if labels is not None else [])]:
        _refuse_what_never_ends(given_path)
    corpus = load_runs(paths, turn_limit=turn_limit, model=model)
    runs = list(corpus.runs)
    found = dict(corpus.labels)
    if labels is not None:
        given = load_labels(labels)
        for run in runs:  # by the run's name, or its file's name
            label = given.get(run.name) or given.get(Path(run.name).name)
            if label is not None:
                found[run.name] = label
        runs = [
            r.model_copy(update={"outcome": found[r.name].outcome}) if r.name in found else r
            for r in runs
        ]
    settings = MonitorSettings(
        embedder=embedder, context_window=context_window, learnt=learnt, reread=reread
    )
    default_monitors(settings)  # an unknown or missing embedder fails here, once

    def fresh(facts: RunFacts) -> list[Monitor]:
        return default_monitors(settings)

    result = evaluate(runs, fresh, found or None, CATCHES)
    notes = []
    if corpus.given_turn_limit:
        notes.append(
            f"{counted(corpus.given_turn_limit, 'run')} "
            f"{'records' if corpus.given_turn_limit == 1 else 'record'} no turn limit "
            "(OpenHands): each was "
            f"given {counted(corpus.turn_limit, 'call')} (--turn-limit)."
        )
    unnamed = sum(not run.facts.model for run in runs)
    if unnamed and context_window is None:  # the context monitor assumed their window
        notes.append(
            f"{counted(unnamed, 'run')} {'names' if unnamed == 1 else 'name'} no model: "
            "the context monitor assumed a "
            f"{DEFAULT_WINDOW:,}-token window for each (--model, --context-window)."
        )
    note = "\n".join(notes)
    if as_json:
        if note:
            typer.echo(note, err=True)
        typer.echo(to_json(result))
    else:
        if note:
            _out().print(note + "\n", markup=False, soft_wrap=True)
        _out().print(render(result), markup=False, soft_wrap=True)
    if corpus.errors:  # the figures above are of the runs that could be read
        for error in corpus.errors:
            typer.echo(f"error: {error}", err=True)
        unread = len(corpus.errors)
        verb = "is" if unread == 1 else "are"
        typer.echo(f"{counted(unread, 'run')} could not be read and {verb} not counted.", err=True)
        raise typer.Exit(2)


def _refuse_what_never_ends(path: Path) -> None:
    """A path given that is neither a file nor a folder (a FIFO, ``/dev/zero``) is
    refused by its type before it is read: read whole, it would block or never end."""
    import stat

    from trestle.core.errors import ConfigError

    try:
        mode = path.stat().st_mode
    except OSError:
        return  # what is missing is said where it is read
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ConfigError(f"{path}: not a file or a folder of recorded runs")
