"""Driver kills at chosen moments, then do what Trestle printed (the operator harness's
operator and audit, ``crash_operator.py``, at two moments a random kill rarely hits).

- ``start``: SIGKILL of the driver while a sandboxed command is starting (its
  ``bwrap`` exists; the command may or may not have written its first byte), made slow
  by a plan whose ``sandbox.read`` lists hundreds of directories.
- ``write``: SIGKILL of the driver during a plan ``write:`` step of a large file: while
  it writes (even trials) or once the file is renamed into place but its outcome not
  yet recorded (odd trials). The audit also wants every file whole and no
  ``*.trestle-tmp`` left anywhere in the workspace.
- ``mcp``: SIGKILL of the driver while an MCP stdio server starts in its sandbox (its
  ``bwrap`` exists; the server may not have spoken yet): ``trestle agent`` fixing a
  one-line bug with a scripted model (the loopback OpenAI-compatible server), the
  notes server (``tests/mcp_server.py``) started by each of its three agent steps,
  the kill at the first, second or third start. The fix step calls the server's
  ``add_note`` once; the audit wants it in the server's own log exactly once, the fix
  made, and no server process left.

Each trial kills once, after a pause drawn from ``random.Random(trial)``, then follows
the report (``trestle show``, ``trestle resume``, ...) until the run ends.

    python bench/crash_moments.py --trials 10                  # every scenario
    python bench/crash_moments.py --trials 50 --scenario write

``tests/test_crash_moments.py`` runs a short seeded version.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from crash_operator import Tally, Trial, wait_for_processes

SCENARIOS = ("start", "write", "mcp")
# sandbox.read directories, each judged for every command; all in the store's
# directory, so each is left out, the first named on the command's stderr and the rest
# counted (named all, a deep base directory, a test's, made the command's text too
# long for exec: E2BIG)
READS = 400
WRITES = 4
WRITE_BYTES = 1800 * 1024
MOMENT_TIMEOUT = 60.0
MCP_SERVER = Path(__file__).resolve().parents[1] / "tests" / "mcp_server.py"
MCP_STARTS = 3  # understand, plan and the fix step each start the server


def append(step: str) -> str:
    return f'echo "{step} $TRESTLE_IDEMPOTENCY_KEY" >> ledger.txt'


def has(step: str) -> list[dict[str, str]]:
    return [{"file_contains": "ledger.txt", "regex": f"^{step} "}]


START_STEPS = ("fetch", "docs", "lint", "build", "notes")


def start_plan(reads: Sequence[str]) -> dict[str, Any]:
    dedupe = f'grep -q "^build " ledger.txt || {append("build")}'
    steps: list[dict[str, Any]] = [
        {"id": "fetch", "run": append("fetch"), "verify": has("fetch")},
        # no checks, not idempotent: after a crash only a human can tell
        {"id": "docs", "needs": ["fetch"], "run": append("docs")},
        {"id": "lint", "needs": ["docs"], "run": append("lint"), "verify": has("lint")},
        {
            "id": "build",
            "needs": ["lint"],
            "idempotent": True,
            "run": f"flock ledger.lock sh -c '{dedupe}'",
            "verify": has("build"),
        },
        {"id": "notes", "needs": ["build"], "run": append("notes")},
    ]
    assert tuple(s["id"] for s in steps) == START_STEPS
    return {
        "goal": "a kill while a sandboxed command starts",
        "workspace": "ws",
        "parallelism": 1,
        "policy": {"sandbox": {"read": list(reads)}},
        "steps": steps,
    }


def big_content(index: int) -> str:
    return "x" * WRITE_BYTES + f"\n{index}\n"


def write_plan() -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"id": "fetch", "run": append("fetch"), "verify": has("fetch")}]
    before = "fetch"
    for i in range(WRITES):
        write = {"path": f"out/big{i}.txt", "content": big_content(i)}
        steps.append({"id": f"w{i}", "needs": [before], "write": write})
        before = f"w{i}"
    steps.append({"id": "docs", "needs": [before], "run": append("docs")})
    return {
        "goal": "a kill during a write step",
        "workspace": "ws",
        "parallelism": 1,
        "steps": steps,
    }


def agent_repo(ws: Path) -> None:
    """A repository with one bug (add subtracts) and its test."""
    (ws / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (ws / "test_calc.py").write_text(
        "import unittest\n\nfrom calc import add\n\n\n"
        "class AddTest(unittest.TestCase):\n"
        "    def test_add(self) -> None:\n"
        "        self.assertEqual(add(2, 3), 5)\n"
    )


def agent_operator(root: Path) -> Path:
    """The operator's trestle.toml (outside the workspace: trusted): the notes server,
    marked with the trial's directory so that its processes can be found, its calls
    at tier log, its script shown to the sandbox."""
    path = root / "operator" / "trestle.toml"
    path.parent.mkdir()
    args = [str(MCP_SERVER), "--trial", str(root)]
    path.write_text(
        f"[mcp.servers.notes]\ncommand = {json.dumps(sys.executable)}\n"
        f'args = {json.dumps(args)}\ntier = "log"\n'
        f"[policy.sandbox]\nread = [{json.dumps(str(MCP_SERVER.parent))}]\n"
    )
    return path


def agent_replies(server: Any) -> None:
    """What the model answers, in order: the findings, the plan, then the fix step's
    calls (the notes server's add_note, the edit, finish). A kill while a server starts
    comes before its step's model call, so the resumed run asks for the same answer."""
    from trestle.models import ToolCall

    def call(call_id: str, tool: str, **arguments: str) -> Any:
        return ToolCall(id=call_id, name=tool, arguments=json.dumps(arguments))

    tests = f"{sys.executable} -m unittest -q"
    findings: dict[str, Any] = {"summary": "add() subtracts", "how_to_test": tests}
    findings["relevant_files"] = [{"path": "calc.py"}]
    fix: dict[str, Any] = {"id": "fix-add", "objective": "add returns the sum"}
    fix |= {"files": ["calc.py"], "verify": [{"command": tests}]}
    server.queue_text(json.dumps(findings))
    server.queue_text(json.dumps({"summary": "fix add", "steps": [fix]}))
    server.queue_tool_calls(call("n", "notes__add_note", name="fixed"))
    server.queue_tool_calls(call("e", "edit_file", path="calc.py", old="a - b", new="a + b"))
    server.queue_tool_calls(call("f", "finish", summary="add adds"))


def server_processes(root: Path) -> list[int]:
    """The live processes of the trial's MCP server: its sandbox and the server."""
    marker = str(root).encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                argv = f.read()
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if b"mcp_server.py" in argv and marker in argv and state not in (b"Z", b"X"):
            found.append(int(entry.name))
    return found


def server_starts(driver: int, root: Path) -> set[int]:
    """The outer ``bwrap`` of each of the trial's server starts now running: a child
    of the driver whose arguments start the notes server."""
    found = set()
    for pid in server_processes(root):
        try:
            with open(f"/proc/{pid}/comm", "rb") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/stat", "rb") as f:
                parent = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if name == b"bwrap" and parent == driver:
            found.add(pid)
    return found


def environ_holds(pid: str, *markers: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            seen = f.read()
    except OSError:
        return False
    return all(marker in seen for marker in markers)


def bwrap_of(step: str, root: Path) -> bool:
    """Whether a ``bwrap`` of ``step`` in the trial under ``root`` exists."""
    marker = f"TRESTLE_STEP_ID={step}\0".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm", "rb") as f:
                if f.read().strip() != b"bwrap":
                    continue
        except OSError:
            continue
        if environ_holds(entry.name, marker, str(root).encode()):
            return True
    return False


def writing_into(pid: int, folder: Path) -> bool:
    """Whether process ``pid`` holds a file in ``folder`` open: the temporary file of a
    write, named (``*.trestle-tmp``) or not yet (``O_TMPFILE``: ``folder/#123``)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(f"{folder}/") and ("/#" in target or "trestle-tmp" in target):
            return True
    return False


class MomentTrial(Trial):
    """One SIGKILL of the driver at the scenario's moment, then the operator."""

    def __init__(self, number: int, base: Path, scenario: str, reads: int = READS) -> None:
        super().__init__(number, base / scenario, [signal.SIGTERM], max_kills=1)
        self.scenario = scenario
        self.signal = signal.SIGKILL
        self.kills_left = 1
        self.moments: list[str] = []
        if scenario == "start":
            self.steps = START_STEPS
            self.target = self.rng.choice(START_STEPS[1:])
            self.pause = self.rng.choice((0.0, 0.001, 0.003, 0.006, 0.01, 0.02, 0.04))
            folders = [self.root / "reads" / f"d{i}" for i in range(reads)]
            for folder in folders:
                folder.mkdir(parents=True)
            plan = start_plan([str(folder) for folder in folders])
        elif scenario == "write":
            self.steps = ("fetch", "docs")
            self.target = f"w{self.rng.randrange(WRITES)}"
            self.pause = 0.0  # the moment is short: a pause would miss it
            plan = write_plan()
        else:
            self.steps = ("add_note",)  # in the server's log, calls.log
            self.target = f"start {self.rng.randint(1, MCP_STARTS)}"
            self.pause = self.rng.choice((0.0, 0.001, 0.003, 0.006, 0.01, 0.02, 0.04))
            self.starts: set[int] = set()
            self.base_url = ""
            agent_repo(self.ws)
            self.operator = agent_operator(self.root)
            self.environ["OPENAI_API_KEY"] = "x"  # the loopback server takes any
            plan = {}
        self.plan.write_text(yaml.safe_dump(plan, sort_keys=False))

    def follow(self, tally: Tally) -> dict[str, Any]:
        if self.scenario != "mcp":
            return super().follow(tally)
        from trestle.testing import OpenAIServer

        with OpenAIServer(model="test-model") as server:
            agent_replies(server)
            self.base_url = server.base_url
            return super().follow(tally)

    def start(self) -> list[str]:
        if self.scenario != "mcp":
            return super().start()
        tests = f"{sys.executable} -m unittest -q"
        return [
            "agent",
            "make add() return the sum",
            "--repo",
            str(self.ws),
            "--model",
            "openai:test-model",
            "--base-url",
            self.base_url,
            "--test-command",
            tests,
            "--auto-plan",
            "--policy",
            str(self.operator),
        ]

    def ledger(self) -> Counter[str]:
        if self.scenario != "mcp":
            return super().ledger()
        path = self.ws / "calls.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return Counter(line.split()[0] for line in lines)

    def at_moment(self, proc: subprocess.Popen[str]) -> bool:
        if self.scenario == "start":
            return bwrap_of(self.target, self.root)
        if self.scenario == "mcp":  # the start chosen has its bwrap
            self.starts |= server_starts(proc.pid, self.root)
            return len(self.starts) >= int(self.target.split()[1])
        out = self.ws / "out"
        if self.number % 2 == 0:
            return writing_into(proc.pid, out)
        return (out / f"big{self.target[1:]}.txt").exists()

    def interrupt(self, proc: subprocess.Popen[str]) -> bool:
        end = time.monotonic() + MOMENT_TIMEOUT
        wait = 0.00005 if self.scenario == "write" else 0.0005
        while proc.poll() is None and time.monotonic() < end:
            if self.at_moment(proc):
                time.sleep(self.pause)
                if proc.poll() is not None:
                    break
                proc.send_signal(signal.SIGKILL)  # the driver's pid only
                self.moments.append(f"{self.target} +{self.pause * 1000:.0f}ms")
                return True
            time.sleep(wait)
        self.moments.append(f"{self.target}: missed")
        return False

    def workspace_problems(self) -> list[str]:
        if self.scenario == "mcp":
            problems = []
            if "a + b" not in (self.ws / "calc.py").read_text():
                problems.append("calc.py was not fixed")
            end = time.monotonic() + 10.0  # a stopped server's sandbox is gone by now
            while (running := server_processes(self.root)) and time.monotonic() < end:
                time.sleep(0.05)
            if running:
                problems.append(f"MCP server processes left: {running}")
            return problems
        if self.scenario != "write":
            return []
        problems = []
        for i in range(WRITES):
            path = self.ws / "out" / f"big{i}.txt"
            if not path.is_file() or path.read_text() != big_content(i):
                problems.append(f"{path.name} missing or not whole")
        left = sorted(str(p.relative_to(self.ws)) for p in self.ws.rglob("*.trestle-tmp"))
        if left:
            problems.append(f"temporary files left in the workspace: {left}")
        return problems


def run_trials(trials: int, base: Path, scenario: str, first: int = 0, reads: int = READS) -> Tally:
    """Trials ``first .. first + trials - 1`` of ``scenario``."""
    tally = Tally()
    for number in range(first, first + trials):
        trial = MomentTrial(number, base, scenario, reads)
        try:
            report = trial.follow(tally)
            trial.audit(report, tally)
        except AssertionError as exc:
            tally.problems.append(f"trial {number} ({scenario} {trial.target}): {exc}")
        finally:
            wait_for_processes(trial.run_id or "")
        tally.trials += 1
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="trials per scenario")
    parser.add_argument("--first", type=int, default=0, help="seed of the first trial")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory(prefix="trestle-crash-moments-") as tmp:
        os.environ.setdefault("TRESTLE_KEY_FILE", str(Path(tmp) / "approval.key"))
        for scenario in args.scenario or SCENARIOS:
            tally = run_trials(args.trials, Path(tmp), scenario, args.first)
            print(f"{scenario}: {tally.line()}")
            for problem in tally.problems[:20]:
                print(f"  {problem}")
            failed = failed or bool(tally.problems)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
