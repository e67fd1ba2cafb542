"""Commands that create and drive runs: ``run``, ``worker``, ``resume``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

# Typer keeps its own copy of click (pinned: pyproject.toml); the exceptions a usage
# error raises are only importable from it
from trestle.cli.console import (
    _err,
    _found,
    _out,
    _who,
)
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
from trestle.core.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from trestle.core.events import EngineBinding
    from trestle.core.plan import Plan
    from trestle.core.records.agent import AgentSettings
    from trestle.store.base import Store


def run(
    plan_file: Annotated[Path, typer.Argument(metavar="PLAN", help="The plan file (YAML).")],
    workspace: Annotated[
        Path | None,
        typer.Option("--workspace", "-w", help="Run here instead of the plan's workspace."),
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
    """Validate a plan, show it, run it, and report. Prints the run id first."""
    from trestle.cli.drive import drive, opened_for_new_run, store_line
    from trestle.cli.render import plan_overview
    from trestle.execution.sandbox import mode_from
    from trestle.formats.planfile import load_plan, plan_workspace
    from trestle.lifecycle.runs import create_run
    from trestle.notifications.targets import load_settings
    from trestle.trust.known_plans import note_run_files
    from trestle.trust.policy_trust import trusted_settings

    mode = mode_from(sandbox)
    delegated: list[Path] = []  # the plan files its delegations name, held as it is
    plan = load_plan(plan_file, read=delegated)
    if workspace is None:
        ws = plan_workspace(plan, plan_file)
    elif workspace.is_dir():
        ws = workspace
    else:
        raise typer.BadParameter(f"{str(workspace)!r} is not a directory", param_hint="-w")
    operator = trusted_settings(ws, policy, accept_sha256=accept_policy)
    bound = engine_binding(engine, address, namespace, task_queue)
    load_settings()  # a bad notify.toml is refused before the run is recorded
    out = _out()
    with opened_for_new_run(store, ws) as st:
        left = _left_unfinished(st, plan_file)
        run_id = create_run(
            st,
            plan,
            workspace=ws,
            plan_path=plan_file,
            operator_policy=operator.policy,
            policy_source=operator.source,
            monitors=operator.monitors,
            engine=bound,
        )
        note_run_files(map(str, delegated))
        out.print(f"run {run_id}")
        for note in left:
            _err().print(f"note: {note}; this is a new run.", markup=False, soft_wrap=True)
        for warning in _plan_file_warnings(plan, plan_file, ws):
            _err().print(f"WARNING: {warning}.", markup=False, soft_wrap=True)
        out.print(store_line(st), markup=False, soft_wrap=True)
        out.print(f"policy: {operator.source.describe()}", markup=False, soft_wrap=True)
        out.print(plan_overview(plan, str(plan_file)))
        if bound is not None:
            from trestle.cli.temporal import start_and_follow

            start_and_follow(st, run_id, bound, out, report_json, wait_for_worker)
        drive(st, run_id, out, report_json, live, prompt, sandbox=mode)


def _left_unfinished(store: Store, plan_file: Path, most: int = 3) -> list[str]:
    """The runs of this plan file in the store that nothing drives and no one finished
    (a signal stopped them, or their driver was killed): run again after a ``kill -9``,
    the plan starts over in a new run, and the old one would wait unseen."""
    from trestle.lifecycle.driven import drivings, interrupted_note

    path = str(plan_file.resolve())
    rows = [r for r in store.runs() if r.plan_path == path and r.status == "running"]
    judged = drivings(store, rows)
    return [
        interrupted_note(
            r.run_id, r.summarised().interrupted, judged[r.run_id], r.summarised().root
        )
        for r in rows
        if judged[r.run_id].status == "interrupted"
    ][:most]


def _plan_file_warnings(plan: Plan, plan_file: Path, ws: Path) -> list[str]:
    """What a step could still change of what this plan's next run reads or runs: the
    plan's real file is held read-only, but not a link on the way to it, nor what its
    python: modules import (often the project's own code: said when it changed)."""
    from trestle.execution.driver_files import link_in
    from trestle.formats.python_code import named_sources, python_sources
    from trestle.trust.known_plans import code_changed

    said = []
    if link_in(plan_file.absolute(), ws.resolve()):
        said.append(
            f"the plan {plan_file} is reached through a link in the workspace: a step's "
            f"command can point the link elsewhere, and the next run of {plan_file} reads "
            f"what the command chose; run it by its real path ({plan_file.resolve()})"
        )
    where = (plan_file.resolve().parent, ws.resolve())
    named = set(named_sources(plan, *where))
    imported = {p: h for p, h in python_sources(plan, *where).items() if p not in named}
    said += [
        f"{path} changed since this plan last ran: its python: code imports it into the "
        "driver, outside the sandbox, and a step of another run may have written it; "
        "read it before this run's python: steps run"
        for path in code_changed(str(plan_file.resolve()), imported)
    ]
    return said


def engine_binding(
    engine: str, address: str, namespace: str, task_queue: str
) -> EngineBinding | None:
    """None for the local engine; the run's binding to its workflow for Temporal."""
    if engine == "local":
        return None
    if engine != "temporal":
        raise typer.BadParameter(f"{engine!r}: choose local or temporal", param_hint="--engine")
    from trestle.cli.temporal import binding, require_temporal

    require_temporal()
    return binding(address, namespace, task_queue)


def worker(
    engine: EngineOption = "temporal",
    address: AddressOption = "127.0.0.1:7233",
    namespace: NamespaceOption = "default",
    task_queue: TaskQueueOption = "trestle",
    store: StoreOption = None,
    max_attempts: Annotated[
        int, typer.Option("--max-attempts", min=1, help="Step attempts this worker runs at once.")
    ] = 16,
) -> None:
    """Serve a Temporal task queue: drive the runs started there, perform their steps.
    Without --store it uses the nearest store, and waits for the first run started
    here to create one. Stops on Ctrl-C or SIGTERM (an attempt it was running is
    probed, then re-run or escalated, by the worker that takes the run next)."""
    from trestle.cli.drive import opened_for_new_run
    from trestle.cli.temporal import worker as serve_queue

    bound = engine_binding(engine, address, namespace, task_queue)
    if bound is None:
        raise typer.BadParameter(
            "a worker serves Temporal: --engine temporal", param_hint="--engine"
        )
    from trestle.cli.stores import chosen_store
    from trestle.cli.temporal import store_to_come

    # a store named is created if need be; otherwise the nearest one, never a new one
    # wherever the worker happens to start: without one yet, the worker waits for the
    # first run started here to create it
    with opened_for_new_run(chosen_store(store) or store_to_come(), None) as st:
        serve_queue(st, bound, _out(), max_attempts)


def resume(
    run_id: RunArg,
    store: StoreOption = None,
    report_json: ReportJson = None,
    live: LiveOption = True,
    prompt: PromptOption = True,
    sandbox: SandboxOption = None,
    wait_for_worker: WaitWorkerOption = True,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            metavar="PROVIDER:MODEL",
            help="An agent run: talk to this model from here on (recorded in its log).",
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            metavar="URL",
            help="An agent run: its model's server moved here (recorded in its log).",
        ),
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(
            "--api-key-env",
            metavar="NAME",
            help="An agent run: read the model's key from this variable from here on "
            "(the name is recorded, never the key).",
        ),
    ] = None,
) -> None:
    """Continue a run: after a crash, an approval, or a retry/skip decision.

    An agent run's model server is checked before anything is driven; --base-url,
    --model and --api-key-env point the run at another (recorded in its log)."""
    from trestle.cli.drive import drive, performer_for_run
    from trestle.execution.sandbox import mode_from

    mode = mode_from(sandbox)
    out = _out()
    from trestle.lifecycle.doorbell import bound_engine

    with _found(store, run_id, driving=True) as (st, run_id):
        refuse_a_child(st, run_id)
        out.print(f"run {run_id}")
        if bound_engine(st, run_id) is None:  # a Temporal run's workspace is its workers'
            refuse_a_missing_workspace(st, run_id)
            refuse_an_unfinished_rewind(st, run_id)
        else:  # the operator's tuning, refused before anything is recorded
            from trestle.cli.temporal import tuning

            tuning()
        binding = {"model": model, "base_url": base_url, "api_key_env": api_key_env}
        rebind_before_resume(st, run_id, out, **binding)
        bound = bound_engine(st, run_id)
        if bound is not None:  # its workflow drives it: wake it (or start it) and follow
            from trestle.cli.temporal import require_temporal, start_and_follow

            require_temporal()
            start_and_follow(st, run_id, bound, out, report_json, wait_for_worker, resumed=True)
        performer = performer_for_run(st, run_id)
        drive(st, run_id, out, report_json, live, prompt, performer=performer, sandbox=mode)


def refuse_a_child(store: Store, run_id: str) -> None:
    """A ConfigError, before anything is recorded, for a delegated child: its root's
    driver takes each child up in turn, and a child driven on its own ran its steps
    beside the root's, in the same workspace (beside a command a human approved to run
    alone)."""
    from trestle.lifecycle.doorbell import root_of

    root = root_of(store, run_id)
    if root != run_id:
        raise ConfigError(
            f"run {run_id!r} is delegated from run {root!r}: a tree is resumed from its "
            f"root, whose driver takes each child up in turn: `trestle resume {root}`; "
            "nothing was recorded"
        )


def refuse_a_missing_workspace(store: Store, run_id: str) -> None:
    """A ConfigError, before anything is recorded, for a run whose workspace is gone
    (deleted, moved, or a file now): a step started there could not be checkpointed,
    and would be left with an unknown outcome for a human to settle."""
    where = Path(store.run(run_id).workspace)
    if not where.is_dir():
        why = "does not exist" if not where.exists() else "is not a directory"
        raise ConfigError(
            f"run {run_id!r}: its workspace {str(where)!r} {why}: put it back, then "
            "resume; nothing was recorded"
        )


def refuse_an_unfinished_rewind(store: Store, run_id: str) -> None:
    """A ConfigError, before anything is recorded, for a run a rewind was changing when
    it was cut short: its steps would run again on a workspace half put back, while
    the run said nothing of the rewind."""
    from trestle.lifecycle.rewinding import unfinished_rewind_note

    said = unfinished_rewind_note(store, run_id, drop_done=True)
    if said is not None:
        raise ConfigError(f"{said}; nothing was recorded")


def rebind_before_resume(
    store: Store,
    run_id: str,
    out: Console,
    *,
    model: str | None,
    base_url: str | None,
    api_key_env: str | None,
) -> None:
    """Before an agent run is driven again: record the new model binding, if one is
    given, then check the model as bound (its key is set, its server listens), so a
    server that moved is said at once instead of spending the steps' attempts on it."""
    from trestle.cli.model_check import check_model
    from trestle.lifecycle.approvals import trusted_state
    from trestle.lifecycle.rebind import rebind, rebound_settings

    state = trusted_state(store, run_id)
    new = rebound_settings(
        state.agent, run_id, model=model, base_url=base_url, api_key_env=api_key_env
    )
    here = state.engine is None  # a run on Temporal: its workers make the model
    if new is not None:
        if here:
            check_model(new, run_id=run_id)  # a binding that cannot work is not recorded
        seq = rebind(store, run_id, new, by=_who())
        how = "queued for its driver" if seq is None else f"recorded at seq {seq}"
        out.print(f"model of run {run_id}: {binding_text(new)} ({how})")
    elif here and state.agent is not None and state.finished != "succeeded":
        check_model(state.agent, run_id=run_id)


def binding_text(settings: AgentSettings) -> str:
    """``openai:gpt-4o-mini at http://host:8000/v1, key from $LOCAL_KEY``"""
    text = settings.model
    if settings.base_url is not None:
        text += f" at {settings.base_url}"
    if settings.api_key_env is not None:
        text += f", key from ${settings.api_key_env}"
    return text
