"""An in-memory store for tests and embedding: same contract as SQLite, no durability."""

from __future__ import annotations

import difflib
import threading
from dataclasses import replace

from trestle.core.errors import LeaseHeldError, LeaseLostError, RunExistsError, UnknownRunError
from trestle.core.events import RunCreated, StoredEvent
from trestle.store.base import (
    Appended,
    BoardEntry,
    BoardKey,
    BoardWrite,
    Lease,
    Message,
    Owner,
    Refusal,
    Request,
    RequestKind,
    RunRow,
    Snapshot,
    delivered_ids,
    owner_is_alive,
    refuse_if,
    require_message,
    require_storable,
    require_text,
)


class InMemoryStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, RunRow] = {}
        self._events: dict[str, list[StoredEvent]] = {}
        self._snapshots: dict[str, Snapshot] = {}
        self._leases: dict[str, Lease] = {}
        self._requests: list[tuple[Request, bool]] = []
        self._board: list[BoardEntry] = []
        self._messages: dict[str, Message] = {}  # in the order sent

    def create_run(self, event: RunCreated, *, summary: str) -> None:
        with self._lock:
            if event.run_id in self._runs:
                raise RunExistsError(f"run {event.run_id!r} exists")
            self._runs[event.run_id] = RunRow(
                run_id=event.run_id,
                goal=event.plan.goal,
                plan_path=event.plan_path,
                workspace=event.workspace,
                status="created",
                created_at=event.at,
                updated_at=event.at,
                last_seq=1,
                summary=summary,
            )
            self._events[event.run_id] = [StoredEvent(run_id=event.run_id, seq=1, event=event)]

    def append(self, run_id: str, batch: Appended, *, token: int) -> None:
        with self._lock:
            lease = self._leases.get(run_id)
            if lease is None or lease.token != token:
                raise LeaseLostError(
                    f"run {run_id!r}: another process took over the run; this one stops"
                )
            stream = self._events[run_id]
            if stream[-1].seq + 1 != batch.first_seq:
                raise ValueError(f"run {run_id!r}: seq {batch.first_seq} out of order")
            stream += [
                StoredEvent(run_id=run_id, seq=seq, event=e)
                for seq, e in enumerate(batch.events, start=batch.first_seq)
            ]
            row = self._runs[run_id]
            self._runs[run_id] = replace(
                row,
                status=batch.status,
                last_seq=stream[-1].seq,
                summary=batch.summary,
                updated_at=batch.events[-1].at if batch.events else row.updated_at,
            )
            if batch.snapshot is not None:
                self._snapshots[run_id] = batch.snapshot
            consumed = set(batch.consumed_requests)
            self._requests = [(r, done or r.id in consumed) for r, done in self._requests]
            for mid in delivered_ids(batch.events):
                found = self._messages.get(mid)
                if found is not None and found.delivered_at is None:
                    at = batch.events[-1].at
                    self._messages[mid] = replace(found, delivered_at=at, delivered_by=run_id)

    def events(self, run_id: str, after: int = 0, limit: int | None = None) -> list[StoredEvent]:
        self.run(run_id)
        with self._lock:
            # seq n sits at index n - 1: streams are dense from 1
            return self._events[run_id][after : None if limit is None else after + limit]

    def snapshot(self, run_id: str, *, monitors: bool = False) -> Snapshot | None:
        found = self._snapshots.get(run_id)
        return found if found is None or monitors else replace(found, monitors=b"")

    def run(self, run_id: str) -> RunRow:
        try:
            return self._runs[run_id]
        except KeyError:
            close = difflib.get_close_matches(run_id, list(self._runs), n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UnknownRunError(f"no run {run_id!r} in memory{hint}") from None

    def runs(self) -> list[RunRow]:
        return sorted(self._runs.values(), key=lambda r: r.created_at, reverse=True)

    def acquire_lease(self, run_id: str, owner: Owner, *, ttl: float, now: float) -> Lease:
        with self._lock:
            held = self._leases.get(run_id)
            if held is not None and held.expires_at > now and owner_is_alive(held.owner):
                raise LeaseHeldError(
                    f"run {run_id!r} is being driven by {held.owner.name} "
                    f"(pid {held.owner.pid} on {held.owner.host})"
                )
            lease = Lease(owner=owner, token=(held.token + 1) if held else 1, expires_at=now + ttl)
            self._leases[run_id] = lease
            return lease

    def renew_lease(self, run_id: str, token: int, *, ttl: float, now: float) -> None:
        with self._lock:
            held = self._leases.get(run_id)
            if held is None or held.token != token:
                raise LeaseLostError(f"run {run_id!r}: lease lost to another process")
            self._leases[run_id] = replace(held, expires_at=now + ttl)

    def release_lease(self, run_id: str, token: int) -> None:
        with self._lock:
            held = self._leases.get(run_id)
            if held is not None and held.token == token:
                self._leases[run_id] = replace(held, expires_at=0.0)

    def lease(self, run_id: str) -> Lease | None:
        return self._leases.get(run_id)

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
        require_storable(run_id, step=step, reason=reason, payload=payload)
        self.run(run_id)
        with self._lock:
            refuse_if(unless, lambda: self.pending_requests(run_id))
            request = Request(
                id=len(self._requests) + 1,
                run_id=run_id,
                kind=kind,
                step=step,
                reason=reason,
                created_at=now,
                payload=payload,
            )
            self._requests.append((request, False))
            return request.id

    def pending_requests(self, run_id: str) -> list[Request]:
        return [r for r, done in self._requests if r.run_id == run_id and not done]

    def delete_run(self, run_id: str) -> int:
        self.run(run_id)
        with self._lock:
            del self._runs[run_id]
            self._snapshots.pop(run_id, None)
            self._leases.pop(run_id, None)
            self._requests = [(r, done) for r, done in self._requests if r.run_id != run_id]
            return len(self._events.pop(run_id))

    # --- groups: the blackboard and the mailboxes ------------------------------------

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
        owner = f"group {group[:200]!r}: the board write's"
        require_text(owner, group=group, key=key, value=value, writer=writer, step=step)
        with self._lock:
            current = self._current(group, key)
            at = 0 if current is None else current.version
            accepted = expected is None or expected == at
            entry = BoardEntry(
                id=len(self._board) + 1,
                group=group,
                key=key,
                version=at + 1 if accepted else at,
                value=value,
                writer=writer,
                step=step,
                call_key=call_key,
                at=now,
                accepted=accepted,
                expected=expected,
            )
            self._board.append(entry)
            return BoardWrite(entry=entry, current=entry if accepted else current)

    def _current(self, group: str, key: str) -> BoardEntry | None:
        accepted = [e for e in self._board if e.group == group and e.key == key and e.accepted]
        return accepted[-1] if accepted else None

    def board_read(self, group: str, key: str) -> BoardEntry | None:
        with self._lock:
            return self._current(group, key)

    def board_keys(self, group: str) -> list[BoardKey]:
        by_key: dict[str, list[BoardEntry]] = {}
        for entry in self.board_history(group):
            by_key.setdefault(entry.key, []).append(entry)
        return [BoardKey.of(key, entries) for key, entries in sorted(by_key.items())]

    def board_history(self, group: str, key: str | None = None) -> list[BoardEntry]:
        with self._lock:
            return [e for e in self._board if e.group == group and (key is None or e.key == key)]

    def send_message(self, message: Message) -> bool:
        require_message(message)
        with self._lock:
            if message.id in self._messages:
                return False
            self._messages[message.id] = message
            return True

    def messages(
        self,
        group: str,
        *,
        recipient: str | None = None,
        undelivered: bool = False,
        reply_to: str | None = None,
        limit: int | None = None,
    ) -> list[Message]:
        with self._lock:
            found = [
                m
                for m in self._messages.values()
                if m.group == group
                and (recipient is None or m.recipient == recipient)
                and not (undelivered and m.delivered_at is not None)
                and (reply_to is None or m.reply_to == reply_to)
            ]
        return found if limit is None else found[:limit]

    def message(self, message_id: str) -> Message | None:
        return self._messages.get(message_id)

    def take_messages(
        self, group: str, recipient: str, *, by: str, now: float, reply_to: str | None = None
    ) -> list[Message]:
        taken = self.messages(group, recipient=recipient, undelivered=True, reply_to=reply_to)
        with self._lock:
            taken = [m for m in taken if self._messages[m.id].delivered_at is None]
            for m in taken:
                self._messages[m.id] = replace(m, delivered_at=now, delivered_by=by)
            return [self._messages[m.id] for m in taken]

    def groups(self) -> list[str]:
        with self._lock:
            return sorted(
                {e.group for e in self._board} | {m.group for m in self._messages.values()}
            )

    def close(self) -> None:
        pass
