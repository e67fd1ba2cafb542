"""``trestle blame RUN [STEP]``: which step first produced the wrong output behind a
failure, ranked with the evidence for each (:func:`trestle.core.blame.blame`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from trestle.cli.console import _found, _out, _print_json
from trestle.cli.options import JsonOption, RunArg, StoreOption

if TYPE_CHECKING:
    from trestle.core.blame import Blame

SHOWN = 5  # candidates printed; --json gives every one

TargetArg = Annotated[
    str | None,
    typer.Argument(
        metavar="[STEP]",
        help="Trace back from this step (default: the step that failed last).",
        show_default=False,
    ),
]
AllOption = Annotated[bool, typer.Option("--all", help="Show every candidate, not the first 5.")]


def blame(
    run_id: RunArg,
    step: TargetArg = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
    show_all: AllOption = False,
) -> None:
    """Rank the steps that may first have produced the wrong output behind a failure.

    Walks back from the failed step (or STEP) through what each step read and wrote
    and what it declares it needs, and lists the suspects with their evidence: weak or
    absent checks, a later check that contradicts their output, a changed input, a
    monitor alert, a retry that passed after a different approach. Rewind to the first
    one with `trestle rewind RUN --to STEP`: it re-runs that step and what depended on
    it, nothing else.
    """
    from trestle.core.blame import as_json as blame_json
    from trestle.core.blame import blame as rank

    with _found(store, run_id) as (st, run_id):
        found = rank(st.events(run_id), step)
    if as_json:
        _print_json(blame_json(found))
        return
    for line in lines(found, limit=None if show_all else SHOWN):
        _out().print(line, markup=False, soft_wrap=True, highlight=False)


def lines(found: Blame, limit: int | None = SHOWN) -> list[str]:
    """The ranking in words, one line each: the target, then each candidate and its
    evidence (``+`` for, ``-`` against, ``?`` what could not be seen, ``=`` what
    counts neither way)."""
    if found.target is None:
        return [
            f"run {found.run_id}: nothing failed, so there is nothing to blame "
            f"(name a step to trace back from: `trestle blame {found.run_id} STEP`)"
        ]
    head = f"run {found.run_id}: tracing back from {found.target!r}"
    out = [head + (f": {found.symptom}" if found.symptom else "")]
    shown = found.candidates if limit is None else found.candidates[:limit]
    for n, c in enumerate(shown, start=1):
        where = "the target" if c.distance == 0 else f"{c.distance} upstream, {c.link}"
        out.append(f"{n}. {c.step}  score {c.score:g}  ({where})")
        for e in c.evidence:
            plain = e.kind == "unknown" or e.weight == 0
            sign = "?" if e.kind == "unknown" else "=" if plain else "-" if e.weight < 0 else "+"
            weight = "" if plain else f" [{e.weight:+g}]"
            out.append(f"     {sign} {e.text}{weight}")
    more = len(found.candidates) - len(shown)
    if more > 0:
        out.append(f"... and {more} more (--all or --json shows them)")
    top = found.top
    if top is not None:
        out.append(
            f"to re-run {top.step!r} and what depended on it: "
            f"`trestle rewind {found.run_id} --to {top.step}`, then `trestle resume`"
        )
    return out
