"""The CLI's side of a human decision: the diff a write would make, editing an action
in $EDITOR, the interactive prompt ``trestle run`` shows on a terminal, and what became
of a queued request."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.text import Text

from trestle.cli.render import card_view
from trestle.core.card import HandoffCard
from trestle.core.errors import ConfigError
from trestle.lifecycle.approvals import (
    EDITABLE,
    edit_from_yaml,
    editable_fields,
    inbox,
    submit_decision,
    write_diff,
)
from trestle.lifecycle.outcomes import await_outcome, driven_live
from trestle.lifecycle.runs import load_state
from trestle.store.base import Store


def show_card(out: Console, store: Store, card: HandoffCard) -> None:
    workspace = Path(load_state(store, card.run_id).workspace)
    out.print(card_view(card, write_diff(card, workspace)))


def edit_in_editor(card: HandoffCard) -> dict[str, Any]:
    """Open the step's action in $EDITOR (as YAML) and return what the human saved."""
    current = editable_fields(card)
    header = (
        f"# Edit the action of step {card.step!r}, save and quit to approve the edited\n"
        f"# version. Editable: {', '.join(EDITABLE)}. Empty the file to cancel.\n"
    )
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(header + yaml.safe_dump(current, sort_keys=False, allow_unicode=True))
        path = Path(f.name)
    try:
        done = subprocess.run([*shlex.split(editor), str(path)], check=False)
        if done.returncode != 0:
            raise ConfigError(f"{editor} exited with {done.returncode}; nothing was approved")
        text = path.read_text(encoding="utf-8")
    finally:
        path.unlink(missing_ok=True)
    return edit_from_yaml(text)


CHOICES = "[a]pprove, approve [s]imilar, [e]dit then approve, [r]eject, [l]ater"


def prompt_approvals(store: Store, run_id: str, out: Console) -> bool:
    """Ask about each open approval of the run; True if any decision was made."""
    decided = False
    for card in inbox(store, run_id=run_id):
        if not card.blocking:
            continue
        show_card(out, store, card)
        while True:
            answer = out.input(Text(f"{CHOICES}? ")).strip().lower()[:1]
            try:
                if answer in ("a", "s"):
                    submit_decision(store, card.ref, "approve", similar=answer == "s")
                elif answer == "e":
                    submit_decision(store, card.ref, "modify", edited=edit_in_editor(card))
                elif answer == "r":
                    reason = out.input(Text("reason (recorded and fed back): ")).strip()
                    submit_decision(store, card.ref, "reject", reason=reason or "rejected")
                elif answer == "l":
                    break
                else:
                    continue
            except ConfigError as exc:
                out.print(f"error: {exc}", markup=False)
                continue
            decided = True
            break
    return decided


def say_outcome(
    out: Console, store: Store, what: str, run_id: str, request_id: int, *, after: int
) -> None:
    """Say what became of ``what``, a request just queued (``after``: the run's last seq
    before it was).

    While a live process drives the run, wait briefly for its outcome and print it; a
    refusal is a ConfigError (exit 2) naming why. Otherwise say that it is queued, and
    that the next driver will apply or refuse it.
    """
    _, said = outcome_said(store, what, run_id, request_id, after=after)
    out.print(said, markup=False, soft_wrap=True)


def outcome_said(
    store: Store, what: str, run_id: str, request_id: int, *, after: int
) -> tuple[bool, str]:
    """:func:`say_outcome`'s answer: whether the request was applied already (False:
    it is queued), and the sentence that says so. A refusal is a ConfigError."""
    found = await_outcome(store, run_id, request_id, after=after)
    if found is not None and not found.applied:
        raise ConfigError(found.message)
    if found is not None:
        return True, found.message
    driver = driven_live(store, run_id, time.time())
    if driver is not None:
        later = (
            f"{driver} drives the run and has not read it yet; `trestle log {run_id}` "
            "will show whether it was applied or refused"
        )
    else:
        later = f"it will be applied or refused when the run is resumed: `trestle resume {run_id}`"
    return False, f"{what}: queued (request {request_id}); {later}"
