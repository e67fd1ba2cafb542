"""Rewind: put the workspace back to a checkpoint, losing nothing, and reopen what it undid.

Rewinding to a step's attempt reopens that step and exactly the steps that depended on
it, by data (files they read, or may have read, of its output) or by declared
``needs`` (:func:`trestle.core.lineage.rewind_scope`), and puts the workspace back as
it was before that attempt, except the files the other steps wrote since: their work
stays. Where a write since could not be seen (an attempt without checkpoints around
it) it restores the whole workspace instead and reopens every step started after it,
and everything downstream of them. It records ``run_rewound``; ``trestle resume``
then runs the reopened steps again. The events of the abandoned branch stay in the log.

Nothing is lost: :func:`plan_rewind` says first what the rewind will delete, change
and restore, and :func:`rewind` keeps the workspace as it finds it (files written by
hand since the run included) as a checkpoint of the run, ``RUN/rewind-SEQ/safety``,
which ``trestle checkpoints`` lists; :func:`restore_checkpoint` puts any checkpoint of
the run back the same way (showing first, keeping what it replaces as
``RUN/restore-MS/safety``), without touching the run's steps. When the workspace or
the run changed between what was shown and the rewind, nothing is done.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from trestle.core.errors import ConfigError
from trestle.core.events import RunRewound
from trestle.core.lineage import lineage, rewind_scope
from trestle.core.state import RunState
from trestle.lifecycle.checkpoints import (
    Checkpoint,
    checkpoint_before,
    checkpoints,
    shadow_repo,
)
from trestle.lifecycle.runs import load_state, record, refuse_if_cancelled
from trestle.store.base import Owner, RunRow, Store
from trestle.workspace.shadow import RestoreResult, ShadowRepo, SnapshotRef, shadow_dir_for
from trestle.workspace.shadow_files import is_rules_file

# RUN/rewind+begun points at what a rewind kept while it has not yet recorded what it
# did: a '+' no step id holds (a step named "rewinding" had its checkpoints taken for
# the mark, and deleted with it)
REWINDING = "rewind+begun"
RECENT = 64  # the last events in which a rewind's run_rewound is looked for


@dataclass(frozen=True)
class RewindPlan:
    """What a rewind (or a restore of a checkpoint) will do, shown before it is done.

    ``delete``: files there now that the checkpoint does not hold (written since, by a
    step or by hand); ``change``: files it puts back as they were; ``restore``: files
    deleted since that it writes again. ``reopen``: the steps it reopens (none for a
    restore); ``files``: the paths put back when the other steps' work is kept (None:
    the whole workspace, ``why`` says why). ``seq``: the run's events when planned."""

    target: Checkpoint
    seq: int
    delete: tuple[str, ...]
    change: tuple[str, ...]
    restore: tuple[str, ...]
    reopen: tuple[str, ...] = ()
    files: tuple[str, ...] | None = None
    why: str = ""
    kept_work: tuple[str, ...] = field(default=())

    @property
    def empty(self) -> bool:
        return not (self.delete or self.change or self.restore)


@dataclass(frozen=True)
class Rewound:
    """What a rewind did: the checkpoint restored, the steps reopened, the checkpoint
    that keeps the workspace as it was (``safety``, its commit; ``kept``, its name),
    and what changed; ``files`` the paths put back when the other steps' work was kept
    (None: the whole workspace went back, ``why`` says why)."""

    checkpoint: Checkpoint
    reopened: list[str]
    safety: str
    result: RestoreResult
    files: tuple[str, ...] | None = None
    why: str = ""
    kept: str = ""


def plan_rewind(
    repo: ShadowRepo, state: RunState, store: Store, step: str, attempt: int | None = None
) -> RewindPlan:
    """What rewinding to before ``step``'s attempt ``attempt`` (default: its latest with
    a checkpoint) would do now."""
    found = checkpoints(repo, state, store)
    target = checkpoint_before(found, state, step, attempt)
    repo.check_restorable(target.commit)
    scope = rewind_scope(lineage(store.events(state.run_id)), step, target.attempt)
    changes = repo.changes(target.commit)
    files = None
    if scope.keep is not None:  # the other steps' work stays; all else goes back
        kept = set(scope.keep)
        files = tuple(c.path for c in changes if c.path not in kept)
        changes = [c for c in changes if c.path not in kept]
    return RewindPlan(
        target=target,
        seq=state.seq,
        delete=tuple(c.path for c in changes if c.kind == "added"),
        change=tuple(c.path for c in changes if c.kind in ("modified", "mode")),
        restore=tuple(c.path for c in changes if c.kind == "deleted"),
        reopen=scope.reopen,
        files=files,
        why=scope.why,
        kept_work=scope.keep or (),
    )


def find_checkpoint(found: list[Checkpoint], state: RunState, wanted: str) -> Checkpoint:
    """The run's checkpoint named ``wanted`` (its name, or its commit id or a prefix of
    at least 7 characters)."""
    hits = [c for c in found if wanted in (c.name, c.commit)]
    if not hits and len(wanted) >= 7:
        hits = [c for c in found if c.commit.startswith(wanted.lower())]
    commits = {c.commit for c in hits}
    if len(commits) > 1:
        raise ConfigError(
            f"run {state.run_id!r}: {wanted!r} names {len(commits)} checkpoints; give more of "
            "its id (`trestle checkpoints RUN` lists them)"
        )
    if not hits:
        raise ConfigError(
            f"run {state.run_id!r} has no checkpoint {wanted!r} (`trestle checkpoints "
            f"{state.run_id}` lists them)"
        )
    return hits[-1]


def plan_restore(repo: ShadowRepo, state: RunState, store: Store, wanted: str) -> RewindPlan:
    """What putting the run's checkpoint ``wanted`` back would do now (whole workspace)."""
    target = find_checkpoint(checkpoints(repo, state, store), state, wanted)
    repo.check_restorable(target.commit)
    changes = repo.changes(target.commit)
    return RewindPlan(
        target=target,
        seq=state.seq,
        delete=tuple(c.path for c in changes if c.kind == "added"),
        change=tuple(c.path for c in changes if c.kind in ("modified", "mode")),
        restore=tuple(c.path for c in changes if c.kind == "deleted"),
    )


def rewind(
    store: Store,
    run_id: str,
    step: str,
    *,
    shadow_dir: Path,
    owner: Owner,
    by: str | None = None,
    attempt: int | None = None,
    shown: RewindPlan | None = None,
) -> Rewound:
    """Restore the workspace to before ``step``'s attempt ``attempt`` (default: its
    latest) and rewind the run to match; ``by`` names who asked (default: this
    process's user).

    Holds the run's lease throughout, so no process drives the run meanwhile. The
    workspace as it was is kept first as a checkpoint of the run, so a rewind can be
    undone (:func:`restore_checkpoint`). With ``shown``, the plan a human agreed to,
    nothing is done unless the rewind would do exactly that.

    Raises:
        ConfigError: no such step or checkpoint, or the workspace or the run changed
            since ``shown`` was made.
    """
    # an unknown or cancelled run is refused before any lease is taken
    refuse_if_cancelled(load_state(store, run_id))
    lease = store.acquire_lease(run_id, owner, ttl=60.0, now=time.time())
    try:
        state = load_state(store, run_id)
        repo = shadow_repo(state, shadow_dir, store)
        plan = plan_rewind(repo, state, store, step, attempt)
        _same_as_shown(plan, shown, run_id)
        target = plan.target
        # a rewind cut short before it recorded what it did kept the workspace as it
        # was before it: that stays what this one undoes to, and the workspace as it
        # is now, half put back, is kept too, under a name of its own
        begun = unfinished_rewind(repo, store, run_id)
        kept = _unused(repo, f"{run_id}/rewind-{state.seq}")
        note = f"the workspace before rewinding to {step!r} attempt {target.attempt}"
        if begun is not None:
            note = f"the workspace before finishing a rewind cut short, to {step!r}"
        now = repo.snapshot(kept, note, ordered=True)
        safety = begun.commit if begun is not None else now
        if begun is None:
            repo.mark(f"{run_id}/{REWINDING}", safety)
        else:
            kept = _kept_name(repo, run_id, safety) or kept
        result = repo.restore(target.commit, plan.files)
        files = plan.files
        if files is not None and any(is_rules_file(p) for p in files):
            # The checkpoint's .gitignore is back, so what the rule written since hid
            # (a step's `*` over the files it wrote) is seen now, and goes back too.
            again = plan_rewind(repo, state, store, step, attempt).files or ()
            if again:
                result = result.merged(repo.restore(target.commit, again))
                files = tuple(sorted({*files, *again}))
        event = RunRewound(
            at=time.time(),
            to_step=step,
            attempt=target.attempt,
            checkpoint=target.commit,
            safety=safety,
            reopened=plan.reopen,
            by=by or getpass.getuser(),
            files=files,
        )
        record(store, state, event, token=lease.token)
        repo.delete(f"{run_id}/{REWINDING}")  # recorded: a resume may drive it again
        return Rewound(target, list(plan.reopen), safety, result, files, plan.why, kept)
    finally:
        store.release_lease(run_id, lease.token)


def restore_checkpoint(
    store: Store,
    run_id: str,
    wanted: str,
    *,
    shadow_dir: Path,
    owner: Owner,
    shown: RewindPlan | None = None,
) -> Rewound:
    """Put the run's checkpoint ``wanted`` back as the whole workspace (the one a rewind
    kept, say, to undo it), keeping the workspace as it was as a checkpoint first. The
    run's steps are left as they are: no event is recorded.

    Raises:
        ConfigError: no such checkpoint, or the workspace or the run changed since
            ``shown`` was made.
    """
    refuse_if_cancelled(load_state(store, run_id))
    lease = store.acquire_lease(run_id, owner, ttl=60.0, now=time.time())
    try:
        state = load_state(store, run_id)
        repo = shadow_repo(state, shadow_dir, store)
        plan = plan_restore(repo, state, store, wanted)
        _same_as_shown(plan, shown, run_id)
        kept = f"{run_id}/restore-{time.time_ns() // 1_000_000}/safety"
        note = f"the workspace before checkpoint {plan.target.commit[:12]} was put back"
        safety = repo.snapshot(kept, note, ordered=True)
        result = repo.restore(plan.target.commit)
        # a rewind cut short is settled too: the person chose what the workspace holds
        repo.delete(f"{run_id}/{REWINDING}")
        return Rewound(plan.target, [], safety, result, None, "", kept)
    finally:
        store.release_lease(run_id, lease.token)


def unfinished_rewind(
    repo: ShadowRepo, store: Store, run_id: str, *, drop_done: bool = True
) -> SnapshotRef | None:
    """The checkpoint a rewind of the run kept before it changed the workspace, when
    it never recorded what it did (it was killed, or failed, part-way): the workspace
    may be half put back, and the run does not say it was rewound. None when there is
    none; a mark a rewind left after recording (killed just then) is dropped here when
    ``drop_done``."""
    marked = repo.list(f"{run_id}/{REWINDING}")
    if not marked:
        return None
    # recorded, then killed before the mark went: its run_rewound is among the last
    # events (a budget's raise may be recorded after it without a drive)
    recent = store.events(run_id, after=max(0, store.run(run_id).last_seq - RECENT))
    if any(isinstance(e.event, RunRewound) and e.event.safety == marked[0].commit for e in recent):
        if drop_done:
            repo.delete(f"{run_id}/{REWINDING}")
        return None
    return marked[0]


def unfinished_rewind_said(
    repo: ShadowRepo, store: Store, run_id: str, *, drop_done: bool = True
) -> str | None:
    """What to do about an unfinished rewind of the run (:func:`unfinished_rewind`)."""
    begun = unfinished_rewind(repo, store, run_id, drop_done=drop_done)
    if begun is None:
        return None
    kept = _kept_name(repo, run_id, begun.commit) or begun.commit[:12]
    return (
        f"a rewind of run {run_id!r} was cut short before it recorded what it did, so the "
        f"workspace may be half put back ({begun.message.strip()}): run `trestle rewind "
        f"{run_id} --to STEP` again to finish it, or put the workspace back as it was "
        f"before it with `trestle rewind {run_id} --to-checkpoint {kept}`"
    )


def unfinished_rewind_note(store: Store, run_id: str, *, drop_done: bool) -> str | None:
    """:func:`unfinished_rewind_said` of the run's checkpoints, where it has any."""
    repo = _checkpoints_of(store, store.run(run_id).workspace)
    return (
        None if repo is None else unfinished_rewind_said(repo, store, run_id, drop_done=drop_done)
    )


def rewinds_cut_short(store: Store, rows: Iterable[RunRow]) -> dict[str, str]:
    """Of the runs of ``rows``, each one a rewind was changing when it was cut short,
    with what to do about it (:func:`unfinished_rewind_said`); each store of
    checkpoints is listed once, not once a run, for ``trestle health``'s every run."""
    found: dict[str, str] = {}
    by_shadow: dict[Path | None, list[RunRow]] = {}
    for row in rows:
        by_shadow.setdefault(shadow_dir_for(store, Path(row.workspace)), []).append(row)
    for shadow, runs in by_shadow.items():
        repo = _checkpoints_of(store, runs[0].workspace) if shadow is not None else None
        if repo is None:
            continue
        marked = {ref.name.removesuffix(f"/{REWINDING}") for ref in repo.list()}
        for row in runs:
            if row.run_id in marked:
                said = unfinished_rewind_said(repo, store, row.run_id, drop_done=False)
                if said is not None:
                    found[row.run_id] = said
    return found


def _checkpoints_of(store: Store, workspace: str) -> ShadowRepo | None:
    """The store of checkpoints of runs in ``workspace``, if one was ever made."""
    shadow = shadow_dir_for(store, Path(workspace))
    if shadow is None or not (shadow / "objects").is_dir():
        return None
    return ShadowRepo(shadow, Path(workspace))


def _unused(repo: ShadowRepo, prefix: str) -> str:
    """``prefix/safety``, or ``prefix-2/safety``, ``-3``...: a name no checkpoint has, so
    a rewind never moves one an earlier rewind kept."""
    taken = {ref.name for ref in repo.list(prefix.rpartition("/")[0])}
    name, n = f"{prefix}/safety", 1
    while name in taken:
        n += 1
        name = f"{prefix}-{n}/safety"
    return name


def _kept_name(repo: ShadowRepo, run_id: str, commit: str) -> str | None:
    """The name of the checkpoint of the run a rewind or restore kept as ``commit``."""
    for ref in repo.list(run_id):
        parts = ref.name.split("/")
        if ref.commit == commit and len(parts) == 3 and parts[2] == "safety":
            return ref.name
    return None


def _same_as_shown(plan: RewindPlan, shown: RewindPlan | None, run_id: str) -> None:
    if shown is None:
        return
    if plan.seq != shown.seq or plan.target.commit != shown.target.commit:
        raise ConfigError(
            f"run {run_id!r} changed since the rewind was shown: nothing was done; "
            "run the command again to see what it would do now"
        )
    if (plan.delete, plan.change, plan.restore) != (shown.delete, shown.change, shown.restore):
        raise ConfigError(
            f"the workspace of run {run_id!r} changed since the rewind was shown: "
            "nothing was done; run the command again to see what it would do now"
        )
