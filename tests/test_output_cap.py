"""A command's output costs the driver only what it keeps: real commands that print
hundreds of megabytes, a timeout in the middle, characters split between chunks."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from test_cli import cli_env
from trestle.execution.actions import OutputKeeper, cap_output, run_shell
from trestle.execution.sandbox import find_bwrap
from trestle.tools.base import ToolContext
from trestle.tools.commands import RunCommand, RunCommandArgs

LINE = "0123456789\n"
PRINTED = 300 * 1024 * 1024 // len(LINE) * len(LINE)  # bytes: a whole number of lines
RSS_BOUND = 64 * 1024  # KiB the driver's peak may grow by while it runs the step

# The child is the driver: it runs the plan step (in the sandbox where there is one) and
# reports how far its own peak resident size grew, which the test runner's would hide.
DRIVER = """
import asyncio, json, resource, sys
from pathlib import Path
from trestle.execution.actions import StepContext, perform
from trestle.formats.planfile import parse_plan
from trestle.execution.sandbox import Sandbox, find_bwrap

plan = parse_plan(sys.argv[1])
workspace = Path(sys.argv[2])
bwrap, _ = find_bwrap()
sandbox = Sandbox(bwrap) if bwrap else None
ctx = StepContext("run", "flood", 1, "key", workspace, workspace, sandbox)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = asyncio.run(perform(plan.steps[0], ctx))
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"grown": grown, "status": result.status, "output": result.output,
                  "sandboxed": sandbox is not None}))
"""


def _whole(head: str, body: str, tail: str, copies: int) -> tuple[int, str, str]:
    """The length, first 4,000 and last 4,000 characters of head + body * copies + tail."""
    return (
        len(head) + len(body) * copies + len(tail),
        (head + body * 4_000)[:4_000],
        (body * 4_000 + tail)[-4_000:],
    )


def test_a_step_printing_300_mb_keeps_the_drivers_memory_bounded(tmp_path: Path) -> None:
    command = f"printf BEGIN; yes 0123456789 | head -c {PRINTED}; printf END"
    plan = json.dumps({"goal": "flood", "steps": [{"id": "flood", "run": command}]})
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, plan, str(tmp_path)],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(done.stdout)
    assert report["sandboxed"] == (find_bwrap()[0] is not None)
    assert report["status"] == "ok"
    assert report["grown"] < RSS_BOUND, f"the driver grew by {report['grown']} KiB"
    total, head, tail = _whole("BEGIN", LINE, "END", PRINTED // len(LINE))
    assert report["output"] == f"{head}\n… [{total - 8_000} characters cut] …\n{tail}"


def test_a_timeout_keeps_what_was_printed_before_it_capped_the_same_way(
    tmp_path: Path,
) -> None:
    # more than one chunk before the timeout: reading it all at once at the end lost it
    command = "printf BEGIN; yes 0123456789 | head -c 1100000; printf END; sleep 30"
    result = asyncio.run(run_shell(command, cwd=tmp_path, env=cli_env(), timeout=1))
    assert result.status == "timeout"
    total, head, tail = _whole("BEGIN", LINE, "END", 100_000)
    assert result.output == f"{head}\n… [{total - 8_000} characters cut] …\n{tail}"


def test_characters_split_between_chunks_arrive_whole(tmp_path: Path) -> None:
    # one byte first, so four-byte characters straddle every read boundary
    script = "import sys; sys.stdout.write('x' + '\\U0001F600' * 300_000 + 'é' * 5)"
    command = f"{sys.executable} -c {json.dumps(script)}"
    result = asyncio.run(run_shell(command, cwd=tmp_path, env=cli_env(), timeout=60))
    assert result.status == "ok"
    assert result.output == cap_output("x" + "\U0001f600" * 300_000 + "é" * 5)
    assert "\ufffd" not in result.output


def test_the_agents_command_is_cut_once_at_its_cap_with_the_true_count(tmp_path: Path) -> None:
    ctx = ToolContext(workspace=tmp_path, run_id="r", step_id="s", output_cap=1_000)
    seen = asyncio.run(RunCommand().run(ctx, RunCommandArgs(command="seq 1 20000")))
    whole = "".join(f"{n}\n" for n in range(1, 20_001))
    assert seen.content == f"$ seq 1 20000\n[exit code 0]\n{cap_output(whole, 1_000)}"
    assert f"[{len(whole) - 1_000} characters cut]" in seen.content


def test_the_cut_count_is_exact_for_an_odd_limit() -> None:
    assert cap_output("abcdefg", 3) == "a\n… [5 characters cut] …\ng"
    assert cap_output("abc", 1) == "\n… [3 characters cut] …\n"
    assert cap_output("abc", 3) == "abc"


@given(
    text=st.text(max_size=300),
    limit=st.integers(min_value=0, max_value=60),
    cuts=st.lists(st.integers(min_value=0, max_value=1_200), max_size=12),
    bad=st.booleans(),
)
def test_the_keeper_gives_what_capping_the_whole_output_gives(
    text: str, limit: int, cuts: list[int], bad: bool
) -> None:
    data = text.encode() + (b"\xff\xc3" if bad else b"")  # ends in invalid and half a char
    kept = OutputKeeper(limit)
    start = 0
    for end in sorted(cuts):
        kept.feed(data[start:end])
        start = max(start, end)
    kept.feed(data[start:])
    assert kept.text() == cap_output(data.decode("utf-8", errors="replace"), limit)
