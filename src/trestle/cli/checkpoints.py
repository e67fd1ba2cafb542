"""Commands on a run's workspace checkpoints: ``checkpoints``, ``rewind``, ``diff``."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from trestle.cli.console import (
    _err,
    _found,
    _out,
    _print_json,
    confirmed,
    write_recorded,
)
from trestle.cli.options import (
    JsonOption,
    RunArg,
    StepArg,
    StoreOption,
)
from trestle.core.errors import ConfigError, NotConfirmedError
from trestle.presentation.wording import counted

if TYPE_CHECKING:
    from rich.console import Console

    from trestle.core.state import RunState
    from trestle.lifecycle.rewinding import RewindPlan, Rewound
    from trestle.store import Store

AttemptOption = Annotated[
    int | None,
    typer.Option(
        "--attempt", metavar="N", min=1, help="That attempt of STEP [default: its latest]."
    ),
]


def _shadow(store: Store, state: RunState) -> Path:
    from trestle.workspace.shadow import shadow_dir_for

    shadow_dir = shadow_dir_for(store, Path(state.workspace))
    if shadow_dir is None or not shadow_dir.exists():
        raise ConfigError("this store has no workspace checkpoints yet")
    return shadow_dir


def checkpoints_command(
    run_id: RunArg, store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """Workspace checkpoints a run took, oldest first, and those its rewinds kept."""
    from trestle.lifecycle.checkpoints import checkpoints, shadow_repo
    from trestle.lifecycle.runs import load_state
    from trestle.presentation.wording import one_line

    with _found(store, run_id) as (st, run_id):
        state = load_state(st, run_id)
        found = checkpoints(shadow_repo(state, _shadow(st, state), st), state, st)
    if as_json:
        _print_json([asdict(c) for c in found])
        return
    out = _out()
    if not found:
        out.print(f"run {run_id} has no checkpoints")
    for c in found:
        stamp = time.strftime("%H:%M:%S", time.localtime(c.taken_at))
        if c.when == "kept":
            out.print(
                f"{stamp}  kept {c.commit[:12]}  {c.note} (put it back: `trestle rewind "
                f"{run_id} --to-checkpoint {c.commit[:12]}`)",
                markup=False,
                soft_wrap=True,
            )
            continue
        line = f"{stamp}  {c.step} attempt {c.attempt} {c.when:<6} {c.commit[:12]}"
        if c.left_out:
            line += "  left out: " + ", ".join(one_line(f.describe()) for f in c.left_out)
        out.print(line, markup=False, soft_wrap=True)


def rewind_command(
    run_id: RunArg,
    to: Annotated[
        str | None, typer.Option("--to", metavar="STEP", help="Restore to before this step.")
    ] = None,
    attempt: AttemptOption = None,
    to_checkpoint: Annotated[
        str | None,
        typer.Option(
            "--to-checkpoint",
            metavar="ID",
            help="Put back this checkpoint of the run (as `trestle checkpoints` lists it, "
            "say one a rewind kept) as the whole workspace; the run's steps stay as they are.",
        ),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do it without asking (needed off a terminal).")
    ] = False,
    store: StoreOption = None,
) -> None:
    """Put the workspace back to before STEP and reopen what that undid; then resume.

    It shows first what it will delete, change and restore, and asks. The workspace as
    it is (files you wrote since included) is kept as a checkpoint of the run, which
    `trestle checkpoints` lists and `--to-checkpoint` puts back.
    """
    from trestle.lifecycle.checkpoints import shadow_repo
    from trestle.lifecycle.lease import this_process
    from trestle.lifecycle.rewinding import plan_restore, plan_rewind, restore_checkpoint, rewind
    from trestle.lifecycle.runs import load_state

    if (to is None) == (to_checkpoint is None):
        raise ConfigError("give either --to STEP or --to-checkpoint ID")
    if attempt is not None and to is None:
        raise ConfigError("--attempt goes with --to STEP")
    out = _out()
    with _found(store, run_id, driving=True) as (st, run_id):
        state = load_state(st, run_id)
        shadow = _shadow(st, state)
        repo = shadow_repo(state, shadow, st)
        if to is not None:
            plan = plan_rewind(repo, state, st, to, attempt)
        else:
            assert to_checkpoint is not None
            plan = plan_restore(repo, state, st, to_checkpoint)
        _show_plan(out, run_id, plan, to)
        _confirm(out, yes)
        owner = this_process()
        if to is not None:
            done = rewind(
                st, run_id, to, shadow_dir=shadow, owner=owner, attempt=attempt, shown=plan
            )
        else:
            done = restore_checkpoint(
                st, run_id, plan.target.commit, shadow_dir=shadow, owner=owner, shown=plan
            )
    _show_done(out, run_id, done, to)


def _show_plan(out: Console, run_id: str, plan: RewindPlan, to: str | None) -> None:
    from trestle.presentation.wording import one_line

    target = plan.target
    if to is not None:
        head = f"rewind run {run_id} to before {to!r} (attempt {target.attempt})"
    else:
        head = f"put back checkpoint {target.commit[:12]} of run {run_id} as the workspace"
    out.print(f"{head}:", markup=False, soft_wrap=True)
    for word, paths in (
        ("delete", plan.delete),
        ("change", plan.change),
        ("restore", plan.restore),
    ):
        for path in paths:  # a name holding a newline made a line of the list up
            out.print(f"  {word:<8}{one_line(path)}", markup=False, soft_wrap=True)
    if plan.empty:
        out.print("  no file changes", markup=False)
    if to is not None:
        out.print(f"  reopen  {', '.join(plan.reopen)}", markup=False, soft_wrap=True)
        if plan.files is None and plan.why:
            out.print(f"  the whole workspace goes back: {plan.why}", markup=False, soft_wrap=True)
    else:
        out.print("  the run's steps stay as they are", markup=False)
    out.print(
        "the workspace as it is now is kept first as a checkpoint of the run",
        markup=False,
        soft_wrap=True,
    )


def _confirm(out: Console, yes: bool) -> None:
    if yes:
        return
    if sys.stdin.isatty() and out.is_terminal:
        if not confirmed("Go ahead?"):
            raise NotConfirmedError("not confirmed: nothing was changed")
        return
    raise NotConfirmedError(
        "not done: off a terminal this needs --yes (it deletes and overwrites files in "
        "the workspace, as listed above); nothing was changed"
    )


def _show_done(out: Console, run_id: str, done: Rewound, to: str | None) -> None:
    counts = (
        f"{counted(len(done.result.restored), 'file')} restored, {len(done.result.recreated)} "
        f"recreated, {len(done.result.deleted)} deleted"
    )
    if to is not None:
        out.print(
            f"workspace restored to before {to!r} (attempt {done.checkpoint.attempt}): {counts}",
            markup=False,
            soft_wrap=True,
        )
        out.print(f"reopened: {', '.join(done.reopened)}", markup=False, soft_wrap=True)
        if done.files is not None:
            out.print("what the steps not reopened wrote since stays as it is", markup=False)
        elif done.why:
            out.print(f"the whole workspace was put back: {done.why}", markup=False, soft_wrap=True)
    else:
        out.print(
            f"workspace put back to checkpoint {done.checkpoint.commit[:12]}: {counts}",
            markup=False,
            soft_wrap=True,
        )
    out.print(
        f"the workspace as it was is kept as checkpoint {done.safety[:12]} (put it back: "
        f"`trestle rewind {run_id} --to-checkpoint {done.safety[:12]}`)",
        markup=False,
        soft_wrap=True,
    )
    if to is not None:
        out.print(f"continue with `trestle resume {run_id}`", markup=False)


def diff_command(
    run_id: RunArg, step: StepArg, attempt: AttemptOption = None, store: StoreOption = None
) -> None:
    """What a step's attempt changed in the workspace, between its checkpoints before and
    after it. A change made while other steps ran too is named apart, never shown as
    this step's; what changed after the attempt (a later step, an edit by hand) is not
    in it."""
    from trestle.lifecycle.checkpoints import shadow_repo
    from trestle.lifecycle.runs import load_state
    from trestle.lifecycle.step_changes import step_diff
    from trestle.presentation.wording import one_line

    with _found(store, run_id) as (st, run_id):
        state = load_state(st, run_id)
        done = step_diff(shadow_repo(state, _shadow(st, state), st), state, st, step, attempt)
    if done.shared:
        err = _err()
        err.print(
            f"left out: changed during attempt {done.attempt} of {step!r} while other steps "
            "ran too, so who changed them is not known:",
            markup=False,
            soft_wrap=True,
        )
        for path, steps in done.shared.items():
            err.print(f"  {one_line(path)} (or {', '.join(steps)})", markup=False, soft_wrap=True)
    if done.too_large:
        _err().print(one_line(done.too_large_note()), markup=False, soft_wrap=True)
    if done.text or not (done.shared or done.too_large):
        text = done.text if done.text else "no changes\n"
        # what the step wrote, shown on a terminal rather than obeyed: an escape sequence
        # in a file can erase the lines above it and hide what the step added from the
        # person reviewing it (git's pager, less -R, passes only colours); piped, the
        # diff stays exact, for git apply
        write_recorded(text)
