"""The group tools: an agent's reach into its group's blackboard and mailboxes.

================  ======  ==========================================================
tool              nature  what it does
================  ======  ==========================================================
board_read        read    a key's value and version (0: never written)
board_write       call    compare-and-set: a stale ``expected_version`` is refused,
                          and the model told the current version and value
board_watch       read    wait until a key passes a version, or a timeout
send_message      call    a message to another member (a run id), maybe a reply,
                          maybe carrying the sender's handoff packet
receive_messages  read    the messages sent here not yet received, maybe waiting
================  ======  ==========================================================

They pass the same registry checks and the same gate as every tool. A run reaches
its group through :class:`~trestle.tools.base.GroupSeat` on the call's context.

What they did is recorded in the run's own events, in the commit of the call's end:
``board_written``, ``message_sent`` and ``messages_delivered``. That last one is what
makes a delivery exactly once: the messages a receive returns are marked delivered
(in the run's state and in the store) in the very commit that records what the model
was shown, so a crash before it leaves them undelivered (the read-only call is run
again and returns them then), and a crash after it replays the recorded result.
A message's id derives from the sending call's idempotency key, so a send the
store already holds is not sent twice.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import Field, JsonValue

from trestle.coordination.board import POLL_INTERVAL, Board, Letter, Mailbox, Written, poll_async
from trestle.coordination.groups import MAX_VERSION, message_id
from trestle.core.errors import ConfigError
from trestle.core.events import BoardWritten, MessagesDelivered, MessageSent
from trestle.core.handoff import carried, carrying, looks_carrying, render
from trestle.core.packets import sender_packet
from trestle.presentation.wording import counted
from trestle.tools.base import GroupSeat, Observation, Tool, ToolArgs, ToolContext, ToolFailure

MAX_TOOL_WAIT = 300.0  # seconds one watch or receive may wait
LINE_LEAST = 16  # characters of a received message's line at the least ("- ID from 'R': ")
VALUE_SHOWN = 2_000  # characters of a current value quoted back in a conflict


def _seat(ctx: ToolContext) -> GroupSeat:
    if ctx.group is None:
        raise ToolFailure("this run belongs to no group: there is no board or mailbox to use")
    return ctx.group


def _board(ctx: ToolContext) -> Board:
    seat = _seat(ctx)
    return Board(seat.store, seat.group, clock=seat.clock)


def _shown(value: Any, limit: int = VALUE_SHOWN) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


Key = Field(min_length=1, max_length=200, description="The board key.")


class BoardReadArgs(ToolArgs):
    key: str = Key


class BoardRead(Tool[BoardReadArgs]):
    name = "board_read"
    description = (
        "Read a key of your group's shared blackboard: its value and version (version 0: "
        "never written). Pass the version to board_write as expected_version."
    )
    nature = "read"
    arguments = BoardReadArgs

    async def run(self, ctx: ToolContext, args: BoardReadArgs) -> Observation:
        try:
            now = await asyncio.to_thread(_board(ctx).read, args.key)
        except ConfigError as exc:
            raise ToolFailure(str(exc)) from None
        if now is None:
            return Observation.success(
                f"{args.key!r} was never written (version 0)", data={"version": 0}
            )
        return Observation.success(
            f"{args.key!r} is at version {now.version} (written by {now.writer!r}"
            f"{f', step {now.step!r}' if now.step else ''}): {_shown(now.value, ctx.output_cap)}",
            data={"version": now.version},
        )


class BoardWriteArgs(ToolArgs):
    key: str = Key
    value: JsonValue = Field(description="The new value: any JSON value.")
    expected_version: int | None = Field(
        default=None,
        ge=0,
        le=MAX_VERSION,
        description="The version you read (0 for a key never written); the write is "
        "refused if the key has moved on since. Omit only to overwrite whatever is there.",
    )


class BoardWrite(Tool[BoardWriteArgs]):
    name = "board_write"
    description = (
        "Write a key of your group's shared blackboard if it is still at expected_version "
        "(compare-and-set). If another member wrote first, nothing is written and you are "
        "told the current version and value: merge and write again with that version."
    )
    nature = "call"
    arguments = BoardWriteArgs

    async def run(self, ctx: ToolContext, args: BoardWriteArgs) -> Observation:
        seat = _seat(ctx)
        try:
            done: Written = await asyncio.to_thread(
                _board(ctx).write,
                args.key,
                args.value,
                args.expected_version,
                writer=ctx.run_id,
                step=ctx.step_id,
                call_key=ctx.idempotency_key or "",
            )
        except ConfigError as exc:
            raise ToolFailure(str(exc)) from None
        record = BoardWritten(
            at=seat.clock(),
            step=ctx.step_id,
            group=seat.group,
            key=args.key,
            version=done.version,
            expected=args.expected_version,
            accepted=done.accepted,
            entry=done.entry,
        )
        data: dict[str, JsonValue] = {"accepted": done.accepted, "version": done.version}
        if done.accepted:
            return Observation(
                ok=True,
                content=f"wrote {args.key!r}: it is now at version {done.version}",
                data=data,
                records=(record,),
            )
        current = (
            "it was never written (version 0)"
            if done.version == 0
            else f"it is at version {done.version}: {_shown(done.value, ctx.output_cap // 2)}"
        )
        error = (
            f"conflict on {args.key!r}: you expected version {args.expected_version}, but {current}"
        )
        return Observation(
            ok=False,
            content=f"error: {error}. Nothing was written; merge with the current value and "
            f"write again with expected_version {done.version}.",
            error=error,
            data={**data, "conflict": True},
            records=(record,),
        )

    async def probe(self, ctx: ToolContext, args: BoardWriteArgs) -> str | None:
        seat = _seat(ctx)
        if not ctx.idempotency_key:
            return None
        log = await asyncio.to_thread(seat.store.board_history, seat.group, args.key)
        for entry in log:
            if entry.call_key == ctx.idempotency_key and entry.accepted:
                return f"the board's log holds this write: {args.key!r} at version {entry.version}"
        return None


class BoardWatchArgs(ToolArgs):
    key: str = Key
    after_version: int = Field(
        default=0, ge=0, le=MAX_VERSION, description="Wake when the key's version passes this one."
    )
    timeout: float = Field(
        default=30.0, ge=0, le=MAX_TOOL_WAIT, description="Seconds to wait at most."
    )


class BoardWatch(Tool[BoardWatchArgs]):
    name = "board_watch"
    description = (
        "Wait until a key of your group's blackboard is written past after_version (by "
        "another member), then read it; or until timeout seconds pass."
    )
    nature = "read"
    arguments = BoardWatchArgs

    async def run(self, ctx: ToolContext, args: BoardWatchArgs) -> Observation:
        try:
            now = await _board(ctx).watch_async(args.key, args.after_version, args.timeout)
        except ConfigError as exc:
            raise ToolFailure(str(exc)) from None
        if now is None:
            return Observation.success(
                f"no write to {args.key!r} past version {args.after_version} within "
                f"{args.timeout:g} s",
                data={"timed_out": True},
            )
        return Observation.success(
            f"{args.key!r} is at version {now.version} (written by {now.writer!r}): "
            f"{_shown(now.value, ctx.output_cap)}",
            data={"version": now.version},
        )


class SendMessageArgs(ToolArgs):
    to: str = Field(min_length=1, max_length=200, description="The recipient's address (a run id).")
    body: JsonValue = Field(description="The message: text or any JSON value.")
    reply_to: str | None = Field(
        default=None, max_length=200, description="The id of the message this answers."
    )
    handoff: bool = Field(
        default=False,
        description=(
            "Attach your handoff packet: what you found (with evidence), decided and "
            "produced, built from your run's record; the receiver can fetch what it lists."
        ),
    )


class SendMessage(Tool[SendMessageArgs]):
    name = "send_message"
    description = (
        "Send a message to another member of your group (by its address, a run id). Its "
        "id comes back: a reply names it in reply_to."
    )
    nature = "call"
    arguments = SendMessageArgs

    async def run(self, ctx: ToolContext, args: SendMessageArgs) -> Observation:
        seat = _seat(ctx)
        box = Mailbox(seat.store, seat.group, ctx.run_id, clock=seat.clock)
        mid = message_id(ctx.idempotency_key) if ctx.idempotency_key else None
        body: object = args.body
        if looks_carrying(body):  # only the runtime attaches packets, built from a record
            raise ToolFailure(
                "a body of exactly 'message' and 'handoff' is how a packet travels; to "
                "attach yours, send handoff: true with your message as the body"
            )
        if args.handoff:
            events = await asyncio.to_thread(seat.store.events, ctx.run_id)
            body = carrying(body, sender_packet(events))
        try:
            sent = await asyncio.to_thread(
                box.send, args.to, body, reply_to=args.reply_to, message_id=mid
            )
        except ConfigError as exc:
            raise ToolFailure(str(exc)) from None
        record = MessageSent(
            at=seat.clock(),
            step=ctx.step_id,
            group=seat.group,
            message_id=sent.id,
            recipient=args.to,
            reply_to=args.reply_to,
            new=sent.new,
        )
        return Observation(
            ok=True,
            content=f"sent message {sent.id} to {args.to!r}",
            data={"message_id": sent.id},
            records=(record,),
        )

    async def probe(self, ctx: ToolContext, args: SendMessageArgs) -> str | None:
        seat = _seat(ctx)
        if not ctx.idempotency_key:
            return None
        mid = message_id(ctx.idempotency_key)
        found = await asyncio.to_thread(seat.store.message, mid)
        return None if found is None else f"message {mid} to {found.recipient!r} is recorded"


class ReceiveMessagesArgs(ToolArgs):
    reply_to: str | None = Field(
        default=None, max_length=200, description="Only replies to this message id."
    )
    wait: float = Field(
        default=0.0,
        ge=0,
        le=MAX_TOOL_WAIT,
        description="Seconds to wait for a message when none is there yet (0: look once).",
    )


class ReceiveMessages(Tool[ReceiveMessagesArgs]):
    name = "receive_messages"
    description = (
        "Receive the messages sent to you that you have not received yet (each comes "
        "once), or only the replies to one message; optionally wait for one to arrive."
    )
    nature = "read"
    arguments = ReceiveMessagesArgs
    serial = True  # parallel steps of one run must not both take a message

    async def run(self, ctx: ToolContext, args: ReceiveMessagesArgs) -> Observation:
        seat = _seat(ctx)

        # no more than the model could be shown (a line is longer than LINE_LEAST): a
        # peer that sent a million messages costs a receive only those
        most = ctx.output_cap // LINE_LEAST + 1

        def waiting() -> list[Letter] | None:
            seen = set(seat.delivered())
            found = seat.store.messages(
                seat.group,
                recipient=ctx.run_id,
                undelivered=True,
                reply_to=args.reply_to,
                limit=len(seen) + most + 1,
            )
            letters = [Letter.of(m) for m in found if m.id not in seen]
            return letters or None

        letters = await poll_async(lambda: asyncio.to_thread(waiting), args.wait, POLL_INTERVAL)
        if not letters:
            what = f"no reply to {args.reply_to}" if args.reply_to else "no message"
            within = f" within {args.wait:g} s" if args.wait else ""
            return Observation.success(f"{what}{within}", data={"timed_out": True})
        shown: list[tuple[Letter, str]] = []
        size = 0
        for letter in letters:  # as many as the model is shown whole; the rest wait
            line = _letter_line(letter)
            if shown and size + len(line) > ctx.output_cap:
                break
            shown.append((letter, line))
            size += len(line) + 1
        left = len(letters) - len(shown)
        count = str(left) if len(letters) <= most else f"at least {left}"  # all were read
        more = f"\n({count} more waiting: receive again)" if left else ""
        record = MessagesDelivered(
            at=seat.clock(),
            step=ctx.step_id,
            group=seat.group,
            call_key=ctx.idempotency_key or "",
            message_ids=tuple(letter.id for letter, _ in shown),
        )
        return Observation(
            ok=True,
            content=f"{counted(len(shown), 'message')}:\n"
            + "\n".join(line for _, line in shown)
            + more,
            data={"message_ids": [letter.id for letter, _ in shown]},
            records=(record,),
        )


def _letter_line(letter: Letter) -> str:
    answer = f" (reply to {letter.reply_to})" if letter.reply_to else ""
    body, packet = carried(letter.body, letter.sender)
    line = f"- {letter.id} from {letter.sender!r}{answer}: {_shown(body, 1 << 20)}"
    return line if packet is None else f"{line}\n{render(packet)}"


def group_tools() -> list[Tool[Any]]:
    """Fresh instances of the group tools, read-only ones first."""
    return [BoardRead(), BoardWatch(), ReceiveMessages(), BoardWrite(), SendMessage()]
