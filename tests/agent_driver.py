"""Drive one agent run to its end against an OpenAI-compatible server.

Usage::

    python tests/agent_driver.py BASE_URL STORE_PATH RUN_ID

The model is ``openai:test-model`` through the real ``openai`` client. The run must
already exist in the store (see :func:`trestle.lifecycle.runs.create_run`); a run that was
driven before, by a process that died, is resumed. The last line printed is the
run's final status. ``tests/test_agent_loopback.py`` starts this script in its own
process group, kills it part-way and starts it again.

With ``DIE_AFTER_WRITE=1`` in its environment the driver kills itself (SIGKILL) right
after ``write_file`` has written, before the call's end is recorded: the crash window
of a side-effecting tool call, hit exactly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from agent_helpers import drive_taking_over
from trestle.agent.runtime import AgentPerformer
from trestle.core.state import RunState
from trestle.models import model_from_spec
from trestle.models.openai import OpenAIModel
from trestle.models.retry import RetryPolicy
from trestle.tools.edits import WriteFile

MODEL_SPEC = "openai:test-model"


async def drive(base_url: str, store_path: str, run_id: str) -> RunState:
    """Drive ``run_id`` until it finishes or waits on a human; return its state."""
    model = model_from_spec(
        MODEL_SPEC, base_url=base_url, api_key="x", retry=RetryPolicy(max_attempts=1)
    )
    assert isinstance(model, OpenAIModel)
    try:
        return await drive_taking_over(store_path, run_id, AgentPerformer(model))
    finally:
        await model.aclose()


def die_after_write() -> None:
    wrote = WriteFile.work

    def work(self: WriteFile, ctx: Any, args: Any) -> Any:
        wrote(self, ctx, args)
        os.kill(os.getpid(), signal.SIGKILL)

    WriteFile.work = work  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    if os.environ.get("DIE_AFTER_WRITE") == "1":
        die_after_write()
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    state = asyncio.run(drive(*argv))
    print(state.finished or "running")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
