"""``bench/resume_path.py`` runs (briefly) so that it cannot rot: it prepares a crashed
agent run, resumes it in a new interpreter, and its marks reach every part of the path
to the model call. Nothing here is about speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
PARTS = (
    "open the store",
    "lease",
    "load",
    "fold the tail",
    "monitors' hub",
    "sandbox chosen",
    "commit #1",
    "probe",
    "open the session",
    "open a turn #1",
    "read events #1",
    "redaction #1",
)


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(BENCH / "resume_path.py"), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


def test_the_resume_path_bench_marks_every_part_before_the_model_call() -> None:
    done = _bench("--turns", "30", "--repeat", "1")
    assert done.returncode == 0, done.stderr
    rows = done.stdout.split("(median ms):\n")[1].splitlines()[1:]
    parts = {row[2:26].strip(): row[26:].split() for row in rows if row.startswith("  ")}
    assert set(PARTS) <= set(parts), done.stdout
    called = float(parts.pop("the model call")[0])
    for name, (start, takes, cpu) in parts.items():  # each one marked ended before the call
        assert float(start) >= 0 and float(start) + float(takes) <= called + 0.01, name
        # a plain call's thread CPU, no more than its wall clock; a coroutine's not given.
        # The two are different clocks (the scheduler's and the monotonic one), which a
        # virtual machine lets disagree by tens of microseconds (0.71 against 0.68 seen)
        assert cpu == "-" or 0 <= float(cpu) <= float(takes) * 1.05 + 0.05, name
    order = list(parts)
    assert order.index("load") < order.index("probe") < order.index("open a turn #1")
    assert "wall to the model call " in done.stdout


def test_a_resume_of_no_turns_is_refused_naming_the_option() -> None:
    done = _bench("--turns", "0")
    assert done.returncode == 2
    assert "--turns and --repeat must be at least 1" in done.stderr
