"""What a workspace checkpoint costs: snapshot and restore times of a generated workspace.

Usage::

    python bench/shadow_cost.py [--files 2000] [--dirs 100] [--size 2048] [--repeat 7]
                                [--dir DIR] [--json out.json]

Builds ``--files`` files of about ``--size`` bytes spread over ``--dirs`` directories
(plus a ``.gitignore`` and an ignored ``build/`` directory of the same size, which must
cost almost nothing), then times, on a fresh shadow store:

first
    the first snapshot: every file is read and stored.
unchanged
    snapshots with nothing changed (median of ``--repeat``). The first of these may
    re-read files whose times fall within git's racy window; it is reported apart.
one changed
    one file rewritten before each snapshot (median of ``--repeat``).
restore
    restoring that snapshot after the same file was overwritten (median of ``--repeat``).

Also prints the shadow store's size on disk after the first snapshot and at the end.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from trestle.workspace.shadow import ShadowRepo


def build_workspace(root: Path, files: int, dirs: int, size: int) -> list[Path]:
    """Write the workspace; return the paths of its non-ignored files."""
    written = []
    for i in range(files):
        directory = root / f"pkg{i % dirs:03d}" / f"sub{i % 7}"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"module_{i:05d}.py"
        line = f"value_{i} = {i!r}  # generated line\n"
        path.write_text(line * max(1, size // len(line)))
        written.append(path)
    ignored = root / "build"
    for i in range(files // 10):
        (ignored / f"obj{i % 10}").mkdir(parents=True, exist_ok=True)
        (ignored / f"obj{i % 10}" / f"{i}.o").write_bytes(os.urandom(size))
    (root / ".gitignore").write_text("build/\n*.pyc\n")
    return written


def store_size(git_dir: Path) -> int:
    return sum(p.stat().st_size for p in git_dir.rglob("*") if p.is_file())


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--dirs", type=int, default=100)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=None, help="work here (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        workspace = root / "ws"
        workspace.mkdir()
        paths = build_workspace(workspace, args.files, args.dirs, args.size)
        repo = ShadowRepo(root / "shadow.git", workspace)
        counter = iter(range(1_000_000))

        def snap() -> str:
            return repo.snapshot(f"bench/{next(counter)}")

        first = timed(snap)
        size_first = store_size(root / "shadow.git")
        unchanged_first = timed(snap)
        time.sleep(1.1)  # past the racy window, as between two real steps
        unchanged = [timed(snap) for _ in range(args.repeat)]

        changed = []
        restores = []
        for n in range(args.repeat):
            target = paths[(n * 7919) % len(paths)]
            target.write_text(target.read_text() + f"# edit {n}\n")
            started = time.perf_counter()
            commit = snap()
            changed.append(time.perf_counter() - started)
            target.write_text("scribbled\n")
            restores.append(timed(functools.partial(repo.restore, commit)))

        figures = {
            "files": args.files,
            "ignored_files": args.files // 10,
            "bytes_per_file": args.size,
            "first_s": first,
            "unchanged_right_after_s": unchanged_first,
            "unchanged_median_s": statistics.median(unchanged),
            "one_changed_median_s": statistics.median(changed),
            "restore_one_file_median_s": statistics.median(restores),
            "store_bytes_after_first": size_first,
            "store_bytes_at_end": store_size(root / "shadow.git"),
        }
    for key, value in figures.items():
        shown = f"{value * 1000:.1f} ms" if key.endswith("_s") else f"{value:,}"
        print(f"{key:28} {shown}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
