"""Trestle's custom search attributes: how Temporal's own UI and ``temporal workflow
list --query`` find Trestle runs (``TrestleStatus = 'needs_human'``).

Temporal refuses an upsert of an attribute its namespace does not define (the workflow
task fails, and keeps failing), so a workflow sets them only when the client that
started it found them defined (``Drive.indexed``); ``trestle worker`` defines them
when it starts (:func:`register`), where the namespace lets it (the dev server does;
a cluster may need its admin: ``temporal operator search-attribute create``).
"""

from __future__ import annotations

import json
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributeUpdate
from temporalio.service import RPCError

from trestle.core.state import RunState

STATUS = SearchAttributeKey.for_keyword("TrestleStatus")  # running, needs_human, ...
GOAL = SearchAttributeKey.for_text("TrestleGoal")
WAITING = SearchAttributeKey.for_keyword_list("TrestleWaitingSteps")  # on a human
KEYS: tuple[SearchAttributeKey[Any], ...] = (
    STATUS,
    GOAL,
    WAITING,
)
WAITS = ("awaiting_approval", "escalated")  # a step's statuses that wait on a human
# Temporal refuses an attribute whose value passes 2 KiB as its payload holds it (JSON,
# where a character outside ASCII takes six bytes, \u65e5), then terminates the run's
# workflow. A goal and the waiting steps' list are cut to what fits, with room to spare.
VALUE_BYTES = 1800


def values(state: RunState) -> tuple[str, str, tuple[str, ...]]:
    """The run's status, goal and the steps waiting on a human, as the attributes
    hold them."""
    waiting = tuple(
        sid
        for sid, st in state.steps.items()
        if st.status in WAITS
        or (st.status == "deferred" and st.waiting_child is not None)
        or (st.status == "failed" and st.dead_lettered)
    )
    return state.finished or "running", _cut(state.plan.goal), _fitting(waiting)


def _json_size(text: str) -> int:
    return len(json.dumps(text)) - 2  # without its quotes


def _cut(text: str) -> str:
    """As much of ``text`` as fits in ``VALUE_BYTES`` of JSON."""
    size = 0
    for at, char in enumerate(text):
        size += _json_size(char)
        if size > VALUE_BYTES:
            return text[:at]
    return text


def _fitting(ids: tuple[str, ...]) -> tuple[str, ...]:
    """The first of ``ids`` whose list, as JSON, fits in ``VALUE_BYTES``: the run's
    status still says it needs a human when more wait than the attribute can name."""
    kept: list[str] = []
    size = 2  # the list's brackets
    for sid in ids:
        size += _json_size(sid) + 3  # quoted, and a comma
        if size > VALUE_BYTES:
            break
        kept.append(sid)
    return tuple(kept)


def updates(found: tuple[str, str, tuple[str, ...]]) -> list[SearchAttributeUpdate[Any]]:
    status, goal, waiting = found
    return [STATUS.value_set(status), GOAL.value_set(goal), WAITING.value_set(list(waiting))]


async def defined(client: Client) -> bool:
    """Whether the client's namespace defines every Trestle attribute."""
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
    except RPCError:
        return False
    return all(key.name in listed.custom_attributes for key in KEYS)


async def register(client: Client) -> str | None:
    """Define the attributes the namespace lacks; None when they are all defined, else
    why they are not (the runs are then not searchable by them, and nothing else
    changes)."""
    if await defined(client):
        return None
    wanted = {key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in KEYS}
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=wanted)
        )
    except RPCError as exc:
        return f"cannot define them ({exc}); an admin can: " + "; ".join(
            f"`temporal operator search-attribute create --name {key.name} "
            f"--type {_TYPE_NAMES[key.indexed_value_type]}`"
            for key in KEYS
        )
    return None


_TYPE_NAMES: dict[Any, str] = {
    IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD: "Keyword",
    IndexedValueType.INDEXED_VALUE_TYPE_TEXT: "Text",
    IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST: "KeywordList",
}
