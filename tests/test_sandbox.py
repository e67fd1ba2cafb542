"""The sandbox, attacked from inside: real ``trestle`` processes, real bubblewrap, real
SQLite stores, a real listening socket.

Each attack is a plan step doing what a hostile command would: read the approval key,
the store, the user's files or a parent's environment; write outside the workspace;
reach the network; approve its own successor; outlive its step. Each records what it
got in the workspace, and the test counts the attempts that worked. Without bubblewrap
(pointed at a missing binary, as on a machine without it) the run says so and a
confirm-tier command waits for the operator's explicit choice.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from test_approvals_cli import Cli, flat, run_id_of
from trestle.agent.toolgate import RunToolGate
from trestle.core.events import RunCreated
from trestle.core.plan import Plan, Step
from trestle.core.policy import ActionFacts
from trestle.core.state import RunState
from trestle.execution.sandbox import Sandbox, find_bwrap
from trestle.tools.base import GatedCall

SECRET = "5ec7e7c0ffee" * 5 + "5ec7"  # hex: it doubles as the approval key
TRESTLE = f"{sys.executable} -m trestle"


class HostCli(Cli):
    """The CLI with a home of its own holding secrets, a key and a model API key."""

    forked: ClassVar[bool] = False  # the driver under attack starts as users start it

    def env(self, **extra: str) -> dict[str, str]:
        home = self.dir.parent / "home"
        return super().env(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            TRESTLE_KEY_FILE=str(home / ".config" / "trestle" / "approval.key"),
            TRESTLE_IDENTITY_FILE=str(self.dir.parent / "keys" / "identity.key"),
            TRESTLE_DASHBOARD_ACCOUNTS=str(self.dir.parent / "keys" / "dashboard.sqlite"),
            OPENAI_API_KEY=f"sk-{SECRET}",
            **extra,
        )


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """Secrets a command must not reach: the user's files, the key, an outside dir."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text(SECRET)
    (home / ".config" / "trestle").mkdir(parents=True)
    (home / ".config" / "trestle" / "approval.key").write_text(SECRET)
    (tmp_path / "keys").mkdir()  # an approver's own key, kept apart from the config
    (tmp_path / "keys" / "identity.key").write_text(SECRET)
    # the dashboard's people's keys and password hashes, named elsewhere than the config
    (tmp_path / "keys" / "dashboard.sqlite").write_text(SECRET)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text(SECRET)
    return tmp_path


@pytest.fixture
def cli(host: Path) -> Cli:
    workspace = host / "ws"
    workspace.mkdir()
    return HostCli(dir=workspace, store=host / "store" / "trestle.db")


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def _attack(what: str, command: str) -> str:
    """A line of shell that appends ``GOT <what>`` to got.txt if ``command`` worked."""
    return f"({command}) >/dev/null 2>&1 && echo 'GOT {what}' >> got.txt; true"


def attacks(host: Path, store: Path, port: int) -> dict[str, str]:
    key = host / "home" / ".config" / "trestle" / "approval.key"
    return {
        "key": f"grep -q {SECRET} {key}",
        "store": f"test -s {store}",
        "store dir": f"ls {store.parent} | grep -q trestle.db",
        "ssh key": f"grep -q {SECRET} {host / 'home' / '.ssh' / 'id_ed25519'}",
        "outside file": f"grep -q {SECRET} {host / 'outside' / 'secret.txt'}",
        "outside write": f"echo x > {host / 'outside' / 'pwned'}",
        "model key in env": f"env | grep -q {SECRET}",
        "key variable in env": "env | grep -q TRESTLE_KEY_FILE",
        "identity key": f"grep -q {SECRET} {host / 'keys' / 'identity.key'}",
        "identity variable in env": "env | grep -q TRESTLE_IDENTITY_FILE",
        "dashboard accounts": f"grep -q {SECRET} {host / 'keys' / 'dashboard.sqlite'}",
        "accounts variable in env": "env | grep -q TRESTLE_DASHBOARD_ACCOUNTS",
        "parent environ": f"cat /proc/*/environ 2>/dev/null | grep -aq {SECRET}",
        "network": _connect(port),
        "approve": f"{TRESTLE} approve $TRESTLE_RUN_ID.1 --store {store}",
        "approve, env dropped": (
            f"env -u TRESTLE_STEP_ID -u TRESTLE_RUN_ID {TRESTLE} approve $TRESTLE_RUN_ID.1 "
            f"--store {store}"
        ),
    }


def _connect(port: int) -> str:
    code = f"import socket; socket.create_connection(('127.0.0.1', {port}), 2)"
    return f'{sys.executable} -c "{code}"'


def _plan(lines: dict[str, str], *, network: tuple[str, ...] = ()) -> str:
    probes = "\n".join(f"      {_attack(what, cmd)}" for what, cmd in lines.items())
    probes += "\n      echo ran > ran.txt"
    policy = f"policy: {{sandbox: {{network: {list(network)}}}}}\n" if network else ""
    return (
        f"goal: escape\n{policy}steps:\n"
        "  - id: probe\n"
        "    approval: auto\n"  # the author's word: no human sees it first
        "    run: |\n"
        f"{probes}\n"
        "  - id: push\n"  # asks its approval as the probe starts: the probe's target
        "    run: echo pushed >> pushed.txt\n"
        "    irreversible: true\n"
    )


def _require_bwrap() -> str:
    found, why = find_bwrap()
    assert found is not None, f"the sandbox tests need bubblewrap (make test installs it): {why}"
    return found


def test_every_attack_from_inside_a_step_fails_in_the_sandbox(
    cli: Cli, host: Path, listener: int
) -> None:
    _require_bwrap()
    tried = attacks(host, cli.store, listener)
    cli.write("plan.yaml", _plan(tried))
    started = cli("run", "plan.yaml")
    assert started.returncode == 3, started.stdout + started.stderr
    run_id = run_id_of(started)
    got = cli.lines("got.txt")
    assert got == [], f"{len(got)} of {len(tried)} attacks worked: {got}"
    assert (cli.dir / "ran.txt").read_text() == "ran\n"  # the step did run, confined
    # its irreversible successor still waits for a human
    [card] = cli.json("inbox", "--run", run_id)
    assert card["status"] == "pending"
    assert not (host / "outside" / "pwned").exists()
    assert "commands sandboxed (bubblewrap)" in started.stdout


def test_the_same_attacks_work_without_the_sandbox(cli: Cli, host: Path, listener: int) -> None:
    """The baseline: turned off, the attacks the sandbox stops do get through; this
    is what the test above would count on a machine without it."""
    tried = attacks(host, cli.store, listener)
    cli.write("plan.yaml", _plan(tried))
    started = cli("run", "plan.yaml", "--sandbox", "off")
    assert started.returncode == 3, started.stderr
    assert "WARNING: commands run NOT SANDBOXED: turned off by the operator" in flat(started.stderr)
    got = {line.removeprefix("GOT ") for line in cli.lines("got.txt")}
    print(f"without the sandbox {len(got)} of {len(tried)} attacks worked: {sorted(got)}")
    # approvals hold without the sandbox too (signed, refused from inside a step)
    assert {"key", "store", "ssh key", "outside file", "outside write", "network"} <= got
    assert "dashboard accounts" in got
    assert not {"approve", "approve, env dropped", "key variable in env"} & got
    assert "accounts variable in env" not in got


def test_the_network_is_open_only_to_what_the_policy_names(
    cli: Cli, host: Path, listener: int
) -> None:
    _require_bwrap()
    plan = _plan({"network": _connect(listener)}, network=("probe",))
    cli.write("plan.yaml", plan)
    assert cli("run", "plan.yaml").returncode == 3
    assert cli.lines("got.txt") == ["GOT network"]


def test_tools_in_a_private_directory_run_and_what_is_hidden_among_them_stays_hidden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A virtualenv under /tmp (a clone there) is on PATH: the sandbox's private /tmp
    must not take it away, nor show the store kept inside it."""
    bwrap = _require_bwrap()
    with tempfile.TemporaryDirectory(dir="/tmp") as scratch:
        venv = Path(scratch) / "venv"
        (venv / "bin").mkdir(parents=True)
        hello = venv / "bin" / "hello"
        hello.write_text("#!/bin/sh\necho hello\n")
        hello.chmod(0o755)
        store = venv / "store"
        store.mkdir()
        (store / "trestle.db").write_text(SECRET)
        workspace = Path(scratch) / "ws"
        workspace.mkdir()
        source = Path(scratch) / "project" / "src"  # installed editable: on sys.path
        source.mkdir(parents=True)
        (source / "mod.py").write_text("print('imported')\n")
        monkeypatch.syspath_prepend(str(source))
        monkeypatch.setenv("PATH", f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
        sandbox = Sandbox(bwrap, hidden=(store,))
        command = f"hello; cat {store / 'trestle.db'}; ls {store}; cat {source / 'mod.py'}"
        argv = sandbox.argv(command, cwd=workspace, workspace=workspace, name="step")
        done = subprocess.run(argv, env=sandbox.environ(), capture_output=True, text=True)
    assert done.stdout == "hello\nprint('imported')\n", done.stderr
    assert SECRET not in done.stderr


def test_a_step_cannot_leave_a_process_behind(cli: Cli) -> None:
    _require_bwrap()
    cli.write(
        "plan.yaml",
        """
        goal: a daemon
        steps:
          - id: spawn
            run: setsid sh -c 'sleep 2; echo late > late.txt' > /dev/null 2>&1 & echo started
        """,
    )
    assert cli("run", "plan.yaml").returncode == 0
    time.sleep(3)
    assert not (cli.dir / "late.txt").exists()


def test_without_bubblewrap_the_run_says_so_and_refuses_confirm_tier_commands(
    cli: Cli,
) -> None:
    missing = {"TRESTLE_BWRAP": "/nonexistent/bwrap"}
    cli.write(
        "plan.yaml",
        """
        goal: release
        steps:
          - id: build
            run: echo built >> build.log
          - id: deploy
            needs: [build]
            run: echo deployed >> deploys.log
            irreversible: true
        """,
    )
    started = cli("run", "plan.yaml", **missing)
    assert started.returncode == 3
    said = flat(started.stderr)
    why = "bubblewrap (/nonexistent/bwrap) is not installed"
    assert f"WARNING: commands run NOT SANDBOXED: {why}" in said
    run_id = run_id_of(started)
    assert cli.lines("build.log") == ["built"]  # the auto-tier step ran, and said so
    assert "NOT SANDBOXED" in flat(started.stdout)  # in the report too

    # a human approves, but without a sandbox the confirm-tier command is refused
    assert cli("approve", f"{run_id}.1").returncode == 0
    refused = cli("resume", run_id, **missing)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert not (cli.dir / "deploys.log").exists()
    report = flat(refused.stdout)
    assert "confirm-tier" in report and "--sandbox off" in report

    # the operator does exactly what it says: retry, then resume with --sandbox off
    assert cli("retry", run_id, "deploy", **missing).returncode == 0
    done = cli("resume", run_id, "--sandbox", "off", **missing)
    assert done.returncode == 0, done.stdout + done.stderr
    assert cli.lines("deploys.log") == ["deployed"]


def test_require_and_bad_modes_are_refused_before_anything_runs(cli: Cli) -> None:
    cli.write("plan.yaml", "goal: g\nsteps:\n  - id: a\n    run: echo a >> a.log\n")
    required = cli("run", "plan.yaml", "--sandbox", "require", TRESTLE_BWRAP="/nonexistent/bwrap")
    assert required.returncode == 2
    assert "no sandbox: bubblewrap (/nonexistent/bwrap) is not installed" in flat(required.stderr)
    bad = cli("run", "plan.yaml", "--sandbox", "maybe")
    assert bad.returncode == 2
    assert "sandbox mode 'maybe' (from --sandbox) is not one of auto, require, off" in flat(
        bad.stderr
    )
    assert not (cli.dir / "a.log").exists()


def test_an_agent_confirm_tier_command_is_refused_without_a_sandbox() -> None:
    plan = Plan(steps=(Step(id="fix", run="true"),))
    state = RunState.from_created(RunCreated(at=0.0, run_id="r", plan=plan, workspace="."))
    facts = ActionFacts(nature="command", name="run_command", command="git push origin main")
    call = GatedCall(
        tool="run_command",
        arguments={"command": "git push origin main"},
        facts=facts,
        run_id="r",
        step_id="fix",
    )
    confined = asyncio.run(RunToolGate(state, "fix", ()).review(call))
    assert confined.decision == "defer"  # a human is asked
    bare = RunToolGate(state, "fix", (), unconfined="NOT SANDBOXED: bubblewrap is not installed")
    verdict = asyncio.run(bare.review(call))
    assert verdict.decision == "deny"
    assert "--sandbox off" in verdict.reason and "NOT SANDBOXED" in verdict.reason
