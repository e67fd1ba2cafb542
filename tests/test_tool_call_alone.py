"""An agent's approved command runs with nothing else of its run beside it, in the real
sandbox: a step beside it cannot change a file it reads between the check of what the
human approved and the command's read.

Two agent steps of one plan run at once: ``publish`` calls ``sh deploy.sh payload``
(``deploy.sh`` waits, then runs ``payload``, which the reader of commands does not see
as code: bound to the approval by its digest, not copied), and ``flip`` calls ``sh
flip.sh``, which writes ``payload`` over while ``deploy.sh`` waits. The operator's policy
asks before both; a human approves both cards as they read.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from agent_helpers import (
    GOAL,
    agent_settings,
    call,
    drive,
    findings_json,
    of_kind,
    plan_json,
    plan_step,
    recorded,
    sample_workspace,
    state_of,
)
from trestle.core.conversation import Message, ToolSchema
from trestle.core.events import AloneAwaited, AloneGranted, ToolCallEnded, ToolCallStarted
from trestle.core.plan import Plan, Step, WriteAction
from trestle.core.policy import DEFAULT_CONFIRM_COMMANDS, Policy, Rule
from trestle.core.records.agent import bootstrap_plan
from trestle.core.records.mcp import McpServer
from trestle.core.records.monitors import MonitorSettings
from trestle.engines.local import LocalEngine
from trestle.lifecycle.approvals import inbox, submit_decision
from trestle.lifecycle.runs import create_run
from trestle.models import FunctionModel
from trestle.models.scripted import Reply
from trestle.store.sqlite import SqliteStore

DEPLOY, FLIP = "sh deploy.sh payload", "sh flip.sh"
MCP_SERVER = Path(__file__).resolve().parent / "mcp_server.py"
GOOD, EVIL = "echo GOOD >> out.log\n", "echo EVIL >> out.log\n"
DEPLOY_SH = 'sleep 1\n. "./$1"\n'  # the payload read a second after the command starts
FLIP_SH = f"sleep 0.3\nprintf '{EVIL.strip()}\\n' > payload\n"
FINDINGS = findings_json("deploy.sh runs payload", files=["deploy.sh"])


def step_of(messages: Sequence[Message]) -> str:
    task = next(m.content for m in messages if m.role == "user")
    if task.startswith("Current step '"):
        return task.removeprefix("Current step '").split("'", 1)[0]
    return "plan" if "Phase PLAN" in task else "understand"


def exists(path: str) -> list[dict[str, str]]:
    return [{"file_exists": path}]


def two_steps(
    beside: str = "flip", its_command: str = FLIP, objective: str = "change payload"
) -> FunctionModel:
    """The model: a plan of ``publish`` and a step ``beside`` it, each one command."""
    scripts: dict[str, list[Reply]] = {
        "understand": [FINDINGS],
        "plan": [
            plan_json(
                plan_step("publish", "deploy", files=["out.log"], verify=exists("out.log")),
                plan_step(beside, objective, files=["payload"], verify=exists("payload")),
            )
        ],
        "publish": [call("run_command", command=DEPLOY), call("finish", summary="deployed")],
        beside: [call("run_command", command=its_command), call("finish", summary="done")],
    }

    def reply(messages: Sequence[Message], tools: Sequence[ToolSchema]) -> Reply:
        return scripts[step_of(messages)].pop(0)

    return FunctionModel(reply, name="scripted")


def two_step_run(base: Path, *confirm: str, **settings: Any) -> tuple[Path, SqliteStore, str]:
    """The workspace, its store and a run whose operator asks before ``confirm``."""
    workspace = sample_workspace(base)
    for name, text in (("deploy.sh", DEPLOY_SH), ("flip.sh", FLIP_SH), ("payload", GOOD)):
        (workspace / name).write_text(text)
    (workspace / "out.log").write_text("")
    store = SqliteStore(base / "runs.db")
    run_id = create_run(
        store,
        bootstrap_plan(GOAL, parallelism=4),
        workspace=workspace,
        agent=agent_settings(test_command="test -s payload", **settings),
        operator_policy=Policy(confirm_commands=(*DEFAULT_CONFIRM_COMMANDS, *confirm)),
    )
    return workspace, store, run_id


def race(base: Path) -> dict[str, Any]:
    """The plan of two steps driven in ``base`` until both cards are open, both approved
    as they read, then driven again: what it left, in JSON's terms."""
    workspace, store, run_id = two_step_run(base, DEPLOY, FLIP)
    model = two_steps()
    drive(store, run_id, model)
    cards = inbox(store, run_id=run_id)
    for card in cards:  # approved as they read: payload says GOOD
        submit_decision(store, card.ref, "approve")
    drive(store, run_id, model)
    events = recorded(store, run_id)
    seen = {
        "asked": sorted(c.step or "" for c in cards),
        "out.log": (workspace / "out.log").read_text(),
        "payload": (workspace / "payload").read_text(),
        "granted": [e.step for e in of_kind(events, AloneGranted)],
        "waits": [[e.step, list(e.running)] for e in of_kind(events, AloneAwaited)],
        "commands": [
            [e.kind, e.step]
            for e in events
            if isinstance(e, ToolCallStarted | ToolCallEnded) and e.tool == "run_command"
        ],
        "again": [[c.step, c.uncertainties] for c in inbox(store, run_id=run_id)],
    }
    store.close()
    return seen


AS_DRIVER = """
import json, sys
from pathlib import Path
sys.path.insert(0, json.loads(sys.argv[2])["tests"])
from test_tool_call_alone import race
print(json.dumps(race(Path(sys.argv[1]))))
"""


@pytest.fixture(params=["root", "user"])
def driver_base(request: pytest.FixtureRequest) -> Iterator[tuple[Path, int | None]]:
    from test_boundary import driver_host

    yield from driver_host(request.param, "trestle-call-alone-", lambda b: (b / "home").mkdir())


def test_an_approved_command_runs_alone_so_no_step_beside_it_changes_what_it_reads(
    driver_base: tuple[Path, int | None],
) -> None:
    from test_boundary import run_as_driver

    base, uid = driver_base
    seen = run_as_driver(base, uid, AS_DRIVER, {"tests": str(Path(__file__).parent)})
    assert isinstance(seen, dict), seen
    assert seen["asked"] == ["flip", "publish"]
    # before: both ran at once, the payload flipped while deploy.sh waited, and the
    # EVIL a human never saw ran on the approval of GOOD
    assert "EVIL" not in seen["out.log"]
    first, second = seen["granted"]
    assert sorted(seen["granted"]) == ["flip", "publish"]
    # a step asking while the other ran (its turns, or its call) said it waits, once;
    # which asked when is the scheduler's; that the commands ran one at a time is not
    other = {"publish": ["flip"], "flip": ["publish"]}
    assert all(running == other[step] for step, running in seen["waits"])
    assert len({step for step, _ in seen["waits"]}) == len(seen["waits"])
    # one approved command at a time: each one's end before the next one's start
    ran = [first, second] if first == "publish" else [first]
    assert seen["commands"] == [
        [k, s] for s in ran for k in ("tool_call_started", "tool_call_ended")
    ]
    if first == "flip":  # the payload changed before publish's call: asked again
        ((step, why),) = seen["again"]
        assert step == "publish" and "payload changed" in " ".join(why)
        assert seen["out.log"] == ""
    else:  # publish ran the payload the human saw, then flip changed it
        assert (seen["out.log"], seen["payload"], seen["again"]) == ("GOOD\n", EVIL, [])


def test_the_wait_to_run_alone_is_not_taken_from_the_steps_timeout(tmp_path: Path) -> None:
    """``publish`` is approved while a step beside it sleeps for most of the step
    timeout: its command waits for that step, then has its whole time to run (it was
    killed a second and a half into its three)."""
    workspace, store, run_id = two_step_run(tmp_path, DEPLOY, step_timeout=6)
    (workspace / "deploy.sh").write_text('sleep 3\n. "./$1"\n')
    approved: list[str] = []
    stop = threading.Event()

    def approve_as_asked() -> None:  # a human at the inbox while the run goes on
        human = SqliteStore(tmp_path / "runs.db")
        while not stop.is_set():
            for card in inbox(human, run_id=run_id):
                if card.ref not in approved:  # shown until the driver takes the decision
                    submit_decision(human, card.ref, "approve")
                    approved.append(card.ref)
            time.sleep(0.05)
        human.close()

    approver = threading.Thread(target=approve_as_asked)
    approver.start()
    try:
        drive(store, run_id, two_steps("slow", "sleep 4.5", "slow work"))
    finally:
        stop.set()
        approver.join()
    assert approved == [f"{run_id}.1"]  # publish's command, asked once
    events = recorded(store, run_id)
    (waits,) = of_kind(events, AloneAwaited)
    assert (waits.step, waits.running) == ("publish", ("slow",))
    assert (workspace / "out.log").read_text() == "GOOD\n"
    (deployed,) = [
        e for e in of_kind(events, ToolCallEnded) if e.step == "publish" and e.tool == "run_command"
    ]
    assert deployed.ok, deployed.content
    store.close()


# --- the same plan through the command line: a recorded trajectory replayed ----------


def said(text: str = "", command: str | None = None, **write: str) -> dict[str, Any]:
    """One recorded answer: ``text``, or a call of ``command``, or a ``write_file`` of
    ``write``'s path and content, or ``finish``."""
    name, arguments = (
        ("run_command", {"command": command})
        if command
        else ("write_file", write)
        if write
        else ("finish", {"summary": "done"})
    )
    calls = [] if text else [{"id": "c1", "name": name, "arguments": json.dumps(arguments)}]
    return {"text": text, "tool_calls": calls, "usage": {"input_tokens": 9, "output_tokens": 9}}


Checks = list[dict[str, str]]


def replayed_repo(
    where: Path,
    checks: tuple[Checks, Checks] = (exists("deploy.sh"), exists("flip.sh")),
    beside: Sequence[str] = (FLIP,),
    confirm: Sequence[str] = (DEPLOY, FLIP),
    policy: str = "",
) -> Path:
    """The sample repository with the scripts, its operator's policy (``policy``, and
    asking before ``confirm``; accepted, as the operator who wrote it), and beside it
    ``two.json``, the plan's trajectory: publish calls ``sh deploy.sh payload``, flip
    makes the calls ``beside``; each verified by ``checks``."""
    from trestle.demo import write_sample
    from trestle.formats.policyfile import read_policy_file
    from trestle.trust.policy_trust import accept

    repo = write_sample(where / "repo")
    for name, text in (("deploy.sh", DEPLOY_SH), ("flip.sh", FLIP_SH), ("payload", GOOD)):
        (repo / name).write_text(text)
    (repo / "out.log").write_text("")
    (repo / "trestle.toml").write_text(
        f"[policy]\nconfirm_commands = {json.dumps(list(confirm))}\n{policy}"
    )
    accept(read_policy_file(repo / "trestle.toml"))
    plan = plan_json(
        plan_step("publish", "deploy", files=["out.log"], verify=checks[0]),
        plan_step("flip", "change payload", files=["payload"], verify=checks[1]),
    )
    conversations = {
        "understand#1": [said(FINDINGS)],
        "plan#1": [said(plan)],
        # and the same again in a retry's new round (after a crash cut one short)
        **{
            f"{step}#{n}": [*(said(command=command) for command in commands), said()]
            for n in (1, 2, 3)
            for step, commands in (("publish", [DEPLOY]), ("flip", beside))
        },
    }
    trajectory = {"format": "trestle-trajectory/1", "conversations": conversations}
    (where / "two.json").write_text(json.dumps(trajectory))
    return repo


def agent_command(where: Path, *extra: str) -> list[str]:
    """``trestle agent`` on :func:`replayed_repo`'s repository and trajectory."""
    return [
        "agent",
        GOAL,
        "--repo",
        str(where / "repo"),
        "--model",
        f"replay:{where / 'two.json'}",
        "--test-command",
        "test -s payload",
        "--auto-plan",
        "--no-live",
        "--no-prompt",
        *extra,
    ]


@pytest.mark.parametrize("moment", ["alone_awaited", "tool_call_started"])
def test_a_driver_killed_as_an_approved_call_waits_or_runs_alone_is_resumed_as_printed(
    tmp_path: Path, moment: str
) -> None:
    """Both calls approved, the resume's driver is SIGKILLed as the first call to ask
    waits for the other step (``alone_awaited``), or as the granted one's command runs;
    then ``trestle resume`` as ``trestle runs`` prints it, until the run ends: no
    command ran twice, and no mark is left holding the run."""
    from test_cli import Cli

    cli = Cli(tmp_path, tmp_path / "t.db")
    done = (
        [{"file_contains": "out.log", "text": "GOOD"}],
        [{"file_contains": "flips.log", "text": "flip"}],
    )
    repo = replayed_repo(tmp_path, done)
    (repo / "flip.sh").write_text("sleep 1\necho flip >> flips.log\n")  # nothing deploy reads
    asked = cli(*agent_command(tmp_path))
    assert asked.returncode == 3, asked.stdout + asked.stderr
    for card in cli.json("inbox"):
        assert cli("approve", card["ref"]).returncode == 0
    run_id = card["run_id"]
    store = SqliteStore(cli.store)
    driver = subprocess.Popen(
        cli.argv("resume", run_id, "--no-live", "--no-prompt"),
        cwd=cli.dir,
        env=cli.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(
            e.kind == moment and getattr(e, "tool", "run_command") == "run_command"
            for e in recorded(store, run_id)
        ):
            assert driver.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        os.kill(driver.pid, signal.SIGKILL)  # the driver alone, as a crash takes it
        driver.wait(timeout=60)

    assert len(cli.json("runs")) == 1
    assert f"trestle resume {run_id}" in cli("runs").stdout
    for _ in range(4):  # as printed; a call the kill cut short asks a human first
        resumed = cli("resume", run_id, "--no-live", "--no-prompt")
        if resumed.returncode != 3:
            break
        for card in cli.json("inbox"):
            assert cli("approve", card["ref"]).returncode == 0
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # each ran its whole course once: a command the kill cut short was not run again
    # on its approval (its step's next attempt asked again, and ran it)
    assert (repo / "out.log").read_text() == "GOOD\n"
    assert (repo / "flips.log").read_text() == "flip\n"
    assert state_of(store, run_id).alone_marks == {}
    store.close()


# --- a delegated child's approved command, and its parent's steps ---------------------

PARENT_GOAL = "deploy, and change the payload beside it"
# the parent's plan: ``deploy``, delegated, beside ``flip``, which writes ``flag.txt``
# (the operator asks first), then calls ``sh flip.sh``; and the child's one step
TREE_PLAN = plan_json(
    {
        **plan_step("deploy", "run the deploy", files=["out.log"], verify=exists("out.log")),
        "delegate": True,
    },
    plan_step(
        "flip",
        "change payload",
        files=["payload"],
        new_files=["flag.txt"],
        verify=exists("payload"),
    ),
)
CHILD_PLAN = plan_json(plan_step("publish", "deploy", files=["out.log"], verify=exists("out.log")))
FLAG = Rule(name="flag", tier="confirm", paths=("flag.txt",))


def tree_workspace(workspace: Path, flip_after: float) -> None:
    """The scripts for :data:`TREE_PLAN`: ``flip.sh`` rewrites the payload after
    ``flip_after`` seconds; ``deploy.sh`` reads it four seconds after it starts."""
    (workspace / "deploy.sh").write_text('sleep 4\n. "./$1"\n')
    (workspace / "flip.sh").write_text(
        f"sleep {flip_after}\nprintf '{EVIL.strip()}\\n' > payload\n"
    )
    (workspace / "payload").write_text(GOOD)
    (workspace / "out.log").write_text("")


def assert_the_child_held_its_parent(store: SqliteStore, root: str, workspace: Path) -> None:
    """The child's call held the parent's run (waiting for ``flip``), found the payload
    changed once flip ended, and is asked again; nothing of what flip wrote ran."""
    assert "EVIL" not in (workspace / "out.log").read_text()
    held = [e.kind for e in recorded(store, root) if getattr(e, "step", "") == "deploy"]
    assert [k for k in held if "alone" in k] == [
        "call_alone_asked",
        "alone_awaited",  # for flip
        "alone_granted",
        "alone_released",
    ]
    (again,) = inbox(store)  # the child's call, bound to the payload as it reads now
    assert again.step == "publish" and "payload changed" in " ".join(again.uncertainties)


def delegating_team(pauses: int = 0) -> FunctionModel:
    """The model of :data:`TREE_PLAN`'s runs, answering by the conversation; ``flip``
    calls ``sleep 1`` ``pauses`` times (each a sign of life; each its own command,
    or the monitors would take them for a loop) before ``sh flip.sh``."""

    def reply(messages: Sequence[Message], tools: Sequence[ToolSchema]) -> Reply:
        task = messages[2].content
        if "Phase UNDERSTAND" in task:
            return FINDINGS
        current = re.search(r"^Current step '([^']*)'", task, re.M)
        if current is not None:
            done = sum(m.role == "tool" for m in messages)
            calls = (
                [call("run_command", command=DEPLOY)]
                if current.group(1) == "publish"
                else [
                    call("write_file", path="flag.txt", content="go"),
                    *(call("run_command", command=f"sleep 1 && echo {i}") for i in range(pauses)),
                    call("run_command", command=FLIP),
                ]
            )
            return calls[done] if done < len(calls) else call("finish", summary="done")
        return TREE_PLAN if f"Goal: {PARENT_GOAL}" in task else CHILD_PLAN

    return FunctionModel(reply, name="scripted")


def held_tree(tmp_path: Path, flip_after: float, pauses: int, **monitors: Any) -> None:
    """:data:`TREE_PLAN` run to its two cards, both approved as they read, the run
    resumed; then the child held its parent (:func:`assert_the_child_held_its_parent`)."""
    workspace = sample_workspace(tmp_path)
    tree_workspace(workspace, flip_after)
    store = SqliteStore(tmp_path / "runs.db")
    root = create_run(
        store,
        bootstrap_plan(PARENT_GOAL, parallelism=4),
        workspace=workspace,
        agent=agent_settings(test_command="test -s payload"),
        operator_policy=Policy(confirm_commands=(*DEFAULT_CONFIRM_COMMANDS, DEPLOY), rules=(FLAG,)),
        monitors=MonitorSettings(**monitors),
    )
    model = delegating_team(pauses)
    drive(store, root, model)
    cards = inbox(store)
    assert sorted(c.step or "" for c in cards) == ["flip", "publish"]  # the root's, the child's
    for card in cards:
        submit_decision(store, card.ref, "approve")

    drive(store, root, model)

    assert_the_child_held_its_parent(store, root, workspace)
    store.close()


def test_a_delegated_childs_approved_command_holds_its_parents_steps_too(tmp_path: Path) -> None:
    """The child shares its parent's workspace: its approved command waits for the
    parent's ``flip`` (which rewrites the payload while the deploy would wait) as it
    waits for its own run's steps. Both cards approved as they read, the run resumed:
    the payload read otherwise by the time the command could run, so it is asked again
    (before, the child ran at once, and the payload flipped under it: EVIL ran)."""
    held_tree(tmp_path, flip_after=3, pauses=0)


def test_a_child_waiting_for_the_runs_above_is_not_taken_for_a_stalled_one(
    tmp_path: Path,
) -> None:
    """The child's step waits for the parent's ``flip`` longer than ``stall_after``
    (flip shows a sign of life every second, seven times): it waits, as a step waiting
    for its own run does, and its silence counts from the wait's end (before, its
    attempt was cancelled as stalled, and the step put on the dead-letter queue)."""
    held_tree(tmp_path, flip_after=0.3, pauses=7, stall_after=5)


# --- another run in the same workspace ---------------------------------------------------


def one_step(step: str, command: str) -> FunctionModel:
    """The model: a plan of one step ``step``, which calls ``command``."""
    return one_call(step, "run_command", command=command)


def one_call(step: str, tool: str, **arguments: Any) -> FunctionModel:
    """The model: a plan of one step ``step``, which calls ``tool`` once."""
    scripts: dict[str, list[Reply]] = {
        "understand": [FINDINGS],
        "plan": [
            plan_json(
                plan_step(
                    step, "its command", files=["payload", "out.log"], verify=exists("payload")
                )
            )
        ],
        step: [call(tool, **arguments), call("finish", summary="done")],
    }

    def reply(messages: Sequence[Message], tools: Sequence[ToolSchema]) -> Reply:
        return scripts[step_of(messages)].pop(0)

    return FunctionModel(reply, name="scripted")


def two_runs(base: Path, other: str = "flip") -> dict[str, Any]:
    """Two runs, each of its own store, in one workspace under ``base``: ``publish``'s
    approved deploy (which reads the payload four seconds in) and, in the other run,
    ``flip``, whose command rewrites the payload a moment after it starts and needs no
    human (``other="write"``: a plan's ``write:`` step that writes it, 1.5 s after the
    deploy's run goes on); driven at once, the second in a thread. What they left, in
    JSON's terms."""
    workspace = sample_workspace(base)
    tree_workspace(workspace, flip_after=0.3)

    def run_in(name: str, *confirm: str) -> tuple[SqliteStore, str]:
        store = SqliteStore(base / name)
        run_id = create_run(
            store,
            bootstrap_plan(GOAL, parallelism=4),
            workspace=workspace,
            agent=agent_settings(test_command="test -s payload"),
            operator_policy=Policy(confirm_commands=(*DEFAULT_CONFIRM_COMMANDS, *confirm)),
        )
        return store, run_id

    (deploys, deploy_run), (flips, flip_run) = run_in("a.db", DEPLOY), run_in("b.db")
    deploy = one_step("publish", DEPLOY)
    drive(deploys, deploy_run, deploy)
    (card,) = inbox(deploys)
    submit_decision(deploys, card.ref, "approve")

    def flip() -> None:
        if other == "flip":
            drive(flips, flip_run, one_step("flip", FLIP))
            return
        if other == "mcp":  # the call that writes the payload, to a server of its run
            drive(flips, flip_run, one_call("flip", "notes__overwrite", path="payload", text=EVIL))
            return
        time.sleep(1.5)
        engine = LocalEngine(flips)
        try:
            asyncio.run(engine.run(flip_run))
        finally:
            engine.close()

    if other == "mcp":
        server = McpServer(name="notes", command=(sys.executable, str(MCP_SERVER)), timeout=20)
        flip_run = create_run(
            flips,
            bootstrap_plan(GOAL, parallelism=4),
            workspace=workspace,
            agent=agent_settings(test_command="test -s payload", mcp=(server,)),
        )
    if other == "write":
        write = WriteAction(path="payload", content=EVIL)
        plan = Plan(goal="rewrite", steps=(Step(id="flip", write=write),))
        flip_run = create_run(flips, plan, workspace=workspace)
    flipping = threading.Thread(target=flip)
    flipping.start()
    drive(deploys, deploy_run, deploy)
    flipping.join(60)
    seen = {
        "out.log": (workspace / "out.log").read_text(),
        "payload": (workspace / "payload").read_text(),
        "flip": state_of(flips, flip_run).finished,
        "again": [[c.step, c.uncertainties] for c in inbox(deploys)],
    }
    deploys.close()
    flips.close()
    return seen


TWO_RUNS = """
import json, sys
from pathlib import Path
sys.path.insert(0, json.loads(sys.argv[2])["tests"])
from test_tool_call_alone import two_runs
print(json.dumps(two_runs(Path(sys.argv[1]), json.loads(sys.argv[2])["other"])))
"""


@pytest.mark.parametrize("other", ["flip", "write", "mcp"])
def test_another_runs_step_does_not_change_what_an_approved_command_reads(
    driver_base: tuple[Path, int | None], other: str
) -> None:
    """:func:`two_runs`, driven as root and as uid 1000. Whichever starts first, the
    other waits: flip after the deploy, or the deploy after flip, and then its re-read
    finds the payload changed and asks again (before, flip ran beside it, and EVIL ran
    on the approval of GOOD; a plan's write: step, and a call to an MCP server of the
    other run, did too until they held the workspace)."""
    from test_boundary import run_as_driver

    base, uid = driver_base
    where = {"tests": str(Path(__file__).parent), "other": other}
    seen = run_as_driver(base, uid, TWO_RUNS, where)
    assert isinstance(seen, dict), seen
    assert "EVIL" not in seen["out.log"]
    assert seen["payload"] == EVIL  # flip ran, before or after
    assert seen["flip"] == "succeeded"
    if seen["out.log"] == "GOOD\n":  # the deploy first: flip waited for its end
        assert seen["again"] == []
    else:  # flip first: the deploy waited, read the payload again, and asks again
        ((step, why),) = seen["again"]
        assert seen["out.log"] == "" and step == "publish" and "payload changed" in " ".join(why)
