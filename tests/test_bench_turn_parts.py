"""``bench/turn_parts.py`` runs (briefly) so that it cannot rot: every part it wraps is
still on a turn's path (a renamed function would leave its row at zero, or the wrapping
would fail), and a part is never counted as more than what contains it. Nothing here is
about speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(BENCH / "turn_parts.py"), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


def _rows(stdout: str) -> dict[str, tuple[int, float, float]]:
    """Each part's (indent, CPU us, calls) per turn, as printed."""
    table = stdout.split("(median per turn):\n")[1].splitlines()[1:]
    rows = {}
    for row in table:
        if not row.startswith("  "):
            break
        label, cpu, calls = row[2:30], row[30:].split()[0], row[30:].split()[1]
        rows[label.strip()] = (len(label) - len(label.lstrip()), float(cpu), float(calls))
    return rows


def test_every_part_of_a_reading_turn_is_reached_and_none_exceeds_its_whole() -> None:
    done = _bench("--turns", "30", "--repeat", "1")  # enough for a snapshot
    assert done.returncode == 0, done.stderr
    rows = _rows(done.stdout)
    assert len(rows) == 19, done.stdout
    for label, (_, cpu, calls) in rows.items():
        assert cpu > 0 and calls > 0, f"{label} was not reached: {done.stdout}"
    wholes: list[tuple[int, float]] = []  # the enclosing parts of the row being read
    for label, (indent, cpu, _) in rows.items():
        wholes = [w for w in wholes if w[0] < indent]
        if wholes:  # a part's CPU is within its whole's, up to the clock's tick
            assert cpu <= wholes[-1][1] * 1.05 + 5, label
        wholes.append((indent, cpu))
    assert "us of wall clock" in done.stdout


def test_without_compression_the_commit_still_encodes_its_rows() -> None:
    done = _bench("--turns", "6", "--repeat", "1", "--compression", "off")
    assert done.returncode == 0, done.stderr
    rows = _rows(done.stdout)
    assert rows["rows from the JSON"][1] > 0 and rows["bodies compressed"][2] > 0


def test_a_loop_of_one_turn_is_refused_naming_the_option() -> None:
    done = _bench("--turns", "1")
    assert done.returncode == 2
    assert "--turns must be at least 2" in done.stderr
