"""The agent runtime: performs an agent run's steps with a model and tools.

An agent run is an ordinary run (the same engine, store, approvals, budgets, retries,
checkpoints and report) whose steps have ``agent:`` actions. :class:`AgentPerformer`
is what the engine hands those to. Per role:

- ``understand``: a read-only tool loop (reads and the test command) that ends with
  the model's findings as JSON, checked, with feedback, and recorded;
- ``plan``: a tool loop that may read, ending with the model's plan as JSON. The plan
  is validated (acyclic, verifiable, within scope, files that exist); problems go back
  to the model, at most ``max_plan_attempts`` times. An accepted plan joins the run
  (see :mod:`trestle.agentplan.rounds`);
- ``review``: nothing to do: the approval gate in front of it is the point;
- ``execute``: a bounded tool loop on the step's objective, ended by ``finish``; the
  step's verify checks then decide. A retry starts a new conversation told why the
  last attempt failed;
- ``validate``: the acceptance checks (the test command). A failure re-plans, at most
  ``max_replans`` times, and then fails the step, which puts it before a human.

Every model and tool call goes through a :class:`~trestle.agent.session.StepSession`,
which records it and, on a resumed run, replays it instead of calling again.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from trestle.agent.context import Summariser, model_summariser
from trestle.agent.phases import allowed_natures, parse_findings
from trestle.agent.prompts import (
    CUT_SHORT,
    EMPTY_REPLY,
    NO_TOOL_USE,
    SYSTEM,
    TOO_MANY_CALLS,
    execute_task,
    plan_task,
    understand_task,
)
from trestle.agent.reminders import StepProgress, plan_progress, plan_status
from trestle.agent.session import Abandon, Pause, StepSession
from trestle.agent.toolgate import RunToolGate
from trestle.agent.trajectory import REPLAY_PREFIX, ReplayModel, load_trajectory
from trestle.agentplan.planning import PlanFeedback, PlanNegotiation, check_agent_plan
from trestle.agentplan.rounds import (
    delegation_share,
    model_commands,
    numbered,
    plan_added,
    replan_added,
    requirement_added,
    review_id,
)
from trestle.coordination.groups import named_group
from trestle.core.conversation import MAX_CALLS, Message, Model, ToolSchema
from trestle.core.errors import (
    ConfigError,
    ModelBindingError,
    ProviderAuthError,
    ProviderConnectError,
    ProviderError,
    ScriptExhaustedError,
)
from trestle.core.events import (
    ActionResult,
    AnyEvent,
    FindingsRecorded,
    PhaseEntered,
    PlanProposed,
    ToolAsk,
)
from trestle.core.handoff import pinned, render
from trestle.core.plan import AgentTask
from trestle.core.policy import Nature
from trestle.core.records.agent import (
    RESERVED_IDS,
    ROLE_PHASE,
    AgentSettings,
    Findings,
    Phase,
    Pins,
)
from trestle.core.state import RunState
from trestle.engines.work import StepWork, WorkspaceNotSaved
from trestle.execution.actions import run_shell, step_env
from trestle.models.pricing import DEFAULT_PRICES, PriceTable
from trestle.models.spec import PROVIDERS, model_from_spec
from trestle.presentation.wording import counted
from trestle.support.walk import walk
from trestle.tools.artifacts import FetchArtifact
from trestle.tools.base import GroupSeat, Tool, ToolContext
from trestle.tools.coding import coding_registry
from trestle.tools.finish import finish_claim
from trestle.tools.group import group_tools
from trestle.tools.registry import ToolRegistry

Outcome = ActionResult | list[Message]  # the step's result, or what to tell the model next
TextHandler = Callable[[str], Awaitable[Outcome]]

ACCEPTANCE_TIMEOUT = 900.0  # seconds the acceptance command may run
# what an acceptance the model's own command passed says of it
MODELS_OWN_CHECK = "the test command the model named in its findings: no test command was given"
SKIPPED_DIRS = frozenset(
    {".git", ".hg", ".trestle", ".venv", "venv", "node_modules", "__pycache__"}
)
MAX_LISTED_FILES = 20_000


@runtime_checkable
class ModelPerStep(Protocol):
    """A model that answers each step's conversation separately (a replay)."""

    def for_step(self, step: str, round: int, tree: Sequence[str] = ()) -> Model:
        """The model for ``step``'s conversation in ``round``, in the run at ``tree``
        (its path below the root: empty for the root)."""
        ...


class AgentPerformer:
    """Performs agent steps for the engine (see the module docstring).

    Args:
        model: the model every step talks to.
        tools: the registry to use; default: the coding tools. Add your own to it.
        prices: dollars per token, for the budget, when the provider reports no cost.
        summariser: condenses old turns when a conversation outgrows the context budget;
            default: an extractive summary (no model call).
    """

    def __init__(
        self,
        model: Model,
        *,
        tools: ToolRegistry | None = None,
        prices: PriceTable | None = DEFAULT_PRICES,
        summariser: Summariser | None = None,
    ) -> None:
        self.model = model
        self.tools = tools if tools is not None else coding_registry()
        self.prices, self.summariser = prices, summariser
        self._phase_lock = asyncio.Lock()
        self._budget_lock = asyncio.Lock()  # model calls reserve their budget one by one
        self._serial_lock = asyncio.Lock()  # serial tools' calls take turns (a receive)
        self._extended: dict[tuple[bool, bool], ToolRegistry] = {}
        self._sessions: dict[int, StepSession] = {}  # by id(work), while it is performed
        self._deadlines: dict[int, asyncio.Timeout] = {}  # each attempt's timeout, by id(work)

    async def perform(self, work: StepWork) -> tuple[ActionResult, ToolAsk | None]:
        try:
            outcome = await self._perform(work)
        except asyncio.CancelledError:
            # stopped from outside: no commit may be waited for any more, but what the
            # last turn held (an answer already paid for) joins the engine's next one
            session = self._sessions.get(id(work))
            if session is not None and work.note is not None:
                session.leave(work.note)
            raise
        else:
            session = self._sessions.get(id(work))
            if session is not None:  # what its last turn held, recorded before its end
                await session.flush()
            return outcome
        finally:
            self._sessions.pop(id(work), None)

    async def _perform(self, work: StepWork) -> tuple[ActionResult, ToolAsk | None]:
        task, settings = work.step.agent, work.state.agent
        if task is None or settings is None:
            error = f"step {work.step.id!r} is not an agent step of an agent run"
            return ActionResult(status="error", error=error), None
        limit = work.step.timeout if work.step.timeout is not None else settings.step_timeout
        try:
            async with asyncio.timeout(limit) as deadline:
                self._deadlines[id(work)] = deadline
                return await self._attempt(work, task, settings), None
        except TimeoutError:
            if not deadline.expired():
                raise  # not ours: something inside timed out and did not say so
            why = f"timed out after {limit:g}s; the agent step's attempt was cancelled"
            return ActionResult(status="timeout", error=why, duration=limit or 0.0), None
        except Pause as pause:
            return ActionResult(status="deferred", error=pause.reason), pause.ask
        except Abandon as abandon:
            return ActionResult(status="failed", error=str(abandon)), None
        except (ProviderAuthError, ProviderConnectError) as exc:
            if work.halt is None:  # an engine that cannot stop its drive: a failed attempt
                return ActionResult(status="error", error=f"model call failed: {exc}"), None
            # no retry can fix a refused key or a dead address: stop the drive, with
            # nothing counted as failed, and wait for the stop to end this attempt
            work.halt(unusable_model(work.state.run_id, exc))
            await asyncio.Event().wait()
            raise AssertionError("unreachable: the stop cancels the attempt") from None
        except (ProviderError, ScriptExhaustedError) as exc:
            return ActionResult(status="error", error=f"model call failed: {exc}"), None
        except WorkspaceNotSaved as exc:
            return ActionResult(status="error", error=str(exc)), None
        finally:
            self._deadlines.pop(id(work), None)

    async def _attempt(
        self, work: StepWork, task: AgentTask, settings: AgentSettings
    ) -> ActionResult:
        """One attempt of the step, by its role (see the module docstring)."""
        await self._enter(work, ROLE_PHASE[task.role], f"step {work.step.id!r} began")
        match task.role:
            case "understand":
                return await self._understand(work, settings)
            case "plan":
                return await self._plan(work, task, settings)
            case "review":
                return ActionResult(status="ok", output="plan approved")
            case "execute":
                return await self._execute(work, task, settings)
            case "validate":
                return await self._validate(work, task, settings)

    def requirement(
        self, state: RunState, text: str, *, by: str, request_id: int, now: float
    ) -> list[AnyEvent]:
        return list(requirement_added(state, text, by=by, request_id=request_id, now=now))

    # --- the roles -------------------------------------------------------------------

    async def _understand(self, work: StepWork, settings: AgentSettings) -> ActionResult:
        state = work.state
        session, pins, _ = await self._open(work, settings)
        # the requirements the round opened with: one told since reaches the conversation
        # as a message of its own (StepSession.requirements), so a later attempt of the
        # round sends the same task and replays what the round recorded
        task = understand_task(state.plan.goal, list(pins.requirements), settings.test_command)
        tries = [0]

        async def on_text(text: str) -> Outcome:
            found = parse_findings(text)
            if isinstance(found, Findings):
                event = FindingsRecorded(at=work.clock(), step=work.step.id, findings=found)
                await work.record([event])
                return ActionResult(status="ok", output=found.summary)
            tries[0] += 1
            if tries[0] >= settings.max_plan_attempts:
                return ActionResult(status="failed", error=f"findings refused: {found.text()}")
            return [Message.user(found.text())]

        return await self._loop(
            work, session, settings, pins, Phase.UNDERSTAND, task, on_text, finish=False
        )

    async def _plan(self, work: StepWork, task: AgentTask, settings: AgentSettings) -> ActionResult:
        state, sid = work.state, work.step.id
        revision = sid.startswith("revise-")
        number = int(sid.removeprefix("revise-")) if revision else None
        if review_id(task.round, number) in state.steps:
            # its plan was recorded, then the driver stopped before the attempt ended:
            # replaying the answer would record the same steps again
            return ActionResult(status="ok", output="plan accepted (recorded before)")
        session, pins, failure = await self._open(work, settings)
        existing = [state.step_spec(s) for s in state.steps if s != sid]
        text = plan_task(
            task,
            goal=state.plan.goal,
            findings=state.findings,
            requirements=[] if revision else list(pins.requirements),  # as the round began
            scope=settings.scope,
            revision=revision,
            steps_so_far=existing,
            failure=failure,
        )
        files = await asyncio.to_thread(workspace_files, work.ctx.workspace)
        # round 1 keeps the model's ids, so they must not take the fixed steps' names
        taken = {s.id for s in existing} if revision else RESERVED_IDS if task.round == 1 else set()
        negotiation = [PlanNegotiation(max_attempts=settings.max_plan_attempts)]

        async def on_text(answer: str) -> Outcome:
            checked = check_agent_plan(
                answer, scope=settings.scope, workspace_files=files, existing_steps=taken
            )
            n = negotiation[0] = negotiation[0].record(checked)
            problems = () if not isinstance(checked, PlanFeedback) else checked.problems
            await work.record(
                [
                    PlanProposed(
                        at=work.clock(),
                        step=sid,
                        round=task.round,
                        attempt=len(n.attempts),
                        accepted=not problems,
                        problems=tuple(p.text() for p in problems),
                    )
                ]
            )
            if isinstance(checked, PlanFeedback):
                if n.should_escalate:
                    return ActionResult(status="failed", error=n.escalation_summary())
                return [Message.user(n.retry_prompt())]
            validate = numbered("validate", task.round)
            also = tuple(s for s in state.steps if s.startswith("revise-") and not revision)
            extension = plan_added(
                checked,
                by=sid,
                goal=state.plan.goal,
                settings=settings,
                round=task.round,
                revision=number,
                validate=validate if validate in state.steps else None,
                also_needed=also,
                commands=model_commands(
                    checked,
                    _model_test_command(state, settings),
                    (state.plan.policy, state.operator_policy),
                    run_id=state.run_id,
                ),
                share=delegation_share(state, checked),
                at=work.clock(),
            )
            await work.record([extension])
            summary = checked.summary or f"{len(checked.steps)} steps"
            return ActionResult(status="ok", output=f"plan accepted: {summary}")

        return await self._loop(
            work, session, settings, pins, Phase.PLAN, text, on_text, finish=False
        )

    async def _execute(
        self, work: StepWork, task: AgentTask, settings: AgentSettings
    ) -> ActionResult:
        session, pins, failure = await self._open(work, settings)
        st = work.state.steps[work.step.id]
        text = execute_task(work.step, task, failure, st.failed_attempts + 1)

        async def on_text(answer: str) -> Outcome:
            return [Message.user(NO_TOOL_USE)]

        current = StepProgress(id=work.step.id, objective=task.objective, status="running")
        return await self._loop(
            work,
            session,
            settings,
            pins,
            Phase.EXECUTE,
            text,
            on_text,
            finish=True,
            current=current,
        )

    async def _validate(
        self, work: StepWork, task: AgentTask, settings: AgentSettings
    ) -> ActionResult:
        state = work.state
        command = settings.test_command or _model_test_command(state, settings)
        if not command:
            await self._enter(work, Phase.DONE, "accepted: every step verified; no test command")
            return ActionResult(status="ok", output="every step was verified; no test command")
        env = step_env(work.ctx, {})
        await work.workspace_ready()
        result = await run_shell(
            command,
            cwd=work.ctx.workspace,
            env=env,
            timeout=ACCEPTANCE_TIMEOUT,
            cell=work.ctx.cell,
        )
        if result.status == "ok":
            # the model's own command judged its own work: the report says so, since
            # a human saw it only on the plan's card (and not at all when the plan was
            # approved automatically): `true` passes whatever was done
            whose = "" if settings.test_command else f" ({MODELS_OWN_CHECK})"
            await self._enter(work, Phase.DONE, f"accepted: {command!r} passed{whose}")
            output = f"acceptance passed: {command}{whose}"
            return result.model_copy(update={"output": output})
        failure = f"`{command}` {result.error}\n{result.output[-2000:]}"
        if task.round > settings.max_replans:
            why = f"acceptance failed after {counted(task.round - 1, 're-plan')}: {result.error}"
            return result.model_copy(update={"status": "failed", "error": why})
        extension = replan_added(
            state, by=work.step.id, round=task.round, failure=failure, at=work.clock()
        )
        await work.record([extension])
        await self._enter(work, Phase.PLAN, f"re-plan {task.round} of {settings.max_replans}")
        output = f"acceptance failed ({result.error}); re-planning (round {task.round + 1})"
        return ActionResult(status="ok", output=output)

    # --- the shared machinery -------------------------------------------------------

    async def _open(
        self, work: StepWork, settings: AgentSettings
    ) -> tuple[StepSession, Pins, str | None]:
        state, st = work.state, work.state.steps[work.step.id]
        model = self.model
        if isinstance(model, ModelPerStep):  # a trajectory: each step has its own answers
            tree = state.parent.path if state.parent is not None else ()
            model = model.for_step(work.step.id, st.round, tree)
        session = await StepSession.open(
            work,
            model=model,
            settings=settings,
            prices=self.prices,
            budget_lock=self._budget_lock,
            serial_lock=self._serial_lock,
            deadline=self._deadlines.get(id(work)),
        )
        statuses = {sid: s.status for sid, s in state.steps.items()}
        progress = [p for p in plan_progress(state.plan, statuses) if _is_plan_step(state, p.id)]
        pins = Pins(
            goal=state.plan.goal,
            requirements=tuple(state.requirements),
            rules=settings.rules,
            scope=settings.scope,
            plan_status=plan_status(progress, current_step=work.step.id)
            if progress
            else "no plan yet",
            handoff=pinned(settings.handoff) if settings.handoff is not None else (),
        )
        self._sessions[id(work)] = session
        opened = await session.opening(pins, st.round_failure)
        return session, opened.pins, opened.failure

    async def _loop(
        self,
        work: StepWork,
        session: StepSession,
        settings: AgentSettings,
        pins: Pins,
        phase: Phase,
        task: str,
        on_text: TextHandler,
        *,
        finish: bool,
        current: StepProgress | None = None,
    ) -> ActionResult:
        """The tool loop, with the run's MCP servers started for it and stopped after
        it (docs/mcp.md): a server that does not start fails the attempt, naming it."""
        args = (work, session, settings, pins, phase, task, on_text)
        if not settings.mcp:
            return await self._turns(*args, finish=finish, current=current)
        from trestle.tools.mcp import McpServers, McpStartError  # the SDK: loaded on use

        await work.workspace_ready()  # a server starts in it: after its checkpoint
        own = self._tools_for(work, settings, group_seat(work)).names()
        servers = McpServers(settings.mcp, work.ctx.sandbox, work.ctx.workspace, own)
        try:
            await servers.__aenter__()
        except McpStartError as exc:
            return ActionResult(status="error", error=str(exc))
        except ConfigError as exc:  # the SDK is not installed
            return ActionResult(status="error", error=str(exc))
        try:
            return await self._turns(*args, finish=finish, current=current, extra=servers.tools)
        finally:
            await servers.aclose()

    async def _turns(
        self,
        work: StepWork,
        session: StepSession,
        settings: AgentSettings,
        pins: Pins,
        phase: Phase,
        task: str,
        on_text: TextHandler,
        *,
        finish: bool,
        current: StepProgress | None = None,
        extra: Sequence[Tool[Any]] = (),
    ) -> ActionResult:
        natures = allowed_natures(phase)
        seat = group_seat(work)
        tools = self._tools_for(work, settings, seat)
        if extra:  # this attempt's MCP tools, beside the performer's own
            tools = ToolRegistry([*tools, *extra])
        allowed = settings.tools
        if allowed is not None and settings.handoff is not None and "read_file" in allowed:
            allowed = (*allowed, "fetch_artifact")  # a reader may read what it was handed
        schemas = self._schemas(tools, natures, finish=finish, allowed=allowed)
        offered = {s.name for s in schemas}
        ctx = ToolContext(
            workspace=work.ctx.workspace,
            run_id=work.state.run_id,
            step_id=work.step.id,
            test_command=settings.test_command,
            sandbox=work.ctx.sandbox,
            group=seat,
        )
        own = work.step.agent
        declared = (*own.files, *own.new_files) if own and own.role == "execute" else None
        box = work.ctx.sandbox
        unconfined = (
            box.describe() if box is not None and not (box.confines or box.opted_out) else None
        )
        gate = RunToolGate(work.state, work.step.id, settings.scope, declared, unconfined)
        if settings.handoff is not None:  # what the run was handed comes first
            task = f"{render(settings.handoff)}\n\n{task}"
        messages = [Message.system(SYSTEM), pins.message(), Message.user(task)]
        start = 0
        saved = session.resume_point()
        if saved is not None:  # the conversation as saved, not rebuilt turn by turn
            messages, start = list(saved.messages), saved.iteration
            pins = session.pinned(pins)
        texted = False  # a text answer changes what on_text remembers: no save after it
        for iteration in range(start, settings.max_turns):
            if not texted and session.save_due(iteration, start):
                session.save(messages, iteration)
            reminder = await session.remind(pins, phase, settings.reminders, current)
            if reminder is not None:
                messages.append(reminder)
            await session.open_turn(messages, schemas)
            told = await session.correct(phase)
            if told is not None:
                messages.append(told)
            news = await session.requirements(phase)
            if news:  # a human added to the run while this conversation went on
                messages += news
                pins = session.pinned(pins)
            messages = await session.compact(
                messages, pins, settings.context, schemas, self.summariser
            )
            response = await session.complete(messages, schemas)
            if response.is_empty:
                messages.append(Message.user(EMPTY_REPLY))
                continue
            messages.append(response.to_message())
            if not response.tool_calls:
                if response.finish_reason == "length":
                    messages.append(Message.user(CUT_SHORT))
                    continue
                texted = True
                outcome = await on_text(response.text)
                if isinstance(outcome, ActionResult):
                    return outcome
                messages += outcome
                continue
            done: ActionResult | None = None
            for call in response.tool_calls[:MAX_CALLS]:
                try:
                    observation = await session.call_tool(
                        call, tools, ctx, gate, phase=phase, natures=natures, offered=offered
                    )
                except Pause as pause:
                    # the card shows what the model said beside the call it asks about
                    if pause.ask is not None and response.text.strip():
                        reasoning = response.text.strip()
                        pause.ask = pause.ask.model_copy(update={"reasoning": reasoning})
                    raise
                messages.append(Message.tool(call.id, observation.content))
                claim = finish_claim(observation) if finish and call.name == "finish" else None
                if claim is not None:
                    said = "\n".join([claim.summary, *(f"- {c}" for c in claim.claims)])
                    done = ActionResult(status="ok", output=f"finished: {said}")
            for call in response.tool_calls[MAX_CALLS:]:
                messages.append(Message.tool(call.id, TOO_MANY_CALLS))
            if done is not None:
                return done
        why = f"no result within {settings.max_turns} model turns"
        return ActionResult(status="failed", error=why)

    @staticmethod
    def _schemas(
        tools: ToolRegistry,
        natures: Collection[Nature],
        *,
        finish: bool,
        allowed: Collection[str] | None,
    ) -> list[ToolSchema]:
        """The tools offered in this phase: of the run's own (a delegated child may
        have fewer than its parent), and ``finish`` where the step can end."""
        return [
            s
            for s in tools.schemas(natures)
            if (s.name == "finish" and finish)
            or (s.name != "finish" and (allowed is None or s.name in allowed))
        ]

    def _tools_for(
        self, work: StepWork, settings: AgentSettings, seat: GroupSeat | None
    ) -> ToolRegistry:
        """The tools on offer: the performer's, the group tools when the run belongs to
        a group, and ``fetch_artifact`` when it was started with a handoff packet or may
        receive one in a message (each only where the performer does not hold it)."""
        grouped = seat is not None
        fetching = (settings.handoff is not None or grouped) and work.store is not None
        if not (grouped or fetching):
            return self.tools
        key = (grouped, fetching)
        if key not in self._extended:  # built once: the same for every turn
            extra: list[Tool[Any]] = [*group_tools()] if grouped else []
            if fetching:
                assert work.store is not None
                extra.append(FetchArtifact(work.store))
            extra = [t for t in extra if t.name not in self.tools]
            self._extended[key] = ToolRegistry([*self.tools, *extra])
        return self._extended[key]

    async def _enter(self, work: StepWork, phase: Phase, reason: str) -> None:
        """Record the move into ``phase`` once, however many steps start in it."""
        async with self._phase_lock:
            if work.state.phase != phase:
                event = PhaseEntered(
                    at=work.clock(), phase=str(phase), step=work.step.id, reason=reason
                )
                await work.record([event])


def group_seat(work: StepWork) -> GroupSeat | None:
    """The run's place in its group, when it was put in one and its store is known."""
    group = named_group(work.state)
    if group is None or work.store is None:
        return None
    state = work.state
    return GroupSeat(
        store=work.store, group=group, delivered=lambda: state.delivered, clock=work.clock
    )


def unusable_model(run_id: str, exc: ProviderAuthError | ProviderConnectError) -> ModelBindingError:
    """The error that stops a drive whose model refused its key or cannot be reached."""
    if isinstance(exc, ProviderAuthError):
        cause = f"{exc.provider} refused the key, HTTP {exc.status}"
    else:
        cause = f"{exc.provider} cannot be reached"
    return ModelBindingError(run_id, str(exc), cause)


def settings_model(settings: AgentSettings) -> Model:
    """The model a run's settings name: ``replay:PATH`` (a trajectory file) or
    ``PROVIDER:MODEL`` through the provider's official SDK."""
    if settings.model.startswith(REPLAY_PREFIX):
        path = Path(settings.model.removeprefix(REPLAY_PREFIX))
        return ReplayModel(load_trajectory(path))
    provider, sep, _ = settings.model.partition(":")
    if sep and provider and provider not in PROVIDERS:  # replay: is known here too
        raise ConfigError(
            f"model {settings.model!r}: unknown provider {provider!r}; known: "
            f"{', '.join(PROVIDERS)}, and {REPLAY_PREFIX}TRAJECTORY.json (a recorded run's "
            "answers)"
        )
    key = None
    if settings.api_key_env is not None:
        key = os.environ.get(settings.api_key_env)
        if not key:
            raise ConfigError(
                f"model {settings.model!r}: its key is read from ${settings.api_key_env} "
                "(api_key_env, the CLI's --api-key-env), which is not set"
            )
    return model_from_spec(settings.model, base_url=settings.base_url, api_key=key)


def performer_for(settings: AgentSettings) -> AgentPerformer:
    """The performer a run's settings call for: its model, the coding tools, and the
    model itself summarising old turns (a replay falls back to an extractive summary)."""
    model = settings_model(settings)
    summariser = None if isinstance(model, ReplayModel) else model_summariser(model)
    return AgentPerformer(model, summariser=summariser)


def _model_test_command(state: RunState, settings: AgentSettings) -> str | None:
    """The test command the model chose in its findings, when the user gave none."""
    if settings.test_command or state.findings is None:
        return None
    return state.findings.test_command


def _is_plan_step(state: RunState, sid: str) -> bool:
    task = state.step_spec(sid).agent
    return task is not None and task.role == "execute"


def workspace_files(root: Path) -> list[str]:
    """The workspace's files, workspace-relative, skipping VCS, virtualenvs and caches."""
    found: list[str] = []
    for folder, dirs, files in walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        rel = Path(folder).relative_to(root)
        for name in sorted(files):
            found.append((rel / name).as_posix())
            if len(found) >= MAX_LISTED_FILES:
                return found
    return found
