"""Drive one agent run of a group to its end with a function model; the crash tests'
driver process (and their model, imported by the in-process tests).

Usage::

    python tests/group_agent_driver.py STORE_PATH RUN_ID

The model (:func:`reply`) answers UNDERSTAND with findings, PLAN with one step
``talk``, and in that step makes the calls in ``$SCRIPT`` (a JSON list of
``[tool, arguments]``), then writes ``done.txt`` (what the step's check looks for)
and calls ``finish``; before it finishes it appends the texts of
the conversation it was sent, as one JSON line, to ``$CONVERSATION``.

``DIE_AT`` makes the driver kill itself (SIGKILL) at a moment of a receive:
``read`` once ``receive_messages`` has read messages, before it returns them;
``recorded`` right after the commit that records their delivery and the call's end;
or once a ``board_write`` or a ``send_message`` did its work, before its end is
recorded (``board_write``, ``send_message``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from agent_helpers import call, drive_taking_over, findings_json, plan_json, plan_step
from trestle.agent.runtime import AgentPerformer
from trestle.models import FunctionModel, Message, ModelResponse, ToolSchema
from trestle.store import SqliteStore
from trestle.store.base import Appended
from trestle.tools.base import Observation, Tool, ToolContext
from trestle.tools.group import BoardWrite, ReceiveMessages, ReceiveMessagesArgs, SendMessage

# its check fails until the script wrote done.txt: a crash before that re-runs the step
DONE = ("write_file", {"path": "done.txt", "content": "talked\n"})
TALK = plan_step(
    "talk", "talk to the group", new_files=["done.txt"], verify=[{"file_exists": "done.txt"}]
)


def reply(messages: Sequence[Message], tools: Sequence[ToolSchema]) -> ModelResponse | str:
    task = messages[2].content if len(messages) > 2 else ""
    if "Phase UNDERSTAND" in task:
        return findings_json()
    if "Phase PLAN" in task:
        return plan_json(TALK, summary="talk")
    script: list[list[Any]] = [*json.loads(os.environ.get("SCRIPT", "[]")), list(DONE)]
    turn = sum(m.role == "assistant" for m in messages)
    if turn < len(script):
        tool, arguments = script[turn]
        return call(tool, call_id=f"call_{turn}", **arguments)
    dump = os.environ.get("CONVERSATION")
    if dump:
        with open(dump, "a", encoding="utf-8") as out:
            out.write(json.dumps([m.content for m in messages]) + "\n")
    return call("finish", call_id="call_end", summary="talked", claims=["talked"])


def die_at(moment: str) -> None:
    if moment == "read":
        received = ReceiveMessages.run

        async def run(self: ReceiveMessages, ctx: ToolContext, args: ReceiveMessagesArgs) -> Any:
            observation: Observation = await received(self, ctx, args)
            if observation.records:  # it read messages: die before anyone records them
                os.kill(os.getpid(), signal.SIGKILL)
            return observation

        ReceiveMessages.run = run  # type: ignore[method-assign]
    elif moment in ("board_write", "send_message"):
        tool: type[Tool[Any]] = BoardWrite if moment == "board_write" else SendMessage
        done = tool.run

        async def work(self: Any, ctx: ToolContext, args: Any) -> Any:
            await done(self, ctx, args)
            os.kill(os.getpid(), signal.SIGKILL)

        tool.run = work  # type: ignore[method-assign]
    elif moment == "recorded":
        appended = SqliteStore.append

        def append(self: SqliteStore, run_id: str, batch: Appended, *, token: int) -> None:
            appended(self, run_id, batch, token=token)
            if any(e.kind == "messages_delivered" for e in batch.events):
                os.kill(os.getpid(), signal.SIGKILL)

        SqliteStore.append = append  # type: ignore[method-assign]


async def drive(store_path: str, run_id: str) -> str:
    performer = AgentPerformer(FunctionModel(reply))
    state = await drive_taking_over(store_path, run_id, performer, poll_interval=0.02)
    return state.finished or "running"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    if os.environ.get("DIE_AT"):
        die_at(os.environ["DIE_AT"])
    print(asyncio.run(drive(*argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
