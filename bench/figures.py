"""One measured headline figure, written in the shape ``stale.py`` reads.

A bench that measures a figure of ``bench/published.json`` calls ``record`` once per
figure: the figure's id, the value in the published unit, the spread of the samples
behind it, the command that measured it and the machine (``hostinfo.machine_info``,
whose commit is that of the ``trestle`` package imported). Each call writes its own
file, ``results/figure-<id>-<time>.json``, so runs never overwrite one another and
the latest of each figure is found by its ``measured_at``. Figures one run of a bench
measured together share its ``run`` (:func:`new_run`): ``stale.py`` reads a figure's
ratio to a reference (another system, the bare interpreter) only beside that figure
from the same run.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hostinfo import load_average

RESULTS_DIR = Path(__file__).resolve().parent / "results"  # git-ignored


def new_run() -> str:
    """A name for one run of a bench, which each figure it records carries (``run``)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def record(
    figure: str,
    value: float,
    unit: str,
    machine: dict[str, str],
    *,
    samples: Sequence[float] = (),
    results_dir: Path = RESULTS_DIR,
    run: str | None = None,
) -> Path:
    """Write one figure's result; the file written.

    ``samples`` are the repetitions behind ``value`` in its unit; their minimum and
    maximum are the spread (none for a count, which has no repetitions). ``run`` names
    the bench run that measured it, the same for every figure of that run.
    """
    now = datetime.now(UTC)
    result: dict[str, Any] = {
        "figure": figure,
        "value": value,
        "unit": unit,
        "spread": [min(samples), max(samples)] if samples else None,
        "command": shlex.join(["python", *sys.argv]),
        "measured_at": now.isoformat(timespec="microseconds"),
        "machine": {**machine, "load_average_at_record": load_average()},
    }
    if run is not None:
        result["run"] = run
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = now.strftime("%Y%m%d-%H%M%S-%f")
    path = results_dir / f"figure-{figure}-{stamp}.json"
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return path
