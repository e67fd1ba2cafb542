"""The plan a model proposes in PLAN, its validation, and the bounded negotiation around it.

In PLAN the model answers with one JSON object shaped like :class:`AgentPlan` (its
schema, from :func:`agent_plan_json_schema`, is what the model is shown). Trestle
checks it and either turns it into the runtime's :class:`~trestle.core.plan.Plan` or answers
with :class:`PlanFeedback`: every problem, named precisely enough for the model to fix
it on its next attempt. :class:`PlanNegotiation` counts the attempts and says when to
stop asking and escalate to a human.

What a plan must be to be accepted:

- valid JSON (else: line, column and the text just before the error);
- valid against the schema (else: each bad field's path and what is wrong);
- a graph: unique ids, needs that name other steps (with a did-you-mean), no cycles
  (the cycle is named step by step);
- verifiable: every step has at least one check, and none that cannot fail
  (``true``, ``echo ...``, ``... || true``);
- startable: no check's command past the bytes a command can start with
  (:data:`~trestle.formats.exec_limits.COMMAND_BYTES`, as for a plan file's);
- within scope: every file a step names and every path a check reads lies inside the
  workspace and matches the run's scope globs; given the workspace's file list, the
  files a step changes exist and the files it creates do not.

Agent steps have no shell action of their own, so the runtime plan marks each one with
the callable :data:`AGENT_STEP_REF`. The agent runtime recognises it
(:func:`is_agent_step`) and runs a tool loop on the step's objective instead; the plain
plan engine, which cannot, fails the step with a message saying so.

Pure: no IO, no clock, no model calls.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError

from trestle.core.budget import Budget
from trestle.core.errors import RunError
from trestle.core.field_problems import did_you_mean, only_items_failed
from trestle.core.plan import (
    AgentTask,
    ChildAgent,
    CommandCheck,
    Delegation,
    FileContainsCheck,
    FileExistsCheck,
    Plan,
    Step,
    describe_check,
    find_cycle,
)
from trestle.core.policy import path_glob_matches, workspace_path
from trestle.core.record import Record, untitled_schema
from trestle.core.records.agent import (
    CHECK_TAGS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_STEP_RETRIES,
    AgentPlan,
    AgentPlanStep,
)
from trestle.core.safetext import json_without_surrogates
from trestle.formats.exec_limits import COMMAND_BYTES, size
from trestle.presentation.wording import counted
from trestle.support.shipped_schemas import shipped_schema

AGENT_TAG = "agent"
DEFAULT_MAX_STEPS = 30

ModelT = TypeVar("ModelT", bound=BaseModel)

# --- feedback the model reads ----------------------------------------------------------

ProblemKind = Literal[
    "json",  # not parseable as JSON, or not a JSON object
    "schema",  # a field is missing, unknown or of the wrong shape
    "duplicate",  # two steps share an id
    "unknown_need",  # needs names a step that is not in the plan (or the step itself)
    "cycle",  # needs form a loop
    "unverifiable",  # a step without a check, or with one that cannot fail
    "too_long",  # a check's command past what a command can start with
    "out_of_scope",  # a path outside the workspace or the run's scope
    "missing_file",  # a file to change is not in the workspace
    "existing_file",  # a file to create is already there
    "too_many_steps",
]


class Problem(Record):
    """One thing wrong with a model's structured answer.

    Attributes:
        kind: what sort of problem, for the runtime and for tests.
        where: the step and field it concerns (``step 'fix' (steps[1]), field 'needs'``),
            or ``""`` for the answer as a whole.
        message: what is wrong and, where possible, how to fix it.
    """

    kind: ProblemKind
    where: str = ""
    message: str

    def text(self) -> str:
        """``where: message``, as the model reads it."""
        return f"{self.where}: {self.message}" if self.where else self.message


class Feedback(Record):
    """Why a structured answer was refused: every problem found, in order."""

    subject: str
    problems: tuple[Problem, ...] = Field(min_length=1)

    def kinds(self) -> set[str]:
        """The kinds of problem present."""
        return {p.kind for p in self.problems}

    def text(self) -> str:
        """The problems as a list a model can work through."""
        count = len(self.problems)
        head = f"{self.subject.capitalize()} not accepted ({count} problem{'s' * (count != 1)}):"
        return "\n".join([head, *(f"- {p.text()}" for p in self.problems)])


class PlanFeedback(Feedback):
    """Why a proposed plan was refused."""

    subject: str = "plan"


MAX_PROBLEMS = 25  # a model fixes a long list no better than a short one; keep prompts small


def capped(problems: Sequence[Problem]) -> tuple[Problem, ...]:
    """The first :data:`MAX_PROBLEMS` problems, and a note of how many more there are."""
    if len(problems) <= MAX_PROBLEMS:
        return tuple(problems)
    hidden = problems[MAX_PROBLEMS:]
    note = Problem(
        kind=hidden[0].kind,
        message=f"{counted(len(hidden), 'more problem')} not shown; fix the ones above first",
    )
    return (*problems[:MAX_PROBLEMS], note)


def output_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema a model is shown for a structured answer, without pydantic's
    generated titles (they repeat the field names and cost tokens on every call)."""
    return shipped_schema(model) or untitled_schema(model.model_json_schema())


def parse_output(
    raw: str | Mapping[str, Any], model: type[ModelT], *, subject: str
) -> ModelT | list[Problem]:
    """Parse and validate a model's structured answer, never raising for what it wrote.

    Args:
        raw: the answer as text (one JSON object, optionally inside a Markdown code
            fence, which small models often add), or an already decoded mapping.
        model: the pydantic model it must satisfy.
        subject: what the answer is (``"plan"``), for messages.

    Returns:
        The validated model, or the problems found (JSON first, then schema).
    """
    if isinstance(raw, str):
        decoded = _decode_json(raw, subject)
        if isinstance(decoded, Problem):
            return [decoded]
        value: Any = decoded
    else:
        value = raw
    if not isinstance(value, Mapping):
        wraps = isinstance(value, list) and "steps" in model.model_fields
        hint = ' (wrap the list as {"steps": [...]})' if wraps else ""
        kind = type(value).__name__
        return [
            Problem(kind="json", message=f"the {subject} must be a JSON object, not {kind}{hint}")
        ]
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        errors = [e for e in exc.errors(include_url=False) if not only_items_failed(e)]
        return [_schema_problem(err, value) for err in errors]
    except RecursionError:
        return [Problem(kind="json", message=f"the {subject} is nested too deeply")]


_FENCE = re.compile(r"\A\s*```[A-Za-z0-9_-]*\s*\n(?P<body>.*?)\n?\s*```\s*\Z", re.DOTALL)


def _decode_json(raw: str, subject: str) -> Any:
    fenced = _FENCE.match(raw)
    text = fenced.group("body") if fenced else raw
    if not text.strip():
        return Problem(kind="json", message=f"the {subject} is empty; answer with one JSON object")
    try:
        return json_without_surrogates(json.loads(text))  # "\\ud83d" decodes to no text
    except json.JSONDecodeError as exc:
        before = text[max(exc.pos - 30, 0) : exc.pos]
        where = f"just after {before!r}" if before else "at the start"
        return Problem(
            kind="json",
            message=f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno} "
            f"(character {exc.pos}), {where}",
        )
    except (ValueError, RecursionError) as exc:  # huge numbers, absurd nesting
        return Problem(kind="json", message=f"not usable JSON: {exc}")


def _schema_problem(err: Any, raw: Mapping[str, Any]) -> Problem:
    loc = _without_union_tags(list(err["loc"]))
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    elif err["type"] == "missing":
        msg = "required field is missing"
    where = ""
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        where = _step_label(raw, loc[1])
        loc = loc[2:]
    field = _dotted(loc)
    if field:
        where = f"{where}, field {field!r}" if where else f"field {field!r}"
    return Problem(kind="schema", where=where, message=msg)


def _without_union_tags(loc: list[Any]) -> list[Any]:
    """pydantic puts a tagged union's tag after the list index (``verify, 0, command,
    command``); the model wrote no such level, so it is dropped."""
    out: list[Any] = []
    for i, part in enumerate(loc):
        after_check_index = i >= 2 and isinstance(loc[i - 1], int) and loc[i - 2] == "verify"
        if after_check_index and part in CHECK_TAGS:
            continue
        if part == "function-after":
            continue
        out.append(part)
    return out


def _step_label(raw: Mapping[str, Any], index: int) -> str:
    steps = raw.get("steps")
    step = steps[index] if isinstance(steps, list) and index < len(steps) else None
    step_id = step.get("id") if isinstance(step, Mapping) else None
    named = f"step {step_id!r} " if isinstance(step_id, str) and step_id else "step "
    return f"{named}(steps[{index}])"


def _dotted(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --- the plan the model writes ---------------------------------------------------------


def agent_plan_json_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`AgentPlan`, to give the model for its structured answer."""
    return output_schema(AgentPlan)


# --- validation ------------------------------------------------------------------------


def check_agent_plan(
    raw: str | Mapping[str, Any],
    *,
    scope: Sequence[str],
    workspace_files: Collection[str] | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
    existing_steps: Collection[str] = (),
) -> AgentPlan | PlanFeedback:
    """Validate a model's plan, returning it with its paths normalised, or every problem.

    Args:
        raw: the model's answer (JSON text) or the decoded object.
        scope: globs (``src/**``, ``tests/test_*.py``) the run may write; empty means
            the whole workspace. Glob rules are those of :mod:`trestle.core.policy`.
        workspace_files: the workspace's files (workspace-relative, ``/``-separated),
            when known: files to change must be among them and files to create must not.
        max_steps: the most steps a plan may have.
        existing_steps: steps already in the run that a revision's steps may need;
            its own steps must not reuse their ids.
    """
    parsed = parse_output(raw, AgentPlan, subject="plan")
    if isinstance(parsed, list):
        return PlanFeedback(problems=capped(parsed))
    problems: list[Problem] = []
    if len(parsed.steps) > max_steps:
        message = f"has {len(parsed.steps)} steps; at most {max_steps} are allowed: merge some"
        problems.append(Problem(kind="too_many_steps", message=message))
    ids = {s.id: None for s in parsed.steps}  # ordered, for did-you-mean
    needable = {**ids, **dict.fromkeys(existing_steps)}
    seen: set[str] = set(existing_steps)
    known = set(workspace_files) if workspace_files is not None else None
    for index, step in enumerate(parsed.steps):
        where = f"step {step.id!r} (steps[{index}])"
        if step.id in seen:
            taken = "is already a step of this run" if step.id in existing_steps else ""
            message = f"duplicate step id{': ' + taken if taken else ''}"
            problems.append(Problem(kind="duplicate", where=where, message=message))
        seen.add(step.id)
        problems += _needs_problems(step, where, needable)
        problems += _verifiability_problems(step, where)
        problems += _startable_problems(step, where)
        problems += _scope_problems(step, where, scope, known)
    graph_sound = not any(p.kind in ("duplicate", "unknown_need") for p in problems)
    cycle = find_cycle({s.id: s.needs for s in parsed.steps}) if graph_sound else None
    if cycle:
        path = " -> ".join(map(repr, cycle))
        message = f"dependency cycle: {path}; remove one of these needs"
        problems.insert(0, Problem(kind="cycle", message=message))
    if problems:
        return PlanFeedback(problems=capped(problems))
    return _normalised(parsed)


def _needs_problems(step: AgentPlanStep, where: str, ids: Collection[str]) -> list[Problem]:
    problems = []
    for need in dict.fromkeys(step.needs):
        if need == step.id:
            message = "a step cannot need itself"
        elif need not in ids:
            message = f"unknown step {need!r}{did_you_mean(need, [i for i in ids if i != step.id])}"
        else:
            continue
        problems.append(
            Problem(kind="unknown_need", where=f"{where}, field 'needs'", message=message)
        )
    return problems


# A check that passes whatever the step did proves nothing.
_ALWAYS_PASSES = re.compile(
    r"""\A\s*(?:true|:|exit\s+0|/bin/true|/usr/bin/true|echo\b.*|printf\b.*)\s*\Z
      |(?:\|\||;)\s*(?:true|:|exit\s+0)\s*\Z""",
    re.VERBOSE | re.DOTALL,
)


def _verifiability_problems(step: AgentPlanStep, where: str) -> list[Problem]:
    if not step.verify:
        message = (
            "no verify checks; give at least one that passes only if this step worked "
            "(a command such as a test, file_exists or file_contains)"
        )
        return [Problem(kind="unverifiable", where=where, message=message)]
    problems = []
    for i, check in enumerate(step.verify):
        if isinstance(check, CommandCheck) and _ALWAYS_PASSES.search(check.command):
            message = f"{check.command!r} passes whatever the step did; check a real outcome"
            field = f"{where}, field 'verify[{i}].command'"
            problems.append(Problem(kind="unverifiable", where=field, message=message))
    return problems


def _startable_problems(step: AgentPlanStep, where: str) -> list[Problem]:
    """A check's command past :data:`COMMAND_BYTES`: refused here, in words the model can
    act on, where it would fail later as a sandbox that never started (a plan file's is
    refused at load, a ``run_command`` when called)."""
    problems = []
    for i, check in enumerate(step.verify):
        if isinstance(check, CommandCheck) and size(check.command) > COMMAND_BYTES:
            message = (
                f"the command is {size(check.command):,} bytes, more than {COMMAND_BYTES:,} "
                "(the most a command can start with): put it in a script file a step "
                "creates (its new_files) and run that"
            )
            field = f"{where}, field 'verify[{i}].command'"
            problems.append(Problem(kind="too_long", where=field, message=message))
    return problems


def _scope_problems(
    step: AgentPlanStep, where: str, scope: Sequence[str], known: set[str] | None
) -> list[Problem]:
    problems = []
    for field in ("files", "new_files"):
        for i, path in enumerate(getattr(step, field)):
            at = f"{where}, field '{field}[{i}]'"
            inside = workspace_path(path)
            if inside is None or inside == ".":
                message = (
                    f"{path!r} is not a file inside the workspace: give a workspace-relative "
                    "path without '..', '~', '$' or wildcards"
                )
                problems.append(Problem(kind="out_of_scope", where=at, message=message))
            elif scope and not any(path_glob_matches(glob, inside) for glob in scope):
                message = f"{inside!r} is outside the scope this run may change {list(scope)!r}"
                problems.append(Problem(kind="out_of_scope", where=at, message=message))
            elif known is not None and field == "files" and inside not in known:
                hint = did_you_mean(inside, known)
                message = f"{inside!r} does not exist{hint}; list files to create under new_files"
                problems.append(Problem(kind="missing_file", where=at, message=message))
            elif known is not None and field == "new_files" and inside in known:
                message = f"{inside!r} already exists; list files to change under files"
                problems.append(Problem(kind="existing_file", where=at, message=message))
    for i, check in enumerate(step.verify):
        path = _check_path(check)
        if path is not None and workspace_path(path) is None:
            at = f"{where}, field 'verify[{i}]'"
            message = (
                f"checks {path!r}: give a workspace-relative path without '..', '~', '$' "
                "or wildcards"
            )
            problems.append(Problem(kind="out_of_scope", where=at, message=message))
    return problems


def _check_path(check: CommandCheck | FileExistsCheck | FileContainsCheck) -> str | None:
    if isinstance(check, FileExistsCheck):
        return check.file_exists
    if isinstance(check, FileContainsCheck):
        return check.file_contains
    return None


def _normalised(plan: AgentPlan) -> AgentPlan:
    def tidy(paths: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(posixpath.normpath(p) for p in paths))

    steps = tuple(
        s.model_copy(
            update={
                "files": tidy(s.files),
                "new_files": tidy(s.new_files),
                "needs": tuple(dict.fromkeys(s.needs)),
            }
        )
        for s in plan.steps
    )
    return plan.model_copy(update={"steps": steps})


# --- into the runtime's plan -----------------------------------------------------------


def runtime_plan(
    plan: AgentPlan,
    *,
    goal: str,
    workspace: str = ".",
    retries: int = DEFAULT_STEP_RETRIES,
    round: int = 1,
    worker: ChildAgent | None = None,
    share: Budget | None = None,
) -> Plan:
    """The runtime :class:`~trestle.core.plan.Plan` for an accepted agent plan.

    Each step becomes an agent step (an ``agent:`` action with role ``execute``, tagged
    ``agent``) whose objective, files and new files come from the model's step. Its
    needs, checks, flags, reasoning and confidence carry over. An agent step may run
    again after a crash (its recorded model and tool calls are replayed, not repeated)
    unless it is irreversible.

    A step the model marked ``delegate`` becomes a delegation to a worker agent
    (``worker``: its settings) whose goal is the step's objective, whose write scope is
    the step's files, and whose budget is ``share``; the step's checks judge its work.
    """
    steps = tuple(
        Step(
            id=s.id,
            description=s.objective,
            agent=_task(s, round),
            delegate=_delegation(s, worker, share),
            needs=s.needs,
            verify=s.verify,
            retries=retries,
            optional=s.optional,
            irreversible=s.irreversible,
            idempotent=not s.irreversible,
            tags=(AGENT_TAG,),
            reasoning=s.reasoning,
            confidence=s.confidence,
        )
        for s in plan.steps
    )
    return Plan(goal=goal, workspace=workspace, steps=steps)


def _task(s: AgentPlanStep, round: int) -> AgentTask | None:
    if s.delegate:
        return None
    return AgentTask(
        role="execute", objective=s.objective, files=s.files, new_files=s.new_files, round=round
    )


def _delegation(
    s: AgentPlanStep, worker: ChildAgent | None, share: Budget | None
) -> Delegation | None:
    if not s.delegate:
        return None
    files = (*s.files, *s.new_files)
    objective = s.objective.rstrip()
    stop = "" if objective.endswith((".", "!", "?", ":")) else "."
    listed = f"{stop} Work on {', '.join(files)}." if files else ""
    return Delegation(
        goal=objective + listed,
        agent=worker or ChildAgent(),
        scope=files,
        budget=share,
        acceptance=tuple(describe_check(c) for c in s.verify),
    )


def validate_agent_plan(
    raw: str | Mapping[str, Any],
    *,
    scope: Sequence[str],
    workspace_files: Collection[str] | None = None,
    goal: str = "",
    workspace: str = ".",
    retries: int = DEFAULT_STEP_RETRIES,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> Plan | PlanFeedback:
    """Check a model's plan and turn it into the runtime's plan, or say what to fix.

    :func:`check_agent_plan` followed by :func:`runtime_plan`; see those for the
    arguments. Never raises for anything in ``raw``.
    """
    checked = check_agent_plan(
        raw, scope=scope, workspace_files=workspace_files, max_steps=max_steps
    )
    if isinstance(checked, PlanFeedback):
        return checked
    return runtime_plan(checked, goal=goal, workspace=workspace, retries=retries)


def is_agent_step(step: Step) -> bool:
    """Is ``step`` an agent step (a tool loop on its objective) rather than an action?"""
    return step.agent is not None


# --- bounded attempts ------------------------------------------------------------------

NegotiationStatus = Literal["open", "accepted", "exhausted"]


class PlanAttempt(Record):
    """One proposal and its verdict."""

    number: int = Field(ge=1)
    accepted: bool
    problems: tuple[Problem, ...] = ()


class PlanNegotiation(Record):
    """The bounded back-and-forth of PLAN: attempt n of N, with the feedback history.

    Frozen: :meth:`record` returns the next state, so the history can be stored as it
    grows and a resumed run picks up at the same attempt.
    """

    max_attempts: int = Field(default=DEFAULT_MAX_ATTEMPTS, ge=1)
    attempts: tuple[PlanAttempt, ...] = ()

    @property
    def status(self) -> NegotiationStatus:
        """``accepted`` once a plan passed, ``exhausted`` when none may follow, else ``open``."""
        if self.attempts and self.attempts[-1].accepted:
            return "accepted"
        return "exhausted" if len(self.attempts) >= self.max_attempts else "open"

    @property
    def next_attempt(self) -> int:
        """The number (1-based) the next proposal would have."""
        return len(self.attempts) + 1

    @property
    def should_escalate(self) -> bool:
        """True when every attempt was used and none was accepted: a human decides now."""
        return self.status == "exhausted"

    def record(self, outcome: Plan | AgentPlan | Feedback) -> PlanNegotiation:
        """The negotiation after one more proposal was judged.

        Raises:
            RunError: the negotiation is already over (accepted or exhausted).
        """
        if self.status != "open":
            raise RunError(
                f"plan negotiation is {self.status} after "
                f"{counted(len(self.attempts), 'attempt')}; no further proposal can be recorded"
            )
        problems = outcome.problems if isinstance(outcome, Feedback) else ()
        attempt = PlanAttempt(
            number=self.next_attempt, accepted=not problems, problems=tuple(problems)
        )
        return self.model_copy(update={"attempts": (*self.attempts, attempt)})

    def retry_prompt(self) -> str:
        """What to tell the model after a refused proposal, while attempts remain."""
        last = self.attempts[-1] if self.attempts else None
        if last is None or last.accepted:
            raise RunError("retry_prompt needs a refused attempt to answer")
        feedback = PlanFeedback(problems=last.problems)
        remaining = self.max_attempts - len(self.attempts)
        return (
            f"Plan attempt {last.number} of {self.max_attempts} was refused. "
            f"{feedback.text()}\n"
            f"Fix every problem and answer with the whole corrected plan as one JSON "
            f"object ({remaining} attempt{'s' * (remaining != 1)} left)."
        )

    def escalation_summary(self) -> str:
        """For the human who takes over: how many attempts, and what stayed wrong."""
        refused = [a for a in self.attempts if not a.accepted]
        if not refused:
            return "no plan was refused"
        last = refused[-1]
        lines = [
            f"the model's plan was refused {counted(len(refused), 'time')} "
            f"(limit {self.max_attempts}); the last attempt's problems:",
            *(f"- {p.text()}" for p in last.problems),
        ]
        return "\n".join(lines)
