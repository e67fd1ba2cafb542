"""Groups of runs from Python: a shared blackboard and mailboxes, over one store.

```python
group = Group(SqliteStore(".trestle/trestle.db"), "release")
seen = group.board.read("version")                       # None: never written
done = group.board.write("version", "1.2.0", expected_version=seen.version if seen else 0)
if not done.accepted:                                    # someone wrote first
    print("now", done.version, done.value)
box = group.mailbox("planner")
sent = box.send("tester", {"run": "the suite"})
reply = box.wait_reply(sent.id, timeout=30)              # None: no reply within 30 s
```

Every write attempt is logged (accepted or a conflict) and every message is durable.
Agents reach the same records through their tools (:mod:`trestle.tools.group`), which
also record what they did in their own run's events. Names and values are checked
(:mod:`trestle.coordination.groups`) before anything is written: a bad one is a
:class:`~trestle.core.errors.ConfigError` and nothing is recorded.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from secrets import token_hex
from typing import Any, TypeVar

from trestle.coordination.groups import check_name, check_version, check_wait, value_json
from trestle.core.errors import UnknownGroupError
from trestle.store.base import BoardEntry, Message, Store

T = TypeVar("T")
POLL_INTERVAL = 0.05  # seconds between looks at the store while waiting
PYTHON_WRITER = "python"


@dataclass(frozen=True)
class BoardValue:
    """A key's value at a version, and who wrote it (``step`` empty outside a run)."""

    key: str
    version: int
    value: Any
    writer: str
    step: str
    at: float

    @classmethod
    def of(cls, entry: BoardEntry) -> BoardValue:
        value = json.loads(entry.value)
        return cls(entry.key, entry.version, value, entry.writer, entry.step, entry.at)


@dataclass(frozen=True)
class Written:
    """A compare-and-set's outcome. Accepted: the key is now at ``version``, holding
    ``value``. Refused (a conflict, logged): ``version`` and ``value`` are the key's
    current ones (0 and None when it was never written), for the writer to retry on.
    ``entry`` numbers the attempt in the board's log."""

    key: str
    accepted: bool
    version: int
    value: Any
    expected: int | None
    entry: int


@dataclass(frozen=True)
class Letter:
    """A message as its recipient reads it; ``body`` is the JSON value sent."""

    id: str
    sender: str
    recipient: str
    body: Any
    sent_at: float
    reply_to: str | None = None

    @classmethod
    def of(cls, m: Message) -> Letter:
        return cls(m.id, m.sender, m.recipient, json.loads(m.body), m.sent_at, m.reply_to)


@dataclass(frozen=True)
class Sent:
    """A message sent: its id (for a reply to refer to), and False in ``new`` when a
    message of that id was recorded already (then nothing changed)."""

    id: str
    new: bool


class Board:
    """A group's blackboard: versioned keys, compare-and-set writes, watches."""

    def __init__(self, store: Store, group: str, *, clock: Callable[[], float] = time.time):
        self.store, self.group, self.clock = store, check_name(group, "the group"), clock

    def read(self, key: str) -> BoardValue | None:
        """The key's current value; None if it was never written."""
        entry = self.store.board_read(self.group, check_name(key, "the key"))
        return None if entry is None else BoardValue.of(entry)

    def write(
        self,
        key: str,
        value: Any,
        expected_version: int | None = None,
        *,
        writer: str = PYTHON_WRITER,
        step: str = "",
        call_key: str = "",
    ) -> Written:
        """Write ``value`` if the key is at ``expected_version`` (0: never written;
        None: whatever version it is at). A stale write is refused, logged as a
        conflict, and told the current version and value."""
        check_name(key, "the key")
        check_name(writer, "the writer")
        if expected_version is not None:
            check_version(expected_version, "expected_version")
        text = value_json(value, f"the value of {key[:80]!r}")
        done = self.store.board_write(
            self.group,
            key,
            text,
            expected=expected_version,
            writer=writer,
            step=step,
            call_key=call_key,
            now=self.clock(),
        )
        current = done.current
        return Written(
            key=key,
            accepted=done.accepted,
            version=0 if current is None else current.version,
            value=None if current is None else json.loads(current.value),
            expected=expected_version,
            entry=done.entry.id,
        )

    def watch(
        self,
        key: str,
        after_version: int = 0,
        timeout: float = 30.0,
        *,
        interval: float = POLL_INTERVAL,
    ) -> BoardValue | None:
        """Wait until the key passes ``after_version`` (written by any process); its
        value then, or None when ``timeout`` seconds pass first."""
        check_wait(timeout, "the watch's timeout")
        check_version(after_version, "after_version")
        return poll_sync(lambda: self._past(key, after_version), timeout, interval)

    async def watch_async(
        self,
        key: str,
        after_version: int = 0,
        timeout: float = 30.0,
        *,
        interval: float = POLL_INTERVAL,
    ) -> BoardValue | None:
        """:meth:`watch` for async code: the store is read in a worker thread."""
        check_wait(timeout, "the watch's timeout")
        check_version(after_version, "after_version")
        return await poll_async(
            lambda: asyncio.to_thread(self._past, key, after_version), timeout, interval
        )

    def _past(self, key: str, after_version: int) -> BoardValue | None:
        now = self.read(key)
        return now if now is not None and now.version > after_version else None

    def history(self, key: str | None = None) -> list[BoardEntry]:
        """Every write attempt, accepted or a conflict, oldest first."""
        if key is not None:
            check_name(key, "the key")
        return self.store.board_history(self.group, key)


class Mailbox:
    """One member's mailbox in a group: send to others, receive what was sent to it.

    ``address`` is a run id for an agent run, or any name a Python caller uses.
    """

    def __init__(
        self, store: Store, group: str, address: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store, self.clock = store, clock
        self.group = check_name(group, "the group")
        self.address = check_name(address, "the address")

    def send(
        self, to: str, body: Any, *, reply_to: str | None = None, message_id: str | None = None
    ) -> Sent:
        """Send ``body`` (a JSON value) to ``to``. A ``message_id`` of your own makes a
        repeated send (after a crash, say) a no-op; the default is a fresh one."""
        message = Message(
            id=check_name(message_id, "the message id") if message_id else f"m-{token_hex(16)}",
            group=self.group,
            sender=self.address,
            recipient=check_name(to, "the recipient"),
            body=value_json(body, "the message's body"),
            sent_at=self.clock(),
            reply_to=None if reply_to is None else check_name(reply_to, "reply_to"),
        )
        return Sent(id=message.id, new=self.store.send_message(message))

    def receive(self, *, reply_to: str | None = None) -> list[Letter]:
        """The messages sent here not yet received (only replies to ``reply_to``, if
        given), oldest first; each is handed out once."""
        taken = self.store.take_messages(
            self.group, self.address, by=self.address, now=self.clock(), reply_to=reply_to
        )
        return [Letter.of(m) for m in taken]

    def wait_reply(
        self, message_id: str, timeout: float = 30.0, *, interval: float = POLL_INTERVAL
    ) -> Letter | None:
        """The first reply to ``message_id`` (received, so handed out once); None when
        none comes within ``timeout`` seconds."""
        check_wait(timeout, "the reply's timeout")
        check_name(message_id, "the message id")

        def replied() -> Letter | None:
            return next(iter(self.receive(reply_to=message_id)), None)

        return poll_sync(replied, timeout, interval)

    def pending(self) -> list[Letter]:
        """What :meth:`receive` would hand out now, without taking it."""
        found = self.store.messages(self.group, recipient=self.address, undelivered=True)
        return [Letter.of(m) for m in found]


class Group:
    """A group of runs, by name: its blackboard and its members' mailboxes.

    Args:
        store: the store the group's records are kept in (the runs' store).
        name: the group (a plan's ``group:``, or a run's id).
        clock: wall-clock seconds, injected for tests.
    """

    def __init__(self, store: Store, name: str, *, clock: Callable[[], float] = time.time):
        self.store, self.name, self.clock = store, check_name(name, "the group"), clock
        self.board = Board(store, name, clock=clock)

    def mailbox(self, address: str) -> Mailbox:
        """The mailbox of ``address`` (a run id, or a name of your own)."""
        return Mailbox(self.store, self.name, address, clock=self.clock)

    def messages(self, *, to: str | None = None) -> list[Message]:
        """Every message of the group (or to one address), delivered or not."""
        return self.store.messages(self.name, recipient=to)


def known_group(store: Store, name: str) -> str:
    """``name`` if the store holds anything of that group, else an UnknownGroupError
    naming the nearest group it does hold."""
    from trestle.core.field_problems import did_you_mean

    check_name(name, "the group")
    groups = store.groups()
    if name not in groups:
        hint = did_you_mean(name, groups)
        raise UnknownGroupError(f"no group {name!r} in the store{hint}")
    return name


def poll_sync(look: Callable[[], T | None], timeout: float, interval: float) -> T | None:
    deadline = time.monotonic() + timeout
    while True:
        found = look()
        left = deadline - time.monotonic()
        if found is not None or left <= 0:
            return found
        time.sleep(min(interval, left))


async def poll_async(
    look: Callable[[], Awaitable[T | None]], timeout: float, interval: float
) -> T | None:
    deadline = time.monotonic() + timeout
    while True:
        found = await look()
        left = deadline - time.monotonic()
        if found is not None or left <= 0:
            return found
        await asyncio.sleep(min(interval, left))
