"""What a resume reads once and uses twice gives what reading it twice gave.

A read of events restores each long text once, however many of its events refer to
it (a saved conversation holds the texts of the results read beside it); the
monitors take the snapshot whose signature the load checked, and no other; a
session redacts a text its last request held once, wherever the text moves (a
compression keeps the latest turns behind a new summary). Real SQLite stores, a
real engine and tools; only the model is scripted.
"""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path

import pytest

from agent_helpers import (
    agent_settings,
    call,
    drive,
    fix_replies,
    sample_workspace,
    start_run,
    state_of,
)
from test_monitor_runtime import looping_replies, start
from trestle.agent.runtime import AgentPerformer
from trestle.core.events import AnyEvent, ContextCompressed
from trestle.core.records.agent import ContextBudget
from trestle.core.records.monitors import MonitorSettings
from trestle.engines.local import LocalEngine
from trestle.lifecycle.runs import Tail
from trestle.models import ScriptedModel
from trestle.monitors.hub import MonitorHub
from trestle.store import inflate, payloads
from trestle.store.sqlite import SqliteStore

SETTINGS = MonitorSettings(actions={"warning": "note", "critical": "note"})
TEXT = "".join(f"line {i}: what the tool printed\\n" for i in range(400))  # as JSON holds it


def _packed(*names: str) -> tuple[list[str], dict[bytes, bytes]]:
    """Bodies naming the long literals ``names`` (a JSON string each), and the stored
    payloads they refer to (a long one as pieces)."""
    found: dict[bytes, bytes] = {}
    bodies = []
    for name in names:
        body, stored = payloads.pack(f'{{"output":{name}}}', chunked=True)
        found.update(stored)
        bodies.append(body)
    return bodies, found


def test_a_text_restored_for_one_event_is_the_same_text_for_the_next() -> None:
    long, other = f'"{TEXT}"', f'"{TEXT[:900]}x"'
    bodies, found = _packed(long, other, long)
    asked: list[bytes] = []

    def literal(digest: bytes) -> bytes:
        asked.append(digest)
        return found[digest]

    alone = [payloads.unpack(body, found.__getitem__) for body in bodies]
    restored: dict[bytes, tuple[str, int]] = {}
    shared = [payloads.unpack(body, literal, restored) for body in bodies]
    assert shared == alone == [f'{{"output":{long}}}', f'{{"output":{other}}}', alone[0]]
    # the third event's text was not looked up (nor inflated) again
    assert len(asked) == len(set(asked))


def test_a_text_restored_once_still_counts_toward_each_events_ceiling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    long = f'"{TEXT}"'
    (body,), found = _packed(long)
    size = len(long.encode())
    restored: dict[bytes, tuple[str, int]] = {}
    payloads.unpack(body, found.__getitem__, restored)
    # the ceiling on one event's texts: twice the text fits, three times does not
    monkeypatch.setattr(inflate, "EVENT", 2 * size)
    assert payloads.unpack(body * 2, found.__getitem__, restored).count("line 399") == 2
    with pytest.raises(zlib.error, match="expand past"):
        payloads.unpack(body * 3, found.__getitem__, restored)


def test_a_snapshot_signed_with_another_key_is_not_handed_to_the_monitors(
    tmp_path: Path,
) -> None:
    store, run_id = start(tmp_path, SETTINGS)
    model = ScriptedModel(looping_replies(loops=8))
    engine = LocalEngine(store, performer=AgentPerformer(model), snapshot_every=5)
    asyncio.run(engine.run(run_id))
    snap = store.snapshot(run_id, monitors=True)
    assert snap is not None and snap.monitors and snap.seq > 5

    # the engine that made it: the monitors restore its save and catch up on the tail
    tail = Tail()
    state, _ = engine.load_vetted(run_id, tail)
    assert tail.snapshot is not None and tail.after == snap.seq
    mine, _ = asyncio.run(engine._hub(state, tail))
    assert mine is not None and mine.behind  # beside the first model call, or before
    mine.catch_up()  # the first event the monitors observe

    # another key: the load folded every event, and the monitors were fed them all
    other = LocalEngine(store, decision_key=b"another key, not the one that signed")
    tail = Tail()
    state, _ = other.load_vetted(run_id, tail)
    assert tail.snapshot is None and tail.after == 1
    theirs, missed = asyncio.run(other._hub(state, tail))
    whole = MonitorHub(SETTINGS)
    everything = [(s.seq, s.event) for s in store.events(run_id)]
    whole.replay(everything, state)
    assert theirs is not None and not theirs.behind and not missed
    assert vars(theirs.trace).keys() == vars(whole.trace).keys()
    assert theirs.trace.facts == whole.trace.facts == mine.trace.facts
    assert theirs.recorded == whole.recorded == mine.recorded


SECRET = "tok-5e4d3c2b1a09f8e7d6c5"


def test_a_secret_kept_across_a_compression_is_redacted_in_every_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOY_API_TOKEN", SECRET)
    store = SqliteStore(tmp_path / "store.db")
    workspace = sample_workspace(tmp_path)
    lines = "".join(f"note {i}: token {SECRET} in the parser's dict\n" for i in range(150))
    (workspace / "notes.txt").write_text(lines)
    settings = agent_settings(context=ContextBudget(limit=6000, keep_turns=1))
    run_id = start_run(store, workspace, settings=settings)
    reads = [call("read_file", path="notes.txt", call_id=f"r{i}") for i in range(4)]
    model = ScriptedModel([*reads, *fix_replies()])

    drive(store, run_id, model)

    events: list[AnyEvent] = [s.event for s in store.events(run_id)]
    compressed = [e for e in events if isinstance(e, ContextCompressed)]
    assert compressed  # a compression kept the latest read behind its summary
    request = model.requests[compressed[0].turn - 1]
    kept = [m.content for m in request.messages if "note 0:" in m.content]
    assert kept and all("[redacted: $DEPLOY_API_TOKEN]" in text for text in kept)
    sent = "\n".join(m.content for r in model.requests for m in r.messages)
    assert SECRET not in sent
    assert state_of(store, run_id).finished == "succeeded"
