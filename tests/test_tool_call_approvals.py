"""What a human's approval of an agent's tool call lets run: that one call, and the
script it names as it read when they were asked, in the real sandbox.

Each test drives an agent run with a scripted model whose operator policy asks before
``sh deploy.sh``; ``deploy.sh`` appends a line to ``out.log``, so the log says which
bytes ran, and how often.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_helpers import (
    FIX_STEP,
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
from trestle.core.card import HandoffCard
from trestle.core.events import ToolCallEnded, ToolCallStarted
from trestle.core.invocations import MAX_WRAPPERS
from trestle.core.policy import DEFAULT_CONFIRM_COMMANDS, Policy, Rule, command_shape
from trestle.core.records.agent import bootstrap_plan
from trestle.core.records.mcp import McpServer
from trestle.execution.named_files import executed_files, named_files
from trestle.lifecycle.approvals import inbox, submit_decision
from trestle.lifecycle.runs import create_run
from trestle.models import ModelResponse, ScriptedModel, ToolCall
from trestle.store.sqlite import SqliteStore

DEPLOY = "sh deploy.sh"
GOOD, EVIL = "echo GOOD >> out.log\n", "echo EVIL >> out.log\n"
PLAN = plan_json(
    plan_step(
        "publish",
        "deploy",
        files=["deploy.sh", "out.log"],
        verify=[{"command": "grep -q GOOD out.log"}],
    )
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "runs.db")
    yield opened
    opened.close()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = sample_workspace(tmp_path)
    (ws / "deploy.sh").write_text(GOOD)
    (ws / "out.log").write_text("")
    return ws


def deploy_run(store: SqliteStore, workspace: Path, policy: Policy | None = None) -> str:
    """An agent run under the operator's ``policy``: by default, one that asks a human
    before every ``sh deploy.sh``."""
    return create_run(
        store,
        bootstrap_plan(GOAL),
        workspace=workspace,
        agent=agent_settings(),
        operator_policy=policy or asks_before(DEPLOY),
    )


def asks_before(*commands: str) -> Policy:
    return Policy(confirm_commands=(*DEFAULT_CONFIRM_COMMANDS, *commands))


def asked_to_deploy(store: SqliteStore, workspace: Path) -> tuple[str, ScriptedModel, HandoffCard]:
    """A run whose agent makes one ``sh deploy.sh`` call, driven until it asks."""
    run_id = deploy_run(store, workspace)
    model = ScriptedModel(
        [
            findings_json("deploy.sh deploys", files=["deploy.sh"]),
            PLAN,
            call("run_command", command=DEPLOY),
            call("finish", summary="deployed", claims=[]),
        ]
    )
    drive(store, run_id, model)
    (card,) = inbox(store, run_id=run_id)
    return run_id, model, card


def started_deploys(store: SqliteStore, run_id: str) -> list[ToolCallStarted]:
    started = of_kind(recorded(store, run_id), ToolCallStarted)
    return [e for e in started if e.tool == "run_command"]


def ended_deploys(store: SqliteStore, run_id: str) -> list[ToolCallEnded]:
    ended = of_kind(recorded(store, run_id), ToolCallEnded)
    return [e for e in ended if e.tool == "run_command"]


def test_an_approved_call_runs_once_and_the_same_call_again_is_asked_again(
    store: SqliteStore, workspace: Path
) -> None:
    run_id = deploy_run(store, workspace)
    model = ScriptedModel(
        [
            findings_json("deploy.sh deploys", files=["deploy.sh"]),
            PLAN,
            call("run_command", command=DEPLOY),
            # the script, rewritten by the agent after its one approved run, then the
            # same call: the approval of the first is not one of the second
            call("write_file", path="deploy.sh", content=EVIL),
            call("run_command", command=DEPLOY),
            call("finish", summary="deployed", claims=[]),
        ]
    )
    drive(store, run_id, model)
    (first,) = inbox(store, run_id=run_id)
    submit_decision(store, first.ref, "approve")

    drive(store, run_id, model)

    assert (workspace / "out.log").read_text() == "GOOD\n"
    (ran,) = started_deploys(store, run_id)
    assert ran.gate is not None and ran.gate.approval == first.approval
    (second,) = inbox(store, run_id=run_id)
    assert (second.subject, second.step, second.approval) == ("tool", "publish", 2)
    assert second.action_hash == first.action_hash  # the very same call, asked again
    assert second.uncertainties == [
        f"approval {first.approval} of this same call was given; a call ran on it (an "
        "approval lets one call run); deploy.sh changed since it was asked: this one is "
        "asked on its own"
    ]

    submit_decision(store, second.ref, "approve")
    drive(store, run_id, model)

    assert (workspace / "out.log").read_text() == "GOOD\nEVIL\n"  # a human let it run
    assert [e.gate.approval for e in started_deploys(store, run_id) if e.gate] == [1, 2]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("sandbox", ["auto", "off"])
def test_the_card_binds_the_script_and_one_rewritten_before_the_call_runs_is_asked_again(
    store: SqliteStore, workspace: Path, sandbox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRESTLE_SANDBOX", sandbox)  # off: the operator chose to run unconfined
    run_id, model, card = asked_to_deploy(store, workspace)
    assert card.bound_to == [f"deploy.sh ({sha(GOOD)[:12]})"]
    assert "once and goes on, with deploy.sh as they read now" in card.on_approve
    # rewritten after the human was asked (by anything that writes the workspace: a
    # step beside it, another process), then approved as the card showed it
    (workspace / "deploy.sh").write_text(EVIL)
    submit_decision(store, card.ref, "approve")

    drive(store, run_id, model)

    assert (workspace / "out.log").read_text() == ""  # nothing ran
    assert not started_deploys(store, run_id)
    (again,) = inbox(store, run_id=run_id)
    assert again.approval == card.approval + 1
    assert again.bound_to == [f"deploy.sh ({sha(EVIL)[:12]})"]
    assert again.uncertainties == [
        f"approval {card.approval} of this same call was given; deploy.sh changed since it "
        "was asked: this one is asked on its own"
    ]


REWRITES_ITSELF = "echo GOOD >> out.log\necho 'echo EVIL >> out.log' > deploy.sh\n"


def test_an_approved_script_runs_as_approved_and_cannot_rewrite_itself_in_the_sandbox(
    store: SqliteStore, workspace: Path
) -> None:
    (workspace / "deploy.sh").write_text(REWRITES_ITSELF)
    run_id, model, card = asked_to_deploy(store, workspace)
    assert card.bound_to == [f"deploy.sh ({sha(REWRITES_ITSELF)[:12]})"]
    submit_decision(store, card.ref, "approve")

    drive(store, run_id, model)

    # the approved bytes ran, shown read-only in the script's place: its own rewrite
    # of what it was approved as failed, and the file reads as the human saw it
    assert (workspace / "out.log").read_text() == "GOOD\n"
    assert (workspace / "deploy.sh").read_text() == REWRITES_ITSELF
    (ended,) = ended_deploys(store, run_id)
    assert "deploy.sh" in ended.content and "exit code 2" in ended.content


def test_a_command_run_in_a_directory_names_files_from_there(workspace: Path) -> None:
    (workspace / "sub").mkdir()
    (workspace / "sub" / "deploy.sh").write_text(EVIL)

    assert named_files("sh ../deploy.sh", workspace, cwd="sub") == {"deploy.sh": sha(GOOD)}
    assert named_files("sh deploy.sh", workspace, cwd="sub") == {"sub/deploy.sh": sha(EVIL)}
    assert named_files("sh deploy.sh", workspace) == {"deploy.sh": sha(GOOD)}
    assert executed_files("sh ../deploy.sh > ../out.log", workspace, "sub") == {"deploy.sh"}
    assert executed_files("sh deploy.sh >> deploy.sh", workspace, "sub") == set()


# the two holds above, driven by a driver of root's and of a user's (the sandbox is made
# differently for each: as nobody under root, in a user namespace of the user's own)
AS_DRIVER = """
import asyncio, json, sys
from pathlib import Path
sys.path.insert(0, json.loads(sys.argv[2])["tests"])
from agent_helpers import GOAL, agent_settings, call, drive, findings_json, plan_json, plan_step
from trestle.core.invocations import MAX_WRAPPERS
from trestle.core.policy import DEFAULT_CONFIRM_COMMANDS, Policy, Rule, command_shape
from trestle.core.records.agent import bootstrap_plan
from trestle.lifecycle.approvals import inbox, submit_decision
from trestle.lifecycle.runs import create_run
from trestle.models import ScriptedModel
from trestle.store.sqlite import SqliteStore

base, case = Path(sys.argv[1]), json.loads(sys.argv[2])
seen = {}
for name, (script, rewrite) in case["runs"].items():
    ws = base / name
    (ws / "deploy.sh").write_text(script)
    (ws / "out.log").write_text("")
    store = SqliteStore(base / f"{name}.db")
    policy = Policy(confirm_commands=(*DEFAULT_CONFIRM_COMMANDS, "sh deploy.sh"))
    run = create_run(store, bootstrap_plan(GOAL), workspace=ws, agent=agent_settings(),
                     operator_policy=policy)
    plan = plan_json(plan_step("publish", "deploy", files=["deploy.sh", "out.log"],
                               verify=[{"command": "grep -q GOOD out.log"}]))
    model = ScriptedModel([findings_json("d", files=["deploy.sh"]), plan,
                           call("run_command", command="sh deploy.sh"),
                           call("finish", summary="done", claims=[])])
    drive(store, run, model)
    (card,) = inbox(store, run_id=run)
    if rewrite is not None:
        (ws / "deploy.sh").write_text(rewrite)
    submit_decision(store, card.ref, "approve")
    drive(store, run, model)
    pending = [c.approval for c in inbox(store, run_id=run)]
    seen[name] = [(ws / "out.log").read_text(), (ws / "deploy.sh").read_text(), pending]
    store.close()
print(json.dumps(seen))
"""


@pytest.fixture(params=["root", "user"])
def driver_base(request: pytest.FixtureRequest) -> Iterator[tuple[Path, int | None]]:
    from test_boundary import driver_host

    def lay_out(base: Path) -> None:
        (base / "home").mkdir()
        for name in ("rewritten", "pinned"):
            (base / name).mkdir()

    yield from driver_host(request.param, "trestle-tool-approvals-", lay_out)


def test_what_a_human_approved_is_what_an_agent_runs_to_root_and_to_a_user(
    driver_base: tuple[Path, int | None],
) -> None:
    from test_boundary import run_as_driver

    base, uid = driver_base
    runs = {"rewritten": [GOOD, EVIL], "pinned": [REWRITES_ITSELF, None]}
    seen = run_as_driver(base, uid, AS_DRIVER, {"tests": str(Path(__file__).parent), "runs": runs})
    assert isinstance(seen, dict), seen
    assert seen["rewritten"] == ["", EVIL, [2]]  # nothing ran; asked again
    assert seen["pinned"] == ["GOOD\n", REWRITES_ITSELF, []]  # ran as approved, once


def test_a_similar_approval_covers_the_command_only_where_it_was_asked(
    store: SqliteStore, workspace: Path
) -> None:
    (workspace / "sub").mkdir()
    run_id = deploy_run(store, workspace, asks_before("touch *"))
    plan = plan_json(
        plan_step(
            "mark", "mark it", new_files=["done", "sub/done"], verify=[{"command": "test -e done"}]
        )
    )
    model = ScriptedModel(
        [
            findings_json("mark it", files=["out.log"]),
            plan,
            call("run_command", command="touch done"),
            call("run_command", command="touch done", directory="sub"),
            call("finish", summary="marked", claims=[]),
        ]
    )
    drive(store, run_id, model)
    (card,) = inbox(store, run_id=run_id)
    assert "exactly `touch done`" in card.similar and "run in" not in card.similar
    submit_decision(store, card.ref, "approve", similar=True)

    drive(store, run_id, model)

    assert (workspace / "done").exists()
    assert not (workspace / "sub" / "done").exists()  # another directory: asked on its own
    (other,) = inbox(store, run_id=run_id)
    assert "exactly `touch done` run in 'sub'" in other.similar


NESTED = "timeout 9 " * 800 + "test -e calc.py"  # 8 KB: wrappers past the reader's depth


def test_a_command_of_wrappers_nested_past_reading_is_asked_about_and_stops_no_driver(
    store: SqliteStore, workspace: Path
) -> None:
    shape = command_shape(NESTED)
    assert shape.unknown == (f"more than {MAX_WRAPPERS} wrappers one inside another",)
    assert list(named_files(NESTED, workspace)) == ["calc.py"]
    # as a model's call, and as its plan's check: each asked about (its reader stopped
    # the driver with a RecursionError, and the plan's every resume after it)
    run_id = create_run(store, bootstrap_plan(GOAL), workspace=workspace, agent=agent_settings())
    plan = plan_json(
        plan_step("check", "check it", files=["calc.py"], verify=[{"command": NESTED}])
    )
    model = ScriptedModel(
        [
            findings_json(),
            plan,
            call("run_command", command=NESTED),
            call("finish", summary="checked", claims=[]),
        ]
    )
    drive(store, run_id, model)  # the plan's review, which lists the check
    (review,) = inbox(store, run_id=run_id)
    assert review.step == "review" and NESTED in review.objective
    submit_decision(store, review.ref, "approve")

    drive(store, run_id, model)

    (card,) = inbox(store, run_id=run_id)
    assert (card.subject, card.tier, card.rule) == ("tool", "confirm", "unknown_command")
    assert state_of(store, run_id).steps["check"].status == "awaiting_approval"


@pytest.mark.parametrize(
    ("command", "directory", "named", "runs"),
    [
        ("sh d/../deploy.sh", ".", "d/../deploy.sh", "a/deploy.sh"),
        ("sh deploy.sh", "d/..", "d/../deploy.sh", "a/deploy.sh"),
        ("sh d/deploy.sh", ".", "d/deploy.sh", "a/b/deploy.sh"),
    ],
)
def test_a_script_named_through_a_link_is_bound_as_read_and_never_runs_unpinned(
    store: SqliteStore, workspace: Path, command: str, directory: str, named: str, runs: str
) -> None:
    # d leads to a/b: d/.. is a, so the script that runs is a/deploy.sh, not the
    # deploy.sh the words spell once d/.. is taken away (which the approval was bound
    # to, and pinned, while a/deploy.sh ran)
    (workspace / "a" / "b").mkdir(parents=True)
    (workspace / "d").symlink_to("a/b")
    (workspace / runs).write_text(EVIL)
    run_id = deploy_run(store, workspace, asks_before("sh *deploy.sh"))
    model = ScriptedModel(
        [
            findings_json("deploy.sh deploys", files=["deploy.sh"]),
            PLAN,
            call("run_command", command=command, directory=directory),
            call("finish", summary="deployed", claims=[]),
        ]
    )
    drive(store, run_id, model)
    (card,) = inbox(store, run_id=run_id)
    assert card.bound_to == [f"{named} ({sha(EVIL)[:12]})"]  # what would run
    submit_decision(store, card.ref, "approve")

    drive(store, run_id, model)

    # approved as the card showed it, and still not run: a link on its way could be
    # pointed elsewhere between the sandbox's start and the shell's read
    assert (workspace / "out.log").read_text() == ""
    (ended,) = ended_deploys(store, run_id)
    assert ended.error is not None
    assert f"{named} cannot be held as approved" in ended.error


def test_an_approved_write_whose_link_now_leads_elsewhere_is_asked_again(
    store: SqliteStore, workspace: Path
) -> None:
    for env in ("staging", "prod"):
        (workspace / "deploy" / env).mkdir(parents=True)
        (workspace / "deploy" / env / "app.yaml").write_text("replicas: 3\n")
    (workspace / "d").symlink_to("deploy/staging")
    policy = Policy(rules=(Rule(name="deploy-config", tier="confirm", paths=("deploy/**",)),))
    run_id = deploy_run(store, workspace, policy)
    files = ["deploy/staging/app.yaml", "deploy/prod/app.yaml"]
    plan = plan_json(
        plan_step("scale", "scale staging down", files=files, verify=[{"command": "test -e d"}])
    )
    model = ScriptedModel(
        [
            findings_json("staging's config", files=["deploy/staging/app.yaml"]),
            plan,
            call("write_file", path="d/app.yaml", content="replicas: 0\n"),
            call("finish", summary="scaled", claims=[]),
        ]
    )
    drive(store, run_id, model)
    (card,) = inbox(store, run_id=run_id)
    assert "deploy/staging/app.yaml" in card.why
    # a step beside it points the link at prod while the human reads the card
    (workspace / "d").unlink()
    (workspace / "d").symlink_to("deploy/prod")
    submit_decision(store, card.ref, "approve")

    drive(store, run_id, model)

    assert (workspace / "deploy" / "prod" / "app.yaml").read_text() == "replicas: 3\n"
    (again,) = inbox(store, run_id=run_id)
    assert "deploy/prod/app.yaml" in again.why


def test_an_approved_write_is_made_through_no_link(store: SqliteStore, workspace: Path) -> None:
    (workspace / "deploy" / "staging").mkdir(parents=True)
    (workspace / "deploy" / "staging" / "app.yaml").write_text("replicas: 3\n")
    (workspace / "d").symlink_to("deploy/staging")
    policy = Policy(rules=(Rule(name="deploy-config", tier="confirm", paths=("deploy/**",)),))
    run_id = deploy_run(store, workspace, policy)
    scale = plan_step(
        "scale", "scale down", files=["deploy/staging/app.yaml"], verify=[{"command": "test -e d"}]
    )
    model = ScriptedModel(
        [
            findings_json("staging's config", files=["deploy/staging/app.yaml"]),
            plan_json(scale),
            call("write_file", path="d/app.yaml", content="replicas: 0\n"),
            call("finish", summary="scaled", claims=[]),
        ]
    )
    drive(store, run_id, model)
    (card,) = inbox(store, run_id=run_id)
    submit_decision(store, card.ref, "approve")

    drive(store, run_id, model)

    # the link could have been pointed elsewhere between the gate and the write
    assert (workspace / "deploy" / "staging" / "app.yaml").read_text() == "replicas: 3\n"
    writes = [e for e in of_kind(recorded(store, run_id), ToolCallEnded) if e.tool == "write_file"]
    (ended,) = writes
    assert not ended.ok
    assert "'d/app.yaml' leads through a link to 'deploy/staging/app.yaml'" in (ended.error or "")


def test_an_approved_read_of_a_server_held_by_a_rule_runs_once_however_often_it_is_asked(
    store: SqliteStore, workspace: Path
) -> None:
    # an operator's rule holds an untrusted server's every call, its reads too; the
    # model makes the same read twice in one answer
    notes = McpServer(
        name="notes",
        command=(sys.executable, str(Path(__file__).parent / "mcp_server.py")),
        timeout=5,
        start_timeout=20,
    )
    hold = Rule(name="untrusted notes server: always ask", tier="confirm", tags=("mcp:notes",))
    run_id = create_run(
        store,
        bootstrap_plan(GOAL),
        workspace=workspace,
        agent=agent_settings(mcp=(notes,)),
        operator_policy=Policy(rules=(hold,)),
    )
    read = json.dumps({"name": "a"})
    twice = ModelResponse(
        tool_calls=tuple(ToolCall(id=i, name="notes__read_note", arguments=read) for i in "ab"),
        finish_reason="tool_calls",
    )
    model = ScriptedModel(
        [
            findings_json(),
            plan_json(FIX_STEP),
            twice,
            call("edit_file", path="calc.py", old="a - b", new="a + b"),
            call("finish", summary="fixed", claims=[]),
        ]
    )
    log = workspace / "calls.log"
    drive(store, run_id, model)
    (first,) = inbox(store, run_id=run_id)
    submit_decision(store, first.ref, "approve")

    drive(store, run_id, model)

    # its start was held for the next commit, as a read's is, and the second found the
    # approval unspent: both reached the server on one approval
    assert log.read_text().splitlines() == ['read_note {"name": "a"}']
    (second,) = inbox(store, run_id=run_id)
    assert second.action_hash == first.action_hash
    submit_decision(store, second.ref, "approve")
    drive(store, run_id, model)
    assert log.read_text().splitlines() == ['read_note {"name": "a"}'] * 2
