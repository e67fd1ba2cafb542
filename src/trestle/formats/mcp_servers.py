"""The MCP servers an operator declares: ``[mcp.servers.NAME]`` tables in ``trestle.toml``,
and ``trestle agent --mcp NAME=COMMAND`` / ``--mcp NAME=URL`` on the command line.

Both become :class:`~trestle.core.records.mcp.McpServer` records, recorded with the run
(docs/mcp.md). A table in the file is read from the same read of the file as its policy,
so it is obeyed only where the policy is: once a human accepted the file
(:mod:`trestle.trust.policy_trust`). A step can write a ``trestle.toml``; a server it
declared there must not start before a human has read it.

::

    [mcp.servers.git]
    command = "uvx"
    args = ["mcp-server-git", "--repository", "."]
    env = ["GITHUB_TOKEN"]    # names of the driver's variables the server is given
    timeout = 30              # seconds per call
    tier = "confirm"          # every call of this server, as an operator rule would

    [mcp.servers.docs]
    url = "http://127.0.0.1:8000/mcp"

Problems are :class:`~trestle.core.errors.ConfigError`, one line each, naming the file,
the line of the server's table and the field::

    /w/trestle.toml:4: mcp.servers.git.args: must be a list of strings
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any, get_args

from pydantic import ValidationError

from trestle.core.errors import ConfigError
from trestle.core.field_problems import did_you_mean
from trestle.core.policy import Policy, Rule, Tier
from trestle.core.records.mcp import SERVER_NAME, McpServer

TABLE = "mcp"
FIELDS = ("command", "args", "url", "env", "timeout", "start_timeout", "max_result", "tier")
NUMBERS = ("timeout", "start_timeout", "max_result")


def file_servers(
    document: Mapping[str, Any], text: str, source: str
) -> tuple[tuple[McpServer, ...], tuple[Rule, ...]]:
    """The servers a file's ``[mcp.servers.*]`` tables declare, and the operator rules
    their ``tier`` fields make (one per server that sets one, tagged ``mcp:NAME``).

    Raises:
        ConfigError: a table or field is malformed, naming the file, line and field.
    """
    table = document.get(TABLE)
    if table is None:
        return (), ()
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: {TABLE}: must be a table ([mcp.servers.NAME])")
    unknown = sorted(set(table) - {"servers"})
    if unknown:
        raise ConfigError(
            f"{source}: {TABLE}.{unknown[0]}: unknown field (servers are declared as "
            "[mcp.servers.NAME])"
        )
    servers = table.get("servers", {})
    if not isinstance(servers, dict):
        raise ConfigError(f"{source}: mcp.servers: must be tables ([mcp.servers.NAME])")
    found: list[McpServer] = []
    rules: list[Rule] = []
    for name, entry in servers.items():
        where = f"{source}{_line(text, name)}: mcp.servers.{name}"
        server, tier = _server(name, entry, where)
        found.append(server)
        if tier is not None:
            rules.append(Rule(name=f"mcp.servers.{name}.tier", tier=tier, tags=(server.tag,)))
    return tuple(found), tuple(rules)


def with_server_rules(policy: Policy, rules: Sequence[Rule]) -> Policy:
    """``policy`` with the servers' tier rules after its own: a rule the operator wrote
    for one tool (``mcp:git/git_push``) is met first and wins."""
    if not rules:
        return policy
    return policy.model_copy(update={"rules": (*policy.rules, *rules)})


def option_server(value: str) -> McpServer:
    """One ``--mcp NAME=COMMAND`` or ``--mcp NAME=URL``: a value starting with
    ``http://`` or ``https://`` is a streamable HTTP server's URL, anything else a
    command, split as a shell would split it (quotes keep spaces).

    Raises:
        ConfigError: the value is malformed, naming the option and why.
    """
    name, sep, rest = value.partition("=")
    name, rest = name.strip(), rest.strip()
    if not sep or not name or not rest:
        raise ConfigError(
            f"--mcp {value!r}: give NAME=COMMAND (a stdio server) or NAME=URL (streamable HTTP)"
        )
    if not SERVER_NAME.fullmatch(name):
        raise ConfigError(f"--mcp {value!r}: {_bad_name(name)}")
    if re.match(r"https?://", rest):
        return McpServer(name=name, url=rest)
    try:
        command = tuple(shlex.split(rest))
    except ValueError as exc:
        raise ConfigError(f"--mcp {value!r}: the command does not parse: {exc}") from None
    return McpServer(name=name, command=command)


def merged(
    declared: Sequence[McpServer], given: Sequence[McpServer], source: str | None
) -> tuple[McpServer, ...]:
    """The file's servers then the command line's; one name declared twice is refused."""
    seen: dict[str, str] = {s.name: f"in {source}" for s in declared}
    for server in given:
        if server.name in seen:
            raise ConfigError(
                f"--mcp {server.name}=...: a server named {server.name!r} is already "
                f"declared {seen[server.name]}; give each server its own name"
            )
        seen[server.name] = "by another --mcp"
    return (*declared, *given)


def _server(name: str, entry: Any, where: str) -> tuple[McpServer, Tier | None]:
    if not SERVER_NAME.fullmatch(name):
        raise ConfigError(f"{where}: {_bad_name(name)}")
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a table ([mcp.servers.{name}]), not a value")
    for key in entry:
        if key not in FIELDS:
            raise ConfigError(f"{where}.{key}: unknown field{did_you_mean(key, FIELDS)}")
    command, args, url = entry.get("command"), entry.get("args", []), entry.get("url")
    if command is None and url is None:
        raise ConfigError(
            f'{where}: needs command = "PROGRAM" (a stdio server) or url = "http..." '
            "(streamable HTTP)"
        )
    if command is not None and url is not None:
        raise ConfigError(f"{where}: give command or url, not both")
    if command is not None and (not isinstance(command, str) or not command.strip()):
        raise ConfigError(f"{where}.command: must be a program's name or path (a string)")
    if not _strings(args):
        raise ConfigError(f"{where}.args: must be a list of strings")
    if url is not None and "args" in entry:
        raise ConfigError(f"{where}.args: an HTTP server (url) takes no arguments")
    env = entry.get("env", [])
    if not _strings(env) or not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", e) for e in env):
        raise ConfigError(
            f"{where}.env: must be a list of variable names (the driver passes their "
            'values to the server: env = ["GITHUB_TOKEN"]); values are not written here'
        )
    tier = entry.get("tier")
    if tier is not None and tier not in get_args(Tier):
        raise ConfigError(f"{where}.tier: must be one of {', '.join(get_args(Tier))}")
    fields: dict[str, Any] = {"name": name, "env": tuple(env)}
    if command is not None:
        fields["command"] = (command, *args)
    else:
        fields["url"] = url
    for key in NUMBERS:
        if key in entry:
            if isinstance(entry[key], bool) or not isinstance(entry[key], int | float):
                raise ConfigError(f"{where}.{key}: must be a number")
            fields[key] = entry[key]
    try:
        return McpServer.model_validate(fields), tier
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{where}{'.' + field if field else ''}: {message}") from None


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _bad_name(name: str) -> str:
    return (
        f"{name!r} is not a server name: 1-24 letters, digits or '-' (its tools are "
        f"offered as NAME__TOOL)"
    )


def _line(text: str, name: str) -> str:
    """``:N`` for the line of ``[mcp.servers.NAME]`` in ``text``; '' when the table is
    written another way (inline, dotted keys)."""
    quoted = re.escape(name)
    header = re.compile(rf"^[ \t]*\[\s*mcp\s*\.\s*servers\s*\.\s*[\"']?{quoted}[\"']?\s*\]", re.M)
    match = header.search(text)
    if match is None:
        return ""
    return f":{text.count(chr(10), 0, match.start()) + 1}"
