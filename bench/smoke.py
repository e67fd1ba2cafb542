"""A seconds-long run of the overhead benchmark, for the test suite.

``run_quick()`` runs ``bench/overhead.py --quick`` in a temporary directory and
returns its headline figures (see :func:`overhead.flatten`). It asserts nothing about
time: these machines are too noisy for that. What a test can check is that every
figure is positive and that Trestle committed about one transaction per sequential
step (``transactions_per_step`` and ``appends_per_step``, both counts).

``run_compare_smoke(work)`` runs ``bench/compare.py``'s five workloads for Trestle,
LangGraph and DBOS at the smallest sizes, so that none of the implementations rots.

Import it with ``bench/`` on ``sys.path`` (``import smoke``) or by file path; it puts
its own directory on the path so that ``overhead`` and ``benchsteps`` resolve.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # these resolve through the path entry above, however this file was loaded
import overhead


def run_quick() -> dict[str, float]:
    """The quick benchmark's figures: 50 steps, width 8, sleep 0.05 s, one repetition."""
    with tempfile.TemporaryDirectory(prefix="trestle-bench-") as tmp:
        results = overhead.run_benchmarks(overhead.QUICK, Path(tmp))
    return overhead.flatten(results)


if __name__ == "__main__":
    for name, value in run_quick().items():
        print(f"{name:40} {value:12.4f}")


def run_compare_smoke(work: Path) -> dict[str, Any]:
    """Every comparison workload for every system at the smallest sizes (tens of seconds).

    Returns what ``compare.run_all`` returns: raw samples and summaries per workload.
    """
    return compare.run_all(compare.SMOKE, compare.WORKLOADS, compare.SYSTEMS, work)
