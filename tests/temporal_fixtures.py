"""The fixtures the Temporal engine's test modules share: the dev server, a CLI in the
test's own directory, and workers on a queue of the test's own.

conftest.py registers them for every module; a module that needs another ``cli`` or
``workers`` defines its own, which wins there. Nothing of Temporal is imported until a
test asks for one of them, so a session that runs no Temporal test does not pay for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from temporal_helpers import Workers
    from test_cli import Cli


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    """A dev server for the module's tests: one per module, so CI, which hands each of
    its processes whole modules (``--dist loadfile``), runs at most one per process."""
    from temporal_helpers import dev_server

    with dev_server() as where:
        yield where


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """The CLI in the test's directory, its store in ``.trestle/`` there."""
    from test_cli import Cli

    return Cli(tmp_path, tmp_path / ".trestle" / "trestle.db")


@pytest.fixture
def workers(cli: Cli, address: str) -> Iterator[Workers]:
    """None yet on a queue of the test's own (``workers.start()`` starts one), stopped
    after it; an attempt whose worker is silent for 2 s (not 10) is lost."""
    from temporal_helpers import Workers

    pool = Workers(cli, address, TRESTLE_TEMPORAL_HEARTBEAT="2")
    try:
        yield pool
    finally:
        pool.stop()
