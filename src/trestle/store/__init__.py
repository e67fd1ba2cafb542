"""Stores: where runs are recorded. SQLite is the default; memory is for tests."""

from __future__ import annotations

import os
from pathlib import Path

from trestle.store.base import Appended, Lease, Owner, Request, RunRow, Snapshot, Store
from trestle.store.memory import InMemoryStore
from trestle.store.sqlite import SqliteStore

STORE_ENV = "TRESTLE_STORE"
DEFAULT_STORE = Path(".trestle") / "trestle.db"


def default_store_path(workspace: Path | None = None) -> Path:
    """``$TRESTLE_STORE`` if set, else ``.trestle/trestle.db`` under the workspace."""
    env = os.environ.get(STORE_ENV)
    if env:
        return Path(env)
    return (workspace or Path.cwd()) / DEFAULT_STORE


__all__ = [
    "DEFAULT_STORE",
    "STORE_ENV",
    "Appended",
    "InMemoryStore",
    "Lease",
    "Owner",
    "Request",
    "RunRow",
    "Snapshot",
    "SqliteStore",
    "Store",
    "default_store_path",
]
