"""Events are read and written as their own types, and only the types a process meets
are built.

A store lists each event's kind beside its body; :func:`decode_event` reads the body as
that kind's type, and whatever does not read as it goes over the union, as every event
did before. These tests hold the two ways to the same answers, and check in a fresh
interpreter that reading a run builds neither the union nor the types it never met,
nor, on importing the commands, a model that holds them all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
from pydantic import ValidationError

from trestle.core.events import (
    EVENT_ADAPTER,
    EVENT_TYPES,
    AnyEvent,
    StepSkipped,
    decode_event,
    event_json,
)
from trestle.formats.planfile import parse_plan
from trestle.lifecycle.runs import create_run
from trestle.store import SqliteStore


def test_every_member_of_the_union_is_named_by_its_kind() -> None:
    members = get_args(get_args(AnyEvent)[0])
    assert len(EVENT_TYPES) == len(members)
    assert set(EVENT_TYPES.values()) == set(members)
    for kind, member in EVENT_TYPES.items():
        assert member.model_fields["kind"].default == kind


def test_a_body_of_another_kind_reads_as_that_kind_for_the_store_to_name() -> None:
    event = StepSkipped(at=1.0, step="build", reason="a human skipped it")
    text = event_json(event)
    assert text == EVENT_ADAPTER.dump_json(event).decode()
    assert decode_event(text, "step_skipped") == event
    # listed as run_finished: read over the union, it comes back as what it holds
    assert decode_event(text, "run_finished") == event
    assert decode_event(text, "no_such_kind") == event


@pytest.mark.parametrize(
    "body",
    [
        '{"kind": "step_skipped", "at": 1.0}',  # a field missing
        '{"kind": "step_skipped", "at": 1.0, "step": "b", "reason": "r", "extra": 1}',
        '{"kind": "no_such_kind", "at": 1.0}',
        '{"at": 1.0}',
        "[1, 2]",
        "not json",
    ],
)
def test_a_damaged_body_raises_the_unions_own_error(body: str) -> None:
    with pytest.raises(ValidationError) as union:
        EVENT_ADAPTER.validate_json(body)
    with pytest.raises(ValidationError) as listed:
        decode_event(body, "step_skipped")
    assert listed.value.errors() == union.value.errors()


# the commands' modules are imported first: a model built at import that may hold any
# event (a dead letter's history did) builds every event type's schema into its own
READ_A_RUN = """
import json, sys
import pydantic
import trestle.cli.app, trestle.cli.drive, trestle.cli.reading
import trestle.core.events as events
from trestle.store import SqliteStore

store = SqliteStore(sys.argv[1])
[run] = store.runs()
read = [e.event.kind for e in store.events(run.run_id)]

def models(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from models(sub)

def event_types_in(model):
    schema = repr(model.__pydantic_core_schema__)
    return sum(f"events.{t.__name__}'>" in schema for t in events.EVENT_TYPES.values())

print(json.dumps({
    "read": read,
    "built": sorted(k for k, t in events.EVENT_TYPES.items() if t.__pydantic_complete__),
    "union": events._union.cache_info().currsize,
    "holding many": sorted(
        m.__qualname__
        for m in set(models(pydantic.BaseModel))
        if m.__pydantic_complete__ and event_types_in(m) > 3
    ),
}))
"""


def test_reading_a_run_builds_only_the_event_types_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SqliteStore(path)
    try:
        plan = parse_plan("steps: [{id: a, run: 'true'}]")
        create_run(store, plan, workspace=tmp_path, run_id="r1")
    finally:
        store.close()
    out = subprocess.run(
        [sys.executable, "-c", READ_A_RUN, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(out.stdout)
    assert found["read"] == ["run_created"]
    assert found["built"] == ["run_created"]
    assert found["union"] == 0
    assert found["holding many"] == []
