"""The coding tools behind one gate: real files, real subprocesses, real git.

Every call goes through :meth:`ToolRegistry.call` as a model's call would (a name and
raw JSON text), so each test also checks the path from model output to observation.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from trestle.core.errors import ConfigError
from trestle.core.policy import Nature, Policy, Scope, classify
from trestle.tools import (
    GatedCall,
    GateVerdict,
    Observation,
    Tool,
    ToolArgs,
    ToolContext,
    ToolRegistry,
    coding_registry,
    command_env,
    finish_claim,
    is_secret,
    matching,
)

READ_ONLY: set[Nature] = {"read"}


class RecordingGate:
    """Answers every call with one verdict and keeps what it was asked."""

    def __init__(self, verdict: GateVerdict | None = None) -> None:
        self.verdict = verdict or GateVerdict.allow()
        self.calls: list[GatedCall] = []

    async def review(self, call: GatedCall) -> GateVerdict:
        self.calls.append(call)
        return self.verdict


class World:
    """One test's workspace, context, registry and gate."""

    def __init__(self, root: Path) -> None:
        self.outside = root / "outside"
        self.outside.mkdir()
        self.ws = root / "ws"
        self.ws.mkdir()
        self.ctx = ToolContext(workspace=self.ws, run_id="run-1", step_id="fix")
        self.registry = coding_registry()
        self.gate = RecordingGate()

    def call(
        self, name: str, args: dict[str, Any] | str, gate: RecordingGate | None = None, **kw: Any
    ) -> Observation:
        raw = args if isinstance(args, str) else json.dumps(args)
        return asyncio.run(self.registry.call(name, raw, self.ctx, gate or self.gate, **kw))

    def write(self, rel: str, text: str) -> Path:
        path = self.ws / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


@pytest.fixture
def w(tmp_path: Path) -> World:
    return World(tmp_path)


# --- the registry ------------------------------------------------------------------------


class Echo(Tool[ToolArgs]):
    name = "echo"
    description = "says hello"
    nature = "call"
    arguments = ToolArgs

    def __init__(self, reply: str = "hello", boom: bool = False) -> None:
        self.reply = reply
        self.boom = boom

    async def run(self, ctx: ToolContext, args: ToolArgs) -> Observation:
        if self.boom:
            raise RuntimeError("the tool has a bug")
        return Observation.success(self.reply)


def test_registering_twice_or_a_bad_name_is_refused() -> None:
    registry = ToolRegistry([Echo()])
    with pytest.raises(ConfigError, match="'echo' is already registered"):
        registry.register(Echo())
    bad = Echo()
    bad.name = "no spaces"
    with pytest.raises(ConfigError, match="tool name 'no spaces' is invalid"):
        registry.register(bad)
    with pytest.raises(ConfigError, match=r"no tool 'ecko' \(did you mean 'echo'\?\)"):
        registry.get("ecko")


def test_schemas_are_what_a_model_sees_and_can_be_filtered_by_nature(w: World) -> None:
    everything = w.registry.schemas()
    assert [s.name for s in everything] == list(w.registry.names())
    assert len(everything) == 9
    read = w.registry.schemas(natures=READ_ONLY)
    assert {s.name for s in read} == {
        "read_file",
        "list_files",
        "search_text",
        "git_diff",
        "finish",
    }
    edit = next(s for s in everything if s.name == "edit_file")
    params = edit.parameters
    assert params["type"] == "object"
    assert params["required"] == ["path", "old", "new"]
    assert params["additionalProperties"] is False
    assert "title" not in params and "title" not in params["properties"]["old"]
    assert edit.description.startswith("Replace an exact piece of text")


def test_unknown_tool_lists_the_known_ones(w: World) -> None:
    obs = w.call("raed_file", {"path": "x"})
    assert not obs.ok
    assert "unknown tool 'raed_file' (did you mean 'read_file'?)" in obs.content
    assert "list_files" in obs.content and "write_file" in obs.content
    # in a read-only phase only the tools it allows are offered
    obs = w.call("nope", {}, allowed_natures=READ_ONLY)
    assert "write_file" not in obs.content and "read_file" in obs.content
    assert w.gate.calls == []


def test_malformed_json_quotes_the_parse_error_position(w: World) -> None:
    obs = w.call("write_file", '{"path": "a.txt", "content": "x",}')
    assert not obs.ok
    assert obs.error is not None
    assert "not valid JSON" in obs.error
    assert "at line 1, column 34 (character 33), just after '" in obs.error
    assert obs.error.endswith('"content": "x",\'')
    assert not (w.ws / "a.txt").exists()
    assert w.gate.calls == []
    obs = w.call("read_file", "[1, 2]")
    assert "must be a JSON object, not list" in obs.content
    assert "path (string, required)" in obs.content


def test_invalid_arguments_name_each_bad_field(w: World) -> None:
    obs = w.call("edit_file", {"path": 3, "new": "x", "colour": "red"})
    assert obs.error is not None
    assert "'path': Input should be a valid string (got 3)" in obs.error
    assert "'old' is required" in obs.error
    assert "'colour' is not an argument of this tool" in obs.error
    obs = w.call("read_file", {"path": "a", "start_line": 5, "end_line": 2})
    assert "end_line 2 is before start_line 5" in obs.content
    assert w.gate.calls == []


def test_a_tool_outside_the_phase_is_refused_before_anything_else(w: World) -> None:
    obs = w.call(
        "write_file",
        {"path": "a.txt", "content": "x"},
        allowed_natures=READ_ONLY,
        phase="UNDERSTAND",
    )
    assert not obs.ok
    assert obs.content.startswith("error: write_file is not allowed in UNDERSTAND: ")
    assert "only read tools are allowed" in obs.content
    assert not (w.ws / "a.txt").exists()
    assert w.gate.calls == []
    assert w.call("list_files", {}, allowed_natures=READ_ONLY).ok


def test_a_denying_gate_stops_the_call_and_the_model_reads_why(w: World) -> None:
    gate = RecordingGate(GateVerdict.deny("writes to migrations/ need a reviewer"))
    obs = w.call("write_file", {"path": "./db/../migrations/1.sql", "content": "x"}, gate)
    assert not obs.ok
    assert obs.content == ("error: write_file was refused: writes to migrations/ need a reviewer")
    assert obs.data["gate"] == "deny"
    assert not (w.ws / "migrations").exists()
    [call] = gate.calls
    # the gate sees the canonical path, so a rule on migrations/ is not dodged
    assert call.facts.paths == ("migrations/1.sql",)
    assert call.facts.nature == "write"
    assert call.arguments == {"path": "./db/../migrations/1.sql", "content": "x"}
    assert (call.run_id, call.step_id) == ("run-1", "fix")


def test_a_deferring_gate_runs_nothing_and_marks_the_observation(w: World) -> None:
    gate = RecordingGate(GateVerdict.defer("rm needs approval"))
    w.write("keep.txt", "keep")
    obs = w.call("run_command", {"command": "rm keep.txt"}, gate)
    assert obs.deferred and not obs.ok
    assert "waits for a human decision: rm needs approval" in obs.content
    facts = obs.data["facts"]
    assert isinstance(facts, dict)
    assert facts["command"] == "rm keep.txt"
    assert facts["nature"] == "command"
    assert (w.ws / "keep.txt").exists()


def test_refusing_verdicts_must_say_why() -> None:
    with pytest.raises(ValidationError, match="'deny' verdict needs a reason"):
        GateVerdict(decision="deny")
    with pytest.raises(ValidationError, match="'defer' verdict needs a reason"):
        GateVerdict.defer("  ")


def test_a_tool_that_crashes_or_floods_still_gives_an_observation(w: World) -> None:
    registry = ToolRegistry([Echo(boom=True)])
    obs = asyncio.run(registry.call("echo", "{}", w.ctx, w.gate))
    assert obs.content == "error: echo failed: RuntimeError: the tool has a bug"
    flood = ToolRegistry([Echo(reply="x" * 100_000)])
    obs = asyncio.run(flood.call("echo", "", w.ctx, w.gate))
    assert obs.ok
    assert len(obs.content) < 10_000 and "characters cut" in obs.content


# --- the jail ----------------------------------------------------------------------------


def test_paths_leading_outside_are_refused(w: World) -> None:
    secret = w.outside / "secret.txt"
    secret.write_text("outside")
    (w.ws / "out").symlink_to(w.outside)
    for path in ("../outside/secret.txt", str(secret), "out/secret.txt"):
        obs = w.call("read_file", {"path": path})
        assert not obs.ok, path
        assert "is refused" in obs.content or "is absolute" in obs.content, obs.content
    # a write through a link that leads out is refused before the gate is asked
    obs = w.call("write_file", {"path": "out/secret.txt", "content": "pwned"})
    assert "leads outside the workspace" in obs.content
    assert secret.read_text() == "outside"
    assert w.gate.calls[-1].tool == "read_file"
    # even an absolute path that points inside the workspace is refused
    w.write("in.txt", "in")
    obs = w.call("read_file", {"path": str(w.ws / "in.txt")})
    assert "is absolute; give it relative to the workspace" in obs.content
    for tool, args in (
        ("list_files", {"directory": ".."}),
        ("search_text", {"pattern": "x", "directory": "../outside"}),
        ("run_command", {"command": "pwd", "directory": "/"}),
        ("edit_file", {"path": "../outside/secret.txt", "old": "o", "new": "x"}),
    ):
        assert not w.call(tool, args).ok, tool
    assert secret.read_text() == "outside"


def test_a_symlink_that_stays_inside_is_followed(w: World) -> None:
    w.write("real/data.txt", "one\n")
    (w.ws / "alias").symlink_to(w.ws / "real")
    assert "one" in w.call("read_file", {"path": "alias/data.txt"}).content
    obs = w.call("edit_file", {"path": "alias/data.txt", "old": "one", "new": "two"})
    assert obs.ok, obs.content
    assert (w.ws / "real" / "data.txt").read_text() == "two\n"
    assert (w.ws / "alias").is_symlink()
    assert w.gate.calls[-1].facts.paths == ("real/data.txt",)


def test_a_context_resolves_its_workspace_once_and_a_new_context_afresh(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "which.txt").write_text(f"{name}\n")
    link = tmp_path / "ws"
    link.symlink_to(tmp_path / "a")
    ctx = ToolContext(workspace=link, run_id="run-1", step_id="fix")
    read = coding_registry()
    gate = RecordingGate()
    assert ctx.root == (tmp_path / "a").resolve() and ctx.root is ctx.root
    # the session makes a context per call: one made after the link moved sees the move
    link.unlink()
    link.symlink_to(tmp_path / "b")
    moved = replace(ctx, idempotency_key="call-2")
    assert moved.root == (tmp_path / "b").resolve()
    observed = asyncio.run(read.call("read_file", '{"path": "which.txt"}', moved, gate))
    assert observed.content.endswith("b\n")


# --- reading -----------------------------------------------------------------------------


def test_read_file_whole_and_by_range(w: World) -> None:
    w.write("src/m.py", "".join(f"line {n}\n" for n in range(1, 11)))
    obs = w.call("read_file", {"path": "src/m.py"})
    assert obs.content.startswith("src/m.py (10 lines)\nline 1\n")
    assert obs.content.endswith("line 10\n")
    obs = w.call("read_file", {"path": "src/m.py", "start_line": 3, "end_line": 4})
    assert obs.content == "src/m.py (lines 3-4 of 10)\nline 3\nline 4\n"
    obs = w.call("read_file", {"path": "src/m.py", "start_line": 11})
    assert "has 10 lines; start_line 11 is past the end" in obs.content
    w.write("empty.txt", "")
    assert w.call("read_file", {"path": "empty.txt"}).content == "empty.txt (0 lines)\n"


def test_read_file_errors_say_what_to_do(w: World) -> None:
    w.write("src/parser.py", "x")
    obs = w.call("read_file", {"path": "src/parsr.py"})
    assert "no such file or directory 'src/parsr.py' (did you mean 'src/parser.py'?)" in (
        obs.content
    )
    assert "is a directory; use list_files" in w.call("read_file", {"path": "src"}).content
    (w.ws / "blob.bin").write_bytes(b"\x00\x01\x02" * 10)
    assert "is a binary file (30 bytes)" in w.call("read_file", {"path": "blob.bin"}).content


def test_read_file_is_capped_with_a_note_saying_where_to_go_on(w: World) -> None:
    w.ctx = ToolContext(workspace=w.ws, run_id="r", step_id="s", output_cap=1_000)
    w.write("big.txt", "".join(f"{n:04d} {'x' * 45}\n" for n in range(1, 501)))
    obs = w.call("read_file", {"path": "big.txt"})
    assert len(obs.content) <= 1_000
    assert obs.content.startswith("big.txt (lines 1-")
    assert obs.data["truncated"] is True
    last = obs.data["end"]
    assert isinstance(last, int)
    assert f"read on with start_line={last + 1}]" in obs.content
    again = w.call("read_file", {"path": "big.txt", "start_line": last + 1})
    assert again.content.split("\n")[1].startswith(f"{last + 1:04d} ")


def test_list_files_skips_git_and_trestle_and_does_not_enter_noise(w: World) -> None:
    for rel in ("src/a.py", "src/deep/b.py", "README.md", ".git/HEAD", ".trestle/trestle.db",
                "node_modules/pkg/index.js", "src/deep/deeper/c.py"):  # fmt: skip
        w.write(rel, "x")
    obs = w.call("list_files", {})
    assert obs.content.splitlines() == [
        "README.md",
        "node_modules/",
        "src/",
        "src/a.py",
        "src/deep/",
        "src/deep/b.py",
        "src/deep/deeper/",
    ]
    obs = w.call("list_files", {"pattern": "*.py", "depth": 10})
    assert obs.content.splitlines() == ["src/a.py", "src/deep/b.py", "src/deep/deeper/c.py"]
    obs = w.call("list_files", {"directory": "node_modules"})
    assert obs.content.splitlines() == ["node_modules/pkg/", "node_modules/pkg/index.js"]
    assert (
        "nothing in 'src' matches '*.rs'"
        in w.call("list_files", {"directory": "src", "pattern": "*.rs"}).content
    )
    assert not w.call("list_files", {"directory": "nope"}).ok
    assert not w.call("list_files", {"depth": 0}).ok


def test_search_text_finds_regex_and_literal_matches(w: World) -> None:
    w.write("src/a.py", "def parse(x):\n    return x + 1\n")
    w.write("src/b.txt", "PARSE the input\n")
    w.write(".git/config", "def parse")
    (w.ws / "bin.dat").write_bytes(b"\x00def parse(")
    obs = w.call("search_text", {"pattern": r"def \w+\("})
    assert obs.content == "src/a.py:1:def parse(x):"
    obs = w.call("search_text", {"pattern": "x + 1", "literal": True})
    assert obs.content == "src/a.py:2:return x + 1"
    obs = w.call("search_text", {"pattern": "parse", "ignore_case": True, "glob": "*.txt"})
    assert obs.content == "src/b.txt:1:PARSE the input"
    obs = w.call("search_text", {"pattern": "nothing here"})
    assert obs.ok and obs.content.startswith("no matches for 'nothing here'")
    obs = w.call("search_text", {"pattern": "parse("})
    assert "invalid regular expression 'parse(': missing ), unterminated subpattern" in (
        obs.content
    )
    assert "literal=true" in obs.content


def test_search_text_stops_at_max_results(w: World) -> None:
    w.write("many.txt", "hit\n" * 50)
    obs = w.call("search_text", {"pattern": "hit", "max_results": 5})
    assert obs.content.splitlines()[:5] == [f"many.txt:{n}:hit" for n in range(1, 6)]
    assert "[stopped at 5 matches; narrow the pattern or directory]" in obs.content


# --- writing -----------------------------------------------------------------------------


def test_write_file_creates_parents_and_keeps_the_mode(w: World) -> None:
    obs = w.call("write_file", {"path": "a/b/c.txt", "content": "one\ntwo\n"})
    assert obs.content == "created a/b/c.txt (2 lines, 8 characters)"
    assert (w.ws / "a/b/c.txt").read_text() == "one\ntwo\n"
    script = w.write("run.sh", "echo old\n")
    script.chmod(0o755)
    obs = w.call("write_file", {"path": "run.sh", "content": "echo new\n"})
    assert obs.content.startswith("overwrote run.sh")
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert sorted(p.name for p in w.ws.iterdir()) == ["a", "run.sh"]  # no temp files left


def test_write_file_refuses_protected_places(w: World) -> None:
    (w.ws / ".git").mkdir()
    obs = w.call("write_file", {"path": ".git/hooks/pre-commit", "content": "x"})
    assert "inside '.git'; no tool reads or writes it" in obs.content
    obs = w.call("write_file", {"path": "src/../.trestle/trestle.db", "content": "x"})
    assert "inside '.trestle'" in obs.content
    w.write("d/f", "x")
    assert "is a directory" in w.call("write_file", {"path": "d", "content": "x"}).content
    assert not (w.ws / ".git" / "hooks").exists()


def test_a_command_run_in_a_directory_is_judged_by_where_it_writes(w: World) -> None:
    """run_command in tests/ writing src/f.py writes tests/src/f.py: the gate is told so,
    and a src/** scope asks a human (it read the command alone, as a write to src/f.py
    in scope, and let it run logged)."""
    (w.ws / "tests").mkdir()
    args = {"command": "echo x > src/f.py", "directory": "tests"}
    w.call("run_command", args)
    (call,) = w.gate.calls
    assert call.facts.paths == ("tests/src/f.py",)
    scoped = Policy(scope=Scope(write_paths=("src/**",)))
    tier = classify(call.facts, plan=None, operator=scoped, run_id="r", action_key="k")
    assert (tier.tier, tier.reason) == (
        "confirm",
        "writes 'tests/src/f.py', outside write_paths ['src/**']",
    )
    w.call("run_command", {"command": "pytest -q", "directory": "tests"})
    assert w.gate.calls[-1].facts.paths == ()  # it writes nothing: its tier is unchanged


def test_a_search_pattern_that_backtracks_without_end_is_stopped(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(a+)+$ against 26 a's and a b: about 2**26 steps, seconds of the driver's CPU with
    the interpreter's lock held (hours at 40 a's). It is matched in a child process that
    is stopped past the limit, and the model is told why."""
    monkeypatch.setattr(matching, "SECONDS", 0.5)
    w.write("a.txt", "plain\n" + "a" * 26 + "b\n")
    obs = w.call("search_text", {"pattern": "(a+)+$"})
    assert not obs.ok
    assert "the pattern '(a+)+$' was still matching after 0.5 s" in obs.content
    assert "pass literal=true" in obs.content
    obs = w.call("search_text", {"pattern": "(a+)+b$"})  # the child answers a fair one
    assert obs.ok and obs.content == "a.txt:2:" + "a" * 26 + "b"
    obs = w.call("search_text", {"pattern": "a+\x00"})  # a NUL reaches it too
    assert obs.ok and obs.content == "no matches for 'a+\\x00' in 1 files"


def test_a_search_stopped_at_its_first_match_walks_no_further(w: World) -> None:
    """20,000 files under 200 directories, a search for one match: the tree is walked as
    it is searched (every file was listed first, whatever the search then needed)."""
    for d in range(200):
        folder = w.ws / "tree" / f"d{d:03}"
        folder.mkdir(parents=True)
        for f in range(100):
            (folder / f"f{f:03}.txt").write_text("needle\n")
    w.write("warm/a.txt", "needle\n")
    # measured in a Python of its own: tracemalloc counts every thread's allocations,
    # and in a test worker another thread's (pytest-xdist's, taking in the next tests)
    # once landed inside the measurement; a first search, elsewhere, loads what any
    # search loads
    code = (
        "import sys, tracemalloc\n"
        "from pathlib import Path\n"
        "from trestle.tools.base import ToolContext\n"
        "from trestle.tools.files import SearchText, SearchTextArgs\n"
        "ctx = ToolContext(workspace=Path(sys.argv[1]), run_id='run-1', step_id='fix')\n"
        "def search(where):\n"
        "    args = SearchTextArgs(pattern='needle', directory=where, max_results=1)\n"
        "    return SearchText().work(ctx, args)\n"
        "search('warm')\n"
        "tracemalloc.start()\n"
        "found = search('tree')\n"
        "print(tracemalloc.get_traced_memory()[1])\n"
        "print(found.content)\n"
    )
    done = subprocess.run(
        [sys.executable, "-P", "-c", code, str(w.ws)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    peak, content = done.stdout.split("\n", 1)
    assert content.startswith("tree/d000/f000.txt:1:needle\n[stopped at 1 matches")
    assert int(peak) < 2_000_000, f"{int(peak):,} bytes at the peak"


def test_edit_file_names_the_first_lines_of_many_matches_and_counts_the_rest(
    w: World,
) -> None:
    """One character matching on each of 100,000 lines: the failure names 20 lines and
    counts the others (it named every one, counting each from the top: quadratic in the
    file, hours of the driver's CPU for a 10 MB file a command wrote)."""
    w.write("big.txt", "a\n" * 100_000)
    obs = w.call("edit_file", {"path": "big.txt", "old": "a", "new": "b"})
    assert not obs.ok
    assert "old text matches 100,000 times in 'big.txt', at lines 1, 2, 3" in obs.content
    assert "19, 20 and 99,980 more; include more surrounding text" in obs.content
    assert len(obs.content) < 1_000
    assert (w.ws / "big.txt").read_text() == "a\n" * 100_000


def test_edit_file_replaces_one_exact_match(w: World) -> None:
    w.write("m.py", "a = 1\nb = 2\nc = 3\n")
    obs = w.call("edit_file", {"path": "m.py", "old": "b = 2", "new": "b = 20"})
    assert obs.ok
    assert obs.content.startswith("replaced 1 occurrence in m.py (first at line 2):")
    assert "    2  b = 20" in obs.content
    assert (w.ws / "m.py").read_text() == "a = 1\nb = 20\nc = 3\n"


def test_edit_file_zero_or_several_matches_say_how_many_and_where(w: World) -> None:
    w.write("m.py", "x = 1\n    y = 2\nx = 1\nz = 3\nx = 1\n")
    obs = w.call("edit_file", {"path": "m.py", "old": "x = 1", "new": "x = 9"})
    assert "old text matches 3 times in 'm.py', at lines 1, 3 and 5" in obs.content
    assert "pass count=3 to replace every one" in obs.content
    obs = w.call("edit_file", {"path": "m.py", "old": "x = 1", "new": "x = 9", "count": 2})
    assert "matches 3 times" in obs.content and "count is 2; nothing was changed" in obs.content
    obs = w.call("edit_file", {"path": "m.py", "old": "y = 2\nz", "new": "q"})
    assert "old text not found in 'm.py'" in obs.content
    assert "its first line appears at line 2" in obs.content
    assert (
        "old and new are the same"
        in w.call("edit_file", {"path": "m.py", "old": "z", "new": "z"}).content
    )
    assert (w.ws / "m.py").read_text() == "x = 1\n    y = 2\nx = 1\nz = 3\nx = 1\n"
    obs = w.call("edit_file", {"path": "m.py", "old": "x = 1", "new": "x = 9", "count": 3})
    assert obs.content.startswith("replaced 3 occurrences in m.py")
    assert (w.ws / "m.py").read_text().count("x = 9") == 3
    assert "no such file" in w.call("edit_file", {"path": "n.py", "old": "a", "new": "b"}).content


def test_edit_file_matches_across_windows_line_endings(w: World) -> None:
    (w.ws / "w.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    obs = w.call("edit_file", {"path": "w.txt", "old": "one\ntwo", "new": "1\n2"})
    assert obs.ok, obs.content
    assert (w.ws / "w.txt").read_bytes() == b"1\r\n2\r\nthree\r\n"


def test_edit_file_refuses_text_it_would_corrupt(w: World) -> None:
    (w.ws / "latin.txt").write_bytes(b"caf\xe9 ok\n")
    obs = w.call("edit_file", {"path": "latin.txt", "old": "ok", "new": "fine"})
    assert "'latin.txt' is not UTF-8 text (byte 3)" in obs.content
    assert (w.ws / "latin.txt").read_bytes() == b"caf\xe9 ok\n"
    assert "caf\ufffd ok" in w.call("read_file", {"path": "latin.txt"}).content


def test_write_errors_from_the_file_system_are_observations(w: World) -> None:
    w.write("file", "x")
    obs = w.call("write_file", {"path": "file/child.txt", "content": "x"})
    assert not obs.ok
    assert obs.error == "a part of 'file/child.txt' is a file, not a directory"
    assert sorted(p.name for p in w.ws.iterdir()) == ["file"]


# --- commands ----------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def test_run_command_reports_exit_code_and_output(w: World) -> None:
    w.write("sub/f.txt", "x")
    obs = w.call("run_command", {"command": "ls", "directory": "sub"})
    assert obs.ok and obs.content == "$ ls\n[exit code 0]\nf.txt\n"
    assert obs.data["exit_code"] == 0
    obs = w.call("run_command", {"command": "echo oops >&2; exit 3"})
    assert not obs.ok
    assert obs.error == "exit code 3"
    assert obs.content == "$ echo oops >&2; exit 3\n[exit code 3]\noops\n"
    assert w.gate.calls[-1].facts.command == "echo oops >&2; exit 3"
    assert "(no output)" in w.call("run_command", {"command": "true"}).content


def test_a_command_no_start_could_pass_is_refused_in_words_the_model_can_act_on(
    w: World,
) -> None:
    asked = len(w.gate.calls)
    long = "echo " + "é" * 50_000  # 100,005 bytes: past the kernel's limit less the sandbox's
    obs = w.call("run_command", {"command": long})
    assert not obs.ok
    assert "the command is 100,005 bytes, more than 100,000: write a script file" in obs.content
    assert len(w.gate.calls) == asked  # refused before the gate: nothing was started
    assert w.call("run_command", {"command": "echo " + "a" * 99_995}).ok  # 100,000: runs


def test_run_command_timeout_kills_the_whole_process_group(w: World) -> None:
    command = "(sleep 300 & echo $! > grandchild.pid; wait); echo never"
    obs = w.call("run_command", {"command": command, "timeout": 0.5})
    assert not obs.ok
    assert obs.data["status"] == "timeout"
    assert "timed out after 0.5s; killed its process group" in obs.content
    assert obs.content.splitlines()[2:] == ["(no output)"]  # "echo never" did not run
    pid = int((w.ws / "grandchild.pid").read_text())
    for _ in range(100):  # the orphaned grandchild is reaped by init: give it a moment
        if not _alive(pid):
            break
        time.sleep(0.05)
    assert not _alive(pid), f"grandchild {pid} survived the timeout"


def test_run_command_timeout_is_capped_by_the_context(w: World) -> None:
    w.ctx = ToolContext(workspace=w.ws, run_id="r", step_id="s", command_timeout=0.3)
    obs = w.call("run_command", {"command": "sleep 30", "timeout": 3600})
    assert "timed out after 0.3s" in obs.content


def test_run_command_output_keeps_head_and_tail(w: World) -> None:
    w.ctx = ToolContext(workspace=w.ws, run_id="r", step_id="s", output_cap=1_000)
    obs = w.call("run_command", {"command": "seq 1 20000"})
    assert obs.ok
    assert len(obs.content) < 1_200
    lines = obs.content.splitlines()
    assert lines[2:5] == ["1", "2", "3"]
    assert lines[-1] == "20000"
    assert "characters cut" in obs.content


def test_commands_do_not_see_secrets(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    planted = {
        "OPENAI_API_KEY": "sk-planted",
        "ANTHROPIC_API_KEY": "planted-anthropic",
        "AWS_SECRET_ACCESS_KEY": "planted-aws",
        "AWS_REGION": "planted-region",
        "GITHUB_TOKEN": "planted-gh",
        "DB_PASSWORD": "planted-pw",
        "SERVICE_URL": "postgres://app:planted-url-pw@db/app",
    }
    for name, value in planted.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HARMLESS_SETTING", "visible")
    obs = w.call("run_command", {"command": "env"})
    assert "planted" not in obs.content
    assert "HARMLESS_SETTING=visible" in obs.content
    assert "TRESTLE_RUN_ID=run-1" in obs.content
    assert "TRESTLE_STEP_ID=fix" in obs.content
    assert f"TRESTLE_WORKSPACE={w.ws.resolve()}" in obs.content
    assert "PATH=" in obs.content


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [
        ("OPENAI_API_KEY", "x", True),
        ("openai_base_url", "http://localhost", True),
        ("MY_SERVICE_TOKEN", "x", True),
        ("SSH_AUTH_SOCK", "/tmp/agent", True),
        ("HF_HOME", "/cache", True),
        ("REDIS_URL", "redis://:hunter2@host:6379", True),
        ("PATH", "/usr/bin", False),
        ("HOME", "/home/u", False),
        ("LANG", "C.UTF-8", False),
        ("DOCS_URL", "https://example.org/a:b", False),
    ],
)
def test_secret_names_and_values(name: str, value: str, secret: bool) -> None:
    assert is_secret(name, value) is secret


def test_command_env_takes_a_parent_and_adds_context() -> None:
    env = command_env(run_id="r", step_id="s", workspace="/ws", parent={"A": "1", "API_KEY": "k"})
    assert env == {
        "A": "1",
        "TRESTLE_RUN_ID": "r",
        "TRESTLE_STEP_ID": "s",
        "TRESTLE_WORKSPACE": "/ws",
    }


def test_run_tests_runs_the_configured_command(w: World) -> None:
    obs = w.call("run_tests", "")
    assert not obs.ok
    assert "no test command is configured for this run" in obs.content
    w.ctx = ToolContext(
        workspace=w.ws, run_id="r", step_id="s", test_command="echo 1 failed; exit 1"
    )
    obs = w.call("run_tests", {})
    assert not obs.ok
    assert obs.content == "$ echo 1 failed; exit 1\n[exit code 1]\n1 failed\n"
    facts = w.gate.calls[-1].facts
    assert (facts.nature, facts.command) == ("test", "echo 1 failed; exit 1")
    assert "is not an argument" in w.call("run_tests", {"only": "x"}).content


# --- git_diff ----------------------------------------------------------------------------


def _git(ws: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@example.org", *args],
        cwd=ws,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _tree_digest(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        digest.update(str(path.relative_to(directory)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_git_diff_shows_tracked_and_untracked_changes_without_touching_the_repo(
    w: World,
) -> None:
    w.write("a.txt", "one\n")
    w.write("staged.txt", "s\n")
    w.write(".gitignore", "*.log\n")
    _git(w.ws, "init", "-q")
    _git(w.ws, "add", "-A")
    _git(w.ws, "commit", "-qm", "start")
    w.write("a.txt", "one\ntwo\n")
    w.write("staged.txt", "s2\n")
    _git(w.ws, "add", "staged.txt")
    w.write("new/file.py", "print('hi')\n")
    w.write("debug.log", "ignored\n")
    index = (w.ws / ".git" / "index").read_bytes()
    git_dir = _tree_digest(w.ws / ".git")
    status = _git(w.ws, "status", "--porcelain")

    obs = w.call("git_diff", {})
    assert obs.ok, obs.content
    assert obs.data["files"] == ["a.txt", "new/file.py", "staged.txt"]
    assert obs.content.startswith("3 files changed since the last commit:\n")
    assert "+two" in obs.content
    assert "+++ b/new/file.py\n@@ -0,0 +1 @@\n+print('hi')" in obs.content
    assert "debug.log" not in obs.content
    assert (w.ws / ".git" / "index").read_bytes() == index
    assert _tree_digest(w.ws / ".git") == git_dir  # no objects, refs or locks left behind
    assert _git(w.ws, "status", "--porcelain") == status

    obs = w.call("git_diff", {"paths": ["new"], "stat_only": True})
    assert obs.data["files"] == ["new/file.py"]
    assert "new/file.py | 1 +" in obs.content and "@@" not in obs.content
    assert not w.call("git_diff", {"paths": ["../x"]}).ok


def test_git_diff_in_a_repo_without_commits_and_outside_any_repo(w: World) -> None:
    assert "not a git repository" in w.call("git_diff", {}).content
    _git(w.ws, "init", "-q")
    w.write("f.txt", "x\n")
    obs = w.call("git_diff", {})
    assert obs.data["files"] == ["f.txt"]
    assert "no commits yet" in obs.content
    assert not (w.ws / ".git" / "index").exists()
    _git(w.ws, "add", "-A")
    _git(w.ws, "commit", "-qm", "start")
    assert w.call("git_diff", {}).content == "no changes since the last commit"


# --- finish ------------------------------------------------------------------------------


def test_finish_carries_the_claim_for_the_runtime(w: World) -> None:
    obs = w.call("finish", {"summary": "fixed the parser", "claims": ["tests pass"]})
    assert obs.ok
    claim = finish_claim(obs)
    assert claim is not None
    assert claim.summary == "fixed the parser"
    assert claim.claims == ("tests pass",)
    assert finish_claim(w.call("list_files", {})) is None
    assert "'summary' is required" in w.call("finish", {}).content
