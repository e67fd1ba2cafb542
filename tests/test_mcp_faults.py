"""Bad MCP servers in agent runs (tests/mcp_server.py, real processes in the sandbox):
one that never starts, hangs, answers malformed or huge results, changes its tools
mid-step, or dies in a call: a clear error, nothing run or recorded twice; and no
server's transport left for the collector to close after its loop (a warning on
stderr): such a warning fails the test it comes from."""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_helpers import drive, sample_workspace
from test_mcp_tools import NOTES, SERVER, effects, ended, mcp, run
from trestle.core.policy import Policy, Rule
from trestle.core.records.mcp import McpServer
from trestle.lifecycle.approvals import inbox, submit_decision
from trestle.lifecycle.runs import load_state
from trestle.store import SqliteStore
from trestle.tools.mcp_client import McpConnection, McpStartError

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(autouse=True)
def _collected() -> Iterator[None]:
    """What a test left to the collector is collected in its own teardown, so that a
    failure to close it fails that test, not whichever runs next."""
    yield
    gc.collect()


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "runs.db")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return sample_workspace(tmp_path)


# --- bad servers --------------------------------------------------------------------


def test_a_server_that_never_starts_fails_the_attempt_naming_it(
    store: SqliteStore, workspace: Path
) -> None:
    broken = NOTES.model_copy(update={"command": (sys.executable, SERVER, "--fail-start")})
    run_id, _, _ = run(store, workspace, server=broken)
    state = load_state(store, run_id)
    assert state.finished != "succeeded"
    reason = state.steps["understand"].reason or ""
    assert "MCP server 'notes' did not start" in reason
    assert "cannot open its database" in reason


# a server that answers as JSON-RPC asks, with a tool whose schema nests 150 levels:
# deeper than the SDK's parser reads, which drops the answer
NESTED = """\
import json, sys
schema = {"type": "object"}
for _ in range(150):
    schema = {"type": "object", "properties": {"x": schema}}
for line in sys.stdin:
    asked = json.loads(line)
    if "id" not in asked:
        continue
    result = {"tools": [{"name": "deep", "inputSchema": schema}]}
    if asked["method"] == "initialize":
        result = {"protocolVersion": asked["params"]["protocolVersion"], "capabilities": {},
                  "serverInfo": {"name": "deep", "version": "1"}}
    print(json.dumps({"jsonrpc": "2.0", "id": asked["id"], "result": result}), flush=True)
"""


def test_a_server_whose_answer_cannot_be_read_is_said_so_not_only_slow(workspace: Path) -> None:
    import asyncio

    deep = McpServer(name="deep", command=(sys.executable, "-c", NESTED), start_timeout=2)
    connection = McpConnection(deep, None, workspace)

    async def started() -> str:
        try:
            await connection.start()
        except McpStartError as exc:
            return str(exc)
        finally:
            await connection.aclose()
        return "started"

    said = asyncio.run(started())
    assert said.startswith("MCP server 'deep' did not start within 2s; a message it sent ")
    assert "could not be read: Invalid JSON: recursion limit exceeded at line 1" in said


def test_a_hung_call_times_out_and_the_server_starts_again(
    store: SqliteStore, workspace: Path
) -> None:
    quick = NOTES.model_copy(update={"timeout": 1.5})
    run_id, events, _ = run(
        store,
        workspace,
        mcp("notes__hang", call_id="h"),
        mcp("notes__read_note", name="a", call_id="r"),
        server=quick,
    )
    assert load_state(store, run_id).finished == "succeeded"
    (hung,) = ended(events, "notes__hang")
    assert not hung.ok and "did not answer within 1.5s" in hung.content
    (after,) = ended(events, "notes__read_note")
    assert after.ok
    # a read is idempotent: the hung call was tried once more on a fresh server
    assert effects(workspace) == ["hang {}", "hang {}", 'read_note {"name": "a"}']


def test_malformed_and_huge_results_are_clear_errors(store: SqliteStore, workspace: Path) -> None:
    run_id, events, _ = run(
        store,
        workspace,
        mcp("notes__malformed", call_id="m"),
        mcp("notes__huge", size=2_000_000, call_id="h"),
        mcp("notes__huge", size=20_000, call_id="s"),
    )
    assert load_state(store, run_id).finished == "succeeded"
    (bad,) = ended(events, "notes__malformed")
    # the SDK drops a response that is not a tool result; the call's real answer counts
    assert bad.content == "late" or "MCP server 'notes' answered with an error" in bad.content
    big, small = ended(events, "notes__huge")
    assert not big.ok and "more than the 1,000,000 accepted" in big.content
    assert (small.ok and "characters cut" in small.content) or len(small.content) < 20_000
    assert effects(workspace).count("malformed {}") == 1


def test_a_line_past_the_limit_stops_the_server_and_the_call_fails_naming_it(
    store: SqliteStore, workspace: Path
) -> None:
    # the SDK's own reader would hold the whole line, joining its chunks; here the
    # server is stopped past 6 bytes a character of max_result and 1 MiB (1,054,576)
    small = NOTES.model_copy(update={"max_result": 1_000, "timeout": 10})
    run_id, events, _ = run(
        store,
        workspace,
        mcp("notes__read_note", name="a", call_id="r"),
        mcp("notes__endless", size=4_000_000, call_id="e"),
        server=small,
    )
    (endless,) = ended(events, "notes__endless")
    assert not endless.ok
    said = " ".join(endless.content.split())
    assert "MCP server 'notes' wrote a line of more than 1,054,576 bytes" in said
    assert "max_result, 1,000" in said and "was stopped during the call" in said
    state = load_state(store, run_id)  # what was recorded before stays readable
    (read,) = ended(events, "notes__read_note")
    assert read.ok and "note a: hello" in read.content
    assert state.steps["understand"] is not None


def test_a_server_flooding_its_stderr_in_a_call_is_stopped_naming_the_volume(
    store: SqliteStore, workspace: Path
) -> None:
    # the driver read (and threw away) a server's stderr for as long as it wrote, at a
    # core's worth of CPU; past 64 MiB in one start the server is ended
    run_id, events, _ = run(
        store,
        workspace,
        mcp("notes__read_note", name="a", call_id="r"),
        mcp("notes__chatter", call_id="c"),
        server=NOTES.model_copy(update={"timeout": 60}),
    )
    (chatter,) = ended(events, "notes__chatter")
    assert not chatter.ok
    said = " ".join(chatter.content.split())
    assert "MCP server 'notes' wrote more than 64 MiB (67,108,864 bytes) on its stderr" in said
    assert "was stopped during the call" in said
    (read,) = ended(events, "notes__read_note")  # what was recorded before stays
    assert read.ok and "note a: hello" in read.content
    assert load_state(store, run_id).steps["understand"] is not None
    assert effects(workspace) == ['read_note {"name": "a"}', "chatter {}"]


def test_a_server_gone_between_calls_is_started_afresh_for_the_next(workspace: Path) -> None:
    # ended past 64 MiB of stderr after its answer, before the next call: that call was
    # told its outcome was unknown (the server "stopped during the call"), though it
    # was never sent; it goes to a fresh server now. Unsandboxed: under its keeper
    import asyncio

    from trestle.execution.sandbox import choose

    async def calls() -> tuple[str, bool, str, str]:
        connection = McpConnection(NOTES, choose("off"), workspace)
        try:
            await connection.start()
            first = await connection.call("chatter_after", {"seconds": 0.2})
            for _ in range(1000):  # until its end is seen (not a measure of time)
                if connection._dead.is_set():
                    break
                await asyncio.sleep(0.01)
            gone = connection._dead.is_set()
            second = await connection.call("add_note", {"name": "b"})
        finally:
            await connection.aclose()
        return first.ending, gone, second.ending, second.text

    first, gone, second, text = asyncio.run(calls())
    assert (first, gone) == ("result", True)
    assert (second, text) == ("result", "added b")
    assert effects(workspace) == ['chatter_after {"seconds": 0.2}', 'add_note {"name": "b"}']


STDERR_FLOOD = """
import asyncio, json, resource, sys
from trestle.core.records.mcp import McpServer
from trestle.tools.mcp_client import McpConnection, McpStartError

server, workspace = sys.argv[1], sys.argv[2]

async def failed(size):
    flood = f"head -c {size} /dev/zero | tr '\\\\0' e >&2; echo '. the end' >&2"
    command = ("sh", "-c", f"{flood}; exec {sys.executable} {server} --fail-start")
    notes = McpServer(name="notes", command=command, start_timeout=60)
    connection = McpConnection(notes, None, __import__("pathlib").Path(workspace))
    try:
        await connection.start()
    except McpStartError as exc:
        return str(exc)
    finally:
        await connection.aclose()

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

asyncio.run(failed(1000))  # everything imported, the peak it sets
before = peak()
said = asyncio.run(failed(60_000_000))
print(json.dumps([peak() - before, said[-300:]]))
"""


def test_a_server_flooding_its_stderr_is_quoted_by_its_end_only(workspace: Path) -> None:
    # its stderr was kept whole in a file and read whole into the driver's memory to
    # quote its last lines; only its end is kept now, in memory
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", STDERR_FLOOD, SERVER, str(workspace)],
        capture_output=True,
        text=True,
        check=True,
    )
    grown, said = json.loads(done.stdout)
    assert "cannot open its database" in said
    # 60 MB of stderr, under the 64 MiB read in one start (200 MB grew it by 386 MB)
    assert grown < 50_000_000


def test_a_server_whose_stderr_outlives_it_leaves_no_pipe_open(tmp_path: Path) -> None:
    # a process in a session of its own (no keeper or sandbox ends it here) holds the
    # server's stderr after the server is stopped, so the driver stops waiting for that
    # pipe's end; its transport was left to the collector, which closed it after the
    # loop had closed: "Event loop is closed", reported and otherwise lost
    import asyncio
    import os
    import signal

    from trestle.tools.mcp_stdio import StderrTail, stdio_streams

    held = tmp_path / "held"
    server = f"setsid sleep 60 & echo $! > {held}; exec cat > /dev/null"

    async def started_and_stopped() -> None:
        async with stdio_streams(
            ["/bin/sh", "-c", server],
            env=dict(os.environ),
            cwd=str(tmp_path),
            errlog=StderrTail(100),
            limit=1 << 20,
            on_overflow=lambda _: None,
            on_flood=lambda _: None,
            on_end=lambda: None,
        ):
            for _ in range(1000):  # until the holder is started (not a measure of time)
                if held.exists() and held.read_text().strip():
                    break
                await asyncio.sleep(0.01)

    reported: list[object] = []
    before, sys.unraisablehook = sys.unraisablehook, reported.append
    try:
        asyncio.run(started_and_stopped())
        gc.collect()
    finally:
        sys.unraisablehook = before
        os.kill(int(held.read_text()), signal.SIGKILL)
    assert reported == []


def test_a_tool_list_changed_mid_step_is_refused_clearly(
    store: SqliteStore, workspace: Path
) -> None:
    run_id, events, _ = run(
        store,
        workspace,
        mcp("notes__reshape", call_id="x"),
        mcp("notes__read_note", name="a", call_id="r"),
        mcp("notes__add_note", name="b", call_id="w"),
    )
    assert load_state(store, run_id).finished == "succeeded"
    (gone,) = ended(events, "notes__read_note")
    assert "no longer offers 'read_note'" in gone.content
    (changed,) = ended(events, "notes__add_note")
    assert "changed 'add_note'" in changed.content
    assert effects(workspace) == ["reshape {}"]


def test_a_destructive_call_the_server_dies_in_goes_to_a_human(
    store: SqliteStore, workspace: Path
) -> None:
    (workspace / "die").write_text("")
    run_id, _, model = run(store, workspace, mcp("notes__delete_note", name="x"))
    state = load_state(store, run_id)
    assert state.finished == "needs_human"
    first, second = inbox(store, run_id=run_id)[0], None
    submit_decision(store, first.ref, "approve")  # the call itself
    drive(store, run_id, model)
    assert effects(workspace) == ['delete_note {"name": "x"}']  # it died after its effect
    (card,) = inbox(store, run_id=run_id)
    text = json.dumps(card.model_dump(mode="json"))
    assert "unknown_outcome" in text and "exited during the call" in text
    (workspace / "die").unlink()
    submit_decision(store, card.ref, "approve")
    events = drive(store, run_id, model)
    assert load_state(store, run_id).finished == "succeeded"
    assert effects(workspace) == ['delete_note {"name": "x"}']  # never run twice
    (told,) = ended(events, "notes__delete_note")
    assert "was asked and let the step go on" in told.content
    assert second is None


def test_an_idempotent_call_the_server_dies_in_runs_again(
    store: SqliteStore, workspace: Path
) -> None:
    (workspace / "die-once").write_text("")
    allow = Policy(rules=(Rule(name="flags", tier="log", tags=("mcp:notes/set_flag",)),))
    run_id, events, _ = run(store, workspace, mcp("notes__set_flag", value="on"), operator=allow)
    assert load_state(store, run_id).finished == "succeeded"
    assert effects(workspace) == ['set_flag {"value": "on"}'] * 2
    (told,) = ended(events, "notes__set_flag")
    assert told.ok and "called again" in told.content
