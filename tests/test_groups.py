"""A group's blackboard and mailboxes: the store, the Python API and the CLI views.

Real SQLite files, real processes racing on one file, the real ``trestle``
executable. The in-memory store is held to the same contract where the test does not
need processes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forked_cli import run_trestle
from test_cli import Cli, cli_env, flat, rstripped
from trestle.coordination.board import Group
from trestle.coordination.groups import group_of, message_id, named_group
from trestle.core.errors import ConfigError, PlanError
from trestle.core.events import AnyEvent, MessagesDelivered, RunFinished
from trestle.formats.planfile import parse_plan
from trestle.lifecycle.runs import create_run, load_state
from trestle.store import InMemoryStore, SqliteStore, Store
from trestle.store.base import Appended, Message, Owner
from trestle.store.location import open_store

WORKER = Path(__file__).with_name("group_worker.py")


@pytest.fixture(params=["sqlite", "memory", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s: Store = InMemoryStore()
    if request.param == "sqlite":
        s = SqliteStore(tmp_path / "trestle.db")
    elif request.param == "postgres":
        s = open_store(request.getfixturevalue("postgres_url"))
    yield s
    s.close()


def clock(start: float = 1_000.0) -> Any:
    ticks = iter(range(1_000_000))
    return lambda: start + next(ticks)


# --- the blackboard -------------------------------------------------------------------


def test_a_stale_write_is_refused_logged_and_told_the_current_value(store: Store) -> None:
    board = Group(store, "team", clock=clock()).board
    assert board.read("plan") is None
    first = board.write("plan", {"steps": 1}, expected_version=0, writer="alice")
    assert (first.accepted, first.version, first.value) == (True, 1, {"steps": 1})
    stale = board.write("plan", {"steps": 9}, expected_version=0, writer="bob")
    assert (stale.accepted, stale.version, stale.value) == (False, 1, {"steps": 1})
    retried = board.write("plan", {"steps": 2}, expected_version=stale.version, writer="bob")
    assert (retried.accepted, retried.version) == (True, 2)
    blind = board.write("plan", "anything", writer="carol")  # no expected version: any
    assert (blind.accepted, blind.version) == (True, 3)

    now = board.read("plan")
    assert now is not None and (now.version, now.value, now.writer) == (3, "anything", "carol")
    log = board.history("plan")
    assert [(e.writer, e.accepted, e.version, e.expected) for e in log] == [
        ("alice", True, 1, 0),
        ("bob", False, 1, 0),  # the conflict: logged with the version it met
        ("bob", True, 2, 1),
        ("carol", True, 3, None),
    ]
    assert json.loads(log[1].value) == {"steps": 9}  # what the refused writer tried
    (key,) = store.board_keys("team")
    assert (key.key, key.writes, key.conflicts) == ("plan", 3, 1)
    assert store.groups() == ["team"]


@pytest.fixture(params=["sqlite", "postgres"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A durable store's path or URL, for processes that share it."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return str(tmp_path / "trestle.db")


def test_compare_and_set_races_from_four_processes_lose_no_update(shared: str) -> None:
    path = shared
    open_store(path).close()  # the schema exists before the race to use it
    per_worker = 200
    env = {**os.environ, "GO_AT": str(time.time() + 1.0)}
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(path), "race", "increment", str(per_worker), f"w{n}"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for n in range(4)
    ]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0, 0]
    conflicts_met = sum(int(out) for out in outputs)

    store = open_store(path)
    now = store.board_read("race", "counter")
    assert now is not None
    assert (now.version, json.loads(now.value)) == (4 * per_worker, 4 * per_worker)
    log = store.board_history("race", "counter")
    accepted = [e for e in log if e.accepted]
    # no lost update: every accepted write took the next version, one each
    assert [e.version for e in accepted] == list(range(1, 4 * per_worker + 1))
    assert [json.loads(e.value) for e in accepted] == list(range(1, 4 * per_worker + 1))
    # every conflict a worker met is in the log, and counted
    assert len(log) - len(accepted) == conflicts_met > 0
    (key,) = store.board_keys("race")
    assert (key.writes, key.conflicts) == (4 * per_worker, conflicts_met)
    assert {e.writer for e in accepted} == {"w0", "w1", "w2", "w3"}
    store.close()


def test_a_watch_wakes_when_another_process_writes(shared: str) -> None:
    path = shared
    store = open_store(path)
    board = Group(store, "team").board
    board.write("ready", False, 0)
    writer = subprocess.Popen(
        [sys.executable, str(WORKER), str(path), "team", "write-after", "0.3", "ready", "true"]
    )
    try:
        assert board.watch("ready", after_version=1, timeout=0.05) is None  # nothing yet
        started = time.monotonic()
        woke = board.watch("ready", after_version=1, timeout=30)
        waited = time.monotonic() - started
    finally:
        writer.wait(timeout=30)
    assert woke is not None and (woke.version, woke.value, woke.writer) == (2, True, "worker")
    assert waited < 10  # woken by the write, not by the timeout
    store.close()


# --- the mailboxes --------------------------------------------------------------------


def test_a_message_sent_again_with_its_id_is_recorded_once(store: Store) -> None:
    group = Group(store, "team", clock=clock())
    alice, bob = group.mailbox("alice"), group.mailbox("bob")
    first = alice.send("bob", {"task": "review"}, message_id="m-1")
    again = alice.send("bob", {"task": "something else"}, message_id="m-1")
    assert (first.id, first.new, again.new) == ("m-1", True, False)
    assert len(group.messages()) == 1
    (letter,) = bob.receive()
    assert (letter.id, letter.sender, letter.body) == ("m-1", "alice", {"task": "review"})
    assert bob.receive() == []  # handed out once
    (kept,) = group.messages(to="bob")
    assert kept.delivered_at is not None and kept.delivered_by == "bob"
    # ids derived from a tool call's key are stable, and differ per call
    key = "run/fix/1/r1/t2/call_7"
    assert message_id(key) == message_id(key) != message_id(key + "x")


def test_a_reply_is_awaited_and_its_absence_is_an_answer_not_an_error(shared: str) -> None:
    path = shared
    store = open_store(path)
    group = Group(store, "team")
    asked = group.mailbox("planner").send("tester", "run the suite")
    started = time.monotonic()
    assert group.mailbox("planner").wait_reply(asked.id, timeout=0.2) is None
    assert 0.2 <= time.monotonic() - started < 5
    # another process replies (and sends something that is not a reply)
    other = open_store(path)
    tester = Group(other, "team").mailbox("tester")
    tester.send("planner", "unrelated news")
    tester.send("planner", {"passed": 12}, reply_to=asked.id)
    other.close()
    reply = group.mailbox("planner").wait_reply(asked.id, timeout=5)
    assert reply is not None and (reply.body, reply.reply_to) == ({"passed": 12}, asked.id)
    (news,) = group.mailbox("planner").receive()  # the other message still waits
    assert news.body == "unrelated news"
    store.close()


def test_four_processes_taking_one_mailbox_get_each_message_exactly_once(shared: str) -> None:
    store = open_store(shared)
    mailbox = Group(store, "team").mailbox("lead")
    sent = [mailbox.send("crew", {"task": n}).id for n in range(300)]
    env = {**os.environ, "GO_AT": str(time.time() + 1.0)}
    takers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), shared, "team", "take", "crew", f"t{n}"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for n in range(4)
    ]
    got = [t.communicate(timeout=120)[0].split() for t in takers]
    assert [t.returncode for t in takers] == [0, 0, 0, 0]
    taken = [mid for ids in got for mid in ids]
    assert sorted(taken) == sorted(sent)  # every message, none twice
    by = {m.id: m.delivered_by for m in store.messages("team")}
    for n, ids in enumerate(got):
        assert all(by[mid] == f"t{n}" for mid in ids)  # recorded as taken by who got it
    store.close()


def test_a_runs_delivery_event_marks_its_messages_in_the_same_commit(store: Store) -> None:
    plan = parse_plan("goal: g\ngroup: team\nsteps:\n  - {id: one, run: 'true'}\n")
    run_id = create_run(store, plan, workspace=Path("."))
    state = load_state(store, run_id)
    assert group_of(state) == named_group(state) == "team"
    Group(store, "team").mailbox("lead").send(run_id, "hello", message_id="m-7")
    token = store.acquire_lease(run_id, Owner("t", os.getpid(), os.uname().nodename), ttl=30, now=0)
    delivered = MessagesDelivered(
        at=5.0, step="one", group="team", call_key="k", message_ids=("m-7",)
    )
    events: list[AnyEvent] = [delivered, RunFinished(at=6.0, status="succeeded")]
    store.append(
        run_id,
        Appended(events=events, first_seq=2, status="succeeded", summary="{}"),
        token=token.token,
    )
    (message,) = store.messages("team")
    assert (message.delivered_at, message.delivered_by) == (6.0, run_id)
    assert store.messages("team", recipient=run_id, undelivered=True) == []
    assert load_state(store, run_id).delivered == ["m-7"]


def test_a_plan_names_its_group_and_a_run_without_one_is_its_own(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "trestle.db")
    alone = create_run(store, parse_plan("steps:\n  - {id: a, run: 'true'}\n"), workspace=tmp_path)
    state = load_state(store, alone)
    assert (group_of(state), named_group(state)) == (alone, None)
    with pytest.raises(PlanError, match="group"):
        parse_plan("group: 'two words'\nsteps:\n  - {id: a, run: 'true'}\n", source="p.yaml")
    store.close()


# --- hostile input --------------------------------------------------------------------

HOSTILE: list[tuple[str, Any, str]] = [
    ("huge", "x" * 300_000, "more than"),
    ("deep", json.loads("[" * 70 + "]" * 70), "deeper than 64"),
    ("infinite", {"n": float("inf")}, "not a finite number"),
    ("nan", [float("nan")], "not a finite number"),
    ("surrogate", {"text": "bad \ud83d here"}, "unpaired surrogate"),
    ("control", "bell\x07", r"control character \(U\+0007\)"),
    ("key", {1: "not text"}, "is not text"),
    ("big integer", 1 << 80, "does not fit in 64"),
    ("object", {"x": object()}, "not a JSON value"),
]


@pytest.mark.parametrize(("case", "value", "said"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_values_are_refused_clearly_and_nothing_is_recorded(
    store: Store, case: str, value: Any, said: str
) -> None:
    group = Group(store, "team")
    group.board.write("k", "kept", 0)
    with pytest.raises(ConfigError, match=said):
        group.board.write("k", value, 1)
    with pytest.raises(ConfigError, match=said):
        group.mailbox("a").send("b", value)
    assert [e.value for e in store.board_history("team")] == ['"kept"']
    assert store.messages("team") == []


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("", "empty"),
        ("x" * 201, "more than 200"),
        ("a\x1b[2J", "control character"),
        ("bad\udc80", "unpaired surrogate"),
    ],
)
def test_hostile_names_are_refused(store: Store, name: str, said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        Group(store, name)
    with pytest.raises(ConfigError, match=said):
        Group(store, "team").board.write(name, 1)
    with pytest.raises(ConfigError, match=said):
        Group(store, "team").mailbox("a").send(name, 1)
    assert store.groups() == []


@pytest.mark.parametrize("version", [-1, True, 1 << 70, 1.5, "2"])
def test_a_version_that_is_not_a_whole_number_in_range_is_refused(
    store: Store, version: Any
) -> None:
    board = Group(store, "team").board
    with pytest.raises(ConfigError, match="expected_version must be"):
        board.write("k", 1, version)
    with pytest.raises(ConfigError, match="after_version must be"):
        board.watch("k", version, timeout=0)
    assert store.groups() == []


def test_the_store_refuses_text_it_cannot_hold_even_past_the_api(store: Store) -> None:
    with pytest.raises(ConfigError, match="the message's body is not valid text"):
        store.send_message(
            Message(id="m", group="g", sender="a", recipient="b", body='"\ud800"', sent_at=1.0)
        )
    with pytest.raises(ConfigError, match="the board write's key is not valid text"):
        store.board_write("g", "\udfff", "1", expected=0, writer="w", now=1.0)
    assert store.groups() == []


# --- the CLI views --------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(dir=tmp_path, store=tmp_path / "trestle.db")


def test_the_board_and_mail_views_through_the_trestle_executable(cli: Cli) -> None:
    store = SqliteStore(cli.store)
    ticks = iter([1_700_000_000.0 + n for n in range(100)])
    group = Group(store, "team", clock=lambda: next(ticks))
    group.board.write("plan", {"steps": 3}, 0, writer="run-a", step="plan")
    group.board.write("plan", {"steps": 4}, 0, writer="run-b")
    group.board.write("owner", "run-b", 0, writer="run-b")
    asked = group.mailbox("run-a").send("run-b", "take step 2", message_id="m-ask")
    group.mailbox("run-b").receive()
    group.mailbox("run-b").send("run-a", {"taken": True}, reply_to=asked.id, message_id="m-re")
    group.mailbox("run-c").send("run-b", "hello", message_id="m-hi")
    store.close()

    keys = cli.json("board", "team")
    assert [(k["key"], k["version"], k["writes"], k["conflicts"]) for k in keys] == [
        ("owner", 1, 1, 0),
        ("plan", 1, 1, 1),
    ]
    assert keys[1]["value"] == {"steps": 3} and keys[1]["writer"] == "run-a"
    history = cli.json("board", "team", "plan")
    assert [(h["outcome"], h["version"], h["writer"]) for h in history] == [
        ("accepted", 1, "run-a"),
        ("conflict", 1, "run-b"),
    ]
    table = rstripped(cli("board", "team").stdout)
    assert '│ plan  │ 1       │ {"steps":3} │ run-a (plan) │' in table
    assert "2 keys, 2 writes, 1 conflict" in table

    mail = cli.json("mail", "team")
    assert [(m["id"], m["depth"], m["delivered"]) for m in mail] == [
        ("m-ask", 0, True),
        ("m-re", 1, False),  # threaded under the message it answers
        ("m-hi", 0, False),
    ]
    assert [m["id"] for m in cli.json("mail", "team", "--to", "run-b")] == ["m-ask", "m-hi"]
    shown = cli("mail", "team").stdout
    assert "↳ m-re" in shown and "take step 2" in shown

    unknown = cli("board", "tema")
    assert unknown.returncode == 2
    assert flat(unknown.stderr) == "error: no group 'tema' in the store (did you mean 'team'?)"
    no_key = cli("board", "team", "paln")
    assert (no_key.returncode, flat(no_key.stderr)) == (
        2,
        "error: group 'team': no key 'paln' on the board (did you mean 'plan'?)",
    )
    bad = cli("mail", "team", "--to", "a\x07b")
    assert bad.returncode == 2 and "control character (U+0007)" in bad.stderr


def test_reading_views_never_create_a_store(tmp_path: Path) -> None:
    for args in (["board", "team"], ["mail", "team"]):
        done = run_trestle(args, cwd=tmp_path, env=cli_env())
        assert done.returncode == 8, done.stderr
        assert "no store found" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_python_in_the_multi_agent_docs_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = Path(__file__).resolve().parent.parent / "docs" / "multi-agent.md"
    blocks = re.findall(r"^```python\n(.*?)^```", docs.read_text("utf-8"), re.DOTALL | re.M)
    assert blocks
    monkeypatch.chdir(tmp_path)
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{docs.name} block {number}", "exec"), {})
    assert capsys.readouterr().out == "planner {'please': 'run the suite'}\n"
