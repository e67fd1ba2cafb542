"""The store interface every backend implements (and the conformance suite checks).

A store keeps, per run: the append-only event stream, the latest state snapshot, a
status row for listings, the lease that says which process drives the run, and a
queue of human requests (retry, skip, approval decisions) that the driving process
turns into events.

Writes are fenced: ``append`` takes the lease token and refuses it if another process
has since taken the lease, so a stalled old owner cannot corrupt a run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from trestle.errors import ConfigError

if TYPE_CHECKING:
    from trestle.events import AnyEvent, RunCreated, StoredEvent

RequestKind = Literal["retry", "skip", "decision", "tell", "cancel"]
REQUEST_KINDS: tuple[RequestKind, ...] = ("retry", "skip", "decision", "tell", "cancel")


@dataclass(frozen=True)
class RunRow:
    """One line of ``trestle runs``: kept current in the same transaction as events."""

    run_id: str
    goal: str
    plan_path: str | None
    workspace: str
    status: str
    created_at: float
    updated_at: float
    last_seq: int
    summary: str  # JSON: counts by step status, and a child's parent and root

    def summarised(self) -> Summary:
        """The summary read (see :func:`trestle.runs.summary_json`); older stores kept
        the counts alone."""
        data = json.loads(self.summary)
        if not isinstance(data.get("counts"), dict):
            return Summary(counts=data)
        return Summary(counts=data["counts"], parent=data.get("parent"), root=data.get("root"))


def subtree(rows: Sequence[RunRow], run_id: str) -> list[tuple[RunRow, int]]:
    """``run_id``'s delegated descendants among ``rows``, depth first (oldest first
    among siblings), each with its depth below it (1: a child)."""
    kids: dict[str, list[RunRow]] = {}
    for r in sorted(rows, key=lambda r: r.created_at):
        parent = r.summarised().parent
        if parent is not None:
            kids.setdefault(parent, []).append(r)
    out: list[tuple[RunRow, int]] = []

    def place(parent: str, depth: int) -> None:
        for child in kids.get(parent, []):
            out.append((child, depth))
            place(child.run_id, depth + 1)

    place(run_id, 1)
    return out


@dataclass(frozen=True)
class Summary:
    counts: dict[str, int]
    parent: str | None = None  # a delegated child's parent run, and its tree's root
    root: str | None = None


@dataclass(frozen=True)
class Request:
    """A human's decision, waiting to be recorded by the run's driver.

    A ``decision`` (on an approval) carries its details and signature in ``payload``.
    """

    id: int
    run_id: str
    kind: RequestKind
    step: str
    reason: str
    created_at: float
    payload: str = ""


@dataclass(frozen=True)
class Owner:
    """Who holds a lease: a name for messages, and the pid/host to tell if it died."""

    name: str
    pid: int
    host: str


@dataclass(frozen=True)
class Lease:
    owner: Owner
    token: int
    expires_at: float


@dataclass(frozen=True)
class Snapshot:
    seq: int
    state_json: str


@dataclass(frozen=True)
class Appended:
    """One batch for ``append``: events numbered from ``first_seq``, all or nothing."""

    events: Sequence[AnyEvent]
    first_seq: int
    status: str
    summary: str
    snapshot: Snapshot | None = None
    consumed_requests: Sequence[int] = ()


class Store(Protocol):
    def create_run(self, event: RunCreated, *, summary: str) -> None:
        """Record a run's first event (seq 1) and its listing row."""
        ...

    def append(self, run_id: str, batch: Appended, *, token: int) -> None:
        """Commit a batch atomically; raise LeaseLostError if ``token`` is stale."""
        ...

    def events(self, run_id: str, after: int = 0, limit: int | None = None) -> list[StoredEvent]:
        """Up to ``limit`` events with seq > ``after``, in order; UnknownRunError if no
        such run."""
        ...

    def snapshot(self, run_id: str) -> Snapshot | None: ...

    def run(self, run_id: str) -> RunRow:
        """The run's listing row; UnknownRunError (with a did-you-mean) if absent."""
        ...

    def runs(self) -> list[RunRow]:
        """All runs, newest first."""
        ...

    def acquire_lease(self, run_id: str, owner: Owner, *, ttl: float, now: float) -> Lease:
        """Take the lease if free, expired, or held by a dead process; else LeaseHeldError."""
        ...

    def renew_lease(self, run_id: str, token: int, *, ttl: float, now: float) -> None: ...

    def release_lease(self, run_id: str, token: int) -> None: ...

    def lease(self, run_id: str) -> Lease | None: ...

    def add_request(
        self,
        run_id: str,
        kind: RequestKind,
        step: str,
        reason: str,
        *,
        now: float,
        payload: str = "",
    ) -> int: ...

    def pending_requests(self, run_id: str) -> list[Request]: ...

    def delete_run(self, run_id: str) -> int:
        """Forget a run whole, in one transaction: its events, listing row, snapshot,
        lease and requests. Returns how many events it had; UnknownRunError if absent.
        Deciding which runs may go (finished, nobody driving them) is the caller's."""
        ...

    def close(self) -> None: ...


def owner_is_alive(owner: Owner) -> bool:
    """False only when we can tell the holder died: same host, and no such process."""
    import os
    import socket

    if owner.host != socket.gethostname():
        return True
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def require_storable(run_id: str, **texts: str) -> None:
    """A request's text must be Unicode that encodes: a lone surrogate (what bytes that
    are not UTF-8 become in a command-line argument) is refused by name, before anything
    is written, instead of failing inside the write."""
    for name, text in texts.items():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ConfigError(
                f"run {run_id!r}: the request's {name} is not valid text (character "
                f"{exc.start + 1} is an unpaired surrogate, from bytes that are not UTF-8): "
                f"{text!r}"
            ) from None
