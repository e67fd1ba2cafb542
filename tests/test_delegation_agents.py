"""Agent children: a delegated child that is an agent run, with the real agent runtime,
the real ``openai`` client against a loopback server, and real SQLite files.

The budget test is invariant 6 across a tree: parallel agent children, each limited to
the share it carved, can never jointly pass their parent's hard token limit.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

from agent_helpers import call, findings_json, plan_json, plan_step
from forked_cli import run_trestle
from test_cli import cli_env
from trestle.agent.runtime import AgentPerformer
from trestle.core.budget import Budget, Limit
from trestle.core.events import ChildRunEnded, ChildRunStarted, StepProbed, ToolCallStarted
from trestle.core.handoff import HEADER
from trestle.core.plan import ChildAgent, Delegation, Plan, Step
from trestle.engines.local import LocalEngine
from trestle.lifecycle.runs import create_run, load_state
from trestle.models import Message, ModelResponse, ToolSchema, Usage
from trestle.models.scripted import FunctionModel
from trestle.store import SqliteStore
from trestle.testing.openai_server import OpenAIServer

TURN = Usage(input_tokens=1400, output_tokens=100)


def greedy_reader(messages: Sequence[Message], tools: Sequence[ToolSchema]) -> ModelResponse:
    """A model that reads the same file turn after turn, each turn costing 1,500 tokens:
    only its budget ends it."""
    return call("read_file", call_id=f"c{len(messages)}", path="notes.txt", usage=TURN)


def test_parallel_agent_children_never_jointly_pass_the_parents_tokens(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "notes.txt").write_text("nothing to see\n", encoding="utf-8")
    children = [
        Step(
            id=f"look-{n}",
            optional=True,
            delegate=Delegation(
                goal=f"look around, {n}",
                agent=ChildAgent(
                    model="scripted", tools=("read_file",), max_tokens=200, plan_approval="auto"
                ),
                budget=Budget(tokens=Limit(hard=5_000)),
            ),
        )
        for n in (1, 2, 3)
    ]
    plan = Plan(
        goal="three readers",
        budget=Budget(tokens=Limit(hard=10_000)),
        child_parallelism=3,
        steps=tuple(children),
    )
    store = SqliteStore(tmp_path / "t.db")
    root = create_run(store, plan, workspace=workspace)
    model = FunctionModel(greedy_reader)
    engine = LocalEngine(store, poll_interval=0.02, performer=AgentPerformer(model))
    try:
        asyncio.run(engine.run(root))
    finally:
        engine.close()

    state = load_state(store, root)
    assert state.finished == "stopped"  # the third child's share did not fit
    assert state.stopped is not None and "hard tokens limit" in state.stopped
    spent = {}
    for child in state.children:
        child_state = load_state(store, child)
        assert child_state.finished == "stopped"  # each ran into its own share
        spent[child] = child_state.tally.spent.get("tokens", 0.0)
        assert 0 < spent[child] <= 5_000
    assert len(spent) == 2
    assert sum(spent.values()) <= 10_000
    assert state.tally.spent["tokens"] == sum(spent.values())  # counted in the parent
    ended = [s.event for s in store.events(root) if isinstance(s.event, ChildRunEnded)]
    assert sorted(e.spent["tokens"] for e in ended) == sorted(spent.values())
    # a child is offered its own tools only (and finish where a step can end)
    offered = {tool.name for request in model.requests for tool in request.tools}
    # a child is offered its own tools only (and finish where a step can end, and
    # fetch_artifact: a reader may read what its handoff packet lists)
    assert offered <= {"read_file", "fetch_artifact", "finish"}
    assert "read_file" in offered


def test_an_agent_child_works_through_the_openai_client_from_a_plan_file(tmp_path: Path) -> None:
    with OpenAIServer() as server:
        used = (
            2_000,
            50,
        )  # what a real prompt and answer come to (a count far below is not believed)
        server.queue_text(
            findings_json("the answer is asked for", files=["answer.txt"]), usage=used
        )
        step = plan_step(
            "answer",
            "write the answer",
            new_files=["answer.txt"],
            verify=[{"file_exists": "answer.txt"}],
        )
        server.queue_text(plan_json(step, summary="write it"), usage=used)
        write = ("write_file", json.dumps({"path": "answer.txt", "content": "42"}))
        server.queue_tool_calls(write, usage=used)
        server.queue_tool_calls(
            ("finish", json.dumps({"summary": "wrote it", "claims": []})), usage=used
        )
        (tmp_path / "plan.yaml").write_text(
            textwrap.dedent(
                f"""\
                goal: get the answer
                budget:
                  tokens: {{hard: 100000}}
                steps:
                  - id: ask
                    delegate:
                      goal: write the answer to answer.txt
                      agent:
                        model: openai:gpt-4o-mini
                        base_url: {server.base_url}
                        tools: [read_file, write_file]
                        plan_approval: auto
                        max_tokens: 500
                      budget:
                        tokens: {{hard: 20000}}
                    verify:
                      - file_contains: answer.txt
                        text: "42"
                """
            ),
            encoding="utf-8",
        )
        result = run_trestle(
            ["run", "plan.yaml", "--no-live"],
            cwd=tmp_path,
            env=cli_env(TRESTLE_STORE=str(tmp_path / "t.db"), OPENAI_API_KEY="test-key"),
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        offered = {t["function"]["name"] for r in server.requests for t in r.body.get("tools", [])}
    assert (tmp_path / "answer.txt").read_text(encoding="utf-8") == "42"
    assert offered <= {"read_file", "write_file", "fetch_artifact", "finish"}
    store = SqliteStore(tmp_path / "t.db", create=False)
    (root_row,) = [r for r in store.runs() if r.summarised().parent is None]
    root = load_state(store, root_row.run_id)
    (child,) = root.children
    assert load_state(store, child).agent is not None
    assert root.tally.spent["tokens"] == 4 * 2_050  # the server's usage, counted in the parent


PARENT_GOAL = "write a.txt and b.txt"


def coding_team(messages: Sequence[Message], tools: Sequence[ToolSchema]) -> ModelResponse | str:
    """One model for the parent agent and its workers, answering by the conversation:
    the parent plans two independent steps and delegates both; each worker writes its
    own file."""
    task = messages[2].content
    goal = next((ln[6:] for ln in task.splitlines() if ln.startswith("Goal: ")), "")
    done = any(m.role == "tool" for m in messages)
    if "Phase UNDERSTAND" in task:
        return findings_json("two files to write", files=[])
    current = re.search(r"^Current step '[^']*': write (\S+)$", task, re.M)
    if current is not None:  # a worker's execute step (its packet names both files)
        name = current.group(1)
        if done:
            return call("finish", summary=f"wrote {name}", claims=[])
        return call("write_file", path=name, content=name.upper())
    if goal == PARENT_GOAL:
        return plan_json(
            *(
                {
                    **plan_step(
                        f"write-{n}",
                        f"write {n}.txt",
                        new_files=[f"{n}.txt"],
                        verify=[{"file_exists": f"{n}.txt"}],
                    ),
                    "delegate": True,
                }
                for n in "ab"
            )
        )
    name = "a.txt" if "a.txt" in goal else "b.txt"
    return plan_json(
        plan_step("write", f"write {name}", new_files=[name], verify=[{"file_exists": name}])
    )


def test_an_agent_delegates_independent_steps_to_parallel_workers(tmp_path: Path) -> None:
    from agent_helpers import agent_settings, start_run

    workspace = tmp_path / "ws"
    workspace.mkdir()
    store = SqliteStore(tmp_path / "t.db")
    root = start_run(
        store,
        workspace,
        goal=PARENT_GOAL,
        settings=agent_settings(test_command=None),
        budget=Budget(tokens=Limit(hard=200_000)),
    )
    model = FunctionModel(coding_team)
    engine = LocalEngine(store, poll_interval=0.02, performer=AgentPerformer(model))
    try:
        asyncio.run(engine.run(root))
    finally:
        engine.close()
    state = load_state(store, root)
    assert state.finished == "succeeded", state.steps
    assert (workspace / "a.txt").read_text() == "A.TXT"
    assert (workspace / "b.txt").read_text() == "B.TXT"
    assert sorted(state.children) == [f"{root}.write-a.1", f"{root}.write-b.1"]
    for child in state.children:
        child_state = load_state(store, child)
        assert child_state.finished == "succeeded"
        assert child_state.agent is not None
        assert child_state.agent.scope in (("a.txt",), ("b.txt",))  # its step's files only
        carved = child_state.plan.budget
        assert carved is not None and carved.tokens is not None
        assert carved.tokens.hard is not None and carved.tokens.hard < 200_000 / 2
    assert state.tally.spent["tokens"] >= sum(
        load_state(store, c).tally.spent["tokens"] for c in state.children
    )
    # each worker started with a handoff packet: its goal, and what its parent found
    for child in state.children:
        settings = load_state(store, child).agent
        assert settings is not None and settings.handoff is not None
        packet = settings.handoff
        assert packet.sender == root
        assert packet.goal in ("write a.txt. Work on a.txt.", "write b.txt. Work on b.txt.")
        assert packet.acceptance == (f"{packet.goal[6:11]} exists",)
        assert any(f.claim.startswith("two files to write") for f in packet.findings)
        assert any(a.kind == "transcript" for a in packet.artifacts)
    handed = [r for r in model.requests if r.messages[2].content.startswith(HEADER)]
    assert len({r.messages[2].content.partition("\n")[0] for r in handed}) == 1  # the root
    assert any("write a.txt" in r.messages[2].content for r in handed)
    assert any("write b.txt" in r.messages[2].content for r in handed)


def test_an_agent_child_killed_mid_call_resumes_from_the_root_without_repeating(
    tmp_path: Path,
) -> None:
    """The driver alone is killed (SIGKILL) while the child's fourth model call is
    unanswered: on ``trestle resume ROOT`` the child goes on from its record. No
    recorded call is sent again; the file it wrote is written once, and the step's
    probe finds its check passing, so the unanswered call is not needed either."""
    with OpenAIServer() as server:
        server.queue_text(findings_json("the answer is asked for", files=["answer.txt"]))
        step = plan_step(
            "answer", "write it", new_files=["answer.txt"], verify=[{"file_exists": "answer.txt"}]
        )
        server.queue_text(plan_json(step, summary="write it"))
        server.queue_tool_calls(("write_file", json.dumps({"path": "answer.txt", "content": "42"})))
        finish = ("finish", json.dumps({"summary": "wrote it", "claims": []}))
        server.queue_tool_calls(finish, delay=120)  # cut short by the kill
        (tmp_path / "plan.yaml").write_text(
            textwrap.dedent(
                f"""\
                steps:
                  - id: ask
                    delegate:
                      goal: write the answer to answer.txt
                      agent:
                        model: openai:gpt-4o-mini
                        base_url: {server.base_url}
                        plan_approval: auto
                """
            ),
            encoding="utf-8",
        )
        env = cli_env(TRESTLE_STORE=str(tmp_path / "t.db"), OPENAI_API_KEY="test-key")
        driver = subprocess.Popen(
            [sys.executable, "-m", "trestle", "run", "plan.yaml", "--no-live"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # the driver alone is killed, as an OOM kill would
        )
        deadline = time.monotonic() + 60
        while len(server.requests) < 4 and driver.poll() is None:
            assert time.monotonic() < deadline, "the child never made its fourth call"
            time.sleep(0.02)
        os.kill(driver.pid, signal.SIGKILL)
        out, err = driver.communicate(timeout=30)
        assert len(server.requests) == 4, out + err
        root = out.split()[1]

        resumed = run_trestle(["resume", root, "--no-live"], cwd=tmp_path, env=env, timeout=120)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        sent = [r.body["messages"] for r in server.requests]

    assert len(sent) == 4  # nothing was asked again
    store = SqliteStore(tmp_path / "t.db", create=False)
    child = f"{root}.ask.1"
    writes = [
        s.event
        for s in store.events(child)
        if isinstance(s.event, ToolCallStarted) and s.event.tool == "write_file"
    ]
    assert len(writes) == 1
    (probed,) = [s.event for s in store.events(child) if isinstance(s.event, StepProbed)]
    assert probed.step == "answer" and probed.passed
    started = [s.event for s in store.events(root) if isinstance(s.event, ChildRunStarted)]
    assert [(e.child, e.resumed) for e in started] == [(child, False), (child, True)]
    assert load_state(store, root).finished == "succeeded"
    assert (tmp_path / "answer.txt").read_text(encoding="utf-8") == "42"


def test_model_named_steps_with_dots_never_share_a_child_run(tmp_path: Path) -> None:
    """The root's plan delegates ``a`` and ``a.1.b``; ``a``'s child delegates ``b``. Each
    child is its own run: ``a.1.b``'s child is not ``b``'s (``ROOT.a.1.b.1`` named both
    before: the second drive of the one run stopped the whole tree, and ``b`` was judged
    on ``a.1.b``'s work), and the tree ends in one drive, every goal worked on."""
    from agent_helpers import agent_settings, drive, sample_workspace
    from trestle.core.records.agent import bootstrap_plan

    workspace = sample_workspace(tmp_path)
    (workspace / "notes").mkdir()
    for name in ("a", "x"):
        (workspace / "notes" / f"{name}.md").write_text("")
    exists = [{"file_exists": "calc.py"}]

    def delegated(step: str, goal: str, note: str) -> dict[str, object]:
        return {
            **plan_step(step, goal, files=[f"notes/{note}.md"], verify=exists),
            "delegate": True,
        }

    plans = {
        "ROOT": plan_json(
            delegated("a", "CHILDA work", "a"), delegated("a.1.b", "CHILDX work", "x")
        ),
        "CHILDA": plan_json(delegated("b", "GRANDB work", "a")),
    }
    leaves = {"CHILDX": "x", "GRANDB": "a"}  # the note each leaf child works on
    worked: list[tuple[str, str]] = []

    def reply(messages: Sequence[Message], tools: Sequence[ToolSchema]) -> ModelResponse | str:
        task = messages[2].content
        goal = re.search(r"Goal: (\S+)", task)
        g = goal.group(1) if goal else "?"
        if "Phase UNDERSTAND" in task:
            return findings_json("notes", files=["calc.py"])
        current = re.search(r"^Current step '([^']*)'", task, re.M)
        if current is not None:
            worked.append((g, current.group(1)))
            if current.group(1) == "w" and sum(m.role == "tool" for m in messages) == 0:
                return call("run_command", command=f"sleep 1; echo {g} >> notes/{leaves[g]}.md")
            return call("finish", summary="done")
        if g in plans:
            return plans[g]
        return plan_json(plan_step("w", "work", files=[f"notes/{leaves[g]}.md"], verify=exists))

    store = SqliteStore(tmp_path / "runs.db")
    root = create_run(
        store,
        bootstrap_plan("ROOT split the work", parallelism=4),
        workspace=workspace,
        agent=agent_settings(test_command="true"),
    )
    drive(store, root, FunctionModel(reply, name="scripted"))

    assert load_state(store, root).finished == "succeeded"
    children = {r.run_id: r.summarised().parent for r in store.runs() if r.run_id != root}
    assert children == {
        f"{root}.a.1": root,
        f"{root}.a+1+b.1": root,
        f"{root}.a.1.b.1": f"{root}.a.1",
    }
    assert sorted({g for g, step in worked if step == "w"}) == ["CHILDX", "GRANDB"]
    # each delegation's own child worked its own goal, once
    assert (workspace / "notes" / "x.md").read_text() == "CHILDX\n"
    assert (workspace / "notes" / "a.md").read_text() == "GRANDB\n"
    store.close()
