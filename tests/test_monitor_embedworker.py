"""The drift monitor's vectors made ahead in a worker process: the same vectors, and
alerts that take effect where they always do.

A real worker process (``python -m trestle.monitors.embedworker``), a real engine,
SQLite store and workspace; only the model is scripted.
"""

from __future__ import annotations

import random
import signal
import string
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_helpers import (
    FIX_STEP,
    GOAL,
    agent_settings,
    call,
    drive,
    findings_json,
    of_kind,
    plan_json,
    recorded,
    sample_workspace,
    state_of,
)
from trestle.core.events import AlertRaised, ModelCalled, ReminderInjected
from trestle.core.records.agent import bootstrap_plan
from trestle.core.records.monitors import Alert, MonitorSettings
from trestle.lifecycle.runs import create_run
from trestle.models import ModelResponse, ScriptedModel, ToolCall
from trestle.monitors.alerts import Monitor
from trestle.monitors.catalog import default_monitors
from trestle.monitors.drift import RelevanceMonitor
from trestle.monitors.embedworker import EmbedWorker, Ticket, shared_worker
from trestle.monitors.hub import MonitorHub
from trestle.monitors.similarity import HashingEmbedder, SparseVector, cosine
from trestle.monitors.trace import Action, ActionKind, RunFacts, Turn
from trestle.store import SqliteStore

DIM, TRIGRAM_WEIGHT = 1 << 18, 0.4


@pytest.fixture
def worker() -> Iterator[EmbedWorker]:
    started = EmbedWorker(DIM, TRIGRAM_WEIGHT, wait=30.0)  # however busy the machine
    yield started
    started.close()


def _ready(worker: EmbedWorker) -> None:
    """Wait for the worker to have started (its first reply)."""
    ticket = worker.submit("warming up")
    assert ticket is not None
    assert worker.started(wait=30.0), "the worker did not start"
    assert worker.result(ticket, wait=30.0) is not None


def _texts() -> list[str]:
    rng = random.Random(7)
    letters = string.ascii_letters + string.digits + "    _/."
    return [
        "".join(rng.choices(letters, k=1000)),  # every word new: numpy's sums
        "read textkit/slug_utils.py to see parseHttpResponse",  # a few words: the plain sums
        "café naïve résumé déjà vu",  # not ASCII: the plain sums
        "a the of ...",  # no content word: a vector of nothing
        "\ud800 a lone surrogate in fixRecursion",
    ]


def test_the_workers_vectors_are_the_embedders_bit_for_bit(worker: EmbedWorker) -> None:
    _ready(worker)
    here = HashingEmbedder(DIM, TRIGRAM_WEIGHT)
    reference = here.embed(["parse the http response of slug utils"])[0]
    for text in _texts():
        ticket = worker.submit(text)
        assert ticket is not None
        made = worker.result(ticket, wait=30.0)
        assert isinstance(made, SparseVector)
        (own,) = here.embed([text])
        assert isinstance(own, SparseVector)
        assert list(made.entries.items()) == list(own.entries.items()), text[:40]
        assert made.norm() == own.norm()
        assert cosine(made, reference) == cosine(own, reference)


def test_an_embedder_takes_the_vector_made_ahead_and_makes_it_itself_without_one(
    worker: EmbedWorker,
) -> None:
    _ready(worker)
    ahead, alone = HashingEmbedder(DIM, TRIGRAM_WEIGHT), HashingEmbedder(DIM, TRIGRAM_WEIGHT)
    text = _texts()[0]
    ticket = worker.submit(text)
    assert ticket is not None
    ahead.foresee(text, Ticket(worker, ticket))
    (taken,), (made,) = ahead.embed([text]), alone.embed([text])
    assert worker.served == 2  # the warm-up's, and this one
    assert isinstance(taken, SparseVector) and isinstance(made, SparseVector)
    assert list(taken.entries.items()) == list(made.entries.items())
    # a worker that does not answer in time (stopped), then is gone: the embedder makes
    # the same vector itself
    assert worker._process is not None
    worker._process.send_signal(signal.SIGSTOP)
    worker.wait = 0.01
    late = text + " again"
    ticket = worker.submit(late)
    assert ticket is not None
    ahead.foresee(late, Ticket(worker, ticket))
    (again,), (made_again,) = ahead.embed([late]), alone.embed([late])
    assert worker.served == 2  # late: not taken
    assert isinstance(again, SparseVector) and isinstance(made_again, SparseVector)
    assert list(again.entries.items()) == list(made_again.entries.items())
    worker._process.kill()
    worker._process.wait()
    assert worker.submit("anything") is None and worker.broken  # it takes nothing more


def _turn(seq: int, tool: str, kind: ActionKind, arguments: str) -> Turn:
    """A turn about the weather, with one action of ``tool``."""
    action = Action(seq=seq, tool=tool, kind=kind, arguments=arguments, target=f"away{seq}")
    return Turn(
        index=seq, seq=seq, step="fix", text="the weather forecast " * 40, actions=(action,)
    )


def test_only_a_turn_whose_tools_take_time_has_its_reasoning_embedded_ahead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shared = shared_worker(DIM, TRIGRAM_WEIGHT)
    monkeypatch.setattr(shared, "wait", 30.0)
    _ready(shared)
    facts = RunFacts(goal=GOAL, objectives={"fix": "add() returns the sum"})
    drift = RelevanceMonitor(HashingEmbedder(DIM, TRIGRAM_WEIGHT), warmup=0, window=1)
    judged = RelevanceMonitor(HashingEmbedder(DIM, TRIGRAM_WEIGHT), warmup=0, window=1)
    raised: list[Alert] = []
    for turn, ahead in [
        (_turn(1, "read_file", "read", '{"path": "away1.txt"}'), 0),  # judged too soon
        (_turn(2, "run_command", "run", '{"command": "echo away2"}'), 1),
    ]:
        served = shared.served
        drift.foresee(turn, facts)
        alerts = drift.observe(turn, facts)
        assert alerts == judged.observe(turn, facts)  # what either decides is the same
        assert shared.served - served == ahead, turn.actions[0].tool
        raised += alerts
    assert [(a.kind, a.severity) for a in raised] == [("drifting", "warning")]


def _drifting(turns: int) -> list[ModelResponse]:
    """Execute-step turns that run unrelated commands, with reasoning about other things
    (a command gives the worker time: a turn of quick file tools does not look ahead)."""
    rng = random.Random(3)
    words = ["weather", "forecast", "holiday", "recipe", "garden", "football", "museum"]
    return [
        ModelResponse(
            text=" ".join(rng.choices(words, k=120)),
            tool_calls=(
                ToolCall(
                    id=f"d{i}", name="run_command", arguments=f'{{"command": "echo away{i}"}}'
                ),
            ),
            finish_reason="tool_calls",
        )
        for i in range(turns)
    ]


def test_a_drift_judged_with_vectors_made_ahead_reaches_the_very_next_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the worker this process's runs share, started before the run and waited for
    # however busy the machine is, so it serves every turn
    shared = shared_worker(DIM, TRIGRAM_WEIGHT)
    monkeypatch.setattr(shared, "wait", 30.0)
    _ready(shared)
    served = shared.served
    embedder = HashingEmbedder(DIM, TRIGRAM_WEIGHT)

    def monitors(settings: MonitorSettings, made_here: bool = False) -> list[Monitor]:
        own = HashingEmbedder(DIM, TRIGRAM_WEIGHT) if made_here else embedder
        quick = RelevanceMonitor(own, warmup=0, window=2)  # drifting after 2 turns
        return [quick if m.name == "drift" else m for m in default_monitors(settings)]

    store = SqliteStore(tmp_path / "store.db")
    run_id = create_run(
        store,
        bootstrap_plan(GOAL),
        workspace=sample_workspace(tmp_path),
        agent=agent_settings(),
    )
    replies: list[ModelResponse | str] = [
        call("read_file", path="calc.py"),
        findings_json(),
        plan_json(FIX_STEP, summary="fix add"),
        *_drifting(3),
        call("edit_file", path="calc.py", old="a - b", new="a + b"),
        call("finish", summary="add() adds", claims=["test_add passes"]),
    ]
    model = ScriptedModel(replies)
    drive(store, run_id, model, monitors=monitors)

    assert state_of(store, run_id).finished == "succeeded"
    # each drifting turn's reasoning was embedded by the worker
    assert shared.served - served == 3, "the drift monitor made its vectors itself"
    seqs = [(s.seq, s.event) for s in store.events(run_id)]
    [(alert_seq, drift)] = [
        (seq, e) for seq, e in seqs if isinstance(e, AlertRaised) and e.alert.monitor == "drift"
    ]
    assert drift.action == "inject" and drift.alert.severity == "warning"
    calls_before = sum(1 for seq, e in seqs if isinstance(e, ModelCalled) and seq < alert_seq)
    [told] = [
        e
        for e in of_kind(recorded(store, run_id), ReminderInjected)
        if e.record.alert == drift.alert.key
    ]
    shown = [
        i
        for i, request in enumerate(model.requests)
        if any(m.content == told.record.text for m in request.messages)
    ]
    # recorded before the next call, and in that very call's request: not lost, not late
    assert shown and shown[0] == calls_before
    # the recorded stream fed to monitors that make every vector themselves, as the
    # Temporal workflow's and the offline evaluation's do, raises exactly what was raised
    state = state_of(store, run_id)
    replayed = MonitorHub(state.monitors, lambda m: monitors(m, made_here=True)).replay(
        [(seq, e) for seq, e in seqs if not isinstance(e, AlertRaised)], state
    )
    live = [e for _, e in seqs if isinstance(e, AlertRaised)]
    assert [(a.alert, a.action) for a in replayed] == [(a.alert, a.action) for a in live]
