"""``trestle mcp serve``: the real server in a subprocess, driven by the MCP SDK's stdio
client, over runs made by real ``trestle run`` processes.

Reading (runs, show_run, inbox with a waiting step's handoff card), deciding (approve
then ``trestle resume`` to success; reject, skip, retry, tell, cancel), each decision
recorded as made by ``mcp:CLIENT:USER@HOST`` (an approval or rejection as the key
it was signed with too); unknown runs and malformed arguments as
tool errors that leave the server serving; and a server started by a step of a
sandboxed run, asked to approve that run's own approval: refused, nothing recorded.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("mcp.server.mcpserver")

from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp_types import CallToolResult, Implementation

from test_approvals_cli import DEPLOY, Cli
from trestle.store import SqliteStore

CLIENT = "test-ide"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(dir=tmp_path, store=tmp_path / "trestle.db")


@asynccontextmanager
async def served(cli: Cli, name: str = CLIENT) -> AsyncIterator[ClientSession]:
    """A session with ``trestle mcp serve --store`` the CLI's store, as client ``name``."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "trestle", "mcp", "serve", "--store", str(cli.store)],
        env=cli.env(),
        cwd=str(cli.dir),
    )
    with open(cli.dir / "server.err", "a", encoding="utf-8") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write, client_info=Implementation(name=name, version="1")) as s,
        ):
            await s.initialize()
            yield s


def call(cli: Cli, *calls: tuple[str, dict[str, Any]]) -> list[CallToolResult]:
    """Each tool call in one session, in order."""

    async def go() -> list[CallToolResult]:
        async with served(cli) as session:
            return [await session.call_tool(name, args) for name, args in calls]

    return anyio.run(go)


def text_of(result: CallToolResult) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def queued(cli: Cli, run_id: str) -> list[object]:
    store = SqliteStore(cli.store)
    try:
        return list(store.pending_requests(run_id))
    finally:
        store.close()


def events(cli: Cli, run_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in cli.json("log", run_id) if e["kind"] == kind]


def test_tools_and_their_annotations(cli: Cli) -> None:
    async def go() -> dict[str, Any]:
        async with served(cli) as session:
            return {t.name: t.annotations for t in (await session.list_tools()).tools}

    cli.start(DEPLOY)  # a store to serve
    tools = anyio.run(go)
    assert set(tools) == {
        "runs",
        "show_run",
        "inbox",
        "approve",
        "reject",
        "retry",
        "skip",
        "tell",
        "change_plan",
        "cancel",
    }
    for name in ("runs", "show_run", "inbox"):
        assert tools[name].read_only_hint is True
    for name in ("approve", "reject", "skip", "cancel", "change_plan"):
        assert tools[name].read_only_hint is False
        assert tools[name].destructive_hint is True
    for name in ("approve", "reject", "retry", "skip", "tell", "change_plan"):
        assert tools[name].idempotent_hint is False


def test_read_then_approve_and_the_run_resumes_to_success(cli: Cli) -> None:
    run_id = cli.start(DEPLOY)
    listed, shown, inbox, approved = call(
        cli,
        ("runs", {}),
        ("show_run", {"run": run_id[-4:]}),
        ("inbox", {}),
        ("approve", {"ref": f"{run_id[-4:]}.1", "reason": "the window is open"}),
    )
    assert not listed.is_error and listed.structured_content is not None
    [row] = listed.structured_content["runs"]
    assert (row["run_id"], row["status"]) == (run_id, "needs_human")
    assert run_id in text_of(listed)

    assert not shown.is_error and shown.structured_content is not None
    steps = {s["id"]: s["category"] for s in shown.structured_content["steps"]}
    assert steps["deploy"] == "awaiting_approval"
    assert f"'deploy' waits for approval {run_id}.1" in text_of(shown)

    assert inbox.structured_content is not None
    [card] = inbox.structured_content["cards"]
    assert (card["ref"], card["step"]) == (f"{run_id}.1", "deploy")
    assert card["action"]["command"] == "echo deployed >> deploys.log"
    said = text_of(inbox)
    for line in (f"approval {run_id}.1", "goal           release 1.2 to production"):
        assert line in said
    assert "if approved    step 'deploy' runs this exact action" in said

    assert not approved.is_error, text_of(approved)
    assert approved.structured_content is not None
    assert approved.structured_content["status"] == "queued"
    assert f"approved {run_id}.1: queued" in text_of(approved)

    resumed = cli("resume", run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert cli.lines("deploys.log") == ["deployed"]
    [decided] = events(cli, run_id, "approval_decided")
    assert decided["verdict"] == "approve"
    # signed with the server user's identity key, which no group names: its short form
    assert decided["by"].startswith("ed25519:") and f"… (mcp:{CLIENT}:" in decided["by"]
    assert decided["reason"] == "the window is open"
    log = cli("log", run_id).stdout
    assert "approval 1: approve by ed25519:" in " ".join(log.split())


def test_reject_then_cancel(cli: Cli) -> None:
    run_id = cli.start(DEPLOY)
    rejected, twice = call(
        cli,
        ("reject", {"ref": f"{run_id}.1", "reason": "not this week"}),
        ("reject", {"ref": f"{run_id}.1", "reason": "again"}),
    )
    assert not rejected.is_error, text_of(rejected)
    assert twice.is_error and "already decided" in text_of(twice)
    assert cli("resume", run_id).returncode == 1
    [decided] = events(cli, run_id, "approval_decided")
    assert (decided["verdict"], decided["reason"]) == ("reject", "not this week")
    assert f"(mcp:{CLIENT}:" in decided["by"]
    assert not (cli.dir / "deploys.log").exists()

    other = cli.start(DEPLOY.replace("deploys.log", "deploys2.log"))
    cancelled, after = call(
        cli,
        ("cancel", {"run": other, "reason": "release called off"}),
        ("approve", {"ref": f"{other}.1"}),
    )
    assert not cancelled.is_error, text_of(cancelled)
    assert cancelled.structured_content is not None
    assert cancelled.structured_content["status"] == "cancelled"
    assert f"run {other} cancelled: release called off" in text_of(cancelled)
    [stop] = events(cli, other, "run_cancelled")
    assert stop["by"].startswith(f"mcp:{CLIENT}:")
    assert after.is_error and "cancelled" in text_of(after)


FLAKY = """
    goal: flaky
    steps:
      - id: once
        run: test -f seen || { touch seen; exit 1; }
      - id: never
        run: exit 1
      - id: after
        needs: [never]
        run: echo after >> after.log
"""


def test_retry_skip_and_tell(cli: Cli) -> None:
    run_id = cli.start(FLAKY)
    retried, skipped, told, changed, no_step, no_reason = call(
        cli,
        ("retry", {"run": run_id, "step": "once"}),
        ("skip", {"run": run_id, "step": "never", "reason": "not needed today"}),
        ("tell", {"run": run_id, "text": "also update the docs"}),
        ("change_plan", {"run": run_id, "step": "never", "drop": True}),
        ("retry", {"run": run_id, "step": "nope"}),
        ("skip", {"run": run_id, "step": "never", "reason": ""}),
    )
    assert not retried.is_error, text_of(retried)
    assert "retry of 'once': queued" in text_of(retried)
    assert not skipped.is_error, text_of(skipped)
    assert told.is_error and "is a plan run, not an agent run" in text_of(told)
    assert changed.is_error and "a plan run's steps are its plan file's" in text_of(changed)
    assert no_step.is_error and f"run {run_id!r} has no step 'nope'" in text_of(no_step)
    assert no_reason.is_error  # the SDK's validation: a reason is required
    resumed = cli("resume", run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert cli.lines("after.log") == ["after"]
    [reopened] = events(cli, run_id, "step_reopened")
    [skip] = events(cli, run_id, "step_skipped")
    for event in (reopened, skip):
        assert event["by"].startswith("ed25519:") and f"… (mcp:{CLIENT}:" in event["by"]


def test_bad_input_is_a_tool_error_and_the_server_goes_on(cli: Cli) -> None:
    run_id = cli.start(DEPLOY)
    unknown, bad_ref, no_approval, malformed, missing, still = call(
        cli,
        ("show_run", {"run": "20991231-000000-beef"}),
        ("approve", {"ref": "nonsense"}),
        ("approve", {"ref": f"{run_id}.9"}),
        ("runs", {"limit": "many"}),
        ("reject", {"ref": f"{run_id}.1"}),
        ("runs", {}),
    )
    assert unknown.is_error and "no run '20991231-000000-beef'" in text_of(unknown)
    assert bad_ref.is_error and "expected RUN.N" in text_of(bad_ref)
    assert no_approval.is_error and "has no approval 9" in text_of(no_approval)
    assert malformed.is_error and "limit" in text_of(malformed)
    assert missing.is_error and "reason" in text_of(missing)
    assert not still.is_error
    assert queued(cli, run_id) == []


# a step's program: an MCP client that starts `trestle mcp serve` (with the client's
# default environment, which drops the step's variables) and asks it to approve the
# run's own approval, writing what it was answered
SNEAK = """
    import os, sys
    import anyio
    from mcp import ClientSession, StdioServerParameters, stdio_client

    async def main() -> None:
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "trestle", "mcp", "serve", "--store", sys.argv[1]],
        )
        async with stdio_client(params) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            result = await s.call_tool("approve", {"ref": os.environ["TRESTLE_RUN_ID"] + ".1"})
            said = "".join(getattr(b, "text", "") for b in result.content)
            with open("sneak.out", "w") as out:
                out.write(("refused: " if result.is_error else "ok: ") + said)

    anyio.run(main)
"""


@pytest.mark.parametrize("sandbox", ["auto", "off"])
def test_a_server_a_step_starts_cannot_approve(cli: Cli, sandbox: str) -> None:
    """Sandboxed (the store and the key out of sight) and unconfined (both in reach:
    the refusal alone holds), the server refuses, and no request is queued."""
    cli.write("sneak.py", SNEAK)
    plan = textwrap.dedent(DEPLOY) + (
        f"  - id: sneaky\n    run: {sys.executable} sneak.py {cli.store}\n"
    )
    cli.write("plan.yaml", plan)
    ran = cli("run", "plan.yaml", "--sandbox", sandbox)
    assert ran.returncode == 3, ran.stdout + ran.stderr
    run_id = ran.stdout.split()[1]
    said = " ".join((cli.dir / "sneak.out").read_text().split())
    assert said.startswith("refused: "), said
    assert "decisions cannot be made from inside a running step: its ancestor process" in said
    assert queued(cli, run_id) == []
    assert events(cli, run_id, "approval_decided") == []
    assert events(cli, run_id, "approval_refused") == []
    assert cli("resume", run_id).returncode == 3
    assert not (cli.dir / "deploys.log").exists()


def test_without_the_extra_it_names_the_install(cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "mcp.py").write_text("raise ImportError('no mcp here')\n")
    shown = cli(
        "mcp", "serve", PYTHONPATH=f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    )
    assert shown.returncode == 2
    assert 'pip install "trestle-runtime[mcp]"' in shown.stderr


def test_approve_similar_names_the_group_the_inbox_showed(cli: Cli) -> None:
    from test_inbox_groups import CONFIGS

    cli.write("plan.yaml", CONFIGS)
    started = cli("run", "plan.yaml")
    assert started.returncode == 3, started.stdout + started.stderr
    run_id = started.stdout.splitlines()[0].split()[1]
    [inbox] = call(cli, ("inbox", {"run": run_id}))
    assert inbox.structured_content is not None
    group = inbox.structured_content["cards"][0]["group"]
    ref = f"{run_id}.1"
    stale, done = call(
        cli,
        ("approve", {"ref": ref, "similar": True, "group": "g0000000000"}),
        ("approve", {"ref": ref, "similar": True, "group": group}),
    )
    assert stale.is_error and "the group changed since 'g0000000000' was shown" in text_of(stale)
    assert not done.is_error, text_of(done)
    assert cli("resume", run_id).returncode == 3  # the release still asks
    assert [c["step"] for c in cli.json("inbox", "--run", run_id)] == ["release"]
