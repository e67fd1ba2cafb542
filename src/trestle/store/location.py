"""Where stores are: the one a run starts in, and where commands look for one.

A store is named by a path (an SQLite file) or by a ``postgresql://`` URL (a
PostgreSQL database, :mod:`trestle.store.postgres`): :func:`open_store` opens either.
A run is recorded in ``--store``, else ``$TRESTLE_STORE``, else
``.trestle/trestle.db`` in its workspace. A command that reads looks in ``--store``,
else ``$TRESTLE_STORE``, else the nearest ``.trestle/trestle.db`` from the current
directory upward (as git finds ``.git``); a command given a RUN also looks in the
stores runs were started in recently, which a small user-level index remembers
(:class:`RecentStores`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from secrets import token_hex
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trestle.store.base import Store

STORE_ENV = "TRESTLE_STORE"
DEFAULT_STORE = Path(".trestle") / "trestle.db"
RECENT_LIMIT = 20
URL_SCHEMES = ("postgresql://", "postgres://")


def is_store_url(where: str | Path) -> bool:
    """True when ``where`` names a PostgreSQL database rather than an SQLite file."""
    return isinstance(where, str) and where.startswith(URL_SCHEMES)


def open_store(where: str | Path, *, create: bool = True) -> Store:
    """The store ``where`` names: a ``postgresql://`` URL, else an SQLite file's path.

    ``create=False`` never leaves a new store behind: a missing file is NoStoreError,
    a database without Trestle's tables is refused (see :mod:`trestle.store.postgres`).
    """
    if is_store_url(where):
        from trestle.store.postgres import PostgresStore

        return PostgresStore(str(where), create=create)
    from trestle.store.sqlite import SqliteStore

    return SqliteStore(Path(where), create=create)


def store_name(store: object) -> str:
    """How messages name a store: its file's absolute path, or its URL without the
    password."""
    where = getattr(store, "where", None)
    if isinstance(where, str):
        return where
    path = getattr(store, "path", None)
    return str(Path(path).absolute()) if isinstance(path, Path) else "the store"


def default_store_path(workspace: Path | None = None) -> Path:
    """``$TRESTLE_STORE`` if set, else ``.trestle/trestle.db`` under the workspace."""
    env = os.environ.get(STORE_ENV)
    if env:
        return Path(env)
    return (workspace or Path.cwd()) / DEFAULT_STORE


def nearest_store(start: Path) -> Path | None:
    """The ``.trestle/trestle.db`` in ``start`` or the nearest directory above it."""
    here = start.absolute()
    for directory in (here, *here.parents):
        candidate = directory / DEFAULT_STORE
        if candidate.is_file():
            return candidate
    return None


def recent_stores_file(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/trestle/stores``, else ``~/.local/state/trestle/stores``."""
    env = os.environ if environ is None else environ
    state = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "trestle" / "stores"


class RecentStores:
    """The stores runs were started in, newest first: absolute paths, one a line.

    A convenience, never a source of truth: a missing, unreadable or corrupt file reads
    as no stores, lines that are not absolute paths are skipped, and a failure to
    write it is ignored (a run must not fail because the index could not be kept).
    Writes replace the file whole; of two processes writing at once, one's entry may
    be lost, which costs only a lookup.
    """

    def __init__(self, file: Path | None = None, *, limit: int = RECENT_LIMIT) -> None:
        self.file = file or recent_stores_file()
        self.limit = limit

    def paths(self) -> list[Path]:
        try:
            text = self.file.read_text(encoding="utf-8", errors="replace")
        except (OSError, ValueError):
            return []
        found: list[Path] = []
        for line in text.splitlines():
            line = line.strip()
            if line and "\ufffd" not in line and "\x00" not in line and os.path.isabs(line):
                path = Path(line)
                if path not in found:
                    found.append(path)
        return found[: self.limit]

    def remember(self, store: Path) -> None:
        """Put ``store`` first (bounded to ``limit`` entries), replacing the file whole."""
        store = store.absolute()
        kept = [store, *(p for p in self.paths() if p != store)][: self.limit]
        temp = self.file.with_name(f".{self.file.name}.{os.getpid()}-{token_hex(4)}")
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            temp.write_text("".join(f"{p}\n" for p in kept), encoding="utf-8")
            os.replace(temp, self.file)
        except (OSError, ValueError):
            with suppress(OSError):
                temp.unlink()
