"""When the local engine snapshots a run: every ``snapshot_every`` events, and with an
agent step's saved conversation once a quarter of that has passed since the last one.

A resume replays an agent step from its latest saved conversation: with the snapshot
taken in the commit that saves it, the events the load reads after the snapshot are
the ones the session replays, and none is read twice. A real SQLite store, engine and
tools; only the model is scripted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_helpers import drive, of_kind, recorded
from test_monitor_runtime import looping_replies, start
from trestle.core.events import AnyEvent, ConversationSaved, RunCreated
from trestle.core.records.monitors import MonitorSettings
from trestle.engines.local import LocalEngine
from trestle.models import ScriptedModel
from trestle.store.base import Appended
from trestle.store.memory import InMemoryStore
from trestle.store.sqlite import SqliteStore

NOTED = MonitorSettings(actions={"warning": "note", "critical": "note"})  # no pause


def _snapshots_by_commit(store: SqliteStore) -> list[tuple[list[AnyEvent], int, int | None]]:
    """Wrap ``store.append``: each commit's events, its first seq and its snapshot's seq."""
    commits: list[tuple[list[AnyEvent], int, int | None]] = []
    append = store.append

    def recording(run_id: str, batch: Appended, *, token: int) -> None:
        append(run_id, batch, token=token)
        snap = batch.snapshot.seq if batch.snapshot is not None else None
        commits.append((list(batch.events), batch.first_seq, snap))

    store.append = recording  # type: ignore[method-assign]
    return commits


def test_the_commit_that_saves_a_conversation_takes_a_snapshot_of_the_run(
    tmp_path: Path,
) -> None:
    store, run_id = start(tmp_path, NOTED)
    commits = _snapshots_by_commit(store)
    drive(store, run_id, ScriptedModel(looping_replies(loops=90)))
    last_snapshot, taken_with_saves = 0, 0
    for events, first, snap in commits:
        last = first + len(events) - 1
        if of_kind(events, ConversationSaved) and last - last_snapshot >= 25:
            assert snap == last, f"no snapshot with the save committed at seqs {first}-{last}"
            taken_with_saves += 1
        if snap is not None:
            assert snap == last
            last_snapshot = snap
    assert taken_with_saves >= 2, commits  # it saves three times
    # and the run, read back through its latest snapshot, is the one recorded
    assert store.snapshot(run_id) is not None
    assert isinstance(recorded(store, run_id)[0], RunCreated)
    store.close()


@pytest.mark.parametrize(
    ("since", "steps", "saves", "due"),
    [
        (99, 3, False, False),
        (100, 3, False, True),  # every snapshot_every events
        (24, 3, True, False),  # a save too soon after the last snapshot waits
        (25, 3, True, True),  # a save a quarter of the way
        (150, 200, False, False),  # a wide plan: spaced by its size
        (200, 200, False, True),
        (49, 200, True, False),  # and a save a quarter of that
        (50, 200, True, True),
    ],
)
def test_when_a_snapshot_is_due(since: int, steps: int, saves: bool, due: bool) -> None:
    engine = LocalEngine(InMemoryStore(), snapshot_every=100, telemetry=None, notifier=None)
    batch: list[AnyEvent] = []
    if saves:
        batch.append(
            ConversationSaved(at=1.0, step="s", round=1, turn=20, iteration=20, messages=())
        )
    try:
        assert engine._snapshot_due(since, steps, batch) is due
    finally:
        engine.close()
