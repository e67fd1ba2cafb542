"""The plan: steps, what each needs, and how each is verified.

A plan is plain frozen data (it is recorded verbatim in the run's first event), plus
the pure graph questions the runtime and the CLI ask of it: is it a DAG, in which
order and in which parallel waves can it run, and what is its critical path.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Annotated, Any, Literal, NamedTuple, Protocol

from pydantic import (
    AfterValidator,
    BaseModel,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from trestle.core.budget import DIMENSIONS, Budget, Dimension
from trestle.core.field_problems import did_you_mean
from trestle.core.policy import Policy, Tier
from trestle.core.record import Record

STEP_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
STEP_ID_MAX = 128
PYTHON_REF_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"
MAX_STEPS = 10_000
MAX_SECONDS = 30 * 24 * 3600.0  # the longest timeout or delay a plan may ask for: 30 days
MAX_FACTOR = 100.0

Seconds = Annotated[float, Field(gt=0, le=MAX_SECONDS)]
CARVED: tuple[Dimension, ...] = tuple(d for d in DIMENSIONS if d != "seconds")


def _ref_safe_id(step_id: str) -> str:
    """Step ids name checkpoint refs (``RUN/STEP/N/before``), so they follow git's rules
    for a ref component too: no ``..``, no trailing ``.`` and no ``.lock`` ending."""
    if ".." in step_id or step_id.endswith((".", ".lock")):
        raise ValueError(f"{step_id!r} cannot contain '..' or end in '.' or '.lock'")
    return step_id


StepId = Annotated[
    str, Field(pattern=STEP_ID_PATTERN, max_length=STEP_ID_MAX), AfterValidator(_ref_safe_id)
]
GroupName = Annotated[str, Field(pattern=STEP_ID_PATTERN, max_length=STEP_ID_MAX)]
"""A group's name in a plan: letters, digits, ``_``, ``.`` and ``-``, like a step id."""


def _no_nul(text: str) -> str:
    """A NUL cannot be passed to a process (argv, environment) or name a file: refuse
    it up front rather than fail the step mid-run."""
    if "\0" in text:
        raise ValueError("contains a NUL character")
    return text


def _env_name(name: str) -> str:
    if not name or "=" in name or "\0" in name:
        raise ValueError(f"invalid environment variable name {name!r}")
    return name


ProcessText = Annotated[str, AfterValidator(_no_nul)]
EnvName = Annotated[str, AfterValidator(_env_name)]


# --- verify checks: each is written in YAML as a mapping keyed by its kind -------------


class CommandCheck(Record):
    """Passes when the shell command exits 0 in the workspace."""

    command: ProcessText = Field(min_length=1)
    timeout: Seconds = 60.0


class FileExistsCheck(Record):
    """Passes when the path (relative to the workspace) exists."""

    file_exists: ProcessText = Field(min_length=1)


class FileContainsCheck(Record):
    """Passes when the file contains ``text`` verbatim, or matches ``regex``."""

    file_contains: ProcessText = Field(min_length=1)
    text: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one_pattern(self) -> FileContainsCheck:
        if (self.text is None) == (self.regex is None):
            raise ValueError("give exactly one of 'text' or 'regex'")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except (re.error, OverflowError, RecursionError) as exc:  # a{99999999999}
                raise ValueError(f"invalid regex {self.regex!r}: {exc}") from None
        return self


class CallableCheck(Record):
    """Passes when the callable (``module:function``) returns anything but ``False``
    without raising, as a ``python:`` step succeeds (``None`` passes: an assert-style
    check raises to fail)."""

    python: str = Field(pattern=PYTHON_REF_PATTERN)


CHECK_KINDS = ("command", "file_exists", "file_contains", "python")


def _check_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        for kind in CHECK_KINDS:
            if kind in type(value).model_fields:
                return kind
        return None
    if isinstance(value, Mapping):
        present = [k for k in CHECK_KINDS if k in value]
        return present[0] if len(present) == 1 else None
    return None


Check = Annotated[
    Annotated[CommandCheck, Tag("command")]
    | Annotated[FileExistsCheck, Tag("file_exists")]
    | Annotated[FileContainsCheck, Tag("file_contains")]
    | Annotated[CallableCheck, Tag("python")],
    Discriminator(
        _check_kind,
        custom_error_type="check_kind",
        custom_error_message=f"a check needs exactly one of: {', '.join(CHECK_KINDS)}",
    ),
]


def describe_check(check: Check) -> str:
    """A short human description of what a check expects."""
    match check:
        case CommandCheck(command=cmd):
            return f"`{cmd}` exits 0"
        case FileExistsCheck(file_exists=path):
            return f"{path} exists"
        case FileContainsCheck(file_contains=path, text=text, regex=regex):
            return f"{path} contains {text!r}" if text is not None else f"{path} matches /{regex}/"
        case CallableCheck(python=ref):
            return f"{ref}() is true"
    raise AssertionError(f"unhandled check {check!r}")  # pragma: no cover


# --- steps and plans -------------------------------------------------------------------


def _inside_workspace(path: str) -> str:
    """A write's path must stay in the workspace as written: an absolute path or one
    that climbs out with ``..`` is refused when the step is made (a plan loaded, an
    edit approved), not after a human approved it and the run could not do it."""
    normal = posixpath.normpath(path)
    if path.startswith("/") or normal == ".." or normal.startswith("../"):
        raise ValueError(
            f"{path!r} leads outside the workspace: "
            "give a path relative to the workspace, without '..'"
        )
    return path


class WriteAction(Record):
    """Write ``content`` to ``path`` (relative to the workspace), creating parents."""

    path: Annotated[ProcessText, AfterValidator(_inside_workspace)] = Field(min_length=1)
    content: str


class Backoff(Record):
    """Delay before retry n (1-based): ``min(initial * factor**(n-1), max)`` seconds."""

    initial: float = Field(default=1.0, ge=0, le=MAX_SECONDS)
    factor: float = Field(default=2.0, ge=1, le=MAX_FACTOR)
    max: float = Field(default=60.0, ge=0, le=MAX_SECONDS)

    def delay(self, retry_number: int) -> float:
        # grow step by step and stop at the cap: ``factor ** n`` alone can overflow
        delay = self.initial
        for _ in range(max(retry_number - 1, 0)):
            if delay >= self.max:
                break
            delay *= self.factor
        return float(min(delay, self.max))


AgentRole = Literal["understand", "plan", "review", "execute", "validate"]


class AgentTask(Record):
    """A step the agent runtime performs with a model (or, for ``review`` and
    ``validate``, without one): what the step is for and what it may touch.

    ``round`` counts plans: 1 for the first, one more for each re-plan after failed
    acceptance checks. ``files`` and ``new_files`` are the files an execute step may
    change and create; its writes outside them are refused.
    """

    role: AgentRole
    objective: str = ""
    files: tuple[str, ...] = ()
    new_files: tuple[str, ...] = ()
    round: int = Field(default=1, ge=1, le=10_000)


class ChildAgent(Record):
    """A delegated child that is an agent run: the model it talks to and how it works.

    ``model`` defaults to the parent agent's; ``tools`` (tool names) must be among the
    parent's, and the child is offered only those.
    """

    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    tools: tuple[str, ...] | None = None
    rules: tuple[str, ...] = ()
    test_command: ProcessText | None = None
    max_turns: int = Field(default=30, ge=1, le=10_000)
    max_tokens: int | None = Field(default=None, gt=0, le=10_000_000)  # per answer
    plan_approval: Literal["confirm", "auto"] = "confirm"


class Delegation(Record):
    """Work handed to a child run (see :mod:`trestle.core.tree`): its goal, and either the
    plan it follows or the agent that pursues it.

    The child works within the parent: its write ``scope`` (globs) inside the parent's,
    its ``budget`` carved from the parent's (held in reserve while it runs, so children
    can never jointly pass the parent's limits), its approvals under the parent's
    policy. ``acceptance`` and ``constraints`` travel to the child with the goal.
    """

    goal: str = Field(min_length=1, max_length=20_000)
    plan: Plan | None = None
    agent: ChildAgent | None = None
    scope: tuple[ProcessText, ...] = ()
    budget: Budget | None = None
    acceptance: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()

    def carve(self) -> dict[Dimension, float]:
        """The child's hard limits: what it holds of its parent's budget. Time is not
        carved: a child's seconds pass inside its parent's attempt, and count there."""
        if self.budget is None:
            return {}
        levels = {dim: self.budget.limit(dim) for dim in CARVED}
        return {d: lim.hard for d, lim in levels.items() if lim is not None and lim.hard}

    @model_validator(mode="after")
    def _one_kind(self) -> Delegation:
        if (self.plan is None) == (self.agent is None):
            raise ValueError("give the child a 'plan' or an 'agent', one of them")
        for glob in self.scope:
            if ".." in glob.split("/"):
                # `notes/../src/**` read as inside `notes/**` to the check against the
                # parent's writes, and the sandbox followed it into `src`
                raise ValueError(
                    f"scope {glob!r} climbs out with '..': name the directories the "
                    "child may write from the workspace's top"
                )
        if self.plan is not None and self.plan.policy is not None:
            raise ValueError(
                "a delegated plan works under its parent's policy: leave out its "
                "'policy' and narrow what it may write with the delegation's 'scope'"
            )
        return self


ActionKind = Literal["run", "write", "python", "agent", "delegate"]
ACTION_KINDS: tuple[ActionKind, ...] = ("run", "write", "python", "agent", "delegate")


class Step(Record):
    """One unit of work: an action, what it needs, and how to tell that it worked."""

    id: StepId
    description: str = ""
    run: ProcessText | None = Field(default=None, min_length=1)
    write: WriteAction | None = None
    python: str | None = Field(default=None, pattern=PYTHON_REF_PATTERN)
    agent: AgentTask | None = None
    delegate: Delegation | None = None
    needs: tuple[str, ...] = Field(default=(), max_length=MAX_STEPS)
    verify: tuple[Check, ...] = ()
    retries: int = Field(default=0, ge=0, le=100)
    backoff: Backoff = Backoff()
    timeout: Seconds | None = None
    # how long one attempt is expected to take: orders starts under a parallelism cap
    expected_duration: Seconds | None = None
    optional: bool = False
    irreversible: bool = False
    idempotent: bool | None = None
    env: dict[EnvName, ProcessText] = Field(default_factory=dict)
    # what the approval policy and a human reviewing the step go by
    approval: Tier | None = None  # force this tier (the plan author's word)
    tags: tuple[str, ...] = ()
    confidence: float | None = Field(default=None, ge=0, le=1)
    cost: float | None = Field(
        default=None, ge=0, le=1e12
    )  # estimated dollars, held against the budget
    reasoning: str = ""  # why this action is the right one
    uncertainties: tuple[str, ...] = ()  # what the author is unsure of

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        given = [k for k in ACTION_KINDS if getattr(self, k) is not None]
        if not given:
            raise ValueError("missing action: give one of 'run', 'write', 'python' or 'delegate'")
        if len(given) > 1:
            raise ValueError(f"give only one action, not {' and '.join(map(repr, given))}")
        if self.irreversible and self.idempotent:
            raise ValueError("an irreversible step cannot also be idempotent")
        return self

    @property
    def action_kind(self) -> ActionKind:
        if self.run is not None:
            return "run"
        if self.write is not None:
            return "write"
        if self.agent is not None:
            return "agent"
        if self.delegate is not None:
            return "delegate"
        return "python"

    @property
    def rerunnable(self) -> bool:
        """May this step run again after an attempt whose outcome is unknown?

        Writing the same content twice is harmless, and doing a delegation again
        resumes its child (which never repeats what it finished), so both default to
        idempotent; commands and callables must say so. Irreversible steps never are.
        """
        if self.irreversible:
            return False
        if self.idempotent is not None:
            return self.idempotent
        return self.action_kind in ("write", "delegate")

    def action_payload(self) -> dict[str, object]:
        """Everything that makes this step's action what it is: an approval is bound to
        a hash of this, so any change to it needs a new approval."""
        return self.model_dump(
            mode="json",
            include={"id", "run", "write", "python", "agent", "delegate", "env", "timeout"},
        )

    def describe_action(self) -> str:
        if self.run is not None:
            return self.run
        if self.write is not None:
            return f"write {self.write.path}"
        if self.agent is not None:
            return f"agent {self.agent.role}: {self.agent.objective}"
        if self.delegate is not None:
            return f"delegate: {self.delegate.goal}"
        return f"call {self.python}"


class Plan(Record):
    """A goal and the steps that reach it, as a dependency graph."""

    version: Literal[1] = 1
    goal: str = ""
    workspace: str = "."
    parallelism: int = Field(default=32, ge=1, le=1024)
    escalate: bool = True  # a required step out of attempts goes to the dead-letter queue
    policy: Policy | None = None  # approval tiers and rules (trestle.toml's win over these)
    budget: Budget | None = None
    # workspace snapshots: before and after every attempt (so each has its own diff),
    # only before irreversible steps, or none
    checkpoints: Literal["irreversible", "every_step", "off"] = "every_step"
    # gitignore-style globs left out of workspace checkpoints (besides .gitignore's)
    checkpoint_ignore: tuple[str, ...] = ()
    # a file larger than this (bytes, by its apparent size) is left out of checkpoints,
    # and named in them: a step's 20 GiB sparse file must not stall or fill the store
    checkpoint_max_file_size: int = Field(default=64 * 1024 * 1024, ge=1)
    # delegation: children running at once, and children this run may create at all
    # (each retry of a delegating step is a new child)
    child_parallelism: int = Field(default=4, ge=1, le=1024)
    max_children: int = Field(default=32, ge=0, le=10_000)
    # the group of runs this run shares a blackboard and mailboxes with
    # (trestle.coordination.groups)
    group: GroupName | None = None
    steps: tuple[Step, ...] = Field(min_length=1, max_length=MAX_STEPS)

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.steps)

    @field_validator("checkpoints", mode="before")
    @classmethod
    def _checkpoints_off(cls, value: object) -> object:
        """YAML reads a bare ``off`` as false: ``checkpoints: off`` means "off"."""
        return "off" if value is False else value

    @model_validator(mode="after")
    def _no_approver_groups(self) -> Plan:
        """Who may approve is the operator's to say: a plan that could name its own
        approvers could name its author's key."""
        if self.policy is not None and (self.policy.groups or self.policy.approvers):
            raise ValueError(
                "policy: groups and approvers are the operator's: set them in "
                "trestle.toml's [policy], not in a plan"
            )
        return self

    @model_validator(mode="after")
    def _children_carry_budgets(self) -> Plan:
        """A child's budget is carved from this plan's: each dimension this plan limits
        must have a hard level in every delegation, or children could pass it."""
        if self.budget is None:
            return self
        limited = [d for d in CARVED if self.budget.limit(d) is not None]
        for step in self.steps:
            if step.delegate is None:
                continue
            carved = step.delegate.budget
            for dim in limited:
                limit = carved.limit(dim) if carved is not None else None
                if limit is None or limit.hard is None:
                    raise ValueError(
                        f"step {step.id!r} delegates without a hard {dim} limit, and this "
                        f"plan limits {dim}: give 'delegate: budget: {dim}: hard:' (what "
                        "the child may use, held against this plan's budget while it runs)"
                    )
        return self


Delegation.model_rebuild()
Step.model_rebuild()
Plan.model_rebuild()


# --- graph questions -------------------------------------------------------------------


class Node(Protocol):
    """What the graph questions need of a step: its id and what it needs."""

    @property
    def id(self) -> str: ...

    @property
    def needs(self) -> Sequence[str]: ...


class GraphProblem(NamedTuple):
    """A problem with the graph, placed at a step: ``field`` is where within the step
    (``("needs", 2)``), or empty for a problem of the whole plan (a cycle)."""

    step: int
    field: tuple[str | int, ...]
    message: str


def graph_problems(steps: Sequence[Node]) -> list[GraphProblem]:
    """Duplicate ids, unknown or repeated needs, and cycles, for steps in file order
    (a plan file's raw steps too, so a plan that fails other checks is checked)."""
    problems: list[GraphProblem] = []
    seen: set[str] = set()
    for index, step in enumerate(steps):
        if step.id in seen:
            problems.append(GraphProblem(index, ("id",), "duplicate step id"))
        seen.add(step.id)
    for index, step in enumerate(steps):
        for at, need in enumerate(step.needs):
            if need == step.id:
                problems.append(GraphProblem(index, ("needs", at), "a step cannot need itself"))
            elif need not in seen:
                hint = did_you_mean(need, seen)
                problems.append(GraphProblem(index, ("needs", at), f"unknown step {need!r}{hint}"))
            elif need in step.needs[:at]:
                problems.append(GraphProblem(index, ("needs", at), f"lists {need!r} twice"))
    # looked for whatever else is wrong, so one pass of fixes is enough: unknown needs
    # lead nowhere, and a step that needs itself is said above
    position = {step.id: index for index, step in enumerate(steps)}
    cycle = find_cycle({step.id: [n for n in step.needs if n != step.id] for step in steps})
    if cycle:
        shown = cycle if len(cycle) <= 12 else [*cycle[:10], "...", *cycle[-1:]]
        size = f" of {len(cycle) - 1} steps" if len(cycle) > 12 else ""
        message = f"dependency cycle{size}: " + " -> ".join(shown)
        problems.append(GraphProblem(position[cycle[0]], (), message))
    return problems


def find_cycle(needs: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle as a closed path (``a -> b -> a``), or None for a DAG.

    Depth-first with an explicit stack: a chain of thousands of steps must not exhaust
    Python's recursion limit.
    """
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(needs, white)
    for root in needs:
        if colour[root] != white:
            continue
        path: list[str] = [root]
        pending: list[Iterator[str]] = [iter(needs[root])]
        colour[root] = grey
        while pending:
            nxt = next(pending[-1], None)
            if nxt is None:
                colour[path.pop()] = black
                pending.pop()
            elif colour.get(nxt) == grey:
                found = [*path[path.index(nxt) :], nxt]
                # report in "runs before" order: a needs b means b -> a
                return list(reversed(found))
            elif colour.get(nxt) == white:
                colour[nxt] = grey
                path.append(nxt)
                pending.append(iter(needs[nxt]))
    return None


def waves(plan: Plan) -> list[list[str]]:
    """Steps grouped by depth: every step in a wave can run in parallel with the others."""
    depth: dict[str, int] = {}
    for s in topological_order(plan):
        depth[s.id] = 1 + max((depth[n] for n in s.needs), default=-1)
    result: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
    for s in plan.steps:
        result[depth[s.id]].append(s.id)
    return result


def topological_order(plan: Plan) -> list[Step]:
    """Steps in an order that respects needs, otherwise keeping file order: each round
    takes, in file order, every step whose needs the earlier rounds completed."""
    position = {s.id: i for i, s in enumerate(plan.steps)}
    waiting = {s.id: len(s.needs) for s in plan.steps}
    users = dependents(plan)
    ready = [s for s in plan.steps if not s.needs]
    order: list[Step] = []
    while ready:
        order.extend(ready)
        unlocked: list[Step] = []
        for s in ready:
            for user in users[s.id]:
                waiting[user] -= 1
                if waiting[user] == 0:
                    unlocked.append(plan.steps[position[user]])
        ready = sorted(unlocked, key=lambda s: position[s.id])
    if len(order) != len(plan.steps):
        raise ValueError("plan has a cycle")  # validated earlier; defensive
    return order


def critical_path(plan: Plan) -> list[str]:
    """The longest chain of needs (by step count), first step first."""
    length: dict[str, int] = {}
    previous: dict[str, str | None] = {}
    for s in topological_order(plan):  # a link back per step: no list copied per step
        longest = max(s.needs, key=length.__getitem__, default=None)
        length[s.id] = 1 + (length[longest] if longest is not None else 0)
        previous[s.id] = longest
    step: str | None = max(length, key=length.__getitem__)
    path: list[str] = []
    while step is not None:
        path.append(step)
        step = previous[step]
    return path[::-1]


def remaining_path(plan: Plan) -> dict[str, float]:
    """For each step, the length of the longest chain of dependents that starts with
    it (itself included): how much of the plan, at the least, still has to run one
    after another once it starts. Under a parallelism cap the ready step with the
    longest remaining path starts first (:func:`trestle.core.decider.decide`).

    A step weighs its ``expected_duration`` where the plan gives one, and the mean of
    those given where it does not; in a plan that gives none, every step weighs 1 and
    the length is a count of steps."""
    given = [s.expected_duration for s in plan.steps if s.expected_duration is not None]
    usual = sum(given) / len(given) if given else 1.0
    users = dependents(plan)
    length: dict[str, float] = {}
    for s in reversed(topological_order(plan)):
        weight = s.expected_duration if s.expected_duration is not None else usual
        length[s.id] = weight + max((length[u] for u in users[s.id]), default=0.0)
    return length


def dependents(plan: Plan) -> dict[str, list[str]]:
    """For each step, the steps that need it directly."""
    result: dict[str, list[str]] = {s.id: [] for s in plan.steps}
    for s in plan.steps:
        for n in s.needs:
            result[n].append(s.id)
    return result
