"""The agent's commands: ``trestle agent``, ``tell``, ``demo`` and ``trajectory``.

They share the plan runs' driving, live view, inbox and report (see :mod:`.app`).
"""

from __future__ import annotations

import getpass
import math
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from trestle.cli.console import _err, _found, _out, write_output
from trestle.cli.options import (
    AcceptPolicyOption,
    AddressOption,
    EngineOption,
    LiveOption,
    NamespaceOption,
    PolicyOption,
    PromptOption,
    ReportJson,
    RunArg,
    SandboxOption,
    StoreOption,
    TaskQueueOption,
    WaitWorkerOption,
)
from trestle.cli.running import engine_binding
from trestle.core.errors import ConfigError
from trestle.core.records.agent_defaults import DEFAULT_MAX_TOKENS, DEFAULT_STEP_TIMEOUT
from trestle.presentation.wording import counted, shown_json

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pydantic import ValidationError

    from trestle.core.budget import Budget
    from trestle.core.records.agent import AgentSettings
    from trestle.core.records.mcp import McpServer
    from trestle.engines.work import StepPerformer

DEMO_GOAL = "make slugify() turn any title into a clean URL slug; the failing test shows how"
DEMO_TEST_COMMAND = "python3 -m unittest discover -s tests -q"
MAX_DEMO_APPROVALS = 3


def agent(
    goal: Annotated[str, typer.Argument(metavar="GOAL", help="What the agent should achieve.")],
    repo: Annotated[Path, typer.Option("--repo", help="The repository to work in.")] = Path("."),
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="PROVIDER:MODEL (openai:gpt-4o-mini, anthropic:claude-sonnet-4-6), "
            "or replay:TRAJECTORY.json",
        ),
    ] = "openai:gpt-4o-mini",
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="An OpenAI-compatible server's API root.")
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(
            "--api-key-env",
            metavar="NAME",
            help="The environment variable that holds the model's key [default: the "
            "provider's own, OPENAI_API_KEY or ANTHROPIC_API_KEY]. The name is recorded, "
            "never the key.",
        ),
    ] = None,
    test_command: Annotated[
        str | None,
        typer.Option("--test-command", help="Runs the tests; the default acceptance check."),
    ] = None,
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="A glob the agent may write (repeat).")
    ] = None,
    rule: Annotated[
        list[str] | None, typer.Option("--rule", help="A rule to keep throughout (repeat).")
    ] = None,
    approve_plan: Annotated[
        bool,
        typer.Option(
            "--approve-plan/--auto-plan",
            help="Ask a human to approve each plan before it runs.",
        ),
    ] = True,
    max_turns: Annotated[int, typer.Option(help="Model turns per step.", min=1)] = 30,
    max_tokens: Annotated[
        int,
        typer.Option(
            help="The most tokens one model answer may have: sent to the provider as its "
            "cap, and reserved against the budget before each call.",
            min=1,
        ),
    ] = DEFAULT_MAX_TOKENS,
    max_cost: Annotated[
        float | None,
        typer.Option(help="Dollars after which the run pauses and asks (a soft limit)."),
    ] = None,
    stop_at_cost: Annotated[
        float | None,
        typer.Option(
            metavar="DOLLARS",
            help="Dollars at which the run stops (a hard limit: each model call reserves "
            "its worst case first, so parallel steps cannot pass it); go on with "
            "`trestle budget RUN --add cost=N`.",
        ),
    ] = None,
    stop_at_tokens: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Model tokens at which the run stops (a hard limit, reserved like "
            "--stop-at-cost); go on with `trestle budget RUN --add tokens=N`.",
        ),
    ] = None,
    step_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds one attempt of a step may take; then it is cancelled as timed out.",
            min=1,
        ),
    ] = DEFAULT_STEP_TIMEOUT,
    mcp: Annotated[
        list[str] | None,
        typer.Option(
            "--mcp",
            metavar="NAME=COMMAND|URL",
            help="An MCP server whose tools the agent may call (repeat): NAME=COMMAND "
            "starts COMMAND over stdio in the sandbox, NAME=http(s)://... is a streamable "
            "HTTP server the driver reaches; beside trestle.toml's [mcp.servers.NAME] "
            "(docs/mcp.md). Needs the mcp extra.",
        ),
    ] = None,
    store: StoreOption = None,
    report_json: ReportJson = None,
    live: LiveOption = True,
    prompt: PromptOption = True,
    policy: PolicyOption = None,
    accept_policy: AcceptPolicyOption = None,
    sandbox: SandboxOption = None,
    engine: EngineOption = "local",
    address: AddressOption = "127.0.0.1:7233",
    namespace: NamespaceOption = "default",
    task_queue: TaskQueueOption = "trestle",
    wait_for_worker: WaitWorkerOption = True,
) -> None:
    """Run the coding agent on GOAL: understand, plan, execute, validate. Prints the run id."""
    from pydantic import ValidationError

    from trestle.cli.drive import drive, opened_for_new_run, store_line
    from trestle.core.records.agent import AgentSettings, bootstrap_plan
    from trestle.execution.sandbox import mode_from
    from trestle.lifecycle.runs import create_run
    from trestle.notifications.targets import load_settings
    from trestle.trust.policy_trust import trusted_settings

    if not goal.strip():  # nothing to pin, plan or check against
        raise typer.BadParameter(
            "the goal is empty: say what the agent should do", param_hint="GOAL"
        )
    if not repo.is_dir():
        raise typer.BadParameter(f"{str(repo)!r} is not a directory", param_hint="--repo")
    if not math.isfinite(step_timeout):
        raise typer.BadParameter("must be a finite number of seconds", param_hint="--step-timeout")
    from trestle.formats.mcp_servers import option_server

    given = [option_server(value) for value in mcp or ()]  # before the file, said first
    operator = trusted_settings(repo, policy, accept_sha256=accept_policy)
    servers = _mcp_servers(operator.mcp, operator.source.path, given)
    load_settings()  # a bad notify.toml is refused before the run is recorded
    try:
        settings = AgentSettings(
            model=_model_spec(model),
            base_url=base_url,
            api_key_env=api_key_env,
            scope=tuple(scope or ()),
            rules=tuple(rule or ()),
            test_command=test_command,
            max_turns=max_turns,
            max_tokens=max_tokens,
            plan_approval="confirm" if approve_plan else "auto",
            step_timeout=step_timeout,
            mcp=servers,
        )
    except ValidationError as exc:  # what the options' own ranges do not say
        raise _options_refused(exc) from None
    budget = _budget(max_cost, stop_at_cost, stop_at_tokens)
    if budget is not None and budget.cost is not None:
        _priced(settings.model, "--max-cost" if max_cost is not None else "--stop-at-cost")
    bound = engine_binding(engine, address, namespace, task_queue)
    if bound is None:
        from trestle.cli.model_check import check_model

        check_model(settings)  # a worker makes the model, on its own host
    mode = mode_from(sandbox)
    try:
        plan = bootstrap_plan(goal, budget=budget)
    except ValidationError as exc:  # an empty goal, or one a plan cannot hold
        raise _options_refused(exc) from None
    out = _out()
    with opened_for_new_run(store, repo) as st:
        run_id = create_run(
            st,
            plan,
            workspace=repo,
            operator_policy=operator.policy,
            policy_source=operator.source,
            agent=settings,
            monitors=operator.monitors,
            engine=bound,
        )
        out.print(f"run {run_id}: {goal}", markup=False, soft_wrap=True)
        out.print(store_line(st), markup=False, soft_wrap=True)
        out.print(f"policy: {operator.source.describe()}", markup=False, soft_wrap=True)
        out.print(f"acceptance: {_acceptance(settings)}", markup=False, soft_wrap=True)
        if bound is not None:
            from trestle.cli.temporal import start_and_follow

            start_and_follow(st, run_id, bound, out, report_json, wait_for_worker)
        drive(
            st,
            run_id,
            out,
            report_json,
            live,
            prompt,
            performer=_performer(settings),
            sandbox=mode,
        )


def _acceptance(settings: AgentSettings) -> str:
    """What the work will be judged by, said at the start: without ``--test-command``
    it is a command the model itself names, which its work may change too."""
    if settings.test_command:
        return settings.test_command
    from trestle.agent.runtime import MODELS_OWN_CHECK

    return f"{MODELS_OWN_CHECK} (--test-command gives yours)"


def _mcp_servers(
    declared: Sequence[McpServer], source: str | None, given: Sequence[McpServer]
) -> tuple[McpServer, ...]:
    """The servers the accepted file declares, then those given with ``--mcp``; with
    any, the SDK must be installed (said before anything is recorded)."""
    from trestle.formats.mcp_servers import merged

    servers = merged(declared, given, source)
    if servers:
        from trestle.tools.mcp_client import require_sdk

        require_sdk()
    return servers


def _budget(
    max_cost: float | None, stop_at_cost: float | None, stop_at_tokens: int | None
) -> Budget | None:
    """The run's budget from the options, each a finite amount above 0; a soft level
    above the hard one is refused, naming both."""
    from trestle.core.budget import LIMIT_MAX, Budget, Limit

    given: dict[str, float | None] = {
        "--max-cost": max_cost,
        "--stop-at-cost": stop_at_cost,
        "--stop-at-tokens": stop_at_tokens,
    }
    for option, amount in given.items():
        if amount is not None and not (math.isfinite(amount) and 0 < amount <= LIMIT_MAX):
            raise typer.BadParameter(
                f"{amount!r} is not an amount: give a finite number above 0", param_hint=option
            )
    if max_cost is not None and stop_at_cost is not None and max_cost > stop_at_cost:
        raise typer.BadParameter(
            f"{max_cost:g} (where the run pauses) is above --stop-at-cost {stop_at_cost:g} "
            "(where it stops)",
            param_hint="--max-cost",
        )
    cost = Limit(soft=max_cost, hard=stop_at_cost) if max_cost or stop_at_cost else None
    tokens = Limit(hard=stop_at_tokens) if stop_at_tokens else None
    return Budget(cost=cost, tokens=tokens) if cost or tokens else None


def _priced(spec: str, option: str) -> None:
    """Refuse a cost limit for a provider's model the price table has no price for:
    its calls' cost is unknown, so the limit could never be reached (a run with
    ``--stop-at-cost 0.001`` made 16 calls and succeeded, and ``trestle budget`` said
    $0.00 used)."""
    from trestle.models.pricing import DEFAULT_PRICES
    from trestle.models.spec import PROVIDERS

    provider, _, name = spec.partition(":")
    if provider in PROVIDERS and DEFAULT_PRICES.price_for(name) is None:
        raise typer.BadParameter(
            f"model {spec!r} has no price in Trestle's price table, so what its calls "
            "cost is unknown and a cost limit could never be reached: limit tokens "
            "instead (--stop-at-tokens N)",
            param_hint=option,
        )


def _model_spec(spec: str) -> str:
    """A trajectory path is recorded absolute, so a resume elsewhere still finds it."""
    from trestle.agent.trajectory import REPLAY_PREFIX

    if spec.startswith(REPLAY_PREFIX):
        return REPLAY_PREFIX + str(Path(spec.removeprefix(REPLAY_PREFIX)).resolve())
    return spec


def _performer(settings: AgentSettings) -> StepPerformer:
    from trestle.agent.runtime import performer_for

    return performer_for(settings)


def tell(
    run_id: RunArg,
    text: Annotated[
        str | None,
        typer.Argument(
            metavar="[TEXT]",
            help="What else the run must do; with --change, the step's new objective; "
            "with --drop, why (optional).",
        ),
    ] = None,
    drop: Annotated[
        str | None,
        typer.Option(
            "--drop",
            metavar="STEP",
            help="Drop a step of the run's plan that has not started: it will not run. "
            "Refused if a step of the plan that has not run needs it.",
        ),
    ] = None,
    change: Annotated[
        str | None,
        typer.Option(
            "--change",
            metavar="STEP",
            help="Give a step of the run's plan that has not started a new objective: TEXT.",
        ),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Tell an agent run what else it must do, or change its plan: a requirement is
    planned where it fits (a step's conversation under way reads it at its next turn);
    --drop and --change change a step that has not started. A run its budget stopped
    takes it too, for when it is resumed."""
    from trestle.cli.human import say_outcome
    from trestle.core.report import carved_budget
    from trestle.lifecycle.runs import load_state, request_plan_change, request_requirement

    if drop is not None and change is not None:
        raise ConfigError("--drop and --change: one change per `trestle tell`")
    if change is not None and not (text or "").strip():
        raise ConfigError(f"--change {change}: say the step's new objective: TEXT")
    if drop is None and change is None and text is None:
        raise ConfigError("say what else the run must do: TEXT (or --drop STEP, --change STEP)")
    who = getpass.getuser()
    with _found(store, run_id) as (st, run_id):
        after = st.run(run_id).last_seq
        if drop is not None:
            queued = request_plan_change(st, run_id, drop, "drop", text or "", by=who)
            what = f"the drop of {drop!r}"
        elif change is not None:
            queued = request_plan_change(st, run_id, change, "objective", text or "", by=who)
            what = f"the change of {change!r}"
        else:
            queued = request_requirement(st, run_id, text or "", by=who)
            what = "the requirement"
        say_outcome(_out(), st, what, run_id, queued.id, after=after)
        stopped = load_state(st, run_id)
        if stopped.budget_stop is not None:
            carved = carved_budget(stopped)
            _out().print(
                f"the run is stopped by its budget: {carved}"
                if carved is not None
                else f"the run is stopped by its budget: `trestle budget {run_id} --add DIM=N`, "
                f"then `trestle resume {run_id}`, goes on with it",
                markup=False,
                soft_wrap=True,
            )


def trajectory(
    run_id: RunArg,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here instead of stdout (-: stdout too)."),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Export an agent run's model answers, to replay with --model replay:FILE.

    A run that delegated exports its children's answers too, each under its place in
    the tree, so the file replays the whole tree."""
    from trestle.agent.trajectory import Trajectory, trajectory_of
    from trestle.lifecycle.runs import load_state
    from trestle.store.base import subtree

    with _found(store, run_id) as (st, run_id):
        state = load_state(st, run_id)
        found = trajectory_of((e.event for e in st.events(run_id)), goal=state.plan.goal)
        conversations = dict(found.conversations)
        below = len(state.parent.path) if state.parent is not None else 0
        for row, _ in subtree(st.runs(), run_id):
            child = load_state(st, row.run_id)
            assert child.parent is not None  # a descendant knows its place
            tree = child.parent.path[below:]
            events = (e.event for e in st.events(row.run_id))
            conversations.update(trajectory_of(events, tree=tree).conversations)
        if state.agent is None and not conversations:  # an empty file would replay nothing
            raise ConfigError(
                f"run {run_id!r} is a plan run with no agent in it: it has no model answers "
                "to export"
            )
        found = Trajectory(goal=found.goal, conversations=conversations)
    text = shown_json(found.model_dump_json(indent=2)) + "\n"
    if output is None or str(output) == "-":
        typer.echo(text, nl=False)
        return
    write_output(output, text)
    # the file is all a user sees of it: say what it holds and how it is used
    _err().print(
        f"wrote the model answers of run {run_id} "
        f"({counted(len(found.conversations), 'conversation')}) to {output}: replay them "
        f"with --model replay:{output}",
        markup=False,
        soft_wrap=True,
    )


def _options_refused(exc: ValidationError) -> ConfigError:
    """The agent's settings refused, each problem as the option that gave it."""
    from trestle.core.field_problems import plain_message

    problems = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "goal"
        option = "GOAL" if field == "goal" else "--" + field.replace("_", "-")
        problems.append(f"{option}: {plain_message(err)}")
    return ConfigError("; ".join(problems))


def demo(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Where to put the sample repository [default: a new temp dir]."),
    ] = None,
    mcp: Annotated[
        bool,
        typer.Option(
            "--mcp",
            help="Instead: the agent calls a bundled MCP server's destructive tool, which "
            "waits for approval (needs the mcp extra; skipped, saying so, without it).",
        ),
    ] = False,
) -> None:
    """The coding agent on a bundled sample repository, replaying a recorded trajectory.

    No model is called: the model's answers come from a recording shipped with Trestle.
    Everything else is real: the tools edit real files, the tests really run, the run
    is recorded in a real store, and the plan waits for (and gets) an approval.
    """
    from trestle.agent.trajectory import REPLAY_PREFIX
    from trestle.cli.drive import drive, opened_for_new_run
    from trestle.cli.human import show_card
    from trestle.core.records.agent import AgentSettings, bootstrap_plan
    from trestle.demo import write_sample
    from trestle.lifecycle.approvals import inbox, submit_decision
    from trestle.lifecycle.runs import create_run

    sample = resources.files("trestle.demo")
    where = Path(tempfile.mkdtemp(prefix="trestle-demo-")) if directory is None else directory
    if mcp:
        from trestle.cli.mcp_demo import mcp_demo

        raise typer.Exit(mcp_demo(where))
    repo = where / "textkit"
    if repo.exists():
        raise ConfigError(f"{str(repo)!r} already exists: give --dir an empty directory")
    write_sample(repo)
    with resources.as_file(sample.joinpath("trajectory.json")) as recorded:
        settings = AgentSettings(
            model=REPLAY_PREFIX + str(Path(recorded).resolve()),
            scope=("textkit/**", "tests/**"),
            test_command=DEMO_TEST_COMMAND,
        )
    out = _out()
    out.print(
        "REPLAY: the model's answers are a recorded trajectory bundled with Trestle; no "
        "model is called and nothing leaves this machine. The tools, tests, store, "
        "approvals and report are real.\n",
        markup=False,
        soft_wrap=True,
    )
    store_path = where / "trestle.db"
    with opened_for_new_run(store_path, None) as st:
        run_id = create_run(st, bootstrap_plan(DEMO_GOAL), workspace=repo, agent=settings)
        out.print(f"run {run_id} in {repo}: {DEMO_GOAL}", markup=False, soft_wrap=True)
        code = drive(
            st, run_id, out, None, False, False, performer=_performer(settings), exit=False
        )
        for _ in range(MAX_DEMO_APPROVALS):
            cards = inbox(st)  # the demo's own store: its run and the worker it delegates to
            if not cards:
                break
            card = cards[0]
            out.print("\nThe run waits for a human. Its handoff card:", markup=False)
            show_card(out, st, card)
            submit_decision(st, card.ref, "approve", reason="the demo approves its own plan")
            out.print(
                f"approved {card.ref} (you would type: trestle approve {card.ref}); resuming\n",
                markup=False,
                soft_wrap=True,
            )
            code = drive(
                st, run_id, out, None, False, False, performer=_performer(settings), exit=False
            )
    out.print(
        f"\nlook closer: trestle log {run_id} --store {store_path}\n"
        f"            trestle diff {run_id} fix-slugify --store {store_path}",
        markup=False,
        soft_wrap=True,
    )
    raise typer.Exit(code)
