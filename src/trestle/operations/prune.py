"""``trestle prune``: forget old runs, their events and their workspace checkpoints.

A run goes when its last event is older than the age asked for and it is finished
(succeeded, partial or cancelled). A run that waits for a human (``needs_human``), was
stopped by a budget or a monitor, or never finished (crashed, interrupted) can still go
on, so it is kept unless ``include_unfinished`` says otherwise; a run some live process
drives is always kept, also one a driver took up after it was chosen (its lease is held
while it goes). Its checkpoints (refs ``RUN/...`` in the run's shadow git
store: beside the store's file, or in its workspace for a store in a database) go
with it, then an SQLite store is compacted so the file shrinks (a database's space is
its server's autovacuum's to reuse). Its size before and after is
what the store says of itself (``size_bytes``: a database's), else its file's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from trestle.core.errors import LeaseHeldError, UnknownRunError
from trestle.lifecycle.lease import this_process
from trestle.store.base import RunRow, Store, owner_is_alive
from trestle.workspace.shadow import ShadowRepo, shadow_dir_for

FINISHED = frozenset({"succeeded", "partial", "cancelled"})


@dataclass(frozen=True)
class Choice:
    """Which runs are old enough to go, and which of those stay, and why."""

    remove: list[RunRow]
    kept_unfinished: list[RunRow]
    kept_driven: list[RunRow]


def choose(
    store: Store, *, older_than: float, now: float, include_unfinished: bool = False
) -> Choice:
    cutoff = now - older_than
    old = [r for r in store.runs() if r.updated_at < cutoff]
    driven = [r for r in old if _driven(store, r.run_id, now)]
    rest = [r for r in old if r not in driven]
    return Choice(
        remove=[r for r in rest if include_unfinished or r.status in FINISHED],
        kept_unfinished=[r for r in rest if not include_unfinished and r.status not in FINISHED],
        kept_driven=driven,
    )


def _driven(store: Store, run_id: str, now: float) -> bool:
    lease = store.lease(run_id)
    return lease is not None and lease.expires_at > now and owner_is_alive(lease.owner)


@dataclass
class Pruned:
    runs: list[RunRow] = field(default_factory=list)
    # chosen, then taken up by a driver (or moved on) before they went: kept
    driven: list[RunRow] = field(default_factory=list)
    events: int = 0
    checkpoints: int = 0
    bytes_before: int | None = None  # None: the store's size is not known
    bytes_after: int | None = None


def prune(store: Store, runs: list[RunRow]) -> Pruned:
    """Delete ``runs`` (from :func:`choose`) and their checkpoints; then compact."""
    done = Pruned(bytes_before=store_bytes(store))
    emptied: dict[Path, ShadowRepo] = {}  # the shadow stores that lost checkpoints
    for row in runs:
        _prune_one(store, row, done, emptied)
    for shadow in emptied.values():
        shadow.prune()
    compact = getattr(store, "compact", None)
    if callable(compact):
        compact()
    done.bytes_after = store_bytes(store)
    return done


def _prune_one(store: Store, row: RunRow, done: Pruned, emptied: dict[Path, ShadowRepo]) -> None:
    """Delete one chosen run and its checkpoints, holding its lease meanwhile: a driver
    that took the run up since it was chosen (a `trestle resume`) had its events and
    checkpoints deleted under it, its attempt's side effect left with no record."""
    try:
        store.run(row.run_id)
        lease = store.acquire_lease(
            row.run_id, this_process("trestle prune"), ttl=60.0, now=time.time()
        )
    except UnknownRunError:
        return  # gone already (another prune): nothing of it is left to delete
    except LeaseHeldError:
        done.driven.append(row)
        return
    try:
        if store.run(row.run_id).last_seq != row.last_seq or store.pending_requests(row.run_id):
            done.driven.append(row)  # it moved on meanwhile, or a human asked something of it
            return
        # its checkpoints first: a prune killed between the two leaves a run the next
        # prune finds and removes, not checkpoints no run names, kept for ever
        shadow_dir = shadow_dir_for(store, Path(row.workspace))
        if shadow_dir is not None and (shadow_dir / "objects").is_dir():
            # the repo's workspace only keys its stat cache; deleting refs never reads it
            shadow = ShadowRepo(shadow_dir, Path(row.workspace))
            deleted = len(shadow.delete(row.run_id))
            done.checkpoints += deleted
            if deleted:
                emptied[shadow_dir] = shadow
        done.events += store.delete_run(row.run_id)  # its lease with it
        done.runs.append(row)
    except UnknownRunError:
        return  # deleted meanwhile by another prune
    finally:
        if row not in done.runs:
            store.release_lease(row.run_id, lease.token)


def store_bytes(store: Store) -> int | None:
    """The store's size in bytes: what it says of itself (``size_bytes()``, which a
    database's store answers), else its file and write-ahead log; None when unknown
    (a store in memory, or a database that does not say)."""
    size_bytes = getattr(store, "size_bytes", None)
    if callable(size_bytes):
        size = size_bytes()
        return size if isinstance(size, int) else None
    path = getattr(store, "path", None)
    if not isinstance(path, Path):
        return None
    files = [path, Path(f"{path}-wal")]
    return sum(f.stat().st_size for f in files if f.exists())
