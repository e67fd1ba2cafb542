"""The operator's controls, through the real ``trestle`` executable: the version, a
reader that closes the output early, cancelling a run, and a model server that is not
there."""

from __future__ import annotations

from pathlib import Path

import pytest

import trestle
from test_cli import Cli


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path, tmp_path / "t.db")


def test_version_prints_the_version(cli: Cli) -> None:
    result = cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"trestle {trestle.__version__}\n"
