"""``trestle export RUN``: a run's record in a format other tools open."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from trestle.cli.console import _err, _found, write_output
from trestle.cli.options import RunArg, StoreOption
from trestle.presentation.wording import counted

# the formats, as --format takes them (trestle.presentation.exports.FORMATS says the same;
# kept here too so that --help and a wrong --format load nothing else)
FORMATS = ("jsonl", "swe-agent", "otlp-json")


def export(
    run_id: RunArg,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="|".join(FORMATS),
            help="jsonl: every event, one JSON object a line, lossless; swe-agent: a "
            "SWE-agent trajectory (.traj) of the run's model turns and tool calls, or of "
            "a plan's step attempts; otlp-json: the run's spans as OTLP/JSON.",
        ),
    ] = "jsonl",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="FILE", help="Write here instead of stdout (-: stdout too)."
        ),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Export a run for other tools: its events as JSON Lines, a SWE-agent trajectory
    (SWE-agent's inspectors and `trestle monitors eval` read it), or OpenTelemetry
    spans as OTLP/JSON. A run still going is exported as far as it is recorded."""
    if fmt not in FORMATS:
        raise typer.BadParameter(
            f"{fmt!r}: choose {', '.join(FORMATS[:-1])} or {FORMATS[-1]}",
            param_hint="--format",
        )
    from trestle.presentation.exports import export_text, run_status

    with _found(store, run_id) as (st, run_id):
        events = st.events(run_id)
    text = export_text(fmt, events)
    if run_status(events) is None:
        _err().print(
            f"note: run {run_id} has not finished: exported the {counted(len(events), 'event')} "
            "recorded so far",
            markup=False,
            soft_wrap=True,
        )
    if output is None:
        sys.stdout.write(text)
        return
    write_output(output, text)
