"""What the sandbox costs: the same commands and the same plans, with and without it.

Usage::

    python bench/sandbox_cost.py [--commands 200] [--steps 100] [--width 32] [--repeat 3]
    python bench/sandbox_cost.py --host-sockets 2000 [--commands 200] [--repeat 3]

Three workloads, each run unconfined and in bubblewrap, alternating, ``--repeat`` times:

commands
    ``run_shell("true")`` back to back, as a check or a tool call runs it. Figures: the
    median time per command, and the driver's CPU per command (this process, all its
    threads: building the sandbox's arguments, starting it, reading its output).
plan
    A chain of ``--steps`` ``run: "true"`` steps on a SQLite store, through
    ``LocalEngine.run``. Figure: wall time per step.
fan-out
    One root, ``--width`` steps running ``sleep 0.2`` at once, one join (``compare.py``'s
    and ``overhead.py``'s fan-out with commands), through ``LocalEngine.run``. Figure:
    makespan / critical path, the critical path being the same plan at width 1, and
    the driver's CPU for the wide run; and how its starts went: how long the thread
    running the event loop was held in them (a start waits for the new process's exec),
    and how far apart the first and the last sleeper's start ended. Beside it, what
    the engine adds: the fan-out's time beyond its critical path, against the same
    ``--width`` commands started at once through ``run_shell`` with no engine, beyond
    one of them alone (what the machine's cores allow the processes and their
    sandboxes). ``--width 0`` leaves it out.

Reported as same-run ratios (sandboxed / unconfined) and the added milliseconds.

``--submodules N`` measures instead what submodules cost a sandboxed command's start:
the driver's CPU building one command's arguments (median of ``--commands`` builds) in
a workspace that is a repository of no gitlinks, then of N (half checked out, with a
``gitdir:`` file, half never checked out), each of whose checkouts is held.

``--host-sockets N`` measures instead what the host's UNIX sockets cost a sandboxed
command: N listening sockets are bound in one place at a time (a directory the sandbox
hides, one it shows again read-only, the workspace, one under the private ``/tmp`` it
never shows), and for each the driver's CPU building one command's arguments (median
of ``--commands`` builds), the sockets covered (mounts), and per ``true`` command
bubblewrap's CPU (its children's user and system time) and the wall clock (medians of
``--commands``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from trestle.core.plan import Plan, Step
from trestle.core.policy import SandboxPolicy
from trestle.engines.local import LocalEngine
from trestle.execution.actions import run_shell
from trestle.execution.sandbox import Cell, Mode, choose, find_bwrap
from trestle.formats.planfile import parse_plan
from trestle.lifecycle.runs import create_run
from trestle.store import SqliteStore

SLEEP = 0.2  # seconds each fan-out step sleeps
PLACES = ("hidden", "shown", "workspace", "unshown")  # where --host-sockets binds them


async def _commands(count: int, cell: Cell | None, workspace: Path) -> tuple[float, float]:
    """The median seconds per command and the driver's CPU seconds per command."""
    times = []
    cpu = time.process_time()
    for _ in range(count):
        started = time.perf_counter()
        result = await run_shell("true", cwd=workspace, env={}, timeout=30, cell=cell)
        times.append(time.perf_counter() - started)
        assert result.status == "ok", result
    return statistics.median(times), (time.process_time() - cpu) / count


def _drive(plan: Plan, mode: Mode, root: Path) -> float:
    """Seconds of ``LocalEngine.run`` for ``plan`` in a fresh workspace and store."""
    workspace = root / f"ws-{mode}-{time.monotonic_ns()}"
    workspace.mkdir()
    store = SqliteStore(root / f"{workspace.name}.db")
    run_id = create_run(store, plan, workspace=workspace)
    engine = LocalEngine(store, sandbox=mode)
    started = time.perf_counter()
    state = asyncio.run(engine.run(run_id))
    elapsed = time.perf_counter() - started
    engine.close()
    store.close()
    assert state.finished == "succeeded", state.finished
    return elapsed


def _plan(steps: int, mode: Mode, root: Path) -> float:
    lines = ["steps:"]
    for n in range(steps):
        needs = f", needs: [s{n - 1}]" if n else ""
        lines.append(f"  - {{id: s{n}, run: 'true'{needs}}}")
    return _drive(parse_plan("\n".join(lines), source="bench"), mode, root) / steps


def _fanout_plan(width: int) -> Plan:
    sleepers = tuple(f"w{i:03d}" for i in range(width))
    return Plan(
        goal=f"benchmark: fan-out of {width} x sleep {SLEEP:g}",
        checkpoints="off",
        steps=(
            Step(id="root", run="true"),
            *(Step(id=s, run=f"sleep {SLEEP:g}", needs=("root",)) for s in sleepers),
            Step(id="join", run="true", needs=sleepers),
        ),
    )


class _Starts:
    """Every process start's span (``subprocess.Popen``'s construction, where the
    starting thread waits for the exec), and whether the thread running the event loop
    made it: how long the loop was held by starts, and how far apart the first and last
    start of a fan-out ended."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float, bool]] = []
        self._made = subprocess.Popen.__init__

    def __enter__(self) -> _Starts:
        made, spans = self._made, self.spans

        def timed(popen: Any, *args: Any, **kwargs: Any) -> None:
            begun = time.perf_counter()
            try:
                made(popen, *args, **kwargs)
            finally:
                on_loop = threading.current_thread() is threading.main_thread()
                spans.append((begun, time.perf_counter(), on_loop))

        subprocess.Popen.__init__ = timed  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.Popen.__init__ = self._made  # type: ignore[method-assign]

    def on_loop(self) -> float:
        return sum(end - begun for begun, end, loop in self.spans if loop)

    def spread(self) -> float:
        ends = sorted(end for _, end, _ in self.spans)
        return ends[-2] - ends[1] if len(ends) > 3 else 0.0  # the root's and join's left out


def _fanout(width: int, mode: Mode, root: Path) -> tuple[float, float, float, float, float]:
    """Makespan / critical path, the makespan, the driver's CPU for the wide run, the
    loop's time in its starts and how far apart its sleepers' starts ended."""
    cpu = time.process_time()
    with _Starts() as starts:
        makespan = _drive(_fanout_plan(width), mode, root)
    cpu = time.process_time() - cpu
    critical = _drive(_fanout_plan(1), mode, root)
    return makespan / critical, makespan, cpu, starts.on_loop(), starts.spread()


def _alone(width: int, cell: Cell | None, workspace: Path) -> float:
    """The fan-out's sleepers with no engine: ``width`` of ``run_shell`` at once in
    ``cell`` (or unconfined), and how many seconds longer they take than one alone."""

    async def sleepers(count: int) -> float:
        started = time.perf_counter()
        done = await asyncio.gather(
            *(
                run_shell(f"sleep {SLEEP:g}", cwd=workspace, env={}, timeout=30, cell=cell)
                for _ in range(count)
            )
        )
        assert all(result.status == "ok" for result in done), done
        return time.perf_counter() - started

    return asyncio.run(sleepers(width)) - asyncio.run(sleepers(1))


def _bound(count: int, where: Path) -> list[socket.socket]:
    """``count`` listening UNIX sockets in ``where``, as a host's daemons hold them."""
    where.mkdir(parents=True, exist_ok=True)
    held = []
    for n in range(count):
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(where / f"d{n}.sock"))
        server.listen(1)
        held.append(server)
    return held


def _socket_cost(
    count: int, place: str, commands: int, root: Path
) -> tuple[float, float, float, int]:
    """With ``count`` sockets bound in ``place``: the driver's CPU seconds to build one
    command's arguments, bubblewrap's CPU seconds and the wall seconds per command, and
    the sockets covered."""
    ws = root / "ws"
    hidden = root / "hidden"  # hidden as a store's directory is
    shown = root / "shown"  # under the private /tmp, shown read-only (a virtualenv's)
    ws.mkdir(exist_ok=True)
    shown.mkdir(exist_ok=True)
    where = {"hidden": hidden, "shown": shown, "workspace": ws / "run", "unshown": root / "unshown"}
    policy = SandboxPolicy(read=(str(shown),))
    cell = Cell(choose("auto", hidden=(hidden,), policy=policy), ws, "bench")
    held = _bound(count, where[place])
    try:
        argv = cell.argv("true", ws)  # the first one works the layout out
        covered = sum(1 for a, b in itertools.pairwise(argv) if b == "/dev/null")
        builds = []
        for _ in range(commands):
            cpu = time.process_time()
            cell.argv("true", ws)
            builds.append(time.process_time() - cpu)
        children, walls = [], []
        for _ in range(commands):
            started = time.perf_counter()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            result = asyncio.run(run_shell("true", cwd=ws, env={}, timeout=30, cell=cell))
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            walls.append(time.perf_counter() - started)
            assert result.status == "ok", result
            children.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    finally:
        for server in held:
            server.close()
        shutil.rmtree(where[place], ignore_errors=True)
    return statistics.median(builds), statistics.median(children), statistics.median(walls), covered


def _with_gitlinks(ws: Path, count: int) -> None:
    """``ws`` a repository whose index holds ``count`` gitlinks, ``vendor/mNNNN``: the
    even ones checked out (a ``gitdir:`` file into ``.git/modules``), the odd not."""
    subprocess.run(["git", "init", "-q", str(ws)], check=True)
    commit = "1" * 40
    listed = "".join(f"160000 {commit}\tvendor/m{n:04d}\n" for n in range(count))
    subprocess.run(
        ["git", "-C", str(ws), "update-index", "--index-info"], input=listed.encode(), check=True
    )
    for n in range(count):
        checkout = ws / "vendor" / f"m{n:04d}"
        checkout.mkdir(parents=True)
        if n % 2 == 0:
            (ws / ".git" / "modules" / f"m{n:04d}").mkdir(parents=True)
            (checkout / ".git").write_text(f"gitdir: ../../.git/modules/m{n:04d}\n")


def _submodule_cost(count: int, commands: int, root: Path) -> tuple[float, int]:
    """The driver's CPU seconds to build one command's arguments in a workspace of
    ``count`` gitlinks (median of ``commands``), and the checkouts held."""
    # here, not at the top: the other workloads run on trees from before it
    from trestle.execution.submodule_checkouts import submodule_holds

    ws = root / f"ws-{count}"
    ws.mkdir()
    _with_gitlinks(ws, count)
    cell = Cell(choose("auto"), ws, "bench")
    cell.argv("true", ws)  # the first one reads the index
    builds = []
    for _ in range(commands):
        cpu = time.process_time()
        cell.argv("true", ws)
        builds.append(time.process_time() - cpu)
    return statistics.median(builds), len(submodule_holds(ws.resolve()))


def _submodules(count: int, commands: int, repeat: int) -> None:
    figures: dict[int, list[tuple[float, int]]] = {}
    for _ in range(repeat):
        for n in (0, count):
            with tempfile.TemporaryDirectory(prefix="trestle-submodule-bench-") as tmp:
                figures.setdefault(n, []).append(_submodule_cost(n, commands, Path(tmp)))
    print(f"submodules ({repeat} repetitions, medians)")
    for n, rows in figures.items():
        build = statistics.median(r[0] for r in rows) * 1e6
        print(
            f"  {n:5} gitlinks, {rows[0][1]:5} held: "
            f"building a command's arguments {build:6.0f} us CPU"
        )


def _host_sockets(count: int, commands: int, repeat: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, count + 256)), hard))
    figures: dict[str, list[tuple[float, float, float, int]]] = {}
    for _ in range(repeat):
        for place in PLACES:
            with tempfile.TemporaryDirectory(prefix="trestle-socket-bench-") as tmp:
                figures.setdefault(place, []).append(
                    _socket_cost(count, place, commands, Path(tmp))
                )
    print(f"host sockets: {count} in one place at a time ({repeat} repetitions, medians)")
    for place, rows in figures.items():
        build = statistics.median(r[0] for r in rows) * 1e6
        bwrap = statistics.median(r[1] for r in rows) * 1e3
        wall = statistics.median(r[2] for r in rows) * 1e3
        print(
            f"  {place:9}: {rows[0][3]:5} covered, building a command's arguments "
            f"{build:6.0f} us CPU; a command: bubblewrap {bwrap:5.1f} ms CPU, {wall:7.1f} ms"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--width", type=int, default=32, help="fan-out width (0: none)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--host-sockets", type=int, default=0, help="measure N host sockets' cost instead"
    )
    parser.add_argument(
        "--submodules", type=int, default=0, help="measure N gitlinks' cost instead"
    )
    args = parser.parse_args(argv)
    found, why = find_bwrap()
    if found is None:
        print(f"no sandbox here ({why}): nothing to compare", file=sys.stderr)
        return 1
    if args.host_sockets:
        _host_sockets(args.host_sockets, args.commands, args.repeat)
        return 0
    if args.submodules:
        _submodules(args.submodules, args.commands, args.repeat)
        return 0
    figures: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        figures.setdefault(key, []).append(value)

    with tempfile.TemporaryDirectory(prefix="trestle-sandbox-bench-") as tmp:
        root = Path(tmp)
        workspace = root / "ws"
        workspace.mkdir()
        cell = Cell(choose("auto"), workspace, "bench")
        for _ in range(args.repeat):
            for name, confined in (("off", None), ("on", cell)):
                wall, cpu = asyncio.run(_commands(args.commands, confined, workspace))
                add(f"cmd {name}", wall)
                add(f"cmd cpu {name}", cpu)
            add("step off", _plan(args.steps, "off", root))
            add("step on", _plan(args.steps, "auto", root))
            modes: tuple[tuple[Mode, str], ...] = (("off", "off"), ("auto", "on"))
            for mode, name in modes if args.width else ():
                ratio, makespan, cpu, on_loop, spread = _fanout(args.width, mode, root)
                add(f"fan {name}", ratio)
                add(f"fan makespan {name}", makespan)
                add(f"fan cpu {name}", cpu)
                add(f"fan loop {name}", on_loop)
                add(f"fan spread {name}", spread)
                # seconds beyond the critical path (the plan at width 1, whose root and
                # join the bare commands below do not have: both are set beside one alone)
                add(f"fan excess {name}", makespan - makespan / ratio)
                add(
                    f"alone excess {name}",
                    _alone(args.width, cell if mode == "auto" else None, workspace),
                )
    med = {k: statistics.median(v) * 1000 for k, v in figures.items()}
    print(f"sandbox cost ({args.repeat} repetitions, medians; bubblewrap {found})")
    for what, off, on in (
        ("command", "cmd off", "cmd on"),
        ("  its CPU", "cmd cpu off", "cmd cpu on"),
        ("plan step", "step off", "step on"),
    ):
        print(
            f"  {what:9}: unconfined {med[off]:.2f} ms, sandboxed {med[on]:.2f} ms, "
            f"ratio {med[on] / med[off]:.2f}, +{med[on] - med[off]:.2f} ms"
        )
    if args.width:
        for name, label in (("off", "unconfined"), ("on", "sandboxed")):
            print(
                f"  fan-out {args.width} x sleep {SLEEP:g}, {label}: makespan / critical path "
                f"{med[f'fan {name}'] / 1000:.2f} (makespan {med[f'fan makespan {name}']:.0f} ms, "
                f"driver CPU {med[f'fan cpu {name}']:.0f} ms; the loop held by starts "
                f"{med[f'fan loop {name}']:.1f} ms, first to last start "
                f"{med[f'fan spread {name}']:.1f} ms)"
            )
            print(
                f"    beyond its critical path {med[f'fan excess {name}']:.0f} ms; the same "
                f"commands through run_shell at once, no engine: beyond one alone "
                f"{med[f'alone excess {name}']:.0f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
