"""``trestle monitors eval``: replay recorded runs through the monitors and measure them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from trestle.cli.app import _out, app

if TYPE_CHECKING:
    from trestle.monitors.alerts import Monitor
    from trestle.monitors.trace import RunFacts

monitors_app = typer.Typer(
    help="Failure-mode monitors: measure them on recorded runs.", rich_markup_mode=None
)
app.add_typer(monitors_app, name="monitors")


@monitors_app.command("eval")
def eval_(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Recorded runs: SWE-agent .traj, mini-swe-agent .traj.json, an OpenHands "
            "completion log or event stream, or a Trestle run's events (`trestle log RUN "
            "--json > run.json`), each possibly gzipped (.gz); a directory means every "
            "such file in it, with its labels.json if it has one.",
            show_default=False,
        ),
    ],
    labels: Annotated[
        Path | None,
        typer.Option(help="Labels: file name -> {outcome, problems} (JSON)."),
    ] = None,
    embedder: Annotated[
        str, typer.Option(help="Similarity for the drift monitor: hashing or wordllama.")
    ] = "hashing",
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """The targets' two figures, overall and per source with 95% intervals; then per
    monitor: runs alerted, where the first alert came (turn, share of calls and cost),
    and with labels precision and recall."""
    from trestle.monitors.catalog import CATCHES, default_monitors
    from trestle.monitors.evaluate import evaluate, render, to_json
    from trestle.monitors.importers import (
        ImportedRun,
        Label,
        load_corpus,
        load_labels,
        load_trajectory_file,
    )
    from trestle.monitors.policy import MonitorSettings

    runs: list[ImportedRun] = []
    found: dict[str, Label] = {}
    for path in paths:
        if path.is_dir():
            more, its_labels = load_corpus(path)
            runs += more
            found.update(its_labels)
        else:
            runs.append(load_trajectory_file(path))
    if labels is not None:
        found.update(load_labels(labels))
        runs = [
            r.model_copy(update={"outcome": found[r.name].outcome}) if r.name in found else r
            for r in runs
        ]
    settings = MonitorSettings(embedder=embedder)
    default_monitors(settings)  # an unknown or missing embedder fails here, once

    def fresh(facts: RunFacts) -> list[Monitor]:
        return default_monitors(settings)

    result = evaluate(runs, fresh, found or None, CATCHES)
    if as_json:
        typer.echo(to_json(result))
    else:
        _out().print(render(result), markup=False, soft_wrap=True)
