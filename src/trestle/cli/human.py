"""The CLI's side of a human decision: the diff a write would make, editing an action
in $EDITOR, the interactive prompt ``trestle run`` shows on a terminal, and what became
of a queued request."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from trestle.cli.console import asked
from trestle.cli.render import card_view
from trestle.core.card import HandoffCard
from trestle.core.card_groups import CardGroup, member_line, waiting
from trestle.core.errors import ConfigError, PlanError
from trestle.formats.text_files import MAX_PLAN_BYTES, read_text_file
from trestle.lifecycle.approvals import (
    EDITABLE,
    decision_queued,
    edit_from_yaml,
    editable,
    editable_fields,
    inbox,
    submit_decision,
    tool_arguments,
    write_diff,
)
from trestle.lifecycle.doorbell import root_of
from trestle.lifecycle.outcomes import await_outcome, driven_live
from trestle.lifecycle.runs import load_state
from trestle.store.base import Store
from trestle.workspace.reach import note_workspace, program


def show_card(out: Console, store: Store, card: HandoffCard, now: float | None = None) -> None:
    """The card as a terminal shows it; with ``now``, its age and deadline too."""
    workspace = Path(load_state(store, card.run_id).workspace)
    diff = write_diff(card, workspace) or tool_diff(card, workspace)
    out.print(card_view(card, diff, now))


def show_entry(out: Console, store: Store, entry: CardGroup, now: float) -> None:
    """One entry of ``trestle inbox``: its first card in full, a line for each other
    card of its group, and the one command that decides what it shows."""
    show_card(out, store, entry.head, now)
    if entry.others:
        more = len(entry.others)
        out.print(f"and {more} more like it, which the same decision approves:", markup=False)
    for other in entry.others:
        out.print(f"  {member_line(other)}  ({waiting(other, now)})", markup=False)
    out.print(entry.decide() + "\n", markup=False, soft_wrap=True)


def tool_diff(card: HandoffCard, workspace: Path) -> str | None:
    """The diff a file-changing tool call on the card would make, as the file is now."""
    from trestle.cli.tool_edits import call_diff  # the tools: load on use

    action = card.action
    if action is None or action.tool is None or action.arguments is None:
        return None
    return call_diff(action.tool, json.loads(action.arguments), workspace)


def take_edit(store: Store, card: HandoffCard, source: Path | None = None) -> dict[str, Any]:
    """The human's edit of what the approval waits on, from ``source`` (YAML or JSON, as
    the editor would show it; ``-`` for standard input) or else from $EDITOR. A tool
    call's edited arguments are checked against the tool's schema here, before anything
    is queued."""
    current = editable(store, card)
    if source is None:
        # the editor runs as the human, unconfined: never one a step of the run planted
        note_workspace(load_state(store, card.run_id).workspace)
        edited = edit_in_editor(card, current)
    else:
        edited = edit_from_yaml(
            _edit_text(source), "standard input" if str(source) == "-" else str(source)
        )
    action = card.action
    if action is not None and action.kind == "tool" and action.tool is not None:
        from trestle.cli.tool_edits import checked_arguments

        edited = {"arguments": checked_arguments(action.tool, tool_arguments(edited))}
    return edited


def _edit_text(source: Path) -> str:
    """The text of an edit given with ``--from``: a regular file of at most
    :data:`MAX_PLAN_BYTES` in UTF-8 (a FIFO, a device or ``/dev/zero`` is refused by its
    type, as a plan file is), or that much of standard input (``-``)."""
    if str(source) != "-":
        try:
            return read_text_file(source, MAX_PLAN_BYTES)
        except PlanError as exc:
            raise ConfigError(f"the edit: {exc}; nothing was approved") from None
    data = sys.stdin.buffer.read(MAX_PLAN_BYTES + 1)
    if len(data) > MAX_PLAN_BYTES:
        raise ConfigError(f"the edit on standard input is larger than {MAX_PLAN_BYTES:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the edit on standard input is not UTF-8 (byte {exc.start})") from None


def edit_in_editor(card: HandoffCard, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """Open what the approval lets a human edit in $EDITOR (as YAML): ``current``, by
    default the step's action; return what the human saved."""
    current = editable_fields(card) if current is None else current
    header = edit_header(card, current)
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    if editor == "vi" and not sys.stdin.isatty():  # it would wait on input that never comes
        raise ConfigError(
            "--edit opens $EDITOR (unset: vi), which needs a terminal, and standard input "
            "is not one: give the edit with --from FILE (YAML or JSON), or set $EDITOR; "
            "nothing was approved"
        )
    words = shlex.split(editor) or ["vi"]
    found = program(words[0])
    if found is None:
        raise ConfigError(
            f"$EDITOR ({words[0]!r}) is not installed outside the places a step can write "
            "(a workspace on PATH, a relative directory): name it by its absolute path, or "
            "give the edit with --from FILE; nothing was approved"
        )
    import yaml  # for an edit only: the commands that show cards import this module

    # started in a private directory of its own, not the working directory (often the
    # workspace): an editor obeys configuration it finds there (vim's exrc, Helix's
    # .helix/), which a step may have written
    with tempfile.TemporaryDirectory(prefix="trestle-edit-") as private:
        path = Path(private) / "edit.yaml"
        path.write_text(
            header + yaml.safe_dump(current, sort_keys=False, allow_unicode=True), "utf-8"
        )
        done = subprocess.run([found, *words[1:], str(path)], check=False, cwd=private)
        if done.returncode != 0:
            raise ConfigError(f"{editor} exited with {done.returncode}; nothing was approved")
        text = path.read_text(encoding="utf-8")
    return edit_from_yaml(text)


def edit_header(card: HandoffCard, current: dict[str, Any]) -> str:
    """The comment above what ``approve --edit`` opens: what is edited, and how."""
    if "plan" in current:
        return (
            "# Edit the plan under review: drop, add or change steps (each needs an id, an\n"
            "# objective and a verify check). Save and quit to approve the edited plan.\n"
            "# Empty the file to cancel.\n"
        )
    if card.action is not None and card.action.kind == "tool":
        return (
            f"# Edit the arguments of the {card.action.tool} call of step {card.step!r}, save\n"
            "# and quit to approve the edited call. Empty the file to cancel.\n"
        )
    return (
        f"# Edit the action of step {card.step!r}, save and quit to approve the edited\n"
        f"# version. Editable: {', '.join(EDITABLE)}. Empty the file to cancel.\n"
    )


CHOICES = "[a]pprove, approve [s]imilar, [e]dit then approve, [r]eject, [l]ater"


def prompt_approvals(store: Store, run_id: str, out: Console) -> bool:
    """Ask about each open approval of the run; True if any decision was made, here or
    from elsewhere (another terminal's ``trestle approve``, the dashboard) while it asked:
    the run then goes on and records it, instead of ending as if nothing was decided."""
    decided = False
    cards = [card for card in inbox(store, run_id=run_id) if card.blocking]
    left = list(cards)  # those not decided here
    for card in cards:
        if _elsewhere(store, run_id, card):
            break  # decided elsewhere while another card was asked: the run goes on
        show_card(out, store, card)
        while True:
            try:
                answer = asked(out, Text(f"{CHOICES}? ")).strip().lower()[:1]
                reason = ""
                if answer == "r":
                    reason = asked(out, Text("reason (recorded and fed back): ")).strip()
            except EOFError:  # Ctrl-D, or input that ended: the rest wait, as "later"
                out.print("\nno answer (end of input): it waits in `trestle inbox`", markup=False)
                return decided or _decided_elsewhere(store, run_id, left, out)
            try:
                if answer in ("a", "s"):
                    submit_decision(store, card.ref, "approve", similar=answer == "s")
                elif answer == "e":
                    submit_decision(store, card.ref, "modify", edited=take_edit(store, card))
                elif answer == "r":
                    submit_decision(store, card.ref, "reject", reason=reason or "rejected")
                elif answer == "l":
                    break
                else:
                    continue
            except ConfigError as exc:
                if _elsewhere(store, run_id, card):
                    break  # decided elsewhere while it asked: said below, the run goes on
                out.print(f"error: {exc}", markup=False)
                continue
            decided = True
            left.remove(card)
            break
    return decided or _decided_elsewhere(store, run_id, left, out)


def _decided_elsewhere(store: Store, run_id: str, cards: list[HandoffCard], out: Console) -> bool:
    """Whether a card left for later was decided from elsewhere while the prompt asked,
    saying which: the run goes on to record it."""
    found = [c.ref for c in cards if _elsewhere(store, run_id, c)]
    for ref in found:
        out.print(f"{ref} was decided elsewhere meanwhile: the run goes on", markup=False)
    return bool(found)


def _elsewhere(store: Store, run_id: str, card: HandoffCard) -> bool:
    """Whether the card was decided by someone else since it was listed: a decision
    queued for the driver, or one another driver (a `trestle resume`) recorded."""
    if decision_queued(store, run_id, card.approval):
        return True
    return all(c.ref != card.ref for c in inbox(store, run_id=run_id))


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
        from trestle.cli.drive_watch import unclaimed_said

        idle = unclaimed_said(store, run_id)  # a run on Temporal whose workers are gone
        if idle is not None:
            later = f"{later}. {idle[0].upper()}{idle[1:]}"
    else:
        # a child is taken up again by its root's drive: the root is what resumes
        root = root_of(store, run_id)
        later = f"it will be applied or refused when the run is resumed: `trestle resume {root}`"
    return False, f"{what}: queued (request {request_id}); {later}"
