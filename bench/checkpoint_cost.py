"""What a step pays for its diff: a plan's steps with checkpoints before and after every
attempt (``checkpoints: every_step``, the default) against none (``off``).

Usage::

    python bench/checkpoint_cost.py [--steps 40] [--repeat 5] [--sizes 20,2000]
                                    [--bytes 2048] [--sandbox auto] [--fanout 32]
                                    [--json out.json]

For each workspace size (files of ``--bytes`` bytes over a few directories, plus a
``.gitignore`` and an ignored ``build/`` directory), a chain of ``--steps`` steps, each
``run: "true"`` with the engine's defaults (the sandbox included, ``--sandbox off`` to
leave it out), on a SQLite store outside the workspace, through ``LocalEngine.run``.
The two settings alternate, ``--repeat`` times each, after one unmeasured run of each
(the shadow store's first snapshot reads every file once; later ones read only what
changed, as in a workspace a store has seen before). Figure: wall time per step, the
median; reported as the same-run ratio (every_step / off) and the milliseconds added
per step. Also the per-step time of one snapshot with nothing changed
(``ShadowRepo.snapshot`` alone), for scale.

With ``--fanout W`` (0: not run), also a fan-out in each workspace: a root step, ``W``
steps ``run: sleep 0.2`` side by side, a join; figure: its makespan over that of the
same plan one step wide (its critical path), per setting, the median of ``--repeat``.
Each of its steps snapshots the workspace before and after it runs, at the same time
as the others do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from trestle.engines.local import LocalEngine
from trestle.execution.sandbox import Mode
from trestle.formats.planfile import parse_plan
from trestle.lifecycle.runs import create_run
from trestle.store import SqliteStore
from trestle.workspace.shadow import ShadowRepo

SETTINGS = ("off", "every_step")


def build_workspace(root: Path, files: int, size: int) -> None:
    """``files`` files of about ``size`` bytes over up to 100 directories, and as many
    ignored ones under ``build/`` as a tenth of them (which must cost nothing)."""
    for i in range(files):
        directory = root / f"pkg{i % 100:03d}"
        directory.mkdir(parents=True, exist_ok=True)
        line = f"value_{i} = {i!r}  # generated line\n"
        (directory / f"module_{i:05d}.py").write_text(line * max(1, size // len(line)))
    (root / "build").mkdir(exist_ok=True)
    for i in range(files // 10):
        (root / "build" / f"{i}.o").write_bytes(b"\0" * size)
    (root / ".gitignore").write_text("build/\n")


def plan_text(steps: int, checkpoints: str) -> str:
    lines = [f"checkpoints: {checkpoints}", "steps:"]
    for n in range(steps):
        needs = f", needs: [s{n - 1}]" if n else ""
        lines.append(f"  - {{id: s{n}, run: 'true'{needs}}}")
    return "\n".join(lines)


def timed(state_dir: Path, workspace: Path, text: str, mode: Mode) -> float:
    """Seconds of one run of plan ``text`` through ``LocalEngine.run``, on a store of its
    own in ``state_dir`` (one shadow store for all of them)."""
    plan = parse_plan(text, source="bench")
    store = SqliteStore(state_dir / f"run-{time.monotonic_ns()}.db")
    run_id = create_run(store, plan, workspace=workspace)
    engine = LocalEngine(store, sandbox=mode)
    started = time.perf_counter()
    state = asyncio.run(engine.run(run_id))
    elapsed = time.perf_counter() - started
    engine.close()
    store.close()
    assert state.finished == "succeeded", state.finished
    return elapsed


def one_run(state_dir: Path, workspace: Path, steps: int, setting: str, mode: Mode) -> float:
    """Seconds per step of one chain."""
    return timed(state_dir, workspace, plan_text(steps, setting), mode) / steps


def fanout_text(width: int, checkpoints: str) -> str:
    lines = [f"checkpoints: {checkpoints}", "steps:", "  - {id: root, run: 'true'}"]
    sleepers = [f"w{n}" for n in range(width)]
    lines += [f"  - {{id: {s}, run: 'sleep 0.2', needs: [root]}}" for s in sleepers]
    lines.append(f"  - {{id: join, run: 'true', needs: [{', '.join(sleepers)}]}}")
    return "\n".join(lines)


def one_fanout(state_dir: Path, workspace: Path, width: int, setting: str, mode: Mode) -> float:
    """Makespan over critical path: the fan-out's run time over the same plan's one
    step wide."""
    wide, narrow = (timed(state_dir, workspace, fanout_text(w, setting), mode) for w in (width, 1))
    return wide / narrow


def snapshot_alone(workspace: Path, shadow: Path, repeat: int) -> float:
    repo = ShadowRepo(shadow, workspace)
    repo.snapshot("bench/warm", ordered=True)
    times = []
    for n in range(repeat * 5):
        started = time.perf_counter()
        repo.snapshot(f"bench/{n}", ordered=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sizes", default="20,2000", help="files in the workspace, per size")
    parser.add_argument("--bytes", type=int, default=2048)
    parser.add_argument("--sandbox", default="auto", choices=("auto", "off"))
    parser.add_argument("--fanout", type=int, default=32, help="its width (0: not run)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    mode: Mode = "auto" if args.sandbox == "auto" else "off"
    results = []
    with tempfile.TemporaryDirectory(prefix="trestle-checkpoint-bench-") as tmp:
        root = Path(tmp)
        for files in (int(s) for s in args.sizes.split(",")):
            workspace = root / f"ws-{files}"
            workspace.mkdir()
            build_workspace(workspace, files, args.bytes)
            samples: dict[str, list[float]] = {s: [] for s in SETTINGS}
            for setting in SETTINGS:  # unmeasured: the shadow store's first read
                (root / f"state-{files}-{setting}").mkdir()
                one_run(root / f"state-{files}-{setting}", workspace, 2, setting, mode)
            for _ in range(args.repeat):
                for setting in SETTINGS:
                    state_dir = root / f"state-{files}-{setting}"
                    samples[setting].append(
                        one_run(state_dir, workspace, args.steps, setting, mode)
                    )
            fans: dict[str, list[float]] = {s: [] for s in SETTINGS}
            for _ in range(args.repeat if args.fanout else 0):
                for setting in SETTINGS:
                    state_dir = root / f"state-{files}-{setting}"
                    fans[setting].append(
                        one_fanout(state_dir, workspace, args.fanout, setting, mode)
                    )
            alone = snapshot_alone(workspace, root / f"alone-{files}.git", args.repeat)
            off, on = (statistics.median(samples[s]) * 1000 for s in SETTINGS)
            results.append(
                {
                    "files": files,
                    "off_ms_per_step": off,
                    "every_step_ms_per_step": on,
                    "ratio": on / off,
                    "added_ms_per_step": on - off,
                    "snapshot_unchanged_ms": alone * 1000,
                    "samples_ms": {s: [x * 1000 for x in v] for s, v in samples.items()},
                    "fanout_width": args.fanout,
                    "fanout_ratio": {s: statistics.median(v) for s, v in fans.items() if v},
                    "fanout_samples": fans,
                }
            )
    print(
        f"checkpoint cost: chain of {args.steps} `run: true` steps, sandbox {args.sandbox}, "
        f"medians of {args.repeat}"
    )
    for r in results:
        print(
            f"  {r['files']:>6} files: off {r['off_ms_per_step']:.1f} ms/step, every_step "
            f"{r['every_step_ms_per_step']:.1f} ms/step, ratio {r['ratio']:.2f}, "
            f"+{r['added_ms_per_step']:.1f} ms/step (one snapshot alone: "
            f"{r['snapshot_unchanged_ms']:.1f} ms)"
        )
        for setting, ratio in r["fanout_ratio"].items():
            print(
                f"  {r['files']:>6} files: width-{args.fanout} fan-out of `sleep 0.2`, "
                f"{setting}: makespan / critical path {ratio:.2f}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
