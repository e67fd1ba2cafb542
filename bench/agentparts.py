"""Where a Trestle agent run's time goes: the same loop with the monitors on and off.

Usage::

    python bench/agentparts.py [--turns 200] [--histories 50,200,1000] [--repeat 3]

Runs ``compare.py``'s Trestle agent loop (``sys_trestle.py``) in forked children:
the per-turn time over ``--turns`` turns, and the resume time after a crash at each
history length, once with the run's default monitors and once with its monitors
switched off (``MonitorSettings(enabled=False)``, recorded with the run). The
difference is what the monitors cost; the rest is the runtime. Prints one JSON
object; a diagnostic, not a comparison (no peer runs here).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import agentturns
import forking
import sys_trestle
from trestle.monitors.policy import MonitorSettings

TIMEOUT = 3600.0


def measure(monitors: bool, turns: int, histories: list[int], repeat: int) -> dict[str, Any]:
    sys_trestle.MONITORS = None if monitors else MonitorSettings(enabled=False)
    out: dict[str, Any] = {"us_per_turn": [], "resume_s": {}}
    with tempfile.TemporaryDirectory(prefix="agentparts-") as tmp:
        work = Path(tmp)
        for rep in range(repeat):
            d = work / f"turns-{rep}"
            d.mkdir()
            report = forking.run(lambda: sys_trestle.turns(d, turns), TIMEOUT)  # noqa: B023
            out["us_per_turn"].append(report["value"])
        for history in histories:
            prepared = work / f"history{history}"
            prepared.mkdir()
            child = forking.start(lambda: sys_trestle.resume_prepare(prepared, history))  # noqa: B023
            with contextlib.suppress(forking.ChildError):  # it died, as it should
                child.result(TIMEOUT)
            agentturns.disarm_crash(prepared)
            samples = []
            for rep in range(repeat):
                copy = work / f"resume{history}-{rep}"
                shutil.copytree(prepared, copy)
                run = forking.run(lambda: sys_trestle.resume(copy, history), TIMEOUT)  # noqa: B023
                samples.append(run["value"])
                shutil.rmtree(copy)
            out["resume_s"][str(history)] = statistics.median(samples)
            shutil.rmtree(prepared)
    out["us_per_turn"] = statistics.median(out["us_per_turn"])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--turns", type=int, default=200)
    p.add_argument("--histories", default="50,200,1000")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    histories = [int(h) for h in args.histories.split(",")]
    results = {
        "monitors on": measure(True, args.turns, histories, args.repeat),
        "monitors off": measure(False, args.turns, histories, args.repeat),
    }
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
