"""Stores: where runs are recorded. SQLite is the default; memory is for tests.

Each name loads its module on first use (``trestle.support.lazy``): finding a store or listing
its runs must not build the event types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trestle.support.lazy import lazy_exports

if TYPE_CHECKING:
    from trestle.store.base import Appended, Lease, Owner, Request, RunRow, Snapshot, Store
    from trestle.store.location import (
        DEFAULT_STORE,
        STORE_ENV,
        RecentStores,
        default_store,
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
    "default_store",
    "nearest_store",
]

_BASE, _LOCATION = "trestle.store.base", "trestle.store.location"
__getattr__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(
            ("Appended", "Lease", "Owner", "Request", "RunRow", "Snapshot", "Store"), _BASE
        ),
        **dict.fromkeys(
            ("DEFAULT_STORE", "STORE_ENV", "RecentStores", "default_store", "nearest_store"),
            _LOCATION,
        ),
        "InMemoryStore": "trestle.store.memory",
        "SqliteStore": "trestle.store.sqlite",
    },
    globals(),
)
