"""Declaring MCP servers where users declare things: ``[mcp.servers.NAME]`` in
``trestle.toml`` (obeyed only once the file is accepted) and ``trestle agent --mcp``.

The CLI runs as a real subprocess against a real store, the model is the loopback
OpenAI-compatible server, and the MCP server is tests/mcp_server.py in the sandbox."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from test_agent_cli import CALC_TESTS, FINDINGS, OPENAI_MODEL, PLAN, Cli, call, lines_starting
from test_mcp_tools import SERVER
from trestle.core.errors import ConfigError, PolicyNotAcceptedError
from trestle.core.policy import ActionFacts, classify
from trestle.core.records.mcp import McpServer
from trestle.formats.mcp_servers import option_server
from trestle.formats.policyfile import read_policy_file
from trestle.models import ToolCall
from trestle.testing import OpenAIServer
from trestle.trust.policy_trust import trusted_settings

DECLARED = f"""\
[policy]
confidence_threshold = 0.5

[mcp.servers.notes]
command = {json.dumps(sys.executable)}
args = [{json.dumps(SERVER)}]
env = ["NOTES_TOKEN"]
timeout = 5
tier = "confirm"

[mcp.servers.docs]
url = "http://127.0.0.1:8000/mcp"
"""


def toml(where: Path, text: str) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    path = where / "trestle.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_file_declares_stdio_and_http_servers_and_a_tier_per_server(tmp_path: Path) -> None:
    path = toml(tmp_path / "ws", DECLARED)
    digest = read_policy_file(path).sha256
    settings = trusted_settings(tmp_path / "ws", accept_sha256=digest)
    notes, docs = settings.mcp
    assert notes == McpServer(
        name="notes", command=(sys.executable, SERVER), env=("NOTES_TOKEN",), timeout=5
    )
    assert docs == McpServer(name="docs", url="http://127.0.0.1:8000/mcp")
    # the tier is an operator rule on the server's tag, after the file's own rules
    assert settings.policy is not None
    facts = ActionFacts(nature="read", name="notes__read_note", tags=("mcp", "mcp:notes"))
    decided = classify(facts, plan=None, operator=settings.policy, run_id="r", action_key="k")
    assert (decided.tier, decided.source) == ("confirm", "operator.rules[0]")
    assert "mcp.servers.notes.tier" in decided.reason


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ('[mcp.servers.git]\nargs = ["x"]\n', ':1: mcp.servers.git: needs command = "PROGRAM"'),
        ('\n[mcp.servers.git]\ncommand = "x"\nurl = "http://h"\n', ":2: mcp.servers.git: give"),
        ('[mcp.servers.git]\ncommand = "x"\nargs = "y"\n', ":1: mcp.servers.git.args: must be a"),
        ('[mcp.servers.git]\ncommnd = "x"\n', "git.commnd: unknown field (did you mean 'command'"),
        ('[mcp.servers.git]\ncommand = "x"\nenv = {A = "1"}\n', "git.env: must be a list of var"),
        ('[mcp.servers.git]\nurl = "ftp://h"\n', "mcp.servers.git: MCP server 'git': url must"),
        ('[mcp.servers.git]\ncommand = "x"\ntimeout = -1\n', "git.timeout: Input should be gr"),
        ('[mcp.servers.git]\ncommand = "x"\ntier = "never"\n', "git.tier: must be one of auto"),
        ('[mcp.servers."a b"]\ncommand = "x"\n', ":1: mcp.servers.a b: 'a b' is not a server"),
        ("[mcp]\nserver = 1\n", "mcp.server: unknown field"),
    ],
)
def test_a_malformed_declaration_names_the_file_line_and_field(
    tmp_path: Path, body: str, said: str
) -> None:
    path = toml(tmp_path / "ws", body)
    with pytest.raises(ConfigError) as raised:  # refused as bad before any acceptance
        trusted_settings(tmp_path / "ws")
    assert not isinstance(raised.value, PolicyNotAcceptedError)
    assert str(raised.value).startswith(str(path)), raised.value
    assert said in str(raised.value)


def test_the_option_takes_a_command_or_a_url() -> None:
    assert option_server("git=uvx mcp-server-git --repository '.'").command == (
        "uvx",
        "mcp-server-git",
        "--repository",
        ".",
    )
    assert option_server("docs=https://example.org/mcp").url == "https://example.org/mcp"
    for bad, said in [
        ("git", "give NAME=COMMAND"),
        ("a_b=x", "is not a server name"),
        ("git=x 'y", "the command does not parse"),
    ]:
        with pytest.raises(ConfigError, match=said):
            option_server(bad)


# --- the CLI -------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, _own_decision_key: Path) -> Cli:
    return Cli(tmp_path, tmp_path / "trestle.db", _own_decision_key)


def calc_repo(where: Path) -> Path:
    where.mkdir()
    (where / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (where / "test_calc.py").write_text(
        "import unittest\n\nfrom calc import add\n\n\n"
        "class AddTest(unittest.TestCase):\n"
        "    def test_add(self) -> None:\n"
        "        self.assertEqual(add(2, 3), 5)\n"
    )
    return where


def agent(cli: Cli, repo: Path, server: OpenAIServer, *extra: str) -> list[str]:
    return [
        "agent",
        "make add() return the sum",
        "--repo",
        str(repo),
        "--model",
        f"openai:{OPENAI_MODEL}",
        "--base-url",
        server.base_url,
        "--test-command",
        CALC_TESTS,
        "--auto-plan",
        "--no-live",
        "--no-prompt",
        *extra,
    ]


PLANTED_CMD = f"touch server-started; exec {sys.executable} {SERVER}"
PLANTED = f"""\
[mcp.servers.notes]
command = "/bin/sh"
args = ["-c", {json.dumps(PLANTED_CMD)}]

[policy.sandbox]
read = [{json.dumps(str(Path(SERVER).parent))}]
"""


def test_a_planted_server_never_starts_until_the_file_is_accepted(cli: Cli) -> None:
    repo = calc_repo(cli.dir / "calc")
    toml(repo, PLANTED)  # as a step of an earlier run could have written it
    with OpenAIServer(model=OPENAI_MODEL) as server:
        refused = cli(*agent(cli, repo, server), OPENAI_API_KEY="x")
        assert refused.returncode == 9, refused.stdout + refused.stderr  # not accepted
        assert "a policy file no one has accepted" in refused.stderr
        assert not (repo / "server-started").exists()
        assert not cli.store.exists() or cli.json("runs") == []
        assert server.requests == []

        digest = read_policy_file(repo / "trestle.toml").sha256
        read = ToolCall(id="r", name="notes__read_note", arguments='{"name": "a"}')
        server.queue_tool_calls(read)
        server.queue_text(json.dumps(FINDINGS))
        server.queue_text(json.dumps(PLAN))
        server.queue_tool_calls(call("e", "edit_file", path="calc.py", old="a - b", new="a + b"))
        server.queue_tool_calls(call("f", "finish", summary="add adds"))
        more = f"more={sys.executable} {SERVER}"
        ran = cli(
            *agent(cli, repo, server, "--accept-policy", digest, "--mcp", more),
            OPENAI_API_KEY="x",
        )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert lines_starting(ran.stdout, "finished") == ["finished succeeded"]
    assert (repo / "server-started").exists()
    assert (repo / "calls.log").read_text() == 'read_note {"name": "a"}\n'
    [row] = cli.json("runs")
    [created] = [e for e in cli.events(row["run_id"]) if e["kind"] == "run_created"]
    servers = created["agent"]["mcp"]  # recorded with the run: a resume uses these
    assert [(s["name"], s["command"][-1]) for s in servers] == [
        ("notes", PLANTED_CMD),
        ("more", SERVER),
    ]


def test_the_option_is_checked_before_anything_is_recorded(cli: Cli, tmp_path: Path) -> None:
    repo = calc_repo(cli.dir / "calc")
    toml(repo, PLANTED)
    digest = read_policy_file(repo / "trestle.toml").sha256
    with OpenAIServer(model=OPENAI_MODEL) as server:
        for extra, said in [
            (("--mcp", "nothing"), "--mcp 'nothing': give NAME=COMMAND"),
            (("--mcp", "x.y=cmd"), "'x.y' is not a server name"),
            (
                ("--accept-policy", digest, "--mcp", "notes=cmd"),
                f"a server named 'notes' is already declared in {repo.resolve()}/trestle.toml",
            ),
        ]:
            result = cli(*agent(cli, repo, server, *extra), OPENAI_API_KEY="x")
            assert result.returncode == 2, result.stdout + result.stderr
            assert said in " ".join(result.stderr.split()), result.stderr
    assert not cli.store.exists() or cli.json("runs") == []
    assert not (repo / "server-started").exists()
