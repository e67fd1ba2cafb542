"""``trestle board GROUP [KEY]`` and ``trestle mail GROUP``: what a group of runs shares.

Both only read: they open an existing store (never create one) and print tables, or
JSON with ``--json``. A group the store holds nothing of is an error naming the
nearest one it does hold (exit 2).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from trestle.cli.console import _opened, _out, _print_json
from trestle.cli.options import JsonOption, StoreOption
from trestle.presentation.wording import counted

if TYPE_CHECKING:
    from rich.table import Table

    from trestle.store.base import BoardEntry, BoardKey, Message

GroupArg = Annotated[
    str, typer.Argument(metavar="GROUP", help="The group: a plan's group:, or a run's id.")
]
VALUE_WIDTH = 60  # characters of a value or body shown in a table


def board(
    group: GroupArg,
    key: Annotated[
        str | None, typer.Argument(metavar="KEY", help="One key: its every write attempt.")
    ] = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """A group's blackboard: each key's version, value, last writer and conflicts; with
    KEY, that key's history, accepted writes and conflicts alike."""
    from trestle.coordination.board import known_group
    from trestle.coordination.groups import check_name
    from trestle.core.errors import ConfigError
    from trestle.core.field_problems import did_you_mean

    with _opened(store) as st:
        group = known_group(st, group)
        if key is None:
            keys = st.board_keys(group)
            if as_json:
                _print_json([_key_json(k) for k in keys])
            else:
                _out().print(_keys_table(keys) if keys else f"group {group!r}: the board is empty")
            return
        check_name(key, "the key")
        history = st.board_history(group, key)
        if not history:
            known = [k.key for k in st.board_keys(group)]
            raise ConfigError(
                f"group {group!r}: no key {key!r} on the board{did_you_mean(key, known)}"
            )
    if as_json:
        _print_json([_entry_json(e) for e in history])
    else:
        _out().print(_history_table(history))


def mail(
    group: GroupArg,
    to: Annotated[
        str | None, typer.Option("--to", metavar="ADDR", help="Only messages to ADDR.")
    ] = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """A group's messages, oldest first, each followed by its replies: who sent it to
    whom, and whether (and by whom) it was received."""
    from trestle.coordination.board import known_group
    from trestle.coordination.groups import check_name

    if to is not None:
        check_name(to, "--to")
    with _opened(store) as st:
        group = known_group(st, group)
        found = st.messages(group, recipient=to)
    threaded = _threads(found)
    if as_json:
        _print_json([{**_message_json(m), "depth": depth} for m, depth in threaded])
    elif not found:
        whom = f" to {to!r}" if to is not None else ""
        _out().print(f"group {group!r}: no messages{whom}")
    else:
        _out().print(_mail_table(threaded))


def _threads(messages: list[Message]) -> list[tuple[Message, int]]:
    """Each message followed by its replies (and theirs), depth-first, oldest first; a
    reply to a message not listed starts a thread of its own."""
    ids = {m.id for m in messages}
    replies: dict[str, list[Message]] = {}
    roots = []
    for m in messages:
        if m.reply_to is not None and m.reply_to in ids and m.reply_to != m.id:
            replies.setdefault(m.reply_to, []).append(m)
        else:
            roots.append(m)
    out: list[tuple[Message, int]] = []
    seen: set[str] = set()
    stack = [(m, 0) for m in reversed(roots)]
    while stack:
        m, depth = stack.pop()
        if m.id in seen:
            continue
        seen.add(m.id)
        out.append((m, depth))
        stack += [(r, depth + 1) for r in reversed(replies.get(m.id, []))]
    out += [(m, 0) for m in messages if m.id not in seen]  # a cycle of replies
    return out


def _value(text: str) -> Any:
    return json.loads(text)


def _cell(text: str) -> str:
    from trestle.presentation.wording import clip

    return clip(text, VALUE_WIDTH)


def _when(at: float | None) -> str:
    from trestle.presentation.wording import clock

    return "" if at is None else clock(at, "%m-%d %H:%M:%S")


def _key_json(k: BoardKey) -> dict[str, Any]:
    now = k.current
    return {
        "key": k.key,
        "version": 0 if now is None else now.version,
        "value": None if now is None else _value(now.value),
        "writer": None if now is None else now.writer,
        "step": None if now is None else now.step,
        "written_at": None if now is None else now.at,
        "writes": k.writes,
        "conflicts": k.conflicts,
    }


def _entry_json(e: BoardEntry) -> dict[str, Any]:
    return {
        "entry": e.id,
        "key": e.key,
        "outcome": "accepted" if e.accepted else "conflict",
        "version": e.version,
        "expected": e.expected,
        "value": _value(e.value),
        "writer": e.writer,
        "step": e.step,
        "call_key": e.call_key,
        "at": e.at,
    }


def _message_json(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "from": m.sender,
        "to": m.recipient,
        "reply_to": m.reply_to,
        "body": _value(m.body),
        "sent_at": m.sent_at,
        "delivered": m.delivered_at is not None,
        "delivered_at": m.delivered_at,
        "delivered_to": m.delivered_by,
    }


def _table(*columns: str) -> Table:
    from rich.table import Table

    table = Table(expand=False)
    for column in columns:
        table.add_column(column)
    return table


def _writer(writer: str, step: str) -> str:
    return f"{writer} ({step})" if step else writer


def _keys_table(keys: list[BoardKey]) -> Table:
    table = _table("key", "version", "value", "last writer", "at", "writes", "conflicts")
    for k in keys:
        now = k.current
        table.add_row(
            k.key,
            str(0 if now is None else now.version),
            "" if now is None else _cell(now.value),
            "" if now is None else _writer(now.writer, now.step),
            "" if now is None else _when(now.at),
            str(k.writes),
            str(k.conflicts),
        )
    conflicts = sum(k.conflicts for k in keys)
    writes = sum(k.writes for k in keys)
    table.caption = (
        f"{counted(len(keys), 'key')}, {counted(writes, 'write')}, {counted(conflicts, 'conflict')}"
    )
    return table


def _history_table(history: list[BoardEntry]) -> Table:
    table = _table("#", "outcome", "version", "expected", "writer", "at", "value")
    for e in history:
        table.add_row(
            str(e.id),
            "accepted" if e.accepted else "conflict",
            str(e.version),
            "any" if e.expected is None else str(e.expected),
            _writer(e.writer, e.step),
            _when(e.at),
            _cell(e.value),
        )
    conflicts = sum(not e.accepted for e in history)
    table.caption = f"{len(history) - conflicts} accepted, {counted(conflicts, 'conflict')}"
    return table


def _mail_table(threaded: list[tuple[Message, int]]) -> Table:
    table = _table("message", "from", "to", "sent", "received", "body")
    for m, depth in threaded:
        received = "no" if m.delivered_at is None else f"{_when(m.delivered_at)}"
        if m.delivered_by is not None and m.delivered_by != m.recipient:
            received += f" by {m.delivered_by}"
        table.add_row(
            "  " * depth + ("↳ " if depth else "") + m.id,
            m.sender,
            m.recipient,
            _when(m.sent_at),
            received,
            _cell(m.body),
        )
    return table
