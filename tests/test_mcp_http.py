"""A streamable HTTP MCP server in an agent run: tests/mcp_server.py serving streamable
HTTP on 127.0.0.1 in its own process, outside every sandbox, reached by the driver. Its
tools go through the same gate as a stdio server's: a read-only one runs at once, a
destructive one waits for a human, and the server's own log of effects says what ran."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_helpers import drive, sample_workspace
from test_mcp_tools import SERVER, effects, ended, mcp, run
from trestle.core.records.mcp import McpServer
from trestle.lifecycle.approvals import inbox, submit_decision
from trestle.lifecycle.runs import load_state
from trestle.store import SqliteStore

PATIENCE = 20.0  # seconds the server may take to listen


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[McpServer, Path]]:
    """The server listening on a loopback port, and the directory it runs (and logs) in."""
    with serving(tmp_path) as found:
        yield found


@contextlib.contextmanager
def serving(tmp_path: Path, *flags: str) -> Iterator[tuple[McpServer, Path]]:
    home = tmp_path / "server"
    home.mkdir()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, SERVER, "--http", str(port), *flags],
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + PATIENCE
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the HTTP server never listened"
                time.sleep(0.1)
        yield McpServer(name="web", url=f"http://127.0.0.1:{port}/mcp", timeout=10), home
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()


def test_an_http_servers_read_runs_and_its_destructive_tool_waits_for_approval(
    tmp_path: Path, served: tuple[McpServer, Path]
) -> None:
    server, home = served
    store = SqliteStore(tmp_path / "runs.db")
    workspace = sample_workspace(tmp_path)
    run_id, events, model = run(
        store,
        workspace,
        mcp("web__read_note", name="a", call_id="r"),
        mcp("web__delete_note", name="old", call_id="d"),
        server=server,
    )
    (read,) = ended(events, "web__read_note")
    assert read.ok and read.content == "note a: hello"
    assert load_state(store, run_id).finished == "needs_human"
    assert effects(home) == ['read_note {"name": "a"}']  # the delete did not reach it
    assert effects(workspace) == []  # the server runs outside the workspace and sandbox
    (card,) = inbox(store, run_id=run_id)
    text = json.dumps(card.model_dump(mode="json"))
    assert "web__delete_note" in text and "server 'web'" in text and "destructive" in text

    submit_decision(store, card.ref, "approve")
    events = drive(store, run_id, model)
    assert load_state(store, run_id).finished == "succeeded"
    assert effects(home) == ['read_note {"name": "a"}', 'delete_note {"name": "old"}']
    (deleted,) = ended(events, "web__delete_note")
    assert deleted.ok and deleted.content == "deleted old"


@pytest.mark.parametrize("flags", [("--json",), ("--json", "--gzip")], ids=["plain", "gzip"])
def test_an_answer_past_the_limit_is_not_read_further(tmp_path: Path, flags: tuple[str]) -> None:
    # a JSON answer was read whole, however long; it is read up to 6 bytes a character
    # of max_result and 1 MiB (1,054,576 here), then the call fails naming the limit.
    # Counted decoded: a gzipped answer of 1.5 GB came as 1.5 MB and was read whole
    with serving(tmp_path, *flags) as (server, _):
        small = server.model_copy(update={"max_result": 1_000})
        store = SqliteStore(tmp_path / "runs.db")
        workspace = sample_workspace(tmp_path)
        run_id, events, _ = run(
            store,
            workspace,
            mcp("web__read_note", name="a", call_id="r"),
            mcp("web__huge", size=3_000_000, call_id="h"),
            server=small,
        )
    (read,) = ended(events, "web__read_note")
    assert read.ok and "note a: hello" in read.content
    (huge,) = ended(events, "web__huge")
    said = " ".join(huge.content.split())
    assert not huge.ok
    assert "MCP server 'web' answered with more than 1,054,576 bytes" in said
    assert load_state(store, run_id).steps["understand"] is not None
