"""What one attempt of a step changed in the workspace (``trestle diff RUN STEP``).

The diff is between the checkpoints taken before and after the attempt, and holds only
the paths the attempt alone can have changed (:mod:`trestle.core.change_windows`):
a path changed while another step ran beside it (or one that took no checkpoints)
may be that step's, so it is named apart with those steps, never shown as this one's.
What changed after the attempt's ``after`` checkpoint (a later step, an edit by hand)
is outside its window and never in its diff. An attempt without an ``after``
checkpoint (still running, or taken with ``checkpoints: irreversible``) has no diff:
what it changed cannot be told from what changed since.
"""

from __future__ import annotations

from dataclasses import dataclass

from trestle.core.change_windows import Attribution, Moment, attribute, spans
from trestle.core.errors import ConfigError
from trestle.core.events import StepAttemptEnded, StepStarted
from trestle.core.state import RunState
from trestle.lifecycle.checkpoints import Checkpoint, checkpoint_before, checkpoints
from trestle.store.base import Store
from trestle.workspace.left_out import LeftOut
from trestle.workspace.shadow import ShadowRepo


@dataclass(frozen=True)
class StepDiff:
    """What an attempt changed: ``text``, the unified diff of the paths it alone can
    have changed; ``shared``, paths changed while other steps ran too (with them),
    left out of ``text``; ``too_large``, files its ``after`` checkpoint did not store
    for their size (and its ``before`` did not hold as they are), so not in ``text``."""

    attempt: int
    text: str
    shared: dict[str, tuple[str, ...]]
    too_large: tuple[LeftOut, ...] = ()

    def too_large_note(self) -> str:
        """``left out of the checkpoint: big.txt (20 GiB, over 64 MiB)``, or ""."""
        if not self.too_large:
            return ""
        return "left out of the checkpoint: " + ", ".join(f.describe() for f in self.too_large)


def step_diff(
    repo: ShadowRepo, state: RunState, store: Store, step: str, attempt: int | None = None
) -> StepDiff:
    """The diff of ``step``'s attempt ``attempt`` (default: its latest with checkpoints).

    Raises:
        ConfigError: no such step or attempt, or the attempt has no checkpoint after it.
    """
    found = checkpoints(repo, state, store)
    before = checkpoint_before(found, state, step, attempt)
    n = before.attempt
    if not any((c.step, c.attempt, c.when) == (step, n, "after") for c in found):
        status = state.steps[step].status
        why = (
            "it is still running"
            if status == "running" and state.steps[step].attempt == n
            else "none was taken (the plan's `checkpoints` is not `every_step`, or the "
            "snapshot failed)"
        )
        raise ConfigError(
            f"run {state.run_id!r}: attempt {n} of {step!r} has no checkpoint after it: "
            f"{why}; what it changed cannot be told from what changed since"
        )
    moments = [_moment(c) for c in found]
    windows = spans(moments, (step, n), blind=_blind(state, store, step, n, found))
    changed = [
        (
            w,
            []
            if w.old.tree == w.new.tree
            else [c.path for c in repo.changes(w.old.commit, w.new.commit)],
        )
        for w in windows
    ]
    who: Attribution = attribute(changed)
    after = next(c for c in found if (c.step, c.attempt, c.when) == (step, n, "after"))
    text = repo.diff(before.commit, after.commit, paths=who.own) if who.own else ""
    # a file left out of both checkpoints with the same size is taken as unchanged: its
    # content was never read, so that is all that can be told
    already = {(f.path, f.size) for f in before.left_out}
    too_large = tuple(f for f in after.left_out if (f.path, f.size) not in already)
    return StepDiff(n, text, who.shared, too_large)


def _moment(c: Checkpoint) -> Moment:
    attempt = (c.step, c.attempt) if c.when != "kept" else None
    return Moment(attempt, c.when, c.commit, c.tree)


def _blind(
    state: RunState, store: Store, step: str, attempt: int, found: list[Checkpoint]
) -> set[str]:
    """Steps with an attempt that took no checkpoint and whose run, by the events,
    overlapped this attempt's: they may have written anything meanwhile."""
    seen = {(c.step, c.attempt) for c in found if c.when != "kept"}
    start: dict[tuple[str, int], int] = {}
    end: dict[tuple[str, int], int] = {}
    for e in store.events(state.run_id):
        if isinstance(e.event, StepStarted):
            start[(e.event.step, e.event.attempt)] = e.seq
        elif isinstance(e.event, StepAttemptEnded):
            end[(e.event.step, e.event.attempt)] = e.seq
    mine = (start.get((step, attempt), 0), end.get((step, attempt), state.seq + 1))
    blind = set()
    for key, began in start.items():
        if key in seen or key[0] == step:
            continue
        ended = end.get(key, state.seq + 1)
        if began < mine[1] and mine[0] < ended:
            blind.add(key[0])
    return blind
