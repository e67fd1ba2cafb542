"""``trestle ui``: the web dashboard (:mod:`trestle.dashboard`), behind the ``ui`` extra."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Annotated

import typer

from trestle.cli.options import StoreOption


def ui_command(
    store: StoreOption = None,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on. The default answers this machine only; another "
            "address exposes the dashboard to whoever can reach it (they still need the "
            "login URL), over plain HTTP: it warns that the login URL and the session "
            "cookie travel in clear."
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port).")
    ] = 0,
    runs: Annotated[
        list[str] | None,
        typer.Option("--run", metavar="RUN", help="Show and act on only this run (repeat)."),
    ] = None,
    session_lifetime: Annotated[
        str,
        typer.Option(
            metavar="AGE",
            help="How long an invited person's session lasts after they log in (12h, 90m).",
        ),
    ] = "12h",
    idle_timeout: Annotated[
        str,
        typer.Option(
            metavar="AGE", help="How long an invited person's session lasts unused (1h, 30m)."
        ),
    ] = "1h",
) -> None:
    """The web dashboard: runs, each run's plan and log live, the inbox, health.

    Prints a URL with a one-time login token; opening it logs that browser in. Every
    decision made there is signed and recorded as from `trestle approve`, by
    dashboard:USER@HOST. People invited with `trestle people invite NAME` log in with
    their name and password instead, and decide as dashboard:NAME, signed with their
    own key. Stop it with Ctrl-C."""
    from trestle.cli.stores import reading_store
    from trestle.core.errors import ConfigError
    from trestle.dashboard.accounts import Lifetimes
    from trestle.dashboard.serve import require_extra, serve
    from trestle.formats.age import parse_age
    from trestle.trust.step_origin import inside_a_step

    require_extra()
    if os.environ.get("TRESTLE_STEP_ID") or inside_a_step() is not None:
        # what a step starts must not be able to decide on its own run's approvals
        raise ConfigError("the dashboard cannot be started from inside a running step")
    where = reading_store(store)
    shown = _runs_named(store, runs) if runs else None
    lifetimes = Lifetimes(
        absolute=_positive("--session-lifetime", session_lifetime, parse_age),
        idle=_positive("--idle-timeout", idle_timeout, parse_age),
    )

    def say(line: str) -> None:
        print(line, flush=True)

    def warn(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        serve(
            where,
            host=host,
            port=port,
            runs=shown,
            say=say,
            warn=warn,
            lifetimes=lifetimes,
        )
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sys.exit(0)


def _runs_named(store: str | None, runs: list[str]) -> frozenset[str]:
    """The ids ``--run`` names (an id or a unique tail, as every command takes them); a
    run the store does not hold is refused, not served as an empty dashboard."""
    from trestle.cli.console import _opened
    from trestle.cli.stores import run_in

    found = set()
    with _opened(store) as st:
        for run in runs:
            run_id = run_in(st, run)
            if run_id is None:
                st.run(run)  # raises, naming the run and the store
            found.add(run_id or run)
    return frozenset(found)


def _positive(option: str, text: str, parse: Callable[[str], float]) -> float:
    from trestle.core.errors import ConfigError

    try:
        seconds = parse(text)
    except ConfigError as exc:
        raise ConfigError(f"{option}: {exc}") from None
    if seconds <= 0:
        raise ConfigError(f"{option} {text!r}: must be more than 0")
    return seconds
