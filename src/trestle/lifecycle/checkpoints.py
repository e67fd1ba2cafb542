"""Workspace checkpoints of a run: when they are taken, how they are named, and listing.

Before and after each attempt of every step (``checkpoints: every_step``, the
default; ``irreversible`` takes one only before an attempt of an irreversible step,
``off`` none) the engine snapshots the whole workspace into the run's shadow store
(:mod:`trestle.workspace.shadow`), named ``RUN/STEP/ATTEMPT/before`` and
``.../after``, each with its place among the store's snapshots (``ordered``), so that
the checkpoints of steps running side by side are still in the order they were
taken. The names are deterministic, so a checkpoint taken just before a crash is
found even though its attempt never recorded an outcome.

A rewind (:mod:`trestle.lifecycle.rewinding`) keeps the workspace as it found it as
one more checkpoint, ``RUN/rewind-SEQ/safety`` (or ``RUN/restore-MS/safety`` when it
put back a checkpoint of its own), which :func:`checkpoints` lists too. What a step
changed is :mod:`trestle.lifecycle.step_changes`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from trestle.core.errors import ConfigError
from trestle.core.events import StepStarted
from trestle.core.field_problems import did_you_mean
from trestle.core.plan import Plan, Step
from trestle.core.state import RunState
from trestle.store.base import Store
from trestle.workspace.left_out import LeftOut
from trestle.workspace.shadow import ShadowRepo

When = Literal["before", "after"]


def wants_checkpoint(plan: Plan, step: Step, when: When) -> bool:
    if plan.checkpoints == "off":
        return False
    if plan.checkpoints == "every_step":
        return True
    return when == "before" and step.irreversible


def checkpoint_name(run_id: str, step: str, attempt: int, when: When) -> str:
    return f"{run_id}/{step}/{attempt}/{when}"


def shadow_repo(state: RunState, shadow_dir: Path, store: Store) -> ShadowRepo:
    """The run's shadow store. A store file kept inside the workspace is left out of its
    snapshots: a rewind must never put an old copy of the run's own record back."""
    workspace = Path(state.workspace)
    ignore = list(state.plan.checkpoint_ignore)
    path = getattr(store, "path", None)
    if isinstance(path, Path) and path.resolve().is_relative_to(workspace.resolve()):
        rel = path.resolve().relative_to(workspace.resolve()).as_posix()
        ignore += [f"/{rel}{suffix}" for suffix in ("", "-wal", "-shm", "-journal")]
    limit = state.plan.checkpoint_max_file_size
    return ShadowRepo(shadow_dir, workspace, ignore=ignore, max_file_size=limit)


Kind = Literal["before", "after", "kept"]
KEPT_PREFIXES = ("rewind-", "restore-")  # the checkpoints a rewind keeps


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint of a run: ``before`` or ``after`` an attempt of ``step``, or
    ``kept`` by a rewind (``step`` "", ``attempt`` 0) with what it was kept before in
    ``note``. ``order`` is its place among the store's snapshots (None when taken
    before checkpoints were ordered). ``left_out``: the files it did not store for
    their size."""

    step: str
    attempt: int
    when: Kind
    commit: str
    taken_at: float
    name: str = ""
    tree: str = ""
    order: int | None = None
    note: str = ""
    left_out: tuple[LeftOut, ...] = ()


def checkpoints(repo: ShadowRepo, state: RunState, store: Store) -> list[Checkpoint]:
    """The run's checkpoints in the order they were taken: by their recorded order
    when every one has it, else by where their attempt (or rewind) lies in the events."""
    started = {
        (e.event.step, e.event.attempt): e.seq
        for e in store.events(state.run_id)
        if isinstance(e.event, StepStarted)
    }
    found: list[tuple[float, Checkpoint]] = []
    for ref in repo.list(state.run_id):
        parts = ref.name.split("/")
        taken = ref.time.timestamp()
        if len(parts) == 3 and parts[1].startswith(KEPT_PREFIXES) and parts[2] == "safety":
            seq = parts[1].removeprefix("rewind-").partition("-")[0]  # rewind-SEQ-2: again
            position = int(seq) + 0.5 if seq.isdigit() else state.seq + 1.0
            kept = Checkpoint("", 0, "kept", ref.commit, taken, ref.name, ref.tree, ref.order)
            kept = replace(kept, note=ref.message.strip(), left_out=ref.left_out)
            found.append((position, kept))
            continue
        if len(parts) != 4 or parts[3] not in ("before", "after") or not parts[2].isdigit():
            continue
        if parts[1] not in state.steps:
            continue
        when: Kind = "before" if parts[3] == "before" else "after"
        position = started.get((parts[1], int(parts[2])), state.seq + 1) + (when == "after") / 4
        found.append(
            (
                position,
                Checkpoint(
                    parts[1],
                    int(parts[2]),
                    when,
                    ref.commit,
                    taken,
                    ref.name,
                    ref.tree,
                    ref.order,
                    left_out=ref.left_out,
                ),
            )
        )
    if all(c.order is not None for _, c in found):
        return sorted((c for _, c in found), key=lambda c: c.order or 0)
    return [c for _, c in sorted(found, key=lambda pair: pair[0])]


def known_step(state: RunState, step: str) -> None:
    """Refuse a step the run does not have, with the nearest name."""
    if step not in state.steps:
        hint = did_you_mean(step, state.steps)
        raise ConfigError(f"run {state.run_id!r} has no step {step!r}{hint}")


def checkpoint_before(
    found: list[Checkpoint], state: RunState, step: str, attempt: int | None = None
) -> Checkpoint:
    """The checkpoint taken before the step's attempt ``attempt`` (default: its latest
    attempt that has one)."""
    known_step(state, step)
    mine = [c for c in found if c.step == step and c.when == "before"]
    if attempt is not None:
        chosen = [c for c in mine if c.attempt == attempt]
        if not chosen:
            had = sorted(c.attempt for c in mine)
            before = f"attempt{'s' if len(had) > 1 else ''} {', '.join(map(str, had))}"
            raise ConfigError(
                f"run {state.run_id!r}: step {step!r} has no checkpoint before attempt "
                f"{attempt} (" + (f"it has one before {before})" if had else "none)")
            )
        return chosen[0]
    if not mine and state.steps[step].attempt == 0:  # the plan's setting is not why
        raise ConfigError(
            f"run {state.run_id!r}: step {step!r} has not started, so it has no checkpoint yet"
        )
    if not mine:
        raise ConfigError(
            f"run {state.run_id!r}: step {step!r} has no checkpoint (checkpoints are taken "
            "before and after every attempt unless the plan sets `checkpoints: "
            "irreversible` or `off`: set `checkpoints: every_step`)"
        )
    return max(mine, key=lambda c: c.attempt)


def latest_before(repo: ShadowRepo, state: RunState, store: Store, step: str) -> Checkpoint:
    """The checkpoint taken before the step's latest attempt that has one."""
    known_step(state, step)
    return checkpoint_before(checkpoints(repo, state, store), state, step)
