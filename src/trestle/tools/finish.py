"""finish: the agent's claim that its step is done.

A claim, not a verdict: the runtime records it and then runs the step's verify checks,
which decide. The claim travels to the runtime as structured ``data`` on the
observation, read back with :func:`finish_claim`.
"""

from __future__ import annotations

from pydantic import Field, ValidationError

from trestle.core.record import Record
from trestle.tools.base import Observation, Tool, ToolArgs, ToolContext

FINISH_KEY = "finish"  # where the claim sits in the observation's data


class FinishClaim(Record):
    """What the agent says it did, and what it says is now true."""

    summary: str
    claims: tuple[str, ...] = ()


class FinishArgs(ToolArgs):
    summary: str = Field(min_length=1, description="What you did in this step.")
    claims: tuple[str, ...] = Field(
        default=(),
        description="Specific things that are now true and can be checked, e.g. "
        "'tests/test_parse.py passes'.",
    )


class Finish(Tool[FinishArgs]):
    name = "finish"
    description = (
        "Declare the current step done, with a summary and the checkable claims. "
        "The step's verify checks then judge it; if they fail you will be told why."
    )
    nature = "read"  # it changes nothing; the runtime acts on the claim
    arguments = FinishArgs

    async def run(self, ctx: ToolContext, args: FinishArgs) -> Observation:
        claim = FinishClaim(summary=args.summary, claims=args.claims)
        return Observation.success(
            "Noted: you say this step is done. Its verify checks will judge that now.",
            data={FINISH_KEY: claim.model_dump(mode="json")},
        )


def finish_claim(observation: Observation) -> FinishClaim | None:
    """The finish claim an observation carries, or ``None`` if it carries none."""
    raw = observation.data.get(FINISH_KEY)
    if not observation.ok or raw is None:
        return None
    try:
        return FinishClaim.model_validate(raw)
    except ValidationError:
        return None
