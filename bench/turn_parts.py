"""Where an agent turn's CPU goes, part by part, on whichever thread runs each part.

Usage::

    python bench/turn_parts.py [--turns 300] [--repeat 3]
        [--reads-in understand|execute] [--compression on|off]
        [--text random|real] [--trajectories DIR]

Runs ``compare.py``'s Trestle agent loop (``sys_trestle.py``, monitors on, as the
summary's turn row runs it) in forked children, ``--repeat`` times, with each part of a
turn's path wrapped to add up the CPU time of the thread that runs it
(``time.thread_time``): the loop thread's monitors, the session's redaction, request
hash and token count, and the store thread's commit with the encoding of its rows. A
part called inside itself (a monitor's alert fed to the monitors) is counted once, at
its outermost call. Prints each part's CPU per turn (the median over the children),
then the wall clock and the process's CPU per turn (every thread's), as
``agentparts.py`` times them: between consecutive model calls, from the second.

``--reads-in execute`` makes the reads in the plan's step, where the drift monitor
embeds every read (see ``agentparts.py``; its alerts only noted). numpy's sums for its
embedding are imported before the loops start (a process imports them once, at its
first long text of new words: in the random loop turn 1's, before the timed turns, in
real text some later turn's, whose 60-160 ms would be spread over the turns timed); the
import's time is printed apart. ``--compression off``
stores every payload at zlib's level 0 and every row's body as it is (the store reads
both): what compressing costs a turn, on whatever thread it runs. ``--text real``
gives the turns real agents' reasoning and observations (``realtext.py``, from
``--trajectories``, the shared calibration set by default) in place of random
characters: text that compresses, words that repeat.

The wrappers cost a microsecond or so a call themselves; they compare parts and trees
(``PYTHONPATH=<tree>/src``), not systems. Nothing is recorded under ``results/`` (the
published turn figures are ``compare.py``'s).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import agentloop
import agentparts
import forking
import realtext
import sys_trestle
from hostinfo import load_average, machine_info
from wrapping import Part, wrap_parts

TIMEOUT = 1800.0

# (module, attribute path, label): "  " before a label: a part of the one above it
PARTS: tuple[Part, ...] = (
    ("trestle.engines.local", "LocalEngine._advance", "the engine's advance"),
    ("trestle.monitors.hub", "MonitorHub.feed", "  the monitors"),
    ("trestle.monitors.stream", "EventTrace.feed", "    the trace of turns"),
    ("trestle.monitors.loops", "RepeatMonitor.observe", "    repeats"),
    ("trestle.monitors.shown", "ShownLines._show", "    lines shown"),
    ("trestle.monitors.drift", "RelevanceMonitor.observe", "    drift"),
    ("trestle.engines.local", "LocalEngine._snapshot", "the snapshot"),
    ("trestle.monitors.saved", "save", "  the monitors' save"),
    ("trestle.core.state", "RunState.snapshot_json", "  the state's JSON"),
    ("trestle.engines.local", "signed_snapshot", "  signed"),
    ("trestle.store.decoding", "stored_state", "the state compressed (store)"),
    ("trestle.agent.session", "StepSession._redacted", "the session's redaction"),
    ("trestle.core.conversation", "RequestHasher.hash", "the request's hash"),
    ("trestle.core.estimate", "TokenTally.__call__", "the token count"),
    ("trestle.store.sqlite", "SqliteStore.append", "the commit"),
    ("trestle.core.events", "event_json", "  events as JSON"),
    ("trestle.store.decoding", "row_body", "  rows from the JSON"),
    ("trestle.store.payloads", "pack", "    long strings apart"),
    ("trestle.store.bodies", "compressed", "    bodies compressed"),
)


class Tally:
    """Each part's thread CPU and calls, its outermost calls only (per thread)."""

    def __init__(self) -> None:
        self.cpu: defaultdict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        self._depth = threading.local()

    def wrapped(self, fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        @functools.wraps(fn)
        def counted(*args: Any, **kwargs: Any) -> Any:
            depth: Counter[str] = self._depths()
            depth[label] += 1
            start = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                depth[label] -= 1
                if not depth[label]:
                    self.cpu[label] += time.thread_time() - start
                    self.calls[label] += 1

        return counted

    def _depths(self) -> Counter[str]:
        depths: Counter[str] | None = getattr(self._depth, "of", None)
        if depths is None:
            depths = self._depth.of = Counter()
        return depths


def count_parts(tally: Tally) -> None:
    """Wrap every part of :data:`PARTS`."""
    wrap_parts(PARTS, tally.wrapped)


def without_compression() -> None:
    """Payloads stored at zlib's level 0, rows' bodies as they are (both readable)."""
    from trestle.store import bodies, payloads

    payloads.LEVEL = 0
    bodies.compressed = lambda body: None


def embedding_imported() -> str:
    """Have the drift monitor's embedder import numpy's sums in this process (the
    children fork from it), as its first long text of new words would; what that took,
    or why nothing was imported."""
    from trestle.monitors.similarity import HashingEmbedder

    start = time.perf_counter()
    if not HashingEmbedder().vectorised:
        return "not installed (the plain sums: nothing to import)"
    return f"imported in {(time.perf_counter() - start) * 1000:.0f} ms"


def one_loop(work: Path, turns: int, compress: bool) -> dict[str, Any]:
    """In a forked child: the loop, counted; per turn, each part's µs of CPU."""
    if not compress:
        without_compression()
    tally = Tally()
    count_parts(tally)
    wall = sys_trestle.turns(work, turns)
    return {
        "wall": wall,
        "cpu": agentloop.cpu_us_per_turn(turns),
        "parts": {label: tally.cpu[label] / turns * 1e6 for label in tally.cpu},
        "calls": {label: tally.calls[label] / turns for label in tally.calls},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reads-in", choices=("understand", "execute"), default="understand")
    parser.add_argument("--compression", choices=("on", "off"), default="on")
    parser.add_argument("--text", choices=("random", "real"), default="random")
    parser.add_argument("--trajectories", type=Path, default=realtext.ROOT)
    args = parser.parse_args(argv)
    if args.turns < 2 or args.repeat < 1:
        parser.error(
            "--turns must be at least 2 (a turn is timed from the second call) "
            "and --repeat at least 1"
        )
    sys_trestle.READS_IN = args.reads_in
    if args.text == "real":
        try:  # the run makes one call more than it reads
            realtext.use_real_text(args.trajectories, turns=args.turns + 1)
        except ValueError as exc:
            parser.error(str(exc))
    commit = machine_info(Path(tempfile.gettempdir()))["trestle_commit"]
    print(f"trestle commit {commit}; load average {load_average()} before")
    if args.reads_in == "execute":  # every read drifts: alerts noted, every turn alike
        sys_trestle.MONITORS = agentparts.NOTED_ONLY
        print(f"the drift monitor's numpy sums: {embedding_imported()}, before the turns")
    runs = []
    with tempfile.TemporaryDirectory(prefix="turn-parts-") as tmp:
        for rep in range(args.repeat):
            work = Path(tmp) / f"loop-{rep}"
            work.mkdir()
            compress = args.compression == "on"
            report = forking.run(lambda: one_loop(work, args.turns, compress), TIMEOUT)  # noqa: B023
            runs.append(report["value"])
    print(
        f"\n{args.turns} turns of {args.text} text, reads in {args.reads_in}, "
        f"compression {args.compression}, "
        f"{args.repeat} loops (median per turn):"
    )
    print(f"  {'part':<28} {'CPU us':>8} {'calls':>6}")
    for _, _, label in PARTS:
        cpu = statistics.median(r["parts"].get(label, 0.0) for r in runs)
        calls = statistics.median(r["calls"].get(label, 0.0) for r in runs)
        print(f"  {label:<28} {cpu:8.1f} {calls:6.2f}")
    wall = statistics.median(r["wall"] for r in runs)
    cpu = statistics.median(r["cpu"] for r in runs)
    print(f"a turn: {wall:.0f} us of wall clock, {cpu:.0f} us of the process's CPU")
    print(f"load average {load_average()} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
