"""What machine a benchmark ran on: CPUs, memory, versions, disk, load, commit."""

from __future__ import annotations

import importlib.util
import os
import platform
import sqlite3
import subprocess
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent


def machine_info(work_dir: Path) -> dict[str, str]:
    """The machine, as plain strings; ``work_dir`` names the filesystem measured."""
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu_count": str(os.cpu_count()),
        "cpu": _first_line_value(Path("/proc/cpuinfo"), "model name") or platform.processor(),
        "ram": _ram(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        "filesystem": _filesystem(work_dir),
        "trestle_commit": trestle_commit(),
        "load_average_before": load_average(),
    }


def load_average() -> str:
    """1, 5 and 15-minute load averages: other work on the machine skews every figure."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _first_line_value(path: Path, key: str) -> str | None:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    except OSError:
        pass
    return None


def _ram() -> str:
    total = _first_line_value(Path("/proc/meminfo"), "MemTotal")  # "24603104 kB"
    if total is None:
        return "unknown"
    return f"{int(total.split()[0]) / 1024**2:.1f} GiB"


def _filesystem(path: Path) -> str:
    """The device and type of the mount holding ``path`` (from /proc/mounts)."""
    best = ("", "unknown", "unknown")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, fstype, *_ = line.split()
            inside = str(path.resolve()).startswith(mount.rstrip("/") + "/")
            if inside and len(mount) > len(best[0]):
                best = (mount, device, fstype)
    except OSError:
        pass
    return f"{best[1]} ({best[2]}) mounted on {best[0] or '?'}"


def trestle_commit() -> str:
    """The commit of the ``trestle`` package this interpreter imports, "+dirty" when
    that tree's ``src/`` has uncommitted changes.

    A bench run with ``PYTHONPATH=OTHER/src`` measures OTHER's code, so the commit is
    that tree's, found from where the package lives, not this script's repository.
    ``find_spec`` locates the package without importing it (the workers import it).
    """
    spec = importlib.util.find_spec("trestle")
    if spec is None or spec.origin is None:
        return "unknown"
    package_dir = Path(spec.origin).resolve().parent
    top = _git(package_dir, "rev-parse", "--show-toplevel")
    head = _git(package_dir, "rev-parse", "--short", "HEAD")
    if top is None or head is None:
        return "unknown"
    changed = _git(Path(top), "status", "--porcelain", "--", "src")
    return f"{head}+dirty" if changed else head


def _git(cwd: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(cwd), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()
