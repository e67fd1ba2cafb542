"""Fixtures every test shares."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from secrets import token_hex

import pytest

from trestle.core.errors import TrestleError
from trestle.testing.postgres import LocalPostgres

# the Temporal engine's modules share their dev server, CLI and workers fixtures
pytest_plugins = ["temporal_fixtures"]

# no test may reach a real model provider; loopback servers are still allowed
os.environ.setdefault("TRESTLE_BLOCK_MODEL_REQUESTS", "1")

# the session's own state, configuration and key, set before any fixture runs: the
# autouse fixtures below give each test its own, but module- and session-scoped fixtures
# are set up before them and would otherwise run the CLI against the user's
_SESSION_HOME: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Point the state and configuration directories and the approval key of this
    process (and every CLI it starts) at a temporary directory of its own; each xdist
    worker makes its own."""
    global _SESSION_HOME
    _SESSION_HOME = Path(tempfile.mkdtemp(prefix="trestle-tests-"))
    os.environ["XDG_STATE_HOME"] = str(_SESSION_HOME / "state")
    os.environ["XDG_CONFIG_HOME"] = str(_SESSION_HOME / "config")
    os.environ["TRESTLE_KEY_FILE"] = str(_SESSION_HOME / "config" / "approval.key")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest files first (tests/slowest_files.txt), the rest after in collection
    order: ``make test`` hands whole files to its workers in this order
    (``--dist loadfile --no-loadscope-reorder``), so the longest start at once and no
    worker is left running one of them alone at the end."""
    rank = {name: i for i, name in enumerate(_slowest_files())}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable


def _slowest_files() -> list[str]:
    listed = Path(__file__).with_name("slowest_files.txt").read_text(encoding="utf-8")
    lines = (line.split("#", 1)[0].strip() for line in listed.splitlines())
    return [line for line in lines if line]


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SESSION_HOME is not None:
        shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def _own_decision_key(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test signs approvals with its own key, never the user's."""
    path = tmp_path_factory.mktemp("key") / "approval.key"
    monkeypatch.setenv("TRESTLE_KEY_FILE", str(path))
    return path


@pytest.fixture(autouse=True)
def _own_recent_stores(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test (and the CLI it runs) keeps its own index of recent stores, never the
    user's."""
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    return state


@pytest.fixture(autouse=True)
def _own_config_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test (and the CLI it runs) keeps its own Trestle configuration (the policy
    files accepted, see trestle.trust.policy_trust), never the user's."""
    config = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    return config


@pytest.fixture
def unconfined(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands run without the sandbox (as on a machine without one): for tests of
    what must hold there too, which watch a command's processes by pid or let it reach
    files outside the workspace."""
    monkeypatch.setenv("TRESTLE_SANDBOX", "off")


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """A PostgreSQL server of this worker's own on 127.0.0.1, for the whole session.

    A server that cannot start fails the tests that need it, with the reason: they are
    not skipped (scripts/setup-postgres.sh installs what they need)."""
    server = LocalPostgres()
    try:
        server.start()
    except TrestleError as error:
        pytest.fail(f"no PostgreSQL server for the tests: {error}", pytrace=False)
    with server:
        yield server


@pytest.fixture
def postgres_url(postgres: LocalPostgres) -> Iterator[str]:
    """The URL of an empty database of the test's own on :func:`postgres`, dropped after
    it (connections still open to it are ended)."""
    name = f"test_{token_hex(6)}"
    yield postgres.create_database(name)
    postgres.drop_database(name)
