"""A seconds-long run of the overhead benchmark, for the test suite.

``run_quick()`` runs ``bench/overhead.py --quick`` in a temporary directory and
returns its headline figures (see :func:`overhead.flatten`). It asserts nothing about
time: these machines are too noisy for that. What a test can check is that every
figure is positive and that Trestle committed about one transaction per sequential
step (``transactions_per_step`` and ``appends_per_step``, both counts).

Import it with ``bench/`` on ``sys.path`` (``import smoke``) or by file path; it puts
its own directory on the path so that ``overhead`` and ``benchsteps`` resolve.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import overhead  # resolves through the path entry above, however this file was loaded


def run_quick() -> dict[str, float]:
    """The quick benchmark's figures: 50 steps, width 8, sleep 0.05 s, one repetition."""
    with tempfile.TemporaryDirectory(prefix="trestle-bench-") as tmp:
        results = overhead.run_benchmarks(overhead.QUICK, Path(tmp))
    return overhead.flatten(results)


if __name__ == "__main__":
    for name, value in run_quick().items():
        print(f"{name:40} {value:12.4f}")
