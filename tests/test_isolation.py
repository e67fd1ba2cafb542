"""The suite leaves the user's own state alone: the index of recent stores and the
approval key a module-scoped fixture sees (set up before any function-scoped fixture)
lie in the session's temporary directory, and a run started there is remembered there."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from trestle.store.location import RecentStores, recent_stores_file
from trestle.trust.signing import key_path


@dataclass(frozen=True)
class Seen:
    stores_file: Path
    key: Path
    run: subprocess.CompletedProcess[str]
    store: Path


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> Seen:
    """What a module-scoped fixture sees, and a run it starts through the CLI."""
    where = tmp_path_factory.mktemp("isolation")
    (where / "plan.yaml").write_text(
        'goal: isolation\nsteps:\n  - id: a\n    run: "true"\n', encoding="utf-8"
    )
    store = where / "t.db"
    run = subprocess.run(
        [sys.executable, "-m", "trestle", "run", "plan.yaml", "--store", str(store)],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Seen(recent_stores_file(), key_path(), run, store)


def inside_temp(path: Path) -> bool:
    return path.resolve().is_relative_to(Path(tempfile.gettempdir()).resolve())


def test_a_module_fixture_sees_the_sessions_own_stores_index(seen: Seen) -> None:
    assert inside_temp(seen.stores_file), seen.stores_file
    assert not seen.stores_file.resolve().is_relative_to(Path.home().resolve())


def test_a_module_fixture_sees_the_sessions_own_key(seen: Seen) -> None:
    assert inside_temp(seen.key), seen.key
    assert not seen.key.resolve().is_relative_to(Path.home().resolve())


def test_a_run_from_a_module_fixture_is_remembered_in_the_sessions_index(
    seen: Seen,
) -> None:
    assert seen.run.returncode == 0, seen.run.stderr
    assert seen.store.resolve() in RecentStores(seen.stores_file).paths()
