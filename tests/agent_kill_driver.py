"""Drive an agent run that reads files, to its end or until it is killed.

Usage::

    python tests/agent_kill_driver.py STORE_PATH RUN_ID READS

The model answers by step and turn (the runtime tells it the turn it answers), so a
driver started again after a kill answers every turn as the killed one would have:
``understand`` reads ``notes/nI.txt`` for I below READS, each answer reporting a usage
of its own, then gives its findings; ``plan`` plans one step; that step finishes.
``tests/test_agent_crash.py`` kills it at random moments and starts it again. The last
line printed is the run's final status.

With ``DIE_AFTER=KIND`` in its environment the driver kills itself (SIGKILL) right
after it committed a batch holding an event of that kind: a crash at an exact point.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Sequence

from agent_helpers import drive_taking_over
from trestle.agent.runtime import AgentPerformer
from trestle.core.state import RunState
from trestle.models import FunctionModel, Message, ModelResponse, ToolCall, ToolSchema, Usage
from trestle.store import SqliteStore
from trestle.store.base import Appended


def usage(turn: int) -> Usage:
    """What turn ``turn`` of ``understand`` reports: distinct per turn."""
    return Usage(input_tokens=1_000 + turn, output_tokens=10)


class TurnModel(FunctionModel):
    def __init__(self, step: str, reads: int) -> None:
        super().__init__(self._answer, name="scripted")
        self.step, self.reads, self.turn = step, reads, 1

    def seek(self, turn: int) -> None:
        self.turn = turn

    def _answer(self, messages: Sequence[Message], tools: Sequence[ToolSchema]) -> ModelResponse:
        if self.step == "understand" and self.turn <= self.reads:
            path = json.dumps({"path": f"notes/n{self.turn - 1}.txt"})
            call = ToolCall(id=f"c{self.turn}", name="read_file", arguments=path)
            return ModelResponse(
                text=f"reading note {self.turn}",
                tool_calls=(call,),
                finish_reason="tool_calls",
                usage=usage(self.turn),
            )
        if self.step == "understand":
            findings = {
                "summary": "read the notes",
                "relevant_files": [{"path": "notes/n0.txt", "why": "read first"}],
                "how_to_test": "true",
            }
            return ModelResponse(text=json.dumps(findings), usage=usage(self.turn))
        if self.step == "plan":
            step = {
                "id": "wrap-up",
                "objective": "say the notes were read",
                "files": [],
                "verify": [{"command": "test -s notes/n0.txt"}],
            }
            return ModelResponse(text=json.dumps({"summary": "one step", "steps": [step]}))
        finish = json.dumps({"summary": "done", "claims": ["every note was read"]})
        call = ToolCall(id="f", name="finish", arguments=finish)
        return ModelResponse(tool_calls=(call,), finish_reason="tool_calls")


class TurnModels:
    """A model per agent step (the runtime's ``for_step`` hook)."""

    name = "scripted"

    def __init__(self, reads: int) -> None:
        self.reads = reads

    def for_step(self, step: str, round: int, tree: Sequence[str] = ()) -> TurnModel:
        return TurnModel(step, self.reads)

    async def complete(self, *args: object, **kwargs: object) -> ModelResponse:
        raise AssertionError("each step asks for_step() for its model")


def die_after(kind: str) -> None:
    appended = SqliteStore.append

    def append(self: SqliteStore, run_id: str, batch: Appended, *, token: int) -> None:
        appended(self, run_id, batch, token=token)
        if any(e.kind == kind for e in batch.events):
            os.kill(os.getpid(), signal.SIGKILL)

    SqliteStore.append = append  # type: ignore[method-assign]


async def drive(store_path: str, run_id: str, reads: int) -> RunState:
    return await drive_taking_over(store_path, run_id, AgentPerformer(TurnModels(reads)))


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    if os.environ.get("DIE_AFTER"):
        die_after(os.environ["DIE_AFTER"])
    started = time.monotonic()
    state = asyncio.run(drive(argv[0], argv[1], int(argv[2])))
    print(f"took {time.monotonic() - started:.2f}s", file=sys.stderr)
    print(state.finished or "running")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
