"""The monitors' state saved with a snapshot: a resume restores it and feeds the tail.

The stream is a real agent run's (real engine, SQLite store, workspace and tools; a
scripted model that loops, so the monitors raise alerts). Cut anywhere, saved and
restored, the monitors raise exactly what feeding the whole stream raises.
"""

from __future__ import annotations

import asyncio
import functools
import pickle
import random
import shutil
import sqlite3
import threading
import time
from collections import deque
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from agent_helpers import call, drive, recorded, state_of
from test_monitor_runtime import looping_replies, start
from trestle.agent.runtime import AgentPerformer
from trestle.core.events import AlertRaised, AnyEvent, RunCreated, RunResumed
from trestle.core.records.monitors import Alert, MonitorSettings
from trestle.core.state import RunState
from trestle.engines.local import LocalEngine
from trestle.engines.stop import Stop
from trestle.lifecycle.runs import Tail, signed_snapshot, trusted, trusted_monitors
from trestle.models import FunctionModel, ScriptedModel
from trestle.monitors import saved
from trestle.monitors.alerts import Monitor
from trestle.monitors.catalog import default_monitors
from trestle.monitors.hub import QUEUED, MonitorFactory, MonitorHub
from trestle.monitors.trace import Observation, RunFacts
from trestle.store import SqliteStore

SETTINGS = MonitorSettings(actions={"warning": "note", "critical": "note"})


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[int, AnyEvent]]:
    """A looping agent run's events, without the alerts it recorded (so feeding them
    raises every alert again)."""
    store, run_id = start(tmp_path_factory.mktemp("loop"), SETTINGS)
    drive(store, run_id, ScriptedModel(looping_replies(loops=8)))
    events = [(i + 1, e) for i, e in enumerate(recorded(store, run_id))]
    assert any(isinstance(e, AlertRaised) for _, e in events)  # the run does alert
    return [(seq, e) for seq, e in events if not isinstance(e, AlertRaised)]


def _keys(alerts: list[AlertRaised]) -> list[tuple[str, str]]:
    return [(a.alert.key, a.action) for a in alerts]


def _plain(value: Any) -> Any:
    """A value as plain data, sets sorted: two monitors' states compare equal when
    they hold the same things, whatever order their sets were filled in."""
    if isinstance(value, set | frozenset):
        return sorted(map(repr, value))
    if isinstance(value, dict):
        return {repr(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if hasattr(value, "__dict__") and not callable(value):
        return {k: _plain(v) for k, v in vars(value).items()}
    return repr(value)


def _state(hub: MonitorHub) -> Any:
    return _plain([saved._state_of(m) for m in hub.monitors] + [vars(hub.trace), hub.recorded])


def test_saved_at_any_seq_and_restored_the_monitors_raise_what_the_whole_stream_does(
    stream: list[tuple[int, AnyEvent]],
) -> None:
    state = state_for(stream)
    whole = MonitorHub(SETTINGS)
    expected = _keys(whole.replay(stream, state))
    assert expected  # the loop is seen
    for cut in range(1, len(stream)):
        before = MonitorHub(SETTINGS)
        first = before.replay(stream[:cut], state)
        data = saved.save(before)
        assert data
        after = MonitorHub(SETTINGS)
        assert saved.restore(after, data)
        assert _state(after) == _state(before)
        rest = after.replay(stream[cut:], state)
        assert _keys(first) + _keys(rest) == expected, f"cut at seq {cut}"
        assert _state(after) == _state(whole), f"cut at seq {cut}"


def test_monitors_caught_up_later_judge_every_observation_as_the_monitors_caught_up_at_once(
    stream: list[tuple[int, AnyEvent]],
) -> None:
    """A resume's catch-up left for later (replay_later), done in slices at any point
    or forced by the first event that is not one a resume records on its way to its
    first model call (QUEUED): each event raises what it raises when the catch-up is
    done at once; what the catch-up itself raises (every alert, here: the stream holds
    none recorded) is given before the event that forced it, or the first after the
    slice that finished it; and the monitors end as the whole stream leaves them."""
    state = state_for(stream)
    whole = MonitorHub(SETTINGS)
    whole.replay(stream, state)
    rng = random.Random(7)
    forced = 0
    for cut in range(1, len(stream), 3):
        before = MonitorHub(SETTINGS)
        before.replay(stream[:cut], state)
        data = saved.save(before)
        resumed_at = rng.randrange(cut, len(stream))  # recorded before the resume
        recorded, fed = stream[cut:resumed_at], stream[resumed_at:]

        at_once = MonitorHub(SETTINGS)
        assert saved.restore(at_once, data)
        missed = _keys(at_once.replay(recorded, state))
        expected = [_keys(at_once.feed(seq, event, state)) for seq, event in fed]

        later = MonitorHub(SETTINGS)
        later.replay_later(functools.partial(saved.restore, later, data), recorded, list, state)
        got, owed = [], []
        for seq, event in fed:
            if rng.random() < 0.3:  # a slice beside a model call: it may do little
                later.catch_up(until=time.perf_counter() + rng.choice([0.0, 1e-4, 1.0]))
            behind = later.behind
            owed += _keys(list(later.before(event)))
            if behind and not isinstance(event, QUEUED):
                forced += 1
                assert not later.behind, f"cut {cut}: {type(event).__name__} applied behind"
            got.append(_keys(later.feed(seq, event, state)))
        assert got == expected, f"cut at seq {cut}, resumed at {resumed_at}"
        owed += _keys(later.settle())  # only queued events since: done now, as a snapshot does
        assert owed == missed, f"cut at seq {cut}, resumed at {resumed_at}"
        assert _state(later) == _state(whole), f"cut at seq {cut}, resumed at {resumed_at}"
    assert forced, "no event forced a catch-up: the test saw none of QUEUED's complement"


def test_a_save_that_does_not_restore_when_caught_up_later_feeds_the_whole_history(
    stream: list[tuple[int, AnyEvent]],
) -> None:
    state = state_for(stream)
    whole = MonitorHub(SETTINGS)
    expected = _keys(whole.replay(stream, state))
    cut = len(stream) // 2
    later = MonitorHub(SETTINGS)
    # what follows the save is not fed alone: the history is, from the first event
    later.replay_later(lambda: False, stream[cut:], lambda: stream, state)
    later.catch_up()
    assert _state(later) == _state(whole)
    resumed = RunResumed(at=stream[-1][1].at, owner="test")  # no monitor observes it
    assert _keys(later.feed(len(stream) + 1, resumed, state)) == expected
    assert _state(later) == _state(whole)


def state_for(stream: list[tuple[int, AnyEvent]]) -> RunState:
    """The run's state, for the hub's choice of actions (which steps are agent steps)."""
    created = stream[0][1]
    assert isinstance(created, RunCreated)
    state = RunState.from_created(created)
    for seq, event in stream[1:]:
        state.apply(event, seq)
    return state


def test_a_save_from_other_settings_or_code_is_not_restored(
    stream: list[tuple[int, AnyEvent]],
) -> None:
    hub = MonitorHub(SETTINGS)
    hub.replay(stream, state_for(stream))
    data = saved.save(hub)
    other = MonitorHub(MonitorSettings(actions={"warning": "inject", "critical": "note"}))
    assert not saved.restore(other, data)
    assert other.trace.turns == 0  # untouched
    assert not saved.restore(MonitorHub(SETTINGS), data[:-10])  # cut short
    assert not saved.restore(MonitorHub(SETTINGS), b"")
    flipped = bytearray(data)
    flipped[0] ^= 1  # the header names the code and settings that wrote it
    assert not saved.restore(MonitorHub(SETTINGS), bytes(flipped))


class _Payload:
    """What a forged save would carry: a call to anything at all when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_a_save_that_would_build_anything_else_is_refused_and_runs_nothing(
    tmp_path: Path,
) -> None:
    hub = MonitorHub(SETTINGS)
    header = saved.save(hub)[:32]
    marker = tmp_path / "ran"
    payloads: list[object] = [
        ([], {}, _Payload(marker)),
        ([_Payload(marker)] * len(hub.monitors), {}, set()),
        (pickle.loads, (), set()),
    ]
    for payload in payloads:
        data = header + pickle.dumps(payload)
        assert not saved.restore(MonitorHub(SETTINGS), data)
    assert not marker.exists()


def test_a_hub_holding_what_cannot_be_pickled_is_not_saved() -> None:
    hub = MonitorHub(SETTINGS)
    hub.monitors[0].lock = threading.Lock()  # type: ignore[attr-defined]
    assert saved.save(hub) == b""


def test_a_snapshot_is_trusted_only_with_the_key_and_run_it_was_signed_for() -> None:
    key, other = b"k" * 32, b"o" * 32
    snap = signed_snapshot("run-a", 7, '{"seq": 7}', b"monitors", key)
    assert trusted("run-a", snap, key) and trusted_monitors("run-a", snap, key) == b"monitors"
    assert not trusted("run-a", snap, other) and not trusted_monitors("run-a", snap, other)
    assert not trusted("run-b", snap, key) and not trusted_monitors("run-b", snap, key)
    for seq, state in ((8, '{"seq": 7}'), (7, '{"seq": 8}')):
        changed = signed_snapshot("run-a", seq, state, b"monitors", key)
        assert not trusted("run-a", replace(snap, mac=changed.mac), key)
    other_save = signed_snapshot("run-a", 7, '{"seq": 7}', b"monitorz", key).monitors
    swapped = replace(snap, monitors=other_save[:32] + b"monitors")
    assert trusted("run-a", swapped, key) and not trusted_monitors("run-a", swapped, key)
    assert not trusted("run-a", replace(snap, mac=""), key)
    assert not trusted_monitors("run-a", replace(snap, monitors=b"monitors"), key)


def test_a_resumed_agent_run_feeds_its_monitors_only_the_events_after_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, run_id = start(tmp_path, SETTINGS)
    model = ScriptedModel(looping_replies(loops=8))
    engine = LocalEngine(store, performer=AgentPerformer(model), snapshot_every=5)
    asyncio.run(engine.run(run_id))
    state = state_of(store, run_id)
    snap = store.snapshot(run_id, monitors=True)
    assert snap is not None and snap.monitors and snap.seq > 5
    assert trusted(run_id, snap)

    fed: list[int] = []
    replay = MonitorHub.replay

    def counting(self: MonitorHub, events: Any, state: Any) -> list[AlertRaised]:
        fed.append(len(events))
        return replay(self, events, state)

    monkeypatch.setattr(MonitorHub, "replay", counting)
    hub, missed = asyncio.run(LocalEngine(store)._hub(state))
    assert fed == [state.seq - snap.seq] and not missed
    whole = MonitorHub(SETTINGS)
    replay(whole, [(s.seq, s.event) for s in store.events(run_id)], state)
    assert hub is not None and _state(hub) == _state(whole)

    # the events the state was folded from are the ones the monitors catch up on
    engine = LocalEngine(store)
    tail = Tail()
    loaded, _ = engine.load_vetted(run_id, tail)
    assert tail.after == snap.seq
    assert [s.seq for s in tail.events] == list(range(snap.seq + 1, state.seq + 1))
    reads: list[object] = []
    events = store.events

    def reading(*args: Any, **kwargs: Any) -> Any:
        reads.append(kwargs)
        return events(*args, **kwargs)

    monkeypatch.setattr(store, "events", reading)
    again, missed = asyncio.run(engine._hub(loaded, tail))
    assert again is not None and again.behind and not missed  # it catches up later
    again.catch_up()
    assert reads == [] and not again.behind  # not read a second time
    assert _state(again) == _state(whole)


def _layout(value: Any, found: dict[str, list[str]]) -> dict[str, list[str]]:
    """Every Trestle class a saved state holds, with the attributes its objects hold."""
    if isinstance(value, dict):
        for k, v in value.items():
            _layout(k, found), _layout(v, found)
    elif isinstance(value, list | tuple | set | frozenset | deque):
        for v in value:
            _layout(v, found)
    elif type(value).__module__.startswith("trestle."):
        name = f"{type(value).__module__}.{type(value).__qualname__}"
        if is_dataclass(value):
            attrs = {f.name: getattr(value, f.name) for f in fields(value)}
        elif isinstance(value, BaseModel):
            attrs = dict(value)
        else:
            attrs = vars(value)
        found[name] = sorted({*found.get(name, []), *attrs})
        for v in attrs.values():
            _layout(v, found)
    return found


# What a save holds at STATE_FORMAT 4, at any point of the run (the attempts' own
# states too). A change here means a save of the format before would be read wrongly:
# raise saved.STATE_FORMAT, then update this pin.
PINNED_FORMAT = 4
PINNED_LAYOUT: dict[str, list[str]] = {
    "monitors": [
        "trestle.monitors.format.FormatMonitor",
        "trestle.monitors.loops.RepeatMonitor",
        "trestle.monitors.loops.CycleMonitor",
        "trestle.monitors.monologue.MonologueMonitor",
        "trestle.monitors.progress.ProgressMonitor",
        "trestle.monitors.progress.ExplorationMonitor",
        "trestle.monitors.reruns.TestRerunMonitor",
        "trestle.monitors.drift.ScopeMonitor",
        "trestle.monitors.drift.RelevanceMonitor",
        "trestle.monitors.drift.ClaimMonitor",
        "trestle.monitors.cost.CostMonitor",
        "trestle.monitors.timing.DurationMonitor",
        "trestle.monitors.timing.StallMonitor",
        "trestle.monitors.context.ContextMonitor",
        "trestle.monitors.acceptance.TestsMonitor",
    ],
    "trace": ["_agent_steps", "_attempts", "_last_at", "_open", "_turns", "facts"],
    "trestle.monitors.acceptance.TestsMonitor": ["_seen"],
    "trestle.monitors.attempt.Attempts": ["_by_step", "_fresh"],
    "trestle.monitors.context.ContextMonitor": [
        "_attempts",
        "base_tokens",
        "lookback",
        "warn_share",
        "window",
    ],
    "trestle.monitors.context._Conversation": ["anchor", "level", "recent", "since", "started"],
    "trestle.monitors.cost.CostMonitor": [
        "_burn_step",
        "_calls",
        "_priced",
        "_projection_level",
        "_spent",
        "_step_costs",
        "critical_spent",
        "horizon",
        "min_peers",
        "rise_info",
        "rise_warning",
        "step_factor",
        "warn_spent",
        "window",
    ],
    "trestle.monitors.drift.ClaimMonitor": ["_claims"],
    "trestle.monitors.drift.RelevanceMonitor": [
        "_scored",
        "_streaks",
        "critical_after",
        "threshold",
        "warmup",
        "window",
    ],
    "trestle.monitors.drift.ScopeMonitor": ["_offences"],
    "trestle.monitors.drift._Streak": ["length", "near", "raised", "recent"],
    "trestle.monitors.format.FormatMonitor": [
        "_streaks",
        "critical_share",
        "critical_streak",
        "warning_share",
        "warning_streak",
    ],
    "trestle.monitors.loops.CycleMonitor": [
        "_attempts",
        "_reader",
        "_shown",
        "longest_lap",
        "min_span",
        "shortest_lap",
    ],
    "trestle.monitors.loops.RepeatMonitor": ["_attempts", "critical_repeats", "warning_repeats"],
    "trestle.monitors.loops._Laps": ["fresh", "keys", "raised", "seqs"],
    "trestle.monitors.loops._Repeats": ["failures", "raised", "same"],
    "trestle.monitors.monologue.MonologueMonitor": ["_attempts", "critical_turns", "warning_turns"],
    "trestle.monitors.progress.ExplorationMonitor": [
        "_attempts",
        "critical_fraction",
        "critical_turns",
        "fresh_share",
        "min_turns",
        "warning_fraction",
        "warning_turns",
    ],
    "trestle.monitors.progress.ProgressMonitor": [
        "_attempts",
        "_reader",
        "_shown",
        "critical_actions",
        "min_new_lines",
        "warning_actions",
    ],
    "trestle.monitors.progress._Reading": ["edited", "raised", "read_seqs", "reads", "turns"],
    "trestle.monitors.progress._Stillness": ["raised", "still"],
    "trestle.monitors.reruns.TestRerunMonitor": [
        "_attempts",
        "critical_runs",
        "critical_unchanged",
        "warning_runs",
        "warning_unchanged",
    ],
    "trestle.monitors.reruns._Reruns": ["edits", "failures", "outputs"],
    "trestle.monitors.shown.LineMemory": ["_lines", "capacity"],
    "trestle.monitors.shown.ShownLines": ["_memories", "_pending", "_readers"],
    "trestle.monitors.stream._Attempt": ["calls", "cost", "finished", "started"],
    "trestle.monitors.stream._OpenTurn": [
        "actions",
        "cost",
        "last",
        "pending",
        "problems",
        "prompt_estimated",
        "prompt_tokens",
        "round",
        "seq",
        "started",
        "step",
        "text",
        "tokens",
    ],
    "trestle.monitors.timing.DurationMonitor": [
        "_durations",
        "floor",
        "info_factor",
        "min_peers",
        "warning_factor",
    ],
    "trestle.monitors.timing.StallMonitor": ["_seen"],
    "trestle.monitors.trace.Action": [
        "arguments",
        "error",
        "kind",
        "ok",
        "output",
        "output_chars",
        "seq",
        "target",
        "tool",
        "writes",
    ],
    "trestle.monitors.trace.RunFacts": [
        "cost_limit",
        "goal",
        "model",
        "objectives",
        "read_only",
        "scope",
        "turn_limit",
    ],
    "trestle.monitors.trace.Turn": [
        "actions",
        "cost",
        "index",
        "problem",
        "prompt_estimated",
        "prompt_tokens",
        "round",
        "seconds",
        "seq",
        "step",
        "text",
        "tokens",
    ],
}


def test_what_a_save_holds_is_pinned_to_its_state_format(
    stream: list[tuple[int, AnyEvent]],
) -> None:
    hub, state = MonitorHub(SETTINGS), state_for(stream)
    found = {"monitors": [f"{type(m).__module__}.{type(m).__qualname__}" for m in hub.monitors]}
    found |= {
        f"{type(m).__module__}.{type(m).__qualname__}": sorted(saved._state_of(m))
        for m in hub.monitors
    }
    found["trace"] = sorted(vars(hub.trace))
    # after every event, not only the last: what an attempt's state holds is gone from
    # the save once its step ends
    for event in stream:
        hub.replay([event], state)
        layout = _layout(([saved._state_of(m) for m in hub.monitors], vars(hub.trace)), found)
    assert (saved.STATE_FORMAT, layout) == (PINNED_FORMAT, PINNED_LAYOUT), (
        "what a monitors' save holds changed: raise saved.STATE_FORMAT, then pin the new layout"
    )


def test_a_save_of_another_state_format_or_attributes_is_not_restored(
    stream: list[tuple[int, AnyEvent]], monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = MonitorHub(SETTINGS)
    hub.replay(stream, state_for(stream))
    data = saved.save(hub)
    monkeypatch.setattr(saved, "STATE_FORMAT", saved.STATE_FORMAT + 1)
    fresh = MonitorHub(SETTINGS)
    assert not saved.restore(fresh, data)
    assert _state(fresh) == _state(MonitorHub(SETTINGS))  # untouched
    monkeypatch.undo()

    # a monitor that gained an attribute, its format left as it was
    grown = MonitorHub(SETTINGS)
    grown.monitors[0].added = 0  # type: ignore[attr-defined]
    assert not saved.restore(grown, data)
    assert saved.restore(MonitorHub(SETTINGS), data)


# The body of a save the monitors wrote at STATE_FORMAT 2 (commit ce3ffbe, when the
# progress and cycle monitors each kept their own memory of the lines shown), after the
# first 70 events of a looping run like ``stream``'s: its attempts still open.
FORMAT_2_BODY = Path(__file__).parent / "data" / "monitors_format2.save"


def test_a_snapshot_holding_a_save_of_the_format_before_resumes_by_feeding_the_whole_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the header the monitors of format 2 gave their save, for these monitors and settings
    monkeypatch.setattr(saved, "STATE_FORMAT", 2)
    old = saved._header(MonitorHub(SETTINGS)) + FORMAT_2_BODY.read_bytes()
    monkeypatch.undo()
    fresh = MonitorHub(SETTINGS)
    assert not saved.restore(fresh, old)
    assert _state(fresh) == _state(MonitorHub(SETTINGS))  # untouched

    store, run_id = start(tmp_path, SETTINGS)
    model = ScriptedModel(looping_replies(loops=8))
    engine = LocalEngine(store, performer=AgentPerformer(model), snapshot_every=5)
    asyncio.run(engine.run(run_id))
    state = state_of(store, run_id)
    snap = store.snapshot(run_id, monitors=True)
    assert snap is not None and snap.seq > 5
    # the snapshot as an engine of format 2 would have left it: signed, with its save
    signed = signed_snapshot(run_id, snap.seq, snap.state_json, old, engine._key()).monitors
    with sqlite3.connect(tmp_path / "store.db") as db:
        db.execute("UPDATE snapshots SET monitors = ? WHERE run_id = ?", (signed, run_id))
    db.close()

    fed: list[int] = []
    replay = MonitorHub.replay

    def counting(self: MonitorHub, events: Any, state: Any) -> list[AlertRaised]:
        fed.append(len(events))
        return replay(self, events, state)

    monkeypatch.setattr(MonitorHub, "replay", counting)
    hub, missed = asyncio.run(LocalEngine(store)._hub(state))
    assert fed == [state.seq] and not missed  # the whole history, every alert on record
    whole = MonitorHub(SETTINGS)
    replay(whole, [(s.seq, s.event) for s in store.events(run_id)], state)
    assert hub is not None and _state(hub) == _state(whole)


def test_a_resumed_run_catches_its_monitors_up_while_its_first_model_call_is_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted in its execute step's loop and resumed: the monitors restore their
    save once the first model call is made, not before; and the resumed run records
    exactly what it records when they catch up before it goes on, alerts included."""
    run_dir = tmp_path / "run"
    run_id = stopped_while_the_model_answers(run_dir, snapshot_every=5)
    kept = tmp_path / "kept"
    shutil.copytree(run_dir, kept)
    rest = replies_after_the_stop()

    def resumed(
        catch_up_at_once: bool, monitors: MonitorFactory | None = None
    ) -> tuple[list[tuple[str, str]], list[bool]]:
        shutil.rmtree(run_dir)
        shutil.copytree(kept, run_dir)
        calls: list[int] = []
        restored_after_a_call: list[bool] = []
        restore = saved.restore

        def noting(hub: MonitorHub, data: bytes) -> bool:
            restored_after_a_call.append(bool(calls))
            return restore(hub, data)

        def answer(messages: Any, tools: Any) -> Any:
            calls.append(1)
            return rest[len(calls) - 1]

        with monkeypatch.context() as patch:
            patch.setattr(saved, "restore", noting)
            if catch_up_at_once:
                later = MonitorHub.replay_later

                def at_once(hub: MonitorHub, *args: Any) -> None:
                    later(hub, *args)
                    hub.catch_up()

                patch.setattr(MonitorHub, "replay_later", at_once)
            again_store = SqliteStore(run_dir / "store.db")
            try:
                drive(again_store, run_id, FunctionModel(answer), monitors=monitors)
                events = recorded(again_store, run_id)
                assert state_of(again_store, run_id).finished == "succeeded"
            finally:
                again_store.close()
        kinds = [
            (type(e).__name__, e.alert.key if isinstance(e, AlertRaised) else "") for e in events
        ]
        return kinds, restored_after_a_call

    beside, restored_beside = resumed(catch_up_at_once=False)
    before, restored_before = resumed(catch_up_at_once=True)
    assert restored_beside == [True] and restored_before == [False]
    assert beside == before
    resumed_at = beside.index(("RunResumed", ""))
    assert any(kind == "AlertRaised" for kind, _ in beside[resumed_at:])  # they judged on

    # a monitor the first drive did not have: its save does not restore, the catch-up
    # feeds the whole history, and the new monitor's alert on its first observation is
    # missing. It is recorded before the first event the hub may not queue
    def adding(monitor: type[Monitor]) -> MonitorFactory:
        return lambda settings: [*default_monitors(settings), monitor()]

    added, restored_added = resumed(catch_up_at_once=False, monitors=adding(_FirstLook))
    assert restored_added == [True]  # tried beside the call, and found not to restore
    after = added[added.index(("RunResumed", "")) :]
    looks = [i for i, (_, key) in enumerate(after) if key.startswith("first_look/")]
    assert len(looks) == 1, after
    queued = {kind.__name__ for kind in QUEUED}
    assert all(kind in queued for kind, _ in after[: looks[0]]), after[: looks[0] + 1]
    # a monitor that fails as it catches up, beside the call: the drive fails with its
    # error, as it does when the catch-up is made at once
    for at_once in (False, True):
        with pytest.raises(_MonitorFault):
            resumed(catch_up_at_once=at_once, monitors=adding(_Faulty))


def stopped_while_the_model_answers(run_dir: Path, snapshot_every: int) -> str:
    """A looping agent run driven until its execute step's fourth read is asked for,
    and stopped while the model answers: its resumed attempt replays its turns and
    calls the model first. Its store is left closed in ``run_dir``."""
    store, run_id = start(run_dir, SETTINGS)
    replies = looping_replies(loops=8)
    made: list[int] = []  # the model calls made in this drive
    stop = Stop()

    def first_drive(messages: Any, tools: Any) -> Any:
        made.append(len(made))
        if len(made) < 7:
            return replies[len(made) - 1]
        stop.request("a stop while the model answers")
        return asyncio.Event().wait()

    async def interrupted() -> None:
        engine = LocalEngine(
            store,
            performer=AgentPerformer(FunctionModel(first_drive)),
            snapshot_every=snapshot_every,
        )
        try:
            async for _ in engine.drive(run_id, stop=stop):
                pass
        finally:
            engine.close()

    asyncio.run(interrupted())
    store.close()
    return run_id


def replies_after_the_stop() -> list[Any]:
    """What the model answers the run :func:`stopped_while_the_model_answers` left, from
    its resumed attempt's first call: five reads more, then the run's last two answers."""
    again = [call("read_file", path="calc.py", call_id=f"again{i}") for i in range(5)]
    return [*again, *looping_replies(loops=0)[-2:]]


def test_a_snapshot_due_before_the_first_model_call_saves_the_monitors_caught_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Snapshots as often as a run allows: the one that falls due as the resumed
    attempt reserves its first model call comes while the monitors are behind. It
    finishes their catch-up first, saves them as the whole history leaves them, and
    records what the catch-up raised (a monitor the first drive did not have: its
    alert on its first observation) with it."""
    run_dir = tmp_path / "run"
    run_id = stopped_while_the_model_answers(run_dir, snapshot_every=1)
    rest = replies_after_the_stop()
    calls: list[int] = []
    settled: list[tuple[bool, int]] = []  # behind as asked, and the model calls made
    snapshots: list[tuple[int, int, bytes]] = []  # seq, the model calls made, the save

    def answer(messages: Any, tools: Any) -> Any:
        calls.append(1)
        return rest[len(calls) - 1]

    settle, snapshot = MonitorHub.settle, LocalEngine._snapshot

    def settling(hub: MonitorHub) -> list[AlertRaised]:
        settled.append((hub.behind, len(calls)))
        return settle(hub)

    def noting(engine: LocalEngine, state: RunState, hub: MonitorHub | None) -> Any:
        taken = snapshot(engine, state, hub)
        assert hub is not None and not hub.behind
        snapshots.append((state.seq, len(calls), saved.save(hub)))
        return taken

    monkeypatch.setattr(MonitorHub, "settle", settling)
    monkeypatch.setattr(LocalEngine, "_snapshot", noting)

    def adding_a_first_look(settings: MonitorSettings) -> list[Monitor]:
        return [*default_monitors(settings), _FirstLook()]

    store = SqliteStore(run_dir / "store.db")
    try:
        engine = LocalEngine(
            store,
            performer=AgentPerformer(FunctionModel(answer)),
            monitors=adding_a_first_look,
            snapshot_every=1,
        )
        try:
            asyncio.run(engine.run(run_id))
        finally:
            engine.close()
        events = [(s.seq, s.event) for s in store.events(run_id)]
        state = state_of(store, run_id)
    finally:
        store.close()
    assert state.finished == "succeeded"
    assert settled[0] == (True, 0)  # the first settle: behind, before the first call
    seq, made, save = snapshots[0]
    assert made == 0  # the first snapshot of the resumed drive, before the call
    looks = [n for n, e in events if isinstance(e, AlertRaised) and e.alert.monitor == "first_look"]
    resumed_at = next(n for n, e in events if isinstance(e, RunResumed))
    assert len(looks) == 1 and resumed_at < looks[0] <= seq  # recorded with that snapshot
    # what it saved is what the whole history up to it leaves the monitors in
    whole = MonitorHub(SETTINGS, adding_a_first_look)
    whole.replay(events[:seq], state)
    restored = MonitorHub(SETTINGS, adding_a_first_look)
    assert saved.restore(restored, save)
    assert _state(restored) == _state(whole)


class _MonitorFault(Exception):
    pass


class _Faulty:
    """Fails at the first thing it observes, and only then: a fault not met again."""

    name = "faulty"

    def __init__(self) -> None:
        self.failed = False

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        if not self.failed:
            self.failed = True
            raise _MonitorFault("a monitor's bug")
        return []


class _FirstLook:
    """Notes the first thing it observes: an alert any run's history raises once."""

    name = "first_look"

    def __init__(self) -> None:
        self.seen = False

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        if self.seen:
            return []
        self.seen = True
        return [
            Alert(
                monitor=self.name,
                kind="seen",
                severity="warning",
                message="a first look",
                evidence=(item.seq,),
                suggestion="",
            )
        ]
