"""The notifier: notices derived from committed batches, recorded, then sent.

An engine calls :meth:`Notifier.committed` once a batch is durable, as it calls
telemetry (:mod:`trestle.telemetry.feed`). That call only queues the batch: the
notifier's own thread derives the batch's notices (:func:`trestle.core.notices.notices_for`),
catching the run up from the store first from the ledger's ``through`` (a batch
another process committed and never derived), records one delivery per (notice,
target) in the ledger, and sends what is due. A failed delivery is tried again after
``backoff_base``, doubling each time up to ``backoff_cap``, until ``max_attempts``;
every failure is recorded, and ``trestle health`` shows the targets that fail. The
run never waits for any of it, and an error here never stops a run: it is said once
on stderr.

On :meth:`close`, the notifier keeps sending what is due (and what falls due) for up
to ``drain`` seconds, then leaves the rest in the ledger, which the next notifier to
start (the next ``trestle`` command that drives a run, a Temporal worker) delivers.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trestle.core.events import AnyEvent, StoredEvent
from trestle.core.notices import Notice, notices_for, with_approvers
from trestle.core.state import RunState
from trestle.notifications.ledger import Delivery, Ledger, ledger_path
from trestle.notifications.payloads import message
from trestle.notifications.targets import (
    DESKTOP_TIMEOUT,
    DesktopTarget,
    NotifySettings,
    Target,
    load_settings,
)

# the store's events(run_id, after, limit): events with seq > after, at most limit
Reader = Callable[[str, int, int | None], Sequence[StoredEvent]]
Sender = Callable[[Target, Mapping[str, Any], Mapping[str, str]], None]
# the run's state as its engine acts on it, read from the store (for approver groups)
StateReader = Callable[[str], RunState]
# how long the thread sleeps with nothing queued and nothing due (a batch wakes it)
IDLE = 30.0
CLOSE_GRACE = 1.0  # past the drain, what close waits for the sender to stop
KEEP_DELIVERED = 30 * 86400.0  # seconds a delivered message stays in the ledger


@dataclass(frozen=True)
class _Batch:
    run_id: str
    first_seq: int
    events: Sequence[AnyEvent]
    read: Reader
    state: StateReader | None


@dataclass(frozen=True)
class _Swept:
    """Notices the clock raised for a run (its state read at ``seq``), not an event."""

    run_id: str
    seq: int
    notices: Sequence[Notice]


_CLOSE = object()


class Notifier:
    """Sends the notices of the batches it is handed to the settings' targets.

    Args:
        settings: the targets and the dashboard's URL (:mod:`.targets`).
        ledger: the ledger's file (default: beside ``notify.toml``).
        clock: wall-clock seconds; injected so tests control time.
        backoff_base, backoff_cap: the first retry's delay, and the longest.
        max_attempts: attempts before a delivery is given up (shown by health).
        drain: how long :meth:`close` keeps sending what is due.
        environ: where secrets to redact and SMTP passwords are read.
        sender: sends one message (default :func:`.senders.send`, loaded by the
            notifier's thread: urllib and smtplib are not imported for a run that
            sends nothing).
    """

    def __init__(
        self,
        settings: NotifySettings,
        *,
        ledger: Path | None = None,
        clock: Callable[[], float] = time.time,
        backoff_base: float = 5.0,
        backoff_cap: float = 600.0,
        max_attempts: int = 10,
        drain: float = 10.0,
        environ: Mapping[str, str] | None = None,
        sender: Sender | None = None,
    ) -> None:
        self.settings = settings
        self.ledger_path = ledger or ledger_path()
        self.clock = clock
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_attempts = max_attempts
        self.drain = drain
        self.environ = os.environ if environ is None else environ
        self._sender = sender
        # how long a delivery claimed for sending stays this process's: a send that
        # hangs ends by its target's timeout; one killed is due again after this
        self._claim_for = 3 * max((_timeout(t) for t in settings.targets.values()), default=10.0)
        self._queue: queue.Queue[object] = queue.Queue()
        self._said: set[str] = set()
        self._thread = threading.Thread(target=self._work, name="trestle-notify", daemon=True)
        self._thread.start()

    @classmethod
    def from_config(cls, path: Path | None = None) -> Notifier | None:
        """The notifier ``notify.toml`` asks for; None when it names no target."""
        settings = load_settings(path)
        if settings is None or not settings.targets:
            return None
        return cls(settings)

    def committed(
        self,
        run_id: str,
        first_seq: int,
        events: Sequence[AnyEvent],
        read: Reader,
        state: StateReader | None = None,
    ) -> None:
        """``events`` are durable as ``run_id``'s ``first_seq``..: queue them (never
        blocks). ``state`` reads the run's state, for the approver groups of an approval
        when a target names groups; without it, such an approval goes to every target
        that wants its kind. No events: the run is durable through ``first_seq - 1``,
        as a driver finds it when it takes the run up; what a driver killed before its
        notifier derived it left is derived then (its next batch would, but a run
        waiting for a human may commit none)."""
        self._queue.put(_Batch(run_id, first_seq, list(events), read, state))

    def swept(self, run_id: str, seq: int, notices: Sequence[Notice]) -> None:
        """Queue ``notices`` a sweep of the clock raised for ``run_id`` (its state read at
        ``seq``), such as an approval past its deadline; each is sent once per target by
        its dedup key, however often the sweep finds it."""
        if notices:
            self._queue.put(_Swept(run_id, seq, list(notices)))

    def close(self) -> None:
        """Derive what is queued, send what is due for up to ``drain`` seconds, stop."""
        self._queue.put(_CLOSE)
        # bounded: a delivery under way when the drain ends is left to its own deadline
        # (a receiver that never answered held the driver's exit, SIGTERM or not)
        self._thread.join(self.drain + CLOSE_GRACE)

    def _work(self) -> None:
        try:
            ledger = Ledger(self.ledger_path)
        except Exception as exc:
            self._say("open", f"notifications are off: the ledger cannot be opened: {exc!r}")
            return
        deadline: float | None = None
        self._guarded("prune", ledger.forget_delivered, self.clock() - KEEP_DELIVERED)
        try:
            while True:
                item = self._next(ledger, deadline)
                if item is _CLOSE:
                    deadline = self.clock() + self.drain
                elif isinstance(item, _Batch):
                    self._guarded("derive", self._derive, ledger, item)
                elif isinstance(item, _Swept):
                    self._guarded("derive", self._record_swept, ledger, item)
                self._guarded("send", self._send_due, ledger, deadline)
                if deadline is not None and self._queue.empty():
                    upcoming = ledger.next_due()
                    if upcoming is None or upcoming > deadline or self.clock() >= deadline:
                        return
        finally:
            ledger.close()

    def _next(self, ledger: Ledger, deadline: float | None) -> object:
        """The next queued item, waiting at most until a delivery falls due."""
        upcoming = ledger.next_due()
        wait = IDLE if upcoming is None else max(0.0, min(IDLE, upcoming - self.clock()))
        if deadline is not None:
            wait = max(0.0, min(wait, deadline - self.clock()))
        try:
            return self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None

    def _derive(self, ledger: Ledger, batch: _Batch) -> None:
        run_id, first = batch.run_id, batch.first_seq
        through = ledger.through(run_id)
        if through is None:  # a run first seen now: its history was never to be notified
            through = first - 1
        items: list[tuple[int, AnyEvent]] = []
        if through < first - 1:  # committed by a process that did not derive them
            items += [(s.seq, s.event) for s in batch.read(run_id, through, first - 1 - through)]
        items += [(first + i, e) for i, e in enumerate(batch.events) if first + i > through]
        notices = [n for seq, event in items for n in notices_for(run_id, seq, event)]
        notices = self._with_approvers(batch, notices)
        rows = []
        for notice in notices:
            payload = message(notice, self.settings.dashboard_url, self.environ)
            for name, target in self.settings.targets.items():
                if target.wants(notice):
                    rows.append((notice.dedup_key, name, payload))
        last = first + len(batch.events) - 1
        ledger.record(run_id, last, rows, now=self.clock())

    def _record_swept(self, ledger: Ledger, swept: _Swept) -> None:
        rows = [
            (notice.dedup_key, name, message(notice, self.settings.dashboard_url, self.environ))
            for notice in swept.notices
            for name, target in self.settings.targets.items()
            if target.wants(notice)
        ]
        # the run's derived events stay where they were; a run never seen before counts
        # as derived through now, as the first batch of one would
        through = ledger.through(swept.run_id)
        ledger.record(
            swept.run_id, swept.seq if through is None else through, rows, now=self.clock()
        )

    def _with_approvers(self, batch: _Batch, notices: list[Notice]) -> list[Notice]:
        """The approvals among ``notices`` with the groups that may decide them, when a
        target routes by groups (the run's state is read only then)."""
        wanted = any(t.groups for t in self.settings.targets.values())
        if not wanted or batch.state is None or all(n.approval is None for n in notices):
            return notices
        try:
            state = batch.state(batch.run_id)
        except Exception as exc:  # then every target that wants the kind is told
            self._say("groups", f"notifications could not read approver groups: {exc!r}")
            return notices
        return [with_approvers(n, state) for n in notices]

    def _send_due(self, ledger: Ledger, until: float | None = None) -> None:
        """Send what is due; closing (``until``), no more once the drain is over: the
        rest stay claimed until their claim lapses, for the next notifier."""
        from trestle.notifications.senders import DeliveryError, desktop_available, send

        sender = self._sender or send
        now = self.clock()
        for delivery in ledger.claim(now, now + self._claim_for):
            if until is not None and self.clock() >= until:
                break
            target = self.settings.targets.get(delivery.target)
            if target is None:  # a target since removed from notify.toml
                ledger.failed(
                    delivery, "no such target in notify.toml", now=self.clock(), retry_at=None
                )
                continue
            try:
                if isinstance(target, DesktopTarget) and not desktop_available(self.environ):
                    self._say("desktop", "notify-send is not installed: no desktop notifications")
                    ledger.failed(
                        delivery, "notify-send is not installed", now=self.clock(), retry_at=None
                    )
                    continue
                sender(target, delivery.payload, self.environ)
            except DeliveryError as exc:
                self._failed(ledger, delivery, str(exc))
            except Exception as exc:  # one delivery's failure, not the others'
                # a payload its sender cannot send (an unpaired surrogate a mail cannot
                # encode) stopped every delivery claimed with it, and stayed pending for
                # ever, said nowhere: failed like any other, it backs off, then gives up
                self._failed(ledger, delivery, f"cannot be sent: {exc!r}")
            else:
                ledger.delivered(delivery, now=self.clock())

    def _failed(self, ledger: Ledger, delivery: Delivery, why: str) -> None:
        """``delivery`` failed for ``why``: tried again after a backoff, up to
        ``max_attempts`` tries, then given up (shown by ``trestle health``)."""
        tries = delivery.attempts + 1
        delay = min(self.backoff_cap, self.backoff_base * 2 ** (tries - 1))
        retry_at = self.clock() + delay if tries < self.max_attempts else None
        ledger.failed(delivery, why, now=self.clock(), retry_at=retry_at)

    def _guarded(self, what: str, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # a notification must never stop a run
            self._say(what, f"notifications could not {what}: {exc!r}")

    def _say(self, what: str, text: str) -> None:
        if what not in self._said:
            self._said.add(what)
            sys.stderr.write(f"trestle: {text}\n")


def _timeout(target: Target) -> float:
    return DESKTOP_TIMEOUT if isinstance(target, DesktopTarget) else target.timeout
