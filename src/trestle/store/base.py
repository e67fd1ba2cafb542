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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from trestle.core.errors import ConfigError

if TYPE_CHECKING:
    from trestle.core.events import AnyEvent, RunCreated, StoredEvent

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
        """The summary read (see :func:`trestle.lifecycle.runs.summary_json`); older stores kept
        the counts alone."""
        data = json.loads(self.summary)
        if not isinstance(data.get("counts"), dict):
            return Summary(counts=data)
        return Summary(
            counts=data["counts"],
            parent=data.get("parent"),
            root=data.get("root"),
            interrupted=data.get("interrupted"),
            usage=data.get("usage"),
        )


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


def by_tree(rows: list[RunRow]) -> list[tuple[RunRow, int]]:
    """Rows grouped by tree: each root where it stands in ``rows``, then its children
    (oldest first, depth first), each with its depth. A child whose parent is not
    among ``rows`` (pruned) stands alone."""
    parents = {r.run_id: r.summarised().parent for r in rows}
    children: dict[str, list[RunRow]] = {}
    for r in sorted(rows, key=lambda r: r.created_at):
        parent = parents[r.run_id]
        if parent is not None and parent in parents:
            children.setdefault(parent, []).append(r)
    out: list[tuple[RunRow, int]] = []

    def place(row: RunRow, depth: int) -> None:
        out.append((row, depth))
        for child in children.get(row.run_id, []):
            place(child, depth + 1)

    for r in rows:
        if parents[r.run_id] is None or parents[r.run_id] not in parents:
            place(r, 0)
    return out


@dataclass(frozen=True)
class Summary:
    counts: dict[str, int]
    parent: str | None = None  # a delegated child's parent run, and its tree's root
    root: str | None = None
    interrupted: str | None = None  # what stopped its last driver, until one goes on
    # what its model calls used (trestle.core.usage.Spent's fields); None: no calls
    usage: dict[str, float] | None = None


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


# asked of a run's pending requests before another is queued: why not, or None
Refusal = Callable[[list[Request]], str | None]


def refuse_if(unless: Refusal | None, pending: Callable[[], list[Request]]) -> None:
    """Raise ``unless``'s answer about the pending requests as a ConfigError (inside
    the transaction that would queue another, so it is rolled back)."""
    if unless is not None and (why := unless(pending())) is not None:
        raise ConfigError(why)


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
    """The run's state as of ``seq``, and its monitors' (:mod:`trestle.monitors.saved`,
    empty when they could not be saved), signed by the engine that wrote it
    (:func:`trestle.trust.signing.snapshot_mac`)."""

    seq: int
    state_json: str
    monitors: bytes = b""
    mac: str = ""


@dataclass(frozen=True)
class Appended:
    """One batch for ``append``: events numbered from ``first_seq``, all or nothing."""

    events: Sequence[AnyEvent]
    first_seq: int
    status: str
    summary: str
    snapshot: Snapshot | None = None
    consumed_requests: Sequence[int] = ()


@dataclass(frozen=True)
class BoardEntry:
    """One write attempt on a group's blackboard, as its append-only log keeps it.

    An accepted write made ``key`` reach ``version``; a refused one (a conflict: the
    writer expected another version) records the version the key was at instead.
    ``value`` is JSON text: what was written, or what the refused writer tried.
    """

    id: int
    group: str
    key: str
    version: int
    value: str
    writer: str  # a run id, or any name a Python caller writes as
    step: str  # the writer's step ("" outside a step)
    call_key: str  # the tool call's idempotency key ("" outside an agent's call)
    at: float
    accepted: bool
    expected: int | None  # the version the writer expected (None: any)


@dataclass(frozen=True)
class BoardWrite:
    """A compare-and-set's outcome: the attempt as logged, and the key's accepted
    entry now (the new one when accepted; None when the key was never written)."""

    entry: BoardEntry
    current: BoardEntry | None

    @property
    def accepted(self) -> bool:
        return self.entry.accepted


@dataclass(frozen=True)
class BoardKey:
    """A key's current version, value and writer (None: every write to it was
    refused), and the conflicts logged on it."""

    key: str
    current: BoardEntry | None
    writes: int
    conflicts: int

    @classmethod
    def of(cls, key: str, entries: Sequence[BoardEntry]) -> BoardKey:
        """The summary of a key's log (every attempt on it)."""
        accepted = [e for e in entries if e.accepted]
        return cls(
            key=key,
            current=max(accepted, key=lambda e: e.version, default=None),
            writes=len(accepted),
            conflicts=len(entries) - len(accepted),
        )


@dataclass(frozen=True)
class Message:
    """A message between members of a group; ``body`` is JSON text.

    ``delivered_at`` and ``delivered_by`` are set once the recipient took it: a run
    in the same commit as the event that put it into its conversation.
    """

    id: str
    group: str
    sender: str
    recipient: str
    body: str
    sent_at: float
    reply_to: str | None = None
    delivered_at: float | None = None
    delivered_by: str | None = None


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

    def snapshot(self, run_id: str, *, monitors: bool = False) -> Snapshot | None:
        """The run's latest snapshot; its monitors' save (large, and only a resume needs
        it) is read only when ``monitors``."""
        ...

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
        unless: Refusal | None = None,
    ) -> int:
        """Queue a request for the run's driver; its id. With ``unless``: asked of the
        run's pending requests in the same transaction, whose answer (not None) is
        raised as a ConfigError and nothing is queued, so two people deciding at once
        cannot both be told their decision is queued."""
        ...

    def pending_requests(self, run_id: str) -> list[Request]: ...

    def delete_run(self, run_id: str) -> int:
        """Forget a run whole, in one transaction: its events, listing row, snapshot,
        lease and requests. Returns how many events it had; UnknownRunError if absent.
        Deciding which runs may go (finished, nobody driving them) is the caller's."""
        ...

    # --- groups: the blackboard and the mailboxes (see trestle.coordination.groups) -------------

    def board_write(
        self,
        group: str,
        key: str,
        value: str,
        *,
        expected: int | None,
        writer: str,
        step: str = "",
        call_key: str = "",
        now: float,
    ) -> BoardWrite:
        """Compare-and-set, atomically even across processes: accepted as the next
        version when the key is at ``expected`` (0: never written; None: whatever it
        is at), else logged as a conflict. Either way the attempt is logged."""
        ...

    def board_read(self, group: str, key: str) -> BoardEntry | None:
        """The key's accepted entry at its current version; None if never written."""
        ...

    def board_keys(self, group: str) -> list[BoardKey]:
        """Every key the group's board holds, by name."""
        ...

    def board_history(self, group: str, key: str | None = None) -> list[BoardEntry]:
        """Every write attempt on the board (or on one key), oldest first."""
        ...

    def send_message(self, message: Message) -> bool:
        """Record ``message``; False (and nothing changed) when its id is recorded already."""
        ...

    def messages(
        self,
        group: str,
        *,
        recipient: str | None = None,
        undelivered: bool = False,
        reply_to: str | None = None,
        limit: int | None = None,
    ) -> list[Message]:
        """The group's messages, oldest first, optionally only those to ``recipient``,
        not yet delivered, or answering ``reply_to``; the first ``limit`` of them."""
        ...

    def message(self, message_id: str) -> Message | None: ...

    def take_messages(
        self, group: str, recipient: str, *, by: str, now: float, reply_to: str | None = None
    ) -> list[Message]:
        """The messages to ``recipient`` not yet delivered (optionally only replies to
        ``reply_to``), marked delivered to ``by`` in the same transaction: a Python
        caller's receive. A run's deliveries are marked by the events it appends."""
        ...

    def groups(self) -> list[str]:
        """Every group with a board entry or a message, by name."""
        ...

    def close(self) -> None: ...


def delivered_ids(events: Sequence[AnyEvent]) -> list[str]:
    """The message ids a batch of a run's events delivers (``messages_delivered``):
    the store marks them delivered in the batch's own transaction."""
    from trestle.core.events import MessagesDelivered

    return [mid for e in events if isinstance(e, MessagesDelivered) for mid in e.message_ids]


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
    require_text(f"run {run_id!r}: the request's", **texts)


def require_text(owner: str, **texts: str | None) -> None:
    """:func:`require_storable` for any record: ``owner`` says whose texts they are
    (``"group 'g': the board write's"``); None stands for no text."""
    for name, text in texts.items():
        if text is None:
            continue
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ConfigError(
                f"{owner} {name} is not valid text (character "
                f"{exc.start + 1} is an unpaired surrogate, from bytes that are not UTF-8): "
                f"{text[:200]!r}"
            ) from None


def require_message(message: Message) -> None:
    """Every text of ``message`` storable (see :func:`require_text`)."""
    m = message
    require_text(
        f"group {m.group[:200]!r}: the message's",
        id=m.id,
        group=m.group,
        sender=m.sender,
        recipient=m.recipient,
        body=m.body,
        reply_to=m.reply_to,
    )
