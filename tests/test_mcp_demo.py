"""``trestle demo --mcp``: the agent calls the bundled tracker's destructive MCP tool
(src/trestle/demo/tracker.py, a real stdio server in the sandbox), the call waits for a
human, the demo approves it, and the tracker's own log shows it ran once. Without the
``mcp`` extra (the base install: neither the SDK nor anyio, which it brings), the demo
says it skips this part and how to get it, and exits 0: ``make demo`` from a fresh
clone must not fail."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PATIENCE = 60.0


def demo(where: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trestle", "demo", "--mcp", "--dir", str(where)],
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", **env},
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )


def test_the_mcp_demo_shows_an_mcp_call_waiting_for_approval(tmp_path: Path) -> None:
    result = demo(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    said = " ".join(result.stdout.split())
    assert "The MCP call waits for a human. Its handoff card:" in said
    assert "action tool tracker__close_issue" in said
    assert "MCP tool 'close_issue' of server 'tracker' is destructive [tool.annotations]" in said
    assert "finished succeeded" in said
    log = tmp_path / "textkit" / "tracker.log"
    assert log.read_text().splitlines() == [
        "closed #7: slugify() turns any title into a clean URL slug now"
    ]
    assert "the tracker's own log, written by the server: closed #7" in said


def base_requirements() -> set[str]:
    """The distributions the base install (``pip install trestle-runtime``, no extra)
    brings: Trestle's own requirements and theirs, extras left out."""
    found: set[str] = set()
    todo = ["trestle-runtime"]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        found.add(name)
        for line in metadata.requires(name) or []:
            wanted = Requirement(line)
            if wanted.marker is None or wanted.marker.evaluate({"extra": ""}):
                todo.append(wanted.name)
    return found


def base_install(where: Path) -> Path:
    """A directory that, first on PYTHONPATH, makes every module this environment has
    beyond the base install's fail to import, as it would where only the base is
    installed (the mcp SDK, and anyio, httpx and the rest that the extras bring)."""
    base = base_requirements()
    where.mkdir()
    for module, owners in metadata.packages_distributions().items():
        if module.isidentifier() and not any(canonicalize_name(o) in base for o in owners):
            (where / f"{module}.py").write_text(
                f"raise ImportError('the base install has no {module}')\n"
            )
    return where


def test_without_the_extra_the_demo_says_it_skips_the_mcp_part(tmp_path: Path) -> None:
    shadow = base_install(tmp_path / "base-only")
    assert {"mcp.py", "anyio.py"} <= {p.name for p in shadow.iterdir()}
    where = tmp_path / "demo"
    result = demo(where, PYTHONPATH=str(shadow))
    assert result.returncode == 0, result.stdout + result.stderr
    said = " ".join(result.stdout.split())
    assert said.startswith("MCP: skipped.")
    assert 'pip install "trestle-runtime[mcp]", then trestle demo --mcp' in said
    assert not (where / "textkit").exists()
