"""The options and arguments the commands share, and the exit codes' help."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

EXIT_CODES_HELP = (
    "Exit codes: 0 done; 1 finished with failures; 2 bad input; 3 waiting on a human; "
    "4 the store cannot be used; 5 another process drives the run; 6 stopped (budget or "
    "monitor); 7 cancelled (trestle cancel); 8 no store found (nothing is created); "
    "9 the policy file is not accepted (trestle policy accept; nothing ran); "
    "10 on Temporal with --no-wait-for-worker, no worker polls the run's queue; "
    "11 a rewind not confirmed (answered no, or off a terminal without --yes; nothing "
    "changed); "
    "12 on Temporal, Temporal closed the run's workflow (terminated it) before the run "
    "ended; "
    "128+N interrupted by signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP), after the report."
)

# text, not a Path: a Path folds the // of a postgresql:// URL; the commands read it
# with trestle.store.location.store_where (through trestle.cli.stores)
StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        metavar="PATH|URL",
        help="The store: an SQLite file, or a PostgreSQL database's postgresql:// URL "
        "[default: $TRESTLE_STORE; else a new run's is .trestle/trestle.db in its "
        "workspace, and other commands use the nearest .trestle/trestle.db from here "
        "upward, or for a RUN a store used recently]",
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


def _report_path(path: Path | None) -> Path | None:
    """Checked before anything runs: a report that cannot be written would only be
    found missing once the run it describes is over."""
    if path is not None and path.is_dir():
        raise typer.BadParameter(f"'{path}' is a directory: give a file's path")
    if path is not None and not path.parent.is_dir():
        raise typer.BadParameter(f"'{path.parent}' is not a directory: the report goes in one")
    return path


ReportJson = Annotated[
    Path | None,
    typer.Option("--report-json", help="Also write the final report here.", callback=_report_path),
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
WaitWorkerOption = Annotated[
    bool,
    typer.Option(
        help="On Temporal: while no worker polls the run's task queue, wait for one "
        "(saying so), or with --no-wait-for-worker exit 10 at once.",
    ),
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
