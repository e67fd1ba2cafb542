"""Stores: where runs are recorded. SQLite is the default; memory is for tests."""

from __future__ import annotations

from trestle.store.base import Appended, Lease, Owner, Request, RunRow, Snapshot, Store
from trestle.store.location import (
    DEFAULT_STORE,
    STORE_ENV,
    RecentStores,
    default_store_path,
    nearest_store,
)
from trestle.store.memory import InMemoryStore
from trestle.store.sqlite import SqliteStore

__all__ = [
    "DEFAULT_STORE",
    "STORE_ENV",
    "Appended",
    "InMemoryStore",
    "Lease",
    "Owner",
    "RecentStores",
    "Request",
    "RunRow",
    "Snapshot",
    "SqliteStore",
    "Store",
    "default_store_path",
    "nearest_store",
]
