"""Recorded trajectories: the model's answers of a run, to replay without a model.

A :class:`Trajectory` holds, for each agent step's conversation (``step#round``), the
model's responses in order; a delegated child's conversations are keyed under its
place in the tree (``fix#1/understand#1``: the child that step ``fix`` delegated to in
round 1), so one trajectory replays a whole tree. :func:`trajectory_of` extracts one
from a recorded run; :class:`ReplayModel` answers from one, conversation by
conversation, without calling anything. That is how ``trestle demo`` runs offline,
and how a run can be re-run against a changed runtime to see what its recorded
answers now lead to.

Replay goes by order, not by request hash: the workspace's tool output (timings,
paths) may differ from the recording, and the answers still apply.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from trestle.core.conversation import Message, ModelResponse, ToolSchema
from trestle.core.errors import ConfigError, PlanError, ScriptExhaustedError
from trestle.core.events import AnyEvent, ModelCalled
from trestle.core.record import Record
from trestle.core.step_state import transcript_key
from trestle.formats.text_files import read_text_file

REPLAY_PREFIX = "replay:"
MAX_TRAJECTORY_BYTES = 256 * 1024 * 1024  # thousands of long answers; not a device's stream


class Trajectory(Record):
    """The model's responses of a run, per conversation (``step#round``), in order."""

    format: Literal["trestle-trajectory/1"] = "trestle-trajectory/1"
    goal: str = ""
    conversations: dict[str, tuple[ModelResponse, ...]]


def conversation_key(step: str, round: int, tree: Sequence[str] = ()) -> str:
    """A conversation's key in a trajectory: ``step#round``, under the tree path of the
    run it belongs to (empty for the run the trajectory was taken from)."""
    return "/".join((*tree, transcript_key(step, round)))


def trajectory_of(
    events: Iterable[AnyEvent], goal: str = "", tree: Sequence[str] = ()
) -> Trajectory:
    """The trajectory a recorded run holds, its keys under ``tree`` (a descendant's
    path below the run the trajectory is for). Where a replay diverged and a turn was
    called again, the later answer is the one kept."""
    turns: dict[str, dict[int, ModelResponse]] = {}
    for event in events:
        if isinstance(event, ModelCalled):
            key = conversation_key(event.step, event.round, tree)
            turns.setdefault(key, {})[event.turn] = event.response
    conversations = {
        key: tuple(by_turn[t] for t in sorted(by_turn)) for key, by_turn in turns.items()
    }
    return Trajectory(goal=goal, conversations=conversations)


def load_trajectory(path: Path) -> Trajectory:
    """Read a trajectory file (a regular file of at most :data:`MAX_TRAJECTORY_BYTES`:
    a FIFO or ``/dev/zero`` is refused by its type, unread); a :class:`ConfigError`
    names what is wrong with it."""
    try:
        text = read_text_file(path, MAX_TRAJECTORY_BYTES)
    except PlanError as exc:
        raise ConfigError(f"trajectory {str(path)!r}: cannot read it: {exc.problems[0]}") from None
    try:
        return Trajectory.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"trajectory {str(path)!r}: not JSON: {exc}") from None
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(map(str, first["loc"]))
        raise ConfigError(f"trajectory {str(path)!r}, field {where!r}: {first['msg']}") from None


class ReplayModel:
    """A model that answers from a trajectory: each step's conversation gets the
    responses recorded for it, in order (see :meth:`for_step`)."""

    def __init__(self, trajectory: Trajectory, *, name: str = "replay") -> None:
        self.trajectory, self.name = trajectory, name

    def for_step(self, step: str, round: int, tree: Sequence[str] = ()) -> _Conversation:
        """The model for one step's conversation (in the run at ``tree`` below the
        trajectory's own)."""
        key = conversation_key(step, round, tree)
        return _Conversation(self.name, key, self.trajectory.conversations.get(key, ()))

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSchema] = (),
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> ModelResponse:
        raise ScriptExhaustedError(
            f"replay model {self.name!r} answers per step: ask for_step(step, round)"
        )


class _Conversation:
    def __init__(self, name: str, key: str, responses: Sequence[ModelResponse]) -> None:
        self.name, self.key = name, key
        self._responses = list(responses)
        self._next = 0

    def seek(self, turn: int) -> None:
        """Answer turn ``turn`` (1-based) next: a resumed step replays the turns it
        recorded itself and asks only for the ones after them."""
        self._next = turn - 1

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSchema] = (),
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> ModelResponse:
        if self._next >= len(self._responses):
            raise ScriptExhaustedError(
                f"the trajectory has no answer left for {self.key!r} "
                f"(it recorded {len(self._responses)})"
            )
        self._next += 1
        return self._responses[self._next - 1]
