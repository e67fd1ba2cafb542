"""Where a resumed agent run's time goes before its first model call, part by part.

Usage::

    python bench/resume_path.py [--turns 1000] [--repeat 5]

Prepares one run of ``compare.py``'s Trestle agent loop (``sys_trestle.py``), killed in
the model call of turn ``--turns``, then resumes ``--repeat`` copies of it, each in a
new interpreter as a resume after a real crash is (the system imported, then the clock
started at the store's opening, as ``compare.py --only resume`` times it). Marks wrap
the parts of the path to the interrupted model call being made again:

- ``open the store``, ``lease``: the store's connection, and the run's lease taken;
- ``load``: the latest snapshot and the events after it (``LocalEngine.load_vetted``),
  of which ``fold the tail`` reads, decodes and folds those events (``catch_up``);
- ``monitors' hub``, ``sandbox chosen``: the monitors set up, the sandbox chosen;
- ``commit #N``: each commit on the store thread (the engine's events);
- ``probe``: the interrupted step looked at for what its attempt left running;
- ``open the session``, ``open a turn #N``: the agent step's session, and each turn
  opened over the resumed context (its redaction, token count and hash): the turns
  recorded after the conversation's last save are replayed from the record first,
  without a model call, then the interrupted one is opened;
- ``read events #N``, ``redaction #N``: each read of events from the store (inside the
  load, the session's opening and the monitors' catch-up), and each redaction of the
  messages a turn sends.

Beside each part's wall clock, the CPU of the thread that ran it (``time.thread_time``)
for the parts that are plain calls; a coroutine's (``-``) would count whatever else its
thread ran while it waited. Several threads run at once here (the loop's, the store's,
the step's checkpoint), so a part's wall clock counts its waits for the others: its CPU
says what it costs.

Prints each part's median start and duration (ms from the store's opening) over the
resumes, then the median wall clock and the process's CPU to the model call. The marks
wrap private methods and cost a little themselves: they compare trees
(``PYTHONPATH=<tree>/src``), not systems. Nothing is recorded under ``results/`` (the
published resume figures are ``compare.py``'s).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import agentturns
import forking
import sys_trestle
from hostinfo import load_average, machine_info
from trestle.store import SqliteStore
from wrapping import Part, wrap_parts

TIMEOUT = 600.0
MODEL_CALL = "the model call"
# parts a resume goes through more than once
NUMBERED = frozenset({"commit", "open a turn", "read events", "redaction"})

# (module, attribute path, label): the parts of a resume's path, as the engine names them
PARTS: tuple[Part, ...] = (
    ("trestle.store.sqlite", "SqliteStore.__init__", "open the store"),
    ("trestle.store.sqlite", "SqliteStore.acquire_lease", "lease"),
    ("trestle.engines.local", "LocalEngine.load_vetted", "load"),
    ("trestle.lifecycle.runs", "catch_up", "fold the tail"),
    ("trestle.engines.local", "LocalEngine._hub", "monitors' hub"),
    ("trestle.engines.attempts", "Attempts.sandbox_for", "sandbox chosen"),
    ("trestle.engines.local", "LocalEngine._commit", "commit"),
    ("trestle.engines.attempts", "Attempts._probe", "probe"),
    ("trestle.agent.runtime", "AgentPerformer._open", "open the session"),
    ("trestle.agent.session", "StepSession.open_turn", "open a turn"),
    ("trestle.store.sql_reads", "SqlReads.events", "read events"),
    ("trestle.agent.session", "StepSession._redacted", "redaction"),
)


class Marks:
    """Each marked part's (label, start, end, its thread's CPU or None) in ms from
    ``opened``, until the model call."""

    def __init__(self) -> None:
        self.opened = 0.0
        self.parts: list[tuple[str, float, float, float | None]] = []
        self.called: float | None = None  # perf_counter() at the model call
        self.cpu_to_call: float | None = None

    def add(self, label: str, start: float, end: float, cpu: float | None = None) -> None:
        if self.called is None:
            seen = sum(1 for name, *_ in self.parts if name.split(" #")[0] == label)
            name = f"{label} #{seen + 1}" if label in NUMBERED else label
            took = None if cpu is None else _ms(cpu)
            self.parts.append((name, _ms(start - self.opened), _ms(end - self.opened), took))


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _wrapped(fn: Callable[..., Any], label: str, marks: Marks) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def marked_async(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                marks.add(label, start, time.perf_counter())

        return marked_async

    @functools.wraps(fn)
    def marked(*args: Any, **kwargs: Any) -> Any:
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            # the CPU read inside the wall clock's window, so that it cannot span more
            used = time.thread_time() - cpu
            marks.add(label, start, time.perf_counter(), used)

    return marked


def mark_parts(marks: Marks) -> None:
    """Wrap every part of :data:`PARTS`, and the scripted model's call."""
    wrap_parts(PARTS, functools.partial(_wrapped, marks=marks))
    first_mark = agentturns.mark_turn

    def at_model_call(work: Path, turn: int) -> None:
        if marks.called is None:
            marks.called, marks.cpu_to_call = time.perf_counter(), time.process_time()
        first_mark(work, turn)

    agentturns.mark_turn = at_model_call


def resume_once(work: Path, turns: int) -> dict[str, Any]:
    """Resume the crashed run in ``work``, marked; what the marks saw."""
    marks = Marks()
    mark_parts(marks)
    run_id = (work / "run-id").read_text()
    marks.opened, cpu = time.perf_counter(), time.process_time()
    store = SqliteStore(work / sys_trestle.STORE)
    try:
        sys_trestle._run_loop(store, run_id, work, turns + 1)
    finally:
        store.close()
    if marks.called is None or marks.cpu_to_call is None:
        raise RuntimeError(f"{work}: the resumed run made no model call")
    return {
        "parts": marks.parts,
        "wall_ms": _ms(marks.called - marks.opened),
        "cpu_ms": _ms(marks.cpu_to_call - cpu),
    }


def prepare(where: Path, turns: int) -> None:
    """A run of ``turns`` turns killed in the model call of its last, in ``where``."""
    child = forking.start(lambda: sys_trestle.resume_prepare(where, turns))
    with contextlib.suppress(forking.ChildError):  # it died, as it should
        child.result(TIMEOUT)
    agentturns.disarm_crash(where)


def resume_in_new_interpreter(prepared: Path, copy: Path, turns: int) -> dict[str, Any]:
    shutil.copytree(prepared, copy)
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--one", str(copy), "--turns", str(turns)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    finally:
        shutil.rmtree(copy)
    if done.returncode != 0:
        raise SystemExit(f"a resume failed (exit {done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def table(resumes: list[dict[str, Any]]) -> list[tuple[str, float, float, float | None]]:
    """Each part seen by every resume: its median start, duration and CPU (None for a
    coroutine), by start."""
    seen: dict[str, list[tuple[float, float, float | None]]] = {}
    for resume in resumes:
        for name, start, end, cpu in resume["parts"]:
            seen.setdefault(name, []).append((start, end - start, cpu))
    rows = []
    for name, got in seen.items():
        if len(got) == len(resumes):
            cpus = [c for _, _, c in got if c is not None]
            cpu = statistics.median(cpus) if len(cpus) == len(got) else None
            rows.append(
                (
                    name,
                    statistics.median(s for s, _, _ in got),
                    statistics.median(d for _, d, _ in got),
                    cpu,
                )
            )
    return sorted(rows, key=lambda row: row[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # one marked resume
    args = parser.parse_args(argv)
    if args.turns < 1 or args.repeat < 1:
        parser.error("--turns and --repeat must be at least 1")
    if args.one is not None:
        print(json.dumps(resume_once(args.one, args.turns)))
        return 0
    commit = machine_info(Path(tempfile.gettempdir()))["trestle_commit"]
    print(f"trestle commit {commit}; load average {load_average()} before")
    with tempfile.TemporaryDirectory(prefix="resume-path-") as tmp:
        prepared = Path(tmp) / "crashed"
        prepared.mkdir()
        prepare(prepared, args.turns)
        resumes = [
            resume_in_new_interpreter(prepared, Path(tmp) / f"resume-{i}", args.turns)
            for i in range(args.repeat)
        ]
    print(f"\na resume after {args.turns} turns, {args.repeat} resumes (median ms):")
    print(f"  {'part':<24} {'start':>8} {'takes':>8} {'CPU':>8}")
    for name, start, took, cpu in table(resumes):
        used = "-" if cpu is None else f"{cpu:.2f}"
        print(f"  {name:<24} {start:8.2f} {took:8.2f} {used:>8}")
    wall = statistics.median(r["wall_ms"] for r in resumes)
    cpu = statistics.median(r["cpu_ms"] for r in resumes)
    print(f"  {MODEL_CALL:<24} {wall:8.2f}")
    print(f"wall to the model call {wall:.2f} ms; the process's CPU to it {cpu:.2f} ms")
    print(f"load average {load_average()} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
