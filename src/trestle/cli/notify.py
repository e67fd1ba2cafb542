"""``trestle notify test``: a test message to the targets of ``notify.toml``, sent now;
``trestle notify sweep``: the notices the clock raises (approvals past their deadline),
for cron."""

from __future__ import annotations

from typing import Annotated

import typer

from trestle.cli.console import _all_runs, _out
from trestle.cli.options import StoreOption
from trestle.presentation.wording import counted

notify_app = typer.Typer(
    help="Notifications to the operator's targets (docs/notifications.md).",
    rich_markup_mode=None,
)


@notify_app.command("test")
def test_targets(
    targets: Annotated[
        list[str] | None,
        typer.Argument(help="Targets to send to [default: every one].", show_default=False),
    ] = None,
) -> None:
    """Send a test message to each target of notify.toml now, and say which took it.
    Exits 1 when one did not; 2 when notify.toml is missing or wrong, or names no such
    target."""
    import os
    import secrets

    from trestle.core.errors import ConfigError
    from trestle.notifications.payloads import test_message
    from trestle.notifications.senders import DeliveryError, desktop_available, send
    from trestle.notifications.targets import DesktopTarget, load_settings, notify_path

    settings = load_settings()
    if settings is None:
        raise ConfigError(
            f"{notify_path()}: not found; write the targets there (docs/notifications.md)"
        )
    if not settings.targets:
        raise ConfigError(f"{notify_path()}: names no target ([targets.NAME] tables)")
    chosen = targets or sorted(settings.targets)
    unknown = [name for name in chosen if name not in settings.targets]
    if unknown:
        known = ", ".join(repr(name) for name in sorted(settings.targets))
        raise ConfigError(f"{notify_path()}: no target {unknown[0]!r}; it names {known}")
    payload = test_message(settings.dashboard_url, f"test/{secrets.token_hex(8)}")
    out, failed = _out(), 0
    for name in chosen:
        target = settings.targets[name]
        try:
            if isinstance(target, DesktopTarget) and not desktop_available(os.environ):
                raise DeliveryError("notify-send is not installed: no desktop notification")
            send(target, payload, os.environ)
        except DeliveryError as exc:
            failed += 1
            out.print(f"{name}: not delivered: {exc}", markup=False, soft_wrap=True)
        else:
            out.print(f"{name}: delivered ({target.type})", markup=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


@notify_app.command("sweep")
def sweep(store: StoreOption = None) -> None:
    """Notify the escalation groups of each approval past its deadline (an approver
    rule's deadline and escalate_to), once per approval and target, and send what is
    due. Run it from cron, every minute or so; exits 2 when notify.toml is missing or
    wrong."""
    import time

    from trestle.core.errors import ConfigError
    from trestle.core.notices import escalations
    from trestle.lifecycle.approvals import vetter
    from trestle.lifecycle.runs import readable_states
    from trestle.notifications.notifier import Notifier
    from trestle.notifications.targets import load_settings, notify_path
    from trestle.trust.signing import decision_key
    from trestle.workspace.reach import note_workspace

    settings = load_settings()
    if settings is None:
        raise ConfigError(
            f"no {notify_path()}: nothing to sweep for (docs/notifications.md says how to "
            "name targets)"
        )
    if not settings.targets:
        raise ConfigError(f"{notify_path()}: names no target; nothing to sweep for")
    notifier = Notifier(settings)
    found = 0
    try:
        with _all_runs(store) as (st, _):
            ids = [row.run_id for row in st.runs()]
            unreadable: list[str] = []
            now = time.time()
            for state in readable_states(st, ids, unreadable, vet=vetter(decision_key())):
                note_workspace(state.workspace)  # notify-send is never found in one
                if state.cancelled is None:
                    notices = escalations(state, now)
                    found += len(notices)
                    notifier.swept(state.run_id, state.seq, notices)
    finally:
        notifier.close()
    their = "its" if found == 1 else "their"
    _out().print(f"{counted(found, 'approval')} past {their} deadline", markup=False)
