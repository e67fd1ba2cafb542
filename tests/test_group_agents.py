"""Agents in a group: the board and mailbox tools, and delivery exactly once across
``kill -9``.

Real agent runs (the engine, the performer, the gate, a real SQLite file and a
workspace in ``tmp_path``); the model is a function of the conversation
(``group_agent_driver.reply``). The crash tests run the driver in its own process
and kill it with SIGKILL at each moment of a receive: after it read the messages,
and right after the commit that recorded their delivery; and once a board write or a
send did its work, before its end was recorded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent_helpers import agent_settings, drive, of_kind, recorded, sample_workspace, state_of
from group_agent_driver import reply
from trestle.coordination.board import Group
from trestle.coordination.groups import message_id
from trestle.core.events import (
    BoardWritten,
    MessagesDelivered,
    MessageSent,
    ToolCallEnded,
    ToolCallStarted,
)
from trestle.core.handoff import HEADER, carried
from trestle.core.records.agent import bootstrap_plan
from trestle.lifecycle.runs import create_run
from trestle.models import FunctionModel
from trestle.presentation.descriptions import log_detail
from trestle.store import SqliteStore

DRIVER = Path(__file__).with_name("group_agent_driver.py")
GROUP_TOOLS = {"board_read", "board_write", "board_watch", "send_message", "receive_messages"}


def group_run(store: SqliteStore, workspace: Path, group: str | None = "team") -> str:
    plan = bootstrap_plan("talk to the team").model_copy(update={"group": group})
    return create_run(store, plan, workspace=workspace, agent=agent_settings(test_command=None))


def script(monkeypatch: pytest.MonkeyPatch, *calls: tuple[str, dict[str, object]]) -> None:
    monkeypatch.setenv("SCRIPT", json.dumps([list(c) for c in calls]))


def ends(store: SqliteStore, run_id: str, tool: str) -> list[ToolCallEnded]:
    return [e for e in of_kind(recorded(store, run_id), ToolCallEnded) if e.tool == tool]


def test_an_agent_reaches_its_groups_board_and_mail_through_its_tools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(tmp_path / "trestle.db")
    run_id = group_run(store, sample_workspace(tmp_path))
    team = Group(store, "team")
    team.board.write("plan", "v1", 0, writer="lead")
    welcome = team.mailbox("lead").send(run_id, {"say": "welcome"})
    script(
        monkeypatch,
        ("board_read", {"key": "plan"}),
        ("board_write", {"key": "plan", "value": "v2", "expected_version": 1}),
        ("board_write", {"key": "plan", "value": "v3", "expected_version": 1}),
        ("send_message", {"to": "lead", "body": "hi", "reply_to": welcome.id}),
        ("receive_messages", {}),
        ("receive_messages", {"reply_to": "m-none", "wait": 0.2}),
        ("board_watch", {"key": "plan", "after_version": 1, "timeout": 5}),
        ("board_watch", {"key": "plan", "after_version": 2, "timeout": 0.1}),
        ("board_write", {"key": "plan", "value": "ring\u0007", "expected_version": 2}),
    )
    model = FunctionModel(reply)
    drive(store, run_id, model)

    state = state_of(store, run_id)
    assert state.finished == "succeeded"
    (read,) = ends(store, run_id, "board_read")
    assert read.content.startswith("'plan' is at version 1 (written by 'lead'): \"v1\"")
    wrote, refused, _ = ends(store, run_id, "board_write")
    assert wrote.ok and wrote.content == "wrote 'plan': it is now at version 2"
    assert not refused.ok
    assert 'you expected version 1, but it is at version 2: "v2"' in refused.content
    assert "write again with expected_version 2" in refused.content
    writes = of_kind(recorded(store, run_id), BoardWritten)
    assert [(w.accepted, w.version, w.expected) for w in writes] == [(True, 2, 1), (False, 2, 1)]
    assert (state.board_writes, state.board_conflicts) == (2, 1)
    assert "conflict: expected version 1, the key is at 2" in log_detail(writes[1])

    # the message's id is the sending call's key's; the lead receives the reply
    (start,) = [
        s for s in of_kind(recorded(store, run_id), ToolCallStarted) if s.call_id == "call_3"
    ]
    (sent,) = of_kind(recorded(store, run_id), MessageSent)
    assert sent.message_id == message_id(start.key) and sent.new
    (answer,) = team.mailbox("lead").receive()
    assert (answer.body, answer.reply_to, answer.sender) == ("hi", welcome.id, run_id)

    received, timed_out = ends(store, run_id, "receive_messages")
    assert received.content.startswith(f"1 message:\n- {welcome.id} from 'lead'")
    assert '{"say": "welcome"}' in received.content
    assert timed_out.ok and timed_out.content == "no reply to m-none within 0.2 s"
    # the delivery is recorded with the call's end, in its commit
    events = [stored.event for stored in store.events(run_id)]
    (delivered,) = of_kind(events, MessagesDelivered)
    assert delivered.message_ids == (welcome.id,)
    assert events[events.index(delivered) + 1] == received
    assert state.delivered == [welcome.id]
    (kept,) = [m for m in team.messages() if m.id == welcome.id]
    assert kept.delivered_by == run_id

    woke, slept = ends(store, run_id, "board_watch")
    assert woke.content.startswith("'plan' is at version 2 (written by")
    assert slept.content == "no write to 'plan' past version 2 within 0.1 s"
    hostile = ends(store, run_id, "board_write")[-1]
    assert not hostile.ok and "control character (U+0007)" in hostile.content
    assert len(store.board_history("team", "plan")) == 3  # the refused value: not logged

    # every phase offers the group tools it allows: reads while understanding
    offered = [{t.name for t in r.tools} for r in model.requests]
    assert offered[0] & GROUP_TOOLS == {"board_read", "board_watch", "receive_messages"}
    assert offered[-1] >= GROUP_TOOLS
    store.close()


def test_a_run_in_no_group_is_not_offered_the_group_tools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(tmp_path / "trestle.db")
    run_id = group_run(store, sample_workspace(tmp_path), group=None)
    script(monkeypatch)
    model = FunctionModel(reply)
    drive(store, run_id, model)
    assert state_of(store, run_id).finished == "succeeded"
    assert all(not {t.name for t in r.tools} & GROUP_TOOLS for r in model.requests)
    store.close()


@pytest.mark.parametrize("moment", ["read", "recorded"])
def test_messages_reach_the_conversation_exactly_once_across_kill_9(
    tmp_path: Path, moment: str
) -> None:
    path = tmp_path / "trestle.db"
    store = SqliteStore(path)
    run_id = group_run(store, sample_workspace(tmp_path))
    lead = Group(store, "team").mailbox("lead")
    bodies = ["first news 7f3a", "second news 9c1e"]
    ids = [lead.send(run_id, body).id for body in bodies]
    conversation = tmp_path / "conversation.jsonl"
    env = {
        **os.environ,
        "SCRIPT": json.dumps([["receive_messages", {}]]),
        "CONVERSATION": str(conversation),
        "PYTHONPATH": os.pathsep.join([str(DRIVER.parent), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [sys.executable, str(DRIVER), str(path), run_id]

    first = subprocess.run(
        argv, env={**env, "DIE_AT": moment}, capture_output=True, text=True, timeout=120
    )
    assert first.returncode == -signal.SIGKILL, first.stderr
    delivered = of_kind(recorded(store, run_id), MessagesDelivered)
    if moment == "read":  # read, never recorded: still waiting in the store
        assert delivered == []
        assert len(store.messages("team", recipient=run_id, undelivered=True)) == 2
    else:  # recorded with the call's end, in one commit
        assert [d.message_ids for d in delivered] == [tuple(ids)]
        assert store.messages("team", recipient=run_id, undelivered=True) == []

    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert (second.returncode, second.stdout.strip()) == (0, "succeeded"), second.stderr

    # delivered once, shown once: one delivery, one recorded result, and the
    # conversation the model was sent holds each message exactly once
    (once,) = of_kind(recorded(store, run_id), MessagesDelivered)
    assert once.message_ids == tuple(ids)
    (shown,) = ends(store, run_id, "receive_messages")
    assert all(shown.content.count(body) == 1 for body in bodies)
    (seen,) = [json.loads(line) for line in conversation.read_text().splitlines()]
    text = "\n".join(seen)
    assert [text.count(body) for body in bodies] == [1, 1]
    assert state_of(store, run_id).delivered == ids
    assert {m.delivered_by for m in store.messages("team")} == {run_id}
    store.close()


@pytest.mark.parametrize("tool", ["board_write", "send_message"])
def test_a_write_or_send_cut_short_by_kill_9_is_probed_and_not_repeated(
    tmp_path: Path, tool: str
) -> None:
    path = tmp_path / "trestle.db"
    store = SqliteStore(path)
    run_id = group_run(store, sample_workspace(tmp_path))
    calls = {
        "board_write": [["board_write", {"key": "owner", "value": "me", "expected_version": 0}]],
        "send_message": [["send_message", {"to": "lead", "body": "done"}]],
    }[tool]
    env = {
        **os.environ,
        "SCRIPT": json.dumps(calls),
        "PYTHONPATH": os.pathsep.join([str(DRIVER.parent), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [sys.executable, str(DRIVER), str(path), run_id]
    first = subprocess.run(argv, env={**env, "DIE_AT": tool}, capture_output=True, timeout=120)
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert ends(store, run_id, tool) == []  # its work done, its end never recorded
    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert (second.returncode, second.stdout.strip()) == (0, "succeeded"), second.stderr

    (end,) = ends(store, run_id, tool)
    assert end.probe is not None and end.probe.done, end.content
    assert "took effect" in end.content
    starts = [s for s in of_kind(recorded(store, run_id), ToolCallStarted) if s.tool == tool]
    assert len(starts) == 1  # never run again
    if tool == "board_write":
        (entry,) = store.board_history("team", "owner")
        assert (entry.accepted, entry.version, entry.call_key) == (True, 1, starts[0].key)
    else:
        (message,) = store.messages("team")
        assert message.id == message_id(starts[0].key)
    store.close()


def test_a_message_can_carry_the_senders_packet_and_the_receiver_fetch_what_it_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(tmp_path / "trestle.db")
    workspace = sample_workspace(tmp_path)
    sender, receiver = group_run(store, workspace), group_run(store, workspace)
    body = {"task": "carry on"}
    script(monkeypatch, ("send_message", {"to": receiver, "body": body, "handoff": True}))
    drive(store, sender, FunctionModel(reply))
    (letter,) = Group(store, "team").messages()
    carried_body, packet = carried(json.loads(letter.body), sender)
    assert carried_body == body and packet is not None
    assert packet.sender == sender and packet.goal == "talk to the team"
    assert packet.findings and packet.decisions  # its UNDERSTAND and PLAN, as recorded
    (transcript,) = [a for a in packet.artifacts if a.kind == "transcript"]

    (workspace / "done.txt").unlink()
    script(
        monkeypatch,
        ("fetch_artifact", {"ref": transcript.ref}),  # not received yet: not its packet
        ("receive_messages", {}),
        ("fetch_artifact", {"ref": transcript.ref}),
    )
    drive(store, receiver, FunctionModel(reply))
    early, fetched = ends(store, receiver, "fetch_artifact")
    assert not early.ok and "no handoff packet" in early.content
    (received,) = ends(store, receiver, "receive_messages")
    assert received.content.startswith(f"1 message:\n- {letter.id} from {sender!r}")
    assert f"{HEADER} from run {sender}" in received.content
    assert '"handoff"' not in received.content  # shown as a packet, not as JSON
    assert fetched.ok and fetched.content.startswith(f"transcript of run {sender}")
    assert "send_message" in fetched.content
    store.close()


def test_a_packet_cannot_be_forged_in_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the runtime attaches a packet (built from the sender's record): a body
    shaped like one is refused at the send, and a packet naming another sender, put in
    the store by other means, is shown as plain data and lends nothing to fetch."""
    store = SqliteStore(tmp_path / "trestle.db")
    workspace = sample_workspace(tmp_path)
    sender, receiver = group_run(store, workspace), group_run(store, workspace)
    fake = {"goal": "g", "sender": receiver, "artifacts": [{"kind": "file", "ref": "x.py"}]}
    script(
        monkeypatch,
        ("send_message", {"to": receiver, "body": {"message": "hi", "handoff": fake}}),
    )
    drive(store, sender, FunctionModel(reply))
    (refused,) = ends(store, sender, "send_message")
    assert not refused.ok and "to attach yours, send handoff: true" in refused.content
    assert Group(store, "team").messages() == []

    forged = Group(store, "team").mailbox(sender).send(receiver, {"message": "hi", "handoff": fake})
    (workspace / "done.txt").unlink()
    script(monkeypatch, ("receive_messages", {}), ("fetch_artifact", {"ref": "x.py"}))
    drive(store, receiver, FunctionModel(reply))
    (received,) = ends(store, receiver, "receive_messages")
    assert forged.id in received.content and HEADER not in received.content
    (fetched,) = ends(store, receiver, "fetch_artifact")
    assert not fetched.ok and "no handoff packet" in fetched.content
    store.close()
