"""A sandboxed command starts however long its sandbox's options are, and what still
has a limit is refused when the plan is loaded.

bubblewrap is handed its options (a mount for each ``sandbox.read`` entry) through a
descriptor (``--args``): on its command line, 388 entries of 2,677 characters passed
the kernel's 2 MiB and every start failed (``Argument list too long``). The command
holds neither that descriptor nor any other of the start's, and the driver lets go of
it once the sandbox is started. The lines naming entries left out go on the command's
text, whose limit is 128 KiB: past a few they are counted. A command, a step's
variables or a ``sandbox.read`` list past what can start is a plan error.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from test_boundary import driver_host, run_as_driver
from test_plan_errors import refused
from test_plan_input import trestle
from test_sandbox import _require_bwrap
from trestle.core.policy import SandboxPolicy
from trestle.core.records.mcp import McpServer
from trestle.execution.actions import run_shell
from trestle.execution.sandbox import Cell, choose
from trestle.formats.exec_limits import COMMAND_BYTES, READ_ENTRIES
from trestle.tools.mcp_client import McpConnection

READS = 420
# a directory about 2,700 characters deep: 420 entries under it are 2.3 MB of options
DEEP = "/".join(["d" * 50] * 52)
OPTIONS_FD = "memfd:trestle-bwrap-options"
SERVER = Path(__file__).with_name("mcp_server.py")


def _deep_reads(base: Path) -> list[str]:
    reads = [base / "reads" / DEEP / f"r{i}" for i in range(READS)]
    for read in reads:
        read.mkdir(parents=True)
    (reads[-1] / "found.txt").write_text("seen\n")
    return [str(read) for read in reads]


def _lay_out(base: Path) -> None:
    (base / "ws").mkdir()
    (base / "home").mkdir()
    reads = _deep_reads(base)
    command = f"cat {reads[-1]}/found.txt > seen.txt && ls /proc/self/fd > fds.txt"
    plan = {
        "goal": "a step shown hundreds of deep directories",
        "workspace": "ws",
        "policy": {"sandbox": {"read": reads}},
        "steps": [{"id": "look", "run": command}],
    }
    (base / "plan.yaml").write_text(yaml.safe_dump(plan))


@pytest.fixture(params=["root", "user"])
def host(request: pytest.FixtureRequest) -> Any:
    yield from driver_host(request.param, "trestle-argv-", _lay_out)


RUN = """
import json, subprocess, sys
from pathlib import Path

base = Path(sys.argv[1])
done = subprocess.run(
    [sys.executable, "-m", "trestle", "run", "plan.yaml", "--sandbox", "require"],
    cwd=base, capture_output=True, text=True, check=False,
)
ws = base / "ws"
read = lambda name: (ws / name).read_text() if (ws / name).exists() else None
print(json.dumps([done.returncode, read("seen.txt"), read("fds.txt"), done.stdout[-2000:]]))
"""


def test_a_plan_with_hundreds_of_deep_reads_runs_its_command(host: tuple[Path, int | None]) -> None:
    base, uid = host
    code, seen, fds, said = cast(list[Any], run_as_driver(base, uid, RUN, []))
    assert code == 0, said
    assert seen == "seen\n"
    # its standard three and the directory ls reads: not the options' descriptor
    assert fds.split() == ["0", "1", "2", "3"]


def test_the_driver_lets_go_of_the_options_once_the_sandbox_started(tmp_path: Path) -> None:
    _require_bwrap()
    ws = tmp_path / "ws"
    ws.mkdir()
    reads = _deep_reads(tmp_path)
    cell = Cell(choose("require", policy=SandboxPolicy(read=tuple(reads))), ws, "step")
    held: list[list[str]] = []

    def options_held(pid: int) -> None:  # told once the command's process is started
        held.append([t for t in _descriptors() if OPTIONS_FD in t])

    done = asyncio.run(
        run_shell(
            "ls /proc/self/fd",
            cwd=ws,
            env={"PATH": "/usr/bin:/bin"},
            timeout=60,
            cell=cell,
            on_spawn=options_held,
        )
    )
    assert done.status == "ok", done.output
    assert done.output.split() == ["0", "1", "2", "3"]
    # once per start: a first start is made again when a host socket it was to cover
    # went away meanwhile (another suite's, on a shared machine), and each lets go
    assert held and all(h == [] for h in held), held
    assert not [t for t in _descriptors() if OPTIONS_FD in t]


def _descriptors() -> list[str]:
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # the listing's own descriptor, closed since
            continue
    return targets


def test_hundreds_of_entries_left_out_are_counted_and_the_command_runs(tmp_path: Path) -> None:
    # every entry lies in a hidden directory: each is left out, and named on the
    # command's text before its own (all 420: 280 KB, past the kernel's 128 KiB)
    _require_bwrap()
    ws = tmp_path / "ws"
    ws.mkdir()
    reads = _deep_reads(tmp_path)
    policy = SandboxPolicy(read=tuple(reads))
    cell = Cell(choose("require", hidden=(tmp_path / "reads",), policy=policy), ws, "step")
    env = {"PATH": "/usr/bin:/bin"}
    done = asyncio.run(run_shell("echo ran", cwd=ws, env=env, timeout=60, cell=cell))
    assert done.status == "ok", done.output[-500:]
    lines = done.output.splitlines()
    assert lines[0].startswith(f"trestle: sandbox.read {reads[0]!r} is not shown")
    # the first few named (the output keeps their start and end), the rest counted
    counted = re.fullmatch(r"trestle: (\d+) more entries are not shown to this command", lines[-2])
    assert counted is not None, lines[-2]
    assert READS - 10 < int(counted[1]) < READS
    assert lines[-1] == "ran"


def test_what_no_command_could_start_with_is_a_plan_error(tmp_path: Path) -> None:
    plan = {
        "steps": [
            {"id": "long", "run": "true " + "x" * COMMAND_BYTES},
            {"id": "vars", "run": "true", "env": {"BLOB": "y" * 140_000}},
        ],
        "policy": {"sandbox": {"read": [f"/srv/d{i}" for i in range(READ_ENTRIES + 1)]}},
    }
    lines = refused(tmp_path, yaml.safe_dump(plan, sort_keys=False, width=10**7), "run")
    assert lines == [
        "plan.yaml:3: step 'long', field 'run': the command is 100,005 bytes, more than "
        "100,000 (the kernel starts a command with no argument past 131,072 bytes, and the "
        "sandbox puts lines of its own before it); put it in a script in the workspace "
        "and run that",
        "plan.yaml:7: step 'vars', field 'env.BLOB': the variable is 140,006 bytes with its "
        "name, more than the 131,072 the kernel starts a command with; pass it in a file the "
        "command reads",
        "plan.yaml:10: field 'policy.sandbox.read': 2,001 entries, more than the 2,000 a "
        "sandbox can show (bubblewrap takes 9,000 arguments, three for each); list their "
        "common parent directories instead",
    ]


def test_an_mcp_server_shown_hundreds_of_deep_reads_starts(tmp_path: Path) -> None:
    # a stdio server's sandbox is started as a command's is: its options by descriptor
    _require_bwrap()
    pytest.importorskip("mcp")
    ws = tmp_path / "ws"
    ws.mkdir()
    reads = _deep_reads(tmp_path)
    # 15 s beside the suite's other tests on two cores (Python and the mcp SDK starting
    # in a sandbox of hundreds of mounts), and once past 20: what is tested is that it
    # starts at all
    server = McpServer(
        name="notes", command=(sys.executable, str(SERVER)), timeout=60, start_timeout=60
    )
    sandbox = choose("require", policy=SandboxPolicy(read=tuple(reads)))
    connection = McpConnection(server, sandbox, ws)

    async def started() -> tuple[list[str], list[str]]:
        try:
            await connection.start()
            return sorted(connection.tools), [t for t in _descriptors() if OPTIONS_FD in t]
        finally:
            await connection.aclose()

    tools, held = asyncio.run(started())
    assert tools
    assert held == []


def test_an_operator_policy_with_too_many_reads_is_refused(tmp_path: Path) -> None:
    entries = ", ".join(f'"/srv/d{i}"' for i in range(READ_ENTRIES + 1))
    (tmp_path / "trestle.toml").write_text(f"[policy.sandbox]\nread = [{entries}]\n")
    (tmp_path / "plan.yaml").write_text("steps:\n  - id: a\n    run: 'true'\n")
    store = tmp_path / "t.db"
    done = trestle(tmp_path, "run", "plan.yaml", "--store", store)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        f"error: {tmp_path / 'trestle.toml'}:2: policy.sandbox.read: 2,001 entries, more "
        "than the 2,000 a sandbox can show (bubblewrap takes 9,000 arguments, three for "
        "each); list their common parent directories instead"
    ]
    assert not store.exists()
