"""What monitors watch: a run as a sequence of observations, whatever recorded it.

A Trestle run's events, a SWE-agent ``.traj`` and a mini-swe-agent ``.traj.json`` all
become the same three things, so one set of monitors serves live runs, replays of
recorded runs and the offline evaluation:

- :class:`Turn`: one model call and the actions it asked for, each with its outcome;
- :class:`StepEnd`: a plan step's attempt ended (Trestle runs only);
- :class:`Stall`: a step has shown no sign of life for too long (live runs only).

``seq`` fields are evidence: for a Trestle run, the event sequence numbers; for an
imported file, the position of the entry in the file (1-based), so an alert can point
at what shows it either way.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trestle.core.record import Record
from trestle.core.records.monitors import Malformed as Malformed  # with the alert kinds

# What an action is, as far as the monitors care: reading (files, listings, searches),
# editing (anything that changes files), testing (running the test command), running
# anything else, or declaring the work finished.
ActionKind = Literal["read", "edit", "test", "run", "finish", "other"]


class Action(Record):
    """One action (a tool call, a shell command) and what it produced."""

    seq: int
    tool: str  # the tool's own name ("read_file", "bash", "str_replace_editor", ...)
    kind: ActionKind
    arguments: str  # as the model gave them: JSON text, or the command line
    target: str = ""  # the file or the command the action is about, normalised
    ok: bool | None = None  # None: the outcome is not known
    output: str = ""  # the observation the model was shown (possibly shortened)
    # the whole observation's length in characters, when ``output`` keeps only part of
    # it (importers cap what they keep); 0: ``output`` is all of it
    output_chars: int = Field(default=0, ge=0)
    error: str | None = None
    writes: tuple[str, ...] = ()  # files it changed, when known


class Turn(Record):
    """One model call and the actions it asked for."""

    index: int = Field(ge=0)  # position among the run's turns, from 0
    seq: int
    step: str = ""  # the plan step it belongs to ("" for an imported trajectory)
    round: int = 1
    text: str = ""  # what the model wrote besides its actions (its reasoning)
    actions: tuple[Action, ...] = ()
    problem: Malformed | None = None
    tokens: int = 0
    # the context's size at this call: the prompt tokens the provider reported, or in a
    # live Trestle run whose model reported none, the runtime's offline estimate of the
    # request as sent, after any compression (then ``prompt_estimated``); 0: unknown
    prompt_tokens: int = Field(default=0, ge=0)
    prompt_estimated: bool = False
    cost: float = 0.0  # dollars for this call
    seconds: float = 0.0  # how long the call and its actions took, when known

    @property
    def evidence(self) -> tuple[int, ...]:
        return (self.seq, *(a.seq for a in self.actions))


class StepEnd(Record):
    """A plan step's attempt ended: how long it ran, what it cost, how it was judged."""

    seq: int
    step: str
    attempt: int
    ok: bool
    seconds: float
    cost: float = 0.0
    calls: int = 0  # model calls it made
    claimed_done: bool = False  # the agent called ``finish``
    failed_checks: tuple[str, ...] = ()  # the verify checks that failed
    # the workspace files it changed, and those it deleted, as its checkpoints show
    # them (none known without a checkpoint before and after it)
    wrote: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()


class Stall(Record):
    """A running step has shown no sign of life (an event) for ``silent`` seconds."""

    seq: int  # the last event the step recorded
    step: str
    attempt: int
    silent: float


Observation = Turn | StepEnd | Stall


class RunFacts(Record):
    """What monitors know about a run besides its observations."""

    goal: str = ""
    objectives: dict[str, str] = {}  # step id -> what the step is for
    read_only: frozenset[str] = frozenset()  # steps meant only to look (understand, plan)
    scope: tuple[str, ...] = ()  # globs a write may touch; empty: anywhere
    turn_limit: int | None = None  # model calls the run (or each step) may make
    cost_limit: float | None = None  # dollars the run may spend
    model: str = ""  # the model the run called, as recorded ("" when the file says not)
