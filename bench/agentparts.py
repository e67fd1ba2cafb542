"""Where a Trestle agent run's time goes: the same loop with the monitors on and off.

Usage::

    python bench/agentparts.py [--turns 200] [--histories 50,200,1000] [--repeat 3]
        [--reads-in understand|execute] [--read-with read_file|run_command]

Runs ``compare.py``'s Trestle agent loop (``sys_trestle.py``) in forked children:
the per-turn time over ``--turns`` turns (wall clock, and CPU time of the whole
process: every thread's, steadier on a busy machine), and the resume time after a crash at each
history length, once with the run's default monitors and once with its monitors
switched off (``MonitorSettings(enabled=False)``, recorded with the run). The
difference is what the monitors cost; the rest is the runtime. ``--reads-in execute``
makes the reads in the plan's one step instead of ``understand``: its objective does
not name the files, so the drift monitor scores every read unrelated, the costly case
(turns only: a run resumed in that step finishes it by its passing check).
``--read-with run_command`` reads each note with the command ``cat <note>`` instead of
the ``read_file`` tool: a turn whose tool call takes milliseconds (a sandboxed process),
time the drift monitor's worker can embed the turn's reasoning in.
Prints one JSON object; a diagnostic, not a comparison (no peer runs here).
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

import agentloop
import agentturns
import forking
import sys_trestle
from trestle.core.records.monitors import MonitorSettings

TIMEOUT = 3600.0


MODES = {"monitors on": None, "monitors off": MonitorSettings(enabled=False)}
# reading in "execute", every read drifts: the drift monitor warns, then would pause the
# run; its alerts only noted, the monitors do all their work and every turn is the same
NOTED_ONLY = MonitorSettings(actions={"info": "note", "warning": "note", "critical": "note"})


def measure(turns: int, histories: list[int], repeat: int) -> dict[str, Any]:
    """Both modes, interleaved, so the machine's load meets them alike."""
    per_turn: dict[str, list[float]] = {m: [] for m in MODES}
    cpu_per_turn: dict[str, list[float]] = {m: [] for m in MODES}
    resumes: dict[str, dict[str, list[float]]] = {m: {} for m in MODES}
    with tempfile.TemporaryDirectory(prefix="agentparts-") as tmp:
        work = Path(tmp)
        for rep in range(repeat):
            for mode, monitors in MODES.items():
                sys_trestle.MONITORS = monitors
                d = work / f"turns-{rep}-{len(per_turn[mode])}-{mode[-3:].strip()}"
                d.mkdir()
                report = forking.run(lambda: _turns(d, turns), TIMEOUT)  # noqa: B023
                per_turn[mode].append(report["value"]["wall"])
                cpu_per_turn[mode].append(report["value"]["cpu"])
        for history in histories:
            prepared = {}
            for mode, monitors in MODES.items():
                sys_trestle.MONITORS = monitors
                where = prepared[mode] = work / f"history{history}-{mode[-3:].strip()}"
                where.mkdir()
                child = forking.start(lambda: sys_trestle.resume_prepare(where, history))  # noqa: B023
                with contextlib.suppress(forking.ChildError):  # it died, as it should
                    child.result(TIMEOUT)
                agentturns.disarm_crash(where)
            for rep in range(repeat):
                for mode in MODES:
                    copy = work / f"resume{history}-{rep}"
                    shutil.copytree(prepared[mode], copy)
                    run = forking.run(lambda: sys_trestle.resume(copy, history), TIMEOUT)  # noqa: B023
                    resumes[mode].setdefault(str(history), []).append(run["value"])
                    shutil.rmtree(copy)
            for where in prepared.values():
                shutil.rmtree(where)
    return {
        mode: {
            "us_per_turn": statistics.median(per_turn[mode]),
            "cpu_us_per_turn": statistics.median(cpu_per_turn[mode]),
            "resume_s": {h: statistics.median(v) for h, v in resumes[mode].items()},
        }
        for mode in MODES
    }


def _turns(work: Path, turns: int) -> dict[str, float]:
    """A loop's microseconds per turn, wall clock and the process's CPU time."""
    wall = sys_trestle.turns(work, turns)
    return {"wall": wall, "cpu": agentloop.cpu_us_per_turn(turns)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--turns", type=int, default=200)
    p.add_argument("--histories", default=None, help="default 50,200,1000; none in execute")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--reads-in", choices=("understand", "execute"), default="understand")
    p.add_argument("--read-with", choices=("read_file", "run_command"), default="read_file")
    args = p.parse_args(argv)
    sys_trestle.READS_IN = args.reads_in
    sys_trestle.READ_WITH = args.read_with
    chosen = "50,200,1000" if args.histories is None else args.histories
    if args.reads_in == "execute":
        MODES["monitors on"] = NOTED_ONLY
        if args.histories:
            # the crash lands in the plan's step, whose check (a note is there) passes on
            # the files already read: the resumed run's probe finds the step done and
            # goes on without a model call, so there is no call to time a resume to
            p.error(
                "--reads-in execute times turns only: a run resumed there finishes the "
                "interrupted step by its passing check, without a model call; "
                "time resumes with --reads-in understand"
            )
        chosen = ""
    histories = [int(h) for h in chosen.split(",") if h]
    print(json.dumps(measure(args.turns, histories, args.repeat), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
